import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.fixtures import kaggle_zip, write_competition
from tests.kaggle_standin import StandIn, StandInServer

# The kaggle client reads these once, when first imported: point it at the loopback stand-in and
# away from any real configuration or credentials on this machine.
os.environ["KAGGLE_API_ENVIRONMENT"] = "LOCALHOST"
os.environ["KAGGLE_CONFIG_DIR"] = tempfile.mkdtemp(prefix="kaggle-config-")
atexit.register(shutil.rmtree, os.environ["KAGGLE_CONFIG_DIR"], ignore_errors=True)
for variable in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN"):
    os.environ.pop(variable, None)

SECRET_KEY = "stand-in-secret-key-5f1d"


@pytest.fixture
def kaggle(monkeypatch, tmp_path):
    """A running stand-in Kaggle API with valid legacy credentials in the environment."""
    state = StandIn()
    try:
        server = StandInServer(state)
    except PermissionError:
        pytest.skip("the Kaggle stand-in must listen on port 80, which needs root")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
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
