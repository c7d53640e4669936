"""Experiment tracking: mirror a run into MLflow when asked to.

Tracking is on when ``MLFLOW_TRACKING_URI`` is set, or when ``FINTUNE_MLFLOW=1`` (what
``fintune train --mlflow`` sets); without a URI it logs to ``./mlruns``, a local file store.
The run folder stays the record and MLflow gets a copy: the flattened config as params, per-epoch
train loss, validation metrics and throughput (step = epoch), the test metrics, and the run's files.

Tracking is best effort. Any MLflow failure (package missing, server unreachable, a value refused)
becomes one warning event in the run's history, tracking stops for that run, and training goes on.
With tracking off, mlflow is never imported.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from ..training.events import EpochEvent, StepEvent, WarningEvent, parse_event
from . import folder as runs
from .files import read_json, write_json

logger = logging.getLogger(__name__)

SWITCH_ENV = (
    "FINTUNE_MLFLOW"  # "1": track even without MLFLOW_TRACKING_URI (fintune train --mlflow)
)
DEFAULT_STORE = "mlruns"  # relative to the working directory, as MLflow's own default
DEFAULT_EXPERIMENT = "fintune"
TRACKING_FILE = "tracking.json"
RUN_FILES = ("config.json", "metrics.json", "predictions.csv", "decision.json")
_FINAL_STATUS = {"succeeded": "FINISHED", "cancelled": "KILLED"}  # any other state: FAILED
PROBE_TIMEOUT_S = 5.0
_BATCH = 100  # MLflow's limit of params per log_batch call
_MAX_VALUE = 500  # param values are capped well below every MLflow backend's limit
_UNSAFE_KEY = re.compile(r"[^\w.\- /]")
_CREDENTIALS = re.compile(r"(\w+://)[^/@\s]+@")  # user:password@ in a URI


def requested() -> bool:
    """Whether this process should track runs (read from the environment, so launched workers
    inherit it)."""
    switch = os.environ.get(SWITCH_ENV, "").strip().lower() in ("1", "true", "yes", "on")
    return switch or bool(os.environ.get("MLFLOW_TRACKING_URI"))


def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI``, else a ``file:`` URI of ``./mlruns``."""
    return os.environ.get("MLFLOW_TRACKING_URI") or Path(DEFAULT_STORE).resolve().as_uri()


def flatten_config(config: dict, prefix: str = "") -> dict[str, str]:
    """``{"model": {"backbone": "x"}}`` -> ``{"model.backbone": "x"}``: one MLflow param per
    setting."""
    flat: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{_UNSAFE_KEY.sub('_', str(key))}"
        if isinstance(value, dict) and value:
            flat.update(flatten_config(value, f"{name}."))
        else:
            text = value if isinstance(value, str) else json.dumps(value)
            flat[name] = text if len(text) <= _MAX_VALUE else text[: _MAX_VALUE - 3] + "..."
    return flat


def _numbers(values: dict, prefix: str) -> dict[str, float]:
    """The finite numbers of ``values`` under prefixed, MLflow-safe names (None, NaN and text are
    left out)."""
    out = {}
    for key, value in values.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out[f"{prefix}{_UNSAFE_KEY.sub('_', str(key))}"] = float(value)
    return out


def _redacted(uri: str) -> str:
    """``uri`` (or a message quoting one) without user and password, fit for the run folder."""
    return _CREDENTIALS.sub(r"\1", uri)


def _check_reachable(uri: str) -> None:
    """Raise ConnectionError when an http(s) tracking server does not answer within a few seconds.

    MLflow's own client retries a dead server for minutes (MLFLOW_HTTP_REQUEST_MAX_RETRIES,
    default 7) before giving up; one quick probe keeps a wrong URI from holding the run's start that
    long.
    """
    import ssl
    from urllib.error import HTTPError, URLError
    from urllib.request import urlopen

    if urlsplit(uri).scheme not in ("http", "https"):
        return
    probe = _redacted(uri).rstrip("/") + "/health"
    try:
        with urlopen(probe, timeout=PROBE_TIMEOUT_S):  # the user's own tracking server
            pass
    except HTTPError:
        pass  # it answered (401, 404, ...): reachable; MLflow's client handles the rest
    except (URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, ssl.SSLError):
            # It answered; whether its certificate is trusted is MLflow's setting
            # (MLFLOW_TRACKING_INSECURE_TLS).
            return
        raise ConnectionError(
            f"tracking server {_redacted(uri)} did not answer ({reason})"
        ) from None


class _NoTracking:
    """Tracking is off (or stopped before a run was made): every call is a no-op."""

    def watch(self, on_progress: Callable[[dict], None] | None) -> Callable[[dict], None] | None:
        return on_progress

    def finish(self) -> None:
        pass


NO_TRACKING = _NoTracking()


def _warn(run_dir: Path, exc: BaseException) -> None:
    reason = _redacted(
        " ".join(f"{type(exc).__name__}: {exc}".split())
    )  # MLflow's messages quote the URI
    reason = reason if len(reason) <= 300 else reason[:297] + "..."
    message = (
        f"MLflow tracking is off for the rest of this run ({reason}). Training goes on; the run "
        "folder keeps every result."
    )
    logger.warning(message)
    try:
        runs.append_event(run_dir, WarningEvent(message=message).to_dict())
    except OSError:
        pass


class MlflowTracker:
    """One MLflow run mirroring one FinTune run; made by :func:`start`."""

    def __init__(self, run_dir: Path, client, run_id: str):
        self.run_dir, self.client, self.run_id = run_dir, client, run_id
        self.active = True
        self._last_step: StepEvent | None = None

    def _guarded(self, action: Callable[[], None]) -> None:
        if not self.active:
            return
        try:
            action()
        except Exception as exc:  # noqa: BLE001 - no tracking problem may reach training
            self.active = False
            _warn(self.run_dir, exc)

    def _log_metrics(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(key, value, now, step) for key, value in values.items()]
        for start in range(0, len(metrics), _BATCH):
            self.client.log_batch(self.run_id, metrics=metrics[start : start + _BATCH])

    def _on_event(self, raw: dict) -> None:
        event = parse_event(raw)
        if isinstance(event, StepEvent):
            self._last_step = event  # the latest throughput, logged once per epoch
        elif isinstance(event, EpochEvent):
            rate = self._last_step.samples_per_s if self._last_step is not None else None
            values = {
                "train_loss": event.train_loss,
                "elapsed_s": event.elapsed_s,
                "samples_per_s": rate,
            }
            values = {**_numbers(values, ""), **_numbers(event.val, "val_")}
            self._guarded(lambda: self._log_metrics(values, event.epoch))

    def watch(self, on_progress: Callable[[dict], None] | None) -> Callable[[dict], None]:
        """A progress callback that feeds MLflow, then passes each event on to ``on_progress``."""

        def forward(event: dict) -> None:
            if on_progress is not None:
                on_progress(event)
            self._on_event(event)

        return forward

    def _log_results(self) -> None:
        state = read_json(self.run_dir / "status.json").get("state")
        metrics = runs.read_metrics(self.run_dir)
        final = _numbers(metrics.get("test") or {}, "test_")
        if final:
            self._log_metrics(final, int(metrics.get("epochs_run") or 0))
        for name in RUN_FILES:
            if (self.run_dir / name).is_file():
                self.client.log_artifact(self.run_id, str(self.run_dir / name))
        if state == "succeeded" and runs.model_dir(self.run_dir).is_dir():
            self.client.log_artifacts(self.run_id, str(runs.model_dir(self.run_dir)), "model")
        self.client.set_terminated(self.run_id, _FINAL_STATUS.get(state, "FAILED"))

    def finish(self) -> None:
        """Log the test metrics and the run's files, and close the MLflow run with the run's final
        state."""
        self._guarded(self._log_results)


def start(run_dir: str | Path) -> MlflowTracker | _NoTracking:
    """An MLflow run for ``run_dir`` when tracking is requested, else :data:`NO_TRACKING`; never
    raises.

    Logs the flattened ``config.json`` as params and writes ``tracking.json`` (MLflow run id,
    experiment, URI without credentials) into the run folder.
    """
    run_dir = Path(run_dir)
    if not requested():
        return NO_TRACKING
    uri = tracking_uri()
    try:
        if urlsplit(uri).scheme in ("", "file"):
            # MLflow 3 refuses file stores unless opted in; a local ./mlruns is what --mlflow asks
            # for.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        _check_reachable(uri)
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=uri)
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT
        experiment = client.get_experiment_by_name(name)
        experiment_id = (
            experiment.experiment_id if experiment is not None else client.create_experiment(name)
        )
        run = client.create_run(
            experiment_id, run_name=run_dir.name, tags={"fintune.run_dir": str(run_dir.resolve())}
        )
        tracker = MlflowTracker(run_dir, client, run.info.run_id)
        params = [
            Param(k, v) for k, v in flatten_config(read_json(run_dir / "config.json")).items()
        ]
        for first in range(0, len(params), _BATCH):
            client.log_batch(tracker.run_id, params=params[first : first + _BATCH])
        write_json(
            run_dir / TRACKING_FILE,
            {
                "mlflow_run_id": tracker.run_id,
                "experiment_id": experiment_id,
                "experiment": name,
                "tracking_uri": _redacted(uri),
            },
        )
    except Exception as exc:  # noqa: BLE001 - an import error, a dead server, a refused value: never fatal
        _warn(run_dir, exc)
        return NO_TRACKING
    return tracker


def read_tracking(run_dir: str | Path) -> dict:
    """``tracking.json`` of a run (``{}`` when it was not tracked)."""
    return read_json(Path(run_dir) / TRACKING_FILE)
