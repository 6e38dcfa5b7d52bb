"""The table of training options (`pipeline.config.OPTIONS`): each option is one row, from which TrainConfig's
field, the `train` and `lr-find` flags and help, the range check, `--config`'s type check and the name sets come."""
from dataclasses import MISSING, fields

import pytest
import typer.main
import yaml

from pipeline.cli import app
from pipeline.config import OPTIONS, TrainConfig, default_help
from tests.fixtures import runner

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
