import numpy as np
import torch
from rich.console import Console

from pipeline.infer import TTA_VIEWS, infer, view, view_weights
from pipeline.run import ModelInputs
from pipeline.runtime import Runtime


def test_views_flip_and_shift():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    assert torch.equal(view(x, True, 0, 0), x.flip(3))
    down = view(x, False, 1, 0)
    assert torch.equal(down[:, :, 1:], x[:, :, :-1]) and (down[:, :, 0] == 0).all()
    left = view(x, False, 0, -2)
    assert torch.equal(left[..., :-2], x[..., 2:]) and (left[..., -2:] == 0).all()
    assert len(TTA_VIEWS["flip-shift"]) == 10 and len(set(TTA_VIEWS["flip-shift"])) == 10
    assert set(TTA_VIEWS["flip-translate"]) == {(f, d, d) for f in (False, True) for d in (0, 1, -1)}
    assert view_weights("flip-translate") == (0.25, 0.25, 0.125, 0.125, 0.125, 0.125)  # airbench's level 2
    assert view_weights("flip") == (0.5, 0.5)


def test_tta_averages_softmax_over_views():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 5)).eval()
    images = np.random.default_rng(0).integers(0, 256, (6, 8, 8, 3), dtype=np.uint8)
    cpu = torch.device("cpu")
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    for tta in TTA_VIEWS:
        got = np.exp(infer(model, images, ModelInputs((0, 0, 0), (1, 1, 1)), tta, Runtime(cpu), 4, Console()))
        with torch.no_grad():
            expected = sum(w * model(view(x, *v)).softmax(1) for v, w in zip(TTA_VIEWS[tta], view_weights(tta)))
        assert got.shape == (6, 5) and np.allclose(got, expected.numpy(), atol=1e-5), tta



def test_a_run_of_the_pooled_improved_stem_predicts_as_it_was_trained(fetched):
    """Before OPTIONS_FORMAT 2 `improved` had a max pool (which has no weights): such a run, its files as 0.1.0
    wrote them, still builds the pooled network and gives the probabilities it gave when trained."""
    import json

    from pipeline.config import TrainConfig
    from pipeline.infer import load_model
    from pipeline.run import Run, save_checkpoint
    from pipeline.train import train
    from tests.fixtures import QUICK

    run = Run(train(TrainConfig(stem="improved-pool", epochs=1, limit=64, **QUICK), console=Console(quiet=True)).run_dir)
    images = np.random.default_rng(1).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)

    def predicted() -> tuple[type, np.ndarray]:
        model, config = load_model(run.best, torch.device("cpu"))
        return type(model.maxpool), infer(model, images, config.inputs, "none", Runtime(torch.device("cpu")), 8)

    def resave(stem: str, saved_format: int | None) -> None:
        checkpoint = torch.load(run.best, weights_only=True)
        config = {key: value for key, value in checkpoint["config"].items() if key != "format"}
        config = {**config, "options": {**config["options"], "stem": stem}}
        checkpoint["config"] = config if saved_format is None else {**config, "format": saved_format}
        save_checkpoint(run.best, checkpoint)
        (run.path / "config.json").write_text(json.dumps(checkpoint["config"]))

    pool, trained = predicted()
    assert pool is torch.nn.MaxPool2d
    resave("improved", None)  # as 0.1.0 saved it: no format
    pool, old = predicted()
    assert pool is torch.nn.MaxPool2d and np.array_equal(old, trained)
    resave("improved", 2)  # the same weights read as today's improved stem: no pool, other outputs
    pool, unpooled = predicted()
    assert pool is torch.nn.Identity and not np.allclose(unpooled, trained, atol=1e-3)


def test_validation_averages_the_val_tta_views(fetched):
    """--val-tta flip: each epoch's val probabilities are infer()'s over the image and its mirror."""
    from pipeline.config import TrainConfig
    from pipeline.dataset import training_arrays
    from pipeline.infer import load_model
    from pipeline.run import Run
    from pipeline.train import train
    from tests.fixtures import QUICK

    run = Run(train(TrainConfig(epochs=1, limit=80, val_tta="flip", **QUICK), console=Console(quiet=True)).run_dir)
    indices, _, saved = run.read_val_probabilities()
    model, config = load_model(run.best, torch.device("cpu"))
    images = training_arrays(fetched / "dataset", limit=80).images[indices]  # the indices are into the limited set
    cpu = Runtime(torch.device("cpu"))
    flip, plain = (np.exp(infer(model, images, config.inputs, tta, cpu, 16)) for tta in ("flip", "none"))
    assert np.allclose(saved, flip, atol=1e-3) and not np.allclose(saved, plain, atol=1e-3)
