import pandas as pd
import pytest

from pipeline.cli import app
from pipeline.errors import PipelineError
from pipeline.experiments import COLUMNS, compare_runs, list_runs
from tests.fixtures import assert_png, dead_pid, fabricate_run, runner


def test_runs_table_shows_finished_running_crashed_and_broken_runs(project):
    weights = project / "weights"
    fabricate_run(weights, "good", lr=0.1, val_acc=(0.5, 0.9, 0.8), created="2026-01-01T10:00:00+00:00")
    fabricate_run(weights, "better-lr", lr=0.05, val_acc=(0.6, 0.95), epochs=2, created="2026-01-02T10:00:00+00:00")
    fabricate_run(weights, "live", val_acc=(0.3,), epochs=10, status="running", created="2026-01-03T10:00:00+00:00")
    fabricate_run(weights, "dead", val_acc=(0.3,), epochs=10, status="running", pid=dead_pid(),
                  created="2026-01-04T10:00:00+00:00")
    fabricate_run(weights, "nometrics", metrics=False, status=None, created="2026-01-05T10:00:00+00:00")
    (weights / "not-a-run").mkdir()
    table = list_runs(weights)
    assert list(table.columns) == list(COLUMNS)
    assert table["run"].tolist() == ["good", "better-lr", "live", "dead", "nometrics"]
    rows = table.set_index("run")
    assert rows.loc["good", "best"] == 0.9 and rows.loc["good", "best_epoch"] == 2
    assert rows.loc["good", "macro_f1"] == pytest.approx(0.85) and rows.loc["good", "wall_s"] == 6.0
    assert rows.loc["good", "schedule"] == "step 2" and rows.loc["good", "status"] == "finished"
    assert rows.loc["live", "status"] == "running" and rows.loc["dead", "status"] == "crashed"
    assert rows.loc["nometrics", "status"].startswith("incomplete: ") and "no metrics" in rows.loc["nometrics", "status"]
    assert pd.isna(rows.loc["nometrics", "best"])
    by_acc = list_runs(weights, sort="best", descending=True)
    assert by_acc["run"].tolist()[:2] == ["better-lr", "good"] and by_acc["run"].iloc[-1] == "nometrics"
    with pytest.raises(PipelineError, match="--sort 'accuracy': choose one of run, date"):
        list_runs(weights, sort="accuracy")

    shown = runner.invoke(app, ["runs", "--sort", "lr", "--csv", "runs.csv"])
    assert shown.exit_code == 0, shown.output
    assert "crashed" in shown.output and "better-lr" in shown.output
    exported = pd.read_csv(project / "runs.csv")
    assert exported["run"].tolist()[:2] == ["better-lr", "good"] and len(exported) == 5


def test_run_killed_before_logging_an_epoch_is_just_crashed(project):
    weights = project / "weights"  # killed between its first checkpoint and metrics.csv, or before either
    fabricate_run(weights, "killed", metrics=False, status="running", pid=dead_pid())
    fabricate_run(weights, "unlogged", metrics=False, status="finished")
    rows = list_runs(weights).set_index("run")
    assert rows.loc["killed", "status"] == "crashed" and pd.isna(rows.loc["killed", "epochs"])
    assert rows.loc["unlogged", "status"] == "finished: metrics.csv: no metrics"


def test_no_runs_yet(project):
    result = runner.invoke(app, ["runs"])
    assert result.exit_code == 0 and "no runs under" in result.output


def test_compare_overlays_runs_and_lists_differences(project):
    weights = project / "weights"
    fabricate_run(weights, "a", lr=0.1, val_acc=(0.5, 0.9, 0.8))
    fabricate_run(weights, "b", lr=0.05, val_acc=(0.6, 0.95))
    fabricate_run(weights, "c", lr=0.1, val_acc=(0.2, 0.3, 0.4, 0.5))
    figure, table = compare_runs([weights / "a", weights / "b", weights / "c"])
    assert figure == weights / "compare.png"
    assert_png(figure, (1000, 700))
    assert "lr" in table.index and "epochs" in table.index and "seed" not in table.index and "name" not in table.index
    assert table.loc["lr"].tolist() == [0.1, 0.05, 0.1]
    assert table.loc["best val score"].tolist() == [0.9, 0.95, 0.5]
    shown = runner.invoke(app, ["compare", "a", "b", "--output", "ab.png"])
    assert shown.exit_code == 0, shown.output
    assert "0.05" in shown.output and (project / "ab.png").is_file()

    fabricate_run(weights, "nometrics", metrics=False)
    broken = runner.invoke(app, ["compare", "a", "nometrics"])
    assert broken.exit_code == 1
    assert broken.output.strip() == f"error: {weights / 'nometrics' / 'metrics.csv'}: no metrics (the run has not finished an epoch)"
    assert runner.invoke(app, ["compare", "a"]).exit_code == 1
    assert "no such run" in runner.invoke(app, ["compare", "a", "zzz"]).output
