"""Pseudo-labels and distillation: the confidence rule, the loss, which teacher models are clean for a student, and
the options from the command line."""
import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from pipeline.config import TrainConfig
from pipeline.cv import train_cv
from pipeline.dataset import run_split, training_arrays
from pipeline.errors import PipelineError
from pipeline.predict import predict
from pipeline.run import Run
from pipeline.teach import TaughtLoss, clean_teachers, confident, teacher_checkpoints
from pipeline.train import resume, train
from tests.fixtures import QUICK, runner

from pipeline.cli import app


@pytest.mark.smoke
def test_the_confidence_rule_keeps_a_threshold_or_each_class_s_most_confident_fraction():
    probabilities = np.array([[0.95, 0.05], [0.6, 0.4], [0.55, 0.45], [0.2, 0.8], [0.1, 0.9], [0.3, 0.7]])
    assert confident(probabilities, 0.9, None).tolist() == [0, 4]
    assert confident(probabilities, 1.0, None).tolist() == []
    # class 0 is predicted 3 times, class 1 3 times: the top third of each, the balance kept
    assert confident(probabilities, None, 1 / 3).tolist() == [0, 4]
    assert confident(probabilities, None, 1.0).tolist() == list(range(6))
    assert confident(probabilities[:3], None, 0.01).tolist() == [0]  # at least one of each class predicted


@pytest.mark.smoke
def test_the_taught_loss_mixes_weighted_cross_entropy_and_softened_kl():
    torch.manual_seed(0)
    logits, teacher = torch.randn(6, 3), torch.softmax(torch.randn(6, 3), 1)
    labels = torch.eye(3)[torch.tensor([0, 1, 2, 0, 1, 2])]
    weight = torch.tensor([1.0, 1, 1, 1, 0.5, 0.5])
    rows = torch.cat([labels, teacher, weight[:, None]], 1)
    plain = TaughtLoss(3, 0.0, 4.0)(logits, rows)
    assert plain == pytest.approx(float((F.cross_entropy(logits, labels.argmax(1), reduction="none") * weight).mean()))
    alpha, t = 0.3, 4.0
    student, softened = F.log_softmax(logits / t, 1), torch.softmax(teacher.log() / t, 1)
    kl = (softened * (softened.log() - student)).sum(1)
    expected = ((1 - alpha) * F.cross_entropy(logits, labels.argmax(1), reduction="none") + alpha * t * t * kl) * weight
    assert TaughtLoss(3, alpha, t)(logits, rows) == pytest.approx(float(expected.mean()), rel=1e-5)
    matched = torch.cat([labels, torch.softmax(logits, 1), torch.ones(6, 1)], 1)  # a teacher the student matches
    assert TaughtLoss(3, 1.0, 1.0)(logits, matched) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("options, message", [
    (dict(pseudo="t", pseudo_threshold=0.0), r"--pseudo-threshold 0: must be a finite number in \(0, 1\]"),
    (dict(pseudo="t", pseudo_threshold=1.5), r"--pseudo-threshold 1.5: must be a finite number in \(0, 1\]"),
    (dict(pseudo="t", pseudo_top=0.0), r"--pseudo-top 0: must be a finite number in \(0, 1\]"),
    (dict(pseudo_threshold=0.8), r"--pseudo-threshold is --pseudo's confidence rule: pass --pseudo SOURCE too"),
    (dict(pseudo="t", pseudo_threshold=0.8, pseudo_top=0.5), "two confidence rules: pass one"),
    (dict(pseudo="t", pseudo_weight=0.0), r"--pseudo-weight 0: must be a finite number > 0"),
    (dict(teacher="t", distill_alpha=1.5), r"--distill-alpha 1.5: must be a finite number in \(0, 1\]"),
    (dict(teacher="t", distill_alpha=0.0), r"--distill-alpha 0: must be a finite number in \(0, 1\]; at 0 the "
                                           r"teacher's share is nothing: leave out --teacher"),  # before, it taught nothing
    (dict(teacher="t", distill_temperature=0.0), r"--distill-temperature 0: must be a finite number > 0"),
    (dict(teacher="t", aug="crop-flip", mixup=0.2), "--teacher and --mixup cannot be combined yet"),
    (dict(pseudo=""), r"--pseudo '': name the teacher's runs or cross-validations, comma-separated"),
    (dict(teacher=" , "), r"--teacher ' , ': name the teacher's runs"),
])
def test_bad_teaching_options(options, message):
    with pytest.raises(PipelineError, match=message):
        TrainConfig(**options).validate()


def test_a_cv_teaches_a_cv_of_its_folds_fold_by_fold_and_never_a_student_that_validates_on_its_training_images(fetched):
    teacher, _ = train_cv(TrainConfig(epochs=1, folds=2, name="teacher", **QUICK))
    data = training_arrays(fetched / "dataset")
    members = teacher_checkpoints("teacher", "--teacher")
    for fold in (0, 1):
        val_idx = run_split(data.targets, 0.2, 42, False, data.classes, 2, fold)[1]
        assert clean_teachers(members, data, val_idx, "--teacher") == [teacher.fold(fold).best]
    assert clean_teachers(members, data, np.array([], int), "--teacher") == [teacher.fold(0).best, teacher.fold(1).best]
    with pytest.raises(PipelineError, match=r"--teacher teacher: every model of it trained on some of this run's val "
                                            r"images .* train the student as a CV of the teacher's folds"):
        train(TrainConfig(epochs=1, teacher="teacher", name="student", **QUICK))
    assert not (fetched / "weights" / "student" / "best.pt").exists()
    predict(runs=[teacher.path], tta="none")
    cv, summary = train_cv(TrainConfig(epochs=1, folds=2, teacher="teacher", pseudo="teacher", pseudo_top=0.5,
                                       name="student-cv", **QUICK))
    assert summary is not None and cv.fold(1).read_config().split["pseudo_images"] >= 4  # 40 test images, 4 classes
    full = train(TrainConfig(epochs=1, full=True, teacher="teacher", name="full", **QUICK))  # no val: both folds
    assert Run(full.run_dir).read_config().options.teacher == "teacher"


def test_pseudo_labels_and_a_teacher_from_the_command_line(fetched, monkeypatch):
    quick = ["--epochs", "2", "--batch-size", "32", "--workers", "0", "--lr", "0.02", "--device", "cpu", "--recipe", "seed"]
    assert runner.invoke(app, ["train", *quick, "--name", "t", "--label-smoothing", "0.5"]).exit_code == 0
    missing = runner.invoke(app, ["train", *quick, "--name", "s", "--pseudo", "t"])
    assert missing.exit_code == 1 and "--pseudo t: " in missing.output and "pipeline predict --run t" in missing.output
    assert runner.invoke(app, ["predict", "--run", "t", "--device", "cpu", "--tta", "none"]).exit_code == 0
    top = float(np.load(fetched / "submissions" / "t.probs.npy").max())  # how sure it is depends on the CPU's numbers
    assert top < 0.999
    none = runner.invoke(app, ["train", *quick, "--name", "s", "--pseudo", "t", "--pseudo-threshold", f"{top + 1e-6}"])
    assert none.exit_code == 1 and "keeps none of the 40 test images" in " ".join(none.output.split()), none.output
    student = runner.invoke(app, ["train", *quick, "--name", "s", "--pseudo", "t", "--pseudo-threshold", "0.25",
                                  "--pseudo-soft", "--pseudo-weight", "0.5", "--teacher", "t",
                                  "--distill-temperature", "3"])
    assert student.exit_code == 0, student.output
    assert "--pseudo t: 40 of 40 test images join training (soft targets, weight 0.5)" in " ".join(student.output.split())
    config = json.loads((fetched / "weights" / "s" / "config.json").read_text())
    assert config["split"]["pseudo_images"] == 40 and config["options"]["distill_temperature"] == 3.0
    listed = runner.invoke(app, ["runs"])
    assert "pseudo t +40, teacher t" in listed.output
    # the teacher's test predictions go stale when it trains on (to a better epoch: a new best.pt): one line, nothing
    # trained
    import dataclasses

    import pipeline.train
    real = pipeline.train.evaluate
    with monkeypatch.context() as patched:
        patched.setattr(pipeline.train, "evaluate", lambda ctx: dataclasses.replace(real(ctx), acc=1.0, score=1.0))
        assert runner.invoke(app, ["train", "--resume", "weights/t", "--epochs", "3", "--device", "cpu"]).exit_code == 0
    assert torch.load(fetched / "weights" / "t" / "best.pt", weights_only=False)["epoch"] == 3
    stale = runner.invoke(app, ["train", *quick, "--name", "s2", "--pseudo", "t"])
    assert stale.exit_code == 1 and "has changed since it predicted this; predict again" in stale.output
    assert not (fetched / "weights" / "s2" / "best.pt").exists()
    assert runner.invoke(app, ["predict", "--run", "t", "--device", "cpu", "--tta", "none"]).exit_code == 0
    with pytest.raises(PipelineError, match="its teacher's targets are not those it started with"):
        resume(fetched / "weights" / "s", {"epochs": 3})


def test_a_teacher_of_other_classes_is_one_line(fetched, tmp_path):
    assert runner.invoke(app, ["train", "--epochs", "1", "--batch-size", "32", "--workers", "0", "--device", "cpu",
                               "--recipe", "seed", "--name", "t"]).exit_code == 0
    labels = pd.read_csv(fetched / "dataset" / "trainLabels.csv")
    labels["label"] = labels["label"].replace({"apple": "pear"})
    labels.to_csv(fetched / "dataset" / "trainLabels.csv", index=False)
    result = runner.invoke(app, ["train", "--epochs", "1", "--batch-size", "32", "--workers", "0", "--device", "cpu",
                                 "--recipe", "seed", "--full", "--teacher", "t", "--name", "s"])
    said = " ".join(result.output.split())
    assert result.exit_code == 1 and "--teacher t: " in said, said
    assert "predicts 4 classes, this dataset has 4; only the model has apple; only the dataset has pear" in said
    assert "teach with a model of this competition" in " ".join(result.output.split())
    shutil.rmtree(fetched / "weights" / "s", ignore_errors=True)


def test_a_teacher_is_clean_only_if_the_weights_it_started_from_were_too(fetched):
    train(TrainConfig(epochs=1, seed=7, name="start", **QUICK))  # its split's training images: some of seed 42's val
    start = Run(fetched / "weights" / "start")
    train(TrainConfig(epochs=1, pretrained=str(start.best), name="teacher", **QUICK))  # seed 42, as the student's
    assert Run(fetched / "weights" / "teacher").read_config().started_from == [start.read_config().split_identity()]
    data = training_arrays(fetched / "dataset")
    val_idx = run_split(data.targets, 0.2, 42, False, data.classes)[1]
    shutil.rmtree(start.path)  # the lineage is recorded: it tells once the start is gone too
    with pytest.raises(PipelineError, match="the --pretrained weights it started from"):
        clean_teachers(teacher_checkpoints("teacher", "--teacher"), data, val_idx, "--teacher")
    clean = train(TrainConfig(epochs=1, seed=42, name="clean", **QUICK))
    train(TrainConfig(epochs=1, pretrained=str(Run(clean.run_dir).best), name="teacher-2", **QUICK))
    assert clean_teachers(teacher_checkpoints("teacher-2", "--teacher"), data, val_idx, "--teacher")


def test_a_cv_student_whose_teacher_cannot_teach_a_later_fold_is_refused_before_any_fold_trains(fetched):
    teacher, _ = train_cv(TrainConfig(epochs=1, folds=2, name="teacher", **QUICK))
    with pytest.raises(PipelineError, match=r"fold 1 of 2: --teacher teacher/fold-0: every model of it trained on"):
        train_cv(TrainConfig(epochs=1, folds=2, teacher="teacher/fold-0", name="student", **QUICK))
    assert not (fetched / "weights" / "student").exists()


@pytest.mark.parametrize("options, message", [
    (dict(pseudo_soft=True), r"--pseudo-soft applies to --pseudo SOURCE, which is not given"),
    (dict(pseudo_weight=2.0), r"--pseudo-weight applies to --pseudo SOURCE"),
    (dict(distill_alpha=0.3), r"--distill-alpha applies to --teacher SOURCE"),
    (dict(pseudo="t", distill_temperature=4.0), r"--distill-temperature applies to --teacher SOURCE"),
])
def test_a_teaching_option_without_its_source_is_refused(options, message):
    with pytest.raises(PipelineError, match=message):
        TrainConfig(**options).validate()


def test_a_copied_teacher_weighs_once_and_a_cv_started_from_a_fold_is_refused(fetched):
    cv, _ = train_cv(TrainConfig(epochs=1, folds=2, name="cv", **QUICK))
    shutil.copytree(cv.fold(0).path, fetched / "weights" / "copy")
    with pytest.raises(PipelineError, match=r"--teacher cv/fold-0,copy: .*the same model as"):
        train(TrainConfig(epochs=1, full=True, teacher="cv/fold-0,copy", name="s", **QUICK))
    with pytest.raises(PipelineError, match=r"fold 1 of 2: --pretrained .*fold-0/best.pt trained on \d+ of the \d+ val "
                                            r"images, so the out-of-fold scores would flatter the CV"):
        train_cv(TrainConfig(epochs=1, folds=2, pretrained=str(cv.fold(0).best), name="cvp", **QUICK))
    assert not (fetched / "weights" / "cvp").exists()
    limited = train(TrainConfig(epochs=1, limit=200, name="limited", **QUICK))  # another labeled set: by its pixels
    command = ["train", "--epochs", "1", "--batch-size", "32", "--workers", "0", "--device", "cpu", "--pretrained",
               str(Run(limited.run_dir).best)]
    result = runner.invoke(app, [*command, "--name", "warm"])
    part, whole = training_arrays(fetched / "dataset", limit=200), training_arrays(fetched / "dataset")
    seen = len({part.ids[i] for i in run_split(part.targets, 0.2, 42, False)[0]} &  # by id: --limit keeps each
               {whole.ids[i] for i in run_split(whole.targets, 0.2, 42, False)[1]})  # class's share, not a prefix
    assert result.exit_code == 0 and seen and f"trained on {seen} of the 80 val images" in \
        " ".join(result.output.split()), result.output
    from pipeline.run import load_checkpoint, save_checkpoint
    unrecorded = load_checkpoint(Run(limited.run_dir).best)
    del unrecorded["seen_images"]  # a checkpoint from before the record
    Run(limited.run_dir).best.unlink()
    save_checkpoint(Run(limited.run_dir).best, unrecorded)
    result = runner.invoke(app, [*command, "--name", "warm2"])
    assert result.exit_code == 0 and "trained on another labeled set (other images, labels or classes" in \
        " ".join(result.output.split()), result.output


def test_classes_apart_names_what_differs_or_the_order():
    from pipeline.layout import classes_apart

    assert classes_apart(["a", "b", "c"], ["a", "b", "d"], "x.csv") == "; only the model has c; only x.csv has d"
    assert classes_apart(["a", "b"], ["b", "a"], "x.csv") == "; the same classes in another order"
    assert classes_apart(["a", "b"], ["a", "b"], "x.csv") == ""
