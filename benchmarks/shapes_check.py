"""Kaggle's competition shapes on real images: each shape laid out from one CIFAR-10 competition, zipped, then
`fetch` (which describes it) → `train` → `predict --score` on its held-out images, by the shape's metric.

    python benchmarks/shapes_check.py --source DIR [--limit N] [--options JSON] [--work DIR] [--shapes S …]
                                      [--folds K]

DIR is a competition with scored held-out images, e.g. `../shared/cifar10/make_competition.py DIR --limit 6000
--holdout 1000`. Shapes (the issue's table): cifar-10 as it is; cassava (train_images/<image_id>.jpg, ids that are
file names, integer labels); dog-breed (labels.csv id,breed, JPEGs upscaled to
four sizes from 36×36 to 64×40, a probability per class); histopathologic (TIFFs,
0/1 labels: vehicle or animal); plant-pathology (one images/ folder, one-hot columns); plant-seedlings (a folder
per class, file,species). --limit keeps the first N
labeled images; --options are train options as JSON (default: the default recipe, 8 epochs). Held-out scores use
flip TTA in torch fp32; a shape this version cannot predict records predict's one-line refusal. --folds K also
trains a K-fold CV of each shape: its out-of-fold score, and held out its fold ensemble (`predict --run cv`) and that
averaged with the single run (`pipeline ensemble cv SHAPE`).
Results go to benchmarks/results/shapes_check-<device>-<time>.json.
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
import zipfile
from dataclasses import asdict
from pathlib import Path

import pandas as pd
from PIL import Image
from rich.console import Console

from pipeline.competition import read_competition
from pipeline.config import config_from
from pipeline.errors import PipelineError
from pipeline.fetch import fetch
from pipeline.cv import train_cv
from pipeline.predict import ensemble, predict
from pipeline.runtime import resolve_device
from pipeline.train import train
from record import write_result

VEHICLES = {"airplane", "automobile", "ship", "truck"}


VARIED_SIZES = [(48, 36), (40, 56), (36, 36), (64, 40)]  # (width, height), in turn: the dog-breed shape's


def copy_images(source: Path, ids: list[str], dest: Path, names: list[str], sizes: list | None = None) -> None:
    """The PNGs `source/<id>.png` saved as `dest/<name>`, in the format the name's suffix says (resized to `sizes`
    in turn)."""
    dest.mkdir(parents=True, exist_ok=True)
    for k, (image_id, name) in enumerate(zip(ids, names)):
        with Image.open(source / f"{image_id}.png") as image:
            picture = image.resize(sizes[k % len(sizes)], Image.Resampling.BICUBIC) if sizes else image
            picture.convert("RGB").save(dest / name, quality=95) if name.endswith(".jpg") else picture.save(dest / name)


def lay_out(shape: str, source: Path, labels: pd.DataFrame, solution: pd.DataFrame, dest: Path) -> None:
    """`shape`'s files in `dest`, its held-out labels as `dest/solution.csv` (ids and the submission's columns)."""
    ids, test_ids, names = labels["id"].tolist(), solution["id"].tolist(), labels["label"]
    classes = sorted(set(names))
    if shape == "cifar-10":
        copy_images(source / "train", ids, dest / "train", [f"{i}.png" for i in ids])
        copy_images(source / "test", test_ids, dest / "test", [f"{i}.png" for i in test_ids])
        labels.to_csv(dest / "trainLabels.csv", index=False)
        solution.assign(label=classes[0]).to_csv(dest / "sampleSubmission.csv", index=False)
        solution.to_csv(dest / "solution.csv", index=False)
    elif shape == "cassava":
        copy_images(source / "train", ids, dest / "train_images", [f"{i}.jpg" for i in ids])
        copy_images(source / "test", test_ids, dest / "test_images", [f"{i}.jpg" for i in test_ids])
        index = {name: str(k) for k, name in enumerate(classes)}
        pd.DataFrame({"image_id": [f"{i}.jpg" for i in ids], "label": names.map(index)}).to_csv(
            dest / "train.csv", index=False)
        held = pd.DataFrame({"image_id": [f"{i}.jpg" for i in test_ids], "label": solution["label"].map(index)})
        held.assign(label="0").to_csv(dest / "sample_submission.csv", index=False)
        held.to_csv(dest / "solution.csv", index=False)
        (dest / "label_num_to_disease_map.json").write_text(json.dumps({v: k for k, v in index.items()}))
    elif shape == "dog-breed":
        copy_images(source / "train", ids, dest / "train", [f"{i}.jpg" for i in ids], VARIED_SIZES)
        copy_images(source / "test", test_ids, dest / "test", [f"{i}.jpg" for i in test_ids], VARIED_SIZES)
        labels.rename(columns={"label": "breed"}).to_csv(dest / "labels.csv", index=False)
        pd.DataFrame({"id": test_ids} | {c: 1 / len(classes) for c in classes}).to_csv(
            dest / "sample_submission.csv", index=False)
        solution.to_csv(dest / "solution.csv", index=False)
    elif shape == "histopathologic":
        copy_images(source / "train", ids, dest / "train", [f"{i}.tif" for i in ids])
        copy_images(source / "test", test_ids, dest / "test", [f"{i}.tif" for i in test_ids])
        labels.assign(label=names.isin(VEHICLES).astype(int)).to_csv(dest / "train_labels.csv", index=False)
        solution.assign(label=0).to_csv(dest / "sample_submission.csv", index=False)
        solution.assign(label=solution["label"].isin(VEHICLES).astype(int)).to_csv(dest / "solution.csv", index=False)
    elif shape == "plant-seedlings":
        for name in classes:
            chosen = labels[names == name]["id"].tolist()
            copy_images(source / "train", chosen, dest / "train" / name, [f"{i}.png" for i in chosen])
        copy_images(source / "test", test_ids, dest / "test", [f"{i}.png" for i in test_ids])
        held = pd.DataFrame({"file": [f"{i}.png" for i in test_ids]})
        held.assign(species=classes[0]).to_csv(dest / "sample_submission.csv", index=False)
        held.assign(species=solution["label"].to_numpy()).to_csv(dest / "solution.csv", index=False)
    elif shape == "plant-pathology":
        copy_images(source / "train", ids, dest / "images", [f"Train_{i}.jpg" for i in ids])
        copy_images(source / "test", test_ids, dest / "images", [f"Test_{i}.jpg" for i in test_ids])
        one_hot = pd.get_dummies(names).astype(int)[classes]
        pd.concat([pd.DataFrame({"image_id": [f"Train_{i}" for i in ids]}), one_hot], axis=1).to_csv(
            dest / "train.csv", index=False)
        held = pd.DataFrame({"image_id": [f"Test_{i}" for i in test_ids]})
        held.to_csv(dest / "test.csv", index=False)
        held.assign(**{c: 1 / len(classes) for c in classes}).to_csv(dest / "sample_submission.csv", index=False)
        held.assign(label=solution["label"].to_numpy()).to_csv(dest / "solution.csv", index=False)


SHAPES = ("cifar-10", "cassava", "dog-breed", "histopathologic", "plant-pathology", "plant-seedlings")


def zipped(folder: Path, out: Path) -> Path:
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and path.name != "solution.csv":
                z.write(path, path.relative_to(folder).as_posix())
    return out


def check_shape(shape: str, made: Path, work: Path, options: dict, console: Console, folds: int | None = None) -> dict:
    project = work / shape
    fetched = fetch(archive=zipped(made, work / f"{shape}.zip"), root=project / "dataset")
    started = time.perf_counter()
    trained = train(config_from({**options, "name": shape}), project / "dataset", project / "weights", console)
    numbers = {"described": asdict(read_competition(project / "dataset")), "notes": fetched.notes,
               "train_images": fetched.train_images, "test_images": fetched.test_images,
               "train_s": round(time.perf_counter() - started, 1), "best_val_score": trained.best_score, "metric": trained.metric}
    try:
        scored = predict(runs=[trained.run_dir], tta="flip", precision="fp32", engine="torch",
                         score=made / "solution.csv", dataset_root=project / "dataset", weights_root=project / "weights",
                         out=project / "submissions" / "submission.csv", console=console)
        numbers["held_out"] = {"metric": scored.metric, "score": round(scored.score, 4)}
    except PipelineError as refusal:
        numbers["refused"] = str(refusal).replace(str(project), f"<{shape}>")
        return numbers
    if folds:
        numbers["cv"] = check_folds(shape, made, project, options, folds, console)
    return numbers


def check_folds(shape: str, made: Path, project: Path, options: dict, folds: int, console: Console) -> dict:
    """A K-fold CV of the same options: its out-of-fold score, and the held-out scores of its fold ensemble and of
    that averaged with the single run (`pipeline ensemble`)."""
    roots = dict(dataset_root=project / "dataset", weights_root=project / "weights")
    out, solution = project / "submissions" / "submission.csv", made / "solution.csv"
    started = time.perf_counter()
    cv, summary = train_cv(config_from({**options, "name": "cv", "folds": folds}), console=console, **roots)
    train_s = round(time.perf_counter() - started, 1)
    folded = predict(runs=[cv.path], tta="flip", precision="fp32", engine="torch", score=solution, out=out,
                     console=console, **roots)
    both = ensemble([Path("cv"), Path(shape)], score=solution, out=out, console=console, **roots)
    return {"folds": folds, "train_s": train_s, "metric": summary["metric"],
            "oof": round(summary["oof"][summary["metric"]], 4), "fold_mean": round(summary["mean"][summary["metric"]], 4),
            "held_out_fold_ensemble": round(folded.score, 4), "held_out_fold_ensemble_and_single": round(both.score, 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, required=True)
    parser.add_argument("--limit", type=int)
    parser.add_argument("--options", default='{"epochs": 8}', help="train options as JSON")
    parser.add_argument("--work", type=Path, default=Path("/tmp/shapes-check"))
    parser.add_argument("--shapes", nargs="+", choices=SHAPES, default=list(SHAPES))
    parser.add_argument("--folds", type=int, help="also a K-fold CV per shape: its OOF score, its fold ensemble and "
                                                  "that averaged with the single run, held out")
    args = parser.parse_args()
    labels = pd.read_csv(args.source / "trainLabels.csv", dtype=str)[:args.limit]
    solution = pd.read_csv(args.source / "solution.csv", dtype=str)
    options, console = json.loads(args.options), Console()
    shutil.rmtree(args.work, ignore_errors=True)
    results = {}
    for shape in args.shapes:
        made = args.work / "made" / shape
        lay_out(shape, args.source, labels, solution, made)
        results[shape] = check_shape(shape, made, args.work, options, console, args.folds)
        console.print(f"{shape}: {json.dumps({k: v for k, v in results[shape].items() if k != 'described'})}")
    chance = 1 / labels["label"].nunique()
    out = write_result("shapes_check", resolve_device(options.get("device", "auto")),
                       {"source": str(args.source), "labeled_images": len(labels), "held_out_images": len(solution),
                        "options": options, "chance_accuracy_of_the_classes": round(chance, 4), "shapes": results})
    console.print(f"wrote {out}")


if __name__ == "__main__":
    main()
