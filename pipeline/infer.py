"""One inference core for validation, reports and prediction: a checkpoint's model, and
`infer(model, images, inputs, tta, runtime, batch_size)` → log-probabilities averaged over the TTA views."""
from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console

from pipeline.augment import match_channels, normalize, resize, to_device_tensor
from pipeline.errors import PipelineError
from pipeline.models import build_model
from pipeline.progress import progress_bar
from pipeline.run import ModelInputs, RunConfig, inference_weights, load_checkpoint
from pipeline.runtime import Runtime

SHIFTS = ((0, 0), (-2, 0), (2, 0), (0, -2), (0, 2))
# name (config.TTA_CHOICES) -> views as (mirror left-right, shift down, shift right) in pixels
TTA_VIEWS = {
    "none": ((False, 0, 0),),
    "flip": ((False, 0, 0), (True, 0, 0)),
    "flip-shift": tuple((flip, dy, dx) for flip in (False, True) for dy, dx in SHIFTS),
    # airbench's level 2: the image and its mirror, and both shifted by one pixel down-right and up-left
    "flip-translate": tuple((flip, d, d) for d in (0, 1, -1) for flip in (False, True)),
}
TTA_WEIGHTS = {"flip-translate": (2, 2, 1, 1, 1, 1)}  # airbench's: half for the unshifted pair; others: equal


def view_weights(tta: str) -> tuple[float, ...]:
    """Each view's share of the average, summing to 1."""
    weights = TTA_WEIGHTS.get(tta, (1,) * len(TTA_VIEWS[tta]))
    return tuple(w / sum(weights) for w in weights)


def load_model(path: Path, device: torch.device) -> tuple[torch.nn.Module, RunConfig]:
    """The model of a pipeline checkpoint (its EMA weights when it kept them), in eval mode, and its config."""
    checkpoint = load_checkpoint(path)
    config = RunConfig.of_checkpoint(checkpoint, path)
    options = config.options
    model = build_model(options.model, len(config.classes), options.stem, config.channels, options.head_dropout)
    weights = inference_weights(checkpoint, path)
    try:
        model.load_state_dict(weights)
    except RuntimeError as e:
        raise PipelineError(f"{path}: weights do not fit its configured model ({str(e).splitlines()[0]})") from None
    if not all(torch.isfinite(w).all() for w in weights.values() if w.is_floating_point()):
        raise PipelineError(f"{path}: its weights hold NaN or infinite values (a diverged run); use another checkpoint")
    return model.to(device, memory_format=Runtime(device).memory_format).eval(), config


def default_batch_size(device: torch.device) -> int:
    """Large batches on CUDA; on the CPU torch runs fastest in batches small enough to stay in cache (an
    earlier Intel Xeon: ResNet-18 at 32×32, 617 images/s at 64, 474 at 1024)."""
    return 1024 if device.type == "cuda" else 64


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


@functools.lru_cache(maxsize=8)
def _statistics(inputs: ModelInputs, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std as tensors on `device`, made once rather than per batch."""
    return torch.tensor(inputs.mean, device=device), torch.tensor(inputs.std, device=device)


def normalised_batch(images: np.ndarray | torch.Tensor, inputs: ModelInputs, device: torch.device,
                     memory_format: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
    """uint8 (N, H, W, C) images (host array or tensor) as the model's normalised input, with one channel
    per `inputs.mean` entry (resizing to `inputs.img_size` follows the TTA view)."""
    mean, std = _statistics(inputs, device)
    return normalize(match_channels(to_device_tensor(images, device), len(mean)), mean, std, memory_format)


@torch.no_grad()
def infer(model: torch.nn.Module, images: np.ndarray | torch.Tensor, inputs: ModelInputs, tta: str,
          runtime: Runtime, batch_size: int, console: Console | None = None, num_classes: int = 0) -> np.ndarray:
    """Log-probabilities (N, classes) of uint8 (N, H, W, C) images: the log of the softmax averaged over
    the TTA views (weighted by `view_weights`), computed stably (log-sum-exp), so validation takes its loss from it
    as well."""
    views = TTA_VIEWS[tta]
    log_weights = torch.tensor(view_weights(tta), device=runtime.device).log()[:, None, None]
    model.eval()
    out = None
    with progress_bar(console or Console(quiet=True), "predict", len(images)) as advance:
        for start in range(0, len(images), batch_size):
            batch = normalised_batch(images[start:start + batch_size], inputs, runtime.device, runtime.memory_format)
            with runtime.autocast():
                per_view = torch.stack([torch.log_softmax(model(resize(view(batch, *v), inputs.img_size)).float(), 1)
                                        for v in views])
            log_probs = torch.logsumexp(per_view + log_weights, 0)
            if out is None:
                out = np.empty((len(images), log_probs.shape[1]), np.float32)
            out[start:start + len(batch)] = log_probs.cpu().numpy()
            advance(len(batch))
    return out if out is not None else np.zeros((0, num_classes), np.float32)


def cam_layer(model: torch.nn.Module, example: torch.Tensor) -> torch.nn.Module | None:
    """The layer Grad-CAM looks at: the last convolution whose output is still at least 4 × 4 on an input like
    `example` (deeper maps of a small image are a pixel or two); None for a model of fewer than 3 convolutions (a
    vision transformer's patch embedding is not a CNN)."""
    convolutions = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    if len(convolutions) < 3:
        return None
    sizes = {}
    hooks = [m.register_forward_hook(lambda m, _, out: sizes.__setitem__(m, out.shape[-2:])) for m in convolutions]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for hook in hooks:
            hook.remove()
    large = [m for m in convolutions if m in sizes and min(sizes[m]) >= 4]
    return large[-1] if large else None


def class_activation_maps(model: torch.nn.Module, inputs: ModelInputs, runtime: Runtime, images: np.ndarray,
                          classes: np.ndarray) -> np.ndarray | None:
    """Grad-CAM (captum's LayerGradCam) of each image for its class in `classes`: (N, H, W) maps in [0, 1] at the
    images' size; None where it does not apply (see `cam_layer`)."""
    from captum.attr import LayerAttribution, LayerGradCam

    model = model.eval()
    batch = resize(normalised_batch(images, inputs, runtime.device), inputs.img_size).float()
    layer = cam_layer(model, batch[:1])
    if layer is None:
        return None
    with torch.enable_grad():
        maps = LayerGradCam(model, layer).attribute(batch, target=torch.as_tensor(classes, device=runtime.device))
    maps = LayerAttribution.interpolate(maps.detach(), tuple(images.shape[1:3]), "bilinear")[:, 0].clamp(min=0)
    peak = maps.flatten(1).amax(1).clamp(min=1e-12)[:, None, None]
    return (maps / peak).cpu().numpy()


def explainer(checkpoint: Path, device: torch.device) -> Callable[[np.ndarray, np.ndarray], np.ndarray | None]:
    """Grad-CAM of `checkpoint`'s model (loaded when asked) on `device`, in fp32; None where captum is not installed
    or the model is no CNN."""
    def explain(images: np.ndarray, classes: np.ndarray) -> np.ndarray | None:
        try:
            import captum  # noqa: F401 - optional: the report goes on without it
        except ImportError:
            return None
        model, config = load_model(checkpoint, device)
        return class_activation_maps(model, config.inputs, Runtime(device), images, classes)
    return explain
