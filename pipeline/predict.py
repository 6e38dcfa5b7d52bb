"""`pipeline predict`: TTA predictions of one or more trained models over the competition's test images (where
dataset/competition.json says), as a submission.

The test images are decoded once into `dataset/.cache/test.npy` (id order) and streamed from that
memory map in large batches through `infer`. Each model's softmax probabilities are saved as
`submissions/<name>.probs.npy` (float16, id order) with a `.json` beside it, so ensembles can be
formed later without running the models again (`pipeline ensemble`).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

from pipeline.blend import fit_blend
from pipeline.cache import cached_test_images, test_images_key
from pipeline.config import check_prediction_options
from pipeline.distributed import all_concat, all_sum, broadcast, rank_zero_first
from pipeline.dataset import image_hashes
from pipeline.engine import build_engine, candidates, choose_engine, fp32_agreement
from pipeline.errors import PipelineError, listed
from pipeline.infer import TTA_VIEWS, load_model, view_weights
from pipeline.competition import DESCRIPTION, read_competition
from pipeline.fetch import refetch_command
from pipeline.layout import check_test, class_difference, dataset_classes, id_sort_key, labels_key, read_sample
from pipeline.run import (CrossValidation, Run, RunConfig, checkpoint_key, checkpoint_label, images_in_words,
                          latest_best_checkpoint, load_checkpoint, resolve_run, trained_images_unlike,
                          written_since_digests)
from pipeline.runtime import Runtime, resolve_runtime
from pipeline.metrics import METRIC_LABELS
from pipeline.precision import MIN_AGREEMENT
from pipeline.submission import (Scored, check_solution, class_histogram, score_submission, scoring_metric, submission_values,
                                 write_submission)
from pipeline.workspace import atomic_path, check_replaceable, dataset_dir, submissions_dir, weights_dir, write_text_atomic

@dataclass(frozen=True)
class PredictResult:
    submission: Path
    members: list[str]  # the probability files averaged into it
    rows: int
    histogram: list[tuple[str, int]]
    score: float | None  # `metric` on --score's solution ids, when given
    metric: str = "accuracy"
    scored: Scored | None = None  # --score's whole result: rows, Kaggle's Public and Private parts, Ignored rows


def find_checkpoint(run: Path | None = None, checkpoint: Path | None = None, weights_root: Path | None = None,
                    console: Console | None = None) -> Path:
    """`--checkpoint`, else `--run`'s best checkpoint (a folder or a name under weights/), else that of the
    newest finished run under weights/ (said on `console`)."""
    if checkpoint is not None:
        return checkpoint
    if run is not None:
        chosen = Run(resolve_run(run, weights_root))
        best = chosen.best_checkpoint()  # a damaged one refused before the run's state is told
        status = chosen.read_status() or {"state": "finished"}
        if status["state"] != "finished":  # its best checkpoint so far: said, not hidden
            state = "crashed" if status["state"] == "running" and chosen.training_pid() is None else status["state"]
            why = f" ({status['error']})" if isinstance(status.get("error"), str) else ""
            (console or Console(quiet=True)).print(f"{chosen.path}: the run is {state}{why}; predicting with its best "
                                                   "checkpoint so far")
        return best
    path, why = latest_best_checkpoint(weights_root or weights_dir())
    (console or Console(quiet=True)).print(f"using {path}: {why} (choose another with --run NAME)")
    return path


def run_checkpoints(run: Path, weights_root: Path | None = None, console: Console | None = None) -> list[Path]:
    """A run's best checkpoint, or every fold's of a cross-validation folder (its fold ensemble)."""
    cv = CrossValidation(resolve_run(run, weights_root))
    return cv.best_checkpoints() if cv.is_cv() else [find_checkpoint(run=run, weights_root=weights_root, console=console)]


def ids_key(ids: list[str]) -> str:
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()


def array_key(array: np.ndarray, meta: dict) -> str:
    """A digest of a saved probability array's values and of the rest of its .json, kept in that .json: the array
    must be the one it describes, and the description as it was written."""
    described = json.dumps({k: v for k, v in meta.items() if k != "array_key"}, sort_keys=True).encode()
    return hashlib.sha256(np.ascontiguousarray(array).tobytes() + described).hexdigest()[:16]


def save_probabilities(path: Path, probabilities: np.ndarray, meta: dict) -> None:
    saved = probabilities.astype(np.float16)
    check_replaceable(path.with_suffix(".json"))  # checked before the array is written: never one without the other
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, saved)
    write_text_atomic(path.with_suffix(".json"), json.dumps({**meta, "array_key": array_key(saved, meta)}, indent=2) + "\n")


def check_label_free(meta_file: Path, checkpoint: Path) -> None:
    """`meta_file` (a probability file's .json) holds nothing yet, or what `checkpoint` (or the model its path held
    before, or a copy of it: a project copied elsewhere) predicted: another model's predictions under the same label
    are never replaced."""
    try:
        meta = json.loads(meta_file.read_text())
        recorded, key = meta.get("checkpoint"), meta.get("checkpoint_key")
    except (OSError, ValueError, AttributeError):
        return
    other = Path(str(recorded or ""))
    if recorded and other.resolve() != checkpoint.resolve() and other.is_file() and key != checkpoint_key(checkpoint):
        raise PipelineError(f"{meta_file}: holds the predictions of {other}, another model of the same label "
                            f"({meta_file.name.removesuffix('.probs.json')}); move its .probs.npy and .json aside (or "
                            f"rename one of the runs), then predict again")


def check_source(path: Path, meta: dict, expected: Path | None) -> None:
    """The checkpoint a prediction was made by: `expected` (when given), unchanged since, with its classes."""
    source = Path(str(meta.get("checkpoint", "")))
    if expected is not None and source.resolve() != expected.resolve():
        owner = expected.parent.parent if CrossValidation(expected.parent.parent).is_cv() else expected.parent
        raise PipelineError(f"{path}: predicted by {source}, not {expected}; predict with it again "
                            f"(`pipeline predict --run {owner.name}`)")
    if not source.is_file():  # moved or deleted since: what it predicted stands
        return
    if meta.get("checkpoint_key", checkpoint_key(source)) != checkpoint_key(source):
        raise PipelineError(f"{path}: {source} has changed since it predicted this; predict again")
    if RunConfig.of_checkpoint(load_checkpoint(source, mmap=True), source).classes != meta["classes"]:
        raise PipelineError(f"{path.with_suffix('.json')}: its classes are not those of {source}, which predicted it; "
                            "predict again")


def load_probabilities(path: Path, ids: list[str], images_key: str, image_size: int | None,
                       expected: Path | None = None, dataset_root: Path | None = None,
                       known: list[str] | None = None) -> tuple[np.ndarray, dict]:
    """A saved `.probs.npy` and its metadata, checked against the classes of `dataset_root`'s training labels
    (`known`, read once by the caller; None: not checked), the current test ids and image files (`images_key`: their fingerprint; `image_size`: the size
    they decode to now) and against the checkpoint that predicted it (`check_source`)."""
    meta_path = path.with_suffix(".json")
    if not path.is_file() or not meta_path.is_file():
        raise PipelineError(f"{path}: no such probability file (or its .json); run `pipeline predict` first")
    try:
        meta = json.loads(meta_path.read_text())
        if not isinstance(meta, dict) or not isinstance(meta.get("classes"), list):
            raise ValueError("no list of classes")
    except (ValueError, UnicodeDecodeError) as e:
        raise PipelineError(f"{meta_path}: not the metadata `pipeline predict` writes ({e}); predict again") from None
    try:
        saved = np.load(path, allow_pickle=False)
    except (ValueError, EOFError, OSError) as e:  # EOFError: an empty file
        raise PipelineError(f"{path}: not a readable .npy file ({e}); predict again (`pipeline predict`)") from None
    source = Path(str(meta.get("checkpoint", "")))
    keyed = "array_key" in meta or (source.is_file() and written_since_digests(load_checkpoint(source, mmap=True)))
    if keyed and meta.get("array_key") != array_key(saved, meta):  # files from before the key: as they are
        raise PipelineError(f"{path}: not the array {meta_path.name} describes, or {meta_path.name} was edited since "
                            "(either was replaced or changed after it was saved); predict again")
    if known is not None and not set(meta["classes"]) <= set(known):  # another competition's: said before its ids
        raise PipelineError(f"{path}: {class_difference(meta['classes'], known, dataset_root)}; predict again with a "
                            f"model trained on this dataset, or fix {DESCRIPTION} if it names the wrong labels "
                            "(labels_csv, label_columns)")
    probabilities = saved.astype(np.float32)
    if probabilities.shape != (len(ids), len(meta["classes"])) and meta.get("ids") == ids_key(ids):
        raise PipelineError(f"{path}: holds an array of shape {probabilities.shape}, not one row per test image "
                            f"({len(ids)}) and a column per class ({len(meta['classes'])}); predict again")
    if meta.get("ids") != ids_key(ids) or probabilities.shape != (len(ids), len(meta["classes"])):
        raise PipelineError(f"{path}: made for other test ids than the sample submission lists in dataset/test now (a "
                            "row or an image added or removed since); predict again")
    check_source(path, meta, expected)
    if meta.get("images_key") != images_key and meta.get("image_size", image_size) != image_size:
        sizes = [f"image_size {size}" if size else "the images' own size" for size in (meta["image_size"], image_size)]
        raise PipelineError(f"{path}: made from test images decoded at {sizes[0]}, and dataset/{DESCRIPTION} now "
                            f"decodes them at {sizes[1]}; predict again, or restore image_size")
    if meta.get("images_key") != images_key:
        raise PipelineError(f"{path}: made from test images that have changed since (or by an older pipeline); "
                            "predict again")
    if not np.isfinite(probabilities).all() or (probabilities < 0).any() or \
            not np.allclose(probabilities.sum(1), 1, atol=0.01):  # float16 rows sum to 1 within ~1e-3
        raise PipelineError(f"{path}: its rows are not probabilities (non-finite, negative, or not summing to 1); "
                            "predict again")
    return probabilities, meta


def finish_submission(probabilities: np.ndarray, ids: list[str], submission_ids: list[str], classes: list[str],
                      members: list[str], weights: list[float], dataset_root: Path, out: Path, tta: str | None,
                      score: Path | None, metric: str | None = None) -> PredictResult:
    """Write the submission of the `members`' probabilities averaged with `weights` (rows in `ids` order) in the sample
    submission's order (`submission_ids`), and its record; scored against `score` by `metric` (default: the described
    one)."""
    metric = scoring_metric(dataset_root, metric)
    row_of = {image_id: row for row, image_id in enumerate(ids)}
    in_order = probabilities[[row_of[i] for i in submission_ids]]
    labels = [classes[i] for i in in_order.argmax(1)]
    histogram = class_histogram(labels, classes)
    record = json.dumps({
        "submission": out.name, "rows": len(labels), "members": members,
        "weights": [round(w, 6) for w in weights], "tta": tta,
        "views": [list(v) for v in TTA_VIEWS[tta]] if tta else None,
        "view_weights": list(view_weights(tta)) if tta else None,
        "histogram": dict(histogram), "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }, indent=2) + "\n"
    with atomic_path(out.with_suffix(".json")) as record_tmp:  # the record written first, renamed last: a failed
        record_tmp.write_text(record)  # write of either leaves both files as they were
        write_submission(out, submission_ids, submission_values(in_order, classes, dataset_root), dataset_root, classes)
    scored = score_submission(out, score, dataset_root, metric) if score is not None else None
    return PredictResult(out, members, len(labels), histogram, scored.score if scored else None, metric, scored)


def predict(runs: list[Path] | None = None, checkpoints: list[Path] | None = None, tta: str = "flip",
            batch_size: int | None = None, device: str = "auto", precision: str = "auto", score: Path | None = None,
            dataset_root: Path | None = None, weights_root: Path | None = None, out: Path | None = None,
            console: Console | None = None, engine: str = "auto", threads: int | None = None,
            metric: str | None = None, checkpoint_groups: list[list[Path]] | None = None) -> PredictResult | None:
    """Predict dataset/test with each model, average their probabilities (each run, checkpoint or group of
    `checkpoint_groups` weighing the same; a CV's folds, or a group's checkpoints, share theirs), write the submission.
    Under torchrun each process predicts its share of the test images and rank 0, which gathers
    them, writes the files and returns the result (the other ranks return None)."""
    check_prediction_options(tta, batch_size, engine, precision, device, threads)
    dataset_root = dataset_root or dataset_dir()
    check_scoring(score, metric, dataset_root)
    runtime = resolve_runtime(device, "fp32", threads)
    options = candidates(engine, precision, runtime.device)
    where = runtime.ranks
    console = (console or Console()) if where.main else Console(quiet=True)
    out = out or submissions_dir() / "submission.csv"
    named = [[c] for c in checkpoints or []] + list(checkpoint_groups or []) + \
        [run_checkpoints(r, weights_root, console) for r in runs or []]
    named = named or [[find_checkpoint(weights_root=weights_root, console=console)]]
    sources = [path for group in named for path in group]
    weight_of = {path: 1 / (len(named) * len(group)) for group in named for path in group}  # a CV weighs as one run
    check_distinct(sources)
    submission_ids = noted_test_ids(dataset_root, console)
    with rank_zero_first(where):  # rank 0 decodes the cache; the others then read it
        ids, images, images_key = cached_test_images(dataset_root, submission_ids, console)
    share = np.array_split(np.arange(len(ids)), where.world)[where.rank]
    own_images = images[share[0]:share[-1] + 1] if len(share) else images[:0]
    total, classes, members, test_hashes = None, None, [], None
    known_classes, image_size = dataset_classes(dataset_root), read_competition(dataset_root).image_size
    labels = member_labels(sources)
    for path, label in zip(sources, labels):
        check_label_free(out.parent / f"{label}.probs.json", path)
    for path, label in zip(sources, labels):
        model, config = load_model(path, runtime.device)
        check_fits(path, config, images, dataset_root, known_classes, console)
        test_hashes = note_trained_test_images(path, images, test_hashes, console)
        if classes is not None and config.classes != classes:
            raise PipelineError(f"{path}: its classes differ from {sources[0]}'s; an ensemble needs the same classes")
        classes = config.classes
        own, used = predict_model(model, config, path, images, own_images, tta, options, runtime, batch_size, console,
                                  asked=precision not in ("auto", "fp32"))
        used_engine, used_precision = used.split()
        probabilities = gathered_probabilities(path, own, where)
        if not where.main:
            continue
        name = out.parent / f"{label}.probs.npy"
        save_probabilities(name, probabilities, {"checkpoint": str(path), "checkpoint_key": checkpoint_key(path),
                                                 "classes": classes, "tta": tta,
                                                 "engine": used_engine, "precision": used_precision, "ids": ids_key(ids),
                                                 "images": len(ids), "images_key": images_key,
                                                 "image_size": image_size})
        members.append(name.name)
        weighted = weight_of[path] * probabilities
        total = weighted if total is None else total + weighted
    if not where.main:
        return None
    return finish_submission(total, ids, submission_ids, classes, members, [weight_of[p] for p in sources],
                             dataset_root, out, tta, score, metric)


def gathered_probabilities(path: Path, own: np.ndarray, where) -> np.ndarray:
    """Every process's share of the model's test probabilities, in order; all of them finite."""
    probabilities = all_concat(own, where)
    if not np.isfinite(probabilities).all():
        raise PipelineError(f"{path}: the model gives non-finite probabilities for "
                            f"{int((~np.isfinite(probabilities)).any(1).sum())} test images; nothing was written. "
                            "Predict with another run's checkpoint")
    return probabilities


def note_trained_test_images(path: Path, images: np.ndarray, hashes: np.ndarray | None,
                             console: Console) -> np.ndarray | None:
    """A note when the checkpoint at `path` trained on some of the test images (the same pixels: `image_hashes`,
    which it records): duplicates across the splits, or a description naming the training folder as the test one.
    Returns the test images' digests, computed once (`hashes`) when a checkpoint records its own."""
    seen = load_checkpoint(path, mmap=True).get("seen_images")
    if not isinstance(seen, torch.Tensor):
        return hashes
    hashes = image_hashes(images) if hashes is None else hashes
    trained = int(np.isin(hashes, seen.numpy()).sum())
    if trained == len(images):
        console.print(f"[yellow]note[/yellow]: every one of the {len(images)} test images is an image {path} trained on "
                      f"(the same pixels): does test_images in {DESCRIPTION} name the training folder?")
    elif trained:
        console.print(f"[yellow]note[/yellow]: {trained} of the {len(images)} test images are images {path} trained on "
                      f"(the same pixels: duplicates across the splits, or test_images in {DESCRIPTION} naming training "
                      "images); its predictions of them are no test of it")
    return hashes


def noted_test_ids(dataset_root: Path, console: Console) -> list[str]:
    """`check_test`'s ids of the sample submission, its notes printed."""
    notes: list[str] = []
    submission_ids = check_test(dataset_root, notes)
    for note in notes:
        console.print(f"note: {note}")
    return submission_ids


def check_scoring(score: Path | None, metric: str | None, dataset_root: Path) -> None:
    """Before anything is predicted or written: --score names a file, and --metric can score the submission."""
    if metric is not None and score is None:
        raise PipelineError(f"--metric {metric} chooses how --score scores: pass --score SOLUTION.csv too")
    if score is not None and not score.is_file():
        raise PipelineError(f"{score}: no such solution file for --score")
    described = read_competition(dataset_root)
    sample = dataset_root / described.sample_submission
    if score is not None and sample.is_file() and score.resolve() == sample.resolve():
        raise PipelineError(f"{score}: the sample submission, whose labels are placeholders, not a solution; score with "
                            "the held-out labels (e.g. solution.csv)")
    metric = scoring_metric(dataset_root, metric)
    if score is not None and sample.is_file():  # its ids too: a failed --score never replaces a prediction
        sample_ids = read_sample(dataset_root, described)[described.submission_id]  # the description first
        unknown = set(check_solution(score, dataset_root, metric)) - set(sample_ids)
        if unknown:
            raise PipelineError(f"{score}: {len(unknown)} id(s) are not test ids of {described.sample_submission}, "
                                f"e.g. {', '.join(sorted(unknown)[:5])}; score with the solution of this test set")


def check_distinct(checkpoints: list[Path]) -> None:
    """Each model once: the same checkpoint twice (by its path, or a copy of it) would weigh double unasked."""
    seen: dict[str, Path] = {}
    for path in checkpoints:
        key = checkpoint_key(path) if path.is_file() else str(path.resolve())
        if key in seen:
            raise PipelineError(f"{path}: the same model as {seen[key]} (a run, and a CV holding it, or a copy?); "
                                "name each model once")
        seen[key] = path


def member_labels(sources: list[Path]) -> list[str]:
    """Each checkpoint's name for its probability file (`checkpoint_label`), made unique: checkpoints that share
    a name (a/model.pt, b/model.pt) take their folder's too, then a number."""
    labels = [checkpoint_label(path) for path in sources]
    labels = [f"{path.parent.name}-{label}" if labels.count(label) > 1 else label for path, label in zip(sources, labels)]
    return [f"{label}-{labels[:k].count(label) + 1}" if labels.count(label) > 1 else label
            for k, label in enumerate(labels)]


def check_fits(path: Path, config: RunConfig, images: np.ndarray, dataset_root: Path,
               known_classes: list[str] | None, console: Console | None = None) -> None:
    """The model was trained for this dataset: the classes of its training labels (when it has them; a --skip-bad
    run may lack classes whose every image was left out) and (unless the model resizes its inputs: --img-size) the
    test images' size. Test images of the other colour mode are converted to the model's (`match_channels`), said."""
    if known_classes is not None and (known_classes != config.classes if not config.options.skip_bad
                                      else not set(config.classes) <= set(known_classes)):
        raise PipelineError(f"{path}: {class_difference(config.classes, known_classes, dataset_root)}; predict with a "
                            f"model trained on this dataset, or fix {DESCRIPTION} if it names the wrong labels "
                            "(labels_csv, label_columns)")
    height, width, channels = images.shape[1:]
    described = read_competition(dataset_root).image_size
    if described is not None and config.image_size and tuple(config.image_size) != (height, width):
        raise PipelineError(f"{path}: trained on images decoded at {config.image_size[1]}×{config.image_size[0]}, but "
                            f"image_size {described} in {dataset_root / DESCRIPTION} decodes the test images at "
                            f"{described}×{described}; set image_size as it was ({config.image_size[0]}, or null where "
                            "that is the images' own size), or predict with a model trained at this size")
    trained = trained_images_unlike(config, height, width)  # the size: other channels are converted
    if trained:
        side, other = config.image_size[0], config.image_size[1]
        advice = (f"`{refetch_command(dataset_root, f'--img-size {side}')}` decodes them at the model's size"
                  if side == other else
                  f"decode both splits at one size (`{refetch_command(dataset_root, '--img-size S')}`) and train again")
        raise PipelineError(f"{path}: trained on {trained}, but {dataset_root / read_competition(dataset_root).test_images} "
                            f"holds {images_in_words(height, width, channels)}; {advice}")
    check_same_labels(path, config, dataset_root)
    if channels != config.channels:
        (console or Console()).print(f"note: {path}: trained on {images_in_words(height, width, config.channels)}; "
                                     f"the test images, {images_in_words(height, width, channels)}, are converted "
                                     "to them to be predicted")


def check_same_labels(path: Path, config: RunConfig, dataset_root: Path) -> None:
    """The model was trained on the labeled images `dataset_root` holds (their `labels_key`), where its run recorded
    them: another competition of the same classes would otherwise be predicted without a word."""
    labeled = labels_key(dataset_root) if config.labels_key else ""
    if labeled and config.labels_key != labeled:
        raise PipelineError(f"{path}: trained on other labeled images than {dataset_root} holds now (their ids or labels "
                            "differ: fetched again or relabelled since); predict with a run trained on this dataset "
                            "(`pipeline train`), or fetch the data it was trained on again")


def predict_model(model: torch.nn.Module, config: RunConfig, path: Path, images: np.ndarray, own_images: np.ndarray,
                  tta: str, options: list[str], runtime: Runtime, batch_size: int | None,
                  console: Console, asked: bool = False) -> tuple[np.ndarray, str]:
    """One model's probabilities of this process's share of the test images, and the engine that predicted
    them ("openvino int8", …), chosen among `options`. Under torchrun rank 0 chooses and the other ranks follow.
    A lower precision `asked` for is measured against fp32 as `auto` would, and said."""
    where, name, engine = runtime.ranks, None, None
    if where.main:
        try:
            name, engine = choose_engine(options, model, config, images, tta, runtime, batch_size, str(path), console)
        except PipelineError as e:
            name = e  # every rank stops with it, rather than waiting for a choice that never comes
    name = broadcast(name, where)
    if isinstance(name, PipelineError):
        raise name
    engine = engine or build_engine(name, model, config, images, runtime, batch_size, str(path))
    console.print(f"predicting {len(images)} test images with {path} ({tta} TTA, {engine.name}) on {runtime.device}"
                  + (f" and {where.world - 1} more processes" if where.distributed else ""))
    own, rechecked = engine.probabilities(own_images, config, tta, console)
    if engine.precision == "int8":
        rechecked = int(all_sum([rechecked], runtime.device, where)[0])
        console.print(f"int8: {rechecked} near ties ({rechecked / max(len(images), 1):.1%}) predicted again in fp32")
    if asked and where.main and engine.precision != "fp32":
        agreement, probed = fp32_agreement(engine, model, config, images, tta, runtime)
        low = agreement < MIN_AGREEMENT
        console.print(f"{'[yellow]note[/yellow]: ' if low else ''}{engine.name} agrees with torch fp32 on "
                      f"{agreement:.1%} of {probed} test images" + (f", below the {MIN_AGREEMENT:.1%} --precision auto "
                                                                     "asks of it: predict with --precision auto or fp32 "
                                                                     "unless you mean it" if low else ""))
    return own, engine.name


def ensemble(members: list[Path], score: Path | None = None, dataset_root: Path | None = None,
             out: Path | None = None, blend: bool = False, weights_root: Path | None = None,
             console: Console | None = None, metric: str | None = None) -> PredictResult:
    """Average saved `.probs.npy` files (names under submissions/ or paths; a cross-validation's name stands for its
    folds' files, averaged first) into a submission; with `blend`, weighted by blend weights fitted on the members'
    out-of-fold predictions (each member a cross-validation on the same folds)."""
    if len(members) < 1:
        raise PipelineError("name at least one .probs.npy file to ensemble")
    dataset_root = dataset_root or dataset_dir()
    check_scoring(score, metric, dataset_root)
    out = out or submissions_dir() / "submission.csv"
    submission_ids = noted_test_ids(dataset_root, console or Console())
    ids = sorted(submission_ids, key=id_sort_key)
    groups = [member_files(m, out.parent, weights_root) for m in members]
    weights = [1 / len(groups)] * len(groups)
    if blend:
        fitted = fit_blend([member_cv(m, weights_root) for m in members])
        weights, shown = fitted.weights, list(dict.fromkeys((fitted.metric, "accuracy", "log_loss")))
        (console or Console()).print(
            "blend weights fitted on out-of-fold predictions: "
            + ", ".join(f"{m.name} {w:.3f}" for m, w in zip(members, weights))
            + "; OOF " + ", ".join(f"{METRIC_LABELS[name]} {fitted.blended[name]:.4f}" for name in shown)
            + " (equal weights: " + ", ".join(f"{fitted.equal[name]:.4f}" for name in shown) + ")")
    paths = [p for group in groups for p in group]
    images_key, image_size = test_images_key(dataset_root, ids), read_competition(dataset_root).image_size
    known = dataset_classes(dataset_root)
    loaded = {p: load_probabilities(p, ids, images_key, image_size, expected, dataset_root, known)
              for group in groups for p, expected in group.items()}
    check_distinct_predictions(paths, loaded)
    for member, group in zip(members, groups):  # a CV's folds predicted alike (not some again after an interruption)
        ttas = sorted({str(loaded[p][1].get("tta")) for p in group})
        if len(ttas) > 1:
            raise PipelineError(f"{member}: its folds' predictions were made with different --tta ({', '.join(ttas)}); "
                                f"predict them alike: `pipeline predict --run {member}`")
    classes = loaded[paths[0]][1]["classes"]
    for path, (_, meta) in loaded.items():
        if meta["classes"] != classes:
            raise PipelineError(f"{path}: its classes differ from {paths[0]}'s")
    average = sum(w * sum(loaded[p][0] for p in group) / len(group) for w, group in zip(weights, groups))
    return finish_submission(average, ids, submission_ids, classes, [p.name for p in paths],
                             [w / len(group) for w, group in zip(weights, groups) for _ in group], dataset_root, out,
                             None, score, metric)


def check_distinct_predictions(paths: list[Path], loaded: dict[Path, tuple[np.ndarray, dict]]) -> None:
    """Each model once in an ensemble: one file named twice, or two files of one checkpoint (a CV and its fold, a
    copied file), would weigh it twice."""
    twice = next((path for index, path in enumerate(paths) if path in paths[:index]), None)
    if twice is not None:
        raise PipelineError(f"{twice}: named twice (a CV and its fold?); name each model once")
    seen: dict[str, Path] = {}
    for path, (_, meta) in loaded.items():
        model = str(meta.get("checkpoint_key") or Path(str(meta.get("checkpoint", path))).resolve())
        if model in seen:
            raise PipelineError(f"{path}: predicted by the same model as {seen[model]} ({meta.get('checkpoint')}); "
                                "name each model once")
        seen[model] = path


def member_files(member: Path, folder: Path, weights_root: Path | None) -> dict[Path, Path | None]:
    """An ensemble member's probability files: a path, a name under submissions/, or a cross-validation's folds',
    each with the checkpoint it must have been predicted by (a fold's best.pt; None: any)."""
    if member.suffix == ".npy":
        return {member: None}
    cv = CrossValidation((weights_root or weights_dir()) / member)
    if len(member.parts) == 1 and cv.is_cv():  # its folds', whatever <name>.probs.npy another model left
        return {folder / f"{checkpoint_label(path)}.probs.npy": path for path in cv.best_checkpoints()}
    run = Run((weights_root or weights_dir()) / member)  # a run's name (a fold's, cv/fold-0): its best.pt's predictions
    in_cv = len(member.parts) > 1 and CrossValidation(run.path.parent).is_cv()
    if in_cv and not run.best.is_file():
        folds = [fold.path.name for fold in CrossValidation(run.path.parent).trained_folds()]
        raise PipelineError(f"{member}: no trained fold of {run.path.parent.name} has that name (its folds: "
                            f"{listed(folds) or 'none yet'}); name one of those")
    if run.best.is_file() and (len(member.parts) == 1 or in_cv):
        return {folder / f"{checkpoint_label(run.best)}.probs.npy": run.best}
    return {folder / f"{member.name}.probs.npy": None}


def member_cv(member: Path, weights_root: Path | None) -> CrossValidation:
    cv = CrossValidation((weights_root or weights_dir()) / member.name)
    if member.suffix == ".npy" or not cv.is_cv():
        raise PipelineError(f"{member}: --blend oof fits weights on out-of-fold predictions: name cross-validations "
                            "(trained with --folds), e.g. `pipeline ensemble cv cv2 --blend oof`")
    return cv
