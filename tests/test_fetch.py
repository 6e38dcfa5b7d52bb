import json
import sys
import zipfile

import pytest

from pipeline.errors import PipelineError
from pipeline.fetch import MARKER, fetch
from pipeline.layout import check_test, check_train
from pipeline.sample import CLASSES as SAMPLE_CLASSES
from tests.conftest import SECRET_KEY
from tests.fixtures import kaggle_zip, write_competition


def serve(kaggle, competition_zip, name="cifar-10"):
    kaggle.competitions[name] = competition_zip.read_bytes()


@pytest.mark.smoke
@pytest.mark.requires("kaggle", "py7zr")
def test_fetch_downloads_and_lays_out_competition(kaggle, competition_zip, project):
    serve(kaggle, competition_zip)
    result = fetch()
    root = project / "dataset"
    assert (result.train_images, result.test_images, result.already_complete) == (400, 40, False)
    assert len(check_train(root).ids) == 400 and len(check_test(root)) == 40
    assert sorted(p.name for p in root.iterdir() if not p.name.startswith(".")) == [
        "competition.json", "sampleSubmission.csv", "test", "train", "trainLabels.csv"]
    assert json.loads((root / MARKER).read_text())["source"] == "cifar-10"
    assert not list(root.glob(".staging-*"))
    assert (root / ".download" / "cifar-10.zip").is_file()
    # the real client spoke to the stand-in: the API call, then the redirected download, authenticated
    assert [(m, p) for m, p, _ in kaggle.requests] == [
        ("POST", "/api/v1/competitions.CompetitionApiService/DownloadDataFiles"), ("GET", "/files/cifar-10.zip")]
    assert all(auth and auth.startswith("Basic ") for _, _, auth in kaggle.requests)


def test_rerun_finds_data_complete_without_downloading(kaggle, competition_zip, project):
    serve(kaggle, competition_zip)
    fetch()
    calls = len(kaggle.requests)
    again = fetch()
    assert again.already_complete and (again.train_images, again.test_images) == (400, 40)
    assert len(kaggle.requests) == calls


def test_force_downloads_again(kaggle, competition_zip, project):
    serve(kaggle, competition_zip)
    fetch()
    assert not fetch(force=True).already_complete
    assert kaggle.downloads() == 2


def test_rerun_repairs_a_damaged_layout(kaggle, competition_zip, project):
    serve(kaggle, competition_zip)
    fetch()
    next((project / "dataset" / "train").iterdir()).unlink()
    assert not fetch().already_complete
    assert len(check_train(project / "dataset").ids) == 400


def test_other_competition_name(kaggle, competition_zip, project):
    serve(kaggle, competition_zip, "dogs-vs-cats")
    assert fetch("dogs-vs-cats").source == "dogs-vs-cats"
    with pytest.raises(PipelineError, match="holds 'dogs-vs-cats'; pass --force"):
        fetch("cifar-10")


@pytest.mark.parametrize("status, message", [
    (401, "refused the credentials \\(401\\).*settings/api"),
    (403, "\\(403\\).*accept the competition's rules at https://www.kaggle.com/competitions/cifar-10/rules"),
])
def test_http_errors(kaggle, competition_zip, project, status, message):
    serve(kaggle, competition_zip)
    kaggle.status = status
    with pytest.raises(PipelineError, match=message) as error:
        fetch()
    assert SECRET_KEY not in str(error.value)
    assert not (project / "dataset" / MARKER).exists()


def test_unknown_competition_is_404(kaggle, project):
    with pytest.raises(PipelineError, match="no Kaggle competition named 'nope' \\(404\\)"):
        fetch("nope")


def test_missing_credentials(kaggle, competition_zip, project, monkeypatch):
    serve(kaggle, competition_zip)
    monkeypatch.delenv("KAGGLE_USERNAME")
    monkeypatch.delenv("KAGGLE_KEY")
    with pytest.raises(PipelineError, match="no Kaggle credentials.*~/.kaggle/kaggle.json.*KAGGLE_USERNAME and KAGGLE_KEY"):
        fetch()
    assert kaggle.requests == []


def test_connection_failure(project, monkeypatch, tmp_path):
    # no stand-in is listening on port 80 here
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KAGGLE_USERNAME", "tester")
    monkeypatch.setenv("KAGGLE_KEY", SECRET_KEY)
    with pytest.raises(PipelineError, match="cannot reach the Kaggle API"):
        fetch()


def test_archive_downloaded_by_hand(competition_zip, project):
    result = fetch(archive=competition_zip)
    assert (result.train_images, result.test_images) == (400, 40)


def test_notes_on_the_images_name_the_folder_they_are_laid_out_in(project, tmp_path, capsys):
    """An animated test image is noted while fetch decodes it in its staging folder: the note names dataset/test (before,
    the staging folder, gone once fetch ends)."""
    import numpy as np
    from PIL import Image

    animated = tmp_path / "animated"
    write_competition(animated)
    first = Image.open(animated / "test" / "3.png").convert("RGB")
    first.save(animated / "test" / "3.png", save_all=True, append_images=[Image.fromarray(255 - np.asarray(first))])
    fetch(archive=kaggle_zip(animated, tmp_path / "animated.zip"))
    said = " ".join(capsys.readouterr().out.split())
    assert f"note: {project / 'dataset' / 'test'}: 1 image(s) hold several frames" in said, said
    assert ".staging-" not in said


def test_missing_image_is_named_and_nothing_is_trusted(competition, project, tmp_path):
    broken = tmp_path / "broken"
    write_competition(broken)
    (broken / "train" / "7.png").unlink()
    with pytest.raises(PipelineError, match=r"broken.zip: 1 problem\(s\) in the training data: train/7.png: missing \(listed in trainLabels.csv\)"):
        fetch(archive=kaggle_zip(broken, tmp_path / "broken.zip"))
    root = project / "dataset"
    assert not (root / MARKER).exists() and not (root / "train").exists()
    assert not list(root.glob(".staging-*"))


def test_failed_fetch_keeps_previous_data(competition_zip, project, tmp_path):
    fetch(archive=competition_zip)
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"this is not a zip")
    with pytest.raises(PipelineError, match="bad.zip: corrupt or incomplete zip archive .*; download it again"):
        fetch(archive=bad, force=True)
    assert len(check_train(project / "dataset").ids) == 400


def test_test_image_missing_for_sample_submission_id(project, tmp_path):
    broken = tmp_path / "broken"
    write_competition(broken)
    (broken / "test" / "3.png").unlink()
    with pytest.raises(PipelineError, match=r"test: 1 id\(s\) of sampleSubmission.csv have no image: 3.png"):
        fetch(archive=kaggle_zip(broken, tmp_path / "broken.zip"))


@pytest.mark.parametrize("member", ["../escape.txt", "/etc/evil.txt", "train/../../escape.txt"])
def test_path_traversal_member_is_refused(project, tmp_path, member):
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as z:
        z.writestr(member, "x")
    with pytest.raises(PipelineError, match="points outside the target folder"):
        fetch(archive=evil)
    assert not (tmp_path / "escape.txt").exists()


def test_sample_is_offline_and_in_the_same_layout(project):
    result = fetch(sample=True)
    root = project / "dataset"
    labels = check_train(root)
    assert result.train_images == len(labels.ids) >= 2000 and result.test_images >= 500
    assert labels.classes == sorted(SAMPLE_CLASSES) and len(SAMPLE_CLASSES) == 10
    assert (root / "solution.csv").is_file()
    assert fetch(sample=True).already_complete


def test_fetch_leaves_warm_caches(competition_zip, project):
    import numpy as np

    from pipeline.cache import cached_test_images, cached_train_images
    from pipeline.layout import load_train_set
    fetch(archive=competition_zip)
    cache = project / "dataset" / ".cache"
    built = {name: (cache / name).stat().st_mtime_ns for name in ("train.npy", "test.npy")}
    root = project / "dataset"
    ids, test, _ = cached_test_images(root, check_test(root))
    train = cached_train_images(root, load_train_set(root)).images
    assert train.shape == (400, 32, 32, 3) and test.shape == (40, 32, 32, 3) and ids[:3] == ["1", "2", "3"]
    assert {name: (cache / name).stat().st_mtime_ns for name in built} == built  # reused, not rebuilt
    assert np.array_equal(train[0], np.asarray(__import__("PIL.Image").Image.open(root / "train" / "1.png")))


@pytest.mark.parametrize("extractor", ["py7zr", "7-Zip"])
def test_both_7z_extractors_give_the_same_layout(competition_zip, project, monkeypatch, extractor):
    import pipeline.fetch
    if extractor == "py7zr":
        monkeypatch.setattr(pipeline.fetch, "seven_zip", lambda: None)
    elif pipeline.fetch.seven_zip() is None:
        pytest.skip("no 7zz/7z installed (Debian package 7zip)")
    assert (fetch(archive=competition_zip).train_images, len(check_test(project / "dataset"))) == (400, 40)


def test_a_7z_archive_without_py7zr_is_one_line_and_leaves_nothing(competition_zip, project, monkeypatch):
    """As in a GPU machine's image, which has no py7zr: the rest of the pipeline imports without it."""
    monkeypatch.setitem(sys.modules, "py7zr", None)  # `import py7zr` raises ImportError
    with pytest.raises(PipelineError, match=r"\.zip's (train|test)\.7z: a 7z archive needs py7zr, which is not "
                                            r"installed: `pip install py7zr`, then fetch again$"):
        fetch(archive=competition_zip)
    root = project / "dataset"
    assert not (root / MARKER).exists() and not list(root.glob(".staging-*"))


FASHION = "zalando-research/fashionmnist"


def pixel_csv(labels, images, with_label=True):
    import pandas as pd
    frame = pd.DataFrame(images.reshape(len(images), -1), columns=[f"pixel{k}" for k in range(1, 785)])
    if with_label:
        frame.insert(0, "label", labels)
    return frame.to_csv(index=False)


def fashion_zip(path, train=(40, 0), test=(10, 1), test_labels=True):
    """A tiny Kaggle Fashion-MNIST: label + 784 pixel columns, as the dataset's two CSVs."""
    import numpy as np
    zips = {}
    with zipfile.ZipFile(path, "w") as z:
        for name, (n, seed) in (("fashion-mnist_train.csv", train), ("fashion-mnist_test.csv", test)):
            rng = np.random.default_rng(seed)
            labels, images = np.arange(n) % 10, rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
            z.writestr(name, pixel_csv(labels, images, with_label=test_labels or "train" in name))
            zips[name] = (labels, images)
    return zips


def test_fashion_mnist_dataset_is_converted_to_the_competition_layout(kaggle, project, tmp_path):
    import numpy as np
    import pandas as pd
    from PIL import Image
    written = fashion_zip(tmp_path / "fashionmnist.zip")
    kaggle.datasets[FASHION] = (tmp_path / "fashionmnist.zip").read_bytes()
    result = fetch(dataset=FASHION)
    root = project / "dataset"
    assert (result.source, result.train_images, result.test_images) == (FASHION, 40, 10)
    assert [(m, p) for m, p, _ in kaggle.requests] == [
        ("POST", "/api/v1/datasets.DatasetApiService/DownloadDataset"), ("GET", f"/files/datasets/{FASHION}.zip")]
    labels, images = written["fashion-mnist_train.csv"]
    with Image.open(root / "train" / "7.png") as image:
        assert image.mode == "L" and image.size == (28, 28)
        assert np.array_equal(np.asarray(image), images[6])
    train_labels = pd.read_csv(root / "trainLabels.csv")
    assert train_labels["label"].iloc[:3].tolist() == ["T-shirt/top", "Trouser", "Pullover"]
    assert pd.read_csv(root / "solution.csv")["label"].iloc[9] == "Ankle boot"
    assert len(pd.read_csv(root / "sampleSubmission.csv")) == 10
    assert np.load(root / ".cache" / "train.npy").shape == (40, 28, 28, 1)
    assert not (root / ".raw").exists() and not list(root.glob(".staging-*"))
    assert fetch(dataset=FASHION).already_complete


def test_dataset_errors(kaggle, project, tmp_path):
    with pytest.raises(PipelineError, match="no Kaggle dataset named 'someone/nothing' .404.: check the name at "
                                            "https://www.kaggle.com/datasets/someone/nothing"):
        fetch(dataset="someone/nothing")
    with pytest.raises(PipelineError, match="expected owner/name"):
        fetch(dataset="fashionmnist")
    with pytest.raises(PipelineError, match="give only one of them"):
        fetch(dataset=FASHION, sample=True)
    with zipfile.ZipFile(tmp_path / "odd.zip", "w") as z:
        z.writestr("train.csv", "label,p1,p2,p3\n1,0,0,0\n")
        z.writestr("test.csv", "label,p1,p2,p3\n1,0,0,0\n")
    with pytest.raises(PipelineError, match="train.csv: 3 pixel columns do not make a square greyscale image"):
        fetch(dataset="someone/odd", archive=tmp_path / "odd.zip")
    assert not (project / "dataset" / "train").exists()


def test_unlabeled_test_csv_gives_no_solution(project, tmp_path):
    fashion_zip(tmp_path / "digits.zip", test_labels=False)
    result = fetch(dataset="someone/digits", archive=tmp_path / "digits.zip")
    root = project / "dataset"
    assert result.test_images == 10 and not (root / "solution.csv").exists()
    assert sorted(set(__import__("pandas").read_csv(root / "trainLabels.csv")["label"])) == list(range(10))
