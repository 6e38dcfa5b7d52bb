"""`--precision auto` on the CPU: the chooser's logic with stubbed timings (never wall-clock speed), its
cache, and the measurement wired into predict and train."""
import json

import numpy as np
import pytest
import torch

from pipeline import engine, train as training
from pipeline.config import TrainConfig
from pipeline.errors import PipelineError
from pipeline.precision import Trial, cache_file, choose
from pipeline.predict import predict
from pipeline.run import load_checkpoint
from tests.fixtures import QUICK

SHAPE = {"model": "custom", "input": [32, 32]}
AGREE = np.arange(1000) % 10


def answers(argmax: np.ndarray, asked: list | None = None, name: str = ""):
    """A trial's argmax, predicted on demand (`name` is appended to `asked` each time)."""
    def predict():
        if asked is not None:
            asked.append(name)
        return argmax
    return predict


def stubs(calls: list, **trials) -> dict:
    def make(name, trial):
        def run():
            calls.append(name)
            if isinstance(trial, Exception):
                raise trial
            return trial
        return run
    return {name: make(name, trial) for name, trial in trials.items()}


def test_the_fastest_candidate_that_agrees_with_fp32_wins_and_is_cached():
    calls, asked = [], []
    candidates = stubs(calls, fp32=Trial(300, answers(AGREE, asked, "fp32")),
                       bf16=Trial(250, answers(AGREE, asked, "bf16")),
                       int8=Trial(1000, answers(AGREE, asked, "int8"), setup_s=3))
    choice = choose("prediction", SHAPE, candidates, 30_000, probe_pays=True)
    assert choice.candidate == "int8" and choice.source == "measured" and calls == ["fp32", "bf16", "int8"]
    assert asked == ["fp32", "int8"]  # bf16 would finish later: its agreement decides nothing, so it is not asked
    assert choice.rates == {"fp32": 300, "bf16": 250, "int8": 1000} and choice.agreement == {"int8": 1.0}
    assert choice.describe("prediction").startswith(
        "auto → int8 for prediction (measured: fp32 300, bf16 250, int8 1,000 (agrees 100.0%) images/s; probe ")
    calls.clear()
    again = choose("prediction", SHAPE, candidates, 30_000, probe_pays=True)
    assert again.candidate == "int8" and again.source == "cached" and calls == []  # no probe the second time
    assert len(json.loads(cache_file().read_text())) == 1
    other_shape = choose("prediction", {**SHAPE, "input": [64, 64]}, candidates, 30_000, probe_pays=True)
    assert other_shape.source == "measured"  # another model shape is measured anew


def test_a_candidate_that_disagrees_with_fp32_or_cannot_run_is_left_out():
    disagrees = AGREE.copy()
    disagrees[:6] = (disagrees[:6] + 1) % 10  # 99.4 % agreement: under the 99.5 % rule
    calls = []
    choice = choose("prediction", SHAPE, stubs(calls, fp32=Trial(300, answers(AGREE)), bf16=PipelineError("no"),
                                               int8=Trial(1000, answers(disagrees))), 30_000, probe_pays=True)
    assert choice.candidate == "fp32" and choice.agreement["int8"] == pytest.approx(0.994)
    assert "bf16" not in choice.rates


def test_the_reference_is_the_fastest_fp32_and_agreement_is_checked_in_finishing_order_until_one_meets_the_rule():
    far = AGREE.copy()
    far[:50] = (far[:50] + 1) % 10  # 95 %
    asked = []
    trials = {name: Trial(rate, answers(argmax, asked, name)) for name, rate, argmax in [
        ("torch fp32", 300, AGREE), ("torch bf16", 500, AGREE), ("openvino fp32", 600, AGREE),
        ("openvino bf16", 900, AGREE), ("openvino int8", 2000, far)]}
    choice = choose("prediction", SHAPE, stubs([], **trials), 30_000, True)
    assert choice.candidate == "openvino bf16" and asked == ["openvino fp32", "openvino int8", "openvino bf16"]
    assert set(choice.agreement) == {"openvino int8", "openvino bf16"}  # torch bf16 would finish after fp32


def test_a_fast_candidate_just_under_the_rule_is_compared_on_more_images():
    near = AGREE[:256].copy()
    near[:2] = (near[:2] + 1) % 10  # 254 of 256: 99.2 %, one image short of the rule
    trials = dict(fp32=Trial(300, answers(AGREE[:256])), bf16=Trial(500, answers(AGREE[:256])),
                  int8=Trial(1000, answers(near)))
    asked = []

    def confirm(agreeing: int):
        def compare(name, reference):
            assert reference == "fp32"
            asked.append(name)
            ours = np.zeros(768, int)
            ours[agreeing:] = 1
            return ours, np.zeros(768, int)
        return compare

    choice = choose("prediction", SHAPE, stubs([], **trials), 30_000, True, confirm(768))
    assert choice.candidate == "int8" and asked == ["int8"]  # 1022 of 1024 together: 99.8 %
    assert choice.agreement["int8"] == pytest.approx(1022 / 1024, abs=1e-5)
    asked.clear()
    choice = choose("prediction", {**SHAPE, "input": [8, 8]}, stubs([], **trials), 30_000, True, confirm(760))
    assert choice.candidate == "bf16" and asked == ["int8"]  # 1014 of 1024: 99.0 %, so the next one wins
    far = AGREE[:256].copy()
    far[:8] = (far[:8] + 1) % 10  # 96.9 %: too far under the rule to be worth more images
    asked.clear()
    choice = choose("prediction", {**SHAPE, "input": [4, 4]}, stubs([], **{**trials, "int8": Trial(1000, answers(far))}),
                    30_000, True, confirm(768))
    assert choice.candidate == "bf16" and asked == []


def test_another_set_of_candidates_is_measured_anew_and_a_failed_fp32_reference_stops_the_choice():
    calls = []
    choose("prediction", SHAPE, stubs(calls, **{"torch fp32": Trial(300, answers(AGREE)),
                                                 "torch bf16": Trial(600, answers(AGREE))}), 30_000, True)
    wider = stubs(calls, **{"torch fp32": Trial(300, answers(AGREE)), "torch bf16": Trial(600, answers(AGREE)),
                            "openvino int8": Trial(2000, answers(AGREE))})
    assert choose("prediction", SHAPE, wider, 30_000, True).candidate == "openvino int8"  # not the narrower cache
    assert calls.count("torch fp32") == 2
    with pytest.raises(PipelineError, match="reference"):
        choose("prediction", {**SHAPE, "n": 4},
               stubs([], fp32=PipelineError("reference"), int8=Trial(1000, answers(AGREE))), 30_000, True)


def test_without_an_fp32_candidate_nothing_is_compared_and_if_none_can_run_the_first_error_is_raised():
    forced = {"torch bf16": Trial(300, answers(AGREE)), "openvino bf16": Trial(900, answers(AGREE[::-1].copy()))}
    choice = choose("prediction", SHAPE, stubs([], **forced), 30_000, True)
    assert choice.candidate == "openvino bf16" and choice.agreement == {}  # a forced bf16 is not held to fp32's answers
    with pytest.raises(PipelineError, match="first"):
        choose("prediction", {**SHAPE, "n": 3}, stubs([], fp32=PipelineError("first"), int8=PipelineError("second")),
               30_000, True)


def test_one_off_setup_counts_against_a_small_job():
    trials = dict(fp32=Trial(300, answers(AGREE)), int8=Trial(1000, answers(AGREE), setup_s=30))
    assert choose("prediction", SHAPE, stubs([], **trials), 5_000, probe_pays=True).candidate == "fp32"  # 16.7 < 35 s
    assert choose("prediction", {**SHAPE, "n": 2}, stubs([], **trials), 50_000, True).candidate == "int8"  # 80 < 167 s


def test_a_job_too_small_to_pay_for_a_probe_runs_in_fp32_unless_a_measurement_is_cached():
    calls = []
    candidates = stubs(calls, fp32=Trial(300), bf16=Trial(600))
    choice = choose("training", SHAPE, candidates, 100, probe_pays=False)
    assert choice.candidate == "fp32" and calls == [] and not cache_file().exists()
    choose("training", SHAPE, candidates, 10**6, probe_pays=True)
    assert choose("training", SHAPE, candidates, 100, probe_pays=False).candidate == "bf16"  # cached: free


def test_an_unwritable_or_broken_cache_costs_a_probe_not_an_error(monkeypatch, tmp_path):
    (tmp_path / "precision.json").write_text("{not json")
    monkeypatch.setenv("PIPELINE_CACHE_DIR", str(tmp_path))
    calls = []
    assert choose("training", SHAPE, stubs(calls, fp32=Trial(300), bf16=Trial(200)), 10**6, True).candidate == "fp32"
    assert calls == ["fp32", "bf16"]
    monkeypatch.setenv("PIPELINE_CACHE_DIR", "/proc/no-such-folder")
    assert choose("training", SHAPE, stubs([], fp32=Trial(300), bf16=Trial(200)), 10**6, True).candidate == "fp32"


def test_predict_measures_once_then_uses_the_cache_and_forced_precisions_never_measure(trained, monkeypatch, capsys):
    monkeypatch.setattr(engine, "PROBE_MIN_IMAGES", 0)
    predict(precision="fp32", engine="torch", tta="flip")
    assert "auto → " not in printed(capsys) and not cache_file().exists()  # both forced: nothing to measure
    predict(tta="flip")
    first = printed(capsys)
    assert "auto → " in first and "for prediction (measured: torch fp32 " in first and " openvino int8 " in first
    saved = json.loads((trained / "submissions" / "exp.probs.json").read_text())
    predict(tta="flip")
    assert (f"auto → {saved['engine']} {saved['precision']} for prediction (cached measurement: torch fp32 "
            in printed(capsys))
    predict(tta="flip", precision="fp32")
    assert "for prediction (measured: torch fp32 " in (fp32 := printed(capsys)) and " openvino fp32 " in fp32
    assert "bf16" not in fp32.split("for prediction")[1].split("\n")[0] and "int8 " not in fp32.split("predicting")[0]
    predict(tta="flip", engine="torch", precision="bf16")
    assert "auto → " not in printed(capsys)  # one candidate left: nothing to measure


def printed(capsys) -> str:
    """What was printed, with the console's line wrapping undone."""
    return " ".join(capsys.readouterr().out.split())


def test_train_auto_records_its_measurement_and_a_tiny_run_trains_in_fp32(fetched, monkeypatch):
    tiny = train_run("tiny")
    assert tiny["precision"] == "fp32" and tiny["precision_probe"]["source"] == "too small a job to measure"
    assert tiny["layout"] == "contiguous"
    monkeypatch.setattr(training, "TRAIN_PROBE_MIN_IMAGES", 0)
    measured = train_run("measured")
    assert measured["precision_probe"]["source"] == "measured"
    rates = measured["precision_probe"]["rates"]
    assert set(rates) == {"fp32", "bf16", "fp32 channels_last", "bf16 channels_last"}
    fastest = max(rates, key=rates.get)
    assert (measured["precision"], measured["layout"]) == (fastest.split()[0], "channels_last" if " " in fastest
                                                          else "contiguous")
    assert train_run("cached")["precision_probe"]["source"] == "cached"


def test_a_run_trains_and_resumes_in_the_layout_it_measured(fetched, monkeypatch):
    monkeypatch.setattr(training, "TRAIN_PROBE_MIN_IMAGES", 0)
    monkeypatch.setattr(training, "TRAINING_CANDIDATES", ("fp32 channels_last",))  # the one to measure
    saved = train_run("nhwc")
    assert (saved["precision"], saved["layout"]) == ("fp32", "channels_last")
    monkeypatch.setattr(training, "TRAINING_CANDIDATES", ("fp32",))  # a resume does not measure again
    training.resume(fetched / "weights" / "nhwc", {"epochs": 2})
    weights = load_checkpoint(fetched / "weights" / "nhwc" / "last.pt")["model"]
    conv = next(w for w in weights.values() if w.ndim == 4 and w.shape[1] > 1 and w.shape[2] > 1)
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()


def train_run(name: str) -> dict:
    result = training.train(TrainConfig(epochs=1, limit=64, name=name, **QUICK))
    return json.loads((result.run_dir / "config.json").read_text())
