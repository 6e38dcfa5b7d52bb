"""The competition description: inferred from each shape of Kaggle image competition, read back checked, and
followed by fetch, train and predict."""
import json
import re
import shutil
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from rich.console import Console

from pipeline.competition import DESCRIPTION, Competition, infer_competition, read_competition, write_competition
from pipeline.config import TrainConfig
from pipeline.cv import summary_lines, train_cv
from pipeline.dataset import training_arrays
from pipeline.errors import PipelineError
from pipeline.fetch import MARKER, archive_competition, fetch
from pipeline.layout import check_test, check_train, train_problems
from pipeline.metrics import metric_score
from pipeline.predict import ensemble, predict
from pipeline.run import Run, load_checkpoint
from pipeline.submission import check_solution
from pipeline.submit import submission_target
from pipeline.train import train
from pipeline.cli import app
from tests.fixtures import CLASSES, QUICK, class_images, grey_class_images, runner
from tests.fixtures import write_competition as write_cifar_shape


def save_images(root, folder, names, targets, seed=0, sizes=None):
    """Class images saved under their names (the format follows the suffix), resized to `sizes` (w, h) in turn."""
    (root / folder).mkdir(parents=True, exist_ok=True)
    for k, (name, image) in enumerate(zip(names, class_images(np.asarray(targets), np.random.default_rng(seed)))):
        picture = Image.fromarray(image)
        (picture.resize(sizes[k % len(sizes)]) if sizes else picture).save(root / folder / name)


def dog_breed(root, n=24, n_test=8, sizes=None):
    """labels.csv id,breed; JPEGs named <id>.jpg (of `sizes`, in turn); a probability column per breed;
    solution.csv names each test image's breed."""
    targets, test_targets = np.arange(n) % 4, np.arange(n_test) % 4
    ids, test_ids = [f"{i:04x}ab" for i in range(n)], [f"t{i}" for i in range(n_test)]
    save_images(root, "train", [f"{i}.jpg" for i in ids], targets, sizes=sizes)
    save_images(root, "test", [f"{i}.jpg" for i in test_ids], test_targets, seed=1, sizes=sizes)
    pd.DataFrame({"id": ids, "breed": np.array(CLASSES)[targets]}).to_csv(root / "labels.csv", index=False)
    sample = pd.DataFrame({"id": test_ids} | {c: 0.25 for c in sorted(CLASSES)})
    sample.to_csv(root / "sample_submission.csv", index=False)
    pd.DataFrame({"id": test_ids, "breed": np.array(CLASSES)[test_targets]}).to_csv(root / "solution.csv", index=False)


def cactus(root, n=20, suffix=".jpg", labels_csv="train.csv", ids_with_suffix=True, n_test=6):
    """A 0/1 label per image, and the submission's one column for it (aerial-cactus, histopathologic); solution.csv
    labels the test images."""
    targets, test_targets = np.arange(n) % 2, np.arange(n_test) % 2
    names = [f"c{i}{suffix}" for i in range(n)]
    save_images(root, "train", names, targets)
    save_images(root, "test", [f"q{i}{suffix}" for i in range(n_test)], test_targets, seed=1)
    ids = names if ids_with_suffix else [name[:-len(suffix)] for name in names]
    test_ids = [f"q{i}{suffix if ids_with_suffix else ''}" for i in range(n_test)]
    pd.DataFrame({"id": ids, "has_cactus": targets}).to_csv(root / labels_csv, index=False)
    pd.DataFrame({"id": test_ids, "has_cactus": 0.5}).to_csv(root / "sample_submission.csv", index=False)
    pd.DataFrame({"id": test_ids, "has_cactus": test_targets}).to_csv(root / "solution.csv", index=False)


PATHOLOGY = ("healthy", "multiple_diseases", "rust", "scab")


def plant_pathology(root, n=24, n_test=6):
    """One images/ folder for train and test; one-hot label columns; a probability per class; solution.csv: the
    test images' one-hot columns."""
    targets, test_targets = np.arange(n) % 4, np.arange(n_test) % 4
    test_ids = pd.DataFrame({"image_id": [f"Test_{i}" for i in range(n_test)]})
    save_images(root, "images", [f"Train_{i}.jpg" for i in range(n)], targets)
    save_images(root, "images", [f"{i}.jpg" for i in test_ids["image_id"]], test_targets, seed=1)
    one_hot = pd.DataFrame(np.eye(4, dtype=int)[targets], columns=PATHOLOGY)
    pd.concat([pd.DataFrame({"image_id": [f"Train_{i}" for i in range(n)]}), one_hot], axis=1).to_csv(
        root / "train.csv", index=False)
    test_ids.to_csv(root / "test.csv", index=False)
    test_ids.assign(**{c: 0.25 for c in PATHOLOGY}).to_csv(root / "sample_submission.csv", index=False)
    pd.concat([test_ids, pd.DataFrame(np.eye(4, dtype=int)[test_targets], columns=PATHOLOGY)], axis=1).to_csv(
        root / "solution.csv", index=False)


def cassava(root, n=200, n_test=40, seed=0):
    """train_images/ and test_images/ of <image_id> (ids are file names), integer labels with a JSON map of their
    names, an integer label per test image; solution.csv labels the test images."""
    rng = np.random.default_rng(seed)
    targets, test_targets = np.arange(n) % 4, rng.integers(0, 4, n_test)
    ids = [f"{1000 + i}.jpg" for i in rng.permutation(n)]
    test_ids = [f"{5000 + i}.jpg" for i in range(n_test)]
    save_images(root, "train_images", ids, targets, seed)
    save_images(root, "test_images", test_ids, test_targets, seed + 1)
    pd.DataFrame({"image_id": ids, "label": targets}).to_csv(root / "train.csv", index=False)
    pd.DataFrame({"image_id": test_ids, "label": 4}).to_csv(root / "sample_submission.csv", index=False)
    pd.DataFrame({"image_id": test_ids, "label": test_targets}).to_csv(root / "solution.csv", index=False)
    (root / "label_num_to_disease_map.json").write_text(json.dumps({str(i): f"disease {i}" for i in range(4)}))


def test_the_cifar_shape_is_described_by_the_defaults(tmp_path):
    write_cifar_shape(tmp_path, n_train=8, n_test=4)
    assert infer_competition(tmp_path) == (Competition(), [])


def test_train_ids_among_the_test_ids_still_find_the_train_folder(tmp_path):
    write_cifar_shape(tmp_path, n_train=8, n_test=12)  # test ids 1…12 name every train id 1…8 too
    described = infer_competition(tmp_path)[0]
    assert (described.train_images, described.test_images) == ("train", "test")


def test_dog_breed_shape(tmp_path):
    dog_breed(tmp_path)
    described, notes = infer_competition(tmp_path)
    assert described == Competition(labels_csv="labels.csv", label_columns=("breed",), image_suffix=".jpg",
                                    sample_submission="sample_submission.csv",
                                    submission_columns=tuple(sorted(CLASSES)), submission_kind="probabilities",
                                    metric="log_loss")
    assert len(notes) == 1 and "log_loss" in notes[0] and DESCRIPTION in notes[0]


def test_images_of_varied_sizes_are_decoded_to_one_square_and_predicted(project, tmp_path):
    source = tmp_path / "dogs"
    dog_breed(source, n=200, n_test=40, sizes=[(48, 36), (40, 56), (36, 36), (64, 40)])
    described, notes = infer_competition(source)
    assert described.image_size == 40 and "decoded at 40×40" in notes[-1] and "image_size" in notes[-1]
    fetch(archive=competition_zip(source, tmp_path / "dogs.zip"))
    assert training_arrays(project / "dataset").images.shape == (200, 40, 40, 3)
    result = train(TrainConfig(epochs=3, **QUICK), project / "dataset", project / "weights", Console(quiet=True))
    # the competition's log loss ranked the epochs: best.pt is the epoch of the lowest val log loss
    metrics = pd.read_csv(result.run_dir / "metrics.csv")
    assert result.metric == "log_loss" and result.best_epoch == metrics["val_score"].idxmin() + 1
    _, targets, probabilities = Run(result.run_dir).read_val_probabilities()  # the best epoch's
    assert metric_score("log_loss", targets, probabilities) == pytest.approx(result.best_score, abs=1e-5)
    assert load_checkpoint(result.run_dir / "best.pt")["best_score"] == pytest.approx(metrics["val_score"].min(), abs=1e-6)
    scored = predict(score=source / "solution.csv")
    assert scored.metric == "log_loss" and scored.score < np.log(4)


@pytest.mark.parametrize("suffix, labels_csv, ids_with_suffix", [(".jpg", "train.csv", True),
                                                                 (".tif", "train_labels.csv", False)])
def test_binary_shapes_submit_the_probability_of_one(tmp_path, suffix, labels_csv, ids_with_suffix):
    cactus(tmp_path, suffix=suffix, labels_csv=labels_csv, ids_with_suffix=ids_with_suffix)
    described, notes = infer_competition(tmp_path)
    assert (described.labels_csv, described.label_columns, described.label_kind) == (labels_csv, ("has_cactus",),
                                                                                     "binary")
    assert described.image_suffix == ("" if ids_with_suffix else suffix)
    assert (described.submission_kind, described.metric) == ("probability", "roc_auc")
    assert "submission_kind 'label'" in notes[0]  # how to submit hard labels instead
    write_competition(tmp_path, described)
    assert len(check_train(tmp_path).ids) == 20 and len(check_test(tmp_path)) == 6


def test_plant_pathology_shape_shares_one_image_folder(tmp_path):
    plant_pathology(tmp_path)
    described, _ = infer_competition(tmp_path)
    assert (described.train_images, described.test_images, described.image_suffix) == ("images", "images", ".jpg")
    assert (described.labels_csv, described.id_column, described.label_kind) == ("train.csv", "image_id", "one-hot")
    assert described.label_columns == described.submission_columns == PATHOLOGY
    assert (described.submission_kind, described.metric) == ("probabilities", "mean_roc_auc")
    write_competition(tmp_path, described)
    data = check_train(tmp_path)  # the test images beside the training ones are not unlisted training images
    assert data.classes == list(PATHOLOGY)
    assert dict(zip(data.ids, data.targets.tolist())) == {f"Train_{i}": i % 4 for i in range(24)}


def test_one_hot_rows_marking_no_class_or_several_are_problems(tmp_path):
    plant_pathology(tmp_path)
    write_competition(tmp_path, infer_competition(tmp_path)[0])
    frame = pd.read_csv(tmp_path / "train.csv")
    frame.loc[0, list(PATHOLOGY)] = [1, 1, 0, 0]
    frame.loc[1, list(PATHOLOGY)] = 0
    frame.to_csv(tmp_path / "train.csv", index=False)
    with pytest.raises(PipelineError, match="id Train_0 marks 2 classes, not one; train.csv: id Train_1 marks 0"):
        check_train(tmp_path)
    frame = pd.read_csv(tmp_path / "train.csv", dtype=str)
    frame.loc[0, list(PATHOLOGY)] = ["2", "1", "0", "0"]  # before, the 2 was dropped and the row trained as the 1
    frame.loc[1, list(PATHOLOGY)] = ["0.9", "0.1", "0", "0"]  # before, "marks 0 classes"
    frame.loc[2, list(PATHOLOGY)] = ["0", "1.0", "0.0", "0"]  # numbers 1 and 0, written as floats: a mark
    frame.to_csv(tmp_path / "train.csv", index=False)
    with pytest.raises(PipelineError, match=rf"id Train_0 holds '2' in {PATHOLOGY[0]}; a one-hot row holds 0 or 1 in "
                                            rf"each class column; train.csv: id Train_1 holds '0.9' in {PATHOLOGY[0]}"):
        check_train(tmp_path)
    frame.loc[[0, 1], list(PATHOLOGY)] = ["1", "0", "0", "0"]
    frame.to_csv(tmp_path / "train.csv", index=False)
    data = check_train(tmp_path)
    assert dict(zip(data.ids, data.targets.tolist()))["Train_2"] == 1


def test_a_one_hot_class_column_with_no_mark_is_named_and_bad_cells_are_listed_first(tmp_path):
    """A class column with no 1 left its class out of the labels, and the line blamed competition.json's
    submission_kind with two lists to compare by eye; with that column's 1s written as 2, the 2s went unsaid."""
    plant_pathology(tmp_path)
    write_competition(tmp_path, infer_competition(tmp_path)[0])
    frame = pd.read_csv(tmp_path / "train.csv", dtype=str)
    marked = frame[PATHOLOGY[2]] == "1"
    frame.loc[marked, PATHOLOGY[2]] = "0"
    frame.loc[marked, PATHOLOGY[0]] = "1"
    frame.to_csv(tmp_path / "train.csv", index=False)
    with pytest.raises(PipelineError, match=rf"competition.json: .*\(none labelled {PATHOLOGY[2]}\); fix"):
        check_train(tmp_path)
    frame = pd.read_csv(tmp_path / "train.csv", dtype=str)
    frame.loc[marked, PATHOLOGY[0]] = "0"
    frame.loc[marked, PATHOLOGY[2]] = "2"
    frame.to_csv(tmp_path / "train.csv", index=False)
    with pytest.raises(PipelineError, match=rf"train.csv: id Train_2 holds '2' in {PATHOLOGY[2]}; .*Fix them: without "
                                            rf"those rows, .*none labelled {PATHOLOGY[2]}"):
        check_train(tmp_path)


def test_cassava_shape_integer_labels_and_ids_that_are_file_names(tmp_path):
    cassava(tmp_path, n=12, n_test=4)
    described, notes = infer_competition(tmp_path)
    assert described == Competition(labels_csv="train.csv", id_column="image_id", label_kind="integers",
                                    train_images="train_images", test_images="test_images", image_suffix="",
                                    sample_submission="sample_submission.csv", submission_id="image_id")
    assert notes == []


def test_images_one_folder_down_and_upper_case_suffixes(tmp_path):
    write_cifar_shape(tmp_path, n_train=8, n_test=4)
    (tmp_path / "train").rename(tmp_path / "inner")
    (tmp_path / "train").mkdir()
    (tmp_path / "inner").rename(tmp_path / "train" / "train")
    for path in (tmp_path / "test").iterdir():
        path.rename(path.with_suffix(".PNG"))
    with pytest.raises(PipelineError, match="one naming is supported"):
        infer_competition(tmp_path)
    for path in (tmp_path / "train" / "train").iterdir():
        path.rename(path.with_suffix(".PNG"))
    described, _ = infer_competition(tmp_path)
    assert (described.train_images, described.image_suffix) == ("train/train", ".PNG")
    write_competition(tmp_path, described)
    assert len(check_train(tmp_path).ids) == 8


def test_several_label_columns_pick_the_one_named_like_a_label_and_say_so(tmp_path):
    write_cifar_shape(tmp_path, n_train=8, n_test=4)
    frame = pd.read_csv(tmp_path / "trainLabels.csv")
    frame.insert(1, "source", "web")
    frame.to_csv(tmp_path / "trainLabels.csv", index=False)
    described, notes = infer_competition(tmp_path)
    assert described.label_columns == ("label",) and "read 'label' as the label" in notes[0]


@pytest.mark.parametrize("change, message", [
    (lambda root: (root / "sampleSubmission.csv").unlink(), "no sample submission CSV"),
    (lambda root: (root / "trainLabels.csv").unlink(), "no CSV of training labels.*: add a CSV of id,label rows, or "
                                                       "move each training image into a folder named for its class"),
    (lambda root: [p.unlink() for p in (*(root / "train").iterdir(), *(root / "test").iterdir())],
     "trainLabels.csv: no image file is named by"),
    (lambda root: pd.DataFrame({"id": [1], "a": [1], "b": [2]}).to_csv(root / "sampleSubmission.csv", index=False),
     "neither one label column nor one per class"),
    (lambda root: (root / "labels.csv").write_text("x,y\n1,2\n"), "cannot tell which of labels.csv, trainLabels.csv"),
])
def test_what_cannot_be_inferred_is_one_line_naming_the_file(tmp_path, change, message):
    write_cifar_shape(tmp_path, n_train=8, n_test=4)
    change(tmp_path)
    with pytest.raises(PipelineError, match=message) as caught:
        infer_competition(tmp_path)
    assert "\n" not in str(caught.value)


def digit_recognizer(root, n=400, n_test=40, side=28):
    """train.csv (label, then side² pixel columns), test.csv (pixels), sample_submission.csv ImageId,Label (the test
    rows numbered from 1); solution.csv labels them."""
    rng = np.random.default_rng(0)
    targets, test_targets = np.arange(n) % 4, rng.integers(0, 4, n_test)
    pixels = [f"pixel{i}" for i in range(side * side)]
    root.mkdir(parents=True, exist_ok=True)
    for name, labels, count in (("train.csv", targets, n), ("test.csv", None, n_test)):
        images = grey_class_images(targets if labels is not None else test_targets, rng, side).reshape(count, -1)
        frame = pd.DataFrame(images, columns=pixels)
        (frame.insert(0, "label", labels) if labels is not None else None)
        frame.to_csv(root / name, index=False)
    image_ids = np.arange(1, n_test + 1)
    pd.DataFrame({"ImageId": image_ids, "Label": 0}).to_csv(root / "sample_submission.csv", index=False)
    pd.DataFrame({"ImageId": image_ids, "Label": test_targets}).to_csv(root / "solution.csv", index=False)


def test_a_pixel_csv_competition_is_laid_out_as_images_and_submitted_by_its_sample(project, tmp_path):
    source = tmp_path / "digits"
    digit_recognizer(source)
    fetch(archive=competition_zip(source, tmp_path / "digits.zip"))
    root = project / "dataset"
    described = read_competition(root)
    assert (described.labels_csv, described.label_kind, described.sample_submission, described.submission_id,
            described.submission_columns) == ("trainLabels.csv", "integers", "sample_submission.csv", "ImageId",
                                              ("Label",))
    assert not (root / "train.csv").exists() and not (root / "sampleSubmission.csv").exists()
    train(TrainConfig(epochs=4, **QUICK), root, project / "weights", Console(quiet=True))
    scored = predict(score=source / "solution.csv")
    written = pd.read_csv(project / "submissions" / "submission.csv", dtype=str)
    assert list(written.columns) == ["ImageId", "Label"] and written["ImageId"].tolist() == [str(i) for i in range(1, 41)]
    assert scored.metric == "accuracy" and scored.score > 0.5  # 4 classes: chance is 0.25


SEEDLINGS = ("Black-grass", "Charlock", "Cleavers", "Common Chickweed")


def plant_seedlings(root, n=200, n_test=40, sizes=None):
    """train/<species>/<file>.png, test/<file>.png, sample_submission.csv file,species; solution.csv."""
    targets, test_targets = np.arange(n) % 4, np.arange(n_test) % 4
    for k, species in enumerate(SEEDLINGS):
        chosen = np.flatnonzero(targets == k)
        save_images(root, f"train/{species}", [f"{i:03x}e.png" for i in chosen], targets[chosen], seed=k, sizes=sizes)
    files = [f"{i:03x}t.png" for i in range(n_test)]
    save_images(root, "test", files, test_targets, seed=9, sizes=sizes)
    pd.DataFrame({"file": files, "species": SEEDLINGS[0]}).to_csv(root / "sample_submission.csv", index=False)
    pd.DataFrame({"file": files, "species": np.array(SEEDLINGS)[test_targets]}).to_csv(root / "solution.csv",
                                                                                        index=False)


def test_a_folder_per_class_from_fetch_to_submission(project, tmp_path):
    source = tmp_path / "seedlings"
    plant_seedlings(source, sizes=[(40, 40), (36, 44)])
    described, _ = infer_competition(source)
    assert (described.labels_csv, described.label_kind, described.train_images, described.image_suffix) == (
        "", "folders", "train", "")
    assert (described.submission_id, described.submission_columns, described.submission_kind) == (
        "file", ("species",), "label")
    fetch(archive=competition_zip(source, tmp_path / "seedlings.zip"))
    root = project / "dataset"
    data = check_train(root)
    assert data.classes == list(SEEDLINGS) and len(data.ids) == 200 and data.ids[0].startswith("Black-grass/")
    train(TrainConfig(epochs=3, **QUICK), root, project / "weights", Console(quiet=True))
    scored = predict(score=source / "solution.csv")
    written = pd.read_csv(project / "submissions" / "submission.csv", dtype=str)
    assert list(written.columns) == ["file", "species"] and set(written["species"]) <= set(SEEDLINGS)
    assert scored.metric == "accuracy" and scored.score > 0.5  # 4 classes: chance is 0.25


def test_shapes_not_read_yet_are_one_line(tmp_path):
    seedlings, digits = tmp_path / "seedlings", tmp_path / "digits"
    save_images(seedlings, "train/Charlock", ["a.png"], [0])  # one class folder is not a classification
    save_images(seedlings, "test", ["x.png"], [0])
    (seedlings / "sample_submission.csv").write_text("file,species\nx.png,Charlock\n")
    with pytest.raises(PipelineError, match="no CSV of training labels.*nor a training folder of class folders"):
        infer_competition(seedlings)
    digits.mkdir()
    pd.DataFrame([[1] + [0] * 4], columns=["label"] + [f"pixel{i}" for i in range(4)]).to_csv(digits / "train.csv",
                                                                                               index=False)
    pd.DataFrame([[0] * 4], columns=[f"pixel{i}" for i in range(4)]).to_csv(digits / "test.csv", index=False)
    (digits / "sample_submission.csv").write_text("ImageId,Label\n1,0\n")
    with pytest.raises(PipelineError, match="train.csv: pixel columns, not image files; `pipeline fetch` writes"):
        infer_competition(digits)


def test_description_round_trips(tmp_path):
    plant_pathology(tmp_path)
    described = infer_competition(tmp_path)[0]
    write_competition(tmp_path, described)
    assert read_competition(tmp_path) == described
    assert read_competition(tmp_path / "elsewhere") == Competition()  # none: CIFAR-10's shape


@pytest.mark.parametrize("edit, message", [
    ({"colour": "red"}, "unknown field"),
    ({"label_kind": "words"}, "label_kind 'words' is not one of"),
    ({"metric": "top5"}, "metric 'top5' is not one of"),
    ({"train_images": "/etc"}, "must name a file or folder inside dataset/"),
    ({"labels_csv": "../labels.csv"}, "must name a file or folder inside dataset/"),
    ({"label_columns": []}, "non-empty list of column names"),
    ({"label_columns": ["a", "b"]}, "label_kind 'names' with 2 label column"),
    ({"submission_kind": "probabilities"}, "'probabilities' takes a column per class"),
    ({"image_suffix": ".svg"}, "image_suffix '.svg' is not one of"),
    ({"id_column": 3}, "id_column must be a string"),
    ({"train_images": "."}, "must name a file or folder inside dataset/"),
    ({"labels_csv": ""}, "labels_csv '' with label_kind 'names'"),
    ({"label_kind": "folders"}, "labels_csv 'trainLabels.csv' with label_kind 'folders'"),
    ({"metric": "log_loss"}, "metric 'log_loss' scores probabilities, but submission_kind 'label' submits a class"),
    ({"image_size": 4}, "image_size must be a whole number of pixels from 8 to 1024"),
    ({"image_size": True}, "image_size must be a whole number"),
])
def test_a_wrong_description_is_one_line_naming_it(tmp_path, edit, message):
    (tmp_path / DESCRIPTION).write_text(json.dumps(edit))
    with pytest.raises(PipelineError, match=message) as caught:
        read_competition(tmp_path)
    assert str(caught.value).startswith(str(tmp_path / DESCRIPTION)) and "\n" not in str(caught.value)


def competition_zip(folder, out):
    with zipfile.ZipFile(out, "w") as z:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and path.name != "solution.csv":
                z.write(path, path.relative_to(folder).as_posix())
    return out


def test_a_cassava_shaped_competition_from_fetch_to_submission(kaggle, project, tmp_path_factory):
    source = tmp_path_factory.mktemp("cassava")
    cassava(source)
    kaggle.competitions["cassava-leaf-disease-classification"] = competition_zip(source, source.parent / "c.zip").read_bytes()
    result = fetch("cassava-leaf-disease-classification")
    root = project / "dataset"
    assert (result.train_images, result.test_images) == (200, 40)
    assert read_competition(root).submission_id == "image_id"
    train(TrainConfig(epochs=3, **QUICK), root, project / "weights", Console(quiet=True))
    scored = predict(score=source / "solution.csv")
    written = pd.read_csv(project / "submissions" / "submission.csv", dtype=str)
    sample = pd.read_csv(root / "sample_submission.csv", dtype=str)
    assert list(written.columns) == ["image_id", "label"]
    assert written["image_id"].tolist() == sample["image_id"].tolist()
    assert set(written["label"]) <= {"0", "1", "2", "3"}
    assert scored.score > 0.5  # 4 classes: chance is 0.25


def test_a_binary_competition_submits_the_probability_of_one_scored_by_roc_auc(project, tmp_path):
    source = tmp_path / "cactus"
    cactus(source, n=200, n_test=40)
    result = runner.invoke(app, ["fetch", "--archive", str(competition_zip(source, tmp_path / "cactus.zip"))])
    assert result.exit_code == 0, result.output
    assert "note: sample_submission.csv: one column for 0/1 labels, read as the probability of 1" in result.output
    assert "dataset/competition.json" in result.output
    result = train(TrainConfig(epochs=3, **QUICK), project / "dataset", project / "weights", Console(quiet=True))
    assert result.metric == "roc_auc" and result.best_score > 0.9  # the val ROC AUC ranked the epochs
    scored = predict(score=source / "solution.csv")
    written = pd.read_csv(project / "submissions" / "submission.csv")
    assert list(written.columns) == ["id", "has_cactus"] and written["id"].tolist() == [f"q{i}.jpg" for i in range(40)]
    assert written["has_cactus"].between(0, 1).all() and written["has_cactus"].nunique() > 2  # probabilities
    assert scored.metric == "roc_auc" and scored.score > 0.9


def test_cross_validation_of_a_binary_competition_is_ranked_scored_and_predicted_by_roc_auc(project, tmp_path):
    source = tmp_path / "cactus"
    cactus(source, n=200, n_test=40)
    fetch(archive=competition_zip(source, tmp_path / "cactus.zip"))
    cv, summary = train_cv(TrainConfig(epochs=3, folds=2, **QUICK), console=Console(quiet=True))
    assert summary["metric"] == "roc_auc" and summary["oof"]["roc_auc"] > 0.9
    for i, fold in enumerate(summary["per_fold"]):  # each fold's best.pt: its epoch of the highest val ROC AUC
        metrics = pd.read_csv(cv.fold(i).path / "metrics.csv")
        assert fold["roc_auc"] == pytest.approx(metrics["val_score"].max(), abs=1e-5)
    lines = " ".join(summary_lines(cv, summary))
    assert f"fold ROC AUC {summary['mean']['roc_auc']:.4f} ± " in lines and "out-of-fold: ROC AUC " in lines
    scored = predict(runs=[cv.path], tta="none", score=source / "solution.csv")
    assert scored.members == ["cv-fold-0.probs.npy", "cv-fold-1.probs.npy"]
    assert scored.metric == "roc_auc" and scored.score > 0.9
    assert list(pd.read_csv(project / "submissions" / "submission.csv").columns) == ["id", "has_cactus"]
    listed = runner.invoke(app, ["runs"])
    assert "cross-validation cv (2 folds): out-of-fold ROC AUC " in " ".join(listed.output.split())


def test_a_probability_per_class_sums_to_one_clipped_for_log_loss(trained):
    root = trained / "dataset"
    classes = sorted(CLASSES)
    sample = pd.read_csv(root / "sampleSubmission.csv", dtype=str)[["id"]]
    sample.assign(**{c: 0.25 for c in classes}).to_csv(root / "sampleSubmission.csv", index=False)
    write_competition(root, Competition(submission_columns=tuple(classes), submission_kind="probabilities",
                                        metric="log_loss"))
    scored = predict(score=root / "solution.csv")  # solution.csv: id and the class name
    written = pd.read_csv(trained / "submissions" / "submission.csv")
    assert list(written.columns) == ["id", *classes] and len(written) == 40
    values = written[classes].to_numpy()
    assert np.allclose(values.sum(1), 1, atol=1e-5) and values.min() >= 0.9e-3  # the floor, then renormalised
    assert scored.metric == "log_loss" and scored.score < np.log(4)  # below the uniform guess's
    one_hot = pd.read_csv(root / "solution.csv", dtype=str)
    for c in classes:
        one_hot[c] = (one_hot["label"] == c).astype(int)
    one_hot.drop(columns="label").to_csv(root / "one_hot.csv", index=False)
    assert predict(score=root / "one_hot.csv").score == pytest.approx(scored.score)


def test_the_sample_is_described_as_cifar_without_inference(project):
    fetch(sample=True)
    assert read_competition(project / "dataset") == Competition()
    assert (project / "dataset" / DESCRIPTION).is_file()


def test_an_edited_description_is_kept_and_its_mistake_reported(project):
    fetch(sample=True)
    root = project / "dataset"
    described = json.loads((root / DESCRIPTION).read_text())
    (root / DESCRIPTION).write_text(json.dumps(described | {"label_columns": ["labels"]}))
    with pytest.raises(PipelineError, match="missing column.*labels.*competition.json was edited after the fetch"):
        fetch(sample=True)
    assert json.loads((root / DESCRIPTION).read_text())["label_columns"] == ["labels"]
    fetch(sample=True, force=True)
    assert read_competition(root) == Competition()


def test_common_formats_and_modes_decode_to_one_colour_array(tmp_path):
    from pipeline.cache import decode_images
    image = class_images(np.array([0]), np.random.default_rng(0))[0]
    picture = Image.fromarray(image)
    saved = {"a.webp": picture, "b.bmp": picture, "c.png": picture.convert("RGBA"), "d.png": picture.convert("P"),
             "e.tif": picture, "f.jpg": picture}
    for name, version in saved.items():
        version.save(tmp_path / name, **({"lossless": True} if name.endswith(".webp") else {}))
    decoded = decode_images(tmp_path, list(saved), tmp_path / "cache.npy", suffix="")
    assert decoded.bad == {} and decoded.images.shape == (6, 32, 32, 3)
    for row in (0, 1, 2, 4):  # lossless: the pixels themselves
        assert np.array_equal(decoded.images[row], image)
    assert np.abs(decoded.images[5].mean((0, 1)) - image.mean((0, 1))).max() < 5  # JPEG: the colour kept


def test_fetching_over_another_shape_replaces_all_of_its_files(project, tmp_path):
    seedlings, cassava_source = tmp_path / "seedlings", tmp_path / "cassava"
    plant_seedlings(seedlings, n=40, n_test=8)
    cassava(cassava_source, n=40, n_test=8)
    fetch(archive=competition_zip(seedlings, tmp_path / "seedlings.zip"))  # no labels_csv in its description
    fetch(archive=competition_zip(cassava_source, tmp_path / "cassava.zip"), force=True)
    root = project / "dataset"
    assert sorted(p.name for p in root.iterdir() if not p.name.startswith(".")) == [
        "competition.json", "label_num_to_disease_map.json", "sample_submission.csv", "test_images", "train.csv",
        "train_images"]
    fetch(sample=True, force=True)
    assert sorted(p.name for p in root.iterdir() if not p.name.startswith(".")) == [
        "competition.json", "sampleSubmission.csv", "solution.csv", "test", "train", "trainLabels.csv"]


def test_another_archive_over_a_fetched_one_needs_force(project, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    cassava(first, n=40, n_test=8)
    plant_seedlings(second, n=40, n_test=8)
    fetch(archive=competition_zip(first, tmp_path / "first.zip"))
    assert fetch(archive=tmp_path / "first.zip").already_complete
    with pytest.raises(PipelineError, match="holds 'first'; pass --force to replace it with 'second'"):
        fetch(archive=competition_zip(second, tmp_path / "second.zip"))
    assert fetch(archive=tmp_path / "second.zip", force=True).train_images == 40
    # a hand-downloaded zip is named after its competition, which `pipeline submit` then submits to
    assert submission_target(project / "dataset") == "second"
    assert archive_competition(tmp_path / "plant-seedlings-classification (1).zip") == "plant-seedlings-classification"
    with pytest.raises(PipelineError, match="holds 'second' from .*second.zip; pass --force to replace it with .*first"):
        fetch("second", archive=tmp_path / "first.zip")
    marker = project / "dataset" / MARKER  # as fetches before zips were named after their competition recorded it
    marker.write_text(json.dumps({**json.loads(marker.read_text()), "source": "cifar-10"}))
    assert fetch(archive=tmp_path / "second.zip").already_complete  # the same command: still complete


def test_a_description_unlike_the_sample_is_reported_before_predicting(trained):
    root = trained / "dataset"
    write_competition(root, Competition(submission_columns=("labels",)))
    with pytest.raises(PipelineError, match="competition.json: describes the submission as id,labels, but "
                                            ".*sampleSubmission.csv has id,label \\('labels' where it has 'label'\\)"):
        predict()
    assert not (trained / "submissions" / "exp.probs.npy").exists()


def test_a_solution_naming_an_unknown_class_says_so(trained):
    solution = pd.read_csv(trained / "dataset" / "solution.csv", dtype=str)
    solution.loc[0, "label"] = "lorry"
    solution.rename(columns={"label": "species"}).to_csv(trained / "bad.csv", index=False)
    root = trained / "dataset"
    classes = sorted(CLASSES)
    pd.read_csv(root / "sampleSubmission.csv", dtype=str)[["id"]].assign(**{c: 0.25 for c in classes}).to_csv(
        root / "sampleSubmission.csv", index=False)
    write_competition(root, Competition(submission_columns=tuple(classes), submission_kind="probabilities",
                                        metric="log_loss"))
    with pytest.raises(PipelineError, match="bad.csv: its species column names 'lorry', not among"):
        predict(score=trained / "bad.csv")
    assert not (trained / "submissions" / "submission.csv").exists()  # checked before anything is written


def test_img_size_at_fetch_decodes_every_image_once_at_that_square(project):
    fetched = runner.invoke(app, ["fetch", "--sample", "--img-size", "40"])
    assert fetched.exit_code == 0, fetched.output
    assert "note: image_size 40 (--img-size; the images' own size otherwise)" in " ".join(fetched.output.split())
    assert read_competition(project / "dataset").image_size == 40
    assert training_arrays(project / "dataset").images.shape[1:] == (40, 40, 3)
    again = runner.invoke(app, ["fetch", "--sample", "--img-size", "24"])  # over a complete fetch: decoded anew
    said = " ".join(again.output.split())
    assert again.exit_code == 0 and "image_size 24 (--img-size; 40 otherwise)" in said and "already holds" in said
    assert training_arrays(project / "dataset").images.shape[1:] == (24, 24, 3)
    assert fetch(sample=True).already_complete  # the fetch's own change, not a hand edit to report
    refused = runner.invoke(app, ["fetch", "--sample", "--img-size", "4"])
    assert refused.exit_code == 1 and refused.output.strip() == "error: --img-size must be between 8 and 1024 pixels, got 4"


SHAPES = {"cifar-10": write_cifar_shape, "dog-breed-identification": dog_breed, "aerial-cactus-identification": cactus,
          "histopathologic-cancer-detection": lambda root: cactus(root, suffix=".tif", labels_csv="train_labels.csv",
                                                                  ids_with_suffix=False),
          "plant-seedlings-classification": plant_seedlings, "plant-pathology-2020-fgvc7": plant_pathology,
          "cassava-leaf-disease-classification": cassava, "digit-recognizer": digit_recognizer}


@pytest.mark.parametrize("name", SHAPES)
def test_the_kaggle_stand_in_serves_every_shape_and_fetch_describes_it(kaggle, project, tmp_path, name):
    source = tmp_path / "made"
    source.mkdir()
    SHAPES[name](source)
    kaggle.competitions[name] = competition_zip(source, tmp_path / f"{name}.zip").read_bytes()
    fetched = runner.invoke(app, ["fetch", "--competition", name])
    assert fetched.exit_code == 0, fetched.output
    root = project / "dataset"
    described = read_competition(root)
    data, sample = check_train(root), pd.read_csv(root / described.sample_submission, dtype=str)
    assert list(sample.columns) == [described.submission_id, *described.submission_columns]
    assert len(check_test(root)) == len(sample) and len(data.ids) == len(data.targets) > len(sample)
    assert f"ready: {name}, {len(data.ids)} train and {len(sample)} test images" in " ".join(fetched.output.split())
    assert submission_target(root) == name  # `pipeline submit` goes back to it


def test_a_plant_pathology_competition_from_the_stand_in_to_a_scored_submission(kaggle, project, tmp_path):
    source = tmp_path / "pathology"
    plant_pathology(source, n=200, n_test=40)
    kaggle.competitions["plant-pathology-2020-fgvc7"] = competition_zip(source, tmp_path / "p.zip").read_bytes()
    fetch("plant-pathology-2020-fgvc7")
    result = train(TrainConfig(epochs=3, **QUICK), project / "dataset", project / "weights", Console(quiet=True))
    assert result.metric == "mean_roc_auc" and result.best_score > 0.75  # chance: 0.5
    scored = predict(score=source / "solution.csv")
    written = pd.read_csv(project / "submissions" / "submission.csv")
    assert list(written.columns) == ["image_id", *PATHOLOGY] and len(written) == 40
    assert np.allclose(written[list(PATHOLOGY)].to_numpy().sum(1), 1, atol=1e-5)
    assert scored.metric == "mean_roc_auc" and scored.score > 0.75


@pytest.mark.parametrize("make, metric", [(lambda root: dog_breed(root, n=80, n_test=12), "log_loss"),
                                          (lambda root: plant_pathology(root, n=80, n_test=12), "mean_roc_auc"),
                                          (lambda root: plant_seedlings(root, n=80, n_test=12), "accuracy")])
def test_folds_ensembles_blends_and_compare_follow_every_shape(project, tmp_path, make, metric):
    source = tmp_path / "made"
    make(source)
    fetch(archive=competition_zip(source, tmp_path / "made.zip"))
    root, quiet = project / "dataset", Console(quiet=True)
    for name, lr in (("cv", 0.02), ("cv2", 0.05)):  # two CVs on the same folds (the same --folds and --seed)
        _, summary = train_cv(TrainConfig(epochs=2, folds=2, name=name, **dict(QUICK, lr=lr)), console=quiet)
        assert summary["metric"] == metric and np.isfinite(summary["oof"][metric])
    predict(runs=[Path("cv")], tta="flip-shift", console=quiet)
    predict(runs=[Path("cv2")], tta="none", console=quiet)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # scikit-learn's too: blended float32 rows are probabilities
        scored = ensemble([Path("cv"), Path("cv2")], score=source / "solution.csv", blend=True, console=quiet)
    assert scored.metric == metric and np.isfinite(scored.score)
    described = read_competition(root)
    written = pd.read_csv(project / "submissions" / "submission.csv", dtype=str)
    sample = pd.read_csv(root / described.sample_submission, dtype=str)
    assert list(written.columns) == list(sample.columns)
    assert written[described.submission_id].tolist() == sample[described.submission_id].tolist()
    if described.submission_kind == "label":
        assert set(written[described.submission_columns[0]]) <= set(SEEDLINGS)
    else:
        np.testing.assert_allclose(written[list(described.submission_columns)].astype(float).sum(axis=1), 1, atol=1e-5)
    compared = runner.invoke(app, ["compare", "cv", "cv2", "--output", "both.png"])
    assert compared.exit_code == 0, compared.output
    assert "cv/fold-0" in compared.output and "cv2/fold-1" in compared.output and (project / "both.png").is_file()


def test_an_image_beside_the_class_folders_is_a_problem_named_by_its_file(project, tmp_path):
    plant_seedlings(tmp_path / "made", n=40, n_test=8)
    fetch(archive=competition_zip(tmp_path / "made", tmp_path / "made.zip"))
    train_folder = project / "dataset" / "train"
    shutil.copy(next((train_folder / "Charlock").iterdir()), train_folder / "stray.png")
    with pytest.raises(PipelineError, match=r"1 problem\(s\) in the training data: train/stray.png: in no class folder"):
        train(TrainConfig(epochs=1, **QUICK), console=Console(quiet=True))
    labels, problems, _ = train_problems(project / "dataset")
    assert problems == ["train/stray.png: in no class folder"] and len(labels) == 40  # --skip-bad trains on these


def test_a_folder_of_several_competitions_is_named_as_such(tmp_path):
    """Pass 26: a zip of `a/…` and `b/…`, each a competition, said "no sample submission CSV among no CSVs"."""
    for name in ("a", "b"):
        write_cifar_shape(tmp_path / name, n_train=4, n_test=2)
    with pytest.raises(PipelineError, match=r"no CSV at its top, but a/, b/ each hold CSVs \(several competitions in "
                                            r"one archive\?\); fetch one of them"):
        infer_competition(tmp_path)


def test_a_bad_cell_in_one_hot_labels_does_not_make_the_last_column_the_label(tmp_path):
    """Pass 27: one '0.5' among one-hot cells made fetch read the last class column as binary labels (a 10-class
    competition trained as "truck or not", exit 0); the CSV is one-hot by most of its rows, the cell a listed problem."""
    plant_pathology(tmp_path)
    frame = pd.read_csv(tmp_path / "train.csv", dtype=str)
    frame.loc[4, PATHOLOGY[1]] = "0.5"
    frame.to_csv(tmp_path / "train.csv", index=False)
    described, _ = infer_competition(tmp_path)
    assert (described.label_kind, described.label_columns) == ("one-hot", PATHOLOGY)
    write_competition(tmp_path, described)
    with pytest.raises(PipelineError, match=rf"id Train_4 holds '0.5' in {PATHOLOGY[1]}"):
        check_train(tmp_path)


def test_the_sample_submission_decides_which_columns_are_labels(tmp_path):
    """Pass 28: a one-hot CSV with a fold column (0-4) was read as integer labels (folds predicted, exit 0); rows mostly
    marking several classes became "the last column or not"; a binary label beside an is_valid 0/1 column was read as
    one-hot and refused as bad rows."""
    plant_pathology(tmp_path)
    frame = pd.read_csv(tmp_path / "train.csv", dtype=str)
    sample = pd.read_csv(tmp_path / "sample_submission.csv", dtype=str)
    frame = frame.assign(fold=[str(i % 5) for i in range(len(frame))])
    frame.to_csv(tmp_path / "train.csv", index=False)
    for submitted in (sample, sample[["image_id"]].assign(label="healthy")):  # a probability per class, or a label
        submitted.to_csv(tmp_path / "sample_submission.csv", index=False)
        described, notes = infer_competition(tmp_path)
        assert (described.label_kind, described.label_columns) == ("one-hot", PATHOLOGY)
        assert any("; fold left out" in note for note in notes), notes
    frame[["image_id", "fold"]].assign(**frame[list(PATHOLOGY)]).to_csv(tmp_path / "train.csv", index=False)
    sample.to_csv(tmp_path / "sample_submission.csv", index=False)  # fold before the class columns
    assert infer_competition(tmp_path)[0].label_columns == PATHOLOGY
    several = frame.drop(columns="fold")
    several.loc[:, PATHOLOGY[0]] = "1"  # every row marks two classes but the healthy ones
    several.to_csv(tmp_path / "train.csv", index=False)
    sample[["image_id"]].assign(tags="healthy rust").to_csv(tmp_path / "sample_submission.csv", index=False)
    with pytest.raises(PipelineError, match=r"train.csv: most rows mark several of the 0/1 columns .* \(multi-label\?"):
        infer_competition(tmp_path)
    binary = frame[["image_id"]].assign(label=[str(i % 2) for i in range(len(frame))],
                                         is_valid=[str(int(i % 4 == 0)) for i in range(len(frame))])
    binary.to_csv(tmp_path / "train.csv", index=False)
    sample[["image_id"]].assign(label="0.5").to_csv(tmp_path / "sample_submission.csv", index=False)
    described, _ = infer_competition(tmp_path)
    assert (described.label_kind, described.label_columns, described.submission_kind) == ("binary", ("label",),
                                                                                            "probability")


def test_the_sample_s_placeholder_names_and_0_1_flags_do_not_pass_for_labels(tmp_path):
    """Pass 29: one-hot columns beside a 2-fold 0/1 fold column (half the rows marking two) read `fold` as the label;
    a species column beside is_hard/is_valid flags read the flags as one-hot classes; integer labels beside a 0/1
    flag read the flag. The sample's placeholder class names find the column holding them; a fold or flag among 0/1
    columns is left out where that makes the rows one-hot; a 0/1 flag is the label only for a probability of 1."""
    plant_pathology(tmp_path)
    frame = pd.read_csv(tmp_path / "train.csv", dtype=str)
    ids = frame[["image_id"]]
    pd.read_csv(tmp_path / "sample_submission.csv", dtype=str)[["image_id"]].assign(label="rust").to_csv(
        tmp_path / "sample_submission.csv", index=False)
    frame.assign(fold=[str(i % 2) for i in range(len(frame))]).to_csv(tmp_path / "train.csv", index=False)
    assert infer_competition(tmp_path)[0].label_columns == PATHOLOGY
    species = np.array(PATHOLOGY)[np.arange(len(frame)) % 4]
    ids.assign(species=species, is_hard=[str(i % 2) for i in range(len(frame))],
               is_valid=[str(1 - i % 2) for i in range(len(frame))]).to_csv(tmp_path / "train.csv", index=False)
    assert infer_competition(tmp_path)[0].label_columns == ("species",)
    pd.read_csv(tmp_path / "sample_submission.csv", dtype=str)[["image_id"]].assign(prediction="0").to_csv(
        tmp_path / "sample_submission.csv", index=False)
    ids.assign(diagnosis=[str(i % 4) for i in range(len(frame))], is_extra=[str(int(i % 10 == 0)) for i in range(
        len(frame))]).to_csv(tmp_path / "train.csv", index=False)
    with pytest.raises(PipelineError, match=r"train.csv: its files do not decide .*\(diagnosis, is_extra\).*"
                                            r"--label-column NAME"):
        infer_competition(tmp_path)  # nothing names the label: refused, never guessed
    described = infer_competition(tmp_path, ("diagnosis",))[0]
    assert (described.label_columns, described.label_kind) == (("diagnosis",), "integers")


def relabelled(root, columns: dict, sample: dict):
    """The CIFAR-shaped competition in `root` with trainLabels.csv's columns after the id, and the sample's, replaced."""
    ids = pd.read_csv(root / "trainLabels.csv", dtype=str)["id"]
    pd.DataFrame({"id": ids, **{k: list(v)[:len(ids)] for k, v in columns.items()}}).to_csv(
        root / "trainLabels.csv", index=False)
    test_ids = pd.read_csv(root / "sampleSubmission.csv", dtype=str)["id"]
    pd.DataFrame({"id": test_ids, **sample}).to_csv(root / "sampleSubmission.csv", index=False)


def test_the_label_column_is_taken_only_where_the_files_decide_it(tmp_path):
    """Pass 30: a fold, a kfold, a box coordinate or a source column was read as the label wherever nothing named
    the label (the guess picked the last column), and False/True labels under a probability sample were submitted as
    labels. Now a rule of the files decides (a label's name, the sample's placeholder classes in any case, the only
    0/1 column for a probability), or fetch refuses, naming the columns and --label-column."""
    write_cifar_shape(tmp_path, n_train=40, n_test=4)
    n = 40
    zero_one, ten, fold = [str(i % 2) for i in range(n)], [str(i % 10) for i in range(n)], [str(i % 5) for i in range(n)]
    decided = [({"label": zero_one, "fold": fold}, {"p": 0.5}, ("label",), "binary"),
               ({"class_id": ten, "x_min": ten, "y_min": ten}, {"pred": 0}, ("class_id",), "integers"),
               ({"species": np.array(CLASSES)[np.arange(n) % 4], "source": ["web"] * n}, {"pred": "KIWI"},
                ("species",), "names"),
               ({"target": ["False", "True"] * (n // 2), "source": ["web"] * n}, {"p": 0.5}, ("target",), "binary")]
    for columns, sample, label_columns, kind in decided:
        relabelled(tmp_path, columns, sample)
        described, notes = infer_competition(tmp_path)
        assert (described.label_columns, described.label_kind) == (label_columns, kind), columns
    assert "target's False, True read as 0 and 1" in " ".join(notes)
    write_competition(tmp_path, described)
    assert check_train(tmp_path).classes == ["0", "1"]  # False/True trained as 0 and 1: the probability is of True
    refused = [({"y": ten, "kfold": fold}, {"answer": 0}), ({"cls": ten, "x_min": ten, "y_min": ten}, {"pred": 0}),
               ({"has_cactus": zero_one, "fold": fold}, {"p": 0.5}),  # two values alone decide nothing (pass 32)
               ({"is_valid": ["True", "False"] * (n // 2), "finding": [["1", "0", "-1"][i % 3] for i in range(n)]},
                {"p": 0.5}),
               ({"species": np.array(CLASSES)[np.arange(n) % 4], "fold": fold}, {"pred": "unknown"}),
               ({"y": zero_one, "is_valid": [str(i // 2 % 2) for i in range(n)]}, {"p": 0.5}),
               ({"is_animal": zero_one, "fold": [str(i // 2 % 2) for i in range(n)]}, {"target": 0}),
               ({"label": ten, "species": np.array(CLASSES)[np.arange(n) % 4]}, {"pred": "kiwi"})]
    for columns, sample in refused:
        relabelled(tmp_path, columns, sample)
        with pytest.raises(PipelineError, match=r"trainLabels.csv: its files do not decide which of the columns "
                                                r"after its id \(.*\) holds the labels.*--label-column NAME"):
            infer_competition(tmp_path)
        first = next(iter(columns))
        assert infer_competition(tmp_path, (first,))[0].label_columns == (first,)
    relabelled(tmp_path, {"a": ["cat", "dog"] * (n // 2)}, {"p": 0.5})
    with pytest.raises(PipelineError, match=r"sampleSubmission.csv: its p column holds fractions, a probability of 1, "
                                            r"but the training labels are cat, dog, not 0 and 1"):
        infer_competition(tmp_path)  # before: labels submitted where a probability is asked
    with pytest.raises(PipelineError, match=r"--label-column 'b': trainLabels.csv has no such column after its id"):
        infer_competition(tmp_path, ("b",))


def test_fetch_label_column_names_the_label_where_the_files_do_not(project, tmp_path):
    """`fetch` refuses an undecided label column with one line and leaves nothing; `--label-column` names it (once
    per one-hot class); a complete fetch read with other columns, an unknown column, or the option beside --sample,
    are one line each."""
    source = tmp_path / "src"
    write_cifar_shape(source, n_train=40, n_test=8)
    relabelled(source, {"y": [str(i % 2) for i in range(40)], "kfold": [str(i % 5) for i in range(40)]},
               {"answer": 0})
    archive = competition_zip(source, tmp_path / "comp.zip")
    result = runner.invoke(app, ["fetch", "--archive", str(archive)])
    assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
    assert "error: trainLabels.csv: its files do not decide" in result.output and "(y, kfold)" in result.output
    assert not (project / "dataset").exists()
    result = runner.invoke(app, ["fetch", "--archive", str(archive), "--label-column", "y"])
    assert result.exit_code == 0, result.output
    assert read_competition(project / "dataset").label_columns == ("y",)
    for options, message in ((["--label-column", "kfold"], "reads the labels from y, not kfold; fetch again with "
                                                           "--force and --label-column"),
                             (["--label-column", "nope", "--force"], "--label-column 'nope': trainLabels.csv has no "
                                                                     "such column after its id (it has y, kfold)"),
                             (["--label-column", "y", "--label-column", "y", "--force"], "is given twice")):
        result = runner.invoke(app, ["fetch", "--archive", str(archive), *options])
        assert result.exit_code == 1 and message in result.output and result.output.count("\n") == 1, result.output
    assert read_competition(project / "dataset").label_columns == ("y",)  # the complete fetch untouched
    result = runner.invoke(app, ["fetch", "--sample", "--label-column", "y"])
    assert result.exit_code == 1 and "--label-column names a column of a competition's training CSV" in result.output


def test_a_flag_a_row_index_or_a_conflicting_rule_never_passes_for_the_label(tmp_path):
    """Pass 31: beside a label of two other spellings (yes/no) or with one bad cell, a 0/1 flag was taken as the label
    of a probability; a pandas row index (`,id,label`) as the ids; integer codes named `label` over the names the
    sample's placeholders are in; `000` … `009` submitted as 0 … 9; a box coordinate holding the placeholder 0.0; a
    rare flag among one-hot columns as a class, a class the sample lacks as rows marking none. Pass 32: a True/False
    flag as the only two-valued column beside a label with -1s; a flag among the one-hot classes the sample names.
    Now each is refused, naming why, or read as written (the named classes without the flag)."""
    write_cifar_shape(tmp_path, n_train=40, n_test=4)
    n, rng = 40, np.random.default_rng(5)
    names, zero_one = np.array(CLASSES)[np.arange(n) % 4], [str(i % 2) for i in range(n)]
    flag = [str(int(v)) for v in rng.random(n) < 0.3]
    one_hot = {c: [str(int(k == i % 4)) for i in range(n)] for k, c in enumerate(CLASSES)}
    refused = [({"reviewed": flag, "is_animal": ["yes", "no"] * (n // 2)}, {"p": 0.5},
                "reviewed, is_animal each two-valued, as the label of a probability is"),
               ({"has_animal": ["2"] + zero_one[1:], "is_valid": flag}, {"p": 0.5}, "is_valid is marked beside another"),
               ({"label": [str(i % 4) for i in range(n)], "species": names}, {"label": "kiwi"},
                "label is the sample's column; label is named like a label; species holds the sample's placeholder"),
               ({"species": names, "x_min": [f"{i % 7}.0" for i in range(n)]}, {"pred": "0.0"},
                "no column is named like a label, and the sample submission names none"),
               ({**one_hot, "is_hard": ["1"] * 3 + ["0"] * (n - 3)}, {"label": 0},
                "is_hard is marked beside another of them in most of its rows (a flag, not a class?)"),
               (one_hot, {c: 0.25 for c in CLASSES[:3]}, f"its rows marking {CLASSES[3]} mark none of the sample")]
    for columns, sample, message in refused:
        relabelled(tmp_path, columns, sample)
        with pytest.raises(PipelineError, match=re.escape(message)):
            infer_competition(tmp_path)
    relabelled(tmp_path, {**one_hot, "species": names}, {"label": 0})
    with pytest.raises(PipelineError, match=r"--label-column 'species': .* holds apple, kiwi, mango, …, not 0/1 marks"):
        infer_competition(tmp_path, ("species", "zebra"))
    decided = [({"code": [f"{i % 4:03d}" for i in range(n)]}, {"label": "003"}, ("code",), "names"),
               ({c: [f"{v}.0" for v in marks] for c, marks in one_hot.items()}, {"label": "kiwi"}, CLASSES, "one-hot"),
               ({"target": ["Yes", "No"] * (n // 2), "fold": [str(i % 5) for i in range(n)]}, {"p": 0.5}, ("target",),
                "binary"),
               ({**one_hot, "is_hard": ["1"] * 3 + ["0"] * (n - 3)}, {"label": "kiwi"}, CLASSES, "one-hot")]
    for columns, sample, label_columns, kind in decided:
        relabelled(tmp_path, columns, sample)
        described = infer_competition(tmp_path)[0]
        assert (described.label_columns, described.label_kind) == (tuple(label_columns), kind), columns
    ids = pd.read_csv(tmp_path / "trainLabels.csv", dtype=str)
    ids.to_csv(tmp_path / "trainLabels.csv")  # pandas' row index kept: a nameless first column
    with pytest.raises(PipelineError, match=r"trainLabels.csv: its first column has no name \(a row index"):
        infer_competition(tmp_path)
    (tmp_path / "trainLabels.csv").write_text("")
    with pytest.raises(PipelineError, match=r"trainLabels.csv: empty \(no header, no rows\); write the file again"):
        infer_competition(tmp_path)  # before, "not a readable CSV (No columns to parse from file)"


def test_a_probability_solution_spelled_false_true_is_scored_as_0_1(tmp_path):
    """Pass 31: labels False/True trained as 0/1, but a solution spelled the same was refused by --score."""
    cactus(tmp_path, n=20, n_test=6)
    frame = pd.read_csv(tmp_path / "train.csv", dtype=str)
    frame.assign(has_cactus=frame["has_cactus"].map({"0": "False", "1": "True"})).to_csv(tmp_path / "train.csv",
                                                                                        index=False)
    write_competition(tmp_path, infer_competition(tmp_path)[0])
    solution = pd.read_csv(tmp_path / "solution.csv", dtype=str)
    solution.assign(has_cactus=solution["has_cactus"].map({"0": "false", "1": "TRUE"})).to_csv(
        tmp_path / "truth.csv", index=False)
    assert check_solution(tmp_path / "truth.csv", tmp_path, "roc_auc") == solution["id"].tolist()


def test_float_spelled_0_1_labels_a_row_index_before_the_ids_and_true_false_one_hot_cells(tmp_path):
    """Pass 33: 0/1 labels written 0.0/1.0 under a sample of 0s were read as names and submitted as hard labels (ROC AUC
    0.89 for 0.96); `index,id,label` took the index as the ids; one-hot cells True/False (pandas' get_dummies) were
    all bad rows; a regression target under a sample of fractions was advised to be written as 0 and 1."""
    write_cifar_shape(tmp_path, n_train=40, n_test=4)
    n = 40
    relabelled(tmp_path, {"target": ["0.0", "1.0"] * (n // 2), "sex": ["m", "f", "f", "m"] * (n // 4)}, {"target": 0})
    described, notes = infer_competition(tmp_path)
    assert (described.label_columns, described.label_kind, described.submission_kind) == (("target",), "binary",
                                                                                         "probability")
    write_competition(tmp_path, described)
    assert check_train(tmp_path).classes == ["0", "1"]
    (tmp_path / DESCRIPTION).unlink()
    one_hot = {c: [["False", "True"][k == i % 4] for i in range(n)] for k, c in enumerate(CLASSES)}
    relabelled(tmp_path, one_hot, {c: 0.25 for c in CLASSES})
    described = infer_competition(tmp_path)[0]
    write_competition(tmp_path, described)
    assert described.label_kind == "one-hot" and len(check_train(tmp_path).targets) == n
    (tmp_path / DESCRIPTION).unlink()
    relabelled(tmp_path, {"score": [str(1 + i % 30) for i in range(n)]}, {"score": 0.5})  # some repeated
    with pytest.raises(PipelineError, match=r"not 0 and 1: pipeline trains classifiers; a number per image "
                                            r"\(regression\) is not supported"):
        infer_competition(tmp_path)
    frame = pd.read_csv(tmp_path / "trainLabels.csv", dtype=str)
    frame.insert(0, "index", range(len(frame)))
    frame.to_csv(tmp_path / "trainLabels.csv", index=False)
    with pytest.raises(PipelineError, match=r"trainLabels.csv: its first column is 'index', but the sample submission's "
                                            r"id column \(its first\) is 'id', a later column here"):
        infer_competition(tmp_path)


def test_space_separated_tags_are_refused_as_multi_label(tmp_path):
    """Pass 34: 'dog cat' beside 'dog' and 'cat' (Planet-style tags) trained each combination as a class, exit 0.
    A class name of several words that are no classes of their own ('air plane') is a name."""
    write_cifar_shape(tmp_path, n_train=40, n_test=4)
    n = 40
    tags = [["zebra", "apple", "kiwi mango", "kiwi", "mango"][i % 5] for i in range(n)]
    relabelled(tmp_path, {"tags": tags}, {"tags": "zebra apple"})
    with pytest.raises(PipelineError, match=r"trainLabels.csv: labels such as kiwi mango list several labels that are "
                                            r"classes on their own \(space-separated tags: multi-label\?\)"):
        infer_competition(tmp_path)
    relabelled(tmp_path, {"tags": [["zebra", "apple", "air plane", "kiwi"][i % 4] for i in range(n)]}, {"tags": "kiwi"})
    assert infer_competition(tmp_path)[0].label_kind == "names"


def test_a_usage_column_grades_and_path_ids_are_read_for_what_they_are(tmp_path):
    """Pass 34: a sample with a solution's Usage column was told to use --label-column; grades 0.5 … 2.0 under a
    sample of 0.5 were refused as regression; ids written as paths (train/1.png) were called missing images."""
    write_cifar_shape(tmp_path, n_train=40, n_test=4)
    grades = [["0.5", "1.0", "1.5", "2.0"][i % 4] for i in range(40)]
    relabelled(tmp_path, {"grade": grades}, {"grade": "0.5"})
    described, _ = infer_competition(tmp_path)
    assert (described.label_kind, described.submission_kind, described.metric) == ("names", "label", "accuracy")
    relabelled(tmp_path, {"label": ["0", "1"] * 20}, {"label": "0.5"})
    assert infer_competition(tmp_path)[0].submission_kind == "probability"  # a fraction no label holds
    relabelled(tmp_path, {"label": ["0.0", "1.0", "2.0"] * 14}, {"label": "0"})  # codes as pandas writes floats
    described, notes = infer_competition(tmp_path)
    assert described.label_kind == "integers" and "0.0, 1.0, 2.0 read as the whole numbers the sample writes" in notes[0]
    write_competition(tmp_path, described)
    assert check_train(tmp_path).classes == ["0", "1", "2"]  # submitted as the sample writes them
    test_ids = pd.read_csv(tmp_path / "sampleSubmission.csv", dtype=str)["id"]
    pd.DataFrame({"id": test_ids, "label": ["2.0", "0", "01", "1.0"]}).to_csv(tmp_path / "truth.csv", index=False)
    assert check_solution(tmp_path / "truth.csv", tmp_path, "accuracy") == test_ids.tolist()  # pass 36: as trained
    (tmp_path / DESCRIPTION).unlink()
    relabelled(tmp_path, {"label": ["zebra", "kiwi"] * 20}, {"label": "zebra", "Usage": "Public"})
    with pytest.raises(PipelineError, match=r"sampleSubmission.csv: its 'Usage' column is a Kaggle solution's .*drop "
                                            r"that column"):
        infer_competition(tmp_path)
    relabelled(tmp_path, {"label": ["zebra", "kiwi"] * 20}, {"label": "zebra"})
    labels = pd.read_csv(tmp_path / "trainLabels.csv", dtype=str)
    labels["id"] = "train/" + labels["id"] + ".png"
    labels.to_csv(tmp_path / "trainLabels.csv", index=False)
    with pytest.raises(PipelineError, match=r"its 'id' values are paths from the competition's folder "
                                            r"\('train/1.png'\), but ids name a file in an image folder: write "
                                            r"'1.png' \(or '1'\) for train/1.png"):
        infer_competition(tmp_path)


def test_test_images_of_another_size_and_deeper_folders_are_described(tmp_path):
    """Pass 34: 64×64 test images beside 32×32 training ones were found only by predict, which advised a model
    'trained on images like these'; images three folders down were not found; a shared images/ folder whose sample
    lists a training id blamed a competition.json nobody wrote."""
    write_cifar_shape(tmp_path, n_train=8, n_test=4)
    for path in (tmp_path / "test").iterdir():
        Image.open(path).resize((64, 64)).save(path)
    described, notes = infer_competition(tmp_path)
    assert described.image_size == 32 and "train/ holds 32×32 images, test/ 64×64 ones" in notes[0]
    (tmp_path / "data" / "train").mkdir(parents=True)
    (tmp_path / "train").rename(tmp_path / "data" / "train" / "images")
    described, _ = infer_competition(tmp_path)
    assert described.train_images == "data/train/images"
    for path in (tmp_path / "test").iterdir():
        path.rename(path.with_suffix(".jpg"))
    with pytest.raises(PipelineError, match=r"one naming is supported: save both splits' images in one format \(the "
                                            r"test images as '<id>.png', say\)"):
        infer_competition(tmp_path)


def test_a_sample_listing_training_images_of_a_shared_folder_names_the_sample(tmp_path):
    plant_pathology(tmp_path, n=8, n_test=4)
    sample = pd.read_csv(tmp_path / "sample_submission.csv", dtype=str)
    sample.loc[0, "image_id"] = "Train_3"
    sample.to_csv(tmp_path / "sample_submission.csv", index=False)
    write_competition(tmp_path, infer_competition(tmp_path)[0])
    with pytest.raises(PipelineError, match=r"sample_submission.csv: 1 of its ids are labeled in train.csv too "
                                            r"\(Train_3\), the images of both sets being in images/, .*drop those "
                                            r"rows from one of the two"):
        check_test(tmp_path)
    sample.loc[0, "image_id"] = "Test_0"
    sample.to_csv(tmp_path / "sample_submission.csv", index=False)
    labels = pd.read_csv(tmp_path / "train.csv", dtype=str)
    test_rows = pd.DataFrame({"image_id": sample["image_id"]} | {c: "0" for c in PATHOLOGY})  # a split's test rows
    pd.concat([labels, test_rows]).to_csv(tmp_path / "train.csv", index=False)
    with pytest.raises(PipelineError, match=r"train.csv: lists the 4 test ids of sample_submission.csv too, with blank "
                                            r"labels \(Test_0.jpg, .*; keep only the training rows in it"):
        check_test(tmp_path)


def test_a_training_csv_beside_class_folders_reads_the_folders(tmp_path):
    """Pass 34: Paddy Doctor's train.csv (image_id,label,variety,age) beside train_images/<label>/<file> found one
    class folder and refused 'every usable row has the label …'. The folders are the labels where a column of the
    CSV names each image's folder; a CSV naming none of them is one line."""
    plant_seedlings(tmp_path, n=16, n_test=4)
    files = sorted((tmp_path / "train").glob("*/*.png"))
    frame = pd.DataFrame({"image_id": [f.name for f in files], "label": [f.parent.name for f in files],
                          "variety": "ADT45", "age": [str(40 + k) for k in range(len(files))]})
    frame.to_csv(tmp_path / "train.csv", index=False)
    described, notes = infer_competition(tmp_path)
    assert (described.label_kind, described.train_images) == ("folders", "train")
    assert "train.csv: its label column names the class folder of each image in train/" in notes[0]
    write_competition(tmp_path, described)
    assert sorted(check_train(tmp_path).classes) == sorted(SEEDLINGS)
    shutil.copy(files[0], tmp_path / "train" / SEEDLINGS[1] / files[0].name)  # pass 36: one image in two folders
    with pytest.raises(PipelineError, match=rf"train: 1 image name\(s\) are in two class folders \(.*{files[0].name}\), "
                                            r"and train.csv names an image by its file name: keep each image in one"):
        infer_competition(tmp_path)
    (tmp_path / "train" / SEEDLINGS[1] / files[0].name).unlink()
    frame.loc[3, "label"] = "other"
    frame.to_csv(tmp_path / "train.csv", index=False)
    with pytest.raises(PipelineError, match=rf"train.csv: its ids name the images in the class folders of train/, but "
                                            rf"no column of it names each image's folder; label disagrees in 1 row\(s\), "
                                            rf"e.g. {files[3].name} in {files[3].parent.name}/ labelled 'other'; if the "
                                            r"folders are the classes and train.csv only describes the images, move "
                                            r"it out of the competition's folder, else make"):
        infer_competition(tmp_path)
    shutil.rmtree(tmp_path / "train")
    for sub in ("images", "masks"):  # the same names in two folders: no class folders, the CSV's labels
        save_images(tmp_path, f"train/{sub}", frame["image_id"], np.arange(len(frame)) % 4)
    frame["label"] = np.array(SEEDLINGS)[np.arange(len(frame)) % 4]
    frame.to_csv(tmp_path / "train.csv", index=False)
    described, _ = infer_competition(tmp_path)
    assert (described.label_kind, described.train_images, described.label_columns) == ("names", "train/images",
                                                                                       ("label",))


def test_pixel_columns_are_read_by_their_numbers_not_their_place(tmp_path):
    """Pass 35: a test.csv whose pixel columns were sorted as text (pixel0, pixel1, pixel10, …), as
    `df[sorted(df.columns)]` writes it, or shuffled, was converted by position: scrambled images, exit 0."""
    from pipeline.convert import read_pixel_csv

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 8 * 8))
    frame = pd.DataFrame(images, columns=[f"pixel{i}" for i in range(64)]).assign(label=[0, 1, 2])
    for order in (sorted(frame.columns), list(rng.permutation(frame.columns))):
        frame[order].to_csv(tmp_path / "train.csv", index=False)
        assert (read_pixel_csv(tmp_path / "train.csv")[1].reshape(3, -1) == images).all()
    grid = pd.DataFrame(images, columns=[f"{r}x{c}" for r in range(1, 9) for c in range(1, 9)])  # row x column
    grid[sorted(grid.columns)].to_csv(tmp_path / "test.csv", index=False)
    assert (read_pixel_csv(tmp_path / "test.csv", need_label=False)[1].reshape(3, -1) == images).all()
    frame.rename(columns={"pixel5": "pixel70"}).to_csv(tmp_path / "train.csv", index=False)
    with pytest.raises(PipelineError, match=r"train.csv: the pixel columns' numbers are not 0 … 63 \(or 1 … 64\)"):
        read_pixel_csv(tmp_path / "train.csv")


def test_a_sample_of_several_labels_per_image_or_other_classes_is_refused_naming_why(tmp_path):
    """Pass 35: a sample asking five guesses per image (Humpback whale's `new_whale w_1 …`, MAP@5) or a label and
    its confidence (`1000 0.5`) was submitted one label per image, called valid, exit 0. Sample class columns in
    another case than the labels, or one no training label has, were told to use --label-column, which changed
    nothing."""
    write_cifar_shape(tmp_path, n_train=40, n_test=4)
    for placeholder in ("zebra kiwi apple mango", "1000 0.5"):
        relabelled(tmp_path, {"label": ["zebra", "kiwi", "apple", "mango"] * 10}, {"label": placeholder})
        with pytest.raises(PipelineError, match=rf"sampleSubmission.csv: its values such as '{placeholder}' hold "
                                                r"several space-separated tokens, .* not supported"):
            infer_competition(tmp_path)
    relabelled(tmp_path, {"label": ["zebra", "air plane"] * 20}, {"label": "air plane"})  # a class of two words
    assert infer_competition(tmp_path)[0].submission_kind == "label"
    shutil.rmtree(tmp_path)
    plant_pathology(tmp_path, n=8, n_test=4)
    sample = pd.read_csv(tmp_path / "sample_submission.csv", dtype=str)
    sample.rename(columns={"healthy": "Healthy"}).assign(extra="0.25").to_csv(tmp_path / "sample_submission.csv",
                                                                               index=False)
    with pytest.raises(PipelineError, match=r"in another case 'Healthy' \(the labels write 'healthy'\); no training "
                                            r"label is extra; make the sample's header and the training classes agree"):
        infer_competition(tmp_path)


def test_a_sample_whose_ids_are_not_its_first_column_says_so(tmp_path):
    """Pass 35: Cassava 2019's sample `Category,Id` was told 'no image file is named by its Category column … write
    dataset/competition.json by hand', which leads nowhere; a CIFAR sample `label,id` was told to reorder the
    training CSV, whose order is right."""
    plant_seedlings(tmp_path / "folders", n=8, n_test=4)
    sample = pd.read_csv(tmp_path / "folders" / "sample_submission.csv", dtype=str)
    sample[["species", "file"]].to_csv(tmp_path / "folders" / "sample_submission.csv", index=False)
    with pytest.raises(PipelineError, match=r"sample_submission.csv: its ids are in its 'file' column \(they name the "
                                            r"images in test/\), not in its first, 'species'; .*write 'file' first"):
        infer_competition(tmp_path / "folders")
    write_cifar_shape(tmp_path / "cifar", n_train=8, n_test=4)
    sample = pd.read_csv(tmp_path / "cifar" / "sampleSubmission.csv", dtype=str)
    sample[["label", "id"]].to_csv(tmp_path / "cifar" / "sampleSubmission.csv", index=False)
    with pytest.raises(PipelineError, match=r"sampleSubmission.csv: its first column is 'label', but the image ids are "
                                            r"in its 'id' column \(as in trainLabels.csv, whose ids name the images in "
                                            r"train/\); .*write 'id' first"):
        infer_competition(tmp_path / "cifar")


def test_a_label_per_image_such_as_run_length_masks_is_refused_at_fetch(tmp_path):
    """Pass 35: TGS-salt-like `id,rle_mask` labels (each unique) were fetched as 40 classes, refused only by train."""
    write_cifar_shape(tmp_path, n_train=40, n_test=4)
    relabelled(tmp_path, {"rle_mask": [f"{k} {k + 3}" for k in range(40)]}, {"rle_mask": "1 1"})
    with pytest.raises(PipelineError, match=r"trainLabels.csv: each of its 40 labels in rle_mask names one image only "
                                            r"\(every image a class of its own: masks, boxes"):
        infer_competition(tmp_path)


def test_one_folder_of_both_splits_with_training_images_of_varied_sizes_is_decoded_at_one_square(tmp_path):
    """Review: the sizes of the two splits were kept by folder, so where one folder holds both (plant pathology) the
    test images' one size hid the training images' varied ones."""
    plant_pathology(tmp_path, n=8, n_test=4)
    for k, path in enumerate(sorted((tmp_path / "images").glob("Train_*.jpg"))):
        Image.open(path).resize([(40, 40), (36, 44)][k % 2]).save(path)
    described, notes = infer_competition(tmp_path)
    assert described.image_size == 38 and "images/: images of 2 sizes among 8 sampled" in notes[-1]


def test_pixel_csvs_of_columns_named_by_row_and_column_are_fetched(project, tmp_path):
    """Pass 36: MNIST-as-CSV columns `1x1` … `28x28` (or bare numbers, or a space after each comma) were not taken
    for a pixel CSV: 'no image file is named by its label column'. `Label` is the label column too."""
    source = tmp_path / "digits"
    digit_recognizer(source, n=40, n_test=8)
    grid = {f"pixel{i}": f"{i // 28 + 1}x{i % 28 + 1}" for i in range(28 * 28)}
    for name in ("train.csv", "test.csv"):
        frame = pd.read_csv(source / name).rename(columns=grid | {"label": "Label"})
        frame[sorted(frame.columns)].to_csv(source / name, index=False)
    fetch(archive=competition_zip(source, tmp_path / "digits.zip"))
    pixels = pd.read_csv(source / "test.csv").iloc[0]
    first = np.array([pixels[f"{r}x{c}"] for r in range(1, 29) for c in range(1, 29)], np.uint8).reshape(28, 28)
    assert (np.asarray(Image.open(project / "dataset" / "test" / "1.png")) == first).all()


def test_split_folders_a_split_column_and_a_masks_folder_never_pass_for_classes_or_images(tmp_path):
    """Pass 37: images/train and images/test beside a CSV with a `split` column were read as two classes named by
    the split (accuracy 0.0, exit 0); Intel's labelled seg_test/seg_test/<class> (60 images) was trained on instead of
    seg_train/seg_train/<class> (300); a masks/ folder of the training images' names was taken for them (0.15)."""
    write_cifar_shape(tmp_path / "split", n_train=40, n_test=4)
    root = tmp_path / "split"
    (root / "images").mkdir()
    for split in ("train", "test"):
        (root / split).rename(root / "images" / split)
    labels = pd.read_csv(root / "trainLabels.csv", dtype=str).assign(split="train")
    labels.to_csv(root / "trainLabels.csv", index=False)
    described, _ = infer_competition(root)
    assert (described.label_kind, described.label_columns, described.train_images) == ("names", ("label",),
                                                                                       "images/train")
    intel = tmp_path / "intel"
    plant_seedlings(tmp_path / "labelled", n=16, n_test=4)
    plant_seedlings(tmp_path / "labelled-test", n=8, n_test=1)
    for source, target in (("labelled/train", "seg_train/seg_train"), ("labelled-test/train", "seg_test/seg_test"),
                           ("labelled/test", "seg_pred/seg_pred"),
                           ("labelled/sample_submission.csv", "sample_submission.csv")):
        (intel / target).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / source).rename(intel / target)
    described, notes = infer_competition(intel)
    assert (described.train_images, described.test_images) == ("seg_train/seg_train", "seg_pred/seg_pred")
    assert "trained the 16 images in the class folders of seg_train/seg_train/, not the 8 of seg_test/seg_test/ " \
           f"(train_images; edit dataset/{DESCRIPTION} to change it)" in notes  # pass 40: labelled test images unused
    (intel / "seg_test" / "seg_test").rename(intel / "valid")  # pass 38: a larger valid/ beside train/
    plant_seedlings(tmp_path / "more", n=40, n_test=1)
    for path in (tmp_path / "more" / "train").glob("*/*.png"):
        path.rename(intel / "valid" / path.parent.name / f"v{path.name}")
    assert infer_competition(intel)[0].train_images == "seg_train/seg_train"
    write_cifar_shape(tmp_path / "masks", n_train=8, n_test=4)
    shutil.copytree(tmp_path / "masks" / "train", tmp_path / "masks" / "masks")
    assert infer_competition(tmp_path / "masks")[0].train_images == "train"
    (tmp_path / "masks" / "train").rename(tmp_path / "masks" / "pictures")
    (tmp_path / "masks" / "masks").rename(tmp_path / "masks" / "photos")  # named for nothing: no way to tell
    with pytest.raises(PipelineError, match=r"trainLabels.csv: its ids name the images of both photos/ and pictures/ "
                                            r"alike .*leave the other folder out"):
        infer_competition(tmp_path / "masks")


def nest_class_images(root, subfolder, classes=SEEDLINGS):
    """Moves the images of each of `classes` in root/train/<class>/ into root/train/<class>/<subfolder>/."""
    for species in classes:
        (root / "train" / species / subfolder).mkdir(parents=True)
        for path in sorted((root / "train" / species).glob("*.png")):
            path.rename(root / "train" / species / subfolder / path.name)


def test_images_below_class_folders_are_their_class_and_the_set_trained_is_said(project, tmp_path):
    """Pass 38: COVID-19 Radiography's <class>/images/ beside <class>/masks/ was read as the classes images and masks
    (accuracy 0.00); images in train/<class>/2019/ were left out without a word (5 classes lost); a valid/ of class
    folders beside train/ was left out without a note."""
    covid = tmp_path / "covid"
    plant_seedlings(covid, n=40, n_test=4)
    nest_class_images(covid, "images")
    for path in covid.glob("train/*/images/*.png"):
        (path.parent.parent / "masks").mkdir(exist_ok=True)
        Image.new("L", (32, 32)).save(path.parent.parent / "masks" / path.name)
    described, notes = infer_competition(covid)
    assert (described.label_kind, described.train_images) == ("folders", "train")
    assert any(n.startswith("train/: images in subfolders of its class folders (Black-grass/images/") for n in notes)
    fetch(archive=competition_zip(covid, tmp_path / "covid.zip"))
    data = check_train(project / "dataset")
    assert data.classes == list(SEEDLINGS) and len(data.ids) == 40 and data.ids[0].startswith("Black-grass/images/")
    decoded = training_arrays(project / "dataset").images  # two folders down, and the images, not their black masks
    assert decoded.shape[0] == 40 and decoded.reshape(40, -1).max(axis=1).min() > 0
    years = tmp_path / "years"
    plant_seedlings(years, n=40, n_test=4)
    nest_class_images(years, "2019", SEEDLINGS[:2])  # two classes below a subfolder, two not
    described, _ = infer_competition(years)
    write_competition(years, described)
    assert sorted(check_train(years).classes) == sorted(SEEDLINGS) and len(check_train(years).ids) == 40
    nest_class_images(years, "2020", SEEDLINGS[2:])
    for path in sorted((years / "train" / SEEDLINGS[2] / "2020").glob("*.png"))[:3]:
        (years / "train" / SEEDLINGS[2] / "2019").mkdir(exist_ok=True)
        path.rename(years / "train" / SEEDLINGS[2] / "2019" / path.name)
    (years / DESCRIPTION).unlink()
    with pytest.raises(PipelineError, match=rf"train: its class folder {SEEDLINGS[2]}/ holds folders of images "
                                            r"\(2019, 2020\), so whether those or the folders above them are the "
                                            r"classes cannot be told; keep each class's images in its class folder"):
        infer_competition(years)
    (years / "train" / SEEDLINGS[2] / "2020").rename(years / "train" / SEEDLINGS[2] / "test")
    with pytest.raises(PipelineError, match=rf"train: its class folder {SEEDLINGS[2]}/ holds folders of images named "
                                            r"for a split or for labels \(test\), which are no training images"):
        infer_competition(years)
    valid = tmp_path / "valid"
    plant_seedlings(valid, n=16, n_test=4)
    plant_seedlings(tmp_path / "more", n=24, n_test=1)
    (tmp_path / "more" / "train").rename(valid / "valid")
    described, notes = infer_competition(valid)
    assert described.train_images == "train"
    assert "trained the 16 images in the class folders of train/, not the 24 of valid/ (train_images; edit " \
           f"dataset/{DESCRIPTION} to change it)" in notes


def test_class_names_like_masks_spread_test_images_and_nested_competitions_are_read_or_named(project, tmp_path):
    """Pass 38: face-mask classes (with_mask, without_mask) are classes; chest-xray's test/NORMAL/ and
    test/PNEUMONIA/ were taken as test/NORMAL/; a competition under input/<name>/ said "among no CSVs"; a metadata
    CSV and a probability sample beside class folders were advised what could not be done."""
    masks = tmp_path / "masks"
    plant_seedlings(masks, n=16, n_test=4)
    for old, new in zip(SEEDLINGS, ("with_mask", "without_mask", "mask_weared_incorrect", "masked")):
        (masks / "train" / old).rename(masks / "train" / new)
    described, _ = infer_competition(masks)
    assert (described.label_kind, described.train_images) == ("folders", "train")
    write_competition(masks, described)
    assert len(check_train(masks).classes) == 4
    xray = tmp_path / "xray"
    plant_seedlings(xray, n=16, n_test=20)
    for k, path in enumerate(sorted((xray / "test").glob("*.png"))):
        (xray / "test" / ("NORMAL", "PNEUMONIA")[k % 2]).mkdir(exist_ok=True)
        path.rename(xray / "test" / ("NORMAL", "PNEUMONIA")[k % 2] / path.name)
    with pytest.raises(PipelineError, match=r"sample_submission.csv: its ids name 10 images in test/NORMAL/ and 10 "
                                            r"more in test/PNEUMONIA/, but the test images are read from one folder: "
                                            r"move them into one"):
        infer_competition(xray)
    plant_seedlings(tmp_path / "nested" / "input" / "seedlings", n=16, n_test=4)
    fetch(archive=competition_zip(tmp_path / "nested", tmp_path / "nested.zip"))
    assert read_competition(project / "dataset").train_images == "train"
    (tmp_path / "nested" / "input" / "notes.txt").write_text("beside the competition")
    with pytest.raises(PipelineError, match=r"no CSV at its top, but input/seedlings/ holds a sample submission \(the "
                                            r"competition one level down or more\?\); fetch an archive of that"):
        infer_competition(tmp_path / "nested")
    meta = tmp_path / "meta"
    plant_seedlings(meta, n=16, n_test=4)
    files = sorted((meta / "train").glob("*/*.png"))
    pd.DataFrame({"image": [f.name for f in files], "width": "32"}).to_csv(meta / "metadata.csv", index=False)
    with pytest.raises(PipelineError, match=r"metadata.csv: its ids name the images in the class folders of train/, "
                                            r"but no column .*; if the folders are the classes and metadata.csv only "
                                            r"describes the images, move it out of the competition's folder"):
        infer_competition(meta)
    (meta / "metadata.csv").unlink()
    pd.DataFrame({"file": pd.read_csv(meta / "sample_submission.csv")["file"], "species": 0.5}).to_csv(
        meta / "sample_submission.csv", index=False)
    shutil.rmtree(meta / "train" / SEEDLINGS[2]), shutil.rmtree(meta / "train" / SEEDLINGS[3])
    with pytest.raises(PipelineError, match=r"not 0 and 1: name the class folders 0 and 1 \(1 for the class whose"):
        infer_competition(meta)


def test_a_pixel_test_csv_with_an_id_column_keeps_its_ids_and_a_labelled_one_scores(project, tmp_path):
    """Pass 36/37: Kannada-MNIST's test.csv (`id`, then pixels; ids from 0 as its sample's) was refused with advice
    that led to a second error; a digit-recognizer test.csv with labels left a solution.csv headed id,label, which
    `--score` refused beside a sample headed ImageId,Label."""
    source = tmp_path / "kannada"
    digit_recognizer(source)
    test = pd.read_csv(source / "test.csv")
    test = pd.concat([pd.DataFrame({"id": np.arange(len(test)) + 100}), test], axis=1)
    test.to_csv(source / "test.csv", index=False)
    solution = pd.read_csv(source / "solution.csv").assign(ImageId=test["id"])
    solution.rename(columns={"ImageId": "id", "Label": "label"}).to_csv(source / "solution.csv", index=False)
    solution.rename(columns={"ImageId": "id", "Label": "label"}).assign(label=0).to_csv(
        source / "sample_submission.csv", index=False)
    fetch(archive=competition_zip(source, tmp_path / "kannada.zip"))
    train(TrainConfig(epochs=4, **QUICK), project / "dataset", project / "weights", Console(quiet=True))
    scored = predict(score=source / "solution.csv")
    written = pd.read_csv(project / "submissions" / "submission.csv", dtype=str)
    assert written["id"].tolist() == [str(i) for i in range(100, 140)] and scored.score > 0.5
    labelled = tmp_path / "labelled"
    digit_recognizer(labelled)
    test = pd.read_csv(labelled / "test.csv")
    test = pd.concat([pd.read_csv(labelled / "solution.csv")["Label"].rename("label"), test], axis=1)
    test.to_csv(labelled / "test.csv", index=False)
    fetch(archive=competition_zip(labelled, tmp_path / "labelled.zip"), force=True)
    assert list(pd.read_csv(project / "dataset" / "solution.csv").columns) == ["ImageId", "Label"]
    check_solution(project / "dataset" / "solution.csv", project / "dataset", "accuracy")
    pd.concat([pd.DataFrame({"id": [7] * len(test)}), test.drop(columns="label")], axis=1).to_csv(
        labelled / "test.csv", index=False)
    with pytest.raises(PipelineError, match=r"test.csv: its 'id' column repeats ids \(7\); each row's id must be its "
                                            r"own: fix them"):
        fetch(archive=competition_zip(labelled, tmp_path / "repeated.zip"), force=True)


def test_ids_that_are_the_file_numbers_written_otherwise_say_how_to_write_them(tmp_path):
    """Pass 37: ids written 1.0 (a float column) or 0001 for files 1.png were called missing images."""
    write_cifar_shape(tmp_path, n_train=12, n_test=4)
    labels = pd.read_csv(tmp_path / "trainLabels.csv", dtype=str)
    labels.assign(id=labels["id"] + ".0").to_csv(tmp_path / "trainLabels.csv", index=False)
    with pytest.raises(PipelineError, match=r"trainLabels.csv: its 'id' values name no file, but they are the numbers "
                                            r"of the files' names written otherwise \('\d+\.0' for train/\d+\.png\); "
                                            r"write each id as its file's name is written"):
        infer_competition(tmp_path)
    labels.to_csv(tmp_path / "trainLabels.csv", index=False)
    sample = pd.read_csv(tmp_path / "sampleSubmission.csv", dtype=str)
    sample.assign(id=sample["id"].str.zfill(4)).to_csv(tmp_path / "sampleSubmission.csv", index=False)
    with pytest.raises(PipelineError, match=r"sampleSubmission.csv: its 'id' values name no file, .*\('00\d\d' for "
                                            r"test/\d+\.png\)"):
        infer_competition(tmp_path)


def test_two_csvs_named_as_labels_are_told_apart_by_the_label_column(tmp_path):
    """Pass 37: iMet's train.csv beside its labels.csv (the attributes' names) was refused, advised to write a
    competition.json that fetch never keeps."""
    write_cifar_shape(tmp_path, n_train=8, n_test=4)
    pd.DataFrame({"attribute_id": ["1", "2"], "attribute_name": ["a", "b"]}).to_csv(tmp_path / "labels.csv",
                                                                                  index=False)
    with pytest.raises(PipelineError, match=r"cannot tell which of labels.csv, trainLabels.csv holds the training "
                                            r"labels; fetch with --label-column NAME naming its label column"):
        infer_competition(tmp_path)
    described, notes = infer_competition(tmp_path, ("label",))
    assert (described.labels_csv, described.label_columns) == ("trainLabels.csv", ("label",))
    assert "read the training labels from trainLabels.csv, not labels.csv (labels_csv; edit" in notes[0]
    pd.DataFrame({"id": ["1"], "label": ["a"]}).to_csv(tmp_path / "labels.csv", index=False)
    with pytest.raises(PipelineError, match=r"labels.csv, trainLabels.csv of them hold\(s\) --label-column label; "
                                            r"name a column only the labels' CSV holds"):
        infer_competition(tmp_path, ("label",))


def test_ids_naming_files_of_a_format_not_read_say_to_convert_them(tmp_path):
    """Pass 35: SIIM's train/<id>.dcm (DICOM) was called "no image file is named", as if the images were missing."""
    write_cifar_shape(tmp_path, n_train=8, n_test=4)
    for path in (tmp_path / "train").glob("*.png"):
        path.rename(path.with_suffix(".dcm"))
    with pytest.raises(PipelineError, match=r"trainLabels.csv: its 'id' values name files such as train/\d+\.dcm, and "
                                            r"\.dcm is not an image format pipeline reads \(.*\); convert them to PNG"):
        infer_competition(tmp_path)


def test_masks_beside_class_images_are_left_out_and_whole_numbers_written_both_ways_are_one_class(tmp_path):
    """Pass 39: COVID-QU-Ex's <class>/images/ beside <class>/lung masks/, a ground_truth/ folder and BUSI's
    `benign (1)_mask.png` beside `benign (1).png` were trained as images of the class (held-out accuracy 0.25); labels
    2.0 beside 2 were two classes, class 2 submitted as 2.0 (0.80; 0.00 where every class was written both ways)."""
    qu = tmp_path / "qu"
    plant_seedlings(qu, n=16, n_test=4)
    nest_class_images(qu, "images")
    for path in qu.glob("train/*/images/*.png"):
        for masks in ("lung masks", "infection masks"):
            (path.parent.parent / masks).mkdir(exist_ok=True)
            Image.new("L", (32, 32)).save(path.parent.parent / masks / path.name)
    busi = tmp_path / "busi"
    plant_seedlings(busi, n=16, n_test=4)
    for path in sorted(busi.glob("train/*/*.png")):
        Image.new("RGB", (32, 32)).save(path.with_name(f"{path.stem}_mask.png"))
        Image.new("RGB", (32, 32)).save(path.with_name(f"{path.stem}_mask_1.png"))
    truth = tmp_path / "truth"
    plant_seedlings(truth, n=16, n_test=4)
    for path in sorted(truth.glob("train/*/*.png")):
        (path.parent / "ground_truth").mkdir(exist_ok=True)
        Image.new("RGB", (32, 32)).save(path.parent / "ground_truth" / path.name)
    for root, left_out in ((qu, "8 folder(s) and file(s)"), (busi, "32 folder(s) and file(s)"),
                           (truth, "4 folder(s) and file(s)")):
        described, notes = infer_competition(root)
        write_competition(root, described)
        data = check_train(root)
        assert len(data.ids) == 16 and not any("mask" in i or "ground_truth" in i for i in data.ids), root
        assert any(n.startswith(f"train/: {left_out} in its class folders left out as the masks or labels") for n in
                   notes), notes
    mixed = tmp_path / "mixed"
    cassava(mixed, n=40, n_test=8)
    labels = pd.read_csv(mixed / "train.csv", dtype=str)
    labels.loc[::4, "label"] = labels["label"] + ".0"  # a quarter of every class written k.0
    labels.to_csv(mixed / "train.csv", index=False)
    described, notes = infer_competition(mixed)
    assert described.label_kind == "integers" and any("read as the whole numbers they are" in n for n in notes)
    write_competition(mixed, described)
    assert check_train(mixed).classes == ["0", "1", "2", "3"]


def test_a_run_trained_on_other_labels_of_the_same_classes_is_not_predicted_with(trained):
    """Pass 39: after `fetch --force` of another competition of the same class names (or its classes renamed in a
    cycle), `predict` took the newest run, trained on the other labels, without a word: accuracy 0.00."""
    path = trained / "dataset" / "trainLabels.csv"
    kept = path.read_bytes()
    labels = pd.read_csv(path, dtype=str)
    cycle = dict(zip(CLASSES, CLASSES[1:] + CLASSES[:1]))
    path.unlink()
    labels.assign(label=labels["label"].map(cycle)).to_csv(path, index=False)
    with pytest.raises(PipelineError, match=r"exp/best.pt: trained on other labeled images than .*dataset holds now "
                                            r"\(their ids or labels differ: fetched again or relabelled since\)"):
        predict(tta="none")
    path.unlink()
    path.write_bytes(kept)
    predict(tta="none")


def test_folders_of_images_that_are_not_class_folders_say_why(tmp_path):
    """Pass 39: class folders named `valid` and `invalid`, a single class folder, and class folders at the
    competition's top were all told "nor a training folder of class folders", with no way out."""
    root = tmp_path / "names"
    plant_seedlings(root, n=16, n_test=4)
    (root / "train" / SEEDLINGS[0]).rename(root / "train" / "valid")
    with pytest.raises(PipelineError, match=r"the folders of train/ \(.*valid\) are no class folders, as valid never "
                                            r"name\(s\) a class \(a split, images, labels or masks\): rename it"):
        infer_competition(root)
    for name in (SEEDLINGS[1], SEEDLINGS[2], SEEDLINGS[3]):
        shutil.rmtree(root / "train" / name)
    (root / "train" / "valid").rename(root / "train" / "cat")
    with pytest.raises(PipelineError, match=r"train/ holds one folder of images \(cat/\), and a classifier needs two"):
        infer_competition(root)
    top = tmp_path / "top"
    plant_seedlings(top, n=16, n_test=4)
    for path in (top / "train").iterdir():
        path.rename(top / path.name)
    (top / "train").rmdir()
    with pytest.raises(PipelineError, match=r"the class folders \(Black-grass/, Charlock/, Cleavers/, …\) are "
                                            r"at the competition's top: move them into a train/ folder"):
        infer_competition(top)


def test_ids_written_two_ways_swapped_columns_and_folder_parts_are_named_for_what_they_are(tmp_path):
    """Pass 39: ids half with their extension and half without blamed the sample; a labels CSV `label,id` said "no
    image file is named"; sample ids `PNEUMONIA/t0.jpeg` were said to name nothing; a sample without extensions beside
    class folders was told to write "both CSVs" alike."""
    write_cifar_shape(tmp_path / "two", n_train=20, n_test=4)
    labels = pd.read_csv(tmp_path / "two" / "trainLabels.csv", dtype=str)
    labels.loc[::2, "id"] = labels["id"] + ".png"
    labels.to_csv(tmp_path / "two" / "trainLabels.csv", index=False)
    with pytest.raises(PipelineError, match=r"trainLabels.csv: its 'id' values name the images of train/ two ways, 10 "
                                            r"as file names and 10 without their extension \(.png\); write them one"):
        infer_competition(tmp_path / "two")
    write_cifar_shape(tmp_path / "swapped", n_train=20, n_test=4)
    for name in ("trainLabels.csv", "sampleSubmission.csv"):
        frame = pd.read_csv(tmp_path / "swapped" / name, dtype=str)
        frame[["label", "id"]].to_csv(tmp_path / "swapped" / name, index=False)
    with pytest.raises(PipelineError, match=r"trainLabels.csv: its ids are in its 'id' column \(they name the images in "
                                            r"train/\), not in its first, 'label'; the first column of trainLabels.csv"):
        infer_competition(tmp_path / "swapped")
    xray = tmp_path / "xray"
    plant_seedlings(xray, n=16, n_test=4)
    (xray / "test" / "PNEUMONIA").mkdir()
    for path in (xray / "test").glob("*.png"):
        path.rename(xray / "test" / "PNEUMONIA" / path.name)
    sample = pd.read_csv(xray / "sample_submission.csv", dtype=str)
    sample.assign(file="PNEUMONIA/" + sample["file"]).to_csv(xray / "sample_submission.csv", index=False)
    with pytest.raises(PipelineError, match=r"sample_submission.csv: its 'file' values hold a folder as well as a file "
                                            r"name \('PNEUMONIA/.*png', in test/\), but ids name files in one image"):
        infer_competition(xray)
    for path in (xray / "test" / "PNEUMONIA").glob("*.png"):
        path.rename(xray / "test" / path.name)
    sample.assign(file=sample["file"].str.replace(".png", "")).to_csv(xray / "sample_submission.csv", index=False)
    with pytest.raises(PipelineError, match=r"sample_submission.csv: its ids name files '<id>.png' in test/, but the "
                                            r"training images, in the class folders of train/, are named by their file"):
        infer_competition(xray)


def test_lines_about_an_edited_description_name_its_own_fields(trained):
    """Pass 39: an edited submission_id was told to fix id_column and label_columns; an edited submission_columns
    with --score blamed the solution's header; a model's classes beside class folders read "only  has"."""
    from pipeline.layout import class_difference

    described = json.loads((trained / "dataset" / DESCRIPTION).read_text()) if (
        trained / "dataset" / DESCRIPTION).is_file() else {}
    solution = trained / "solution.csv"
    pd.read_csv(trained / "dataset" / "sampleSubmission.csv", dtype=str).to_csv(solution, index=False)
    for edit, message in (({"submission_id": "ID"}, r"sampleSubmission.csv: missing column\(s\) ID .*name its columns "
                                                    r"in dataset/competition.json \(submission_id, submission_columns\)"),
                          ({"submission_columns": ["species"]}, r"competition.json: describes the submission as "
                                                                r"id,species, but .*sampleSubmission.csv has id,label")):
        (trained / "dataset" / DESCRIPTION).write_text(json.dumps({**described, **edit}))
        with pytest.raises(PipelineError, match=message):
            predict(tta="none", score=solution)
    (trained / "dataset" / DESCRIPTION).write_text(json.dumps({"labels_csv": "", "label_kind": "folders"}))
    assert "only train/ has kiwi" in class_difference(["a", "b"], ["a", "kiwi"], trained / "dataset")


def test_pass_40_masks_named_otherwise_padded_codes_and_lines(project, tmp_path):
    """Pass 40: masks `123_seg.png` or `mask_123.png` beside `123.png` were trained as images (900 where 450); codes
    written `01` beside `1` for most numbers were read both ways in one column (20 classes); Intel's labelled
    seg_test/ went unnoted; ids `1.dcm` were called missing; `.png` beside `.PNG` was told to fix image_suffix."""
    for name in ("seg", "mask_"):
        root = tmp_path / name
        plant_seedlings(root, n=16, n_test=4)
        for path in sorted(root.glob("train/*/*.png")):
            masked = f"{path.stem}_seg.png" if name == "seg" else f"mask_{path.name}"
            Image.new("RGB", (32, 32)).save(path.with_name(masked))
        described, notes = infer_competition(root)
        write_competition(root, described)
        assert len(check_train(root).ids) == 16 and any("16 folder(s) and file(s) in its class folders left out" in n
                                                         for n in notes), notes
    padded = tmp_path / "padded"
    cassava(padded, n=60, n_test=8)
    labels = pd.read_csv(padded / "train.csv", dtype=str)
    labels.loc[::3, "label"] = "0" + labels["label"]  # a third of every code written 0k
    labels.to_csv(padded / "train.csv", index=False)
    write_competition(padded, infer_competition(padded)[0])
    assert check_train(padded).classes == ["0", "1", "2", "3"]
    write_cifar_shape(tmp_path / "dicom", n_train=8, n_test=4)
    labels = pd.read_csv(tmp_path / "dicom" / "trainLabels.csv", dtype=str)
    labels.assign(id=labels["id"] + ".dcm").to_csv(tmp_path / "dicom" / "trainLabels.csv", index=False)
    for path in (tmp_path / "dicom" / "train").glob("*.png"):
        path.rename(path.with_suffix(".dcm"))
    with pytest.raises(PipelineError, match=r"\.dcm is not an image format pipeline reads"):
        infer_competition(tmp_path / "dicom")
    write_cifar_shape(tmp_path / "case", n_train=8, n_test=4)
    for k, path in enumerate(sorted((tmp_path / "case" / "test").glob("*.png"))):
        if k == 1:
            path.rename(path.with_suffix(".PNG"))
    write_competition(tmp_path / "case", infer_competition(tmp_path / "case")[0])
    with pytest.raises(PipelineError, match=r"the folder holds them as .PNG files, beside .png ones: give every image "
                                            r"one suffix"):
        check_test(tmp_path / "case")


def test_a_copied_project_predicts_again_over_its_own_predictions(trained, tmp_path, monkeypatch):
    """Pass 40: after `cp -r` of a trained project, predict refused: "holds the predictions of <the original's
    best.pt>, another model of the same label"."""
    predict(tta="none")
    shutil.copytree(trained, tmp_path / "copy")
    monkeypatch.chdir(tmp_path / "copy")
    predict(tta="none")
    meta = json.loads((tmp_path / "copy" / "submissions" / "exp.probs.json").read_text())
    assert meta["checkpoint"].startswith(str(tmp_path / "copy"))


def test_codes_written_both_ways_for_several_numbers_note_only_what_was_read(tmp_path):
    """Pass 41: `01` beside `1` for several codes were read as one class each, but the note also said "'01' and '1'
    kept as classes of their own"."""
    from pipeline.layout import normalised_labels

    written = pd.Series(["1", "01", "1", "2", "02", "2", "3", "3", "03"] * 4)
    read, notes = normalised_labels(written, "integers")
    assert sorted(set(read)) == ["1", "2", "3"] and not any("kept as classes" in n for n in notes), notes
    read, notes = normalised_labels(pd.Series(["1"] * 9 + ["01"] * 8 + ["2"] * 9), "integers")  # a single pair
    assert sorted(set(read)) == ["01", "1", "2"] and any("'01' and '1' kept as classes of their own" in n for n in notes)


def test_labels_that_happen_to_name_files_are_not_taken_for_ids(tmp_path):
    """Pass 41: ids written `7` and `8.png` beside labels 0 … 3 (which name the files 1.png … 3.png too) were told
    that the ids are in the label column."""
    write_cifar_shape(tmp_path, n_train=20, n_test=4, classes=("0", "1", "2", "3"))
    labels = pd.read_csv(tmp_path / "trainLabels.csv", dtype=str)
    labels.loc[::2, "id"] = labels["id"] + ".png"
    labels.to_csv(tmp_path / "trainLabels.csv", index=False)
    with pytest.raises(PipelineError, match=r"trainLabels.csv: its 'id' values name the images of train/ two ways"):
        infer_competition(tmp_path)
