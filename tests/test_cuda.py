"""The CUDA paths (`pytest -m cuda`; skipped where no GPU is available, so the CPU suite stays green):
autocast, channels_last, fused SGD, `--compile`, device-resident batches, prediction batches on the GPU.
The tolerances are stated where results may differ from the CPU's: GPU kernels round differently."""
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from pipeline.augment import BATCHED_POLICIES, BatchLoader
from pipeline.config import TrainConfig
from pipeline.models import build_model
from pipeline.run import load_checkpoint
from pipeline.runtime import Runtime, autocast_dtype
from pipeline.train import resume, train

pytestmark = pytest.mark.cuda
CUDA = dict(batch_size=48, workers=0, lr=0.02, device="cuda")  # 320 train images: 6 batches of 48 and one of 32


def auto_precisions() -> list[str]:
    """`auto`'s precision on this GPU (bf16 at compute capability ≥ 8.0, else fp16), and fp32."""
    return [Runtime(torch.device("cuda"), amp_dtype=autocast_dtype("auto", torch.device("cuda"))).precision, "fp32"]


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
def test_training_steps_in_each_precision_auto_can_pick(fetched, compiled):
    import torch._dynamo
    for precision in auto_precisions():
        torch._dynamo.reset()
        torch._dynamo.utils.counters.clear()
        result = train(TrainConfig(epochs=2, precision=precision, compile=compiled, name=f"{precision}-{compiled}", **CUDA))
        metrics = pd.read_csv(result.run_dir / "metrics.csv")
        seen = (f"{precision}, compiled={compiled}, torch {torch.__version__}: "
                f"{metrics.to_dict('list')}, dynamo {dict(torch._dynamo.utils.counters['stats'])}")  # for the GPU log
        assert metrics["epoch"].tolist() == [1, 2] and np.isfinite(metrics["train_loss"]).all(), seen
        assert result.best_score > 0.25, seen  # 4 classes: above chance after two epochs
        if compiled:  # the first compile, then at most 2 recompiles (the smaller last batch) over both epochs
            assert 1 <= torch._dynamo.utils.counters["stats"]["unique_graphs"] <= 3, seen


def test_resume_on_cuda_and_from_cuda_on_the_cpu(fetched):
    straight = train(TrainConfig(epochs=2, name="straight", **CUDA)).run_dir
    on_gpu = train(TrainConfig(epochs=1, name="gpu", **CUDA)).run_dir
    resume(on_gpu, {"epochs": 2})
    to_cpu = train(TrainConfig(epochs=1, name="to-cpu", **CUDA)).run_dir
    resume(to_cpu, {"epochs": 2, "device": "cpu"})
    expected = load_checkpoint(straight / "last.pt")["model"]
    for run in (on_gpu, to_cpu):
        got = load_checkpoint(run / "last.pt")
        assert got["epoch"] == 2 and pd.read_csv(run / "metrics.csv")["epoch"].tolist() == [1, 2]
        assert all(group["fused"] is (True if run == on_gpu else None) for group in got["optimizer"]["param_groups"])
        # not bit-identical (cuDNN's kernels are not deterministic): the weights stay within 5 % of the
        # uninterrupted run's, relative to their norm
        for key, tensor in expected.items():
            if tensor.is_floating_point() and tensor.numel() > 1:
                assert (got["model"][key].float() - tensor.float()).norm() <= 0.05 * tensor.float().norm() + 1e-3, key


def test_a_fused_sgd_step_equals_the_cpu_step_on_the_same_gradients():
    torch.manual_seed(0)
    cpu_model = build_model("custom", 4)
    gpu_model = build_model("custom", 4).cuda().to(memory_format=torch.channels_last)
    gpu_model.load_state_dict(cpu_model.state_dict())
    options = dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    cpu_sgd = torch.optim.SGD(cpu_model.parameters(), **options)
    gpu_sgd = torch.optim.SGD(gpu_model.parameters(), fused=True, **options)
    for _ in range(3):
        for cpu_param, gpu_param in zip(cpu_model.parameters(), gpu_model.parameters()):
            cpu_param.grad = torch.randn_like(cpu_param)
            gpu_param.grad = cpu_param.grad.cuda().contiguous(memory_format=torch.channels_last
                                                                if gpu_param.dim() == 4 else torch.contiguous_format)
        cpu_sgd.step()
        gpu_sgd.step()
    for cpu_param, gpu_param in zip(cpu_model.parameters(), gpu_model.parameters()):
        torch.testing.assert_close(gpu_param.cpu(), cpu_param, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("precision, atol", [("fp32", 5e-3), ("auto", 3e-2)])
def test_prediction_on_cuda_agrees_with_the_cpu(trained, precision, atol):
    """Probabilities are saved as float16 (±5e-4 at 1); "fp32" convolutions on the GPU run in TF32 (cuDNN's
    default: 10-bit mantissas), bf16 autocast rounds to 8 bits."""
    from pipeline.predict import predict
    probabilities = {}
    for device, wanted in (("cpu", "fp32"), ("cuda", precision)):
        predict(tta="flip", device=device, precision=wanted)
        probabilities[device] = np.load(trained / "submissions" / "exp.probs.npy").astype(np.float32)
    cpu, gpu = probabilities["cpu"], probabilities["cuda"]
    assert (cpu.argmax(1) == gpu.argmax(1)).mean() >= 0.999
    np.testing.assert_allclose(gpu, cpu, atol=atol)


def test_more_processes_than_gpus_stop_with_one_line(fetched):
    nproc = torch.cuda.device_count() + 1
    done = subprocess.run([sys.executable, "-m", "pipeline", "train", "--nproc", str(nproc), "--epochs", "1",
                           "--workers", "0", "--device", "cuda"], capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert any(line.startswith(f"error: no GPU for local rank {nproc - 1} ") for line in done.stderr.splitlines())
    assert not list((fetched / "weights").glob("*"))


@pytest.mark.parametrize("policy", [BATCHED_POLICIES["cutout"],
                                    replace(BATCHED_POLICIES["trivial"], erase=0.5, mixup=0.2, cutmix=1.0, classes=10)])
def test_batched_augmentation_on_the_gpu_equals_the_cpus(policy):
    images = torch.randint(0, 256, (100, 3, 32, 32), dtype=torch.uint8)
    targets = torch.arange(100) % 10
    batches = {}
    for device in ("cpu", "cuda"):
        loader = BatchLoader(images.to(device), targets.to(device), 32, (0.5, 0.4, 0.3), (0.2, 0.2, 0.2),
                             policy, torch.Generator().manual_seed(5))
        batches[device] = list(loader)
    assert len(batches["cpu"]) == len(batches["cuda"]) == 4
    for (x_cpu, y_cpu), (x_gpu, y_gpu) in zip(batches["cpu"], batches["cuda"]):
        torch.testing.assert_close(y_gpu.cpu(), y_cpu, rtol=0, atol=1e-6)
        if not policy.trivial:
            torch.testing.assert_close(x_gpu.cpu(), x_cpu, rtol=0, atol=1e-6)
        else:  # rotations and shears may round a pixel on the boundary between two source pixels differently
            assert ((x_gpu.cpu() - x_cpu).abs() > 1e-4).float().mean() < 0.002


@pytest.mark.parametrize("name", ["crop-flip", "shift-altflip", "shift4-altflip-cutout"])
def test_batches_reach_the_gpu_without_waiting_for_it(name):
    """The draws made on the CPU go to the GPU through pinned memory, non-blocking: a pageable copy would wait for
    every queued kernel, so each batch would wait for the previous step."""
    from pipeline.augment import alternating_flips
    images = torch.randint(0, 256, (256, 3, 32, 32), dtype=torch.uint8, device="cuda")
    targets = torch.arange(256, device="cuda") % 10
    loader = BatchLoader(images, targets, 64, (0.5, 0.4, 0.3), (0.2, 0.2, 0.2), BATCHED_POLICIES[name],
                         torch.Generator().manual_seed(5), flips=alternating_flips(256, 0, 1))
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        batches = list(loader)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert len(batches) == 4 and batches[0][0].is_cuda


@pytest.mark.requires("albumentations")  # carried as wheels by benchmarks/gpu_check.sh, which checks it imports
def test_albumentations_with_worker_processes_on_cuda(fetched):
    result = train(TrainConfig(epochs=1, aug="albu-strong", **dict(CUDA, workers=4)))
    assert pd.read_csv(result.run_dir / "metrics.csv")["epoch"].tolist() == [1]
