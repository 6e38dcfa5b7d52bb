"""Two CPU processes with the gloo backend on loopback, as torchrun would start them."""
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
import torch.multiprocessing as mp

from pipeline.augment import BATCHED_POLICIES, BatchLoader
from pipeline.config import TrainConfig
from pipeline.distributed import weights_checksum
from pipeline.models import build_model
from pipeline.run import load_checkpoint
from tests.fixtures import QUICK as BASE_QUICK

QUICK = dict(BASE_QUICK, milestones=[1])


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
    if job == "train":
        from pipeline.train import train
        result = train(TrainConfig(epochs=2, device="cpu", **QUICK))
        results.put((rank, str(result.run_dir), result.best_acc, result.weights_checksum))
    else:
        from pipeline.predict import predict
        result = predict(tta="flip", device="cpu")
        results.put((rank, None if result is None else str(result.submission), None, None))


def run_ranks(project, job: str, world: int = 2) -> list[tuple]:
    context = mp.get_context("spawn")
    results = context.SimpleQueue()
    mp.spawn(_rank_main, args=(world, free_port(), str(project), job, results), nprocs=world, join=True)
    return sorted(results.get() for _ in range(world))


def test_ranks_share_every_global_batch_without_overlap():
    images = torch.arange(50, dtype=torch.uint8)[:, None, None, None].expand(50, 3, 8, 8).contiguous()
    targets = torch.arange(50)
    make = lambda shard: BatchLoader(images, targets, 16, (0.5,) * 3, (0.25,) * 3, BATCHED_POLICIES["crop-flip"],  # noqa: E731
                                     torch.Generator().manual_seed(7), shard=shard)
    single, first, second = list(make((0, 1))), list(make((0, 2))), list(make((1, 2)))
    assert len(first) == len(second) == len(single) == 4
    for (all_x, all_y), (x0, y0), (x1, y1) in zip(single, first, second):
        assert set(y0.tolist()).isdisjoint(y1.tolist())
        assert sorted(y0.tolist() + y1.tolist()) == sorted(all_y.tolist())  # the same images as one process
        assert torch.equal(x0, all_x[0::2]) and torch.equal(x1, all_x[1::2])  # with the same augmentation


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
    command = [sys.executable, "-m", "pipeline", "train", "--nproc", "2", "--epochs", "1", "--batch-size", "32",
               "--workers", "0", "--device", "cpu", "--name", "ddp"]
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
