"""`pipeline lr-find`: the learning-rate range test on the tiny competition, and its suggestion rule on
synthetic curves."""
import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from pipeline.cli import app
from pipeline.errors import PipelineError
from pipeline.lr_find import _report
from tests.fixtures import runner


def test_lr_find_sweeps_the_rates_writes_the_curve_and_suggests_an_lr(fetched):
    result = runner.invoke(app, ["lr-find", "--limit", "96", "--batch-size", "16", "--workers", "0", "--device", "cpu",
                                 "--optimizer", "adamw", "--steps", "40", "--start", "1e-5", "--end", "100"])
    assert result.exit_code == 0, result.output
    curve = pd.read_csv(fetched / "weights" / "lr-find" / "lr_find.csv")
    assert 5 <= len(curve) <= 40 and curve["lr"].is_monotonic_increasing and curve["lr"].iloc[0] == pytest.approx(1e-5)
    assert (fetched / "weights" / "lr-find" / "lr_find.png").stat().st_size > 0
    suggested = float(result.output.split("falls fastest at lr ")[1].split()[0])
    assert curve["lr"].iloc[0] <= suggested <= curve["lr"].iloc[-1]
    assert not (fetched / "weights" / "exp").exists()  # not a run


def test_the_suggestion_is_the_steepest_fall_before_the_minimum(tmp_path):
    rates = np.geomspace(1e-6, 10, 60)
    decades = np.log10(rates)
    losses = 2.3 - 1.5 / (1 + np.exp(-(decades + 3) * 3)) + np.clip(decades, 0, None) ** 2  # falls fastest at 1e-3
    result = _report(rates, losses, tmp_path, Console(quiet=True))
    assert result.suggested == pytest.approx(1e-3, rel=0.3) and result.suggested < result.minimum < 2
    noisy_start = losses.copy()
    noisy_start[1] = noisy_start[0] - 1.0  # the first, barely smoothed steps are noise: not a fall to suggest
    assert _report(rates, noisy_start, tmp_path, Console(quiet=True)).suggested == pytest.approx(1e-3, rel=0.3)
    with pytest.raises(PipelineError, match="the loss did not fall by 5% between lr"):
        _report(rates, np.linspace(1, 5, 60), tmp_path, Console(quiet=True))
    with pytest.raises(PipelineError, match="the loss did not fall by 5% between lr"):  # flat: nothing to suggest
        _report(rates, np.full(60, 2.3) + np.random.default_rng(0).normal(0, 0.01, 60), tmp_path, Console(quiet=True))
    with pytest.raises(PipelineError, match="blew up within 7 steps, by lr"):
        _report(rates[:7], np.linspace(2, 1, 7), tmp_path, Console(quiet=True))


@pytest.mark.parametrize("args, message", [
    (["--start", "1", "--end", "0.1"], "--end 0.1: must be a finite number > 1"),
    (["--end", "1e308"], "--end 1e+308: must be a finite number"),
    (["--start", "0"], "--start 0: must be a finite number > 0"),
    (["--steps", "10"], "--steps 10: the range test needs 20 or more steps"),
])
def test_lr_find_refuses_a_range_that_is_no_range(fetched, args, message):
    result = runner.invoke(app, ["lr-find", *args])
    assert result.exit_code == 1 and message in result.output, result.output


def test_lr_find_leaves_out_the_options_that_only_a_run_has():
    result = runner.invoke(app, ["lr-find", "--help"])
    assert "--optimizer" in result.output and "--start" in result.output
    for option in ("--name", "--epochs", "--patience", "--keep-top", "--ema", "--target-acc"):
        assert option not in result.output
