"""Model construction by name, and loading local pretrained weights (never downloaded)."""
from __future__ import annotations

import pickle
from pathlib import Path

import torch
import torchvision
from torch import nn

from pipeline.errors import PipelineError
from pipeline.models.resnet import STEMS, resnet18

MODELS = ("custom", "torchvision")
HEAD = "fc."


def build_model(name: str, num_classes: int, stem: str = "imagenet") -> nn.Module:
    """`custom`: this package's ResNet-18; `torchvision`: torchvision's, given the same stem."""
    if stem not in STEMS:
        raise PipelineError(f"unknown stem {stem!r}; choose one of {', '.join(STEMS)}")
    if name == "custom":
        return resnet18(num_classes=num_classes, stem=stem)
    if name == "torchvision":
        model = torchvision.models.resnet18(num_classes=num_classes)
        if stem != "imagenet":
            model.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
            nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
        if stem == "cifar":
            model.maxpool = nn.Identity()
        return model
    raise PipelineError(f"unknown --model {name!r}; choose one of {', '.join(MODELS)}")


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
