"""Two CPU processes with the gloo backend on loopback, as torchrun would start them."""
import json
import os
import socket
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from pipeline import distributed, train as training
from pipeline.augment import BATCHED_POLICIES, BatchLoader, alternating_flips
from pipeline.config import TrainConfig
from pipeline.distributed import Ranks, weights_checksum
from pipeline.errors import PipelineError
from pipeline.runtime import Runtime
from pipeline.models import build_model
from pipeline.metrics import metric_score
from pipeline.run import Run, load_checkpoint
from tests.fixtures import QUICK as BASE_QUICK

QUICK = dict(BASE_QUICK, milestones=[1])
JOBS = {
    "train": dict(epochs=2),
    # each rank takes 320 / 2 // (7 // 2) = 53 batches of its DataLoader (its last image dropped: BatchNorm
    # cannot train on one), not ceil(320 / 7) = 46: the one-cycle schedule must be sized by what a rank runs
    "train-albu-onecycle": dict(epochs=1, aug="albu-strong", schedule="onecycle", milestones=[], batch_size=7),
    "train-log-loss": dict(epochs=2, metric="log_loss"),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, world: int, port: int, project: str, job: str, results) -> None:
    """One process of the job: torchrun's environment, then the pipeline's own entry point."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    os.chdir(project)
    torch.set_num_threads(1)
    if job.startswith("train"):
        from pipeline.train import train
        options = dict(QUICK, **JOBS[job])
        result = train(TrainConfig(**options))
        results.put((rank, str(result.run_dir), result.best_score, result.weights_checksum))
    else:
        from pipeline.predict import predict
        result = predict(tta="flip", device="cpu")
        results.put((rank, None if result is None else str(result.submission), None, None))


def run_ranks(project, job: str, world: int = 2) -> list[tuple]:
    context = mp.get_context("spawn")
    results = context.SimpleQueue()
    mp.spawn(_rank_main, args=(world, free_port(), str(project), job, results), nprocs=world, join=True)
    return sorted(results.get() for _ in range(world))


@pytest.mark.parametrize("policy", [BATCHED_POLICIES["crop-flip"], BATCHED_POLICIES["shift-altflip"],
                                    replace(BATCHED_POLICIES["trivial"], erase=0.5, mixup=0.2, cutmix=1.0, classes=52)])
def test_ranks_share_every_global_batch_without_overlap(policy):
    images = torch.rand(52, 3, 8, 8, generator=torch.Generator().manual_seed(0)).mul(255).to(torch.uint8)
    targets = torch.arange(52)  # a last batch of 4: 2 per rank (a smaller one is dropped: BatchNorm needs 2)
    flips = alternating_flips(52, 7, 1) if policy.alternate_flip else None
    make = lambda shard: BatchLoader(images, targets, 16, (0.5,) * 3, (0.25,) * 3, policy,  # noqa: E731
                                     torch.Generator().manual_seed(7), shard=shard, flips=flips)
    single, first, second = list(make((0, 1))), list(make((0, 2))), list(make((1, 2)))
    assert len(first) == len(second) == len(single) == 4
    for (all_x, all_y), (x0, y0), (x1, y1) in zip(single, first, second):
        ids0, ids1 = (y.argmax(1) if y.ndim == 2 else y for y in (y0, y1))  # mixed: an image's larger share
        if not policy.mixup:
            assert set(ids0.tolist()).isdisjoint(ids1.tolist())
            assert sorted(ids0.tolist() + ids1.tolist()) == sorted(all_y.tolist())  # the same images as one process
        assert torch.equal(x0, all_x[0::2]) and torch.equal(x1, all_x[1::2])  # with the same augmentation
        assert torch.equal(y0, all_y[0::2]) and torch.equal(y1, all_y[1::2])  # and the same (mixed) targets


def test_two_processes_train_one_run_with_identical_weights(fetched):
    results = run_ranks(fetched, "train")
    (rank0, run0, acc0, sum0), (rank1, run1, acc1, sum1) = results
    assert (rank0, rank1) == (0, 1) and run0 == run1 and acc0 == acc1
    assert sum0 == sum1  # DDP kept the replicas identical
    weights = fetched / "weights"
    assert [p.name for p in weights.iterdir()] == ["exp"]  # rank 0 alone created and wrote the run
    saved = load_checkpoint(weights / "exp" / "last.pt")
    model = build_model("custom", 4)
    model.load_state_dict(saved["model"])
    assert weights_checksum(model) == pytest.approx(sum0, rel=1e-12)
    assert pd.read_csv(weights / "exp" / "metrics.csv")["epoch"].tolist() == [1, 2]
    config = json.loads((weights / "exp" / "config.json").read_text())
    assert config["device"] == "cpu × 2 processes" and config["split"]["val_images"] == 80
    assert json.loads((weights / "exp" / "status.json").read_text())["state"] == "finished"
    # the val accuracy reduced over the two ranks is that of rank 0's best.pt on the whole val split,
    # which the report (one process, after training) scores again
    per_class = pd.read_csv(weights / "exp" / "per_class.csv")
    assert round((per_class["accuracy"] * per_class["support"]).sum()) / 80 == pytest.approx(acc0)


def test_two_process_prediction_equals_single_process(trained):
    from pipeline.predict import predict
    predict(tta="flip", device="cpu")
    submission = trained / "submissions" / "submission.csv"
    single, single_probs = submission.read_bytes(), np.load(trained / "submissions" / "exp.probs.npy")
    submission.unlink()
    results = run_ranks(trained, "predict")
    assert results[0][1] == str(submission) and results[1][1] is None  # rank 0 wrote, rank 1 returned nothing
    assert submission.read_bytes() == single
    np.testing.assert_allclose(np.load(trained / "submissions" / "exp.probs.npy"), single_probs, atol=1e-3)


def test_nproc_runs_torchrun_and_resumes(fetched):
    command = [sys.executable, "-m", "pipeline", "train", "--nproc", "2", "--recipe", "seed", "--epochs", "1",
               "--batch-size", "32", "--workers", "0", "--device", "cpu", "--name", "ddp"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    resumed = subprocess.run([sys.executable, "-m", "pipeline", "train", "--nproc", "2", "--resume", "weights/ddp",
                              "--epochs", "2"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert pd.read_csv(fetched / "weights" / "ddp" / "metrics.csv")["epoch"].tolist() == [1, 2]
    refused = subprocess.run(command, capture_output=True, text=True, timeout=300)  # the name is taken
    assert refused.returncode != 0
    assert refused.stderr.strip().splitlines()[-1].startswith("error: ") and "Traceback" not in refused.stderr
    assert "ddp already exists" in refused.stderr
    no_sync = subprocess.run([*command[:-2], "--name", "sync", "--sync-bn"], capture_output=True, text=True, timeout=300)
    assert no_sync.returncode != 0 and no_sync.stderr.strip().splitlines()[-1] == (
        "error: --sync-bn needs CUDA devices (PyTorch's SyncBatchNorm has no CPU implementation)")


def test_albumentations_onecycle_run_steps_as_often_as_its_schedule_under_two_processes(fetched):
    (_, run0, acc0, sum0), (_, run1, acc1, sum1) = run_ranks(fetched, "train-albu-onecycle")
    assert run0 == run1 and sum0 == sum1
    assert pd.read_csv(fetched / "weights" / "exp" / "metrics.csv")["epoch"].tolist() == [1]


def _fake_process_group(monkeypatch, gpus: int) -> list:
    """torchrun's environment for local rank 1 of 2, with `gpus` GPUs; records the calls in order."""
    calls = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    monkeypatch.setattr(torch.cuda, "set_device", lambda index: calls.append(("set_device", index)))
    monkeypatch.setattr(dist, "init_process_group", lambda backend, **kw: calls.append(("init", backend, kw)))
    monkeypatch.setattr(dist, "new_group", lambda **kw: calls.append(("new_group", kw)))
    monkeypatch.setattr(distributed.atexit, "register", lambda *a: None)
    return calls


def test_each_process_takes_its_own_gpu_before_joining_the_group(monkeypatch):
    calls = _fake_process_group(monkeypatch, gpus=2)
    distributed.init_from_env(torch.device("cuda"))
    assert calls == [("set_device", 1), ("init", "nccl", {"device_id": torch.device("cuda", 1)}),
                     ("new_group", {"backend": "gloo", "timeout": distributed.LONG_WAIT})]


def test_a_process_without_a_gpu_stops_with_one_line_before_joining(monkeypatch):
    calls = _fake_process_group(monkeypatch, gpus=1)
    with pytest.raises(PipelineError, match=r"^no GPU for local rank 1 \(1 visible\): start at most 1 process"):
        distributed.init_from_env(torch.device("cuda"))
    assert calls == []


def test_rank_zero_leaves_no_run_folder_when_the_name_cannot_reach_the_other_ranks(project, monkeypatch):
    def broken(value, where):
        raise RuntimeError("connection reset by peer")
    monkeypatch.setattr(training, "broadcast", broken)
    with pytest.raises(RuntimeError):
        training._claim(project / "weights", "ddp", Runtime(ranks=Ranks(0, 2, 0)))
    assert not (project / "weights" / "ddp").exists()


def test_a_metric_of_probabilities_is_scored_on_the_whole_val_split_under_two_processes(fetched):
    (_, run0, loss0, sum0), (_, run1, loss1, sum1) = run_ranks(fetched, "train-log-loss")
    assert run0 == run1 and loss0 == loss1 and sum0 == sum1
    run = Run(fetched / "weights" / "exp")
    indices, targets, probabilities = run.read_val_probabilities()  # the best epoch's, gathered from both ranks
    assert len(indices) == 80 and metric_score("log_loss", targets, probabilities) == pytest.approx(loss0, abs=1e-5)
    assert pd.read_csv(run.path / "metrics.csv")["val_score"].min() == pytest.approx(loss0, abs=1e-6)


def test_two_processes_train_and_predict_a_one_hot_competition_of_one_image_folder(project, tmp_path):
    from pipeline.fetch import fetch
    from pipeline.predict import predict
    from tests.test_competition import competition_zip, plant_pathology
    plant_pathology(tmp_path / "made", n=100, n_test=12)
    fetch(archive=competition_zip(tmp_path / "made", tmp_path / "made.zip"))
    (_, run0, score0, sum0), (_, run1, score1, sum1) = run_ranks(project, "train")
    assert run0 == run1 and score0 == score1 and sum0 == sum1  # one run, ranked by its mean ROC AUC
    run = Run(project / "weights" / "exp")
    indices, targets, probabilities = run.read_val_probabilities()  # gathered from both ranks
    assert run.read_config().metric == "mean_roc_auc" and len(indices) == 20
    assert metric_score("mean_roc_auc", targets, probabilities) == pytest.approx(score0, abs=1e-5)
    results = run_ranks(project, "predict")
    submission = project / "submissions" / "submission.csv"
    assert results[0][1] == str(submission) and results[1][1] is None
    two = pd.read_csv(submission)
    predict(tta="flip", device="cpu", console=None)
    one = pd.read_csv(submission)
    assert list(two.columns) == ["image_id", "healthy", "multiple_diseases", "rust", "scab"]
    pd.testing.assert_frame_equal(two, one, atol=1e-3)


def test_ctrl_c_stops_every_process_of_an_nproc_run(fetched):
    """SIGINT to the launcher alone (the torchrun processes sit in sessions of their own): the processes stop as one
    would, the run says it was interrupted (before, they trained on and marked it finished)."""
    import signal
    import time

    command = [sys.executable, "-m", "pipeline", "train", "--nproc", "2", "--recipe", "seed", "--epochs", "50",
               "--batch-size", "32", "--workers", "0", "--device", "cpu", "--name", "ctrl-c"]
    launcher = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    metrics = fetched / "weights" / "ctrl-c" / "metrics.csv"
    deadline = time.monotonic() + 240
    while not metrics.exists() and launcher.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert metrics.exists(), launcher.stderr.read() if launcher.poll() is not None else "no epoch in 240 s"
    launcher.send_signal(signal.SIGINT)
    stderr = launcher.communicate(timeout=120)[1]
    status = Run(fetched / "weights" / "ctrl-c").read_status()
    assert launcher.returncode == 130 and status["state"] == "interrupted", (launcher.returncode, status, stderr)
    assert "interrupted during epoch" in stderr and "--resume" in stderr
    with pytest.raises(ProcessLookupError):
        os.kill(status["pid"], 0)
