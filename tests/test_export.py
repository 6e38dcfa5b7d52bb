"""`pipeline export`: a run's inference model as ONNX (uint8 images in, probabilities out), checked against
the torch model before it is kept."""
import json

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

from pipeline import export as exporting
from pipeline.cache import cached_test_images
from pipeline.cli import app
from pipeline.errors import PipelineError
from pipeline.export import export_run
from pipeline.infer import infer, load_model
from pipeline.layout import check_test
from pipeline.runtime import Runtime
from pipeline.train import train
from pipeline.config import TrainConfig
from tests.fixtures import QUICK, runner


def exported_probabilities(path, images):
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": images})[0]


@pytest.mark.smoke
def test_export_resizes_normalises_and_uses_the_ema_weights(fetched):
    run = train(TrainConfig(epochs=1, limit=64, img_size=40, ema=0.5, name="ema40", **QUICK)).run_dir
    result = export_run(run)
    assert result.path == run / "model.onnx" and result.max_difference < 1e-4 and result.agreement == 1.0
    _, images, _ = cached_test_images(fetched / "dataset", check_test(fetched / "dataset"), None)
    model, config = load_model(run / "best.pt", torch.device("cpu"))  # EMA weights: what predict uses
    images = np.asarray(images[:16])
    expected = np.exp(infer(model, images, config.inputs, "none", Runtime(), 8))
    assert np.abs(exported_probabilities(result.path, images) - expected).max() < 1e-4
    model.load_state_dict(torch.load(run / "best.pt", weights_only=False)["model"])  # the raw weights differ
    raw = np.exp(infer(model, images, config.inputs, "none", Runtime(), 8))
    assert np.abs(raw - expected).max() > 1e-3
    meta = {p.key: json.loads(p.value) for p in onnx.load(result.path).metadata_props}
    assert meta["classes"] == config.classes and meta["mean"] == config.mean and meta["input"] == "uint8 (N, H, W, C)"


def test_cli_export_reports_the_check_and_bad_inputs_are_one_line(trained, monkeypatch):
    done = runner.invoke(app, ["export", "weights/exp"])
    assert done.exit_code == 0, done.output
    text = " ".join(done.output.split())
    assert "wrote weights/exp/model.onnx: on 40 test images its probabilities differ" in text and "100.00%" in text
    for args, message, status in ((["export", "weights/exp", "--format", "tflite"], "'tflite' is not one of 'onnx'", 2),
                                  (["export", "weights/none"], "weights/none", 1)):
        failed = runner.invoke(app, args)
        assert failed.exit_code == status and failed.output.startswith("error: ") and message in failed.output
        assert len(failed.output.strip().splitlines()) == 1


def test_an_export_that_disagrees_with_the_torch_model_is_not_kept(trained, monkeypatch):
    real = exporting._onnx_probabilities
    monkeypatch.setattr(exporting, "_onnx_probabilities", lambda graph, images: real(graph, images)[:, ::-1].copy())
    (trained / "weights" / "exp" / "model.onnx").unlink(missing_ok=True)
    with pytest.raises(PipelineError, match="differs from the torch model by up to .* not written"):
        export_run(trained / "weights" / "exp")
    assert not (trained / "weights" / "exp" / "model.onnx").exists()
