"""`pipeline package`: the weights and wheels datasets and the offline notebook of a code competition, its
rehearsal with the network off and the inputs read-only on a hidden test set of another size, and the time budget."""
import json
import socket
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from pipeline.cli import app
from pipeline.errors import PipelineError
from pipeline.package import MemberCost, fit_budget, package
from pipeline.rehearse import namespaces_work, parse_budget, rehearse, run_isolated
from tests.fixtures import CLASSES, runner


@pytest.fixture(scope="module")
def packaged(trained_once, tmp_path_factory) -> Path:
    """The tiny competition's run `exp` packaged once for the module (pip builds the project's wheel)."""
    out = tmp_path_factory.mktemp("package") / "cifar-10-package"
    package([[trained_once / "weights" / "exp" / "best.pt"]], "cifar-10", "someone", out, trained_once / "dataset")
    return out


def test_a_package_holds_inference_weights_wheels_and_an_offline_notebook(packaged, trained_once):
    from pipeline.infer import load_model
    from pipeline.run import load_checkpoint

    weights, wheels, notebook = packaged / "weights", packaged / "wheels", packaged / "notebook"
    members = json.loads((weights / "members.json").read_text())
    assert members["checkpoints"] == ["exp.pt"] and members["runs"] == [["exp.pt"]] and members["tta"] == "flip"
    assert members["estimate"]["test_images"] == 40 and members["estimate"]["seconds"] >= 0
    slim = load_checkpoint(weights / "exp.pt")
    assert "optimizer" not in slim and "rng" not in slim  # inference only
    load_model(weights / "exp.pt", __import__("torch").device("cpu"))
    assert json.loads((weights / "competition.json").read_text())["test_images"] == "test"
    assert json.loads((weights / "dataset-metadata.json").read_text())["id"] == "someone/cifar-10-pipeline-weights"
    wheel = next(wheels.glob("pipeline-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        assert "pipeline/package.py" in z.namelist()
    kernel = json.loads((notebook / "kernel-metadata.json").read_text())
    assert kernel["enable_internet"] is False and kernel["competition_sources"] == ["cifar-10"]
    assert kernel["dataset_sources"] == ["someone/cifar-10-pipeline-weights", "someone/pipeline-wheels"]
    assert kernel["id"] == "someone/cifar-10-pipeline-predict" and kernel["code_file"] == "predict.ipynb"
    code = "".join(line for cell in json.loads((notebook / "predict.ipynb").read_text())["cells"] for line in cell["source"])
    assert '"--no-index"' in code and "/kaggle/input" in code and "/kaggle/working" in code
    with pytest.raises(PipelineError, match="already exists; choose another --out"):
        package([[trained_once / "weights" / "exp" / "best.pt"]], "cifar-10", "someone", packaged, trained_once / "dataset")
    with pytest.raises(PipelineError, match="--owner 'some one': a Kaggle name"):
        package([], "cifar-10", "some one", packaged.parent / "x", trained_once / "dataset")


def test_the_rehearsal_predicts_a_hidden_test_set_of_another_size_offline(packaged, trained_once, tmp_path):
    done = rehearse(packaged, trained_once / "dataset", tmp_path / "rehearsal.csv")
    hidden = done.hidden
    assert hidden.public == 40 and hidden.images == 21 and hidden.noise == 1  # half the public set, and noise
    submission = pd.read_csv(done.submission)
    assert len(submission) == 21 and submission["id"].astype(str).str.startswith("pipeline-noise-").sum() == 1
    assert set(submission["label"]) <= set(CLASSES)
    assert done.predict_s > 0 and done.estimate_for == 40 and done.estimate_s > done.setup_s
    assert "wrote /kaggle/working/submission.csv" in done.log.read_text() or not namespaces_work()
    assert ("network namespace" in done.isolation) == namespaces_work()


def test_the_rehearsal_blocks_the_network_and_writes_to_the_inputs(packaged, trained_once, tmp_path, monkeypatch):
    listening = socket.create_server(("127.0.0.1", 0))  # something to reach, were the network on
    port = listening.getsockname()[1]
    threading.Thread(target=lambda: listening.accept(), daemon=True).start()
    probe = tmp_path / "probe.py"
    probe.write_text(f"""import os, socket
from pathlib import Path
inputs = Path(os.environ.get("PIPELINE_KAGGLE_INPUT", "/kaggle/input"))
try:
    socket.create_connection(("127.0.0.1", {port}), timeout=5)
    print("network: reached")
except OSError as e:
    print("network: refused", e)
try:
    (inputs / "weights" / "new.txt").write_text("x")
    print("inputs: written")
except OSError as e:
    print("inputs: refused", e)
""")
    for isolated in (True, False):
        if isolated and not namespaces_work():
            continue
        monkeypatch.setattr("pipeline.rehearse.namespaces_work", lambda: isolated)
        root = tmp_path / f"run-{isolated}"
        for folder in ("input", "working", "tmp"):
            (root / folder).mkdir(parents=True)
        done, isolation = run_isolated(probe, {"weights": packaged / "weights"}, root, trained_once / "dataset", 60)
        assert done.returncode == 0, done.stderr
        assert "network: refused" in done.stdout, (isolation, done.stdout)
        assert "inputs: refused" in done.stdout or (not isolated and __import__("os").geteuid() == 0), done.stdout
    assert not (packaged / "weights" / "new.txt").exists()
    listening.close()


def test_a_notebook_that_would_fail_on_kaggle_is_one_line(packaged, trained_once, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(packaged, broken)
    described = broken / "weights" / "competition.json"
    saved = described.read_text()
    described.write_text(json.dumps({**json.loads(saved), "test_images": "elsewhere"}))  # not the competition's
    with pytest.raises(PipelineError, match=r"the notebook failed as it would on Kaggle \(.*\): error: .*elsewhere: "
                                            r"folder not found.*; its log: "):
        rehearse(broken, trained_once / "dataset", tmp_path / "rehearsal.csv")
    described.write_text(saved)
    for wheel in (broken / "wheels").glob("*.whl"):
        wheel.unlink()
    with pytest.raises(PipelineError, match=r"error: /kaggle/input/pipeline-wheels: no wheels; attach the package's "
                                            r"wheels dataset to the notebook|error: .*pipeline-wheels: no wheels"):
        rehearse(broken, trained_once / "dataset", tmp_path / "rehearsal.csv")


def cost(name, score, seconds, metric="accuracy"):
    return MemberCost(Path(name), score, metric, seconds)


def test_the_budget_trims_tta_views_first_then_the_least_value_per_second():
    members = [cost("a", 0.95, 0.010), cost("b", 0.90, 0.001), cost("c", 0.96, 0.020)]
    kept = fit_budget(members, "flip", 1000, 1000 * 2 * 0.031)
    assert kept.tta == "flip" and kept.members == members and not kept.trimmed
    lighter = fit_budget(members, "flip-translate", 1000, 1000 * 2 * 0.031)
    assert lighter.tta == "flip" and lighter.trimmed == ["--tta flip-translate → flip"]
    fewer = fit_budget(members, "flip", 1000, 0.012 * 1000)
    assert fewer.tta == "none" and [m.checkpoint.name for m in fewer.members] == ["a", "b"]  # c: 48/s, a 95/s, b 900/s
    losses = [cost("x", 0.30, 0.01, "log_loss"), cost("y", 0.60, 0.01, "log_loss")]
    assert [m.checkpoint.name for m in fit_budget(losses, "none", 100, 1.5).members] == ["x"]  # the lower loss stays
    with pytest.raises(PipelineError, match=r"a: alone and without TTA it predicts an image in 10.0 ms here, 2.8 h "
                                            r"for 1000000 test images, over the 60.0 min it may take \(80% of "
                                            r"--budget\); predict on a GPU"):
        fit_budget([members[0]], "flip", 1_000_000, 3600)


@pytest.mark.parametrize("text, seconds", [("9h", 32400), ("90m", 5400), ("2h30m", 9000), ("600s", 600), ("1.5h", 5400)])
def test_budgets(text, seconds):
    assert parse_budget(text) == seconds


@pytest.mark.parametrize("text", ["", "9", "nine hours", "0h", "-1h", "9h 9x"])
def test_bad_budgets(text):
    with pytest.raises(PipelineError, match="--budget"):
        parse_budget(text)


def test_package_rehearse_and_push_from_the_command_line(trained, kaggle):
    kaggle.kernel_output = {"submission.csv": (trained / "dataset" / "sampleSubmission.csv").read_bytes()}
    done = runner.invoke(app, ["package", "exp", "--rehearse", "--tta", "none", "--push"])
    assert done.exit_code == 0, done.output
    out = " ".join(done.output.split())
    assert "1 model(s), none TTA" in out and "is a valid submission" in out and "21 hidden test images" in out
    assert "created tester/cifar-10-pipeline-weights" in out  # the owner: the credentials' user
    assert "tester/cifar-10-pipeline-predict version 1: its run is complete and its submission.csv valid" in out
    assert (trained / "submissions" / "cifar-10-package" / "rehearsal.csv").is_file()
    tight = runner.invoke(app, ["package", "exp", "--owner", "someone", "--budget", "1s", "--test-images", "100000000",
                                "--out", "tight"])
    assert tight.exit_code == 1 and "over the 0.8 s it may take (80% of --budget); predict on a GPU" in " ".join(tight.output.split())
    assert not (trained / "tight").exists()
    assert subprocess.run([sys.executable, "-m", "pipeline", "package", "--help"], capture_output=True).returncode == 0


def test_push_creates_both_datasets_pushes_the_notebook_and_fetches_its_output(packaged, trained_once, kaggle):
    from pipeline.push import push

    sample = (trained_once / "dataset" / "sampleSubmission.csv").read_bytes()  # a valid submission of the public set
    kaggle.kernel_running, kaggle.kernel_output = 2, {"submission.csv": sample}
    kaggle.kernel_log = json.dumps([{"stream_name": "stdout", "time": 1.0, "data": "wrote submission.csv\n"}])
    said = []
    pushed = push(packaged, trained_once / "dataset", poll_s=0.01, report=said.append)
    assert pushed.datasets == ["created someone/pipeline-wheels", "created someone/cifar-10-pipeline-weights"]
    weights = kaggle.owned["someone/cifar-10-pipeline-weights"][0]
    assert weights["private"] is True
    assert weights["files"]["exp.pt"] == (packaged / "weights" / "exp.pt").read_bytes()
    assert set(weights["files"]) == {"exp.pt", "members.json", "competition.json"}
    assert any(name.endswith(".whl") for name in kaggle.owned["someone/pipeline-wheels"][0]["files"])
    kernel = kaggle.kernels["someone/cifar-10-pipeline-predict"][0]
    assert not kernel.get("enableInternet") and kernel["competitionDataSources"] == ["cifar-10"]
    assert kernel["datasetDataSources"] == ["someone/cifar-10-pipeline-weights", "someone/pipeline-wheels"]
    assert "kaggle_predict" in kernel["text"]
    assert pushed.status == "complete" and pushed.version == 1
    assert (pushed.output / "submission.csv").read_bytes() == sample
    assert "cifar-10-pipeline-predict.log" in {path.name for path in pushed.files}
    assert said[-1] == "someone/cifar-10-pipeline-predict: complete" and "someone/cifar-10-pipeline-predict: running" in said
    again = push(packaged, trained_once / "dataset", poll_s=0.01, report=said.append)
    assert again.datasets == ["new version of someone/pipeline-wheels", "new version of someone/cifar-10-pipeline-weights"]
    assert again.version == 2 and len(kaggle.owned["someone/pipeline-wheels"]) == 2


@pytest.mark.parametrize("setting, value, message", [
    ("dataset_error", "Dataset quota exceeded", r"wheels: Kaggle refused the dataset someone/pipeline-wheels: Dataset "
                                                r"quota exceeded"),
    ("kernel_error", "Maximum batch GPU session count reached", r"notebook: Kaggle refused the notebook: Maximum batch GPU"),
    ("kernel_failure", "Notebook Threw Exception", r"someone/cifar-10-pipeline-predict: its run ended error \(Notebook "
                                                   r"Threw Exception\); the log's last lines: .*error: no space left"),
    ("kernel_output", {}, r"its run wrote no submission.csv"),
    ("kernel_output", {"submission.csv": b"id,label\n1,airplane\n"}, r"submission.csv: 1 rows, but .* has 40"),
    ("status", 401, r"Kaggle refused the credentials \(401\)"),
])
def test_push_failures_are_one_line(packaged, trained_once, kaggle, setting, value, message):
    from pipeline.push import push

    kaggle.kernel_output = {"submission.csv": (trained_once / "dataset" / "sampleSubmission.csv").read_bytes()}
    kaggle.kernel_log = "starting\nerror: no space left on the device\n"
    setattr(kaggle, setting, value)
    with pytest.raises(PipelineError, match=message):
        push(packaged, trained_once / "dataset", poll_s=0.01, report=lambda line: None)


def test_a_new_user_without_credentials_packages_and_rehearses_the_sample(project, monkeypatch):
    """The flow of issue 34 from nothing: fetch the offline sample, train, package and rehearse, no account."""
    for variable in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(project / "no-kaggle"))
    assert runner.invoke(app, ["fetch", "--sample"]).exit_code == 0
    trained = runner.invoke(app, ["train", "--epochs", "2", "--limit", "1000", "--device", "cpu", "--workers", "0"])
    assert trained.exit_code == 0, trained.output
    done = runner.invoke(app, ["package", "exp", "--rehearse", "--no-gpu"])
    assert done.exit_code == 0, done.output
    out = " ".join(done.output.split())
    assert "the package names 'your-kaggle-username' as its owner" in out and "is a valid submission" in out
    kernel = json.loads((project / "submissions" / "cifar-10-package" / "notebook" / "kernel-metadata.json").read_text())
    assert kernel["competition_sources"] == ["cifar-10"] and kernel["enable_gpu"] is False
    refused = runner.invoke(app, ["package", "exp", "--push", "--out", "again"])
    assert refused.exit_code == 1 and "no Kaggle username in KAGGLE_USERNAME or" in refused.output


def test_a_package_of_the_wrong_models_or_a_tampered_one_is_one_line(packaged, trained_once, tmp_path):
    """Inputs of the third hostile pass: a run of another competition, a run named twice, and package folders
    edited after they were built, rehearsed through the Python API."""
    import shutil

    from tests.fixtures import write_competition

    best = trained_once / "weights" / "exp" / "best.pt"
    other = tmp_path / "other"
    write_competition(other, n_train=40, n_test=8, classes=("ant", "bee", "cow", "dog"))
    with pytest.raises(PipelineError, match=r"best.pt: .*classes"):
        package([[best]], "cifar-10", "someone", tmp_path / "p1", other)
    with pytest.raises(PipelineError, match=r"best.pt: the same model as .*best.pt \(a run, and a CV holding it, or a "
                                            r"copy\?\); name each model once"):
        package([[best], [best]], "cifar-10", "someone", tmp_path / "p2", trained_once / "dataset")
    assert not (tmp_path / "p1").exists() and not (tmp_path / "p2").exists()
    cases = {
        "notebook/kernel-metadata.json": (lambda path: path.unlink(), r"kernel-metadata.json: missing"),
        "notebook/predict.ipynb": (lambda path: path.write_text(path.read_text()[:300]), r"unreadable \("),
        "weights/members.json": (lambda path: path.write_text(json.dumps({**json.loads(path.read_text()), "tta": "bogus"})),
                                 r"members.json: its tta 'bogus' is not one of none, flip"),
        "weights/competition.json": (lambda path: path.write_text("{"), r"weights/competition.json: not readable JSON"),
        "weights/members.json ": (lambda path: path.write_text(json.dumps({**json.loads(path.read_text()), "runs": []})),
                                  r"members.json: its runs are not lists of the dataset's model files"),
    }
    for name, (tamper, message) in cases.items():
        copy = tmp_path / name.replace("/", "-").replace(" ", "_")  # "members.json ": a second case of that file
        shutil.copytree(packaged, copy)
        tamper(copy / name.strip())
        with pytest.raises(PipelineError, match=message):
            rehearse(copy, trained_once / "dataset", tmp_path / "rehearsal.csv")
    swapped = tmp_path / "swapped"
    shutil.copytree(packaged, swapped)
    import torch
    slim = torch.load(swapped / "weights" / "exp.pt", weights_only=True)
    slim["epoch"] += 1  # another model file in its place
    torch.save(slim, swapped / "weights" / "exp.pt")
    with pytest.raises(PipelineError, match=r"exp.pt: not the model file the package was built with"):
        rehearse(swapped, trained_once / "dataset", tmp_path / "rehearsal.csv")
    members = json.loads((packaged / "weights" / "members.json").read_text())
    (swapped / "weights" / "members.json").write_text(json.dumps({**members, "checkpoints": ["exp.pt", "exp.pt"]}))
    with pytest.raises(PipelineError, match=r"members.json: its checkpoints are not a list of the dataset's model "
                                            r"files, each once"):
        rehearse(swapped, trained_once / "dataset", tmp_path / "rehearsal.csv")
    copy = tmp_path / "copy.pt"
    shutil.copyfile(best, copy)
    with pytest.raises(PipelineError, match=r"copy.pt: the same model as .*best.pt"):
        package([[best], [copy]], "cifar-10", "someone", tmp_path / "p3", trained_once / "dataset")
    sources = tmp_path / "sources"
    shutil.copytree(packaged, sources)
    kernel = json.loads((sources / "notebook" / "kernel-metadata.json").read_text())
    (sources / "notebook" / "kernel-metadata.json").write_text(json.dumps({**kernel, "dataset_sources": []}))
    with pytest.raises(PipelineError, match=r"its competition_sources and dataset_sources are not one competition"):
        rehearse(sources, trained_once / "dataset", tmp_path / "rehearsal.csv")
    with pytest.raises(PipelineError, match=r"nope/dir: no such folder for the rehearsal's submission"):
        rehearse(packaged, trained_once / "dataset", tmp_path / "nope" / "dir" / "sub.csv")


def test_a_cv_packaged_beside_a_run_weighs_as_one_run_as_predict_weighs_it(trained_once, tmp_path, monkeypatch):
    """Pass 26: the notebook gave each checkpoint one share (a run and a CV of 2 folds: 1/3 each), where `predict
    --run` and `ensemble` give the run 1/2 and each fold 1/4; members.json now keeps each run's files."""
    import torch

    from pipeline.package import _weights_dataset, fit_budget, kaggle_predict, measure_members
    from pipeline.run import load_checkpoint

    dataset, best = trained_once / "dataset", trained_once / "weights" / "exp" / "best.pt"
    folds = []
    for k in range(2):  # two other models, as a CV's folds
        checkpoint = load_checkpoint(best)
        for state in (checkpoint["model"], checkpoint.get("ema") or {}):
            for name, tensor in state.items():
                if tensor.is_floating_point():
                    state[name] = tensor + 0.01 * (k + 1)
        (tmp_path / "cv" / f"fold-{k}").mkdir(parents=True)
        torch.save(checkpoint, tmp_path / "cv" / f"fold-{k}" / "best.pt")
        folds.append(tmp_path / "cv" / f"fold-{k}" / "best.pt")
    plan = fit_budget(measure_members([best, *folds], dataset), "none", 40, 1e9)
    members = _weights_dataset(plan, [[best], folds], tmp_path / "weights", dataset, "someone", "slug", 1e9)
    saved = json.loads((tmp_path / "weights" / "members.json").read_text())
    assert saved["runs"] == [members[:1], members[1:]] and len(members) == 3
    for edit, message in (({"runs": None}, "its runs are not lists"), ({"runs": []}, "its runs are not lists"),
                          ({"runs": [["nope.pt"]]}, "its runs are not lists"), ({"tta": None}, "its tta None is not"),
                          ({"tta": "bogus"}, "its tta 'bogus' is not one of")):  # before, KeyError or "--tta"
        (tmp_path / "weights" / "members.json").write_text(json.dumps({**saved, **edit}))
        with pytest.raises(PipelineError, match=rf"members.json: {message}"):
            kaggle_predict(dataset, tmp_path / "weights", tmp_path / "working", tmp_path / "project", 0.0)
    (tmp_path / "weights" / "members.json").write_text(json.dumps(saved)[:-1] + ', "tta": "flip"}')
    with pytest.raises(PipelineError, match=r"members.json: unreadable \(tta given twice; keep one\)"):
        kaggle_predict(dataset, tmp_path / "weights", tmp_path / "working", tmp_path / "project", 0.0)
    (tmp_path / "weights" / "members.json").write_text(json.dumps(saved))
    (tmp_path / "working").mkdir()
    monkeypatch.chdir(tmp_path)
    kaggle_predict(dataset, tmp_path / "weights", tmp_path / "working", tmp_path / "project", 0.0)
    assert json.loads((tmp_path / "working" / "submission.json").read_text())["weights"] == [0.5, 0.25, 0.25]
