import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from benchmarks.baseline import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    PngDataset,
    eval_transform,
    train_transform,
)
from pipeline.dataset import stratified_split
from pipeline.errors import PipelineError
from pipeline.layout import check_train, id_sort_key, load_train_set
from tests.fixtures import CLASSES


def test_images_in_numeric_id_order_with_sorted_classes(competition):
    data = load_train_set(competition)
    assert [int(i) for i in data.ids] == list(range(1, 401))  # the CSV lists them shuffled
    assert data.classes == sorted(CLASSES)
    labels = pd.read_csv(competition / "trainLabels.csv", dtype=str).set_index("id")["label"]
    assert all(data.classes[t] == labels[i] for i, t in zip(data.ids, data.targets))


def test_id_sort_key_is_numeric_first():
    assert sorted(["10", "b", "2", "a", "1"], key=id_sort_key) == ["1", "2", "10", "a", "b"]


def test_split_is_stratified_disjoint_and_seeded():
    targets = np.repeat(np.arange(4), 50)
    train, val = stratified_split(targets, 0.2, seed=42)
    assert len(val) == 40 and len(train) == 160
    assert not set(train) & set(val) and set(train) | set(val) == set(range(200))
    assert np.bincount(targets[val]).tolist() == [10, 10, 10, 10]
    again_train, again_val = stratified_split(targets, 0.2, seed=42)
    assert np.array_equal(val, again_val) and np.array_equal(train, again_train)
    assert not np.array_equal(val, stratified_split(targets, 0.2, seed=7)[1])


def test_split_errors_are_clear():
    with pytest.raises(PipelineError, match="--val-fraction must be between 0 and 1"):
        stratified_split(np.zeros(10, int), 1.5, 0)
    with pytest.raises(PipelineError, match="cannot split 3 images"):
        stratified_split(np.array([0, 1, 2]), 0.2, 0)


def test_train_transform_crops_within_padding_and_flips():
    image = Image.fromarray(np.arange(32 * 32 * 3, dtype=np.uint8).reshape(32, 32, 3))
    transform = train_transform((32, 32), (0, 0, 0), (1, 1, 1))
    torch.manual_seed(0)
    outputs = [transform(image) for _ in range(30)]
    assert all(o.shape == (3, 32, 32) and o.dtype == torch.float32 for o in outputs)
    assert len({o.numpy().tobytes() for o in outputs}) > 5  # random crops/flips differ
    plain = eval_transform((0, 0, 0), (1, 1, 1))(image)
    assert torch.equal(plain, eval_transform((0, 0, 0), (1, 1, 1))(image))
    assert torch.allclose(plain * 255, torch.from_numpy(np.array(image)).permute(2, 0, 1).float())


def test_normalization_uses_cifar_statistics():
    image = Image.fromarray(np.full((8, 8, 3), 255, np.uint8))
    out = eval_transform(CIFAR10_MEAN, CIFAR10_STD)(image)
    expected = (1 - torch.tensor(CIFAR10_MEAN)) / torch.tensor(CIFAR10_STD)
    assert torch.allclose(out[:, 0, 0], expected)


def test_png_dataset_items(competition):
    data = load_train_set(competition)
    dataset = PngDataset(data.image_dir, data.ids, data.targets, eval_transform(CIFAR10_MEAN, CIFAR10_STD))
    image, target = dataset[3]
    assert image.shape == (3, 32, 32) and target == data.targets[3]
    unlabeled = PngDataset(competition / "test", ["1"], None, eval_transform(CIFAR10_MEAN, CIFAR10_STD))
    assert unlabeled[0][1] == -1


def test_layout_errors_name_the_problem(competition, tmp_path):
    import shutil
    root = tmp_path / "d"
    shutil.copytree(competition, root)
    (root / "train" / "999.png").write_bytes((root / "train" / "1.png").read_bytes())
    with pytest.raises(PipelineError, match=r"1 problem\(s\) in the training data: train/999.png: not listed in trainLabels.csv"):
        check_train(root)
    (root / "train" / "999.png").unlink()
    (root / "trainLabels.csv").write_text("id,label\n1,a\n1,b\n")
    with pytest.raises(PipelineError, match=r"trainLabels.csv: id 1 appears 2 times"):
        check_train(root)
    (root / "trainLabels.csv").write_text("id,class\n1,a\n")
    with pytest.raises(PipelineError, match="missing column\\(s\\) label"):
        check_train(root)
    (root / "trainLabels.csv").unlink()
    with pytest.raises(PipelineError, match="trainLabels.csv: not found; run `pipeline fetch` first"):
        check_train(root)
