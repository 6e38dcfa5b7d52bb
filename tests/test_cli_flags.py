"""Every option's flag is the kebab case of its parameter's name, whatever Typer or click release parses them:
Typer 0.27 derived `--LR` from the metavar LR, and the CLI refused `--lr`, `--name` and `--device`."""
import pytest
import typer.main

from pipeline.cli import app, flag
from tests.fixtures import runner

pytestmark = pytest.mark.smoke

CLI = typer.main.get_command(app)
COMMANDS = sorted(CLI.commands)
# the flags that are not the kebab case of their parameter's name, each declared on purpose
OTHER_FLAGS = {("train", "config_file"): ["--config"], ("lr-find", "config_file"): ["--config"],
               ("submit", "message"): ["-m", "--message"]}


def params_of(name):
    """The command's parameters as it parses them, its help option included (click adds that per context)."""
    group = CLI.make_context("pipeline", [name], resilient_parsing=True)
    command = CLI.commands[name] if name else CLI
    return command.get_params(command.make_context(name, [], parent=group, resilient_parsing=True) if name else group)


def is_help(param) -> bool:
    return "--help" in param.opts  # named help or _click_default_help, by release


def options_of(name):
    return [p for p in params_of(name) if p.param_type_name == "option" and not is_help(p)]


def test_every_command_is_checked():
    assert {"fetch", "train", "lr-find", "predict", "export", "ensemble", "submit", "summary", "report", "runs",
            "compare"} <= set(COMMANDS)


@pytest.mark.parametrize("name", COMMANDS)
def test_each_flag_is_its_parameters_name_in_kebab_case(name):
    for option in options_of(name):
        assert sorted(option.opts) == sorted(OTHER_FLAGS.get((name, option.name), [flag(option.name)])), (name, option.name)
        assert option.secondary_opts in ([], [flag("no_" + option.name)]), (name, option.name)
    assert [sorted(p.opts) for p in params_of(name) if is_help(p)] == [["--help", "-h"]]


def test_the_group_takes_version_and_help():
    assert [(sorted(p.opts), p.secondary_opts) for p in params_of("")] == [(["--version"], []), (["--help", "-h"], [])]


@pytest.mark.parametrize("args", [
    ["train", "--name", "x", "--lr", "0.1", "--epochs", "1", "--device", "cpu", "--print-config"],
    ["lr-find", "--device", "cpu", "--start", "1e-6", "--end", "1", "--steps", "5", "--help"],
    ["predict", "--run", "x", "--device", "cpu", "--tta", "none", "--help"],
    ["report", "x", "--device", "cpu", "--help"],
    ["runs", "--csv", "runs.csv", "--sort", "date", "--help"],
])
def test_the_flags_typer_renamed_parse(args):
    """The flags that Typer 0.27 renamed, as users type them (--help stops before any work is done)."""
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    if "--print-config" in args:
        assert {"name: x", "lr: 0.1", "epochs: 1", "device: cpu"} <= set(result.output.splitlines())
