"""Pretrained weights by name — `timm:<model>.<tag>` and `torchvision:<Enum>.<member>` — as a local file: from the
libraries' own caches (the Hugging Face hub cache for timm, torch hub's checkpoints for torchvision and timm's
URL-only weights), downloaded through them only when absent. Cached weights never touch the network, so an offline
machine (a Kaggle notebook without internet) trains from a cache copied onto it; `HF_HUB_OFFLINE=1` keeps every
download off."""
from __future__ import annotations

import os
import urllib.error
from pathlib import Path
from urllib.parse import urlparse

from pipeline.errors import PipelineError


def weights_file(reference: str) -> Path:
    """The local file holding the named weights (see the module's doc); one-line errors for an unknown name and for
    weights neither cached nor downloadable."""
    library, _, name = reference.partition(":")
    return _timm_file(reference, name) if library == "timm" else _torchvision_file(reference, name)


def _timm_file(reference: str, name: str) -> Path:
    import timm
    from timm.models import get_pretrained_cfg

    arch = name.partition(".")[0]
    tags = timm.list_pretrained(f"{arch}.*")
    try:
        config = get_pretrained_cfg(name) if timm.is_model(arch) else None
    except RuntimeError:  # an unknown tag
        config = None
    if config is None or not (config.hf_hub_id or config.url):
        known = f"its weights: {', '.join('timm:' + t for t in tags[:8])}" if tags else "timm has no weights for it"
        raise PipelineError(f"--pretrained {reference}: not a timm model with weights ({known})")
    if config.hf_hub_id:
        return _hub_file(reference, config.hf_hub_id, [config.hf_hub_filename] if config.hf_hub_filename
                         else ["model.safetensors", "pytorch_model.bin"])
    return _torch_hub_file(reference, config.url)


def _torchvision_file(reference: str, name: str) -> Path:
    import torchvision

    try:
        weights = torchvision.models.get_weight(name)
    except (ValueError, KeyError, AttributeError):
        raise PipelineError(f"--pretrained {reference}: not a torchvision weights name; spell it as "
                            "torchvision:<Enum>.<member>, e.g. torchvision:ResNet18_Weights.IMAGENET1K_V1") from None
    return _torch_hub_file(reference, weights.url)


def _hub_file(reference: str, repo: str, filenames: list[str]) -> Path:
    """The first of `filenames` in the Hugging Face hub cache, else downloaded through the hub client. The cache is
    named each call: hub releases before 0.24 bound its default when imported."""
    import huggingface_hub
    from huggingface_hub import constants
    from huggingface_hub.utils import EntryNotFoundError, LocalEntryNotFoundError  # .errors only from 0.24

    repo, _, revision = repo.partition("@")
    for filename in filenames:
        cached = huggingface_hub.try_to_load_from_cache(repo, filename, cache_dir=constants.HF_HUB_CACHE,
                                                        revision=revision or None)
        if isinstance(cached, str):
            return Path(cached)
    for filename in filenames:
        try:
            return Path(huggingface_hub.hf_hub_download(repo, filename, cache_dir=constants.HF_HUB_CACHE,
                                                        revision=revision or None))
        except LocalEntryNotFoundError:  # offline, or no network: before the missing-file case it subclasses
            reason = "HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE else "the hub cannot be reached"
            raise _not_cached(reference, constants.HF_HUB_CACHE, "HF_HUB_CACHE", reason) from None
        except EntryNotFoundError:
            continue  # the repository has the other file
        except OSError as e:
            raise _not_cached(reference, constants.HF_HUB_CACHE, "HF_HUB_CACHE", e) from None
    raise PipelineError(f"--pretrained {reference}: {repo} on the Hugging Face hub holds none of {', '.join(filenames)}")


def _torch_hub_file(reference: str, url: str) -> Path:
    """torch hub's cached copy of `url` (where `torch.hub.load_state_dict_from_url` keeps it), else downloaded there."""
    import torch
    from huggingface_hub import constants

    folder = Path(torch.hub.get_dir()) / "checkpoints"
    path = folder / os.path.basename(urlparse(url).path)
    if path.is_file():
        return path
    if constants.HF_HUB_OFFLINE:
        raise _not_cached(reference, folder, "TORCH_HOME", "HF_HUB_OFFLINE is set")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(url, str(path), progress=False)
    except (urllib.error.URLError, OSError) as e:
        raise _not_cached(reference, folder, "TORCH_HOME", e) from None
    return path


def _not_cached(reference: str, cache: Path | str, variable: str, reason) -> PipelineError:
    reason = str(reason).strip().splitlines()[0] if str(reason).strip() else type(reason).__name__
    return PipelineError(f"--pretrained {reference}: not in the cache {cache} and not downloadable here ({reason}); "
                         f"download it once where there is internet (the same command), or copy that cache onto this "
                         f"machine (a Kaggle dataset) and point {variable} at it")
