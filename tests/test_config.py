"""The table of training options (`pipeline.config.OPTIONS`): each option is one row, from which TrainConfig's
field, the `train` and `lr-find` flags and help, the range check, `--config`'s type check and the name sets come.
`--clip-grad` was added as one row (and its use in the training step) to show it."""
import math
from dataclasses import MISSING, asdict, fields

import pytest
import torch
import typer.main
import yaml
from torch import nn

from pipeline.cli import app
from pipeline.config import OPTIONS, TrainConfig, default_help, saved_config
from pipeline.cv import cv_plan
from pipeline.errors import PipelineError
from pipeline.runtime import Runtime
from pipeline.train import resume, train, training_step
from tests.fixtures import QUICK, runner

pytestmark = pytest.mark.smoke
COMMANDS = typer.main.get_command(app).commands
COMMAND_ONLY = {"train": {"improved", "resume", "nproc", "config_file", "print_config"},
                "lr-find": {"improved", "config_file", "start", "end", "steps"}}


def test_each_row_is_a_field_and_a_flag_of_train_and_lr_find():
    defaults = {f.name: f.default if f.default is not MISSING else f.default_factory() for f in fields(TrainConfig)}
    assert defaults == {option.name: option.default for option in OPTIONS}  # the fields, in the table's order
    for command, wanted in (("train", OPTIONS), ("lr-find", [option for option in OPTIONS if option.lr_find])):
        params = {param.name: param for param in COMMANDS[command].params if param.name != "help"}
        assert set(params) == {option.name for option in wanted} | COMMAND_ONLY[command], command
        for option in wanted:
            param = params[option.name]
            assert param.help.startswith(option.help) and param.rich_help_panel == option.panel, option.name
            assert option.flag_only or param.help.endswith(default_help(option.name)), option.name
            assert bool(param.secondary_opts) == (option.kind is bool and not option.flag_only), option.name


def test_each_choice_and_older_name_is_taken_and_others_are_refused(project):
    for option in (option for option in OPTIONS if option.choices):
        typed = f"--{option.name.replace('_', '-')}"
        for value in (*option.choices, *option.aliases):
            result = runner.invoke(app, ["train", typed, value, "--print-config"])
            assert result.exit_code == 0, (option.name, value, result.output)
            assert yaml.safe_load(result.output)[option.name] == option.aliases.get(value, value)
        refused = runner.invoke(app, ["train", typed, "no-such-value", "--print-config"])
        assert refused.exit_code == 2 and refused.output.startswith("error: "), (option.name, refused.output)


def test_every_range_check_of_the_table_runs_on_the_command_line(project):
    for option in OPTIONS:
        if option.kind in (int, float) and option.check is not None:
            result = runner.invoke(app, ["train", f"--{option.name.replace('_', '-')}", "-1", "--print-config"])
            assert result.exit_code == 1 and result.output.startswith("error: --"), (option.name, result.output)


def test_a_new_option_is_one_row_and_its_use(project):
    """--clip-grad: typed, checked, printed and read back, typed in a file, in a CV's plan and fixed on resume."""
    printed = runner.invoke(app, ["train", "--clip-grad", "2.5", "--print-config"])
    assert printed.exit_code == 0 and yaml.safe_load(printed.output)["clip_grad"] == 2.5
    (project / "options.yaml").write_text(printed.output)
    assert yaml.safe_load(runner.invoke(app, ["train", "--config", "options.yaml", "--print-config"]).output) == \
        yaml.safe_load(printed.output)
    (project / "bad.yaml").write_text("clip-grad: a lot\n")
    bad = runner.invoke(app, ["train", "--config", "bad.yaml", "--print-config"])
    assert bad.exit_code == 1 and "clip_grad must be a number, got 'a lot'" in bad.output
    for value in ("0", "nan"):
        refused = runner.invoke(app, ["train", "--clip-grad", value, "--print-config"])
        assert refused.exit_code == 1 and refused.output.startswith(f"error: --clip-grad {value}: must be a finite number > 0")
    assert cv_plan(TrainConfig(clip_grad=1.0))["clip_grad"] == 1.0  # every fold of a CV shares it
    assert "--clip-grad" in runner.invoke(app, ["lr-find", "--help"]).output  # it shapes a step: lr-find takes it


def test_a_run_with_clipped_gradients_trains_and_resumes_only_with_them(fetched):
    run = train(TrainConfig(epochs=1, limit=60, clip_grad=0.5, name="clipped", **QUICK)).run_dir
    with pytest.raises(PipelineError, match="--clip-grad cannot change"):
        resume(run, {"epochs": 2, "clip_grad": 5.0})


def test_clipping_bounds_the_steps_gradient_norm():
    torch.manual_seed(0)
    images, targets = torch.randn(16, 8) * 50, torch.randint(0, 3, (16,))
    runtime = Runtime(torch.device("cpu"))
    moved = {}
    for clip in (None, 1e-3):
        model = nn.Linear(8, 3)
        before = [p.detach().clone() for p in model.parameters()]
        optimizer = torch.optim.SGD(model.parameters(), lr=1.0)  # the first step moves each weight by its gradient
        training_step(model, images, targets, nn.CrossEntropyLoss(), optimizer, runtime.gradient_scaler(), runtime, clip)
        moved[clip] = math.sqrt(sum(float((p.detach() - b).pow(2).sum()) for p, b in zip(model.parameters(), before)))
    assert moved[1e-3] == pytest.approx(1e-3, rel=1e-3) and moved[None] > 1


def test_saved_configs_from_before_an_option_existed_take_its_default():
    options = asdict(TrainConfig(lr=0.5))
    del options["clip_grad"]
    assert saved_config(options, "config.json") == TrainConfig(lr=0.5)
