import numpy as np
import pytest
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support, roc_auc_score

from pipeline.figures import ValPredictions, per_class_table, plot_confusion
from tests.fixtures import assert_png


def test_confusion_and_per_class_match_sklearn(tmp_path):
    classes = ["cat", "dog", "a-rather-long-class-name"]
    actual = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    predicted = np.array([0, 1, 0, 1, 1, 2, 0, 2, 1])
    predictions = ValPredictions(classes, actual, predicted)
    counts = plot_confusion(predictions, "known", tmp_path / "confusion.png")
    expected = np.array([[2, 1, 0], [0, 2, 0], [1, 1, 2]])
    np.testing.assert_array_equal(counts, expected)
    np.testing.assert_array_equal(counts, confusion_matrix(actual, predicted))
    assert_png(tmp_path / "confusion.png")
    table = per_class_table(predictions)
    precision, recall, f1, support = precision_recall_fscore_support(actual, predicted)
    np.testing.assert_allclose(table[["precision", "recall", "f1"]].to_numpy().T, [precision, recall, f1], atol=1e-4)
    assert table["support"].tolist() == support.tolist() == [3, 2, 4]
    assert table["accuracy"].tolist() == pytest.approx([2 / 3, 1.0, 0.5], abs=1e-4)


def test_many_classes_stay_legible(tmp_path):
    rng = np.random.default_rng(0)
    classes = [f"class-{k:03d}" for k in range(40)]
    actual = rng.integers(0, 40, 2000)
    predicted = np.where(rng.random(2000) < 0.7, actual, rng.integers(0, 40, 2000))
    plot_confusion(ValPredictions(classes, actual, predicted), "forty", tmp_path / "c.png")
    assert_png(tmp_path / "c.png", (1500, 800))


def test_per_class_roc_auc_is_each_class_against_the_rest_and_blank_for_a_class_val_lacks():
    rng = np.random.default_rng(0)
    actual = np.array([0, 0, 1, 1, 1, 0, 1, 0])
    probabilities = rng.dirichlet(np.ones(3), len(actual))  # class 2 never in val
    table = per_class_table(ValPredictions(["a", "b", "c"], actual, probabilities.argmax(1), probabilities))
    for k in (0, 1):
        assert table["roc_auc"][k] == pytest.approx(roc_auc_score(actual == k, probabilities[:, k]), abs=1e-4)
    assert np.isnan(table["roc_auc"][2])
    assert "roc_auc" not in per_class_table(ValPredictions(["a", "b", "c"], actual, actual))  # no probabilities


def test_most_confused_pairs_and_the_gallery_of_highest_losses(tmp_path):
    from pipeline.figures import confused_pairs, highest_losses, plot_top_losses

    classes = ["cat", "dog", "fox"]
    counts = np.array([[5, 3, 0], [1, 6, 0], [2, 3, 4]])
    pairs = confused_pairs(counts, classes)
    assert pairs.values.tolist() == [["cat", "dog", 3, 0.375], ["fox", "dog", 3, 0.3333], ["fox", "cat", 2, 0.2222],
                                     ["dog", "cat", 1, 0.1429]]  # most images first; ties in the matrix's order
    assert confused_pairs(np.diag([3, 4]), ["a", "b"]).empty
    actual = np.array([0, 1, 2, 0])
    probabilities = np.array([[0.9, 0.05, 0.05], [0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.3, 0.6, 0.1]])
    predictions = ValPredictions(classes, actual, probabilities.argmax(1), probabilities, np.array([7, 2, 5, 0]))
    assert highest_losses(predictions, 2).tolist() == [1, 3]  # p(true) 0.2, then 0.3
    images = np.random.default_rng(0).integers(0, 256, (8, 16, 16, 3), dtype=np.uint8)
    plot_top_losses(predictions, images, "run", tmp_path / "top.png", count=3)
    assert_png(tmp_path / "top.png")
    plot_top_losses(predictions, images[..., :1], "grey", tmp_path / "grey.png")  # one channel
    assert_png(tmp_path / "grey.png")


def test_label_issues_are_the_held_out_images_a_confident_model_disagrees_with():
    pytest.importorskip("cleanlab")
    from pipeline.figures import label_issues

    rng = np.random.default_rng(0)
    actual = np.repeat(np.arange(3), 20)
    probabilities = np.full((60, 3), 0.05)
    probabilities[np.arange(60), actual] = 0.9
    probabilities += rng.uniform(0, 0.02, probabilities.shape)
    probabilities /= probabilities.sum(1, keepdims=True)
    wrong = [4, 25, 47]  # labeled 0, 1, 2; the model is sure they are 1, 2, 0
    probabilities[wrong] = [[0.02, 0.96, 0.02], [0.03, 0.03, 0.94], [0.97, 0.02, 0.01]]
    ids = [f"img{k}" for k in range(100)]
    indices = np.arange(60) + 40  # their places in the labeled set
    issues = label_issues(ValPredictions(["a", "b", "c"], actual, probabilities.argmax(1), probabilities, indices), ids)
    assert issues["id"].tolist() == ["img87", "img44", "img65"]  # least confidence in the given label first
    assert issues["given"].tolist() == ["c", "a", "b"] and issues["suggested"].tolist() == ["a", "b", "c"]
    assert issues["given_probability"].tolist() == pytest.approx([0.01, 0.02, 0.03], abs=0.005)
    one_of_c = ValPredictions(["a", "b", "c"], actual[:41], actual[:41], probabilities[:41], indices[:41])
    assert label_issues(one_of_c, ids) is None  # a class with one held-out image: cannot tell


def test_grad_cam_maps_the_last_convolution_of_a_useful_size_and_skips_what_is_no_cnn():
    import torch

    pytest.importorskip("captum")
    from pipeline.infer import cam_layer, class_activation_maps
    from pipeline.models import build_model
    from pipeline.run import ModelInputs
    from pipeline.runtime import Runtime

    inputs, runtime = ModelInputs((0.5,) * 3, (0.25,) * 3), Runtime(torch.device("cpu"))
    resnet = build_model("custom", 4, "imagenet", 3, 0.0).eval()
    layer = cam_layer(resnet, torch.zeros(1, 3, 32, 32))
    assert layer is resnet.layer2[-1].conv2  # its 4 × 4 map: layer3's is 2 × 2 at 32 px
    images = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    maps = class_activation_maps(resnet, inputs, runtime, images, np.array([0, 1, 2, 3, 0]))
    peaks = maps.reshape(5, -1).max(1)
    assert maps.shape == (5, 32, 32) and maps.min() >= 0 and np.isin(peaks.round(5), [0, 1]).all()  # 0: none positive
    flat = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 4, 4), torch.nn.Flatten(), torch.nn.Linear(256, 4))
    assert class_activation_maps(flat, inputs, runtime, images, np.zeros(5, int)) is None  # one convolution
