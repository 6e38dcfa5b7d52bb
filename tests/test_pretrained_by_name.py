"""--pretrained timm:<model>.<tag> and torchvision:<Enum>.<member>: weights from the libraries' own caches, filled here
from randomly initialised models (nothing is downloaded: conftest keeps the hub client offline and the caches empty)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import safetensors.torch
import timm
import torch
import torchvision

from pipeline.config import config_from
from pipeline.errors import PipelineError
from pipeline.models import build_model, load_pretrained
from pipeline.models.weights import weights_file
from pipeline.run import Run, load_checkpoint
from pipeline.train import train
from tests.fixtures import QUICK

TIMM_WEIGHTS = "timm:test_resnet.r160_in1k"
TORCHVISION_WEIGHTS = "torchvision:ResNet18_Weights.IMAGENET1K_V1"


def fill_hub_cache(repo: str, state: dict) -> Path:
    """The Hugging Face hub cache's layout for one file of `repo` at its main revision."""
    repo_dir = Path(os.environ["HF_HUB_CACHE"]) / f"models--{repo.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo_dir / "snapshots" / commit).mkdir(parents=True)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(commit)
    path = repo_dir / "snapshots" / commit / "model.safetensors"
    safetensors.torch.save_file(state, path)
    return path


def fill_torch_hub_cache(url: str, state: dict) -> Path:
    folder = Path(os.environ["TORCH_HOME"]) / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    path = folder / url.rsplit("/", 1)[1]
    torch.save(state, path)
    return path


def random_timm_state(arch: str) -> dict:
    torch.manual_seed(1)
    return timm.create_model(arch, pretrained=False).state_dict()  # 1,000 ImageNet classes, like the real


@pytest.fixture
def timm_cache():
    return random_timm_state("test_resnet")


@pytest.fixture
def torchvision_cache():
    torch.manual_seed(2)
    state = torchvision.models.resnet18(weights=None).state_dict()
    fill_torch_hub_cache(torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url, state)
    return state


def assert_loaded_except_head(model, state, head="fc."):
    own = model.state_dict()
    for key, tensor in state.items():
        if not key.startswith(head):
            assert torch.equal(own[key], tensor), key
    assert own[head + "weight"].shape[0] == 4 and own[head + "weight"].shape != state[head + "weight"].shape


@pytest.mark.smoke
def test_timm_weights_come_from_the_hub_cache():
    """resnet10t: a model every timm this package admits knows (test_resnet came with timm 1.0.11)."""
    state = random_timm_state("resnet10t")
    cached = fill_hub_cache("timm/resnet10t.c3_in1k", {k: v.contiguous() for k, v in state.items()})
    assert weights_file("timm:resnet10t.c3_in1k") == cached
    model = build_model("timm:resnet10t", 4)
    notes = load_pretrained(model, cached, "timm:resnet10t")
    assert_loaded_except_head(model, state)
    assert notes == ["fc.bias (head)", "fc.weight (head)"]


def test_torchvision_weights_come_from_the_torch_hub_cache(torchvision_cache):
    path = weights_file(TORCHVISION_WEIGHTS)
    assert path.parent == Path(os.environ["TORCH_HOME"]) / "hub" / "checkpoints"
    model = build_model("torchvision:resnet18", 4)
    load_pretrained(model, path, "torchvision:resnet18")
    assert_loaded_except_head(model, torchvision_cache)
    assert weights_file("torchvision:ResNet18_Weights.DEFAULT") == path  # DEFAULT is IMAGENET1K_V1 here


def test_named_weights_pick_the_model_and_refuse_another():
    assert config_from({"pretrained": TIMM_WEIGHTS}).model == "timm:test_resnet"
    assert config_from({"pretrained": TORCHVISION_WEIGHTS}).model == "torchvision:resnet18"
    assert config_from({"pretrained": "weights/x.pth"}).model == "custom"
    config_from({"pretrained": TORCHVISION_WEIGHTS, "model": "torchvision"}).validate()  # the alias of resnet18
    with pytest.raises(PipelineError, match="--pretrained timm:test_resnet.r160_in1k is for --model timm:test_resnet, "
                                            "not resnet50: drop --model or pass --model timm:test_resnet"):
        config_from({"pretrained": TIMM_WEIGHTS, "model": "resnet50"}).validate()


@pytest.mark.parametrize("reference", ["timm:", "torchvision:", "torchvision:resnet18", "torchvision:ResNet18_Weights",
                                       "timm:resnet18.a1_in1k/x"])
def test_misspelled_names_are_refused_before_anything_runs(reference):
    with pytest.raises(PipelineError, match=f"^--pretrained {reference}: name weights as timm:<model>.<tag>"):
        config_from({"pretrained": reference}).validate()


@pytest.mark.parametrize("reference, message", [
    (TIMM_WEIGHTS, r"not in the cache .*hub and not downloadable here \(.*\); download it once where there is "
                   r"internet \(the same command\), or copy that cache onto this machine \(a Kaggle dataset\) and "
                   r"point HF_HUB_CACHE at it"),
    (TORCHVISION_WEIGHTS, r"not in the cache .*torch.hub.checkpoints and not downloadable here \(HF_HUB_OFFLINE is "
                          r"set\); .* point TORCH_HOME at it"),
    ("timm:test_resnet.nope", r"not a timm model with weights \(its weights: timm:test_resnet.r160_in1k\)"),
    ("timm:no_such_model", "not a timm model with weights .timm has no weights for it."),
    ("torchvision:Nope_Weights.X", "not a torchvision weights name; spell it as torchvision:<Enum>.<member>"),
])
def test_unusable_names_are_one_line_errors(reference, message):
    with pytest.raises(PipelineError, match=f"^--pretrained {reference}: {message}"):
        weights_file(reference)


def test_training_from_cached_timm_weights_and_an_empty_cache_from_the_cli(fetched, timm_cache):
    command = [sys.executable, "-m", "pipeline", "train", "--pretrained", TIMM_WEIGHTS, "--epochs", "1",
               "--batch-size", "32", "--workers", "0", "--limit", "64", "--name", "named"]
    empty = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert empty.returncode == 1 and "Traceback" not in empty.stderr
    assert empty.stderr.startswith(f"error: --pretrained {TIMM_WEIGHTS}: not in the cache {os.environ['HF_HUB_CACHE']} ")
    assert not (fetched / "weights" / "named").exists()
    fill_hub_cache("timm/test_resnet.r160_in1k", {k: v.contiguous() for k, v in timm_cache.items()})
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"loaded {TIMM_WEIGHTS}; not loaded or adapted: fc.bias (head), fc.weight (head)" in " ".join(done.stdout.split())
    options = Run(fetched / "weights" / "named").read_config().options
    assert (options.model, options.pretrained) == ("timm:test_resnet", TIMM_WEIGHTS)
    assert load_checkpoint(fetched / "weights" / "named" / "best.pt")["model"].keys() == timm_cache.keys()


def test_named_weights_train_end_to_end_in_process(fetched, torchvision_cache, capsys):
    result = train(config_from({"pretrained": TORCHVISION_WEIGHTS, "epochs": 1, "limit": 64, **QUICK}))
    options = Run(result.run_dir).read_config().options
    assert (options.model, options.pretrained) == ("torchvision:resnet18", TORCHVISION_WEIGHTS)
    assert f"loaded {TORCHVISION_WEIGHTS}; not loaded or adapted: fc.bias (head), fc.weight (head)" in \
        " ".join(capsys.readouterr().out.split())
