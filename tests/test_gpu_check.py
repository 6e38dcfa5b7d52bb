"""benchmarks/gpu_check.sh where no GPU is: one line and a non-zero status at once, nothing written."""
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "gpu_check.sh"


def test_without_a_gpu_it_stops_at_once_with_one_line(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path / "out"), "GPU_CHECK_WORK": str(tmp_path / "work")}
    done = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: no CUDA GPU on this machine")
    assert not (tmp_path / "out").exists() and not (tmp_path / "work").exists()


def test_the_preflight_prints_the_versions_and_parses_the_users_flags(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable}
    done = subprocess.run(["bash", str(SCRIPT), "--preflight"], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    versions = done.stdout.splitlines()[0]
    assert all(f"{name} " in versions for name in ("torch", "typer", "click", "numpy"))
    assert "preflight: the CLI parses the user's flags" in done.stdout


def test_the_preflight_stops_loudly_when_the_cli_refuses_the_users_flags(tmp_path):
    """As under typer 0.27 before the flags were explicit: `--lr` unknown."""
    python = tmp_path / "python"
    python.write_text(f'#!/bin/sh\nif [ "$1 $2" = "-m pipeline" ]; then echo "error: No such option: --lr" >&2; '
                      f'exit 2; fi\nexec {sys.executable} "$@"\n')
    python.chmod(0o755)
    done = subprocess.run(["bash", str(SCRIPT), "--preflight"], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHON": str(python)})
    assert done.returncode == 1
    assert done.stderr.startswith("error: this image's CLI cannot parse `pipeline train --name x --lr 0.1 --epochs 1`: "
                                  "error: No such option: --lr")
