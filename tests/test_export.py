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


def test_a_resume_that_replaces_best_pt_deletes_the_export_of_the_old_one(fetched, monkeypatch):
    """model.onnx is of best.pt as it was exported: a resumed epoch that replaces best.pt deletes it (before, the
    stale file stayed beside the finished run, agreeing with predict on 22% of the test images)."""
    import dataclasses

    from rich.console import Console

    from pipeline import train as training
    from pipeline.train import resume

    scores, real = [0.5, 0.4, 0.0, 0.6], training.evaluate  # 0.0: the resumed run scores its earlier best again
    monkeypatch.setattr(training, "evaluate", lambda ctx: dataclasses.replace(real(ctx), score=scores.pop(0)))
    run = train(TrainConfig(epochs=1, limit=64, name="grown", **QUICK)).run_dir
    exported = export_run(run).path
    key = {p.key: json.loads(p.value) for p in onnx.load(exported).metadata_props}["checkpoint_key"]
    console = Console(record=True, width=300)
    resume(run, {"epochs": 2}, console=console)  # epoch 2 no better: best.pt, and its export, stay
    assert "model.onnx was exported from best.pt as it is; it is deleted when a better epoch" in console.export_text()
    assert exported.is_file() and key == exporting.checkpoint_key(run / "best.pt")
    resume(run, {"epochs": 3}, console=Console(quiet=True))  # epoch 3 better: a new best.pt
    assert not exported.exists() and torch.load(run / "best.pt", weights_only=False)["epoch"] == 3


def test_ctrl_c_while_the_exporter_runs_is_an_interruption(trained, monkeypatch):
    """torch's exporter wraps a Ctrl-C in its own error: before, "cannot be exported to ONNX" with status 1."""
    def interrupted_export(*args, **kwargs):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as e:
            raise RuntimeError("Failed to export the model with torch.export") from e

    monkeypatch.setattr(torch.onnx, "export", interrupted_export)
    result = runner.invoke(app, ["export", "weights/exp"])
    assert result.exit_code == 130 and result.output.strip().splitlines()[-1].startswith("interrupted:"), result.output
    assert not (trained / "weights" / "exp" / "model.onnx").exists()
