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
