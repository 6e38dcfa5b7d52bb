"""Learning from a teacher: pseudo-labels and distillation.

`--pseudo SOURCE`: the test images the teacher is confident about (the most confident fraction --pseudo-top F of each
class it predicts, 0.5 by default, which keeps its class balance; or max probability ≥ --pseudo-threshold) join the
training images, with the teacher's class (or, --pseudo-soft, its probabilities) as their target and
--pseudo-weight as their weight in the loss. The teacher's test probabilities are those `pipeline predict --run
SOURCE` saved, checked fresh (of the same checkpoints and test images).
`--teacher SOURCE`: the loss mixes the labels' cross-entropy with the teacher's softened probabilities (Hinton et
al.'s distillation: (1 − α)·CE + α·T²·KL(teacher_T ‖ student_T)), on the training images (the teacher predicts them
once, without augmentation) and on the pseudo-labeled ones.

SOURCE names runs or cross-validations, comma-separated: together they are the teacher, their probabilities
averaged. Only the teacher models that never trained on one of the student's val images teach it (otherwise the
val score would be of images the teacher's labels leaked from): a CV teaches a CV student of the same folds fold by
fold (fold I learns from the teacher's fold I alone), a run a student of its own split, and anything teaches a
--full student. A teacher with none clean for this student is one line saying what to train instead.

Targets travel as one float row per image: the label distribution (K), the teacher's (K, zeros without --teacher)
and the image's weight; `TaughtLoss` reads them.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from torch import nn

from pipeline.cache import cached_test_images, test_images_key
from pipeline.competition import read_competition
from pipeline.config import TrainConfig
from pipeline.dataset import TrainArrays, image_hashes, run_split
from pipeline.errors import PipelineError
from pipeline.infer import default_batch_size, infer, load_model
from pipeline.layout import check_test, classes_apart, id_sort_key
from pipeline.run import RunConfig, checkpoint_label, images_in_words, load_checkpoint, trained_images_unlike
from pipeline.runtime import Runtime
from pipeline.workspace import submissions_dir

DEFAULT_TOP = 0.5  # --pseudo's confidence rule when neither --pseudo-threshold nor --pseudo-top is given: a share of
# each class, which a label-smoothed teacher (whose top probability stays below 0.9) passes as well as any


@dataclass(frozen=True)
class Teaching:
    images: np.ndarray  # uint8 (N, H, W, C): the training images, then the pseudo-labeled test images
    targets: np.ndarray  # float32 (N, 2K + 1): label distribution | teacher's distribution | weight
    pseudo_images: int  # how many test images joined
    key: str  # a digest of the targets: a resumed run must be taught alike


def teacher_checkpoints(source: str, flag: str, weights_root: Path | None = None,
                        console: Console | None = None) -> dict[str, list[Path]]:
    """Each run or CV SOURCE names (comma-separated) with its checkpoints (a run's best.pt, a CV's folds'); a run
    that has not finished is said (`console`), as when predicting with it."""
    from pipeline.predict import check_distinct, run_checkpoints

    names = [name.strip() for name in source.split(",") if name.strip()]
    if not names:
        raise PipelineError(f"{flag} {source!r}: name the teacher's runs or cross-validations, comma-separated")
    try:
        members = {name: run_checkpoints(Path(name), weights_root, console) for name in names}
    except PipelineError as e:
        raise PipelineError(f"{flag} {source} (the teacher): {e}; train it, or name another") from None
    if len(members) < len(names):
        raise PipelineError(f"{flag} {source}: names a model twice, which would weigh it double; name each once")
    try:
        check_distinct([path for checkpoints in members.values() for path in checkpoints])
    except PipelineError as e:
        raise PipelineError(f"{flag} {source}: {e}") from None
    return members


def lineage(pretrained: str | None, visited: frozenset[str] = frozenset()) -> list[dict] | None:
    """The splits (`RunConfig.split_identity`) of the pipeline checkpoints weights `pretrained` descend from, nearest first: []
    for weights of elsewhere, None where a link cannot be told (a pipeline checkpoint since moved or deleted)."""
    path = Path(pretrained or "")
    if not pretrained or path.suffix != ".pt":
        return []
    if not path.is_file() or str(path.resolve()) in visited:
        return None
    try:
        config = RunConfig.of_checkpoint(load_checkpoint(path, mmap=True), path)
    except PipelineError:  # not a pipeline checkpoint: weights of elsewhere
        return []
    ancestors = recorded_lineage(config, visited | {str(path.resolve())})
    return None if ancestors is None else [config.split_identity(), *ancestors]


def recorded_lineage(config: RunConfig, visited: frozenset[str] = frozenset()) -> list[dict] | None:
    """`lineage` of a run's --pretrained start: as the run recorded it, else read from the start's file."""
    return config.started_from if config.started_from is not None else lineage(config.options.pretrained, visited)


def trained_on(config: RunConfig, data: TrainArrays) -> np.ndarray | None:
    """The labeled images (indices into `data`) a model of `config` trained on, its --pretrained start's included;
    None when it, or a start, trained on another labeled set (or its start cannot be told), so which cannot be told."""
    ancestors = recorded_lineage(config)
    if ancestors is None:
        return None
    seen = []
    for split in (config.split_identity(), *ancestors):
        if not split["labeled_ids"] or split["labeled_ids"] != data.labeled_ids:
            return None
        seen.append(run_split(data.targets, split["val_fraction"], split["seed"], split["full"], data.classes,
                              split["folds"], split["fold"])[0])
    return np.unique(np.concatenate(seen))


def pretrained_trained_on(weights: str | None, data: TrainArrays) -> np.ndarray | None:
    """The labeled images (indices into `data`) a pipeline checkpoint given as --pretrained (or its own start) trained
    on: from its split when it trained on this labeled set, else those whose pixels its record of seen images holds
    (the same images under other labels or classes, or another --limit); none for other weights; None when which it
    saw cannot be told (a checkpoint from before that record, or of images decoded at another size, of another
    labeled set)."""
    path, none = Path(weights or ""), np.arange(0)
    if not weights or path.suffix != ".pt" or not path.is_file():
        return none
    try:
        checkpoint = load_checkpoint(path, mmap=True)
        config = RunConfig.of_checkpoint(checkpoint, path)
    except PipelineError:  # not a pipeline checkpoint: weights of elsewhere
        return none
    exact = trained_on(config, data) if config.classes == data.classes else None
    recorded = checkpoint.get("seen_images")
    comparable = isinstance(recorded, torch.Tensor) and list(config.image_size) == list(data.images.shape[1:3]) and \
        config.channels == data.images.shape[3]  # pixels decoded alike, else no digest can match
    if exact is not None or not comparable:
        return exact
    return np.flatnonzero(np.isin(image_hashes(data.images), recorded.numpy()))


def seen_images(data: TrainArrays, train_idx: np.ndarray, pretrained: str | None,
                checkpoint: dict | None) -> torch.Tensor:
    """What a run's checkpoints record of the images their weights trained on (`image_hashes`): its training images
    and those its --pretrained start records (a resumed run: as its checkpoint has it)."""
    if checkpoint is not None and isinstance(checkpoint.get("seen_images"), torch.Tensor):
        return checkpoint["seen_images"]
    own = image_hashes(data.images[train_idx])
    path = Path(pretrained or "")
    if checkpoint is None and path.suffix == ".pt" and path.is_file():
        try:
            started = load_checkpoint(path, mmap=True).get("seen_images")
        except PipelineError:  # weights of elsewhere
            started = None
        if isinstance(started, torch.Tensor):
            own = np.concatenate([own, started.numpy()])
    return torch.from_numpy(np.unique(own))


def pretrained_leak(weights: str | None, trained: np.ndarray | None, val_idx: np.ndarray) -> str | None:
    """What --pretrained `weights`, which trained on the images `trained` (`pretrained_trained_on`), saw of the val
    images, in words (None: none of them)."""
    if not len(val_idx):
        return None
    if trained is None:
        return f"--pretrained {weights} trained on another labeled set (other images, labels or classes, another " \
            "--limit), so whether it saw the val images cannot be told"
    seen = int(np.isin(val_idx, trained).sum())
    return f"--pretrained {weights} trained on {seen} of the {len(val_idx)} val images" if seen else None


def val_images_seen(config: RunConfig, data: TrainArrays, val_idx: np.ndarray) -> int | None:
    """How many of `val_idx` a model of `config` (or its --pretrained start) trained on; None when that cannot be
    told (another labeled set)."""
    seen = trained_on(config, data)
    return None if seen is None else int(np.isin(val_idx, seen).sum())


def check_same_images(config: RunConfig, data: TrainArrays, what: str) -> None:
    """A teacher takes images like the student's: of their channels and (unless it resizes its inputs: --img-size)
    their decoded size."""
    trained = trained_images_unlike(config, *data.images.shape[1:])
    if trained:
        raise PipelineError(f"{what} was trained on {trained}, and this dataset's are "
                            f"{images_in_words(*data.images.shape[1:])}; teach with a model trained on images like "
                            "these (dataset/competition.json's image_size as it was then)")


def clean_teachers(members: dict[str, list[Path]], data: TrainArrays, val_idx: np.ndarray, flag: str) -> list[Path]:
    """The members' checkpoints that never trained on a val image of the student, each of the student's classes;
    every member must keep one."""
    clean = []
    for name, checkpoints in members.items():
        kept = []
        for path in checkpoints:
            config = RunConfig.of_checkpoint(load_checkpoint(path, mmap=True), path)
            if config.classes != data.classes:
                raise PipelineError(f"{flag} {name}: {path} predicts {len(config.classes)} classes, this dataset "
                                    f"has {len(data.classes)}{classes_apart(config.classes, data.classes, 'the dataset')}"
                                    "; teach with a model of this competition")
            check_same_images(config, data, f"{flag} {name}: {path}")
            if not len(val_idx) or val_images_seen(config, data, val_idx) == 0:
                kept.append(path)
        if not kept:
            raise PipelineError(f"{flag} {name}: every model of it trained on some of this run's val images (it, or "
                                "the --pretrained weights it started from; or on another labeled set), so the val score "
                                "would not be honest; train the student as a CV of the teacher's folds (--folds K --seed "
                                "S: fold I learns from its fold I), with the teacher's --seed and --val-fraction, on "
                                "its labeled images (the same --limit, --skip-bad), or with --full")
        clean += kept
    return clean


def check_folds_unseen(config: TrainConfig, data: TrainArrays, folds: list[int]) -> None:
    """Each fold of a CV that will train keeps its val images unseen — by a clean model of every teacher, and by the
    --pretrained start — else its out-of-fold scores would flatter it: checked before any fold trains, not when one
    comes to it."""
    sources = {flag: teacher_checkpoints(source, flag) for flag, source in (("--teacher", config.teacher),
                                                                             ("--pseudo", config.pseudo)) if source}
    trained = pretrained_trained_on(config.pretrained, data)
    for fold in folds:
        val_idx = run_split(data.targets, config.val_fraction, config.seed, False, data.classes, config.folds, fold)[1]
        leak = pretrained_leak(config.pretrained, trained, val_idx)
        if leak:
            raise PipelineError(f"fold {fold} of {config.folds}: {leak}, so the out-of-fold scores would flatter the CV; "
                                "start the folds from weights that never saw this labeled set (another dataset's, or "
                                "the libraries'), or fine-tune one run instead")
        for flag, members in sources.items():
            try:
                clean_teachers(members, data, val_idx, flag)
            except PipelineError as e:
                raise PipelineError(f"fold {fold} of {config.folds}: {e}") from None


def saved_test_probabilities(name: str, checkpoints: list[Path], dataset_root: Path, ids: list[str],
                             flag: str) -> np.ndarray:
    """The mean of the test probabilities `pipeline predict` saved with each checkpoint, each checked fresh."""
    from pipeline.predict import load_probabilities

    images_key, total = test_images_key(dataset_root, ids), None
    image_size = read_competition(dataset_root).image_size
    for path in checkpoints:
        saved = submissions_dir() / f"{checkpoint_label(path)}.probs.npy"
        try:
            probabilities, _ = load_probabilities(saved, ids, images_key, image_size, path)
        except PipelineError as e:
            raise PipelineError(f"{flag} {name}: {e} (`pipeline predict --run {name}` saves them)") from None
        total = probabilities if total is None else total + probabilities
    return total / len(checkpoints)


def confident(probabilities: np.ndarray, threshold: float | None, top: float | None) -> np.ndarray:
    """Indices of the rows that pass the confidence rule: max probability ≥ `threshold`, or (`top`) the most
    confident fraction `top` of the rows predicted as each class (at least one of each class predicted)."""
    confidence, predicted = probabilities.max(1), probabilities.argmax(1)
    if top is None:
        return np.flatnonzero(confidence >= threshold)
    kept = []
    for cls in np.unique(predicted):
        rows = np.flatnonzero(predicted == cls)
        kept.append(rows[np.argsort(-confidence[rows], kind="stable")[:max(1, round(top * len(rows)))]])
    return np.sort(np.concatenate(kept))


def teacher_probabilities(checkpoints: list[Path], images: np.ndarray, runtime: Runtime,
                          console: Console) -> np.ndarray:
    """The mean of the checkpoints' probabilities of `images` (no TTA)."""
    total = None
    for path in checkpoints:
        model, config = load_model(path, runtime.device)
        console.print(f"teacher {path}: predicting {len(images)} training images")
        probabilities = np.exp(infer(model, images, config.inputs, "none", runtime, default_batch_size(runtime.device)))
        total = probabilities if total is None else total + probabilities
    return total / len(checkpoints)


def taught(config: TrainConfig, data: TrainArrays, split: tuple[np.ndarray, np.ndarray], dataset_root: Path,
           runtime: Runtime, console: Console) -> Teaching | None:
    """The student's training images and target rows under --pseudo and --teacher; None without either."""
    if not (config.pseudo or config.teacher):
        return None
    train_idx, val_idx = split
    images, labels = data.images[train_idx], np.eye(len(data.classes), dtype=np.float32)[data.targets[train_idx]]
    teacher_members = teacher_checkpoints(config.teacher, "--teacher", console=console) if config.teacher else {}
    teachers = clean_teachers(teacher_members, data, val_idx, "--teacher") if config.teacher else []
    teacher = teacher_probabilities(teachers, images, runtime, console) if teachers else np.zeros_like(labels)
    weights = np.ones(len(images), np.float32)
    pseudo = 0
    if config.pseudo:
        extra = pseudo_labeled(config, data, val_idx, dataset_root, (teacher_members, teachers), images.shape[1:],
                               console)
        pseudo = len(extra[0])
        images, labels, teacher, weights = (np.concatenate(pair) for pair in zip((images, labels, teacher, weights),
                                                                                  extra))
    targets = np.concatenate([labels, teacher.astype(np.float32), weights[:, None]], axis=1)
    return Teaching(images, targets, pseudo, hashlib.sha256(targets.tobytes()).hexdigest()[:16])


def test_probabilities(members: dict[str, list[Path]], kept: list[Path], dataset_root: Path, ids: list[str],
                       flag: str) -> np.ndarray:
    """The members' saved test probabilities (of their `kept` checkpoints), averaged per member, then over them."""
    return np.mean([saved_test_probabilities(name, [p for p in paths if p in kept], dataset_root, ids, flag)
                    for name, paths in members.items()], axis=0)


def pseudo_labeled(config: TrainConfig, data: TrainArrays, val_idx: np.ndarray, dataset_root: Path,
                   teaching: tuple[dict[str, list[Path]], list[Path]], shape: tuple,
                   console: Console) -> tuple[np.ndarray, ...]:
    """The test images that pass --pseudo's confidence rule: their images, label distributions, the --teacher's
    distributions (its saved test probabilities; zeros without one) and weights."""
    ids = sorted(check_test(dataset_root), key=id_sort_key)
    members = teacher_checkpoints(config.pseudo, "--pseudo", console=console)
    probabilities = test_probabilities(members, clean_teachers(members, data, val_idx, "--pseudo"), dataset_root, ids,
                                       "--pseudo").astype(np.float32)
    top = config.pseudo_top or (None if config.pseudo_threshold else DEFAULT_TOP)
    chosen = confident(probabilities, config.pseudo_threshold, top)
    if not len(chosen):
        raise PipelineError(f"--pseudo-threshold {config.pseudo_threshold:g} keeps none of the {len(ids)} test images "
                            f"(the teacher's highest probability is {probabilities.max():.3f}); lower it, or keep a "
                            "share of each class with --pseudo-top F")
    test_images = cached_test_images(dataset_root, ids, console)[1]
    if test_images.shape[1:] != shape:
        raise PipelineError(f"{dataset_root}: its test images are {test_images.shape[1:]}, its training images {shape}; "
                            "pseudo-labels need test images of the training images' shape")
    labels = probabilities[chosen] if config.pseudo_soft else \
        np.eye(len(data.classes), dtype=np.float32)[probabilities[chosen].argmax(1)]
    teacher_members, teachers = teaching
    teacher = test_probabilities(teacher_members, teachers, dataset_root, ids, "--teacher")[chosen] if teachers \
        else np.zeros_like(labels)
    console.print(f"--pseudo {config.pseudo}: {len(chosen)} of {len(ids)} test images join training "
                  f"({'soft' if config.pseudo_soft else 'hard'} targets, weight {config.pseudo_weight:g})")
    return test_images[chosen], labels, teacher, np.full(len(chosen), config.pseudo_weight, np.float32)


class TaughtLoss(nn.Module):
    """Per image: its weight × ((1 − α)·CE(logits, labels) + α·T²·KL(teacher_T ‖ softmax(logits / T))), where
    teacher_T is the teacher's distribution at temperature T; the mean over the batch. Targets: `Teaching` rows."""

    def __init__(self, classes: int, alpha: float, temperature: float, label_smoothing: float = 0.0):
        super().__init__()
        self.classes, self.alpha, self.temperature, self.label_smoothing = classes, alpha, temperature, label_smoothing

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        k, logits = self.classes, logits.float()
        labels, teacher, weight = targets[:, :k], targets[:, k:2 * k], targets[:, 2 * k]
        loss = F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing, reduction="none")
        if self.alpha:
            t = self.temperature
            softened = F.log_softmax(teacher.clamp_min(1e-12).log() / t, 1)
            divergence = F.kl_div(F.log_softmax(logits / t, 1), softened, log_target=True, reduction="none").sum(1)
            loss = (1 - self.alpha) * loss + self.alpha * t * t * divergence
        return (loss * weight).mean()
