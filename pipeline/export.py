"""ONNX: a network as an ONNX graph (what the OpenVINO engine compiles and quantizes), and `pipeline export`,
a run's inference model as one self-contained file beside the run: uint8 images (N, H, W, C) in, class
probabilities out, with the EMA weights when the run kept them and the normalisation and resize inside;
checked against the torch model on real test images before it is kept."""
from __future__ import annotations

import contextlib
import io
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from torch import nn

from pipeline.augment import match_channels, normalize, resize, to_device_tensor
from pipeline.cache import cached_test_images
from pipeline.errors import PipelineError
from pipeline.infer import default_batch_size, infer, load_model
from pipeline.layout import check_test, dataset_classes
from pipeline.predict import check_fits
from pipeline.run import ModelInputs, Run, checkpoint_key
from pipeline.runtime import Runtime
from pipeline.workspace import atomic_path, dataset_dir

FORMATS = ("onnx",)
CHECK_IMAGES = 1024  # test images the exported file must reproduce
MAX_DIFFERENCE = 1e-3  # largest probability difference from the torch model an fp32 export may show


def onnx_graph(net: nn.Module, sample: torch.Tensor, name: str, otherwise: str = "use --engine torch"):
    """`net` (eval mode) as an ONNX ModelProto with a dynamic batch dimension, traced on the first input of
    `sample`. `otherwise` ends the error of a model it cannot export."""
    import onnx  # noqa: F401  (the exporter needs it; imported here so a missing install fails in one place)

    example = sample[:1].repeat(2, *[1] * (sample.dim() - 1))  # a batch of 2: the exporter fixes a batch of 1

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        try:
            program = torch.onnx.export(net.eval(), (example,), input_names=["input"], output_names=["output"],
                                        dynamo=True, dynamic_shapes=({0: torch.export.Dim("batch")},),
                                        verbose=False, optimize=True)
        except Exception as e:  # the exporter fails on models with data-dependent Python control flow
            if _interrupted(e):  # Ctrl-C, which the exporter wraps in its own error
                raise KeyboardInterrupt from None
            raise PipelineError(f"{name}: cannot be exported to ONNX ({type(e).__name__}: "
                                f"{(str(e).splitlines() or [''])[0][:200]}); {otherwise}") from None
    return program.model_proto


def _interrupted(error: BaseException | None) -> bool:
    """Whether a KeyboardInterrupt is among the errors that led to `error`."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, KeyboardInterrupt):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


class Deployable(nn.Module):
    """The network with its input handling: uint8 (N, H, W, C) → normalised (N, C, H, W), resized → softmax."""

    def __init__(self, net: nn.Module, inputs: ModelInputs):
        super().__init__()
        self.net, self.img_size = net, inputs.img_size
        self.register_buffer("mean", torch.tensor(inputs.mean))
        self.register_buffer("std", torch.tensor(inputs.std))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = resize(normalize(images.permute(0, 3, 1, 2), self.mean, self.std), self.img_size)
        return torch.softmax(self.net(x), 1)


@dataclass(frozen=True)
class ExportResult:
    path: Path
    images: int  # test images the check ran on
    max_difference: float  # largest probability difference from the torch model on them
    agreement: float  # argmax agreement with the torch model on them


def export_run(run_dir: Path, fmt: str = "onnx", dataset_root: Path | None = None,
               console: Console | None = None) -> ExportResult:
    """Write `<run>/model.onnx` from the run's best checkpoint and check it with ONNX Runtime against the
    torch model (the pipeline's own inference path) on real test images; a file that disagrees is not kept.
    The file takes images with the model's channels (a greyscale model: 1)."""
    if fmt not in FORMATS:
        raise PipelineError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    run = Run(run_dir)
    checkpoint = run.best_checkpoint()
    dataset_root = dataset_root or dataset_dir()
    console = console or Console(quiet=True)
    _, images, _ = cached_test_images(dataset_root, check_test(dataset_root), console)
    picked = np.asarray(images[np.linspace(0, len(images) - 1, min(CHECK_IMAGES, len(images))).astype(int)])
    model, config = load_model(checkpoint, torch.device("cpu"))
    # checked on the images it predicts
    check_fits(checkpoint, config, images, dataset_root, dataset_classes(dataset_root), console)
    # the test images with the model's channels (the file's input), as prediction gives them to it
    check = match_channels(to_device_tensor(picked, torch.device("cpu")), config.channels).permute(0, 2, 3, 1).numpy()
    check = np.ascontiguousarray(check)
    graph = onnx_graph(Deployable(model, config.inputs), torch.from_numpy(check[:1]), str(checkpoint),
                       "this model cannot be exported to ONNX")
    for key, value in {"classes": config.classes, "mean": config.mean, "std": config.std,
                       "input": "uint8 (N, H, W, C)", "image_size": config.image_size,
                       "checkpoint": str(checkpoint), "checkpoint_key": checkpoint_key(checkpoint)}.items():
        graph.metadata_props.add(key=key, value=json.dumps(value))
    exported = _onnx_probabilities(graph.SerializeToString(), check)
    expected = np.exp(infer(model, check, config.inputs, "none", Runtime(), default_batch_size(torch.device("cpu"))))
    difference = float(np.abs(exported - expected).max())
    agreement = float((exported.argmax(1) == expected.argmax(1)).mean())
    if difference > MAX_DIFFERENCE:
        raise PipelineError(f"{checkpoint}: the ONNX export differs from the torch model by up to {difference:.2g} "
                            f"in probability on {len(check)} test images (allowed {MAX_DIFFERENCE:g}); not written")
    with atomic_path(run.onnx) as tmp:
        tmp.write_bytes(graph.SerializeToString())
    return ExportResult(run.onnx, len(check), difference, agreement)


def _onnx_probabilities(graph: bytes, images: np.ndarray) -> np.ndarray:
    import onnxruntime

    session = onnxruntime.InferenceSession(graph, providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(None, {"input": np.ascontiguousarray(images[i:i + 256])})[0]
                           for i in range(0, len(images), 256)])
