"""The `pipeline` command: a thin Typer layer over fetch, train and predict."""
from __future__ import annotations

import contextlib
import enum
import errno
import functools
import inspect
import io
import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich import box
from rich.console import Console
from rich.table import Table
from typer.core import TyperArgument, TyperCommand, TyperGroup

try:  # newer Typer carries its own click
    from typer._click import exceptions as click_exceptions
except ImportError:
    from click import exceptions as click_exceptions
ClickException = click_exceptions.ClickException
NoArgsIsHelpError = getattr(click_exceptions, "NoArgsIsHelpError", ())  # click ≥ 8.2; before, help exits by itself

from pipeline.config import (ENGINES, MODEL, OPTION, OPTION_NAMES, OPTIONS, PREDICT_PRECISIONS, RUN,
                             THREADS_HELP, TTA_CHOICES, VAL_RANKING_OPTIONS, Option, TrainConfig, check_prediction_options,
                             command_line_options, config_from, default_help, file_options, model_label, printed_config)
from pipeline.errors import Interrupted, PipelineError
from pipeline.metrics import METRIC_LABELS, METRICS

class OneLineUsageErrors(TyperGroup):
    """A usage error (an unknown option, a value of the wrong type or not among an option's choices) is one line
    on stderr, status 2, like every other error."""

    def main(self, *args, standalone_mode: bool = True, **kwargs):
        try:
            result = super().main(*args, standalone_mode=False, **kwargs)
            status = result if isinstance(result, int) else 0
        except NoArgsIsHelpError as e:
            e.show()
            status = e.exit_code
        except ClickException as e:
            message = "; ".join(line.strip() for line in e.format_message().replace("Value error, ", "").splitlines()
                                if line.strip()).rstrip(".")
            command = getattr(getattr(e, "ctx", None), "command_path", None) or "pipeline"
            typer.echo(f"error: {message}; see `{command} --help`", err=True)
            status = e.exit_code
        if standalone_mode:
            sys.exit(status)
        return status

    def get_command(self, ctx, name: str):
        """A command whose named positional arguments (RUN, MEMBER…) show that name alone in --help, not the
        Python type Typer prints beside it."""
        command = super().get_command(ctx, name)
        for param in getattr(command, "params", []):
            if isinstance(param, TyperArgument) and param.metavar:
                param.display_type_rich = lambda ctx: None
        return command


app = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  context_settings={"help_option_names": ["-h", "--help"]}, cls=OneLineUsageErrors)
console = Console(soft_wrap=True)


def choices(name: str, values) -> type[enum.Enum]:
    """An option's choices as Typer shows them in --help (`<none|flip|flip-shift>`) and checks them."""
    return enum.Enum(name, [(value, value) for value in values], type=str)


Stem = choices("Stem", (*OPTION["stem"].choices, *OPTION["stem"].aliases))  # summary's --stem, as train's
Tta = choices("Tta", TTA_CHOICES)
Engine, PredictPrecision = choices("Engine", ENGINES), choices("PredictPrecision", PREDICT_PRECISIONS)
ExportFormat = choices("ExportFormat", ("onnx",))
Blending = choices("Blending", ("equal", "oof"))
Metric = choices("Metric", METRICS)
METRIC_HELP = ("How --score scores the submission: accuracy, f1_macro, f1_micro, log_loss, roc_auc or mean_roc_auc "
               "(default: the metric of dataset/competition.json).")


def show_version(value: bool) -> None:
    if value:
        from pipeline import __version__

        typer.echo(f"pipeline {__version__}")
        raise typer.Exit()


@app.callback()
def commands(version: bool = typer.Option(False, "--version", callback=show_version, is_eager=True, metavar="",
                                          help="Print the version and exit.")) -> None:
    """The `pipeline` command: a thin Typer layer over fetch, train and predict."""


class SpacedListCommand(TyperCommand):
    """Accepts `--milestones 30 60 90` as users type it: values after a list option repeat the option."""

    list_options = ("--milestones",)

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        expanded, option = [], None
        for arg in args:
            if arg.startswith("-"):
                option = arg if arg in self.list_options else None
                expanded.append(arg)
            elif option and expanded[-1] != option:
                expanded += [option, arg]
            else:
                expanded.append(arg)
        return super().parse_args(ctx, expanded)


def user_errors(command):
    """Report a PipelineError as one line on stderr with exit status 1 (Ctrl-C: 130), without a traceback."""
    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except Interrupted as e:
            typer.echo(str(e), err=True)
            raise typer.Exit(130) from None
        except PipelineError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            typer.echo("interrupted: outputs are written atomically, so nothing half-written was kept", err=True)
            raise typer.Exit(130) from None
    return run


def under_torchrun(nproc: int | None) -> None:
    """`--nproc N` (N > 1) outside torchrun: run this same command under torchrun with N processes."""
    if nproc is None or nproc <= 1 or "WORLD_SIZE" in os.environ:
        return
    from pipeline.distributed import launch

    argv, skip = [], False
    for arg in sys.argv[1:]:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            argv.append(arg)
    raise typer.Exit(launch(nproc, argv))


def plain(value):
    """A choice's text (`flip`, not Tta.flip); any other value as it is."""
    return value.value if isinstance(value, enum.Enum) else value


def given_options(ctx: typer.Context) -> set[str]:
    """The options typed on the command line (compared by name: Typer may vendor its own click)."""
    return {p for p in ctx.params if ctx.get_parameter_source(p).name == "COMMANDLINE"}


@app.command()
@user_errors
def fetch(
    competition: Optional[str] = typer.Option(None, "--competition", help="Kaggle competition to download (default cifar-10; with --archive, the zip's name without .zip, as Kaggle names its downloads). `pipeline submit` submits to it.", metavar="NAME"),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="A Kaggle dataset of pixel CSVs instead (owner/name, e.g. zalando-research/fashionmnist), converted to PNGs.", metavar="OWNER/NAME"),
    archive: Optional[Path] = typer.Option(None, "--archive", help="Use this competition (or --dataset) zip, downloaded by hand, instead of the API.", metavar="ZIP"),
    sample: bool = typer.Option(False, "--sample", help="Write the offline sample competition: no network, no account.", metavar=""),
    force: bool = typer.Option(False, "--force", help="Fetch again even if dataset/ is complete.", metavar=""),
    img_size: Optional[int] = typer.Option(None, "--img-size", help="Decode every image once at S×S (shorter side resized to S, centre cropped), recorded as image_size in dataset/competition.json (default: inferred; images of one size keep it). Over a complete fetch it decodes the images again.", metavar="S"),
    label_column: Optional[list[str]] = typer.Option(None, "--label-column", help="The training CSV's label column, where its files leave it open (fetch says so); once per class for one-hot 0/1 columns. (default: decided by the files)", metavar="NAME"),
) -> None:
    """Download a competition into dataset/ and describe it in dataset/competition.json (where its images and
    labels are, what its submission holds): edit that file where the description's choices are wrong."""
    check_named({"--competition": [competition], "--dataset": [dataset], "--archive": [archive],
                 "--label-column": label_column or []})
    from pipeline.competition import DESCRIPTION
    from pipeline.fetch import fetch as run_fetch

    result = run_fetch(competition, archive, sample, force, dataset=dataset, img_size=img_size,
                       label_columns=tuple(label_column or ()))
    for note in result.notes:
        console.print(f"note: {note}")
    if result.already_complete:
        console.print(f"{result.root} already holds {result.source} ({result.train_images} train, "
                      f"{result.test_images} test images); --force fetches it again")
    else:
        console.print(f"{result.root} ready: {result.source}, {result.train_images} train and "
                      f"{result.test_images} test images (described in {result.root / DESCRIPTION})")


def flag(name: str) -> str:
    """An option's flag: the kebab case of its parameter's name. Every option names its flag itself, as Typer
    derives one differently in some releases (0.27: `--LR` from the metavar LR)."""
    return f"--{name.replace('_', '-')}"


def train_parameter(option: Option) -> inspect.Parameter:
    """`option` as a Typer parameter: unset unless typed (recipes fill it in), its choices listed, its default in
    the help drawn from the recipes; an on/off option (--x/--no-x) shows no value, a plain flag (--full) is off."""
    if option.flag_only:
        return keyword(option.name, bool, typer.Option(False, flag(option.name), help=option.help, metavar="",
                                                       rich_help_panel=option.panel))
    if option.choices:
        kind = choices(option.name.title().replace("_", ""), (*option.choices, *option.aliases))
    else:
        kind = list[str] if option.kind is list else option.kind  # --milestones 30,60,90 too: parsed by config
    flags = f"{flag(option.name)}/{flag('no_' + option.name)}" if option.kind is bool else flag(option.name)
    return keyword(option.name, Optional[kind], typer.Option(
        None, flags, help=f"{option.help} {default_help(option.name)}".strip(), rich_help_panel=option.panel,
        metavar="" if option.kind is bool else option.metavar or None))


def keyword(name: str, annotation: object, default: typer.models.ParameterInfo) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default)


CONTEXT = inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)
IMPROVED = keyword("improved", bool, typer.Option(False, "--improved", help="the write-up's stem for 32×32 images (one "
                   "3×3/1 conv, no max pool); same as --stem improved.", rich_help_panel=MODEL, metavar=""))
CONFIG_FILE = keyword("config_file", Optional[Path], typer.Option(
    None, "--config", help="Options from a YAML file (`lr: 0.05` per line), or a past run's (its folder or config.json) "
    "to train it again; options typed on the command line win.", rich_help_panel=RUN, metavar="FILE"))
RUN_ONLY = (  # train's, beyond TrainConfig's options
    keyword("resume", Optional[Path], typer.Option(None, "--resume", help="Continue a run (its name under weights/, or "
            "its folder) from its last checkpoint.", rich_help_panel=RUN, metavar="RUN")),
    keyword("nproc", Optional[int], typer.Option(None, "--nproc", help="Run N processes on this machine with torchrun "
            "(DistributedDataParallel): one per GPU, or N CPU processes with gloo.", rich_help_panel=RUN, metavar="N")),
    CONFIG_FILE,
    keyword("print_config", bool, typer.Option(False, "--print-config", help="Print the options this command would "
            "train with, as YAML for --config, and stop.", rich_help_panel=RUN, metavar="")),
)
LR_FIND_ONLY = tuple(keyword(name, type(default), typer.Option(default, flag(name), help=text, metavar=metavar))
                     for name, default, text, metavar in (("start", 1e-7, "The first learning rate.", "LR"),
                                                          ("end", 10.0, "The last learning rate.", "LR"),
                                                          ("steps", 100, "Steps (one rate each) at most.", "N")))


def command_signature(options, own: tuple[inspect.Parameter, ...]) -> inspect.Signature:
    """The context, `options`' parameters (--improved after --model) and the command's `own`."""
    parameters = [CONTEXT]
    for option in options:
        parameters += [train_parameter(option), *([IMPROVED] if option.name == "model" else [])]
    return inspect.Signature([*parameters, *own])


def train(ctx: typer.Context, **options) -> None:
    """Train a ResNet on dataset/ with a seeded 80/20 split; the run goes to weights/<run>/."""
    run_training(ctx, options["resume"], options["config_file"], options["print_config"], options["nproc"])


train.__signature__ = command_signature(OPTIONS, RUN_ONLY)
app.command("train", cls=SpacedListCommand)(user_errors(train))


def run_training(ctx: typer.Context, resume: Path | None, config_file: Path | None, print_config: bool,
                 nproc: int | None) -> None:
    """A new run (a cross-validation's folds with --folds), or --resume's, in `nproc` processes under torchrun
    when given; the outcome on rank 0's console. --print-config prints the config and stops."""
    check_named({"--resume": [resume], "--config": [config_file]})
    if resume is not None and (config_file or print_config):
        raise PipelineError("--resume continues a run with its own options; --config and --print-config are for new runs")
    config = new_run_config(ctx, config_file) if resume is None else None  # checked before torch is imported
    if print_config:
        typer.echo(printed_config(config), nl=False)
        return
    under_torchrun(nproc)
    from pipeline import train as training
    from pipeline.distributed import ranks

    if config is not None and config.folds:
        from pipeline.cv import summary_lines, train_cv

        cv, summary = train_cv(config, console=console)
        for line in summary_lines(cv, summary) if summary and ranks().main else []:
            console.print(line)
        return
    result = (training.train(config, console=console) if resume is None
              else training.resume(resume, typed_train_options(ctx), console=console))
    if ranks().main:
        print_trained(result)


def print_trained(result) -> None:
    from pipeline.run import Run

    best, metric = Run(result.run_dir).best, METRIC_LABELS[result.metric]
    if result.best_score is None:
        console.print(f"done: trained on all labeled images; weights of epoch {result.best_epoch} in {best}; "
                      f"predict with `pipeline predict --run {result.run_dir.name}`")
    elif result.averaged_score is not None:
        console.print(f"done: {best} holds the average of the best epochs' weights: val {metric} "
                      f"{result.averaged_score:.4f} (the best single epoch, {result.best_epoch}: {result.best_score:.4f})")
    else:
        console.print(f"done: best val {metric} {result.best_score:.4f} at epoch {result.best_epoch}; weights in {best}")


def check_named(values: dict[str, list[object]]) -> None:
    """Each option naming a file, run or competition names something: an empty or blank value (an unset shell
    variable, `--run "$RUN"`) would reach the command as the current folder."""
    for flag, given in values.items():
        blank = next((value for value in given if value is not None and str(value).strip() in ("", ".")), None)
        if blank is not None:
            shown = "" if str(blank) == "." else str(blank)  # an empty path reaches here as Path("."): say ''
            raise PipelineError(f"{flag} {shown!r}: names nothing (an unset variable?); give it a name or a path")


def typed_train_options(ctx: typer.Context) -> dict:
    """The TrainConfig options typed on the command line (and --improved, a spelling of --stem)."""
    return command_line_options({option: plain(ctx.params[option]) for option in given_options(ctx)
                                 if option in OPTION_NAMES or option == IMPROVED.name})


def new_run_config(ctx: typer.Context, config_file: Path | None) -> TrainConfig:
    """The checked config of a new run: the options typed, over --config's, over the recipe's. An error where
    the file took part says so."""
    try:
        typed = typed_train_options(ctx)
        past, from_run = options_of(config_file) if config_file else ({}, False)
        given = {**past, **typed}
        if given.get("full"):  # a past run's options that rank val epochs: --full has no val split for them
            given = {k: v for k, v in given.items() if k not in VAL_RANKING_OPTIONS or k in typed}
        elif from_run and "metric" not in typed:
            check_carried_metric(past["metric"])
        config = config_from(given)
        config.validate()
    except PipelineError as e:
        where = f"{config_file}: " if config_file and not str(e).startswith(str(config_file)) else ""
        raise PipelineError(f"{where}{e}") from None
    return config


def options_of(path: Path) -> tuple[dict, bool]:
    """--config's options: a YAML file's, else a past run's (its folder, name or config.json); and whether they
    are a run's."""
    if path.suffix.lower() in (".yaml", ".yml") or (path.is_file() and path.suffix.lower() != ".json"):
        return file_options(path), False  # without importing torch, which reading a run does
    from pipeline.run import is_run_reference, past_run_options

    return (past_run_options(path), True) if is_run_reference(path) else (file_options(path), False)


def check_carried_metric(metric: str | None) -> None:
    """A past run's metric ranked the epochs of its own competition: one other than this competition's (in
    dataset/) is not carried over silently; --metric decides."""
    from pipeline.competition import read_competition
    from pipeline.workspace import dataset_dir

    here = read_competition(dataset_dir()).metric
    source = "dataset/competition.json" if (dataset_dir() / "competition.json").is_file() else \
        "CIFAR-10's, as dataset/ has no competition.json"
    if metric not in (None, here):
        raise PipelineError(f"its epochs were ranked by {metric}, and this competition's metric ({source}) is {here}: "
                            f"pass --metric {here} to follow the competition, or --metric {metric} to keep the run's")


def lr_find(ctx: typer.Context, **options) -> None:
    """The learning-rate range test: a fresh model, as `pipeline train` with these options would build it, takes
    one step per learning rate, rising from --start to --end, until the loss blows up; writes the curve to
    weights/lr-find/ and suggests --lr."""
    config = new_run_config(ctx, options["config_file"])
    from pipeline.lr_find import lr_find as range_test

    range_test(config, options["start"], options["end"], options["steps"], console=console)


# lr-find takes every option of train that shapes a training step, and its own three
lr_find.__signature__ = command_signature([option for option in OPTIONS if option.lr_find], (CONFIG_FILE, *LR_FIND_ONLY))
app.command("lr-find", cls=SpacedListCommand)(user_errors(lr_find))


def print_submission(result) -> None:
    table = Table("class", "predicted", title=f"{result.submission}: {result.rows} rows, valid")
    for label, count in result.histogram:
        table.add_row(label, str(count))
    console.print(table)
    console.print(f"averaged: {', '.join(result.members)}")
    if result.scored is not None:
        console.print(result.scored.line())


@app.command()
@user_errors
def predict(
    run: Optional[list[Path]] = typer.Option(None, "--run", help="Run (its name under weights/, or its folder) whose best checkpoint to use; repeat to ensemble (default: the newest finished run).", metavar="RUN"),
    checkpoint: Optional[list[Path]] = typer.Option(None, "--checkpoint", help="Checkpoint file(s) to use; repeat to ensemble.", metavar="FILE"),
    tta: Tta = typer.Option("flip", "--tta", help="Test-time augmentation: none, flip (image + mirror), flip-shift (× shifts of 2 px) or flip-translate (airbench's: image + mirror at half weight, both shifted 1 px down-right and up-left)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", metavar="N", help="Images per forward pass. (default 1024 on CUDA; on the CPU torch 64, OpenVINO 256)"),
    device: str = typer.Option("auto", "--device", help="auto (CUDA when present), cpu, cuda or cuda:N.", metavar="DEVICE"),
    precision: PredictPrecision = typer.Option("auto", "--precision", help="auto, fp32, bf16, fp16 (torch) or int8 (CPU, OpenVINO: static quantization calibrated on test images; near ties are predicted again in fp32). auto: on CUDA bf16 at compute capability ≥ 8.0, else fp16; on the CPU with --engine, the fastest that agrees with fp32 on ≥ 99.5 % of the probe images, measured on this model and cached (test sets under 10,000 images: the first candidate, torch fp32 unless --engine openvino)."),
    engine: Engine = typer.Option("auto", "--engine", help="auto, torch or openvino (CPU). auto: torch on CUDA; on the CPU measured with --precision."),
    threads: Optional[int] = typer.Option(None, "--threads", help=THREADS_HELP, metavar="N"),
    score: Optional[Path] = typer.Option(None, "--score", help="A solution.csv (the test ids' labels) to score the submission against.", metavar="CSV"),
    metric: Optional[Metric] = typer.Option(None, "--metric", help=METRIC_HELP, show_choices=False),
    nproc: Optional[int] = typer.Option(None, "--nproc", help="Run N processes with torchrun, each predicting its share of the test images.", metavar="N"),
) -> None:
    """Predict the competition's test images and write submissions/submission.csv in the sample submission's order
    and header."""
    check_prediction_options(tta.value, batch_size, engine.value, precision.value, device, threads)  # before torch
    check_named({"--run": run or [], "--checkpoint": checkpoint or [], "--score": [score]})
    under_torchrun(nproc)
    from pipeline.predict import predict as run_predict

    result = run_predict(run, checkpoint, tta.value, batch_size, device, precision.value, score, console=console,
                         engine=engine.value, threads=threads, metric=plain(metric))
    if result is not None:  # under torchrun, rank 0 reports
        print_submission(result)


@app.command()
@user_errors
def export(
    run: Path = typer.Argument(..., help="Run: its name (exp) or folder (weights/exp).", metavar="RUN"),
    format: ExportFormat = typer.Option("onnx", "--format", help="onnx: uint8 (N, H, W, C) images in, class probabilities out."),
) -> None:
    """Write the run's inference model (EMA weights when kept; normalisation and resize inside) beside the run,
    checked against the torch model on the competition's test images."""
    check_named({"RUN": [run]})
    from pipeline.run import resolve_run
    from pipeline.export import export_run

    result = export_run(resolve_run(run), format.value, console=console)
    console.print(f"wrote {result.path}: on {result.images} test images its probabilities differ from the torch "
                  f"model's by at most {result.max_difference:.1e}; argmax agreement {result.agreement:.2%}")


@app.command()
@user_errors
def ensemble(
    members: list[Path] = typer.Argument(..., help="Saved predictions: names (exp3) or paths of submissions/*.probs.npy.", metavar="MEMBER…"),
    score: Optional[Path] = typer.Option(None, "--score", help="A solution.csv (the test ids' labels) to score the submission against.", metavar="CSV"),
    metric: Optional[Metric] = typer.Option(None, "--metric", help=METRIC_HELP, show_choices=False),
    blend: Blending = typer.Option("equal", "--blend", help="equal weights, or oof: weights fitted on the members' out-of-fold predictions (cross-validations on the same folds), the blend's OOF score printed beside the equal-weight one."),
) -> None:
    """Average saved probabilities of several models into submissions/submission.csv (no model is run); a
    cross-validation's name stands for its folds' predictions."""
    check_named({"MEMBER": members, "--score": [score]})
    from pipeline.predict import ensemble as run_ensemble

    print_submission(run_ensemble(members, score, blend=plain(blend) == "oof", console=console, metric=plain(metric)))


@app.command()
@user_errors
def submit(
    message: str = typer.Option(..., "-m", "--message", help="Description of the submission.", metavar="TEXT"),
    file: Path = typer.Option(Path("submissions/submission.csv"), "--file", help="The submission file.", metavar="CSV"),
    competition: Optional[str] = typer.Option(None, "--competition", help="Kaggle competition to submit to. (default: the one `pipeline fetch` laid out in dataset/; cifar-10 when no fetch recorded one)", metavar="NAME"),
) -> None:
    """Submit a (validated) submission file to Kaggle through the kaggle library."""
    check_named({"--file": [file], "--competition": [competition]})
    from pipeline.submit import submit as run_submit

    result = run_submit(message, file, competition)
    console.print(f"submitted {result.file} to {result.competition} (ref {result.ref}): {result.message}")


@app.command()
@user_errors
def package(
    runs: list[Path] = typer.Argument(..., help="Runs (names under weights/ or folders) whose best checkpoints predict; a cross-validation stands for its folds.", metavar="RUN…"),
    competition: Optional[str] = typer.Option(None, "--competition", help="The code competition. (default: the one `pipeline fetch` laid out in dataset/)", metavar="NAME"),
    owner: Optional[str] = typer.Option(None, "--owner", help="Kaggle user owning the datasets and notebook. (default: your credentials' username)", metavar="USER"),
    out: Optional[Path] = typer.Option(None, "--out", help="Folder to write, which must not exist. (default submissions/<competition>-package)", metavar="DIR"),
    tta: Tta = typer.Option("flip", "--tta", help="The notebook's test-time augmentation (lightened to fit --budget)."),
    gpu: bool = typer.Option(True, "--gpu/--no-gpu", help="Run the notebook on a Kaggle GPU."),
    budget: str = typer.Option("9h", "--budget", help="The notebook's time limit: members and TTA views are trimmed, lowest value per second first, until the estimate for --test-images, timed here, is within 80 % of it.", metavar="TIME"),
    test_images: Optional[int] = typer.Option(None, "--test-images", help="How many images the hidden test set holds, for the estimate. (default: as many as dataset/'s test set)", metavar="N", min=1),
    rehearse: bool = typer.Option(False, "--rehearse", help="Run the notebook here as Kaggle would: network off, inputs read-only under /kaggle/input, a hidden test set of half the public one plus images of noise."),
    push: bool = typer.Option(False, "--push", help="Create (or version) the two datasets and push the notebook through the kaggle library, follow its run, download its output and log, and check its submission.csv (after --rehearse passes, when given)."),
) -> None:
    """Build a Kaggle code-competition package: a weights dataset, a wheels dataset and an offline inference
    notebook that predicts /kaggle/input/<competition> into /kaggle/working/submission.csv."""
    check_named({"RUN": runs, "--competition": [competition], "--out": [out]})
    from pipeline.package import PLACEHOLDER_OWNER, duration, kaggle_username, package as build, package_target
    from pipeline.predict import run_checkpoints
    from pipeline.rehearse import parse_budget, rehearse as run_rehearsal
    from pipeline.workspace import dataset_dir, submissions_dir

    budget_s = parse_budget(budget)
    competition = competition or package_target(dataset_dir())
    owner = owner or kaggle_username(required=push)
    if owner == PLACEHOLDER_OWNER:
        console.print(f"no Kaggle credentials here: the package names {owner!r} as its owner; build it again with "
                      "--owner USER (or with credentials) before pushing it")
    out = out or submissions_dir() / f"{competition}-package"
    built = build([run_checkpoints(run, console=console) for run in runs], competition, owner, out, dataset_dir(),
                  tta.value, gpu, budget_s, test_images)
    plan = built.plan
    for trimmed in plan.trimmed:
        console.print(f"left out to fit {budget}: {trimmed}")
    console.print(f"{built.folder}: {len(plan.members)} model(s), {plan.tta} TTA, about {duration(plan.estimate_s)} "
                  f"for {plan.images} test images on this machine; wheels: {', '.join(built.wheel_files)} (Kaggle's "
                  f"image has {', '.join(built.left_out)})")
    if rehearse:
        try:
            done = run_rehearsal(built.folder, dataset_dir(), built.folder / "rehearsal.csv", budget_s=budget_s,
                                 estimate_for=plan.images)
        except PipelineError as e:
            raise PipelineError(f"{e}; the package stays in {built.folder}: delete it (or pass another --out) to "
                                "build it again") from None
        console.print(f"rehearsal ({done.isolation}): {done.hidden.images} hidden test images "
                      f"({done.hidden.noise} of noise) predicted in {done.predict_s:.1f}s after {done.setup_s:.1f}s "
                      f"of installing; {done.submission} is a valid submission; {plan.images} images would take "
                      f"about {duration(done.estimate_s)} on this machine (the rehearsal's rate); no Kaggle T4, "
                      f"P100 or CPU was measured: rehearse on one for its figure; log {done.log}")
    if push:
        from pipeline.push import push as publish

        pushed = publish(built.folder, dataset_dir(), report=console.print)
        console.print(f"{pushed.kernel} version {pushed.version}: its run is complete and its submission.csv valid; "
                      f"output and log in {pushed.output}; submit it: kaggle competitions submit -c {competition} "
                      f"-k {pushed.kernel} -v {pushed.version} -f submission.csv -m MESSAGE")


@app.command()
@user_errors
def summary(
    model: str = typer.Option("custom", "--model", help="custom, resnet18…resnet152, torchvision:<name> or timm:<name>.", metavar="NAME"),
    stem: Stem = typer.Option("imagenet", "--stem", help="imagenet, improved or improved-pool (ResNets)."),
    img_size: int = typer.Option(32, "--img-size", help="Input height and width.", metavar="PIXELS"),
    in_chans: int = typer.Option(3, "--in-chans", help="Input channels (1 for greyscale).", metavar="N"),
    num_classes: int = typer.Option(10, "--num-classes", metavar="N"),
) -> None:
    """Per-layer output shapes and parameters, total parameters and multiply-adds of a model."""
    from pipeline.models import build_model, check_input_size
    from pipeline.models.summary import summarize

    stem = stem.value
    if not 8 <= img_size <= 1024 or in_chans not in (1, 3) or not 2 <= num_classes <= 100_000:
        raise PipelineError(f"--img-size {img_size}, --in-chans {in_chans}, --num-classes {num_classes}: expected "
                            "8 to 1024 pixels, 1 or 3 channels, 2 to 100,000 classes")
    built = build_model(model, num_classes, stem, in_chans)
    check_input_size(built, model, in_chans, img_size, img_size, "give another --img-size (224 for most ImageNet models)")
    described = summarize(built, (in_chans, img_size, img_size))
    table = Table("layer", "type", "output shape", "parameters", title=f"{model_label(model, stem)}, {img_size}×{img_size} input")
    for layer in described.layers:
        table.add_row(layer.name, layer.kind, " × ".join(map(str, layer.output_shape)), f"{layer.parameters:,}")
    console.print(table)
    console.print(f"total parameters: {described.parameters}")
    console.print(f"multiply-adds per image: {described.multiply_adds} ({described.multiply_adds / 1e9:.3f} G; FLOPs are twice that)")


@app.command()
@user_errors
def report(
    run: Path = typer.Argument(..., help="Run name under weights/ or its folder.", metavar="RUN"),
    device: str = typer.Option("auto", "--device", help="auto (CUDA when present), cpu, cuda or cuda:N.", metavar="DEVICE"),
) -> None:
    """Redraw a run's curves, confusion matrix, per-class table and report from its metrics and best checkpoint."""
    check_named({"RUN": [run]})
    from pipeline.run import resolve_run
    from pipeline.report import write_report

    for path in write_report(resolve_run(run), device=device, console=console):
        console.print(f"wrote {path}")


@app.command()
@user_errors
def runs(
    sort: Optional[str] = typer.Option(None, "--sort", help="Column to sort by, as the table heads it (default: date).", metavar="COLUMN"),
    desc: bool = typer.Option(False, "--desc", help="Sort in descending order.", metavar=""),
    csv: Optional[Path] = typer.Option(None, "--csv", help="Also write the table to this CSV file.", metavar="CSV"),
) -> None:
    """Table of every run under weights/: model, recipe, its metric's best val score, accuracy, macro-F1, time, status."""
    check_named({"--csv": [csv]})
    import pandas as pd

    from pipeline.experiments import COLUMNS, HEADERS, check_output, cross_validations, cv_line, list_runs
    from pipeline.workspace import atomic_path, weights_dir

    table = list_runs(sort=sort, descending=desc)
    if csv is not None:
        check_output(csv, "--csv", ".csv", "a runs table",
                     lambda path: path.read_bytes()[:200].startswith(",".join(COLUMNS[:3]).encode()))
        with atomic_path(csv) as tmp:
            table.to_csv(tmp, index=False)
        console.print(f"wrote {csv}")
    if table.empty:
        console.print(f"no runs under {weights_dir()}; start one with `pipeline train`")
        return
    shown = Table(title=f"{len(table)} run{'s' * (len(table) != 1)} under {weights_dir()}", box=box.SIMPLE_HEAD,
                  pad_edge=False)
    columns = [c for c in table.columns if c != "epochs_planned"]
    for column in columns:
        numeric = table[column].dtype.kind in "if" or column == "epochs"
        shown.add_column(HEADERS.get(column, column), no_wrap=True, justify="right" if numeric else "left")
    for row in table.to_dict("records"):
        cells = {c: "" if pd.isna(v) else f"{v:g}" if isinstance(v, float) else str(v) for c, v in row.items()}
        cells["date"] = cells["date"][5:]  # MM-DD HH:MM
        cells["epochs"] = f"{cells['epochs'] or 0}/{cells['epochs_planned'] or '?'}"
        shown.add_row(*(cells[c] for c in columns))
    # piped output has no width to fit: print whole rows rather than cut columns
    (console if console.is_terminal else Console(width=400)).print(shown)
    for cv in cross_validations():
        console.print(cv_line(cv))


@app.command()
@user_errors
def compare(
    runs: list[Path] = typer.Argument(..., help="Two or more run names under weights/ or run folders; a cross-validation stands for its folds.", metavar="RUN…"),
    output: Optional[Path] = typer.Option(None, "--output", help="Figure to write. (default weights/compare.png)", metavar="PNG"),
) -> None:
    """Overlay the runs' val and train curves in one figure and print the options in which they differ."""
    check_named({"RUN": runs, "--output": [output]})
    import pandas as pd

    from pipeline.experiments import compare_runs

    figure, differences = compare_runs(runs, output)
    table = Table("", *differences.columns, title="options that differ, and results")
    for label, row in differences.iterrows():
        table.add_row(str(label), *("" if pd.isna(v) else str(v) for v in row))
    console.print(table)
    console.print(f"wrote {figure}")


class GuardedStdout(io.TextIOBase):
    """stdout that never stops the work: a write that fails (a reader gone, as in `pipeline train | head -1`; a
    full disk; a closed descriptor) is dropped, and the first failure kept for the end."""

    def __init__(self, stream):
        self.stream = stream
        self.error: OSError | None = None if stream is not None else OSError(errno.EBADF, "stdout is closed")

    def _guarded(self, write) -> None:
        if self.error is None:
            try:
                write()
            except OSError as e:
                self.error = e

    def write(self, text: str) -> int:
        self._guarded(lambda: self.stream.write(text))
        return len(text)

    def flush(self) -> None:
        self._guarded(lambda: self.stream.flush())

    def isatty(self) -> bool:
        return self.error is None and self.stream.isatty()

    def fileno(self) -> int:
        return self.stream.fileno() if self.stream is not None else super().fileno()

    @property
    def encoding(self) -> str:
        return getattr(self.stream, "encoding", None) or "utf-8"


def main() -> None:
    """The command, with stdout guarded: the work goes on when stdout fails. A reader that went away is not an
    error; any other failure to write stdout is one line on stderr and exit status 1 once the work is done."""
    try:
        os.fstat(1)
    except OSError:  # closed: keep descriptor 1 from going to the first file the command opens
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    stdout = sys.stdout = GuardedStdout(sys.stdout)
    try:
        app()
        status = 0
    except SystemExit as e:
        status = e.code
    stdout.flush()
    if stdout.error is not None:
        with contextlib.suppress(OSError):  # nor may Python's own flush at exit fail
            os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
        if stdout.error.errno != errno.EPIPE and status in (0, None):
            typer.echo(f"error: stdout: {stdout.error.strerror or stdout.error}; the command's work is done, its "
                       "output could not be written", err=True)
            status = 1
    sys.exit(status)
