import ast
import json
import os
import re
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from pipeline.config import TrainConfig
from pipeline.errors import PipelineError
from pipeline.run import (
    BEST,
    LAST,
    METRIC_COLUMNS,
    CheckpointSaver,
    Run,
    RunConfig,
    load_checkpoint,
    summarize_metrics,
)

ROOT = Path(__file__).parents[1]
RUN_FILES = ("config.json", "metrics.csv", "status.json", "best.pt", "last.pt", "result.txt", "skipped.txt",
             "curves.png", "confusion.png", "per_class.csv", "report.md", "model.onnx",
             "val_probabilities.npz", "cv.json", "cv_summary.json", "oof.npz")


def test_runs_saved_by_older_versions_still_load(tmp_path):
    from pipeline.config import saved_config
    old = {"model": "torchvision", "stem": "imagenet", "lr": 0.01, "epochs": 4}  # before recipe/full/ema existed
    config = saved_config(old, tmp_path / "config.json")
    assert (config.model, config.lr, config.full, config.recipe) == ("torchvision", 0.01, False, "seed")
    with pytest.raises(PipelineError, match=r"config.json: unknown options warp \(edited by hand, or saved by a newer pipeline\); remove them"):
        saved_config({**old, "warp": 9}, tmp_path / "config.json")


def run_config(**options) -> RunConfig:
    return RunConfig(TrainConfig(**options), ["a", "b"], [0.5, 0.4, 0.3], [0.2, 0.2, 0.2], image_size=[32, 32],
                     split={"seed": 42, "val_fraction": 0.2, "train_images": 8, "val_images": 2}, created="2026-01-01")


def test_config_round_trips_in_the_saved_format(tmp_path):
    run = Run(tmp_path / "exp")
    config = run_config(lr=0.05, milestones=[3], name="exp")
    run.write_config(config)
    saved = json.loads((run.path / "config.json").read_text())
    assert saved["options"]["lr"] == 0.05 and saved["classes"] == ["a", "b"] and saved["split"]["val_images"] == 2
    assert {"options", "classes", "mean", "std", "channels", "image_size", "skipped", "split", "labeled_ids",
            "labels_key", "started_from", "precision", "layout", "precision_probe", "dataset", "device", "versions",
            "created", "format"} == saved.keys()
    assert run.read_config() == config
    assert run.read_config().inputs.mean == (0.5, 0.4, 0.3)


def test_older_and_foreign_configs(tmp_path):
    run = Run(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"options": {"aug": "seed", "lr": 0.1}, "classes": ["x"]}))
    old = run.read_config()
    assert old.options.aug == "crop-flip" and old.channels == 3 and old.created == ""  # the renamed policy
    with pytest.raises(PipelineError, match="no normalisation"):
        old.inputs
    (tmp_path / "config.json").write_text(json.dumps({"classes": ["x"]}))
    with pytest.raises(PipelineError, match="config.json: not a pipeline run config"):
        run.read_config()


@pytest.mark.parametrize("saved_format, stem, built", [
    (None, "improved", "improved-pool"),  # format 1: `improved` had the max pool then
    (None, "cifar", "improved"), (None, "imagenet", "imagenet"),
    (2, "improved", "improved"), (2, "improved-pool", "improved-pool")])
def test_a_run_keeps_the_stem_it_was_trained_with(tmp_path, saved_format, stem, built):
    saved = {"options": {"stem": stem, "lr": 0.1}, "classes": ["x"]}
    if saved_format is not None:
        saved["format"] = saved_format
    (tmp_path / "config.json").write_text(json.dumps(saved))
    config = Run(tmp_path).read_config()
    assert (config.options.stem, config.format) == (built, 2)
    Run(tmp_path).write_config(config)  # written again, it says the same in today's format
    assert Run(tmp_path).read_config() == config


@pytest.mark.parametrize("metric, scores, best_epochs, best", [
    ("accuracy", [0.5, 0.7, 0.6], [1, 2, 2], 0.7),
    ("accuracy", [0.5, 0.5, 0.9], [1, 1, 3], 0.9),  # a tie does not replace the best
    ("log_loss", [0.9, 0.5, 0.5, 0.7], [1, 2, 2, 2], 0.5),  # lower is better; a tie neither
    ("accuracy", [None, None], [1, 2], None),  # --full: no score, best is the last epoch
])
def test_checkpoint_saver_keeps_last_and_best(tmp_path, metric, scores, best_epochs, best):
    run = Run(tmp_path)
    saver = CheckpointSaver(run, metric)
    for epoch, (score, best_epoch) in enumerate(zip(scores, best_epochs), 1):
        state = {"model": {"w": torch.full((2,), float(epoch))}, "config": {}}
        assert saver.save(state, epoch, score) == (scores[best_epoch - 1], best_epoch)
        assert load_checkpoint(run.last)["epoch"] == epoch
        assert load_checkpoint(run.best)["epoch"] == best_epoch
    assert saver.best_score == best
    assert load_checkpoint(run.best)["model"]["w"][0] == best_epochs[-1]
    assert load_checkpoint(run.last)["best_epoch"] == best_epochs[-1]


def test_an_epoch_is_serialized_once_and_its_copies_are_links_to_it(tmp_path, monkeypatch):
    run = Run(tmp_path)
    saver = CheckpointSaver(run, "accuracy", keep_top=2)
    serialized = []
    save = torch.save
    monkeypatch.setattr(torch, "save", lambda obj, f: (serialized.append(f), save(obj, f)))
    saver.save({"model": {"w": torch.ones(2)}, "config": {}}, 1, 0.5)
    assert len(serialized) == 1
    assert run.best.samefile(run.last) and run.top_checkpoint(1).samefile(run.last)
    saver.save({"model": {"w": torch.full((2,), 2.0)}, "config": {}}, 2, 0.4)  # kept in top/, not the best
    assert len(serialized) == 2 and run.top_checkpoint(2).samefile(run.last) and not run.best.samefile(run.last)
    # last.pt is replaced, never written through: the best epoch's file keeps its own weights
    assert load_checkpoint(run.best)["model"]["w"][0] == 1 and load_checkpoint(run.last)["epoch"] == 2
    assert sorted(path.name for path in tmp_path.rglob("*")) == sorted([BEST, LAST, "top", *(
        run.top_checkpoint(epoch).name for epoch in (1, 2))])  # no temporary file left


def test_checkpoint_copies_are_copied_where_the_file_system_has_no_hard_links(tmp_path, monkeypatch):
    def no_links(source, target):
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    run = Run(tmp_path)
    CheckpointSaver(run, "accuracy").save({"model": {"w": torch.ones(2)}, "config": {}}, 1, 0.5)
    assert not run.best.samefile(run.last) and run.best.read_bytes() == run.last.read_bytes()
    assert load_checkpoint(run.best)["epoch"] == 1


def test_resumed_saver_starts_from_the_saved_best_and_non_main_ranks_write_nothing(tmp_path):
    run = Run(tmp_path)
    saver = CheckpointSaver(run, "accuracy", best_score=0.8, best_epoch=4)
    assert saver.save({"model": {}, "config": {}}, 5, 0.7, write=False) == (0.8, 4)
    assert not run.last.exists() and not run.best.exists()
    assert saver.save({"model": {}, "config": {}}, 6, 0.85) == (0.85, 6)


def test_metrics_log_and_summary(tmp_path):
    run = Run(tmp_path)
    rows = [dict(zip(METRIC_COLUMNS, (e, 1.0 / e, 0.5, 1.2, acc, acc - 0.1, loss, 0.1, 2.0, 2.0 * e, 100.0 + e)))
            for e, acc, loss in ((1, 0.4, 1.5), (2, 0.8, 0.9), (3, 0.6, 0.7))]  # val_score: a log loss
    run.write_metrics(rows)
    assert list(pd.read_csv(tmp_path / "metrics.csv").columns) == list(METRIC_COLUMNS)
    summary = summarize_metrics(run.read_metrics())
    assert (summary.epochs, summary.best_score, summary.best_epoch, summary.wall_s) == (3, 0.8, 2, 6.0)
    assert summary.val_f1 == pytest.approx(0.7) and summary.images_per_s == 102.0
    by_loss = summarize_metrics(run.read_metrics(), "log_loss")
    assert (by_loss.metric, by_loss.best_score, by_loss.best_epoch, by_loss.val_acc) == ("log_loss", 0.7, 3, 0.6)
    assert [row["epoch"] for row in run.read_history(2)] == [1, 2]


def test_status_round_trip_and_unreadable_status(tmp_path):
    run = Run(tmp_path)
    assert run.read_status() is None
    run.set_status("failed", error="boom")
    assert run.read_status()["state"] == "failed" and run.read_status()["error"] == "boom"
    (tmp_path / "status.json").write_text("{")
    assert run.read_status() is None


def python_sources(*folders: str) -> dict[Path, str]:
    return {path: path.read_text() for folder in folders for path in (ROOT / folder).rglob("*.py")}


def test_only_the_run_module_names_run_files():
    pattern = re.compile("|".join(re.escape(f'"{name}"') + "|" + re.escape(f"'{name}'") for name in RUN_FILES))
    offenders = [f"{path.relative_to(ROOT)}: {match.group()}" for path, text in python_sources("pipeline", "benchmarks").items()
                 if path.name != "run.py" for match in pattern.finditer(text)]
    assert offenders == []


def test_training_imports_neither_prediction_nor_report():
    tree = ast.parse((ROOT / "pipeline" / "train.py").read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert not imported & {"pipeline.predict", "pipeline.report"}


def test_no_function_in_the_package_is_longer_than_a_screen():
    lengths = {f"{path.relative_to(ROOT)}:{node.name}": node.end_lineno - node.lineno + 1
               for path, text in python_sources("pipeline").items() for node in ast.walk(ast.parse(text))
               if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}
    assert {name: n for name, n in lengths.items() if n > 60} == {}


def module_imports(path: Path) -> set[str]:
    """The pipeline modules `path` imports when it is imported (its top level; imports inside functions wait)."""
    tree = ast.parse(path.read_text())
    named = {node.module for node in tree.body if isinstance(node, ast.ImportFrom) and node.module}
    named |= {alias.name for node in tree.body if isinstance(node, ast.Import) for alias in node.names}
    return {name for name in named if name.split(".")[0] == "pipeline"}


def test_the_package_imports_without_cycles():
    modules = {".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): module_imports(path)
               for path in python_sources("pipeline")}
    assert "pipeline.config" in modules["pipeline.cli"]  # the graph is read

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(found == goal or (found not in seen and not seen.add(found) and reaches(found, goal, seen))
                   for found in modules.get(start, ()))

    assert [module for module in modules if reaches(module, module, set())] == []


def test_a_cross_validation_of_the_pooled_stem_takes_no_unpooled_fold(tmp_path):
    from dataclasses import asdict

    from pipeline.cv import cv_plan
    from pipeline.run import claim_cv

    plan = cv_plan(TrainConfig(stem="improved", folds=3))
    old = {key: value for key, value in plan.items() if key != "format"}  # as 0.1.0 wrote it: improved had a pool
    (tmp_path / "cv").mkdir()
    (tmp_path / "cv" / "cv.json").write_text(json.dumps(old))
    (tmp_path / "cv" / "fold-0").mkdir()  # a fold of it trained
    with pytest.raises(PipelineError, match="holds a cross-validation with other options"):
        claim_cv(tmp_path, "cv", plan)
    assert claim_cv(tmp_path, "cv", cv_plan(TrainConfig(stem="improved-pool", folds=3)))[0].read_plan()["stem"] == \
        "improved-pool"
    # 0.1.0's fast recipe saved `cifar` (and older runs aug `seed`): today's names, so its folds can go on
    (tmp_path / "fast").mkdir()
    (tmp_path / "fast" / "cv.json").write_text(json.dumps({**old, "stem": "cifar", "aug": "seed"}))
    fast = cv_plan(TrainConfig(stem="improved", aug="crop-flip", folds=3))
    assert claim_cv(tmp_path, "fast", fast)[0].read_plan() == fast
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "cv.json").write_text(json.dumps({**plan, "format": 3}))
    with pytest.raises(PipelineError, match=r"cv.json: saved by a newer pipeline \(options format 3\)"):
        claim_cv(tmp_path, "new", plan)
    assert asdict(TrainConfig(stem="cifar")) == asdict(TrainConfig(stem="improved"))


def test_two_processes_making_one_new_cv_take_the_same_plan(tmp_path, monkeypatch):
    """The second to reach a new CV folder waits for the plan the first is writing, and takes it up."""
    import threading

    import pipeline.run
    from pipeline.cv import cv_plan
    from pipeline.run import CrossValidation, claim_cv

    write_plan = CrossValidation.write_plan
    monkeypatch.setattr(CrossValidation, "write_plan", lambda cv, plan: (time.sleep(0.5), write_plan(cv, plan)))
    plan, claimed, errors = cv_plan(TrainConfig(folds=3)), [], []
    start = threading.Barrier(2)

    def claim():
        start.wait()
        try:
            claimed.append(claim_cv(tmp_path, "cv", plan)[0].path)
        except Exception as e:  # noqa: BLE001 - any error is the failure this test looks for
            errors.append(e)

    threads = [threading.Thread(target=claim) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and claimed == [tmp_path / "cv"] * 2
    (tmp_path / "stale").mkdir()
    (tmp_path / "stale" / "notes.txt").write_text("mine")
    monkeypatch.setattr(pipeline.run, "PLAN_WAIT_S", 0.2)
    with pytest.raises(PipelineError, match="already exists and is not a cross-validation folder"):
        claim_cv(tmp_path, "stale", plan)


def test_a_cv_with_other_options_is_replaced_only_while_no_fold_is_there(tmp_path):
    from pipeline.cv import cv_plan
    from pipeline.run import claim_cv

    plan = cv_plan(TrainConfig(folds=2, lr=0.1))
    cv, made = claim_cv(tmp_path, "cv", plan)
    assert made and cv.read_plan()["lr"] == 0.1
    cv, made = claim_cv(tmp_path, "cv", {**plan, "lr": 0.2})  # nothing trained under 0.1: 0.2 replaces it
    assert not made and cv.read_plan()["lr"] == 0.2
    cv.fold(1).path.mkdir()  # a fold trained, training, or left by a crash
    with pytest.raises(PipelineError, match=re.escape(f"train with its options (--config {cv.path})")):
        claim_cv(tmp_path, "cv", {**plan, "lr": 0.3})
    assert cv.read_plan()["lr"] == 0.2
