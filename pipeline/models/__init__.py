"""Model construction by name, and loading local pretrained weights (never downloaded)."""
from __future__ import annotations

import difflib
import pickle
import re
from pathlib import Path

import safetensors
import safetensors.torch
import torch
from torch import nn

from pipeline.config import MODEL_ALIASES, RENAMED_STEMS
from pipeline.errors import PipelineError
from pipeline.models.fastnet import fastnet, fastnet_wide
from pipeline.models.resnet import STEMS, resnet18, resnet34, resnet50, resnet101, resnet152

CUSTOM = {"resnet18": resnet18, "resnet34": resnet34, "resnet50": resnet50, "resnet101": resnet101,
          "resnet152": resnet152, "fastnet": fastnet, "fastnet-wide": fastnet_wide}


def _unknown(name: str) -> PipelineError:
    """An error naming the closest model names (within the library a `library:` prefix names)."""
    import timm
    import torchvision

    library = name.partition(":")[0] if ":" in name else None
    libraries = {"timm": timm.list_models(), "torchvision": torchvision.models.list_models(module=torchvision.models)}
    bare = {}  # bare name -> full name; later entries win: this package's over torchvision's over timm's
    for lib, names in libraries.items():
        if library in (None, lib):
            bare |= {n: f"{lib}:{n}" for n in names}
    if library is None:
        bare |= {n: n for n in [*MODEL_ALIASES, *CUSTOM]}
    query = name.partition(":")[2] if library else name
    close = [bare[n] for n in difflib.get_close_matches(query, list(bare), n=5, cutoff=0.6)]
    hint = (f"; close matches: {', '.join(close)}" if close
            else "; use custom, resnet18…resnet152, fastnet, torchvision:<name> or timm:<name>")
    return PipelineError(f"unknown --model {name!r}{hint}")


def _resnet_stem(model: nn.Module, stem: str, name: str) -> nn.Module:
    """Give a torchvision ResNet-style model (conv1 + maxpool) a 3×3/1 stem conv, without its max pool for
    `improved`."""
    if stem == "imagenet":
        return model
    if not isinstance(getattr(model, "conv1", None), nn.Conv2d) or not hasattr(model, "maxpool"):
        raise PipelineError(f"--stem {stem} applies to ResNet-style models (conv1 + maxpool), not {name}")
    model.conv1 = nn.Conv2d(model.conv1.in_channels, model.conv1.out_channels, 3, 1, 1, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    if stem == "improved":
        model.maxpool = nn.Identity()
    return model


def first_conv(model: nn.Module) -> tuple[str, nn.Conv2d]:
    """The input convolution: the first Conv2d the model registers."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            return name, module
    raise PipelineError(f"{type(model).__name__} has no Conv2d to take the input channels")


def classifier_head(model: nn.Module) -> tuple[str, nn.Linear]:
    """The classifier: timm's `get_classifier()`, else the last Linear the model registers."""
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    linears = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    for name, module in reversed(linears):
        if head is None or module is head or any(module is m for m in head.modules()):
            return name, module
    raise PipelineError(f"{type(model).__name__} has no Linear classifier head")


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def _set_in_chans(model: nn.Module, in_chans: int) -> None:
    name, conv = first_conv(model)
    if conv.in_channels == in_chans:
        return
    _replace(model, name, nn.Conv2d(in_chans, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                                    conv.dilation, conv.groups, conv.bias is not None, conv.padding_mode))


class DropoutLinear(nn.Linear):
    """A Linear head with dropout on its input: the same parameters, and state-dict keys, as nn.Linear."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, p: float = 0.5):
        super().__init__(in_features, out_features, bias)
        self.dropout = nn.Dropout(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(self.dropout(x))


def _add_head_dropout(model: nn.Module, p: float) -> None:
    name, head = classifier_head(model)
    replacement = DropoutLinear(head.in_features, head.out_features, head.bias is not None, p)
    replacement.load_state_dict(head.state_dict())
    _replace(model, name, replacement)


def build_model(name: str, num_classes: int, stem: str = "imagenet", in_chans: int = 3,
                head_dropout: float = 0.0) -> nn.Module:
    """A classifier by name, randomly initialised (weights are never downloaded):
    `custom` (= `resnet18`) … `resnet152`: this package's ResNets; `fastnet`, `fastnet-wide`: its fast nets for
    small images (pipeline/models/fastnet.py); `torchvision:<name>`: any
    torchvision classifier (`torchvision` = `torchvision:resnet18`); `timm:<name>`: any timm model.
    `in_chans` sets the input convolution's channels; `head_dropout` puts dropout before the head."""
    stem = RENAMED_STEMS.get(stem, stem)
    if stem not in STEMS:
        raise PipelineError(f"unknown stem {stem!r}; choose one of {', '.join(STEMS)}")
    name = MODEL_ALIASES.get(name, name)
    library, _, arch = name.partition(":")
    if name in CUSTOM:
        model = CUSTOM[name](num_classes=num_classes, stem=stem, in_chans=in_chans)
    elif library == "torchvision":
        import torchvision  # torchvision and timm take seconds to import: only for their models

        if arch not in torchvision.models.list_models(module=torchvision.models):
            raise _unknown(name)
        model = _resnet_stem(torchvision.models.get_model(arch, weights=None, num_classes=num_classes), stem, name)
        _set_in_chans(model, in_chans)
    elif library == "timm":
        import timm

        if not timm.is_model(arch):
            raise _unknown(name)
        if stem != "imagenet":
            raise PipelineError(f"--stem {stem} applies to this package's and torchvision's ResNets, not {name}")
        model = timm.create_model(arch, pretrained=False, num_classes=num_classes, in_chans=in_chans)
    else:
        raise _unknown(name)
    if head_dropout:
        _add_head_dropout(model, head_dropout)
    return model


def check_input_size(model: nn.Module, name: str, channels: int, height: int, width: int, hint: str) -> None:
    """`model` takes `height`×`width` inputs: one image through it (eval mode, no gradients), so that a model made for
    another size (a ViT's 224) is one line before training rather than a traceback at its first step."""
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, channels, height, width))
    except (AssertionError, RuntimeError, ValueError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise PipelineError(f"--model {name} cannot take {width}×{height} inputs ({reason}); {hint}, or choose "
                            "another model") from None
    finally:
        model.train(training)


def freeze_backbone(model: nn.Module) -> list[nn.Module]:
    """Train only the classifier head: freeze every other parameter. Returns the backbone's
    normalisation layers, which the training loop keeps in eval mode so their statistics stay too."""
    head_name, head = classifier_head(model)
    head_params = {id(p) for p in head.parameters()}
    for parameter in model.parameters():
        parameter.requires_grad_(id(parameter) in head_params)
    return [m for name, m in model.named_modules()
            if isinstance(m, nn.modules.batchnorm._NormBase) and not name.startswith(head_name)]


def safe_torch_load(path: Path, mmap: bool = False):
    """`torch.load` restricted to tensors and plain containers, so a file cannot run code; `mmap` maps the tensors
    rather than reading them (for what a checkpoint says of itself)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        found = re.search(r"unsupported global:? (?:GLOBAL )?([\w.]+)", str(e), re.IGNORECASE)
        if found:
            raise PipelineError(
                f"{path}: refused: it holds pickled objects other than tensors ({found.group(1)}), "
                "and loading it could run code"
            ) from None
        raise PipelineError(f"{path}: not a readable PyTorch file (corrupt pickle data); {AGAIN}") from None
    except (RuntimeError, EOFError, ValueError, OSError) as e:
        reason = "an empty file" if path.is_file() and path.stat().st_size == 0 else "truncated, or not saved by " \
            "torch.save" if "zipfile" in str(e) or "central directory" in str(e) else \
            (str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__)
        raise PipelineError(f"{path}: not a readable PyTorch file ({reason}); {AGAIN}") from None


AGAIN = "restore it from a copy, or make it again (a run's checkpoint: train the run again)"


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a local `.safetensors`, `.pth` or `.pt` file: a bare one, or a checkpoint's
    `ema` (a pipeline run's averaged weights, which it predicts with), `model` or `state_dict` entry;
    a DistributedDataParallel `module.` prefix is removed."""
    if path.is_dir():
        from pipeline.run import BEST

        inside = next((path / name for name in (BEST, f"fold-0/{BEST}") if (path / name).is_file()), None)
        raise PipelineError(f"{path}: a folder, not a weights file; name the file"
                            + (f", e.g. {inside}" if inside else " (.pt, .pth or .safetensors)"))
    if path.exists() and not path.is_file():
        raise PipelineError(f"{path}: not a regular file (a device, pipe or socket); name a .pt, .pth or "
                            ".safetensors weights file")
    if not path.is_file():
        raise PipelineError(f"{path}: weights file not found")
    if path.suffix.lower() in (".json", ".csv", ".npy", ".npz", ".yaml", ".yml", ".txt", ".md", ".png", ".onnx"):
        raise PipelineError(f"{path}: not a weights file (a {path.suffix} file); name a .pt, .pth or .safetensors file, "
                            "e.g. a run's best.pt")
    if path.suffix == ".safetensors":
        try:
            state = safetensors.torch.load_file(path)
        except (safetensors.SafetensorError, OSError, ValueError) as e:
            raise PipelineError(f"{path}: not a readable safetensors file ({str(e).splitlines()[0]})") from None
    else:
        state = safe_torch_load(path)
    for entry in ("ema", "model", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(entry), dict):
            state = state[entry]
            break
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise PipelineError(f"{path}: holds no state dict of tensors (a {type(state).__name__}"
                            + (f" of {', '.join(map(repr, list(state)[:3]))}" if isinstance(state, dict) and state else "")
                            + "); name a model's weights: a state dict (parameter name → tensor), or a checkpoint "
                            "holding one as its ema, model or state_dict entry")
    if all(key.startswith("module.") for key in state):
        state = {key.removeprefix("module."): value for key, value in state.items()}
    return state


def load_pretrained(model: nn.Module, path: Path, name: str = "the model") -> list[str]:
    """Load a state dict into `model`, except its classifier head (any shape: the classes differ).

    The input conv is adapted when only its input channels differ (timm's rule: a 1-channel model
    gets the sum over RGB), and skipped when its kernel differs (a 7×7 ImageNet stem into a 3×3 one).
    Any other missing, unexpected or mis-shaped key is an error. Returns what was skipped or adapted.
    """
    state = dict(read_state_dict(path))
    if not all(torch.isfinite(w).all() for w in state.values() if torch.is_tensor(w) and w.is_floating_point()):
        raise PipelineError(f"{path}: its weights hold NaN or infinite values; use other --pretrained weights")
    own = model.state_dict()
    head_prefix = classifier_head(model)[0] + "."
    notes = [f"{key} (head)" for key in sorted(state) if key.startswith(head_prefix)]
    conv_key = first_conv(model)[0] + ".weight"
    if conv_key in state and state[conv_key].shape != own[conv_key].shape:
        given, wanted = state[conv_key], own[conv_key]
        if given.ndim == 4 and given.shape[0] == wanted.shape[0] and given.shape[2:] == wanted.shape[2:]:
            from timm.models import adapt_input_conv

            state[conv_key] = adapt_input_conv(wanted.shape[1], given)
            notes.append(f"{conv_key} adapted from {given.shape[1]} to {wanted.shape[1]} input channels")
        else:
            del state[conv_key]
            notes.append(f"{conv_key} (stem of another shape)")
    state = {key: value for key, value in state.items() if not key.startswith(head_prefix)}
    wanted = {key for key in own if not key.startswith(head_prefix) and (key != conv_key or conv_key in state)}
    problems = []
    if wanted - state.keys():
        problems.append(f"missing {', '.join(sorted(wanted - state.keys())[:3])}")
    if state.keys() - wanted:
        problems.append(f"unexpected {', '.join(sorted(state.keys() - wanted)[:3])}")
    bad_shapes = [key for key in sorted(wanted & state.keys()) if state[key].shape != own[key].shape]
    if bad_shapes:
        key = bad_shapes[0]
        problems.append(f"{key} has shape {tuple(state[key].shape)}, the model needs {tuple(own[key].shape)}")
    if problems:
        raise PipelineError(f"{path}: does not fit {name} ({'; '.join(problems)})")
    model.load_state_dict(state, strict=False)
    return notes
