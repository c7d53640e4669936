"""split.json: written when a run is created, then read by training, explanations and the report."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from core.data import split as split_module
from core.data.schema import describe_table
from core.data.split import split_rows
from core.explain.attributions import _training_rows, explain_rows
from core.review.report import write_model_report
from core.runs import folder as runs
from core.runs.files import DamagedRunError
from core.runs.fitted import load_model
from core.runs.split_file import SPLIT_FILE, read_split, run_split, write_split
from core.runs.worker import execute
from core.training import estimator
from tests.conftest import credit_table

pytestmark = pytest.mark.timeout(300)


def _config(backbone: str | None = None) -> RunConfig:
    """A tiny credit run; without a backbone, one that is never trained (the default backbone)."""
    return RunConfig(
        data=DataConfig(target="credit_risk"),
        model=ModelConfig(
            **({"backbone": backbone} if backbone else {}), d_hidden=32, d_numeric=16
        ),
        train=TrainConfig(
            epochs=1, batch_size=16, lr=1e-3, head_lr=1e-2, seed=0, precision="fp32", max_steps=4
        ),
    )


def _rebuilt(run_dir: Path) -> dict[str, np.ndarray]:
    config, frame = runs.load_config(run_dir), runs.load_data(run_dir)
    return split_rows(frame, describe_table(frame, config.data), config.data, config.train.seed)


def _no_resplitting(*args, **kwargs):
    raise AssertionError("split_rows was called: the stored split should have been read")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_backbone):
    """A run trained on a stored split that the config would not rebuild, with re-splitting off."""
    run_dir = runs.create_run(
        tmp_path_factory.mktemp("split_file"),
        _config(tiny_backbone),
        credit_table(),
        source="credit.csv",
    )
    own = read_split(run_dir)
    # Hand the last ten training rows to validation (and reverse its order): only a run that
    # reads split.json trains and scores on exactly these rows, in this order.
    stored = {
        "train": own["train"][:-10],
        "val": np.r_[own["val"], own["train"][-10:]][::-1],
        "test": own["test"],
    }
    write_split(run_dir, stored, len(runs.load_data(run_dir)))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(split_module, "split_rows", _no_resplitting)
        patch.setattr(estimator, "split_rows", _no_resplitting)  # bound at its import
        assert execute(run_dir) == "succeeded", runs.read_status(run_dir)
    return run_dir, stored


# --------------------------------------------------------------------------- writing


def test_create_run_stores_the_split_the_config_makes(runs_dir, credit_df):
    run_dir = runs.create_run(runs_dir, _config(), credit_df)
    stored = read_split(run_dir)
    assert list(stored) == ["train", "val", "test"]
    for name, rows in _rebuilt(run_dir).items():
        np.testing.assert_array_equal(stored[name], rows)  # same rows, same order
    assert json.loads((run_dir / SPLIT_FILE).read_text())["n_rows"] == len(credit_df)


def test_a_table_that_cannot_be_split_is_left_to_training(runs_dir, credit_df):
    config = RunConfig(data=DataConfig(target="no_such_column"))
    run_dir = runs.create_run(runs_dir, config, credit_df)  # created as before: training reports it
    assert read_split(run_dir) is None
    assert runs.read_status(run_dir)["state"] == "queued"


# --------------------------------------------------------------------------- reading after creation


def test_training_used_the_stored_split(trained):
    run_dir, stored = trained
    index = runs.load_data(run_dir).index
    val = pd.read_csv(run_dir / "val_predictions.csv")["row"].to_numpy()
    test = pd.read_csv(run_dir / "predictions.csv")["row"].to_numpy()
    np.testing.assert_array_equal(val, index[stored["val"]])
    np.testing.assert_array_equal(test, index[stored["test"]])
    rows = runs.read_metrics(run_dir)["rows"]
    assert rows == {name: len(positions) for name, positions in stored.items()}


def test_explanations_read_the_stored_split(trained, monkeypatch):
    run_dir, stored = trained
    monkeypatch.setattr(split_module, "split_rows", _no_resplitting)
    frame = runs.load_data(run_dir)
    train = _training_rows(run_dir, load_model(run_dir))
    assert train.equals(frame.iloc[stored["train"]])
    explanation = explain_rows(run_dir, frame.iloc[stored["test"][:2]])
    assert explanation.values.shape[0] == 2


def test_the_report_reads_the_stored_split(trained, tmp_path, monkeypatch):
    run_dir, stored = trained
    monkeypatch.setattr(split_module, "split_rows", _no_resplitting)
    page = write_model_report(run_dir, tmp_path / "report.html", shap_rows=0).read_text()
    assert "differs from the one recorded" not in page
    for name, positions in stored.items():  # the split table counts the stored rows
        assert f"<td>{name}</td><td>{len(positions)}</td>" in page


# --------------------------------------------------------------------------- older run folders


def test_a_folder_without_split_json_rebuilds_the_split(trained, tmp_path):
    run_dir = tmp_path / trained[0].name
    shutil.copytree(trained[0], run_dir)
    (run_dir / SPLIT_FILE).unlink()  # as every run made before split.json
    assert read_split(run_dir) is None
    frame, config = runs.load_data(run_dir), runs.load_config(run_dir)
    rebuilt = _rebuilt(run_dir)
    spec = describe_table(frame, config.data)
    for name, rows in run_split(run_dir, frame, spec, config).items():
        np.testing.assert_array_equal(rows, rebuilt[name])
    assert _training_rows(run_dir, load_model(run_dir)).equals(frame.iloc[rebuilt["train"]])
    page = write_model_report(run_dir, tmp_path / "report.html", shap_rows=0).read_text()
    # This run trained on another split than the config rebuilds: the report still says so.
    assert "differs from the one recorded at training" in page


def test_an_old_queued_run_trains_on_the_split_the_config_makes(tmp_path, tiny_backbone):
    run_dir = runs.create_run(tmp_path, _config(tiny_backbone), credit_table(), source="credit.csv")
    (run_dir / SPLIT_FILE).unlink()
    assert execute(run_dir) == "succeeded", runs.read_status(run_dir)
    index = runs.load_data(run_dir).index
    test = pd.read_csv(run_dir / "predictions.csv")["row"].to_numpy()
    np.testing.assert_array_equal(test, index[_rebuilt(run_dir)["test"]])


# --------------------------------------------------------------------------- damage


def _payload(**changes) -> str:
    return json.dumps(
        {"n_rows": 10, "train": [0, 1, 2, 3, 4, 5], "val": [6, 7], "test": [8, 9], **changes}
    )


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "split.json is empty"),
        ('{"n_rows": 10, "train": [0', "not valid JSON"),
        ("[1, 2]", "not a JSON object"),
        ("{}", "n_rows"),
        (_payload(n_rows=-1), "n_rows"),
        (_payload(n_rows=True), "n_rows"),
        (_payload(test=None), "test is not a list of row positions"),
        (_payload(val=[6, 7.5]), "val is not a list of row positions"),
        (_payload(val=["6"]), "val is not a list of row positions"),
        (_payload(test=[8, 10]), "outside the table's 10 rows"),
        (_payload(train=[-1, 0]), "outside the table's 10 rows"),
        (_payload(val=[5, 6]), "more than one split"),
    ],
)
def test_a_damaged_split_json_is_reported(runs_dir, credit_df, text, reason):
    run_dir = runs.create_run(runs_dir, _config(), credit_df)
    (run_dir / SPLIT_FILE).write_text(text)
    with pytest.raises(DamagedRunError, match="split.json") as caught:
        read_split(run_dir)
    assert reason in caught.value.reason


def test_a_split_of_another_table_is_reported(runs_dir, credit_df):
    run_dir = runs.create_run(runs_dir, _config(), credit_df)
    with pytest.raises(DamagedRunError, match="counts 200 rows but data.parquet has 50"):
        read_split(run_dir, frame=credit_df.head(50))


def test_training_a_run_with_a_damaged_split_fails_and_says_why(runs_dir, credit_df):
    run_dir = runs.create_run(runs_dir, _config(), credit_df)
    (run_dir / SPLIT_FILE).write_text(_payload())
    assert execute(run_dir) == "failed"
    message = runs.read_status(run_dir)["message"]
    assert "split.json counts 10 rows but data.parquet has 200" in message
