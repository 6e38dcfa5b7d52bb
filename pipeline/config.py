"""The options of a training run and the recipes that set them, and the choices of prediction's options (no
heavy imports: the CLI checks these before it imports torch)."""
from __future__ import annotations

import datetime
import functools
import math
import os
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, make_dataclass
from pathlib import Path

from pipeline.errors import PipelineError
from pipeline.metrics import METRICS, check_metric

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
STEMS = ("imagenet", "improved", "improved-pool")
RENAMED_STEMS = {"cifar": "improved"}
OPTIONS_FORMAT = 2  # what saved options mean; 2: `improved` lost its max pool (runs of format 1 keep theirs)
TTA_CHOICES = ("none", "flip", "flip-shift", "flip-translate")  # pipeline/infer.py's views
ENGINES = ("auto", "torch", "openvino")
PREDICT_PRECISIONS = ("auto", "bf16", "fp16", "fp32", "int8")

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
FOLDS_RANGE = (2, 100)  # --folds K


def flag(option: str) -> str:
    return option.replace("_", "-")


def check_range(option: str, value: float, low: float, high: float = math.inf, low_ok: bool = True,
                hint: str = "", high_ok: bool = False) -> None:
    """`value` is a finite number from `low` (included when `low_ok`) up to `high` (included when `high_ok`)."""
    # training computes in float32: a value beyond its range (3.4e38) is infinite there
    if abs(value) < FLOAT32_MAX and (value >= low if low_ok else value > low) and (
            value <= high if high_ok else value < high):
        return
    bounds = (f"{'≥' if low_ok else '>'} {low:g}" if high == math.inf
              else f"in {'[' if low_ok else '('}{low:g}, {high:g}{']' if high_ok else ')'}")
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


def in_range(low: float, high: float = math.inf, low_ok: bool = True, high_ok: bool = False) -> Callable[[str, float], None]:
    """A check: a finite number from `low` (included when `low_ok`) up to `high` (included when `high_ok`)."""
    return lambda option, value: check_range(option, value, low, high, low_ok, high_ok=high_ok)


def at_least(low: int, unit: str = "") -> Callable[[str, int], None]:
    def check(option: str, value: int) -> None:
        if value < low:
            raise PipelineError(f"--{flag(option)} must be {low} or more{unit}, got {value}")
    return check


MAX_EPOCHS = 100_000  # beyond any schedule a run finishes; a typo of a few more digits is caught


def between(low: int, high: int, unit: str = "") -> Callable[[str, int], None]:
    def check(option: str, value: int) -> None:
        if not low <= value <= high:
            raise PipelineError(f"--{flag(option)} must be between {low} and {high}{unit}, got {value}")
    return check


def positive(option: str, value: int) -> None:
    if value <= 0:
        raise PipelineError(f"--{flag(option)} must be positive, got {value}")


def probability(option: str, value: float) -> None:
    if not 0 <= value <= 1:  # NaN fails too
        raise PipelineError(f"--{flag(option)} {value:g}: must be a probability, in [0, 1]")


def seed_range(option: str, value: int) -> None:
    if not 0 <= value < 2**32:
        raise PipelineError(f"--{flag(option)} must be in [0, 2^32), got {value}")


def increasing_epochs(option: str, value: list[int]) -> None:
    if sorted(set(value)) != list(value) or any(epoch <= 0 for epoch in value):
        raise PipelineError(f"--{flag(option)} must be increasing positive epochs, got {value}")


def device_spelling(option: str, value: str) -> None:
    check_device_and_threads(value, None)


@dataclass(frozen=True)
class Option:
    """One `pipeline train` option, declared once: `TrainConfig`'s field, the `train` and `lr-find` flags and
    their --help, the range check, `--config`'s type check and the name sets below all come from it."""

    name: str  # the field; the flag is its kebab case
    kind: type  # str, int, float, bool or list (of whole numbers)
    default: object  # the seed recipe's value (the other recipes' are in RECIPES)
    panel: str  # --help's panel
    help: str  # --help's text; the recipes' defaults are added to it
    metavar: str = ""  # how --help shows the value (on/off options show none)
    choices: tuple[str, ...] = ()  # the values allowed, listed in --help
    aliases: dict[str, str] = field(default_factory=dict)  # older names still accepted → today's
    check: Callable[[str, object], None] | None = None  # the range check: a one-line PipelineError
    optional: bool = False  # None allowed: unset
    resumable: bool = False  # may change on --resume
    per_fold: bool = False  # may differ between the folds of a CV
    ranks_val: bool = False  # ranks, stops on or scores val epochs: meaningless with --full, which has no val split
    lr_find: bool = True  # `pipeline lr-find` takes it: it shapes a training step
    hparam: bool = True  # in TensorBoard's HPARAMS
    flag_only: bool = False  # a plain flag (--full): no --no-x, no recipe default


MODEL, OPTIMISATION, DATA, RUN = "Model", "Optimisation", "Data and augmentation", "Run"
TEACH = "Pseudo-labels and distillation"
TEACHING_OPTIONS = {"pseudo_soft": "pseudo", "pseudo_weight": "pseudo", "distill_alpha": "teacher",
                    "distill_temperature": "teacher"}  # each applies to its source only
THREADS_HELP = ("CPU threads of this process (none: OMP_NUM_THREADS when set, else one per core); give each of two "
                "commands sharing a machine its share of the cores.")
OPTIONS = (
    Option("recipe", str, "seed", OPTIMISATION, f"{', '.join(RECIPES)}: a set of defaults for the options below; "
           "without it, --milestones, --model, --pretrained or --stem pick seed.", choices=tuple(RECIPES)),
    Option("model", str, "custom", MODEL, "custom (this package's ResNet-18), resnet18…resnet152, fastnet, fastnet-wide, "
           "torchvision:<name> or timm:<name>.", "NAME"),
    Option("stem", str, "imagenet", MODEL, "imagenet (7×7/2 conv + max pool), improved (3×3/1 conv, no pool; also "
           "called cifar) or improved-pool (3×3/1 conv + max pool: improved before 0.2.0).", choices=STEMS,
           aliases=RENAMED_STEMS),
    Option("pretrained", str, None, MODEL, "Weights to start from: a local .pth/.pt/.safetensors file, timm:<model>.<tag> "
           "(e.g. timm:resnet18.a1_in1k) or torchvision:<Enum>.<member> (e.g. torchvision:ResNet18_Weights.IMAGENET1K_V1), "
           "from the libraries' caches (downloaded once when online); the head is replaced, a 1-channel input conv "
           "adapted.", "WEIGHTS", optional=True),
    Option("freeze_backbone", bool, False, MODEL, "Train only the classifier head (needs --pretrained)."),
    Option("head_dropout", float, 0.0, MODEL, "Dropout before the classifier head, e.g. 0.5.", "P", check=in_range(0, 1)),
    Option("img_size", int, None, MODEL, "Resize inputs to S×S, e.g. 224 for ImageNet weights (none: the images' size).",
           "PIXELS", check=between(8, 1024, " pixels"), optional=True),
    Option("epochs", int, 100, OPTIMISATION, "", "N", check=between(1, MAX_EPOCHS), resumable=True, lr_find=False),
    Option("optimizer", str, "sgd", OPTIMISATION, "sgd, adam, adamw, lamb or lion (timm's optimizers).",
           choices=OPTIMIZERS),
    Option("lr", float, 0.01, OPTIMISATION, "Learning rate (onecycle: the peak; cosine: the start after warm-up).", "LR",
           check=in_range(0, low_ok=False), lr_find=False),
    Option("momentum", float, 0.9, OPTIMISATION, "SGD's.", "M", check=in_range(0, 1)),
    Option("nesterov", bool, False, OPTIMISATION, "SGD's."),
    Option("weight_decay", float, 1e-4, OPTIMISATION, "", "WD", check=in_range(0)),  # the write-up's (0.1.0: 5e-4)
    Option("norm_bias_lr", float, 1.0, OPTIMISATION, "The normalisation layers' biases (BatchNorm, GroupNorm, LayerNorm) "
           "learn at F × --lr, with weight decay ÷ F (airbench: 64).", "F", check=in_range(0, low_ok=False)),
    Option("batch_size", int, 128, OPTIMISATION, "", "N", check=at_least(2, " (BatchNorm cannot train on one image)")),
    Option("schedule", str, "step", OPTIMISATION, "step (MultiStepLR at --milestones), onecycle, cosine (decay to 0 per "
           "step, after --warmup-epochs) or triangle (airbench94's: linear from 0.2 × lr to lr over 23 % of the steps, "
           "then down to 0.07 × lr).", choices=SCHEDULES, lr_find=False),
    Option("warmup_epochs", float, 0.0, OPTIMISATION, "cosine: epochs of linear warm-up from lr/100 (fractions allowed).",
           "E", lr_find=False),  # its range depends on --epochs: TrainConfig.validate
    Option("milestones", list, [], OPTIMISATION, "Epochs where lr is multiplied by --gamma: --milestones 30 60 90 (none: "
           "constant lr).", "EPOCH…", check=increasing_epochs, lr_find=False),
    Option("gamma", float, 0.1, OPTIMISATION, "", "G", check=in_range(0, low_ok=False), lr_find=False),
    Option("label_smoothing", float, 0.0, OPTIMISATION, "", "E", check=in_range(0, 1)),
    Option("clip_grad", float, None, OPTIMISATION, "Clip the gradients' global L2 norm to this before each step, as "
           "timm's --clip-grad (none: no clipping).", "NORM", check=in_range(0, low_ok=False), optional=True),
    Option("aug", str, "crop-flip", DATA, "none, crop-flip (random crop, 4 px zero padding, + flip), shift-flip (2 px "
           "reflect padding), shift-altflip (+ each image flipped every other epoch), shift4-altflip-cutout (4 px, + a "
           "12-px cutout), cutout (crop-flip + cutout), trivial (crop-flip + TrivialAugmentWide, per image) on the "
           "device; albu-strong (albumentations in workers).", choices=AUGMENTATIONS, aliases=RENAMED_AUGMENTATIONS),
    Option("erase", float, 0.0, DATA, "Random erasing (torchvision's defaults): the probability per image, e.g. 0.25.",
           "P", check=probability),
    Option("mixup", float, 0.0, DATA, "Mixup's α, e.g. 0.2 (0: off); the loss takes the mixed labels.", "ALPHA",
           check=in_range(0)),
    Option("cutmix", float, 0.0, DATA, "CutMix's α, e.g. 1.0 (0: off); with --mixup each batch takes one of the two.",
           "ALPHA", check=in_range(0)),
    Option("pseudo", str, None, TEACH, "Runs or CVs (comma-separated) whose saved test predictions (`pipeline predict "
           "--run SOURCE`) pseudo-label the test images: the confident ones join training.", "SOURCE", optional=True,
           lr_find=False),
    Option("pseudo_threshold", float, None, TEACH, "Instead of --pseudo-top: keep the test images whose top probability "
           "is at least this.", "P", check=in_range(0, 1, low_ok=False, high_ok=True), optional=True,
           lr_find=False),
    Option("pseudo_top", float, None, TEACH, "Keep the most confident fraction F of the test images predicted as each "
           "class, which keeps the teacher's class balance (none: 0.5, unless --pseudo-threshold).", "F",
           check=in_range(0, 1, low_ok=False, high_ok=True), optional=True, lr_find=False),
    Option("pseudo_soft", bool, False, TEACH, "Pseudo-labels as the teacher's probabilities (off: its class).",
           lr_find=False),
    Option("pseudo_weight", float, 1.0, TEACH, "A pseudo-labeled image's weight in the loss (a labeled one's: 1).", "W",
           check=in_range(0, low_ok=False), lr_find=False),
    Option("teacher", str, None, TEACH, "Runs or CVs (comma-separated) to distil: the loss also follows their softened "
           "probabilities of the training (and pseudo-labeled) images.", "SOURCE", optional=True, lr_find=False),
    Option("distill_alpha", float, 0.5, TEACH, "The teacher's share of the loss (1 − α: the labels').", "A",
           check=lambda option, value: check_range(option, value, 0, 1, low_ok=False, high_ok=True, hint=(
               "; at 0 the teacher's share is nothing: leave out --teacher" if value == 0 else "")), lr_find=False),
    Option("distill_temperature", float, 2.0, TEACH, "Softens teacher and student alike (the KL term is scaled by T²).",
           "T", check=in_range(0, low_ok=False), lr_find=False),
    Option("ema", float, 0.0, OPTIMISATION, "Per-step decay of an EMA of the weights, used for validation and "
           "prediction; 0 = off.", "DECAY", check=in_range(0, 1), lr_find=False),
    Option("lookahead", bool, False, OPTIMISATION, "airbench94's lookahead: every 5 steps the weights move back toward "
           "a slow copy (none at first, 77 % toward it at the end), and end as that copy.", lr_find=False),
    Option("val_tta", str, "none", RUN, "The test-time augmentation each epoch's validation averages (as predict's "
           "--tta): none, flip, flip-shift or flip-translate.", choices=TTA_CHOICES, lr_find=False, ranks_val=True),
    Option("precision", str, "auto", OPTIMISATION, "auto (CUDA: bf16 at compute capability ≥ 8.0, else fp16 with a "
           "gradient scaler; CPU: the fastest of fp32 and bf16, each in the contiguous and the channels_last layout, "
           "measured on this model and cached), bf16, fp16 or fp32.", choices=PRECISIONS),
    Option("compile", bool, False, OPTIMISATION, "torch.compile the model.", resumable=True, per_fold=True, hparam=False),
    Option("sync_bn", bool, False, RUN, "SyncBatchNorm across the processes of a distributed run.", resumable=True,
           lr_find=False),
    Option("seed", int, 42, DATA, "Seeds the split, the initial weights and every epoch's shuffle and augmentation.",
           "N", check=seed_range),
    Option("val_fraction", float, 0.2, DATA, "", "F"),  # its range depends on --full: TrainConfig.validate
    Option("full", bool, False, DATA, "Train on all labeled images (no validation); the best checkpoint is the last "
           "epoch.", flag_only=True),
    Option("folds", int, None, DATA, "K-fold cross-validation (stratified, seeded): a run per fold in one folder under "
           "weights/, out-of-fold predictions and a CV summary; predict averages the folds.", "K",
           check=between(*FOLDS_RANGE), optional=True, lr_find=False),
    Option("fold", int, None, DATA, "With --folds K: train fold I alone (0 … K-1), e.g. one per machine; the same "
           "--name gathers them.", "I", optional=True, per_fold=True, lr_find=False),
    Option("metric", str, None, RUN, "What ranks the epochs (best.pt, --patience, --keep-top) and heads metrics.csv, "
           "the report and `pipeline runs`: accuracy, f1_macro, f1_micro, log_loss, roc_auc or mean_roc_auc (none: the "
           "metric of dataset/competition.json).", choices=METRICS, check=lambda option, value: check_metric(value),
           optional=True, ranks_val=True, lr_find=False),
    Option("target_acc", float, None, RUN, "Stop once val accuracy reaches this; the time it took goes to the run's "
           "result.", "ACC", optional=True, ranks_val=True, lr_find=False, hparam=False),
    Option("patience", int, None, RUN, "Stop after N epochs without a better val score (of --metric) (none: train every "
           "epoch).", "N", check=at_least(1, " epochs"), optional=True, resumable=True, ranks_val=True, lr_find=False),
    Option("keep_top", int, 1, RUN, "Keep the checkpoints of the K best epochs in top/ (best.pt and last.pt are always "
           "kept).", "K", check=between(1, 100, " checkpoints"), ranks_val=True, lr_find=False),
    Option("average_top", bool, False, RUN, "Make best.pt the average of the --keep-top best epochs' weights, scored "
           "on val beside the best single epoch.", ranks_val=True, lr_find=False),
    Option("device", str, "auto", RUN, "auto (CUDA when present), cpu, cuda or cuda:N.", "DEVICE",
           check=device_spelling, resumable=True, per_fold=True, hparam=False),
    Option("threads", int, None, RUN, THREADS_HELP, "N", check=at_least(1), optional=True, resumable=True,
           per_fold=True),
    Option("limit", int, None, DATA, "Use only N training images, each class its share (quick runs).", "N", check=positive,
           optional=True, hparam=False),
    Option("skip_bad", bool, False, DATA, "Train on the rest when some images or CSV rows are unusable; they are "
           "listed in the run folder (off: any problem stops training)."),
    Option("workers", int, min(4, os.cpu_count() or 1), DATA, "DataLoader workers (albumentations policies only).", "N",
           check=at_least(0), resumable=True, per_fold=True, hparam=False),
    Option("name", str, None, RUN, "Run folder under weights/ (none: exp, exp2, …).", "NAME",
           check=lambda option, value: check_run_name(value), optional=True, per_fold=True, lr_find=False,
           hparam=False),
)
OPTION = {option.name: option for option in OPTIONS}
OPTION_NAMES = frozenset(OPTION)
RESUME_OVERRIDES = frozenset(option.name for option in OPTIONS if option.resumable)  # the others define the run
VAL_RANKING_OPTIONS = frozenset(option.name for option in OPTIONS if option.ranks_val)


class TrainConfigChecks:
    """TrainConfig's methods: its fields are OPTIONS'."""

    def __post_init__(self) -> None:
        for option in OPTIONS:
            if option.aliases:
                value = getattr(self, option.name)
                setattr(self, option.name, option.aliases.get(value, value))

    def validate(self) -> None:
        """Every option in its range, as one line naming the option: NaN, infinities and values that make no
        sense (a negative learning rate, momentum ≥ 1) are refused before anything runs; then the options that
        depend on each other."""
        for option in OPTIONS:
            value = getattr(self, option.name)
            if value is None:
                continue
            if option.check:
                option.check(option.name, value)
            elif option.choices:
                check_choice(option.name, value, option.choices)
        if not self.full:
            check_range("val_fraction", self.val_fraction, 0, 1, low_ok=False,
                        hint="; to train on every image without validation, pass --full" if self.val_fraction == 0 else "")
        asked = [f"--{option}" for option in ("erase", "mixup", "cutmix") if getattr(self, option)]
        if asked and self.aug not in BATCHED_AUGMENTATIONS:
            raise PipelineError(f"{', '.join(asked)} run on the device with the batched policies: pass --aug "
                                f"{' or '.join(BATCHED_AUGMENTATIONS)}, not {self.aug}")
        if not has_stem(self.model) and self.stem != "imagenet":
            raise PipelineError(f"--stem {self.stem} applies to the ResNets, not {self.model} (its first layer is its own)")
        if self.milestones and self.schedule != "step":
            raise PipelineError(f"--milestones needs --schedule step, not {self.schedule}")
        self._check_optimizer_and_schedule()
        self._check_pretrained()
        if self.target_acc is not None and not 0 < self.target_acc <= 1:
            raise PipelineError(f"--target-acc {self.target_acc}: a val accuracy in (0, 1], e.g. 0.94")
        if self.target_acc is not None and self.full:
            raise PipelineError("--target-acc needs a validation split: drop --full (or --target-acc)")
        self._check_run_control()
        self._check_folds()
        self._check_teaching()

    def _check_teaching(self) -> None:
        """--pseudo-* need --pseudo, one confidence rule at most; the targets they make cannot be mixed."""
        for option in ("pseudo", "teacher"):
            value = getattr(self, option)
            if value is not None and not value.replace(",", "").strip():
                raise PipelineError(f"--{option} {value!r}: name the teacher's runs or cross-validations, comma-separated")
        rules = [f"--{flag(option)}" for option in ("pseudo_threshold", "pseudo_top") if getattr(self, option) is not None]
        if rules and not self.pseudo:
            raise PipelineError(f"{rules[0]} is --pseudo's confidence rule: pass --pseudo SOURCE too")
        for option, source in TEACHING_OPTIONS.items():
            if getattr(self, option) != OPTION[option].default and not getattr(self, source):
                raise PipelineError(f"--{flag(option)} applies to --{source} SOURCE, which is not given: pass it too, "
                                    f"or drop --{flag(option)}")
        if len(rules) > 1:
            raise PipelineError("--pseudo-threshold and --pseudo-top are two confidence rules: pass one")
        mixed = [f"--{option}" for option in ("mixup", "cutmix") if getattr(self, option)]
        taught = [f"--{option}" for option in ("pseudo", "teacher") if getattr(self, option)]
        if mixed and taught:
            raise PipelineError(f"{taught[0]} and {mixed[0]} cannot be combined yet (mixing would need to mix the "
                                "teacher's targets too): drop one")

    def _check_pretrained(self) -> None:
        if self.pretrained is not None and not self.pretrained.strip():  # an unset shell variable: "$W"
            raise PipelineError(f"--pretrained {self.pretrained!r}: name a weights file, a run's best.pt or library "
                                "weights (timm:…, torchvision:…), or leave it out to train from scratch")
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

    def _check_folds(self) -> None:
        if self.folds is None:
            if self.fold is not None:
                raise PipelineError(f"--fold {self.fold} needs --folds K (the number of folds)")
            return
        if self.fold is not None and not 0 <= self.fold < self.folds:
            raise PipelineError(f"--fold must be one of 0 … {self.folds - 1} for --folds {self.folds}, got {self.fold}")
        if self.full:
            raise PipelineError("--folds validates each fold on its held-out part: it cannot take --full")

    def _check_optimizer_and_schedule(self) -> None:
        if self.nesterov and self.optimizer != "sgd":
            raise PipelineError(f"--nesterov is SGD's; --optimizer {self.optimizer} has its own momentum: pass --no-nesterov")
        if self.nesterov and self.momentum == 0:
            raise PipelineError("--nesterov needs a --momentum above 0; pass --momentum 0.9, or --no-nesterov")
        check_range("warmup_epochs", self.warmup_epochs, 0, self.epochs,
                    hint=f" (fewer than --epochs {self.epochs})" if self.warmup_epochs >= self.epochs else "")
        if self.warmup_epochs and self.schedule != "cosine":
            raise PipelineError(f"--warmup-epochs needs --schedule cosine (onecycle warms up by itself), not {self.schedule}")

    def _check_run_control(self) -> None:
        """--metric, --patience, --keep-top and --average-top: each ranks epochs by val score, so needs a val split."""
        if self.average_top and self.keep_top < 2:
            raise PipelineError("--average-top averages the --keep-top best epochs: pass --keep-top 2 or more")
        asked = [f"--{flag(option)}" for option, given in (("patience", self.patience is not None),
                 ("keep_top", self.keep_top > 1), ("average_top", self.average_top),
                 ("metric", self.metric is not None)) if given]
        if self.full and asked:
            raise PipelineError(f"{', '.join(asked)} rank epochs by their val score: they need a validation split, not --full")
        if self.full and self.val_tta != "none":
            raise PipelineError(f"--val-tta {self.val_tta} averages views of the val images, which --full has none of; "
                                "leave it out (predict's --tta sets the test images' views)")


def _field(option: Option) -> tuple:
    kind = list[int] if option.kind is list else option.kind
    default = (field(default_factory=lambda: list(option.default)) if isinstance(option.default, list)
               else field(default=option.default))
    return option.name, kind | None if option.optional else kind, default


# Every `pipeline train` option, a field each. The defaults are the seed recipe's: the classic step-schedule baseline.
TrainConfig = make_dataclass("TrainConfig", [_field(option) for option in OPTIONS], bases=(TrainConfigChecks,))
TrainConfig.__module__ = __name__  # pickled by name, as a class written here would be


TYPE_NAMES = {str: "text", bool: "true or false", float: "a number", int: "a whole number",
              list: "a list of whole numbers"}


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
    fraction, default = given.get("val_fraction", OPTION["val_fraction"].default), OPTION["val_fraction"].default
    if given.get("folds") is not None and fraction != default:  # saved CVs may hold one: refused where typed only
        raise PipelineError(f"--val-fraction {fraction} does not apply to --folds {given['folds']}: each fold "
                            f"validates on its 1/{given['folds']} of the images; drop it (or train one run without --folds)")
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


def has_stem(model: str) -> bool:
    """Whether --stem applies: this package's and torchvision's ResNets; fastnet's and timm's first layers are their
    own."""
    return model not in ("fastnet", "fastnet-wide") and not model.startswith("timm:")


def model_label(model: str, stem: str) -> str:
    """`resnet18 (improved stem)`, or `fastnet` for a model without a stem to choose."""
    return f"{model} ({stem} stem)" if has_stem(model) else model


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
        raise PipelineError(f"{source}: unknown options {', '.join(sorted(unknown))} (edited by hand, or saved by a newer "
                            "pipeline); remove them, or upgrade pipeline")
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


YAML_TAG = "tag:yaml.org,2002:"
YAML_12_RESOLVERS = {  # YAML 1.2's core schema: the plain scalars read as numbers or booleans
    "bool": (r"true|True|TRUE|false|False|FALSE", "tTfF"),
    "int": (r"[-+]?[0-9]+", "-+0123456789"),
    "float": (r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?", "-+0123456789."),
}


@functools.cache
def command_line_yaml():
    """A YAML loader under which a `--config` file means what the same words mean on the command line: plain
    scalars are read by YAML 1.2's rules (010 is 10, as --epochs 010), not 1.1's (010 octal 8, 1:30 base-60 90,
    yes/no/on/off booleans: those stay text, which a number or on/off option refuses), and an option given twice,
    in either spelling (weight-decay, weight_decay), is an error rather than the last one winning."""
    import yaml

    class Loader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            lines: dict[str, tuple[str, int]] = {}
            for key_node, _ in node.value:
                if key_node.tag == YAML_TAG + "merge":
                    raise PipelineError(f"a merge key (<<) on line {key_node.start_mark.line + 1}, which a file of "
                                        "options does not take; write each option on a line of its own")
                key = self.construct_object(key_node, deep=True)
                spelled, line = str(key).replace("-", "_"), key_node.start_mark.line + 1
                if spelled in lines:
                    first, at = lines[spelled]
                    spellings = f"lines {at} and {line}" if first == str(key) else f"{first} on line {at}, {key} on line {line}"
                    raise PipelineError(f"{spelled} is given twice ({spellings}); keep one")
                lines[spelled] = (str(key), line)
            return super().construct_mapping(node, deep)

    Loader.yaml_implicit_resolvers = {first: [(tag, pattern) for tag, pattern in resolvers
                                              if tag[len(YAML_TAG):] not in YAML_12_RESOLVERS]
                                      for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
    for kind, (pattern, first) in YAML_12_RESOLVERS.items():
        Loader.add_implicit_resolver(YAML_TAG + kind, re.compile(f"^(?:{pattern})$"), list(first))
    for kind in (int, float):
        Loader.add_constructor(YAML_TAG + kind.__name__, functools.partial(_number, kind))
    return Loader


def _number(kind: type, loader, node) -> int | float | str:
    """A plain number as the command line reads it (`int`, `float`); a tagged value that is none stays text."""
    text = loader.construct_scalar(node)
    try:
        return kind(text)
    except ValueError:
        return text


def file_options(path: Path) -> dict:
    """The options in a YAML (or JSON) file of `option: value` lines, spelled as on the command line (`lr`,
    `weight-decay` or `weight_decay`, `improved: true`, `milestones: [30, 60, 90]`), as TrainConfig fields;
    each value checked against its option's type."""
    import yaml

    try:
        loaded = yaml.load(path.read_text(), Loader=command_line_yaml())
    except PipelineError as e:
        raise PipelineError(f"{path}: {e}") from None
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
        shown = ", ".join(repr(key) if key != key.strip() or not key.isprintable() else key for key in unknown)
        raise PipelineError(f"{path}: unknown option(s) {shown}; `pipeline train --print-config` lists them")
    if isinstance(options.get("milestones"), (int, str)):
        options["milestones"] = [options["milestones"]]
    if isinstance(options.get("milestones"), dict):  # its keys would pass for the epochs
        raise PipelineError(f"{path}: milestones takes a list of epochs (milestones: [30, 60, 90]), not a mapping")
    return checked_options(command_line_options(options), path)


def checked_options(options: dict, source: object) -> dict:
    """`options` with each value of its option's type (a number written as text, as YAML reads `1e-3`, becomes
    the number), else a one-line error naming `source`."""
    return {option: _checked(option, value, source) for option, value in options.items()}


def _checked(option: str, value: object, source: object) -> object:
    """`value` as TrainConfig's field `option` takes it (an int passes for a float; None where optional)."""
    kind, optional = OPTION[option].kind, OPTION[option].optional
    if kind in (int, float) and isinstance(value, str):  # as the command line reads `--epochs 10`, `--lr 1e-3`
        try:
            value = kind(value)
        except ValueError:
            pass
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    fits = {str: isinstance(value, str), bool: isinstance(value, bool), float: number,
            int: number and isinstance(value, int),
            list: isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)}[kind]
    if not (fits or (value is None and optional)):
        yaml_typed = value is None or isinstance(value, (int, float, bool, datetime.date))  # ~, 010, yes, 2026-12-05
        quote = " (in YAML, quote it: '…')" if kind is str and yaml_typed else ""
        raise PipelineError(f"{source}: {option} must be {TYPE_NAMES[kind]}, got {value!r}{quote}")
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
    values = {recipe: RECIPES[recipe].get(option, OPTION[option].default) for recipe in order}
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
