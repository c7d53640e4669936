"""``fintune`` through a real subprocess: exit codes, last-line run folder, predict, runs."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.timeout(300)


def _assert_bad_input(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.fixture
def credit_csv(tmp_path, credit_df) -> Path:
    path = tmp_path / "credit.csv"
    credit_df.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_backbone, make_table, fintune):
    """One CLI training run on the tiny backbone, shared by the predict and runs tests."""
    root = tmp_path_factory.mktemp("cli")
    data = root / "credit.csv"
    make_table("credit").to_csv(data, index=False)
    runs_dir = root / "runs"
    result = fintune(
        "train",
        data,
        "--target",
        "credit_risk",
        "--backbone",
        tiny_backbone,
        "--max-steps",
        "3",
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--runs-dir",
        runs_dir,
    )
    return result, runs_dir, data


def test_train_prints_the_run_folder_last(trained):
    result, runs_dir, _ = trained
    assert result.returncode == 0, result.stderr
    run_dir = Path(result.stdout.strip().splitlines()[-1])
    assert run_dir.parent == runs_dir and run_dir.is_dir()
    assert (run_dir / "model" / "model.safetensors").is_file()
    assert "test roc_auc: " in result.stderr and "Traceback" not in result.stderr


def test_predict_writes_predictions(trained, tmp_path, fintune):
    result, _, data = trained
    run_dir = result.stdout.strip().splitlines()[-1]
    out = tmp_path / "scored.csv"
    scored = fintune("predict", run_dir, data, "-o", out)
    assert scored.returncode == 0, scored.stderr
    frame = pd.read_csv(out)
    assert len(frame) == 200
    assert {"prediction", "prob_bad", "prob_good"} <= set(frame.columns)
    assert set(frame["prediction"]) <= {"bad", "good"}
    assert "warning" not in scored.stderr


def test_predict_names_missing_columns_and_warns_on_extra(trained, tmp_path, credit_df, fintune):
    result, _, _ = trained
    run_dir = result.stdout.strip().splitlines()[-1]
    missing = tmp_path / "missing.csv"
    credit_df.drop(columns=["housing"]).to_csv(missing, index=False)
    _assert_bad_input(fintune("predict", run_dir, missing, "-o", tmp_path / "o.csv"), "'housing'")

    extra = tmp_path / "extra.csv"
    credit_df.drop(columns=["credit_risk"]).assign(loan_officer="Ng").to_csv(extra, index=False)
    scored = fintune("predict", run_dir, extra, "-o", tmp_path / "o.csv")
    assert scored.returncode == 0, scored.stderr
    assert (
        "warning: Column 'loan_officer' was not seen in training and is ignored." in scored.stderr
    )


def test_predict_reads_trailing_delimiters_like_the_clean_file(trained, tmp_path, fintune):
    # A ',' ending every row made pandas take the first field as the index and shift every column.
    result, _, data = trained
    run_dir = result.stdout.strip().splitlines()[-1]
    header, *rows = data.read_text().splitlines()
    trailing = tmp_path / "trailing.csv"
    trailing.write_text("\n".join([header, *(row + "," for row in rows)]) + "\n")
    outputs = []
    for source in (data, trailing):
        outputs.append(tmp_path / f"scored-{source.stem}.csv")
        scored = fintune("predict", run_dir, source, "-o", outputs[-1])
        assert scored.returncode == 0, scored.stderr
        assert "warning" not in scored.stderr
    assert outputs[1].read_bytes() == outputs[0].read_bytes()


def test_predict_refuses_a_row_with_an_extra_value(trained, tmp_path, fintune):
    result, _, data = trained
    run_dir = result.stdout.strip().splitlines()[-1]
    lines = data.read_text().splitlines()
    lines[4] += ",oops"
    extra = tmp_path / "extra.csv"
    extra.write_text("\n".join(lines) + "\n")
    out = tmp_path / "o.csv"
    _assert_bad_input(
        fintune("predict", run_dir, extra, "-o", out),
        "extra.csv could not be parsed at line 5: it has 10 fields but the header "
        "has 9 (extra value 'oops')",
        "Remove the extra field(s) or add a column name to the header.",
    )
    assert not out.exists()


def test_predict_with_a_run_that_has_no_model(tmp_path, credit_csv, fintune):
    _assert_bad_input(
        fintune("predict", tmp_path, credit_csv, "-o", tmp_path / "o.csv"), "no saved model"
    )


def test_runs_lists_the_run(trained, fintune):
    result, runs_dir, _ = trained
    run_dir = Path(result.stdout.strip().splitlines()[-1])
    listing = fintune("runs", "--runs-dir", runs_dir)
    assert listing.returncode == 0
    line = next(line for line in listing.stdout.splitlines() if line.startswith(run_dir.name))
    assert "succeeded" in line and "credit_risk" in line and "roc_auc=" in line


def test_runs_on_an_empty_folder(tmp_path, fintune):
    listing = fintune("runs", "--runs-dir", tmp_path)
    assert listing.returncode == 0 and listing.stdout == ""


def test_bad_input_missing_file(tmp_path, fintune):
    _assert_bad_input(
        fintune("train", tmp_path / "absent.csv", "--target", "y"), "absent.csv", "does not exist"
    )


def test_bad_input_missing_target(credit_csv, fintune):
    _assert_bad_input(
        fintune("train", credit_csv, "--target", "credit_risc"),
        "'credit_risc'",
        "Did you mean 'credit_risk'",
    )


def test_bad_input_one_class(tmp_path, credit_df, fintune):
    path = tmp_path / "one.csv"
    credit_df.assign(credit_risk="good").to_csv(path, index=False)
    _assert_bad_input(
        fintune("train", path, "--target", "credit_risk"), "'credit_risk' has only one class"
    )


def test_bad_input_duplicate_columns(tmp_path, fintune):
    path = tmp_path / "dup.csv"
    path.write_text("amount,label,amount\n" + "1,a,2\n2,b,3\n" * 20)
    _assert_bad_input(fintune("train", path, "--target", "label"), "'amount' twice")


def test_bad_input_split(credit_csv, fintune):
    _assert_bad_input(
        fintune("train", credit_csv, "--target", "credit_risk", "--split", "weekly"), "'weekly'"
    )


def test_bad_input_split_column(credit_csv, fintune):
    _assert_bad_input(
        fintune("train", credit_csv, "--target", "credit_risk", "--split", "time:when"), "'when'"
    )


@pytest.mark.parametrize(
    ("role", "fragment"),
    [("housing=blob", "'blob' for column 'housing'"), ("housing", "'housing' is not COLUMN=ROLE")],
)
def test_bad_input_role(credit_csv, role, fragment, fintune):
    _assert_bad_input(
        fintune("train", credit_csv, "--target", "credit_risk", "--role", role), fragment
    )


def test_bad_input_freeze_depth(credit_csv, tiny_backbone, tmp_path, fintune):
    result = fintune(
        "train",
        credit_csv,
        "--target",
        "credit_risk",
        "--backbone",
        tiny_backbone,
        "--freeze",
        "7",
        "--runs-dir",
        tmp_path / "runs",
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "Freeze depth 7" in result.stderr and "(command line: --freeze)" in result.stderr


def test_bad_input_leaves_no_run_folder(credit_csv, tmp_path, fintune):
    fintune("train", credit_csv, "--target", "nope", "--runs-dir", tmp_path / "runs")
    assert not (tmp_path / "runs").exists()
