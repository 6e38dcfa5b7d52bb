import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from pipeline.config import TrainConfig
from pipeline.errors import PipelineError
from pipeline.experiments import list_runs
from pipeline.run import load_checkpoint
from pipeline.distributed import Ranks
from pipeline.models import build_model
from pipeline.runtime import Runtime
from pipeline.train import resume, restore_optimizer, restore_rng, all_rng_states, train
from tests.fixtures import CLASSES, QUICK

TIMING = ["seconds", "wall_s", "images_per_s"]


def test_run_folder_holds_everything(fetched):
    result = train(TrainConfig(epochs=2, milestones=[1], **QUICK))
    run = fetched / "weights" / "exp"
    assert result.run_dir == run
    config = json.loads((run / "config.json").read_text())
    assert config["classes"] == sorted(CLASSES)
    assert config["options"]["milestones"] == [1] and config["options"]["name"] == "exp"
    assert config["split"] == {"seed": 42, "val_fraction": 0.2, "train_images": 320, "val_images": 80}
    assert {"torch", "torchvision", "python", "pipeline"} <= config["versions"].keys()
    assert config["device"] == "cpu"
    metrics = pd.read_csv(run / "metrics.csv")
    assert list(metrics.columns) == ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "val_f1", "val_score",
                                     "lr", "seconds", "wall_s", "images_per_s"]
    assert config["options"]["metric"] == "accuracy"  # the competition's, recorded for --resume and `pipeline runs`
    assert metrics["val_score"].tolist() == metrics["val_acc"].tolist()
    assert metrics["epoch"].tolist() == [1, 2] and metrics["lr"].tolist() == pytest.approx([0.02, 0.002])
    assert list((run / "tb").glob("events.out.tfevents.*"))
    best = load_checkpoint(run / "best.pt")
    assert best["epoch"] == result.best_epoch and best["best_score"] == result.best_score
    assert metrics["val_acc"].max() == pytest.approx(result.best_score, abs=1e-6)
    assert f"{result.best_score:.4f} at epoch {result.best_epoch}" in (run / "result.txt").read_text()
    assert {"model", "optimizer", "scheduler", "epoch", "rng", "config"} <= load_checkpoint(run / "last.pt").keys()


def test_runs_are_numbered_and_names_are_not_reused(fetched):
    config = dict(epochs=1, limit=40, **QUICK)
    assert train(TrainConfig(**config)).run_dir.name == "exp"
    assert train(TrainConfig(**config)).run_dir.name == "exp2"
    assert train(TrainConfig(name="mine", **config)).run_dir.name == "mine"
    with pytest.raises(PipelineError, match="mine already exists"):
        train(TrainConfig(name="mine", **config))


def test_same_seed_same_metrics(fetched):
    runs = [train(TrainConfig(epochs=2, name=f"r{k}", **QUICK)).run_dir for k in range(2)]
    first, second = (pd.read_csv(r / "metrics.csv").drop(columns=TIMING) for r in runs)
    pd.testing.assert_frame_equal(first, second)


def test_learns_well_above_chance(fetched):
    result = train(TrainConfig(epochs=3, **QUICK))
    assert result.best_score >= 0.6  # 4 classes: chance is 0.25


def test_resume_after_kill_matches_uninterrupted_run(fetched):
    args = ["--epochs", "4", "--batch-size", "32", "--workers", "0", "--lr", "0.02", "--milestones", "2", "3"]
    straight = train(TrainConfig(epochs=4, milestones=[2, 3], name="straight", **QUICK)).run_dir
    process = subprocess.Popen([sys.executable, "-m", "pipeline", "train", "--name", "killed", *args],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = fetched / "weights" / "killed" / "last.pt"
    deadline = time.monotonic() + 120
    while not last.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    interrupted_at = load_checkpoint(last)["epoch"]
    assert interrupted_at < 4
    assert list_runs().set_index("run").loc["killed", "status"] == "crashed"
    resume(fetched / "weights" / "killed")
    expected, got = load_checkpoint(straight / "last.pt"), load_checkpoint(last)
    assert got["epoch"] == 4
    for key, tensor in expected["model"].items():
        assert torch.equal(tensor, got["model"][key]), key
    assert expected["optimizer"]["state"][0]["momentum_buffer"].equal(got["optimizer"]["state"][0]["momentum_buffer"])
    history = pd.read_csv(fetched / "weights" / "killed" / "metrics.csv").drop(columns=TIMING)
    pd.testing.assert_frame_equal(history, pd.read_csv(straight / "metrics.csv").drop(columns=TIMING))


def test_a_run_stopped_while_drawing_its_report_is_not_finished_and_resume_finishes_it(fetched, monkeypatch):
    from pipeline import train as training
    from pipeline.run import Run

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patched, pytest.raises(OSError):
        patched.setattr(training, "draw_report", full_disk)
        train(TrainConfig(epochs=1, limit=40, name="report", **QUICK))
    run = Run(fetched / "weights" / "report")
    assert run.read_status()["state"] == "failed" and not (run.path / "report.md").exists()
    assert list_runs().set_index("run").loc["report", "status"].startswith("failed")
    resume(run.path)  # no epoch left: it draws the report and finishes
    assert run.read_status()["state"] == "finished" and (run.path / "report.md").is_file()
    assert load_checkpoint(run.last)["epoch"] == 1 and len(pd.read_csv(run.path / "metrics.csv")) == 1
    assert run.read_val_probabilities()[0].size == 8  # best.pt's, scored again
    with pytest.raises(PipelineError, match="already finished its 1 epochs"):
        resume(run.path)


def test_resume_extends_epochs_and_refuses_other_changes(fetched):
    run = train(TrainConfig(epochs=1, limit=40, **QUICK)).run_dir
    with pytest.raises(PipelineError, match="already finished its 1 epochs; pass --epochs N"):
        resume(run)
    with pytest.raises(PipelineError, match="--lr cannot change when resuming"):
        resume(run, {"lr": 0.1, "epochs": 2})
    assert resume(run, {"epochs": 2}).run_dir == run
    assert pd.read_csv(run / "metrics.csv")["epoch"].tolist() == [1, 2]
    with pytest.raises(PipelineError, match="nope: no such run"):
        resume(fetched / "weights" / "nope")
    assert resume(Path(run.name), {"epochs": 3}).run_dir == run  # a run's name under weights/ will do


def test_torchvision_model_with_pretrained_file(fetched):
    import torchvision
    torch.save(torchvision.models.resnet18().state_dict(), fetched / "r18.pth")
    result = train(TrainConfig(model="torchvision", stem="improved", pretrained=str(fetched / "r18.pth"),
                               epochs=1, limit=40, **QUICK))
    assert json.loads((result.run_dir / "config.json").read_text())["options"]["model"] == "torchvision"


@pytest.mark.parametrize("options, message", [
    (dict(milestones=[60, 30]), "--milestones must be increasing"),
    (dict(epochs=0), "--epochs must be between 1 and 100000, got 0"),
    (dict(epochs=10**23), "--epochs must be between 1 and 100000, got 100000000000000000000000"),
    (dict(device="gpu", epochs=1), "--device 'gpu': expected auto, cpu, cuda or cuda:N"),
])
def test_bad_options_are_clear(fetched, options, message):
    with pytest.raises(PipelineError, match=message):
        train(TrainConfig(**options))
    assert not list((fetched / "weights").glob("*"))  # no empty run folder left behind


def test_cuda_requested_without_cuda(fetched):
    with pytest.raises(PipelineError, match="no CUDA device is available; use --device cpu"):
        train(TrainConfig(device="cuda", epochs=1))


def test_recipes_and_explicit_flags():
    from pipeline.config import DEFAULT_RECIPE, RECIPES, config_from
    seed_command = config_from({"stem": "improved", "lr": 0.01, "milestones": [30, 60, 90]})
    assert (seed_command.recipe, seed_command.epochs, seed_command.schedule, seed_command.batch_size) == (
        "seed", 100, "step", 128)
    fast = config_from({"recipe": "fast", "lr": 0.1})
    assert fast.lr == 0.1 and all(getattr(fast, k) == v for k, v in RECIPES["fast"].items() if k != "lr")
    assert config_from({}).recipe == DEFAULT_RECIPE == "fastnet" and config_from({}).model == "fastnet"
    # a ResNet's schedule, model, weights or stem typed without --recipe picks the seed recipe
    for given in ({"milestones": [5]}, {"model": "resnet34"}, {"pretrained": "w.pth"}, {"stem": "cifar"}):
        assert (config_from(given).recipe, config_from(given).epochs) == ("seed", 100), given
    assert config_from({"model": "fastnet"}).recipe == "fastnet"  # a model with its own recipe
    with pytest.raises(PipelineError, match="--stem improved applies to the ResNets, not fastnet"):
        config_from({"recipe": "fastnet", "stem": "improved"}).validate()
    with pytest.raises(PipelineError, match="--milestones needs --schedule step"):
        config_from({"recipe": "fast", "milestones": [5]}).validate()
    with pytest.raises(PipelineError, match=r"--target-acc 1.5: a val accuracy in \(0, 1\]"):  # before, --full named
        config_from({"target_acc": 1.5}).validate()
    with pytest.raises(PipelineError, match="--target-acc needs a validation split: drop --full"):
        config_from({"target_acc": 0.5, "full": True}).validate()


def test_fast_recipe_learns_in_seconds(fetched):
    from pipeline.config import config_from
    # the fast recipe's schedule, EMA, label smoothing, Nesterov and cutout, sized for a CPU test
    config = config_from({"recipe": "fast", "stem": "imagenet", "epochs": 4, "batch_size": 32, "lr": 0.05,
                          "workers": 0})
    result = train(config)
    assert result.best_score >= 0.6  # 4 classes: chance is 0.25
    best = load_checkpoint(result.run_dir / "best.pt")
    assert "ema" in best and best["ema"].keys() == best["model"].keys()
    with pytest.raises(PipelineError, match="finished its onecycle schedule, which spans its epochs"):
        resume(result.run_dir, {"epochs": 6})


@pytest.mark.parametrize("augmentation", [dict(aug="trivial", erase=0.25, mixup=0.2, cutmix=1.0),
                                          dict(aug="shift-altflip")])
def test_mixed_and_strong_augmentation_learns_and_resumes_exactly(fetched, augmentation):
    strong = dict(**augmentation, **QUICK)
    straight = train(TrainConfig(epochs=4, name="straight", **strong))
    assert straight.best_score >= 0.5  # 4 classes: chance is 0.25
    train(TrainConfig(epochs=2, name="resumed", **strong))
    resume(fetched / "weights" / "resumed", {"epochs": 4})  # epochs 3 and 4 draw what they drew in one go
    expected, got = (load_checkpoint(fetched / "weights" / run / "last.pt") for run in ("straight", "resumed"))
    for key, tensor in expected["model"].items():
        assert torch.equal(tensor, got["model"][key]), key


def test_alternating_flip_mirrors_the_other_half_each_epoch():
    from pipeline.augment import alternating_flips
    from pipeline.train import TrainBatches
    images = np.random.default_rng(0).integers(0, 256, (100, 8, 8, 3), dtype=np.uint8)
    batches = TrainBatches(TrainConfig(aug="shift-altflip", seed=5, **QUICK), images, np.arange(100) % 4, 4,
                           Runtime(torch.device("cpu")), (0.5,) * 3, (0.2,) * 3)
    flips = [batches.epoch(epoch).flips for epoch in range(3)]
    assert torch.equal(flips[0], alternating_flips(100, 5, 0)) and torch.equal(flips[1], ~flips[0])
    assert torch.equal(flips[2], flips[0])
    assert TrainBatches(TrainConfig(**QUICK), images, np.arange(100) % 4, 4, Runtime(torch.device("cpu")),
                        (0.5,) * 3, (0.2,) * 3).epoch(0).flips is None  # crop-flip flips at random


def test_full_trains_on_everything_without_validation(fetched):
    result = train(TrainConfig(epochs=2, full=True, **QUICK))
    assert result.best_score is None and result.best_epoch == 2
    config = json.loads((result.run_dir / "config.json").read_text())
    assert config["split"]["train_images"] == 400 and config["split"]["val_images"] == 0
    assert pd.read_csv(result.run_dir / "metrics.csv")["val_acc"].isna().all()
    assert load_checkpoint(result.run_dir / "best.pt")["epoch"] == 2
    assert "no validation" in (result.run_dir / "result.txt").read_text()


def test_target_accuracy_stops_early(fetched):
    result = train(TrainConfig(epochs=10, target_acc=0.5, **QUICK))
    metrics = pd.read_csv(result.run_dir / "metrics.csv")
    assert len(metrics) < 10 and metrics["val_acc"].iloc[-1] >= 0.5 and (metrics["val_acc"].iloc[:-1] < 0.5).all()
    assert "time to val accuracy 0.5:" in (result.run_dir / "result.txt").read_text()


@pytest.mark.smoke
@pytest.mark.requires("albumentations")
def test_albumentations_policy_in_workers(fetched):
    result = train(TrainConfig(epochs=1, limit=100, aug="albu-strong", batch_size=32, workers=2))
    assert pd.read_csv(result.run_dir / "metrics.csv")["epoch"].tolist() == [1]


def test_frozen_backbone_trains_only_the_head(fetched):
    import torchvision
    torch.manual_seed(5)
    source = torchvision.models.resnet18()
    torch.save(source.state_dict(), fetched / "r18.pth")
    result = train(TrainConfig(model="torchvision", pretrained=str(fetched / "r18.pth"), freeze_backbone=True,
                               head_dropout=0.5, epochs=1, limit=64, **QUICK))
    trained = load_checkpoint(result.run_dir / "last.pt")["model"]
    for key, tensor in source.state_dict().items():
        if key.startswith("fc."):
            assert not torch.equal(trained[key], torch.zeros_like(trained[key]))
        else:  # weights and BatchNorm statistics alike
            assert torch.equal(trained[key], tensor), key
    options = json.loads((result.run_dir / "config.json").read_text())["options"]
    assert options["freeze_backbone"] and options["head_dropout"] == 0.5
    with pytest.raises(PipelineError, match="--freeze-backbone needs --pretrained"):
        train(TrainConfig(freeze_backbone=True, epochs=1))


def test_img_size_resizes_training_and_prediction(fetched):
    from pipeline.predict import predict
    result = train(TrainConfig(epochs=1, limit=64, img_size=48, **QUICK))
    assert json.loads((result.run_dir / "config.json").read_text())["options"]["img_size"] == 48
    predicted = predict(tta="flip")
    assert predicted.rows == 40
    with pytest.raises(PipelineError, match="--img-size must be between 8 and 1024"):
        train(TrainConfig(img_size=4))


def test_greyscale_competition_end_to_end(project):
    from pipeline.predict import predict
    from tests.fixtures import write_competition
    write_competition(project / "dataset", n_train=400, n_test=30, size=28, grey=True)
    result = train(TrainConfig(epochs=3, **QUICK))
    config = json.loads((result.run_dir / "config.json").read_text())
    assert config["channels"] == 1 and len(config["mean"]) == len(config["std"]) == 1
    assert config["image_size"] == [28, 28]
    # normalisation statistics are the training split's own (4 brightness classes around 0.44)
    assert 0.35 < config["mean"][0] < 0.55 and 0.1 < config["std"][0] < 0.3
    assert result.best_score >= 0.6  # 4 classes: chance is 0.25
    assert predict(tta="flip", score=project / "dataset" / "solution.csv").score >= 0.6


def _stepped_sgd(memory_format: torch.memory_format, fused: bool | None):
    """A small model in `memory_format` and its SGD after one step (momentum buffers in the params' layout)."""
    torch.manual_seed(0)
    model = build_model("custom", 4).to(memory_format=memory_format)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, fused=fused)
    model(torch.randn(2, 3, 32, 32).contiguous(memory_format=memory_format)).sum().backward()
    optimizer.step()
    return model, optimizer


def test_resume_on_another_device_takes_that_devices_optimizer_flags_and_layout():
    # a CUDA run's optimizer (fused, channels_last buffers; fused SGD runs on CPU too) resumed on the CPU
    _, cuda_style = _stepped_sgd(torch.channels_last, fused=True)
    saved = cuda_style.state_dict()
    assert saved["param_groups"][0]["fused"] is True
    assert any(s["momentum_buffer"].dim() == 4 and not s["momentum_buffer"].is_contiguous() for s in saved["state"].values())
    model, optimizer = _stepped_sgd(torch.contiguous_format, fused=None)
    restore_optimizer(optimizer, saved, torch.device("cpu"))
    assert all(group["fused"] is None for group in optimizer.param_groups)
    for index, param in enumerate(model.parameters()):
        buffer = optimizer.state[param]["momentum_buffer"]
        assert buffer.stride() == param.stride()
        assert torch.equal(buffer, saved["state"][index]["momentum_buffer"])
    # the other way: a CPU run resumed on CUDA gets the fused step a new CUDA run has
    _, cpu_style = _stepped_sgd(torch.contiguous_format, fused=None)
    restore_optimizer(cpu_style, saved | {"param_groups": [g | {"fused": None} for g in saved["param_groups"]]},
                      torch.device("cuda"))
    assert all(group["fused"] is True for group in cpu_style.param_groups)


def test_rng_state_is_saved_and_restored_per_rank_and_device(monkeypatch):
    cpu = Runtime(torch.device("cpu"))
    torch.manual_seed(3)
    saved = all_rng_states(cpu)
    assert len(saved) == 1 and saved[0]["cuda"] is None
    expected = torch.rand(3)
    restore_rng(saved, cpu)
    assert torch.equal(torch.rand(3), expected)

    restored = []
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device: restored.append((int(state[0]), device)))
    monkeypatch.setattr(torch, "set_rng_state", lambda state: restored.append((int(state[0]), "cpu")))
    cpu_state = torch.get_rng_state()
    per_rank = [{"cpu": cpu_state, "cuda": torch.tensor([10], dtype=torch.uint8)},
                {"cpu": cpu_state, "cuda": torch.tensor([11], dtype=torch.uint8)}]
    rank1 = Runtime(torch.device("cuda", 1), Ranks(1, 2, 1))
    restore_rng(per_rank, rank1)  # each rank its own snapshot, on its own GPU
    assert restored[-1] == (11, torch.device("cuda", 1))
    restored.clear()
    restore_rng(per_rank[:1], rank1)  # a rank the saved run did not have keeps its seeded state
    assert restored == []
    # a checkpoint of an earlier version saved one state per visible GPU; fewer are visible now
    legacy = {"torch": cpu_state, "cuda": [torch.tensor([20], dtype=torch.uint8)]}
    restore_rng(legacy, Runtime(torch.device("cuda", 0)))
    assert restored[-1] == (20, torch.device("cuda", 0))
    restored.clear()
    restore_rng(legacy, Runtime(torch.device("cuda", 1)))
    assert restored == [(int(cpu_state[0]), "cpu")]  # no saved state for this GPU: the CPU's alone


def test_fastnet_recipe_learns_from_whitened_inputs(fetched):
    from pipeline.config import config_from
    from pipeline.predict import predict
    config = config_from({"recipe": "fastnet", "epochs": 4, "batch_size": 32, "lr": 0.05, "workers": 0,
                          "device": "cpu"})
    result = train(config)
    assert result.best_score >= 0.6  # 4 classes: chance is 0.25
    saved = [load_checkpoint(result.run_dir / name)["model"]["whiten.weight"] for name in ("best.pt", "last.pt")]
    assert torch.equal(*saved)  # set from the training images once, then frozen
    assert not torch.equal(saved[0], build_model("fastnet", 4).state_dict()["whiten.weight"])
    assert "- fastnet, recipe fastnet, from scratch" in (result.run_dir / "report.md").read_text()  # no stem named
    predicted = predict(runs=[result.run_dir], tta="flip", device="cpu", precision="fp32", engine="torch")
    assert predicted.submission.is_file() and predicted.rows == 40
    int8 = subprocess.run([sys.executable, "-m", "pipeline", "predict", "--run", str(result.run_dir), "--precision",
                           "int8", "--device", "cpu"], capture_output=True, text=True, timeout=300)
    assert int8.returncode == 0 and "openvino int8" in int8.stdout, int8.stdout + int8.stderr
    from pipeline.export import export_run
    assert export_run(result.run_dir).path.is_file()  # ONNX, checked against torch with ONNX Runtime


def test_fastnet_wide_recipe_learns_with_its_schedule_lookahead_and_cutout(fetched):
    from pipeline.config import config_from
    config = config_from({"model": "fastnet-wide", "epochs": 3, "limit": 240, "batch_size": 32, "lr": 0.1,
                          "workers": 0, "device": "cpu", "val_tta": "flip-translate"})
    assert (config.recipe, config.schedule, config.lookahead, config.aug) == (
        "fastnet-wide", "triangle", True, "shift4-altflip-cutout")
    result = train(config)
    assert result.best_score >= 0.6  # 4 classes: chance is 0.25
    assert "- fastnet-wide, recipe fastnet-wide, from scratch" in (result.run_dir / "report.md").read_text()
