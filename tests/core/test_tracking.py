"""MLflow tracking: a run mirrored into a local file store; a dead server or a missing package never
fails a run; without a URI or the switch, mlflow is not touched."""

from __future__ import annotations

import sys

import pytest

from core.runs import folder as runs
from core.runs import tracking
from core.runs.status import write_status
from core.runs.worker import execute


def _tracking_warnings(run_dir) -> list[str]:
    return [
        e["message"]
        for e in runs.read_history(run_dir)
        if e["type"] == "warning" and "MLflow" in e["message"]
    ]


def _hide_mlflow(monkeypatch) -> None:
    """Make every ``import mlflow...`` raise ImportError, also of submodules an earlier test
    loaded."""
    for name in [n for n in sys.modules if n.startswith("mlflow.")] + ["mlflow"]:
        monkeypatch.setitem(sys.modules, name, None)


@pytest.fixture
def headlines(sentiment_df):
    """A binary text-only table: its reference baseline is TF-IDF + logistic regression, not
    LightGBM, whose OpenMP threads can crawl on a busy 2-core machine; binary, so the run also
    writes decision.json."""
    return sentiment_df[sentiment_df["label"] != "neutral"].reset_index(drop=True)


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No tracking settings from the developer's shell; file stores allowed (restored after the
    test)."""
    for name in ("MLFLOW_TRACKING_URI", tracking.SWITCH_ENV, "MLFLOW_EXPERIMENT_NAME"):
        monkeypatch.setenv(
            name, ""
        )  # recorded first, so a value the code sets (the CLI's switch) is undone too
        monkeypatch.delenv(name)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.chdir(tmp_path)  # where a default ./mlruns would appear


def test_run_is_logged_to_a_local_file_store(
    tiny_config, runs_dir, headlines, tmp_path, monkeypatch, clean_env
):
    from mlflow.tracking import MlflowClient

    uri = f"file:{tmp_path / 'mlruns'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    run_dir = runs.create_run(runs_dir, tiny_config("label", epochs=2), headlines)

    assert execute(run_dir) == "succeeded"
    assert not _tracking_warnings(run_dir)
    saved = tracking.read_tracking(run_dir)
    assert saved["tracking_uri"] == uri and saved["experiment"] == tracking.DEFAULT_EXPERIMENT
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(saved["mlflow_run_id"])
    assert run.info.status == "FINISHED" and run.info.run_name == run_dir.name

    params = run.data.params
    assert params["model.backbone"] == runs.load_config(run_dir).model.backbone
    assert (
        params["train.lr"] == "0.001"
        and params["train.epochs"] == "2"
        and params["data.target"] == "label"
    )

    epochs = [e for e in runs.read_history(run_dir) if e["type"] == "epoch"]
    assert len(epochs) == 2
    for key in ("train_loss", "val_roc_auc", "samples_per_s"):
        history = client.get_metric_history(run.info.run_id, key)
        assert sorted(m.step for m in history) == [1, 2], key
    logged = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "val_roc_auc")}
    assert logged == {e["epoch"]: pytest.approx(e["val"]["roc_auc"]) for e in epochs}

    test = runs.read_metrics(run_dir)["test"]
    assert run.data.metrics["test_roc_auc"] == pytest.approx(test["roc_auc"])
    assert run.data.metrics["test_accuracy"] == pytest.approx(test["accuracy"])

    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.json", "metrics.json", "predictions.csv", "decision.json", "model"} <= artifacts
    assert "model/model.safetensors" in {
        a.path for a in client.list_artifacts(run.info.run_id, "model")
    }


def test_switch_without_uri_logs_to_local_mlruns(
    tiny_config, runs_dir, headlines, tmp_path, monkeypatch, clean_env
):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv(tracking.SWITCH_ENV, "1")  # what `fintune train --mlflow` sets
    run_dir = runs.create_run(runs_dir, tiny_config("label"), headlines)
    assert tracking.tracking_uri() == (tmp_path / "mlruns").as_uri()

    tracker = tracking.start(run_dir)
    tracker.finish()  # the run never trained: closed as FAILED, with its config

    run = MlflowClient(tracking_uri=(tmp_path / "mlruns").as_uri()).get_run(tracker.run_id)
    assert run.data.params["data.target"] == "label" and run.info.status == "FAILED"
    assert tracking.read_tracking(run_dir)["mlflow_run_id"] == tracker.run_id


def test_unreachable_server_is_a_warning_not_a_failure(
    tiny_config, runs_dir, headlines, monkeypatch, clean_env
):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://someone:secret@127.0.0.1:9")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    run_dir = runs.create_run(runs_dir, tiny_config("label"), headlines)

    assert execute(run_dir) == "succeeded"
    (warning,) = _tracking_warnings(run_dir)
    assert "127.0.0.1:9" in warning and "secret" not in warning
    assert runs.read_metrics(run_dir)["test"] and not tracking.read_tracking(run_dir)


def test_missing_mlflow_package_is_a_warning(
    runs_dir, tiny_config, headlines, monkeypatch, clean_env
):
    monkeypatch.setenv(tracking.SWITCH_ENV, "1")
    _hide_mlflow(monkeypatch)
    run_dir = runs.create_run(runs_dir, tiny_config("label"), headlines)

    assert tracking.start(run_dir) is tracking.NO_TRACKING
    (warning,) = _tracking_warnings(run_dir)
    assert "ImportError" in warning or "ModuleNotFoundError" in warning


def test_failure_mid_run_warns_once_and_stops_logging(runs_dir, tiny_config, headlines, clean_env):
    class DeadClient:
        calls = 0

        def __getattr__(self, name):
            def fail(*args, **kwargs):
                DeadClient.calls += 1
                raise ConnectionError("server went away")

            return fail

    run_dir = runs.create_run(runs_dir, tiny_config("label"), headlines)
    seen = []
    tracker = tracking.MlflowTracker(run_dir, DeadClient(), "run-id")
    forward = tracker.watch(seen.append)
    for epoch in (1, 2):
        forward({"type": "epoch", "epoch": epoch, "train_loss": 0.5, "val": {"roc_auc": 0.7}})
    tracker.finish()

    assert len(seen) == 2  # the caller's callback still gets every event
    assert DeadClient.calls == 1
    assert len(_tracking_warnings(run_dir)) == 1


def test_no_uri_and_no_switch_leaves_mlflow_alone(
    tiny_config, runs_dir, headlines, tmp_path, monkeypatch, clean_env
):
    _hide_mlflow(monkeypatch)  # any attempt to import it would become a warning event
    run_dir = runs.create_run(runs_dir, tiny_config("label"), headlines)

    assert not tracking.requested() and tracking.start(run_dir) is tracking.NO_TRACKING
    assert execute(run_dir) == "succeeded"
    assert not _tracking_warnings(run_dir) and not tracking.read_tracking(run_dir)
    assert not (tmp_path / "mlruns").exists()


def test_flatten_config_names_every_setting():
    flat = tracking.flatten_config(
        {
            "data": {"target": "y", "roles": {"rate %": "numeric"}, "task": None},
            "train": {"lr": 5e-5, "compile": False},
            "source": "x.csv",
        }
    )
    assert flat == {
        "data.target": "y",
        "data.roles.rate _": "numeric",
        "data.task": "null",
        "train.lr": "5e-05",
        "train.compile": "false",
        "source": "x.csv",
    }


def test_cli_flag_switches_tracking_on_for_the_run(headlines, tmp_path, monkeypatch, clean_env):
    import core.runs.worker
    from core.cli import main

    seen = {}

    def fake_execute(run_dir, **kwargs):
        seen["switch"] = tracking.requested()
        write_status(run_dir, "failed", message="not trained in this test")
        return "failed"

    monkeypatch.setattr(core.runs.worker, "execute", fake_execute)
    headlines.to_csv(tmp_path / "headlines.csv", index=False)
    main(
        [
            "train",
            str(tmp_path / "headlines.csv"),
            "--target",
            "label",
            "--runs-dir",
            str(tmp_path / "runs"),
            "--mlflow",
        ]
    )
    assert seen == {"switch": True}
