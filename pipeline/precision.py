"""What `auto` means on the CPU at hand, decided by measurement, not by CPU flags: each candidate (a precision
for training; an engine and precision for prediction) runs a few real batches of the job's own model and input
size, and the one that would finish the job soonest wins, among those whose predictions agree with fp32's on
≥ 99.5 % of the probe images. Agreement is checked only where it decides: from the soonest candidate on, until one
meets the rule. The choice is cached per machine (CPU model, threads, library versions), model shape and the
candidates left open, in the user's cache folder, so later runs skip the probe; jobs too small for a probe to pay
take the first candidate."""
from __future__ import annotations

import copy
import importlib.metadata
import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from pipeline import __version__
from pipeline.errors import PipelineError
from pipeline.runtime import Runtime
from pipeline.workspace import user_cache_dir, write_text_atomic

ENGINE_LIBRARIES = ("torch", "openvino", "onnxruntime", "onnx", "onnxscript")  # a new version of any may change the rates
MIN_AGREEMENT = 0.995  # argmax agreement with fp32 a lower precision must reach on the probe images
# 256 probe images tell agreement in steps of 0.4 %: a candidate that would win but falls short by up to this much
# is compared on more images before it is passed over (on a 0.73-val model OpenVINO int8 agreed 99.2 % on 256)
CONFIRM_BAND = 0.015


@dataclass(frozen=True)
class Trial:
    """One candidate's probe: images/s, how to get the argmax of its predictions on the probe images (None where
    nothing is predicted, as in training; called only when its agreement with fp32 decides) and the one-off
    seconds it needs before the job (int8: calibration and conversion)."""

    rate: float
    argmax: Callable[[], np.ndarray] | None = None
    setup_s: float = 0.0


@dataclass(frozen=True)
class Choice:
    candidate: str  # a precision (training), or "<engine> <precision>" (prediction)
    source: str  # measured, cached, or too small to measure
    rates: dict[str, float] = field(default_factory=dict)  # images/s per candidate
    agreement: dict[str, float] = field(default_factory=dict)  # argmax agreement with fp32 per candidate
    probe_s: float = 0.0

    def describe(self, job: str) -> str:
        """e.g. `auto → openvino int8 for prediction (measured: torch fp32 610, …, openvino int8 1,930 images/s;
        probe 9.1 s, cached in …)`."""
        rates = ", ".join(f"{name} {rate:,.0f}" + (f" (agrees {self.agreement[name]:.1%})" if name in self.agreement
                                                  and not name.endswith("fp32") else "") for name, rate in self.rates.items())
        detail = {"measured": f"measured: {rates} images/s; probe {self.probe_s:.1f} s, cached in {cache_file()}",
                  "cached": f"cached measurement: {rates} images/s"}.get(self.source, self.source)
        return f"auto → {self.candidate} for {job} ({detail})"

    def to_dict(self) -> dict:
        return asdict(self)


def cache_file() -> Path:
    """precision.json in the user cache folder (`user_cache_dir`)."""
    return user_cache_dir() / "precision.json"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cache_key(job: str, shape: dict) -> str:
    """The machine, the libraries and the model shape a measurement holds for."""
    machine = {"cpu": cpu_model(), "cores": os.cpu_count(), "threads": torch.get_num_threads(),
               "pipeline": __version__, **{library: installed_version(library) for library in ENGINE_LIBRARIES}}
    return json.dumps({"job": job, **machine, **shape}, sort_keys=True)


def installed_version(library: str) -> str | None:
    """The installed distribution's version, None when it is not installed."""
    try:
        return importlib.metadata.version(library)
    except importlib.metadata.PackageNotFoundError:
        return None


def _read_cache() -> dict:
    try:
        cached = json.loads(cache_file().read_text())
        return cached if isinstance(cached, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_cache(key: str, choice: Choice) -> None:
    """Best effort: a cache folder that cannot be written costs a probe next time, nothing more."""
    try:
        write_text_atomic(cache_file(), json.dumps({**_read_cache(), key: choice.to_dict()}, indent=1))
    except PipelineError:
        pass


def choose(job: str, shape: dict, candidates: dict[str, Callable[[], Trial]], job_images: int,
           probe_pays: bool, confirm: Callable[[str, str], tuple[np.ndarray, np.ndarray]] | None = None) -> Choice:
    """The cached choice for this machine and `shape`, else (when `probe_pays`) the candidate that would
    finish `job_images` soonest — its setup plus `job_images / rate` — among those agreeing with the fastest
    fp32 candidate (the reference), else the first candidate. A candidate that would finish sooner than the
    reference but agreed within CONFIRM_BAND under the rule is compared again on more images
    (`confirm(name, reference)`: their argmaxes there) and wins if all its images together meet the rule. A
    candidate that cannot run (PipelineError) is left out; if none can, or no fp32 candidate can while one is
    offered, the (fp32) error is raised."""
    key = cache_key(job, {**shape, "candidates": sorted(candidates)})  # another set of options, another probe
    cached = _read_cache().get(key)
    if isinstance(cached, dict) and cached.get("candidate") in candidates:
        return Choice(cached["candidate"], "cached", cached.get("rates", {}), cached.get("agreement", {}))
    if not probe_pays:
        return Choice(next(iter(candidates)), "too small a job to measure")
    started = time.perf_counter()
    trials, errors = {}, {}
    for name, run in candidates.items():
        try:
            trials[name] = run()
        except PipelineError as e:
            errors[name] = e
    references = [name for name in candidates if name.endswith("fp32")]
    if not trials or (references and not any(name in trials for name in references)):
        raise errors[references[0] if references else next(iter(errors))]  # nothing to hold the others to
    reference = max((name for name in references if name in trials), key=lambda name: trials[name].rate, default=None)
    agreement: dict[str, float] = {}
    best = _soonest(trials, reference, agreement, job_images, confirm)
    choice = Choice(best, "measured", {name: round(trial.rate, 1) for name, trial in trials.items()},
                    {name: round(value, 5) for name, value in agreement.items()}, time.perf_counter() - started)
    _write_cache(key, choice)
    return choice


def _soonest(trials: dict[str, Trial], reference: str | None, agreement: dict[str, float], job_images: int,
             confirm: Callable[[str, str], tuple[np.ndarray, np.ndarray]] | None) -> str:
    """`choose`'s winner: candidates in the order they would finish the job, the first that meets the rule;
    `agreement` gets the agreement of each candidate checked."""
    expected: list[np.ndarray] = []  # the reference's argmax on the probe images, predicted once

    def meets_rule(name: str) -> bool:
        if reference is None or name.endswith("fp32") or trials[name].argmax is None:
            return True  # fp32 itself, a forced lower precision with nothing to compare, or training
        expected[:] = expected or [trials[reference].argmax()]
        ours = trials[name].argmax()
        agreement[name] = float(np.mean(ours == expected[0]))
        if confirm is not None and MIN_AGREEMENT - CONFIRM_BAND <= agreement[name] < MIN_AGREEMENT:
            more, more_expected = confirm(name, reference)
            agreement[name] = (agreement[name] * len(ours) + float(np.sum(more == more_expected))) / (len(ours) + len(more))
        return agreement[name] >= MIN_AGREEMENT

    return next(name for name in sorted(trials, key=lambda name: trials[name].setup_s + job_images / trials[name].rate)
                if meets_rule(name))


def timed(run: Callable[[], object], warm_up: Callable[[], object], images: int) -> tuple[float, object]:
    """images/s of `run` over `images` images, after `warm_up` (a small call that pays one-off costs), and
    what `run` returned."""
    warm_up()
    started = time.perf_counter()
    result = run()
    return images / (time.perf_counter() - started), result


def training_trial(model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor, runtime: Runtime,
                   candidate: str, steps: int = 2) -> Trial:
    """images/s of `steps` SGD steps (after one to warm up) on a copy of `model` in the precision and memory
    layout `candidate` names (`Runtime.in_candidate`), on one batch of real inputs with no learning rate: the
    model and the random streams are left as they were."""
    with torch.random.fork_rng(devices=[]):
        setting = runtime.in_candidate(candidate)
        probe = copy.deepcopy(model).train().to(memory_format=setting.memory_format)
        images = images.contiguous(memory_format=setting.memory_format)
        optimizer = torch.optim.SGD(probe.parameters(), lr=0.0)

        def step() -> None:
            with setting.autocast():
                loss = torch.nn.functional.cross_entropy(probe(images), targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        rate, _ = timed(lambda: [step() for _ in range(steps)], step, steps * len(images))
    return Trial(rate)
