import atexit
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
from rich.console import Console

from pipeline.config import TrainConfig
from tests.fixtures import QUICK, kaggle_zip, write_competition
from tests.kaggle_standin import StandIn, StandInServer

# The kaggle client reads these once, when first imported: point it at the loopback stand-in and
# away from any real configuration or credentials on this machine.
os.environ["KAGGLE_API_ENVIRONMENT"] = "LOCALHOST"
os.environ["KAGGLE_CONFIG_DIR"] = tempfile.mkdtemp(prefix="kaggle-config-")
atexit.register(shutil.rmtree, os.environ["KAGGLE_CONFIG_DIR"], ignore_errors=True)
for variable in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN"):
    os.environ.pop(variable, None)
# nor may the user's measurements of `--precision auto` decide anything here (each test also gets its own)
os.environ["PIPELINE_CACHE_DIR"] = tempfile.mkdtemp(prefix="pipeline-cache-")
atexit.register(shutil.rmtree, os.environ["PIPELINE_CACHE_DIR"], ignore_errors=True)

SECRET_KEY = "stand-in-secret-key-5f1d"


# Read once, before any test hides the GPU from the processes it starts (CUDA reads CUDA_VISIBLE_DEVICES once).
GPU = torch.cuda.is_available()


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: needs a CUDA GPU (`pytest -m cuda`); skipped where none is available")
    config.addinivalue_line("markers", "smoke: the subset `make test-floors` and `make test-gpu-image` run at other "
                                       "dependency versions")
    config.addinivalue_line("markers", "requires(*modules): skipped where one of these is not installed (the GPU "
                                       "machine image has no kaggle, py7zr, albumentations or openvino)")


def pytest_runtest_setup(item):
    """Before any fixture: a test that needs a module the environment lacks is skipped (found, not imported:
    kaggle 1.x authenticates when imported)."""
    for marker in item.iter_markers("requires"):
        for module in marker.args:
            if importlib.util.find_spec(module) is None:
                pytest.skip(f"needs {module}, which is not installed")


@pytest.fixture(autouse=True)
def cpu_unless_marked_cuda(request, monkeypatch):
    """The suite is the CPU's, also on a GPU host: `auto` devices resolve to the CPU, here and in the
    processes tests start. Tests marked `cuda` run on the GPU, and are skipped without one."""
    if request.node.get_closest_marker("cuda"):
        if not GPU:
            pytest.skip("needs a CUDA GPU")
        return
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")


@pytest.fixture(autouse=True)
def own_measurement_cache(monkeypatch, tmp_path_factory):
    """Each test its own cache folder, where `--precision auto` keeps what it measured."""
    monkeypatch.setenv("PIPELINE_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(autouse=True)
def offline_weight_caches(monkeypatch, tmp_path_factory):
    """Pretrained weights never download in tests: the hub client is offline (which also keeps torch hub downloads
    off, see pipeline/models/weights.py), and both caches are each test's own, empty until a test fills them."""
    import huggingface_hub.constants

    caches = tmp_path_factory.mktemp("weight-caches")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(caches / "hub"))
    monkeypatch.setenv("TORCH_HOME", str(caches / "torch"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(caches / "hub"))


@pytest.fixture
def kaggle(monkeypatch, tmp_path):
    """A running stand-in Kaggle API with valid legacy credentials in the environment."""
    state = StandIn()
    try:
        server = StandInServer(state)
    except PermissionError:
        pytest.skip("the Kaggle stand-in must listen on port 80, which needs root")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "tmp").mkdir()  # the client keeps unfinished uploads' state under the temporary folder
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    monkeypatch.setenv("KAGGLE_USERNAME", "tester")
    monkeypatch.setenv("KAGGLE_KEY", SECRET_KEY)
    yield state
    server.stop()


@pytest.fixture(scope="session")
def competition(tmp_path_factory) -> Path:
    """A tiny competition folder (4 classes, 400 train and 40 test PNGs); never modify it."""
    root = tmp_path_factory.mktemp("competition")
    write_competition(root)
    return root


@pytest.fixture(scope="session")
def competition_zip(competition, tmp_path_factory) -> Path:
    return kaggle_zip(competition, tmp_path_factory.mktemp("zip") / "tiny.zip")


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """An empty project folder as the working directory (dataset/, weights/, submissions/ inside)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def fetched(project, competition) -> Path:
    """A project whose dataset/ holds the tiny competition."""
    shutil.copytree(competition, project / "dataset")
    return project


@pytest.fixture(scope="session")
def trained_once(competition, tmp_path_factory) -> Path:
    """A project with the tiny competition and its run `exp` (3 quick epochs), trained once per session."""
    from pipeline.train import train

    root = tmp_path_factory.mktemp("trained")
    shutil.copytree(competition, root / "dataset")
    train(TrainConfig(epochs=3, **QUICK), root / "dataset", root / "weights", Console(quiet=True))
    return root


@pytest.fixture
def trained(project, trained_once) -> Path:
    """`fetched` plus the run `exp` as `pipeline train` left it (the run's files are hard links: every
    pipeline write replaces a file, never changes one in place)."""
    shutil.copytree(trained_once / "dataset", project / "dataset")
    shutil.copytree(trained_once / "weights", project / "weights", copy_function=os.link)
    return project
