"""Model construction by name, and loading local pretrained weights (never downloaded)."""
from __future__ import annotations

import difflib
import pickle
from pathlib import Path

import timm
import torch
import torchvision
from torch import nn

from pipeline.errors import PipelineError
from pipeline.models.resnet import STEMS, resnet18, resnet34, resnet50, resnet101, resnet152

CUSTOM = {"resnet18": resnet18, "resnet34": resnet34, "resnet50": resnet50, "resnet101": resnet101,
          "resnet152": resnet152}
ALIASES = {"custom": "resnet18", "torchvision": "torchvision:resnet18"}
HEAD = "fc."


def _unknown(name: str) -> PipelineError:
    """An error naming the closest model names (within the library a `library:` prefix names)."""
    library = name.partition(":")[0] if ":" in name else None
    libraries = {"timm": timm.list_models(), "torchvision": torchvision.models.list_models(module=torchvision.models)}
    bare = {}  # bare name -> full name; later entries win: this package's over torchvision's over timm's
    for lib, names in libraries.items():
        if library in (None, lib):
            bare |= {n: f"{lib}:{n}" for n in names}
    if library is None:
        bare |= {n: n for n in [*ALIASES, *CUSTOM]}
    query = name.partition(":")[2] if library else name
    close = [bare[n] for n in difflib.get_close_matches(query, list(bare), n=5, cutoff=0.6)]
    hint = (f"; close matches: {', '.join(close)}" if close
            else "; use custom, resnet18…resnet152, torchvision:<name> or timm:<name>")
    return PipelineError(f"unknown --model {name!r}{hint}")


def _resnet_stem(model: nn.Module, stem: str, name: str) -> nn.Module:
    """Give a torchvision ResNet-style model (conv1 + maxpool) the improved or CIFAR stem."""
    if stem == "imagenet":
        return model
    if not isinstance(getattr(model, "conv1", None), nn.Conv2d) or not hasattr(model, "maxpool"):
        raise PipelineError(f"--stem {stem} applies to ResNet-style models (conv1 + maxpool), not {name}")
    model.conv1 = nn.Conv2d(model.conv1.in_channels, model.conv1.out_channels, 3, 1, 1, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    if stem == "cifar":
        model.maxpool = nn.Identity()
    return model


def build_model(name: str, num_classes: int, stem: str = "imagenet") -> nn.Module:
    """A classifier by name, randomly initialised (weights are never downloaded):
    `custom` (= `resnet18`) … `resnet152`: this package's ResNets; `torchvision:<name>`: any
    torchvision classifier (`torchvision` = `torchvision:resnet18`); `timm:<name>`: any timm model."""
    if stem not in STEMS:
        raise PipelineError(f"unknown stem {stem!r}; choose one of {', '.join(STEMS)}")
    name = ALIASES.get(name, name)
    if name in CUSTOM:
        return CUSTOM[name](num_classes=num_classes, stem=stem)
    library, _, arch = name.partition(":")
    if library == "torchvision":
        if arch not in torchvision.models.list_models(module=torchvision.models):
            raise _unknown(name)
        return _resnet_stem(torchvision.models.get_model(arch, weights=None, num_classes=num_classes), stem, name)
    if library == "timm":
        if not timm.is_model(arch):
            raise _unknown(name)
        if stem != "imagenet":
            raise PipelineError(f"--stem {stem} applies to this package's and torchvision's ResNets, not {name}")
        return timm.create_model(arch, pretrained=False, num_classes=num_classes)
    raise _unknown(name)


def safe_torch_load(path: Path):
    """`torch.load` restricted to tensors and plain containers, so a file cannot run code."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "Unsupported global" in str(e):
            raise PipelineError(
                f"{path}: refused: it holds pickled objects other than tensors, and loading it could run code"
            ) from None
        raise PipelineError(f"{path}: not a readable PyTorch file (corrupt pickle data)") from None
    except (RuntimeError, EOFError, ValueError, OSError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise PipelineError(f"{path}: not a readable PyTorch file ({reason})") from None


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a local file: a bare one, or the `model` entry of a pipeline checkpoint."""
    if not path.is_file():
        raise PipelineError(f"{path}: weights file not found")
    state = safe_torch_load(path)
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise PipelineError(f"{path}: holds no state dict of tensors")
    return state


def load_pretrained(model: nn.Module, path: Path) -> list[str]:
    """Load a ResNet state dict into `model`, except its classifier head (`fc.*`).

    The stem conv is skipped too when its shape differs (a 7×7 ImageNet stem into a 3×3 one).
    Any other missing, unexpected or mis-shaped key is an error. Returns the skipped keys.
    """
    state = read_state_dict(path)
    own = model.state_dict()
    skipped = [k for k in state if k.startswith(HEAD)]
    stem = "conv1.weight"
    if stem in state and stem in own and state[stem].shape != own[stem].shape:
        skipped.append(stem)
    wanted = {k for k in own if not k.startswith(HEAD) and k not in skipped}
    given = {k for k in state if k not in skipped}
    problems = []
    if wanted - given:
        problems.append(f"missing {', '.join(sorted(wanted - given)[:3])}")
    if given - wanted:
        problems.append(f"unexpected {', '.join(sorted(given - wanted)[:3])}")
    bad_shapes = [k for k in wanted & given if state[k].shape != own[k].shape]
    if bad_shapes:
        k = bad_shapes[0]
        problems.append(f"{k} has shape {tuple(state[k].shape)}, the model needs {tuple(own[k].shape)}")
    if problems:
        raise PipelineError(f"{path}: does not fit a ResNet-18 ({'; '.join(problems)})")
    model.load_state_dict({k: state[k] for k in given}, strict=False)
    return sorted(skipped)
