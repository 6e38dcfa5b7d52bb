"""--patience, --keep-top and --average-top: epochs ranked by the val score of the run's metric. The scores are
scripted (the real evaluation, its score replaced) so that each test knows which epochs are best."""
import dataclasses

import pandas as pd
import pytest
from sklearn.metrics import f1_score
import torch

from pipeline import train as training
from pipeline.config import TrainConfig
from pipeline.errors import PipelineError
from pipeline.experiments import describe_run, list_runs
from pipeline.run import Run, load_checkpoint
from pipeline.train import resume, train
from tests.fixtures import QUICK


@pytest.fixture
def scripted(monkeypatch):
    """Replace the val score (and accuracy) of each evaluation, in order, by the values given to the returned setter."""
    scores = []
    real = training.evaluate

    def evaluate(ctx):
        score = scores.pop(0)
        return dataclasses.replace(real(ctx), acc=score, score=score)

    monkeypatch.setattr(training, "evaluate", evaluate)
    return scores.extend


@pytest.mark.parametrize("options, message", [
    (dict(patience=0), "--patience must be 1 or more"),
    (dict(keep_top=0), "--keep-top must be between 1 and 100"),
    (dict(average_top=True), "pass --keep-top 2 or more"),
    (dict(patience=3, keep_top=2, full=True), "--patience, --keep-top rank epochs by their val score: they need a validation"),
    (dict(metric="top5"), "--metric 'top5' is not one of accuracy, f1_macro"),
    (dict(metric="log_loss", full=True), "--metric rank epochs by their val score: they need a validation"),
    (dict(name="lr-find"), "weights/lr-find/ is where `pipeline lr-find` writes"),
])
def test_run_control_options_are_checked(options, message):
    with pytest.raises(PipelineError, match=message):
        TrainConfig(**options).validate()


def test_patience_stops_after_that_many_epochs_without_a_better_val_accuracy(fetched, scripted, capsys):
    scripted([0.5, 0.6, 0.55, 0.6, 0.59, 0.9])  # epoch 2 is best; 3-5 are no better (a tie is not better)
    result = train(TrainConfig(epochs=6, limit=64, patience=3, **QUICK))
    assert pd.read_csv(result.run_dir / "metrics.csv")["epoch"].tolist() == [1, 2, 3, 4, 5]
    assert result.best_epoch == 2 and load_checkpoint(result.run_dir / "best.pt")["epoch"] == 2
    said = " ".join(capsys.readouterr().out.split())  # the console wraps long lines
    assert "early stop after epoch 5: no better val accuracy for 3 epochs (best 0.6000 at epoch 2)" in said


def test_keep_top_keeps_the_best_epochs_checkpoints_and_resume_carries_the_ranking_on(fetched, scripted):
    scripted([0.5, 0.7, 0.6, 0.7])
    run = train(TrainConfig(epochs=4, limit=64, keep_top=2, name="top", **QUICK)).run_dir
    assert sorted(p.name for p in (run / "top").iterdir()) == ["epoch-2.pt", "epoch-4.pt"]  # 0.7 and 0.7
    assert load_checkpoint(run / "last.pt")["top"] == [(0.7, 2), (0.7, 4)]
    assert load_checkpoint(run / "top" / "epoch-4.pt")["epoch"] == 4
    scripted([0.8, 0.1])
    resume(run, {"epochs": 6})
    assert sorted(p.name for p in (run / "top").iterdir()) == ["epoch-2.pt", "epoch-5.pt"]  # epoch 4 lost its place
    assert load_checkpoint(run / "last.pt")["top"] == [(0.8, 5), (0.7, 2)]


def test_average_top_makes_best_pt_the_mean_of_the_kept_epochs_weights_and_scores_it(fetched, scripted, capsys):
    scripted([0.5, 0.7, 0.6, 0.3, 0.65, 0.3])  # the fifth: the averaged weights' own evaluation
    result = train(TrainConfig(epochs=4, limit=64, keep_top=2, average_top=True, ema=0.9, **QUICK))
    run = result.run_dir
    best, kept = load_checkpoint(run / "best.pt"), [load_checkpoint(run / "top" / f"epoch-{e}.pt") for e in (2, 3)]
    assert best["averaged_epochs"] == [2, 3] and best["averaged_score"] == 0.65 and best["epoch"] == 2
    for key in ("model", "ema"):
        for name, tensor in best[key].items():
            if tensor.is_floating_point():
                assert torch.allclose(tensor, (kept[0][key][name] + kept[1][key][name]) / 2), name
    assert (result.best_score, result.best_epoch) == (0.7, 2)  # the best single epoch, as metrics.csv shows it
    line = "best.pt: the average of the 2 best epochs (2, 3): val accuracy 0.6500; the best single epoch (2): 0.7000"
    assert line in " ".join(capsys.readouterr().out.split()) and (run / "result.txt").read_text().startswith(line)
    assert result.averaged_score == 0.65  # the CLI's last line says what best.pt scores
    report = (run / "report.md").read_text()  # its headline is what best.pt holds, as its tables are
    assert "**best.pt: the average of the 2 best epochs (2, 3): val accuracy 0.6500**" in report
    assert "- best val accuracy 0.7000 of a single epoch at epoch 2" in report
    listed = describe_run(Run(run))
    assert listed["best"] == 0.65 and listed["status"] == "finished: best.pt averages epochs 2, 3"
    _, targets, probabilities = Run(run).read_val_probabilities()  # the averaged weights' (before, epoch 2's row)
    assert listed["val_acc"] == round(float((probabilities.argmax(1) == targets).mean()), 4)
    assert listed["macro_f1"] == round(f1_score(targets, probabilities.argmax(1), average="macro",
                                                labels=range(probabilities.shape[1])), 4)
    from pipeline.experiments import compare_runs
    single = train(TrainConfig(epochs=1, limit=64, name="single", **QUICK)).run_dir  # scripted: 0.3
    table = compare_runs([run, single])[1]  # before, the best single epoch's 0.7 at epoch 2
    assert table.loc["best val score", run.name] == 0.65 and table.loc["best epoch", run.name] == "average of 2, 3"
    assert table.loc["val acc at best", run.name] == listed["val_acc"] and table.loc["best val score", "single"] == 0.3


def test_a_lower_is_better_metric_ranks_the_epochs(fetched, scripted, capsys):
    scripted([0.9, 0.5, 0.7, 0.5, 0.6])  # log loss: epoch 2 is best; 3-5 are no better (a tie is not better)
    result = train(TrainConfig(epochs=6, limit=64, patience=3, keep_top=2, metric="log_loss", **QUICK))
    run = result.run_dir
    metrics = pd.read_csv(run / "metrics.csv")
    assert metrics["epoch"].tolist() == [1, 2, 3, 4, 5] and metrics["val_score"].tolist() == [0.9, 0.5, 0.7, 0.5, 0.6]
    assert (result.metric, result.best_score, result.best_epoch) == ("log_loss", 0.5, 2)
    assert load_checkpoint(run / "best.pt")["epoch"] == 2
    assert load_checkpoint(run / "last.pt")["top"] == [(0.5, 2), (0.5, 4)]
    said = " ".join(capsys.readouterr().out.split())
    assert "early stop after epoch 5: no better val log loss for 3 epochs (best 0.5000 at epoch 2)" in said
    assert (run / "result.txt").read_text().startswith("best val log loss 0.5000 at epoch 2, val accuracy ")
    assert "**best val log loss 0.5000** at epoch 2 of 5 trained, 6 planned (" in (run / "report.md").read_text()
    row = list_runs(run.parent).set_index("run").loc[run.name]
    assert (row["metric"], row["best"], row["best_epoch"]) == ("log_loss", 0.5, 2)
