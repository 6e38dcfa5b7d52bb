"""`pipeline train --config FILE`, `--print-config`, and training a past run again from its saved config."""
import json
from dataclasses import asdict

import pytest
import yaml

from pipeline.cli import app
from pipeline.config import TrainConfig
from pipeline.train import train
from tests.fixtures import QUICK, fabricate_run, runner


def printed(*args: str) -> str:
    result = runner.invoke(app, ["train", *args, "--print-config"])
    assert result.exit_code == 0, result.output
    return result.output


def test_print_config_reads_back_through_config_and_typed_options_win(project):
    first = printed("--improved", "--lr", "0.05", "--milestones", "30", "60", "--average-top", "--keep-top", "3")
    saved = yaml.safe_load(first)
    assert set(saved) == set(asdict(TrainConfig()))  # every option, nothing else
    assert (saved["stem"], saved["lr"], saved["milestones"], saved["recipe"]) == ("improved", 0.05, [30, 60], "seed")
    (project / "mine.yaml").write_text(first)
    assert printed("--config", "mine.yaml") == first  # a round trip changes nothing
    assert yaml.safe_load(printed("--config", "mine.yaml", "--lr", "0.1"))["lr"] == 0.1  # typed beats the file
    assert not (project / "weights" / "exp").exists()  # printing trains nothing


def test_a_hand_written_file_takes_the_command_line_spellings(project):
    (project / "short.yaml").write_text("recipe: fast\nimproved: true\nweight-decay: 0.001\nmilestones: 10 20\n"
                                        "schedule: step\nprecision: fp16\n")
    options = yaml.safe_load(printed("--config", "short.yaml"))
    assert (options["recipe"], options["stem"], options["weight_decay"], options["milestones"], options["epochs"],
            options["precision"]) == ("fast", "improved", 0.001, [10, 20], 40, "fp16")  # epochs: the fast recipe's


def test_a_past_run_trains_again_with_its_options_under_a_new_name(fetched):
    past = train(TrainConfig(**{**QUICK, "lr": 0.03}, epochs=1, limit=40, name="first.lr0.03")).run_dir
    for source in (str(past), str(past / "config.json"), "first.lr0.03"):  # a name with a dot is still a name
        options = yaml.safe_load(printed("--config", source))
        assert (options["lr"], options["limit"], options["name"]) == (0.03, 40, None), source
    result = runner.invoke(app, ["train", "--config", "first.lr0.03", "--name", "again"])
    assert result.exit_code == 0, result.output
    assert (fetched / "weights" / "again" / "best.pt").is_file()
    saved = json.loads((past / "config.json").read_text())
    saved["options"].update(epochs=2.5, nesterov="yes")  # a hand edit: the types are checked as a file's are
    (past / "config.json").write_text(json.dumps(saved))
    result = runner.invoke(app, ["train", "--config", str(past), "--print-config"])
    assert result.exit_code == 1 and "epochs must be a whole number, got 2.5" in result.output
    (past / "config.json").write_text(json.dumps(saved)[:-1] + ', "classes": ["a"]}')  # a key given twice
    result = runner.invoke(app, ["train", "--config", str(past), "--print-config"])
    assert result.exit_code == 1 and "config.json: not valid JSON (classes given twice; keep one)" in result.output


def test_a_past_run_trains_again_on_every_image_without_its_val_ranking_options(fetched):
    past = train(TrainConfig(**QUICK, epochs=1, limit=40, patience=2, keep_top=2, name="ranked")).run_dir
    assert json.loads((past / "config.json").read_text())["options"]["metric"] == "accuracy"  # resolved at setup
    options = yaml.safe_load(printed("--config", str(past), "--full"))
    assert (options["full"], options["metric"], options["patience"], options["keep_top"]) == (True, None, None, 1)
    assert options["lr"] == QUICK["lr"]  # the rest is the past run's
    typed = runner.invoke(app, ["train", "--config", str(past), "--full", "--metric", "log_loss", "--print-config"])
    assert typed.exit_code == 1 and "--metric rank epochs by their val score: they need a validation" in typed.output


def test_a_past_runs_metric_from_another_competition_is_not_carried_over_silently(project):
    fabricate_run(project / "weights", "other", metrics=False)  # as trained on a competition scored by macro-F1
    saved = json.loads((project / "weights" / "other" / "config.json").read_text())
    saved["options"]["metric"] = "f1_macro"
    (project / "weights" / "other" / "config.json").write_text(json.dumps(saved))
    refused = runner.invoke(app, ["train", "--config", "other", "--print-config"])  # here: CIFAR-10's accuracy
    assert refused.exit_code == 1 and refused.output.count("\n") == 1
    assert refused.output.startswith("error: other: its epochs were ranked by f1_macro, and this competition's metric")
    assert "pass --metric accuracy to follow the competition, or --metric f1_macro to keep the run's" in refused.output
    for metric in ("accuracy", "f1_macro"):  # typed, it decides
        assert yaml.safe_load(printed("--config", "other", "--metric", metric))["metric"] == metric
    assert yaml.safe_load(printed("--config", "other", "--full"))["metric"] is None  # --full ranks nothing
    (project / "dataset").mkdir()
    (project / "dataset" / "competition.json").write_text(json.dumps({"metric": "f1_macro"}))
    assert yaml.safe_load(printed("--config", "other"))["metric"] == "f1_macro"  # this competition's metric too


def test_numbers_as_kaggle_writes_them_an_empty_file_and_typed_flags_over_an_invalid_file(project):
    (project / "f.yaml").write_text("# notes only\n")
    assert yaml.safe_load(printed("--config", "f.yaml")) == yaml.safe_load(printed())  # no options
    (project / "f.yaml").write_text("lr: 1e-3\nweight_decay: 5e-4\n")  # YAML reads these as text
    assert yaml.safe_load(printed("--config", "f.yaml"))["lr"] == 0.001
    (project / "f.yaml").write_text("epochs: 2\nschedule: cosine\nwarmup_epochs: 3\n")  # invalid on its own
    assert yaml.safe_load(printed("--config", "f.yaml", "--epochs", "30"))["epochs"] == 30
    result = runner.invoke(app, ["train", "--config", "f.yaml", "--print-config"])
    assert result.exit_code == 1 and result.output.startswith("error: f.yaml: --warmup-epochs 3")


@pytest.mark.parametrize("text, message", [
    ("lr: [0.1\n", "not valid YAML (line 2)"),
    ("- lr\n- 0.1\n", "expected `option: value` lines, found a list"),
    ("\x89PNG\r\n\x1a\n\x00\xff\xfe", "not a text file; pass a YAML file of options, or a run"),
    ("lr: 0.1\nlearning_rate: 0.2\n", "unknown option(s) learning_rate; `pipeline train --print-config` lists them"),
    ("lr: fast\n", "lr must be a number, got 'fast'"),
    ("epochs: 2.5\n", "epochs must be a whole number, got 2.5"),
    ("compile: 1\n", "compile must be true or false, got 1"),
    ("lr: -1\n", "bad.yaml: --lr -1: must be a finite number > 0"),
    # YAML 1.1's readings the command line does not share: a key twice, base 60, octal and hex, yes/no/on/off
    ("lr: 0.1\nepochs: 3\nlr: 0.2\n", "bad.yaml: lr is given twice (lines 1 and 3); keep one"),
    ("weight-decay: 0.1\nweight_decay: 0.2\n", "weight_decay is given twice (weight-decay on line 1, weight_decay on line 2)"),
    ("epochs: 1:30\n", "epochs must be a whole number, got '1:30'"),
    ("seed: 0x10\n", "seed must be a whole number, got '0x10'"),
    ("nesterov: yes\n", "nesterov must be true or false, got 'yes'"),
    ("full: on\n", "full must be true or false, got 'on'"),
    ("lr: .inf\n", "lr must be a number, got '.inf'"),
    ("base: &b {lr: 0.1}\n<<: *b\n", "bad.yaml: a merge key (<<) on line 2, which a file of options does not take"),
    ("milestones: {30: a, 60: b}\n", "bad.yaml: milestones takes a list of epochs (milestones: [30, 60, 90]), not a "
                                    "mapping"),
])
def test_a_bad_config_file_is_one_line_naming_it_and_trains_nothing(project, text, message):
    (project / "bad.yaml").write_bytes(text.encode("latin-1"))
    result = runner.invoke(app, ["train", "--config", "bad.yaml"])
    assert result.exit_code == 1 and result.output.count("\n") == 1 and message in result.output, result.output
    assert not (project / "weights" / "exp").exists()


def test_numbers_in_a_file_mean_what_they_mean_on_the_command_line(project):
    (project / "f.yaml").write_text("epochs: 010\nmilestones: [010, 020]\nbatch-size: '64'\nrecipe: seed\n")
    options = yaml.safe_load(printed("--config", "f.yaml"))
    assert (options["epochs"], options["milestones"], options["batch_size"]) == (10, [10, 20], 64)  # YAML 1.1: 8, [8, 16]
    assert options == yaml.safe_load(printed("--epochs", "010", "--milestones", "010", "020", "--batch-size", "64"))


def test_config_needs_a_readable_file_and_does_not_mix_with_resume(project):
    result = runner.invoke(app, ["train", "--config", "missing.yaml"])
    assert result.exit_code == 1 and "missing.yaml: cannot read it" in result.output
    result = runner.invoke(app, ["train", "--resume", "exp", "--print-config"])
    assert result.exit_code == 1 and "--config and --print-config are for new runs" in result.output
