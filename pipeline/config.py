"""The options of a training run and the recipes that set them, and the choices of prediction's options (no
heavy imports: the CLI checks these before it imports torch)."""
from __future__ import annotations

import math
import os
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from pipeline.errors import PipelineError
from pipeline.metrics import check_metric

# Options that may change when a run is resumed; the others define the run.
RESUME_OVERRIDES = frozenset({"epochs", "device", "threads", "workers", "compile", "sync_bn", "patience"})
# Options that rank or stop on val epochs: meaningless for --full, which has no val split
VAL_RANKING_OPTIONS = frozenset({"metric", "patience", "keep_top", "average_top", "target_acc"})
# pipeline/augment.py's, on the device
BATCHED_AUGMENTATIONS = ("none", "crop-flip", "shift-flip", "shift-altflip", "shift4-altflip-cutout", "cutout", "trivial")
AUGMENTATIONS = (*BATCHED_AUGMENTATIONS, "albu-strong")
RENAMED_AUGMENTATIONS = {"seed": "crop-flip"}  # older name, still accepted (runs saved with it keep loading)
SCHEDULES = ("step", "onecycle", "cosine", "triangle")
SPANNING_SCHEDULES = ("onecycle", "cosine", "triangle")  # shaped by --epochs: a resumed run cannot change it
OPTIMIZERS = ("sgd", "adam", "adamw", "lamb", "lion")  # timm.optim.create_optimizer_v2's
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
# ResNet stems. improved is the write-up's (li554/resnet18-cifar10-classification): one 3×3/1 conv, no max pool;
# improved-pool keeps the max pool (what `improved` built before OPTIONS_FORMAT 2); cifar is improved's older name
STEMS = ("imagenet", "improved", "improved-pool", "cifar")
RENAMED_STEMS = {"cifar": "improved"}
OPTIONS_FORMAT = 2  # what saved options mean; 2: `improved` lost its max pool (runs of format 1 keep theirs)
TTA_CHOICES = ("none", "flip", "flip-shift", "flip-translate")  # pipeline/infer.py's views
ENGINES = ("auto", "torch", "openvino")
PREDICT_PRECISIONS = ("auto", "bf16", "fp16", "fp32", "int8")


@dataclass
class TrainConfig:
    """Every `pipeline train` option. The defaults are the seed recipe's: the classic step-schedule baseline."""

    recipe: str = "seed"
    model: str = "custom"
    stem: str = "imagenet"
    pretrained: str | None = None  # weights to start from (head replaced): a local file, timm:<model>.<tag> or torchvision:<Enum>.<member>
    freeze_backbone: bool = False  # train only the classifier head
    head_dropout: float = 0.0  # dropout before the classifier head
    img_size: int | None = None  # resize inputs to img_size×img_size (None: the images' own size)
    epochs: int = 100
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9  # SGD's
    nesterov: bool = False  # SGD's
    weight_decay: float = 1e-4  # the write-up's train.py (before 0.2.0 here: 5e-4)
    norm_bias_lr: float = 1.0  # normalisation layers' biases learn at this multiple of lr (weight decay ÷ it)
    batch_size: int = 128
    schedule: str = "step"  # step: MultiStepLR at --milestones (none: constant); onecycle: OneCycleLR; cosine;
    # triangle: airbench94's, linear from 0.2 × lr up to lr over 23 % of the steps, then linear down to 0.07 × lr
    warmup_epochs: float = 0.0  # cosine: a linear warm-up from lr/100 over these epochs, then cosine decay to 0
    milestones: list[int] = field(default_factory=list)
    gamma: float = 0.1
    label_smoothing: float = 0.0
    aug: str = "crop-flip"
    erase: float = 0.0  # random erasing: the probability per image
    mixup: float = 0.0  # α of mixup (0: off)
    cutmix: float = 0.0  # α of cutmix (0: off); with mixup, each batch takes one of the two
    ema: float = 0.0  # decay of an exponential moving average of the weights, per step (0: off)
    lookahead: bool = False  # airbench's: every 5 steps the weights move back toward a slow copy, more as training ends
    val_tta: str = "none"  # the TTA views (config.TTA_CHOICES) each epoch's validation averages
    precision: str = "auto"  # auto: CUDA bf16 at compute capability ≥ 8.0, else fp16; CPU measured (pipeline/precision.py)
    compile: bool = False
    sync_bn: bool = False  # SyncBatchNorm across the processes of a torchrun job
    seed: int = 42
    val_fraction: float = 0.2
    full: bool = False  # train on every labeled image, no validation
    folds: int | None = None  # K-fold cross-validation: each fold a run in one CV folder (val: that fold)
    fold: int | None = None  # train only this fold (0 … K-1) of --folds K
    metric: str | None = None  # ranks the epochs (best.pt, --patience, --keep-top); None: dataset/competition.json's
    target_acc: float | None = None  # stop once val accuracy reaches it
    patience: int | None = None  # stop after this many epochs without a better val score (of `metric`)
    keep_top: int = 1  # checkpoints of the best epochs kept (besides best.pt and last.pt when more than 1)
    average_top: bool = False  # best.pt: the average of the --keep-top best epochs' weights
    device: str = "auto"
    threads: int | None = None  # CPU threads of this process (None: OMP_NUM_THREADS when set, else one per core)
    limit: int | None = None
    skip_bad: bool = False  # train on the usable images when some are broken (listed in skipped.txt)
    workers: int = min(4, os.cpu_count() or 1)
    name: str | None = None

    def __post_init__(self) -> None:
        self.aug = RENAMED_AUGMENTATIONS.get(self.aug, self.aug)
        self.stem = RENAMED_STEMS.get(self.stem, self.stem)

    def validate(self) -> None:
        """Every option in its range, as one line naming the option: NaN, infinities and values that make no
        sense (a negative learning rate, momentum ≥ 1) are refused before anything runs."""
        positive = {"epochs": self.epochs}
        if self.limit is not None:
            positive["limit"] = self.limit
        for option, value in positive.items():
            if value <= 0:
                raise PipelineError(f"--{flag(option)} must be positive, got {value}")
        if self.batch_size < 2:
            raise PipelineError(f"--batch-size must be 2 or more (BatchNorm cannot train on one image), got {self.batch_size}")
        check_device_and_threads(self.device, self.threads)
        if self.workers < 0:
            raise PipelineError(f"--workers must be 0 or more, got {self.workers}")
        if not 0 <= self.seed < 2**32:
            raise PipelineError(f"--seed must be in [0, 2^32), got {self.seed}")
        for option in ("ema", "label_smoothing", "head_dropout"):
            check_range(option, getattr(self, option), 0, 1)
        self._check_batched_augmentation()
        if not self.full:
            check_range("val_fraction", self.val_fraction, 0, 1, low_ok=False,
                        hint="; to train on every image without validation, pass --full" if self.val_fraction == 0 else "")
        check_run_name(self.name)
        if sorted(set(self.milestones)) != list(self.milestones) or any(m <= 0 for m in self.milestones):
            raise PipelineError(f"--milestones must be increasing positive epochs, got {self.milestones}")
        for option, value, allowed in (("aug", self.aug, AUGMENTATIONS), ("schedule", self.schedule, SCHEDULES),
                                       ("val_tta", self.val_tta, TTA_CHOICES),
                                       ("precision", self.precision, PRECISIONS), ("recipe", self.recipe, RECIPES)):
            check_choice(option, value, allowed)
        if self.model in STEMLESS_MODELS and self.stem != "imagenet":
            raise PipelineError(f"--stem {self.stem} applies to the ResNets, not {self.model} (its first layer is its own)")
        if self.milestones and self.schedule != "step":
            raise PipelineError(f"--milestones needs --schedule step, not {self.schedule}")
        self._check_optimizer_and_schedule()
        if self.img_size is not None and not 8 <= self.img_size <= 1024:
            raise PipelineError(f"--img-size must be between 8 and 1024 pixels, got {self.img_size}")
        named = model_of_weights(self.pretrained)
        if named and not NAMED_WEIGHTS_SPELLING.fullmatch(self.pretrained):
            raise PipelineError(f"--pretrained {self.pretrained}: name weights as timm:<model>.<tag> (e.g. "
                                "timm:resnet18.a1_in1k) or torchvision:<Enum>.<member> (e.g. "
                                "torchvision:ResNet18_Weights.IMAGENET1K_V1)")
        if named and named != MODEL_ALIASES.get(self.model, self.model):
            raise PipelineError(f"--pretrained {self.pretrained} is for --model {named}, not {self.model}: drop "
                                f"--model or pass --model {named}")
        if self.freeze_backbone and not self.pretrained:
            raise PipelineError("--freeze-backbone needs --pretrained weights (a frozen random backbone learns nothing)")
        if self.target_acc is not None and (self.full or not 0 < self.target_acc <= 1):
            raise PipelineError("--target-acc needs a validation split (not --full) and a value in (0, 1]")
        self._check_run_control()
        self._check_folds()

    def _check_folds(self) -> None:
        if self.folds is None:
            if self.fold is not None:
                raise PipelineError(f"--fold {self.fold} needs --folds K (the number of folds)")
            return
        if not 2 <= self.folds <= 100:
            raise PipelineError(f"--folds must be between 2 and 100, got {self.folds}")
        if self.fold is not None and not 0 <= self.fold < self.folds:
            raise PipelineError(f"--fold must be one of 0 … {self.folds - 1} for --folds {self.folds}, got {self.fold}")
        if self.full:
            raise PipelineError("--folds validates each fold on its held-out part: it cannot take --full")

    def _check_optimizer_and_schedule(self) -> None:
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_range("lr", self.lr, 0, low_ok=False)
        check_range("momentum", self.momentum, 0, 1)
        check_range("weight_decay", self.weight_decay, 0)
        check_range("gamma", self.gamma, 0, low_ok=False)
        check_range("norm_bias_lr", self.norm_bias_lr, 0, low_ok=False)
        if self.nesterov and self.optimizer != "sgd":
            raise PipelineError(f"--nesterov is SGD's; --optimizer {self.optimizer} has its own momentum: pass --no-nesterov")
        if self.nesterov and self.momentum == 0:
            raise PipelineError("--nesterov needs a --momentum above 0; pass --momentum 0.9, or --no-nesterov")
        check_range("warmup_epochs", self.warmup_epochs, 0, self.epochs,
                    hint=f" (fewer than --epochs {self.epochs})" if self.warmup_epochs >= self.epochs else "")
        if self.warmup_epochs and self.schedule != "cosine":
            raise PipelineError(f"--warmup-epochs needs --schedule cosine (onecycle warms up by itself), not {self.schedule}")

    def _check_batched_augmentation(self) -> None:
        if not 0 <= self.erase <= 1:  # NaN fails too
            raise PipelineError(f"--erase {self.erase:g}: must be a probability, in [0, 1]")
        for option in ("mixup", "cutmix"):
            check_range(option, getattr(self, option), 0)
        asked = [f"--{option}" for option in ("erase", "mixup", "cutmix") if getattr(self, option)]
        if asked and self.aug not in BATCHED_AUGMENTATIONS:
            raise PipelineError(f"{', '.join(asked)} run on the device with the batched policies: pass --aug "
                                f"{' or '.join(BATCHED_AUGMENTATIONS)}, not {self.aug}")

    def _check_run_control(self) -> None:
        """--metric, --patience, --keep-top and --average-top: each ranks epochs by val score, so needs a val split."""
        if self.metric is not None:
            check_metric(self.metric)
        if self.patience is not None and self.patience < 1:
            raise PipelineError(f"--patience must be 1 or more epochs, got {self.patience}")
        if not 1 <= self.keep_top <= 100:
            raise PipelineError(f"--keep-top must be between 1 and 100 checkpoints, got {self.keep_top}")
        if self.average_top and self.keep_top < 2:
            raise PipelineError("--average-top averages the --keep-top best epochs: pass --keep-top 2 or more")
        asked = [f"--{flag(option)}" for option, given in (("patience", self.patience is not None),
                 ("keep_top", self.keep_top > 1), ("average_top", self.average_top),
                 ("metric", self.metric is not None)) if given]
        if self.full and asked:
            raise PipelineError(f"{', '.join(asked)} rank epochs by their val score: they need a validation split, not --full")


def flag(option: str) -> str:
    return option.replace("_", "-")


def check_range(option: str, value: float, low: float, high: float = math.inf, low_ok: bool = True,
                hint: str = "") -> None:
    """`value` is a finite number from `low` (included when `low_ok`) up to `high` (excluded)."""
    # training computes in float32: a value beyond its range (3.4e38) is infinite there
    if abs(value) < FLOAT32_MAX and (value >= low if low_ok else value > low) and value < high:
        return
    bounds = (f"{'≥' if low_ok else '>'} {low:g}" if high == math.inf
              else f"in {'[' if low_ok else '('}{low:g}, {high:g})")
    raise PipelineError(f"--{flag(option)} {value:g}: must be a finite number {bounds}"
                        + (" (and below 3.4e38, float32's largest)" if math.isfinite(value) and high == math.inf else "")
                        + hint)


FLOAT32_MAX = 3.4028234663852886e38
LR_FIND_FOLDER = "lr-find"  # under weights/: `pipeline lr-find`'s curve, not a run
DEVICE_SPELLING = re.compile(r"auto|cpu|cuda(:\d+)?")


def check_device_and_threads(device: str, threads: int | None) -> None:
    if not DEVICE_SPELLING.fullmatch(device):
        raise PipelineError(f"--device {device!r}: expected auto, cpu, cuda or cuda:N")
    if threads is not None and threads < 1:
        raise PipelineError(f"--threads must be 1 or more, got {threads}")


def check_choice(option: str, value: str, allowed) -> None:
    if value not in allowed:
        raise PipelineError(f"--{flag(option)} {value!r}: choose one of {', '.join(allowed)}")


def check_prediction_options(tta: str, batch_size: int | None, engine: str = "auto", precision: str = "auto",
                             device: str = "auto", threads: int | None = None) -> None:
    check_choice("tta", tta, TTA_CHOICES)
    check_device_and_threads(device, threads)
    check_choice("engine", engine, ENGINES)
    check_choice("precision", precision, PREDICT_PRECISIONS)
    if batch_size is not None and batch_size <= 0:
        raise PipelineError(f"--batch-size must be positive, got {batch_size}")


def check_run_name(name: str | None) -> None:
    """A run name is one folder under weights/: no path separators, not `.`/`..`, nothing that escapes it."""
    if name is None:
        return
    if name == LR_FIND_FOLDER:
        raise PipelineError(f"--name {name}: weights/{name}/ is where `pipeline lr-find` writes; choose another name")
    if not name.strip() or name.startswith(".") or any(c in name for c in "/\\") or name != name.strip() \
            or not name.isprintable():
        raise PipelineError(f"--name {name!r}: a run name is one folder name under weights/ (no slashes or control "
                            "characters, no leading dot, no surrounding spaces), e.g. --name resnet18-lr0.1")


# Each recipe sets these options; explicit flags override them.
RECIPES: dict[str, dict] = {
    # the write-up's (li554/resnet18-cifar10-classification, train.py): SGD 0.9, wd 1e-4, batch 128, MultiStepLR,
    # crop + flip, 100 epochs
    "seed": {},
    # a short schedule: CIFAR stem, large batch with a scaled one-cycle lr, Nesterov, label smoothing,
    # cutout and an EMA of the weights
    "fast": dict(stem="improved", epochs=40, batch_size=512, lr=0.2, nesterov=True, weight_decay=5e-4,
                 schedule="onecycle", label_smoothing=0.1, aug="cutout", ema=0.998),
    # the small fast net (pipeline/models/fastnet.py) with airbench94's hyperparameters for a mean loss:
    # Nesterov 0.85, lr 1.5 per 1024 images, weight decay 0.002 per step at that lr, label smoothing 0.2,
    # and its augmentation: shifts of up to 2 px (reflect padding) and alternating flips. airbench94's own schedule
    # (batch 1024, --schedule triangle, --lookahead, --norm-bias-lr 64) won at 10 epochs but lost at these 36
    # (README: Against airbench94 on the same images)
    "fastnet": dict(model="fastnet", epochs=36, batch_size=512, lr=0.75, momentum=0.85, nesterov=True,
                    weight_decay=1.3e-3, schedule="onecycle", label_smoothing=0.2, aug="shift-altflip"),
    # the wider residual net (fastnet-wide) with airbench96's hyperparameters for a mean loss: batch 1024, lr 1.17
    # (9 per 1024 images in airbench's units), weight decay 0.00157 per step at that lr, BatchNorm biases at 64 × lr,
    # its triangle schedule and lookahead, shifts of up to 4 px, alternating flips and a 12-px cutout
    "fastnet-wide": dict(model="fastnet-wide", epochs=37, batch_size=1024, lr=1.17, momentum=0.85, nesterov=True,
                         weight_decay=1.33e-3, norm_bias_lr=64, schedule="triangle", lookahead=True,
                         label_smoothing=0.2, aug="shift4-altflip-cutout"),
}
DEFAULT_RECIPE = "fastnet"  # the best accuracy per minute measured (README: Measured); CUDA: see gpu_check.sh
RESNET_OPTIONS = ("milestones", "model", "pretrained", "stem")  # typed without --recipe, they pick seed
OPTION_NAMES = frozenset(f.name for f in fields(TrainConfig))
FIELD_TYPES = {f.name: f.type for f in fields(TrainConfig)}  # e.g. "float | None"
TYPE_NAMES = {"str": "text", "bool": "true or false", "float": "a number", "int": "a whole number",
              "list[int]": "a list of whole numbers"}


def _default_recipe(given: dict) -> str:
    if given.get("model") in RECIPES:  # a model with a recipe of its own: --model fastnet
        return given["model"]
    return "seed" if any(given.get(option) for option in RESNET_OPTIONS) else DEFAULT_RECIPE


def config_from(given: dict) -> TrainConfig:
    """A config from the options typed on the command line, over the chosen recipe, over the defaults.

    Without `--recipe` the default recipe trains its own model; typing a ResNet schedule, model, weights or stem
    (`--milestones`, `--model`, `--pretrained`, `--stem`/`--improved`) picks the seed recipe instead (a model
    with a recipe of its own, its recipe), so the classic command `pipeline train --improved --lr 0.01
    --milestones 30 60 90` trains the write-up's recipe.
    """
    unknown = set(given) - OPTION_NAMES
    if unknown:
        raise PipelineError(f"unknown option(s): {', '.join(sorted(unknown))}")
    recipe = given.get("recipe") or _default_recipe(given)
    if recipe not in RECIPES:
        raise PipelineError(f"--recipe {recipe!r}: choose one of {', '.join(RECIPES)}")
    named = model_of_weights(given.get("pretrained"))
    if named and "model" not in given:  # --pretrained timm:resnet18.a1_in1k trains timm:resnet18
        given = {**given, "model": named}
    if given.get("optimizer", "sgd") != "sgd" and "nesterov" not in given:  # the recipe's Nesterov is SGD's
        given = {**given, "nesterov": False}
    return TrainConfig(**{**RECIPES[recipe], **given, "recipe": recipe})


WEIGHT_LIBRARIES = ("timm", "torchvision")
NAMED_WEIGHTS_SPELLING = re.compile(r"timm:\w+(\.[\w-]+)?|torchvision:\w+_Weights\.\w+")
MODEL_ALIASES = {"custom": "resnet18", "torchvision": "torchvision:resnet18"}
STEMLESS_MODELS = ("fastnet", "fastnet-wide")  # their first layer is their own: --stem does not apply


def model_label(model: str, stem: str) -> str:
    """`resnet18 (improved stem)`, or `fastnet` for a model without a stem to choose."""
    return model if model in STEMLESS_MODELS else f"{model} ({stem} stem)"


def model_of_weights(pretrained: str | None) -> str | None:
    """The --model that named weights are for (`timm:resnet18.a1_in1k` → `timm:resnet18`,
    `torchvision:ResNet18_Weights.IMAGENET1K_V1` → `torchvision:resnet18`); None for a weights file."""
    library, colon, name = (pretrained or "").partition(":")
    if not colon or library not in WEIGHT_LIBRARIES:
        return None
    if library == "timm":
        return f"timm:{name.partition('.')[0]}"
    return f"torchvision:{name.partition('.')[0].lower().removesuffix('_weights')}"


def upgraded_options(options: dict, saved_format: object, source: object) -> dict:
    """Saved options in today's names, building the model they trained: `improved` of format 1 is improved-pool,
    older names are renamed; a format newer than this pipeline's is refused."""
    if isinstance(saved_format, int) and saved_format > OPTIONS_FORMAT:
        raise PipelineError(f"{source}: saved by a newer pipeline (options format {saved_format}); upgrade pipeline")
    stem, aug = options.get("stem"), options.get("aug")
    if saved_format == 1 and stem == "improved":
        stem = "improved-pool"
    renamed = {"stem": RENAMED_STEMS.get(stem, stem), "aug": RENAMED_AUGMENTATIONS.get(aug, aug)}
    return {**options, **{key: value for key, value in renamed.items() if key in options}}


def saved_config(options: dict, source: object) -> TrainConfig:
    """The options a run saved; options added since then take their defaults."""
    unknown = set(options) - OPTION_NAMES
    if unknown:
        raise PipelineError(f"{source}: saved by a newer pipeline (unknown options {', '.join(sorted(unknown))})")
    return TrainConfig(**checked_options(options, source))


def command_line_options(typed: dict) -> dict:
    """The options typed on the command line as TrainConfig fields: `--improved` is `--stem improved`,
    `--milestones` takes `30 60 90` or `30,60,90`, paths become text."""
    options = dict(typed)
    if options.pop("improved", False):
        stem = options.get("stem", "improved")
        if RENAMED_STEMS.get(stem, stem) != "improved":
            raise PipelineError(f"--improved contradicts --stem {options['stem']}")
        options["stem"] = "improved"
    if "milestones" in options:
        options["milestones"] = parse_milestones(options["milestones"])
    if options.get("pretrained") is not None:
        options["pretrained"] = str(options["pretrained"])
    return options


def file_options(path: Path) -> dict:
    """The options in a YAML (or JSON) file of `option: value` lines, spelled as on the command line (`lr`,
    `weight-decay` or `weight_decay`, `improved: true`, `milestones: [30, 60, 90]`), as TrainConfig fields;
    each value checked against its option's type."""
    import yaml

    try:
        loaded = yaml.safe_load(path.read_text())
    except OSError as e:
        raise PipelineError(f"{path}: cannot read it ({e.strerror or e}); pass a YAML file of options") from None
    except UnicodeDecodeError:
        raise PipelineError(f"{path}: not a text file; pass a YAML file of options, or a run") from None
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        raise PipelineError(f"{path}: not valid YAML{f' (line {where.line + 1})' if where else ''}; "
                            "write one `option: value` per line") from None
    loaded = {} if loaded is None else loaded  # empty, or comments only: no options
    if not isinstance(loaded, dict):
        found = {list: "a list", str: "plain text"}.get(type(loaded), f"a single {type(loaded).__name__}")
        raise PipelineError(f"{path}: expected `option: value` lines, found {found}")
    options = {str(key).replace("-", "_"): value for key, value in loaded.items()}
    unknown = sorted(set(options) - OPTION_NAMES - {"improved"})
    if unknown:
        raise PipelineError(f"{path}: unknown option(s) {', '.join(unknown)}; `pipeline train --print-config` lists them")
    if isinstance(options.get("milestones"), (int, str)):
        options["milestones"] = [options["milestones"]]
    return checked_options(command_line_options(options), path)


def checked_options(options: dict, source: object) -> dict:
    """`options` with each value of its option's type (a number written as text, as YAML reads `1e-3`, becomes
    the number), else a one-line error naming `source`."""
    return {option: _checked(option, value, source) for option, value in options.items()}


def _checked(option: str, value: object, source: object) -> object:
    """`value` as TrainConfig's field `option` takes it (an int passes for a float; None where optional)."""
    kind = FIELD_TYPES[option]
    base = kind.split(" |")[0]
    if base == "float" and isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    fits = {"str": isinstance(value, str), "bool": isinstance(value, bool), "float": number,
            "int": number and isinstance(value, int),
            "list[int]": isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)}[base]
    if not (fits or (value is None and kind.endswith("| None"))):
        raise PipelineError(f"{source}: {option} must be {TYPE_NAMES[base]}, got {value!r}")
    return value


def printed_config(config: TrainConfig) -> str:
    """The whole config as YAML that `--config` reads back to the same config."""
    import yaml

    return yaml.safe_dump(asdict(config), sort_keys=False, allow_unicode=True)


def parse_milestones(values: list[str] | None) -> list[int]:
    """Epochs from `30 60 90`, `30,60,90` or (a config file's) `"30 60 90"`."""
    try:
        return [int(part) for value in values or [] for part in re.split(r"[,\s]+", str(value)) if part]
    except ValueError:
        raise PipelineError(f"--milestones takes whole epochs, got {' '.join(map(str, values))}") from None


def default_help(option: str) -> str:
    """`(default 0.9)`, or `(default fastnet: 36, seed: 100, fast: 40)` where the recipes differ, the default recipe
    first: for `--help`."""
    if option == "recipe":
        return f"(default {DEFAULT_RECIPE})"
    order = [DEFAULT_RECIPE, *(recipe for recipe in RECIPES if recipe != DEFAULT_RECIPE)]
    values = {recipe: RECIPES[recipe].get(option, getattr(TrainConfig, option, None)) for recipe in order}
    shown = {recipe: _shown(value) for recipe, value in values.items()}
    if len(set(shown.values())) == 1:
        return f"(default {shown[DEFAULT_RECIPE]})"
    return "(default " + ", ".join(f"{recipe}: {text}" for recipe, text in shown.items()) + ")"


def _shown(value: object) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if value is None or value == []:
        return "none"
    return f"{value:g}" if isinstance(value, float) else str(value)
