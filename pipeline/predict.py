"""`pipeline predict`: TTA predictions of one or more trained models over dataset/test, as a submission.

The test PNGs are decoded once into `dataset/.cache/test.npy` (id order) and streamed from that
memory map in large batches. Each model's softmax probabilities are saved as
`submissions/<name>.probs.npy` (float16, id order) with a `.json` beside it, so ensembles can be
formed later without running the models again (`pipeline ensemble`).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from pipeline.augment import match_channels, normalize, resize, to_device_tensor
from pipeline.cache import cached_test_images
from pipeline.checkpoint import inference_weights, load_checkpoint
from pipeline.config import PRECISIONS, saved_config
from pipeline.distributed import all_concat, all_sum, barrier, init_from_env, local_device
from pipeline.errors import PipelineError
from pipeline.layout import SAMPLE_SUBMISSION, check_test, id_sort_key
from pipeline.models import build_model
from pipeline.runtime import inference_precision, quantize_int8, resolve_device
from pipeline.submission import class_histogram, score_submission, write_submission
from pipeline.workspace import atomic_path, dataset_dir, submissions_dir, weights_dir, write_text_atomic

PREDICT_PRECISIONS = (*PRECISIONS, "int8")  # int8: CPU only, quantized after calibration on test images
# int8 predictions whose top two probabilities differ by less are redone in fp32: on a ResNet-18 at 0.79 val
# accuracy this re-predicted 2.2 % of 20,000 test images and raised argmax agreement with fp32 from 99.1 % to 99.8 %
INT8_RECHECK_MARGIN = 0.02
SHIFTS = ((0, 0), (-2, 0), (2, 0), (0, -2), (0, 2))
# name -> views as (mirror left-right, shift down, shift right) in pixels
TTA_VIEWS = {
    "none": ((False, 0, 0),),
    "flip": ((False, 0, 0), (True, 0, 0)),
    "flip-shift": tuple((flip, dy, dx) for flip in (False, True) for dy, dx in SHIFTS),
}


@dataclass(frozen=True)
class PredictResult:
    submission: Path
    members: list[str]  # the probability files averaged into it
    rows: int
    histogram: list[tuple[str, int]]
    accuracy: float | None  # on --score's solution ids, when given


def find_checkpoint(run: Path | None = None, checkpoint: Path | None = None, weights_root: Path | None = None) -> Path:
    """`--checkpoint`, else `--run`'s best.pt, else the best.pt written most recently under weights/."""
    if checkpoint is not None:
        return checkpoint
    if run is not None:
        if not (run / "best.pt").is_file():
            raise PipelineError(f"{run}: no best.pt; train it with `pipeline train` first")
        return run / "best.pt"
    weights_root = weights_root or weights_dir()
    candidates = list(weights_root.glob("*/best.pt")) if weights_root.is_dir() else []
    if not candidates:
        raise PipelineError(f"{weights_root}: no trained run (no */best.pt); run `pipeline train` first")
    return max(candidates, key=lambda p: p.stat().st_mtime)


def load_model(path: Path, device: torch.device) -> tuple[torch.nn.Module, dict]:
    """The model of a pipeline checkpoint (its EMA weights when it kept them), in eval mode, and its config."""
    checkpoint = load_checkpoint(path)
    config = checkpoint["config"]
    options = saved_config(config["options"], path)
    model = build_model(options.model, len(config["classes"]), options.stem, config.get("channels", 3),
                        options.head_dropout)
    try:
        model.load_state_dict(inference_weights(checkpoint))
    except RuntimeError as e:
        raise PipelineError(f"{path}: weights do not fit its configured model ({str(e).splitlines()[0]})") from None
    memory_format = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    return model.to(device, memory_format=memory_format).eval(), config


def view(images: torch.Tensor, flip: bool, dy: int, dx: int) -> torch.Tensor:
    """The batch mirrored and/or translated by (dy, dx) pixels, zero-filled (the mean, once normalized)."""
    if flip:
        images = images.flip(3)
    if dy or dx:
        h, w = images.shape[2:]
        padded = F.pad(images, (max(dx, 0), max(-dx, 0), max(dy, 0), max(-dy, 0)))
        top, left = max(-dy, 0), max(-dx, 0)
        images = padded[:, :, top:top + h, left:left + w]
    return images


def model_inputs(images: np.ndarray, mean: torch.Tensor, std: torch.Tensor, device: torch.device,
                 memory_format: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
    """uint8 (N, H, W, C) host images as the model's normalised input, with one channel per `mean` entry."""
    return normalize(match_channels(to_device_tensor(images, device), len(mean)), mean, std, memory_format)


@torch.no_grad()
def predict_probabilities(model: torch.nn.Module, images: np.ndarray, mean: list[float], std: list[float],
                          tta: str, device: torch.device, batch_size: int, console: Console,
                          amp_dtype: torch.dtype | None = None, img_size: int | None = None,
                          num_classes: int | None = None) -> np.ndarray:
    """Softmax probabilities (N, classes) of uint8 (N, H, W, C) images, averaged over the TTA views.
    Images get the model's channels (one per `mean` entry) and, with `img_size`, its input size."""
    views = TTA_VIEWS[tta]
    memory_format = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    mean_t, std_t = torch.tensor(mean, device=device), torch.tensor(std, device=device)
    out = None
    columns = (TextColumn("predict"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task("predict", total=len(images))
        for start in range(0, len(images), batch_size):
            batch = model_inputs(images[start:start + batch_size], mean_t, std_t, device, memory_format)
            with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                probs = sum(torch.softmax(model(resize(view(batch, *v), img_size)).float(), dim=1)
                            for v in views) / len(views)
            if out is None:
                out = np.empty((len(images), probs.shape[1]), np.float32)
            out[start:start + len(batch)] = probs.cpu().numpy()
            progress.advance(task, len(batch))
    return out if out is not None else np.zeros((0, num_classes or 0), np.float32)


def recheck_near_ties(probabilities: np.ndarray, model: torch.nn.Module, images: np.ndarray, config: dict,
                      tta: str, device: torch.device, batch_size: int, console: Console,
                      margin: float = INT8_RECHECK_MARGIN) -> int:
    """Predict again with the fp32 `model` the images whose two top int8 probabilities lie within `margin`,
    in place: int8 rounding changes the argmax almost only on such near ties. Returns how many."""
    top_two = np.partition(probabilities, -2, axis=1)[:, -2:]
    near = np.flatnonzero(np.abs(top_two[:, 1] - top_two[:, 0]) < margin)
    if len(near):
        probabilities[near] = predict_probabilities(model, images[near], config["mean"], config["std"], tta, device,
                                                    batch_size, console, img_size=config["options"].get("img_size"))
    return len(near)


def default_batch_size(device: torch.device, int8: bool) -> int:
    """Large batches on CUDA; on CPU fp32 runs fastest in batches small enough to stay in cache (ResNet-18
    at 32×32 here: 617 images/s at 64, 474 at 1024) and int8 at 256 (1,550 images/s, 1,330 at 64)."""
    return 1024 if device.type == "cuda" else 256 if int8 else 64


def cpu_int8(model: torch.nn.Module, images: np.ndarray, config: dict, path: Path, console: Console,
             required: bool) -> torch.nn.Module | None:
    """`model` quantized to int8, or None where it cannot be traced for quantization and int8 was not `required`
    (`--precision auto`), so it predicts in fp32."""
    try:
        return quantize_int8(model, calibration_inputs(images, config), str(path))
    except PipelineError:
        if required:
            raise
        console.print(f"{path}: cannot be traced for int8 quantization; predicting in fp32")
        return None


def calibration_inputs(images: np.ndarray, config: dict, count: int = 512) -> torch.Tensor:
    """Model inputs from `count` images spread over the set, to calibrate int8 quantization ranges."""
    picked = images[np.linspace(0, len(images) - 1, min(count, len(images))).astype(int)]
    inputs = model_inputs(picked, torch.tensor(config["mean"]), torch.tensor(config["std"]), torch.device("cpu"))
    return resize(inputs, config["options"].get("img_size"))


def ids_key(ids: list[str]) -> str:
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()


def member_name(checkpoint: Path) -> str:
    """`exp3` for weights/exp3/best.pt, `exp3-last` for its last.pt, the file's stem otherwise."""
    if checkpoint.name == "best.pt":
        return checkpoint.parent.name
    if checkpoint.name == "last.pt":
        return f"{checkpoint.parent.name}-last"
    return checkpoint.stem


def save_probabilities(path: Path, probabilities: np.ndarray, meta: dict) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, probabilities.astype(np.float16))
    write_text_atomic(path.with_suffix(".json"), json.dumps(meta, indent=2) + "\n")


def load_probabilities(path: Path, ids: list[str]) -> tuple[np.ndarray, dict]:
    """A saved `.probs.npy` and its metadata, checked against the current test ids."""
    meta_path = path.with_suffix(".json")
    if not path.is_file() or not meta_path.is_file():
        raise PipelineError(f"{path}: no such probability file (or its .json); run `pipeline predict` first")
    meta = json.loads(meta_path.read_text())
    try:
        probabilities = np.load(path, allow_pickle=False).astype(np.float32)
    except ValueError as e:
        raise PipelineError(f"{path}: not a readable .npy file ({e})") from None
    if meta.get("ids") != ids_key(ids) or probabilities.shape != (len(ids), len(meta["classes"])):
        raise PipelineError(f"{path}: made for other test ids than dataset/test now holds; predict again")
    return probabilities, meta


def finish_submission(probabilities: np.ndarray, ids: list[str], submission_ids: list[str], classes: list[str],
                      members: list[str], dataset_root: Path, out: Path, tta: str | None,
                      score: Path | None) -> PredictResult:
    """Write the submission of averaged probabilities (rows in `ids` order) in sampleSubmission.csv's order
    (`submission_ids`), and its record."""
    label_of = dict(zip(ids, (classes[i] for i in probabilities.argmax(1))))
    labels = [label_of[i] for i in submission_ids]
    write_submission(out, submission_ids, labels, dataset_root / SAMPLE_SUBMISSION, classes)
    histogram = class_histogram(labels, classes)
    write_text_atomic(out.with_suffix(".json"), json.dumps({
        "submission": out.name, "rows": len(labels), "members": members, "tta": tta,
        "views": [list(v) for v in TTA_VIEWS[tta]] if tta else None,
        "histogram": dict(histogram), "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }, indent=2) + "\n")
    accuracy = score_submission(out, score)[0] if score is not None else None
    return PredictResult(out, members, len(labels), histogram, accuracy)


def predict(runs: list[Path] | None = None, checkpoints: list[Path] | None = None, tta: str = "flip",
            batch_size: int | None = None, device: str = "auto", precision: str = "auto", score: Path | None = None,
            dataset_root: Path | None = None, weights_root: Path | None = None, out: Path | None = None,
            console: Console | None = None) -> PredictResult | None:
    """Predict dataset/test with each model, average their probabilities, write the submission.
    Under torchrun each process predicts its share of the test images and rank 0, which gathers
    them, writes the files and returns the result (the other ranks return None)."""
    if tta not in TTA_VIEWS:
        raise PipelineError(f"--tta {tta!r}: choose one of {', '.join(TTA_VIEWS)}")
    if batch_size is not None and batch_size <= 0:
        raise PipelineError(f"--batch-size must be positive, got {batch_size}")
    if precision not in PREDICT_PRECISIONS:
        raise PipelineError(f"--precision {precision!r}: choose one of {', '.join(PREDICT_PRECISIONS)}")
    where = init_from_env(resolve_device(device))
    console = (console or Console()) if where.main else Console(quiet=True)
    dataset_root = dataset_root or dataset_dir()
    out = out or submissions_dir() / "submission.csv"
    target = local_device(resolve_device(device), where)
    chosen = inference_precision(precision, target)
    if chosen == "int8" and target.type != "cpu":
        raise PipelineError("--precision int8 is for CPU inference; on CUDA use auto (bf16) or fp32")
    sources = list(checkpoints or []) + [find_checkpoint(run=r) for r in runs or []]
    sources = sources or [find_checkpoint(weights_root=weights_root)]
    submission_ids = check_test(dataset_root)
    if not where.main:
        barrier(where)  # rank 0 decodes the cache first; the others then read it
    ids, images = cached_test_images(dataset_root, submission_ids, console)
    if where.main:
        barrier(where)
    share = np.array_split(np.arange(len(ids)), where.world)[where.rank]
    own_images = images[share[0]:share[-1] + 1] if len(share) else images[:0]
    total, classes, members = None, None, []
    for path in sources:
        model, config = load_model(path, target)
        if classes is not None and config["classes"] != classes:
            raise PipelineError(f"{path}: its classes differ from {sources[0]}'s; an ensemble needs the same classes")
        classes = config["classes"]
        quantized = cpu_int8(model, images, config, path, console, required=precision == "int8") \
            if chosen == "int8" else None
        used = "int8" if quantized else "fp32" if chosen == "int8" else chosen
        console.print(f"predicting {len(ids)} test images with {path} ({tta} TTA, {used}) on {target}"
                      + (f" and {where.world - 1} more processes" if where.distributed else ""))
        own = predict_probabilities(quantized or model, own_images, config["mean"], config["std"], tta, target,
                                    batch_size or default_batch_size(target, quantized is not None), console,
                                    torch.bfloat16 if chosen == "bf16" else None, config["options"].get("img_size"),
                                    len(classes))
        if quantized:
            rechecked = int(all_sum([recheck_near_ties(own, model, own_images, config, tta, target,
                                                       batch_size or default_batch_size(target, False), console)],
                                    target, where)[0])
            console.print(f"int8: {rechecked} near ties ({rechecked / max(len(ids), 1):.1%}) predicted again in fp32")
        probabilities = all_concat(own, where)
        if not where.main:
            continue
        name = out.parent / f"{member_name(path)}.probs.npy"
        save_probabilities(name, probabilities, {"checkpoint": str(path), "classes": classes, "tta": tta,
                                                 "precision": used, "ids": ids_key(ids), "images": len(ids)})
        members.append(name.name)
        total = probabilities if total is None else total + probabilities
    if not where.main:
        return None
    return finish_submission(total / len(sources), ids, submission_ids, classes, members, dataset_root, out, tta,
                             score)


def ensemble(members: list[Path], score: Path | None = None, dataset_root: Path | None = None,
             out: Path | None = None) -> PredictResult:
    """Average saved `.probs.npy` files (names under submissions/ or paths) into a submission."""
    if len(members) < 1:
        raise PipelineError("name at least one .probs.npy file to ensemble")
    dataset_root = dataset_root or dataset_dir()
    out = out or submissions_dir() / "submission.csv"
    submission_ids = check_test(dataset_root)
    ids = sorted(submission_ids, key=id_sort_key)
    paths = [m if m.suffix == ".npy" else out.parent / f"{m.name}.probs.npy" for m in members]
    loaded = [load_probabilities(p, ids) for p in paths]
    classes = loaded[0][1]["classes"]
    for path, (_, meta) in zip(paths, loaded):
        if meta["classes"] != classes:
            raise PipelineError(f"{path}: its classes differ from {paths[0]}'s")
    average = sum(p for p, _ in loaded) / len(loaded)
    return finish_submission(average, ids, submission_ids, classes, [p.name for p in paths], dataset_root, out,
                             None, score)
