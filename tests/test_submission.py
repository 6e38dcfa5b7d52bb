import pytest

from pipeline.competition import Competition, write_competition
from pipeline.errors import PipelineError
from pipeline.submission import Scored, check_solution, score_submission, validate_submission, write_submission


@pytest.fixture
def sample_csv(tmp_path):
    path = tmp_path / "sampleSubmission.csv"
    path.write_text("id,label\n3,a\n1,a\n2,a\n")
    return path


@pytest.mark.parametrize("content, message", [
    ("id,label\n3,a\n1,b\n", "2 rows, but .* has 3; write a row for each of its ids, once, in its order"),
    ("id,label\n3,a\n2,b\n1,a\n", "row 3 has id 2, sampleSubmission.csv has 1 there; write the rows in the sample "
                                   "submission's order"),
    ("id,label\n3,a\n1,b\n2,\n", "unknown label\\(s\\) '' \\(an empty cell\\)"),
    ("id,label\n3,a\n1,b\n2,dog\n", "unknown label\\(s\\) 'dog'"),
    ("id,class\n3,a\n1,b\n2,a\n", "header must be id,label, found id,class$"),
    ("id,Label\n3,a\n1,b\n2,a\n", "header must be id,label, found id,Label$"),  # before: "name its columns in
    ("id;label\n3;a\n1;b\n2;a\n", "found id;label; its fields are separated by semicolons"),  # competition.json"
])
def test_validation_failures(tmp_path, sample_csv, content, message):
    path = tmp_path / "submission.csv"
    path.write_text(content)
    with pytest.raises(PipelineError, match=message):
        validate_submission(path, tmp_path, ["a", "b"])


def test_invalid_submission_never_replaces_the_previous_one(tmp_path, sample_csv):
    out = tmp_path / "submission.csv"
    write_submission(out, ["3", "1", "2"], [["a"], ["b"], ["a"]], tmp_path, ["a", "b"])
    before = out.read_text()
    assert before == "id,label\n3,a\n1,b\n2,a\n"
    with pytest.raises(PipelineError, match="unknown label"):
        write_submission(out, ["3", "1", "2"], [["a"], ["zzz"], ["a"]], tmp_path, ["a", "b"])
    assert out.read_text() == before
    assert {p.name for p in tmp_path.iterdir()} == {"sampleSubmission.csv", "submission.csv"}


def test_score(tmp_path):
    (tmp_path / "s.csv").write_text("id,label\n1,a\n2,b\n3,a\n4,b\n")
    (tmp_path / "solution.csv").write_text("id,label\n2,b\n4,a\n")
    assert score_submission(tmp_path / "s.csv", tmp_path / "solution.csv", tmp_path) == Scored("accuracy", 0.5, 2)
    (tmp_path / "solution.csv").write_text("id,label\n9,a\n")
    with pytest.raises(PipelineError, match="lacks 1 id"):
        score_submission(tmp_path / "s.csv", tmp_path / "solution.csv", tmp_path)


def test_a_kaggle_solution_s_usage_column_leaves_out_ignored_rows_and_scores_each_leaderboard(tmp_path):
    """Kaggle's solution files mark each row Public, Private or Ignored: Ignored rows are not scored (before, every
    row was, Usage unread), and each leaderboard is scored apart."""
    (tmp_path / "s.csv").write_text("id,label\n1,a\n2,b\n3,a\n4,b\n5,a\n6,b\n")
    (tmp_path / "solution.csv").write_text("id,label,Usage\n1,a,Ignored\n2,b,Ignored\n3,b,Public\n4,b,Public\n"
                                           "5,b,Private\n6,a,Private\n")
    scored = score_submission(tmp_path / "s.csv", tmp_path / "solution.csv", tmp_path)
    assert scored == Scored("accuracy", 0.25, 4, {"Public": (0.5, 2), "Private": (0.0, 2)}, ignored=2)
    (tmp_path / "solution.csv").write_text("id,label,usage\n1,a,ignored\n2,b,IGNORED\n3,b,public\n4,b,Public\n"
                                           "5,b,private \n6,a,Private\n")  # in other case: the same
    assert score_submission(tmp_path / "s.csv", tmp_path / "solution.csv", tmp_path) == scored
    (tmp_path / "solution.csv").write_text("id,label,Usage\n1,,Ignored\n3,b,Public\n4,b,Public\n")  # Kaggle's: no
    assert score_submission(tmp_path / "s.csv", tmp_path / "solution.csv", tmp_path) == \
        Scored("accuracy", 0.5, 2, {"Public": (0.5, 2)}, ignored=1)  # label on an Ignored row; no Private row
    (tmp_path / "solution.csv").write_text("id;label;Usage\n3;b;Public\n")
    with pytest.raises(PipelineError, match="its fields are separated by semicolons: save it with commas"):
        check_solution(tmp_path / "solution.csv", tmp_path, "accuracy")
    for usage, message in (("Hidden", r"its Usage column holds Hidden; a Kaggle solution marks each row Public, "
                                      r"Private or Ignored"), ("Ignored", "marks every row Ignored, so no row is scored")):
        (tmp_path / "solution.csv").write_text(f"id,label,Usage\n1,a,{usage}\n2,b,Ignored\n")
        with pytest.raises(PipelineError, match=message):
            score_submission(tmp_path / "s.csv", tmp_path / "solution.csv", tmp_path)
    (tmp_path / "solution.csv").write_text("id,label,Usage\n1,a,Public\n2,a,Public\n3,b,Private\n4,a,Private\n")
    (tmp_path / "s.csv").write_text("id,a,b\n1,0.9,0.1\n2,0.2,0.8\n3,0.3,0.7\n4,0.6,0.4\n")
    (tmp_path / "sampleSubmission.csv").write_text("id,a,b\n1,0.5,0.5\n2,0.5,0.5\n3,0.5,0.5\n4,0.5,0.5\n")
    (tmp_path / "competition.json").write_text('{"submission_kind": "probabilities", "submission_columns": ["a", "b"], '
                                               '"metric": "mean_roc_auc"}')
    assert score_submission(tmp_path / "s.csv", tmp_path / "solution.csv", tmp_path).leaderboards == \
        {"Public": (None, 2), "Private": (1.0, 2)}  # Public: one class, which ROC AUC cannot rank (before, left out)
    (tmp_path / "s.csv").write_text("id,a,b,c\n1,0.8,0.1,0.1\n2,0.2,0.7,0.1\n3,0.3,0.6,0.1\n4,0.6,0.3,0.1\n")
    (tmp_path / "sampleSubmission.csv").write_text("id,a,b,c\n1,0,0,0\n2,0,0,0\n3,0,0,0\n4,0,0,0\n")
    (tmp_path / "competition.json").write_text('{"submission_kind": "probabilities", "submission_columns": ["a", "b", '
                                               '"c"], "metric": "mean_roc_auc"}')
    (tmp_path / "solution.csv").write_text("id,label,Usage\n1,a,Public\n2,b,Public\n3,b,Private\n4,a,Private\n")
    scored = score_submission(tmp_path / "s.csv", tmp_path / "solution.csv", tmp_path)  # no c: its ROC AUC undefined
    assert scored.score == 1.0 and scored.left_out == {"": ("c",), "Public": ("c",), "Private": ("c",)}
    assert scored.line() == "mean ROC AUC on the scored ids: 1.0000 (4 ids; Public 1.0000 on 2 without c (absent or " \
                            "alone there); Private 1.0000 on 2 without c (absent or alone there); mean over the " \
                            "classes without c (absent or alone there))"  # before, the mean over a and b, unsaid
    (tmp_path / "s.csv").write_text("id,Usage,b\n1,0.9,0.1\n2,0.2,0.8\n")  # a class named Usage: a class
    (tmp_path / "sampleSubmission.csv").write_text("id,Usage,b\n1,0.5,0.5\n2,0.5,0.5\n")
    (tmp_path / "solution.csv").write_text("id,Usage,b\n1,1,0\n2,0,1\n")
    (tmp_path / "competition.json").write_text('{"submission_kind": "probabilities", "submission_columns": ["Usage", '
                                               '"b"], "metric": "accuracy"}')
    assert score_submission(tmp_path / "s.csv", tmp_path / "solution.csv", tmp_path).score == 1.0


def test_the_header_is_the_described_sample_submissions(tmp_path):
    (tmp_path / "sample_submission.csv").write_text("image_id,label\n3,0\n1,0\n")
    described = Competition(sample_submission="sample_submission.csv", submission_id="image_id")
    write_competition(tmp_path, described)
    write_submission(tmp_path / "submission.csv", ["3", "1"], [["1"], ["0"]], tmp_path, ["0", "1"])
    assert (tmp_path / "submission.csv").read_text() == "image_id,label\n3,1\n1,0\n"
    write_competition(tmp_path, Competition(sample_submission="sample_submission.csv", submission_id="id"))
    with pytest.raises(PipelineError, match="sample_submission.csv: missing column\\(s\\) id \\(found: image_id, label\\)"):
        validate_submission(tmp_path / "submission.csv", tmp_path, ["0", "1"])
    write_competition(tmp_path, Competition(sample_submission="sample_submission.csv", submission_id="image_id",
                                            submission_columns=("target",)))
    with pytest.raises(PipelineError, match="describes the submission as image_id,target, but .* has image_id,label"):
        validate_submission(tmp_path / "submission.csv", tmp_path, ["0", "1"])


def test_a_submission_of_probabilities_holds_numbers_from_0_to_1(tmp_path):
    (tmp_path / "sample_submission.csv").write_text("id,has_cactus\na.jpg,0.5\nb.jpg,0.5\n")
    write_competition(tmp_path, Competition(labels_csv="train.csv", label_kind="binary", image_suffix="",
                                            sample_submission="sample_submission.csv",
                                            submission_columns=("has_cactus",), submission_kind="probability",
                                            metric="roc_auc"))
    (tmp_path / "s.csv").write_text("id,has_cactus\na.jpg,0.91\nb.jpg,0\n")
    validate_submission(tmp_path / "s.csv", tmp_path, ["0", "1"])
    for value in ("1.5", "yes", ""):
        (tmp_path / "s.csv").write_text(f"id,has_cactus\na.jpg,0.91\nb.jpg,{value}\n")
        with pytest.raises(PipelineError, match=f"row 3 holds '{value}' in has_cactus; its class columns must hold "
                                                "probabilities"):
            validate_submission(tmp_path / "s.csv", tmp_path, ["0", "1"])
