"""Cross-validation: the fold split, fold runs in one CV folder, gathered out-of-fold predictions and summary,
folds trained apart and gathered, and the fold ensemble in predict."""
import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.cli import app
from pipeline.config import TrainConfig
from pipeline.cv import train_cv
from pipeline.dataset import fold_split
from pipeline.errors import PipelineError
from pipeline.predict import predict
from pipeline.run import CrossValidation
from pipeline.train import resume
from tests.fixtures import QUICK, dead_pid, runner

CV = dict(epochs=1, folds=3, **QUICK)


def test_fold_split_puts_each_image_in_one_val_fold_stratified_and_seeded():
    targets = np.repeat(np.arange(4), [30, 31, 32, 40])
    vals = [fold_split(targets, 3, i, seed=5)[1] for i in range(3)]
    assert np.array_equal(np.sort(np.concatenate(vals)), np.arange(len(targets)))
    for i, val in enumerate(vals):
        train, _ = fold_split(targets, 3, i, seed=5)
        assert np.intersect1d(train, val).size == 0 and len(train) + len(val) == len(targets)
        counts = np.bincount(targets[val], minlength=4)
        assert (np.abs(counts - np.bincount(targets) / 3) <= 1).all()
    assert np.array_equal(fold_split(targets, 3, 1, seed=5)[1], vals[1])
    assert not np.array_equal(fold_split(targets, 3, 1, seed=6)[1], vals[1])
    with pytest.raises(PipelineError, match=r"3 stratified folds: class\(es\) 'b' \(2\) have fewer images than folds"):
        fold_split(np.array([0, 0, 0, 1, 1]), 3, 0, seed=0, classes=["a", "b"])


@pytest.mark.parametrize("options, message", [
    (dict(fold=1), "--fold 1 needs --folds K"),
    (dict(folds=1), "--folds must be between 2 and 100, got 1"),
    (dict(folds=3, fold=3), r"--fold must be one of 0 … 2 for --folds 3, got 3"),
    (dict(folds=3, full=True), "--folds validates each fold on its held-out part: it cannot take --full"),
])
def test_bad_fold_options(options, message):
    with pytest.raises(PipelineError, match=message):
        TrainConfig(**options).validate()


def test_cv_trains_every_fold_and_gathers_out_of_fold_predictions(fetched):
    cv, summary = train_cv(TrainConfig(**CV))
    assert cv.path == fetched / "weights" / "cv"
    labeled = len(pd.read_csv(fetched / "dataset" / "trainLabels.csv"))
    indices, targets, probabilities = CrossValidation(cv.path).gathered()[0]
    assert np.array_equal(indices, np.arange(labeled))  # every labeled image, once
    assert np.allclose(probabilities.sum(1), 1, atol=1e-4)
    assert summary["oof"]["accuracy"] == pytest.approx(float((probabilities.argmax(1) == targets).mean()))
    for i, fold in enumerate(summary["per_fold"]):
        metrics = pd.read_csv(cv.fold(i).path / "metrics.csv")
        assert fold["accuracy"] == pytest.approx(metrics["val_acc"].max())  # each fold's best checkpoint
    assert summary["mean"]["accuracy"] == pytest.approx(np.mean([f["accuracy"] for f in summary["per_fold"]]))
    if importlib.util.find_spec("cleanlab"):  # an optional dependency (Kaggle's image lacks it)
        issues = pd.read_csv(cv.path / "label_issues.csv", dtype={"id": str})
        assert list(issues.columns) == ["id", "given", "suggested", "given_probability", "suggested_probability"]
        labels = pd.read_csv(fetched / "dataset" / "trainLabels.csv", dtype={"id": str}).set_index("id")["label"]
        assert (issues["given"] == labels[issues["id"]].to_numpy()).all()
    assert CrossValidation(cv.path).gathered()[1] == summary
    assert json.loads((cv.path / "cv_summary.json").read_text()) == summary  # the copy for the user
    assert all(np.array_equal(np.load(cv.oof)[name], saved)
               for name, saved in zip(("indices", "targets", "probabilities"), (indices, targets, probabilities)))


def test_folds_trained_apart_are_gathered_and_match_one_go(fetched, tmp_path):
    _, together = train_cv(TrainConfig(**CV, name="together"))
    elsewhere = tmp_path / "other-machine"
    _, partial = train_cv(TrainConfig(**CV, fold=2, name="apart"), weights_root=elsewhere)
    assert partial is None
    _, partial = train_cv(TrainConfig(**CV, fold=0, name="apart"))
    assert partial is None
    shutil.copytree(elsewhere / "apart" / "fold-2", fetched / "weights" / "apart" / "fold-2")  # gathered by hand
    cv, apart = train_cv(TrainConfig(**CV, fold=1, name="apart"))
    assert apart["per_fold"] == together["per_fold"] and apart["oof"] == together["oof"]  # seeded: the same folds
    with pytest.raises(PipelineError, match="holds a cross-validation with other options or folds"):
        train_cv(TrainConfig(**{**CV, "lr": 0.05}, fold=0, name="apart"))
    _, again = train_cv(TrainConfig(**CV, name="apart"))  # nothing left to train: the summary again
    assert again == apart


def test_predict_with_a_cv_averages_its_fold_models(fetched):
    cv, _ = train_cv(TrainConfig(**{**CV, "folds": 2}))
    by_cv = predict(runs=[cv.path], tta="none", out=fetched / "submissions" / "cv.csv")
    predict(checkpoints=[cv.fold(0).best, cv.fold(1).best], tta="none", out=fetched / "submissions" / "hand.csv")
    assert by_cv.members == ["cv-fold-0.probs.npy", "cv-fold-1.probs.npy"]
    pd.testing.assert_frame_equal(pd.read_csv(fetched / "submissions" / "cv.csv"),
                                  pd.read_csv(fetched / "submissions" / "hand.csv"))


def test_cv_from_the_command_line(fetched):
    done = subprocess.run([sys.executable, "-m", "pipeline", "train", "--folds", "2", "--epochs", "1", "--batch-size",
                           "32", "--workers", "0", "--name", "cli-cv"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    out = " ".join(done.stdout.split())
    assert "2-fold CV on 400 labeled images" in out and "out-of-fold: accuracy" in out
    assert "pipeline predict --run cli-cv" in out


@pytest.mark.smoke
def test_blend_weights_fitted_on_out_of_fold_predictions(tmp_path):
    from pipeline.blend import blend_weights, fit_blend
    from pipeline.run import claim_cv

    rng = np.random.default_rng(0)
    targets = rng.integers(0, 3, 300)
    good = np.full((300, 3), 0.1)
    good[np.arange(300), targets] = 0.8
    noise = rng.dirichlet(np.ones(3), 300)  # knows nothing
    fitted = blend_weights(targets, [good, noise])
    assert fitted.weights[0] > 0.9 and sum(fitted.weights) == pytest.approx(1)
    assert fitted.blended["log_loss"] < fitted.equal["log_loss"]
    assert fitted.blended["accuracy"] >= fitted.equal["accuracy"]
    first, _ = claim_cv(tmp_path, "good", {"folds": 2, "seed": 42})
    reseeded, _ = claim_cv(tmp_path, "reseeded", {"folds": 2, "seed": 7})  # the same images, other folds
    with pytest.raises(PipelineError, match=r"reseeded: 2 folds split by --seed 7, and .*good: 2 by --seed 42; blend "
                                            r"cross-validations of the same folds: train one again with --folds 2 --seed 42"):
        fit_blend([first, reseeded])


def test_ensemble_of_cvs_blended_on_their_oof(fetched):
    from pipeline.predict import ensemble

    for name, lr in (("cva", 0.02), ("cvb", 0.05)):
        cv, _ = train_cv(TrainConfig(**{**CV, "folds": 2, "lr": lr}, name=name))
        predict(runs=[cv.path], tta="none")
    equal = ensemble([Path("cva"), Path("cvb")])
    assert equal.members == ["cva-fold-0.probs.npy", "cva-fold-1.probs.npy", "cvb-fold-0.probs.npy",
                             "cvb-fold-1.probs.npy"]
    done = subprocess.run([sys.executable, "-m", "pipeline", "ensemble", "cva", "cvb", "--blend", "oof"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "blend weights fitted on out-of-fold predictions: cva " in " ".join(done.stdout.split())
    refused = subprocess.run([sys.executable, "-m", "pipeline", "ensemble", "cva", "nope", "--blend", "oof"],
                             capture_output=True, text=True, timeout=300)
    assert refused.returncode == 1 and refused.stderr.startswith("error: nope: --blend oof fits weights on out-of-fold")


def test_runs_lists_fold_runs_and_each_cv_summary(fetched):
    train_cv(TrainConfig(**{**CV, "folds": 2}, name="listed"))
    train_cv(TrainConfig(**{**CV, "folds": 2}, fold=0, name="half"))
    done = subprocess.run([sys.executable, "-m", "pipeline", "runs"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    out = " ".join(done.stdout.split())
    assert "listed/fold-0" in out and "listed/fold-1" in out and "half/fold-0" in out
    assert "cross-validation listed (2 folds): out-of-fold accuracy 0." in out
    assert re.search(r"cross-validation half \(2 folds\): 1 of 2 folds finished; .*half/fold-1: fold 1 of 2 is not trained; train it with `pipeline train --config .*half --fold 1 --name half`", out)
    labels = pd.read_csv(fetched / "dataset" / "trainLabels.csv")  # pass 37: re-fetched data, found only once trained
    labels.loc[:9, "label"] = labels.loc[:9, "label"].iloc[::-1].to_numpy()
    labels.to_csv(fetched / "dataset" / "trainLabels.csv", index=False)
    with pytest.raises(PipelineError, match=r"half/fold-0: fold 0 was trained on other labeled images than"):
        train_cv(TrainConfig(**{**CV, "folds": 2}, fold=1, name="half"))
    assert not (fetched / "weights" / "half" / "fold-1").exists()  # refused before training


def test_a_cv_records_its_metric_takes_up_older_plans_and_refuses_folds_ranked_by_different_metrics(fetched):
    import json

    from pipeline.cv import gather
    from pipeline.run import claim_cv

    cv, summary = train_cv(TrainConfig(**{**CV, "folds": 2}))
    assert cv.read_plan()["metric"] == summary["metric"] == "accuracy"  # the description's, resolved before the plan
    older = {k: v for k, v in cv.read_plan().items() if k != "metric"}  # a plan from before --metric
    cv.write_plan(older)
    assert claim_cv(cv.path.parent, cv.name, {**older, "metric": "accuracy"})[0].path == cv.path
    config = cv.fold(1).path / "config.json"
    saved = json.loads(config.read_text())
    saved["options"]["metric"] = "f1_macro"  # as a fold trained under another description would have it
    config.write_text(json.dumps(saved))
    with pytest.raises(PipelineError, match=r"its folds were trained with different --metric \(fold 0: accuracy, fold 1: f1_macro\)"):
        gather(cv)


def test_a_first_fold_that_fails_leaves_no_cv_behind(fetched):
    (fetched / "bad.pth").write_text("not weights")
    with pytest.raises(PipelineError, match="bad.pth: not a readable PyTorch file"):
        train_cv(TrainConfig(**{**CV, "folds": 2}, pretrained=str(fetched / "bad.pth"), name="cv"))
    assert not (fetched / "weights" / "cv").exists()  # so the corrected command is not refused as another plan
    (fetched / "weights" / "cv").mkdir()  # as 0.2.0 left one: a plan and no fold
    (fetched / "weights" / "cv" / "cv.json").write_text(json.dumps({"folds": 2, "lr": 0.5}))
    _, summary = train_cv(TrainConfig(**{**CV, "folds": 2}, name="cv"))
    assert summary["folds"] == 2 and CrossValidation(fetched / "weights" / "cv").read_plan()["lr"] == CV["lr"]


def edit_json(path, change):
    saved = json.loads(path.read_text())
    change(saved)
    path.write_text(json.dumps(saved))


CV_EDITS = {  # what happens to a copy of a finished 2-fold CV, and what reading it then says
    "crashed": (lambda cv: cv.fold(1).set_status("running", pid=dead_pid()),
                r"fold-1: fold 1 is crashed; continue it with `pipeline train --resume .*fold-1`"),
    "failed": (lambda cv: cv.fold(0).set_status("failed"), r"fold-0: fold 0 is failed; continue it with"),
    "no-best": (lambda cv: cv.fold(1).best.unlink(),
                r"fold-1: fold 1 has no best.pt; delete .*fold-1 and train it again with `pipeline train --config "
                r".*no-best --fold 1 --name no-best`"),
    "no-fold": (lambda cv: shutil.rmtree(cv.fold(0).path), r"fold 0 of 2 is not trained; train it with"),
    "no-last": (lambda cv: cv.fold(1).last.unlink(),  # pass 35: called failed "before its first checkpoint"
                r"fold-1: fold 1 is \w+, and its last.pt is missing beside its best.pt \(moved or deleted\?\); "
                r"restore last.pt, or delete"),
    "plan-lr": (lambda cv: edit_json(cv.path / "cv.json", lambda plan: plan.update(lr=0.5)),
                r"plan-lr/cv.json: its folds were trained with --lr 0.02 \(cv.json: 0.5\) \(cv.json edited by hand\?\); "
                r"restore lr in it"),
    "plan-folds": (lambda cv: edit_json(cv.path / "cv.json", lambda plan: plan.update(folds=3)),
                   r"fold-0: holds fold 0 of 2, not fold 0 of 3 as cv.json says"),
    "fold-seed": (lambda cv: edit_json(cv.fold(1).path / "config.json", lambda run: run["options"].update(seed=7)),
                  r"fold 1 was trained with other options than .* --seed 7 \(plan: 42\)"),
    "fold-data": (lambda cv: edit_json(cv.fold(1).path / "config.json", lambda run: run.update(labeled_ids="0" * 64)),
                  r"its folds were trained on different labeled images"),
    "best-swapped": (lambda cv: shutil.copyfile(cv.fold(1).best, cv.fold(0).best),
                     r"fold-0/best.pt: not the checkpoint of this fold \(it was trained as fold 1 of 2\); delete"),
    "seed-everywhere": (lambda cv: [edit_json(path, change) for path, change in (
        (cv.path / "cv.json", lambda plan: plan.update(seed=7)),
        (cv.fold(0).path / "config.json", lambda run: run["options"].update(seed=7)),
        (cv.fold(1).path / "config.json", lambda run: run["options"].update(seed=7)))],
        r"fold-0/best.pt: not the checkpoint of this fold \(it says --seed 42 where config.json says 7\)"),
    "plain-run": (lambda cv: edit_json(cv.fold(1).path / "config.json", lambda run: run["options"].update(folds=None, fold=None)),
                  r"fold-1: holds a run of no cross-validation, not fold 1 of 2 as cv.json says; delete .*fold-1 and "
                  r"train it again with"),
    "status-empty": (lambda cv: (cv.fold(0).path / "status.json").write_text(""),
                     r"fold-0: fold 0 has no readable status.json, which says whether it finished; delete"),
}


def test_a_cv_is_used_only_when_it_is_what_its_plan_says(fetched):
    cv, _ = train_cv(TrainConfig(**{**CV, "folds": 2}, name="cv"))
    for name, (edit, message) in CV_EDITS.items():
        shutil.copytree(cv.path, fetched / "weights" / name)
        edit(CrossValidation(fetched / "weights" / name))
        with pytest.raises(PipelineError, match=message):
            predict(runs=[Path(name)], tta="none", out=fetched / "submissions" / f"{name}.csv")
        assert not (fetched / "submissions" / f"{name}.csv").exists()
        listed = runner.invoke(app, ["runs"])
        assert listed.exit_code == 0 and f"cross-validation {name}" in listed.output, name
        assert re.search(message, " ".join(listed.output.split())), name
    compared = runner.invoke(app, ["compare", "plan-folds"])  # before, fold-2's missing config.json
    assert compared.exit_code == 1 and re.search(CV_EDITS["plan-folds"][1], " ".join(compared.output.split()))
    extra = fetched / "weights" / "extra"  # a fold beyond the plan's (its cv.json edited down): before, left out
    shutil.copytree(cv.path, extra)
    shutil.copytree(extra / "fold-1", extra / "fold-2")
    compared = runner.invoke(app, ["compare", "extra"])
    assert compared.exit_code == 1 and "fold-2: holds fold 1 of 2, not one of the 2 folds as cv.json says" in \
        " ".join(compared.output.split()), compared.output
    shutil.rmtree(extra / "fold-2")
    shutil.copytree(extra / "fold-1", extra / "fold-01")  # a stray copy: no fold of the plan, as predict reads it
    compared = runner.invoke(app, ["compare", "extra"])
    assert compared.exit_code == 0 and "fold-01" not in compared.output and "fold-1" in compared.output, compared.output
    with pytest.raises(PipelineError, match=CV_EDITS["no-best"][1]):  # not "already trained"
        train_cv(TrainConfig(**{**CV, "folds": 2}, fold=1, name="no-best"))
    shutil.rmtree(fetched / "weights" / "no-best" / "fold-1")  # as the advice says
    again = runner.invoke(app, ["train", "--config", "weights/no-best", "--fold", "1", "--name", "no-best"])
    assert again.exit_code == 0, again.output
    assert "2-fold CV on 400 labeled images" in " ".join(again.output.split())
    assert predict(runs=[Path("no-best")], tta="none").members == ["no-best-fold-0.probs.npy", "no-best-fold-1.probs.npy"]
    lost = fetched / "weights" / "lost"  # a plan that lost an option to a hand edit: refused before a fold trains
    shutil.copytree(cv.path, lost)
    edit_json(lost / "cv.json", lambda plan: plan.pop("lr"))
    shutil.rmtree(lost / "fold-1")
    again = runner.invoke(app, ["train", "--config", "weights/lost", "--fold", "1", "--name", "lost"])
    assert again.exit_code == 1 and "fold-0: fold 0 was trained with --lr 0.02, and this fold would be trained with " \
        in " ".join(again.output.split()) and not (lost / "fold-1" / "best.pt").exists(), again.output
    edit_json(cv.path / "cv.json", lambda plan: plan.update(seed="42"))  # as the command line reads `--seed 42`
    assert predict(runs=[cv.path], tta="none").rows == 40
    with pytest.raises(PipelineError, match=r"cv: a cross-validation; resume one of its folds, `pipeline train "
                                            r"--resume .*cv/fold-I`"):
        resume(cv.path)
    (cv.path / "oof.npz").unlink()
    listed = runner.invoke(app, ["runs"])
    assert "its oof.npz and cv_summary.json are not written: `pipeline train --config" in " ".join(listed.output.split())
    gathered = runner.invoke(app, ["train", "--config", str(cv.path), "--name", "cv"])
    assert gathered.exit_code == 0 and "fold 1: already trained" in gathered.output
    assert np.load(cv.oof)["indices"].size == 400


def test_predictions_are_used_only_with_the_checkpoint_that_made_them(fetched):
    """A run named like a CV's fold label does not overwrite that fold's probability file; a fold retrained since its
    prediction, or classes edited in a prediction's .json: each is one line, never an ensemble of the wrong files."""
    from pipeline.predict import ensemble
    from pipeline.train import train

    cv, _ = train_cv(TrainConfig(**{**CV, "folds": 2}, name="cv"))
    predict(runs=[cv.path], tta="none")
    train(TrainConfig(epochs=1, **{**QUICK, "lr": 0.1}, name="cv-fold-0"))
    with pytest.raises(PipelineError, match=r"cv-fold-0.probs.json: holds the predictions of .*weights/cv/fold-0/"
                                            r"best.pt, another model of the same label \(cv-fold-0\)"):
        predict(runs=[Path("cv-fold-0")], tta="none")  # would replace the fold's probability file
    assert ensemble([Path("cv")]).rows == 40
    meta = fetched / "submissions" / "cv-fold-1.probs.json"
    edit_json(meta, lambda saved: saved.update(classes=saved["classes"][::-1]))
    with pytest.raises(PipelineError, match=r"cv-fold-1.probs.npy: not the array cv-fold-1.probs.json describes, or "
                                            r"cv-fold-1.probs.json was edited since"):
        ensemble([Path("cv")])
    predict(runs=[cv.path], tta="none")
    import torch

    from pipeline.run import load_checkpoint
    resaved = load_checkpoint(cv.fold(1).best)
    resaved["model"] = {key: value.clone() + (0.01 if value.is_floating_point() else 0)
                        for key, value in resaved["model"].items()}  # trained on since: other weights
    cv.fold(1).best.unlink()  # a new file, not a write through the hard link to the epoch's
    torch.save(resaved, cv.fold(1).best)
    with pytest.raises(PipelineError, match=r"cv-fold-1.probs.npy: .*fold-1/best.pt has changed since it predicted "
                                            r"this; predict again"):
        ensemble([Path("cv")])


def test_gathered_files_are_of_the_folds_and_labels_they_claim(fetched):
    """Inputs of the third and fourth hostile passes: a CV's oof.npz or summary edited, or re-saved without what
    they were gathered from (never read: a CV's scores and blends are gathered anew from its folds); a fold's val
    predictions copied from elsewhere or edited in place; its best.pt replaced by its last.pt; labels changed since
    the folds trained; folds predicted with different TTA."""
    from pipeline.predict import ensemble
    import torch

    from pipeline.run import load_checkpoint, read_predictions, write_predictions

    cv, summary = train_cv(TrainConfig(**{**CV, "folds": 2}, name="cv"))
    indices, targets, probabilities = read_predictions(cv.oof, "")
    write_predictions(cv.oof, indices, targets, probabilities[:, ::-1])
    edit_json(cv.path / "cv_summary.json", lambda saved: [saved[part].update(accuracy=0.99) for part in ("oof", "mean")])
    assert cv.gathered()[1] == summary and np.array_equal(cv.gathered()[0][2], probabilities)
    assert "out-of-fold accuracy 0.99" not in " ".join(runner.invoke(app, ["runs"]).output.split())
    val = cv.fold(1).path / "val_probabilities.npz"
    kept = val.read_bytes()
    fold_indices, fold_targets, fold_probabilities = read_predictions(val, "")
    edited = fold_probabilities.copy()
    edited[0] = edited[0, ::-1]
    for changed in ((fold_indices, fold_targets, edited), (fold_indices, fold_targets[::-1], fold_probabilities)):
        write_predictions(val, *changed)  # in place, key or none
        with pytest.raises(PipelineError, match=r"fold-1/val_probabilities.npz: not the val predictions of "
                                                r".*fold-1/best.pt as it is now \(edited"):
            train_cv(TrainConfig(**{**CV, "folds": 2}, name="cv"))  # gathering again
    write_predictions(val, fold_indices, fold_targets, fold_probabilities)  # the same, re-saved without its key
    assert cv.gathered()[1] == summary
    shutil.copyfile(cv.fold(0).path / "val_probabilities.npz", val)
    with pytest.raises(PipelineError, match=r"fold-1/val_probabilities.npz: not the val predictions of .*fold-1/best.pt"):
        train_cv(TrainConfig(**{**CV, "folds": 2}, name="cv"))
    val.write_bytes(kept)
    best = cv.fold(1).best.read_bytes()
    later = load_checkpoint(cv.fold(1).best)
    later["epoch"] += 1  # a later epoch's checkpoint (last.pt) where the best one was
    cv.fold(1).best.unlink()  # a new file, not a write through the hard link to last.pt
    torch.save(later, cv.fold(1).best)
    with pytest.raises(PipelineError, match=r"fold-1/best.pt: not the checkpoint of this fold \(it holds epoch 2, not "
                                            r"the fold's best epoch 1 \(another epoch's checkpoint copied over it\?\)\)"):
        predict(runs=[cv.path], tta="none")
    cv.fold(1).best.unlink()
    cv.fold(1).best.write_bytes(best)
    earlier = load_checkpoint(cv.fold(1).best)
    earlier["epoch"] = earlier["best_epoch"] = 0  # an earlier epoch's, saved when it was the best so far (top/)
    cv.fold(1).best.unlink()
    torch.save(earlier, cv.fold(1).best)
    with pytest.raises(PipelineError, match=r"it holds epoch 0, not the fold's best epoch 1"):
        predict(runs=[cv.path], tta="none")
    cv.fold(1).best.unlink()
    cv.fold(1).best.write_bytes(best)
    val.unlink()
    with pytest.raises(PipelineError, match=r"fold-1/val_probabilities.npz: not found; delete .*fold-1 and train it "
                                            r"again \(the fold: `pipeline train --config .*cv --fold 1 --name cv`\)"):
        predict(runs=[cv.path], tta="none")
    val.write_bytes(kept[:300])  # truncated: the same advice (before, "train again", which says "already trained")
    with pytest.raises(PipelineError, match=r"fold-1/val_probabilities.npz: unreadable \(.*\); delete .*fold-1 and "
                                            r"train it again \(the fold: `pipeline train --config .*cv --fold 1"):
        predict(runs=[cv.path], tta="none")
    val.write_bytes(kept)
    exported = runner.invoke(app, ["export", "cv"])
    assert exported.exit_code == 1 and "cv: a cross-validation, not one run; name one of its folds (cv/fold-I)" in \
        " ".join(exported.output.split())
    labels = pd.read_csv(fetched / "dataset" / "trainLabels.csv")
    labels.loc[:9, "label"] = labels.loc[:9, "label"].iloc[::-1].to_numpy()
    labels.to_csv(fetched / "dataset" / "trainLabels.csv", index=False)
    with pytest.raises(PipelineError, match=r"fold-0: fold 0 was trained on other labeled images than .*dataset holds "
                                            r"now"):
        train_cv(TrainConfig(**{**CV, "folds": 2}, name="cv"))
    labels.loc[:9, "label"] = labels.loc[:9, "label"].iloc[::-1].to_numpy()
    labels.to_csv(fetched / "dataset" / "trainLabels.csv", index=False)
    predict(runs=[cv.path], tta="none")
    predict(checkpoints=[cv.fold(1).best], tta="flip")  # fold 1 again, another way
    with pytest.raises(PipelineError, match=r"cv: its folds' predictions were made with different --tta \(flip, none\)"):
        ensemble([Path("cv")])
    predict(runs=[cv.path], tta="none")
    shutil.copyfile(fetched / "submissions" / "cv-fold-1.probs.npy", fetched / "submissions" / "cv.probs.npy")
    shutil.copyfile(fetched / "submissions" / "cv-fold-1.probs.json", fetched / "submissions" / "cv.probs.json")
    assert ensemble([Path("cv")]).members == ["cv-fold-0.probs.npy", "cv-fold-1.probs.npy"]  # the CV, not cv.probs.npy
    assert ensemble([Path("cv/fold-0"), Path("cv/fold-1")]).members == ["cv-fold-0.probs.npy", "cv-fold-1.probs.npy"]
    with pytest.raises(PipelineError, match=r"cv/fold-3: no trained fold of cv has that name \(its folds: fold-0, "
                                            r"fold-1\); name one of those"):
        ensemble([Path("cv/fold-0"), Path("cv/fold-3")])
    with pytest.raises(PipelineError, match=r"the same model as"):
        predict(runs=[cv.path, cv.fold(0).path], tta="none")
    (cv.path / "cv.json").unlink()
    with pytest.raises(PipelineError, match=r"cv: holds fold runs but no cv.json"):
        predict(runs=[cv.path], tta="none")
