"""The REST scoring service: real tiny runs behind FastAPI's TestClient, and once behind a real
uvicorn + curl."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.cli import main
from core.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from core.errors import ConfigError, RunError
from core.runs import folder as runs
from core.runs.fitted import load_model
from core.runs.status import read_status
from core.runs.worker import execute
from core.serving.predict import score_file
from core.serving.service import MAX_EXPLAIN_ROWS_PER_REQUEST, MAX_PREDICT_ROWS, create_app
from tests.conftest import (
    PROJECT_ROOT,
    credit_table,
    regression_table,
    sentiment_table,
    stop_process,
)

pytestmark = pytest.mark.timeout(300)

TOKEN = "test-token-0123456789abcdef"


def _finished_run(root, backbone: str, target: str, frame: pd.DataFrame):
    config = RunConfig(
        data=DataConfig(target=target),
        model=ModelConfig(backbone=backbone, d_hidden=32, d_numeric=16),
        train=TrainConfig(
            epochs=1, batch_size=16, lr=1e-3, head_lr=1e-2, max_steps=2, seed=0, precision="fp32"
        ),
    )
    run_dir = runs.create_run(root, config, frame, source="test")
    assert execute(run_dir) == "succeeded", read_status(run_dir)
    return run_dir


@pytest.fixture(scope="module")
def served_runs(tmp_path_factory, tiny_backbone) -> dict:
    """One finished run per task, trained once for the module."""
    root = tmp_path_factory.mktemp("serve")
    return {
        "binary": _finished_run(root, tiny_backbone, "credit_risk", credit_table()),
        "multiclass": _finished_run(root, tiny_backbone, "label", sentiment_table()),
        "regression": _finished_run(root, tiny_backbone, "spread_bps", regression_table()),
    }


@pytest.fixture(scope="module")
def clients(served_runs) -> dict[str, TestClient]:
    return {task: TestClient(create_app(run_dir)) for task, run_dir in served_runs.items()}


@pytest.fixture(scope="module")
def client(clients) -> TestClient:
    return clients["binary"]


def _records(frame: pd.DataFrame) -> list[dict]:
    return json.loads(frame.to_json(orient="records"))  # NaN -> null, as a JSON client sends it


def _rows(task: str, n: int = 2, seed: int = 7) -> pd.DataFrame:
    build = {"binary": credit_table, "multiclass": sentiment_table, "regression": regression_table}[
        task
    ]
    return build(seed=seed).head(n)


def _only_error(response, status: int = 422) -> dict:
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, list) and detail, detail
    return detail[0]


# --------------------------------------------------------------------------- health and schema


def test_health_describes_the_run(client, served_runs):
    body = client.get("/health").json()
    spec = load_model(served_runs["binary"]).spec_
    assert body["status"] == "ok" and body["run_id"] == served_runs["binary"].name
    assert body["task"] == "binary" and body["target"] == "credit_risk"
    assert body["classes"] == ["bad", "good"] and body["positive_class"] == spec.positive_class
    assert body["backbone"] == runs.load_config(served_runs["binary"]).model.backbone
    assert [(c["name"], c["role"]) for c in body["columns"]] == [
        (c, spec.roles[c]) for c in spec.feature_columns
    ]
    assert body["limits"]["max_predict_rows"] == MAX_PREDICT_ROWS
    assert body["limits"]["max_explain_rows"] == MAX_EXPLAIN_ROWS_PER_REQUEST
    inference = body["inference"]
    assert inference["device"] == "cpu" and inference["precision"] == "fp32"  # the run's precision
    assert inference["threads"] >= 1 and inference["batch_size"] >= 1
    assert inference["request_timeout_s"] == 60
    assert inference["max_length"] == load_model(served_runs["binary"]).max_length_


def test_openapi_request_models_are_the_runs_columns(client, served_runs):
    response = client.get("/openapi.json")
    assert response.status_code == 200
    schema = response.json()
    row = schema["components"]["schemas"]["Row"]
    spec = load_model(served_runs["binary"]).spec_
    assert list(row["properties"]) == spec.feature_columns
    assert sorted(row["required"]) == sorted(
        spec.feature_columns
    )  # present in every row, null allowed
    assert row["additionalProperties"] is True  # extra columns: ignored with a warning
    kinds = {"numeric": "number", "categorical": "string", "text": "string", "datetime": "string"}
    for column in spec.feature_columns:
        assert {"type": kinds[spec.roles[column]]} in row["properties"][column]["anyOf"]
        assert {"type": "null"} in row["properties"][column]["anyOf"]
    rows = schema["components"]["schemas"]["PredictRequest"]["properties"]["rows"]
    assert rows["minItems"] == 1 and rows["maxItems"] == MAX_PREDICT_ROWS
    assert (
        schema["components"]["schemas"]["ExplainRequest"]["properties"]["rows"]["maxItems"]
        == MAX_EXPLAIN_ROWS_PER_REQUEST
    )
    body = schema["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert set(body) == {"application/json", "multipart/form-data"}
    assert client.get("/docs").status_code == 200


# --------------------------------------------------------------------------- predict


def test_binary_predictions_follow_the_saved_threshold(client, served_runs):
    frame = _rows("binary")
    response = client.post("/predict", json={"rows": _records(frame)})
    assert response.status_code == 200, response.text
    body = response.json()
    expected, _ = score_file(
        served_runs["binary"], frame
    )  # the CLI's scoring, with the run's decision
    assert body["warnings"] == [] and body["task"] == "binary"
    assert [p["row"] for p in body["predictions"]] == [0, 1]
    assert [p["prediction"] for p in body["predictions"]] == list(expected["prediction"])
    for p, (_, line) in zip(body["predictions"], expected.iterrows(), strict=True):
        assert sum(p["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)
        assert p["probabilities"]["bad"] == pytest.approx(line["prob_bad"], abs=1e-6)


@pytest.mark.parametrize("task", ["multiclass", "regression"])
def test_multiclass_and_regression_predictions(clients, served_runs, task):
    frame = _rows(task)
    response = clients[task].post("/predict", json={"rows": _records(frame)})
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    expected, _ = score_file(served_runs[task], frame)
    assert len(predictions) == 2
    if task == "regression":
        assert all(p["probabilities"] is None for p in predictions)
        np.testing.assert_allclose(
            [p["prediction"] for p in predictions], expected["prediction"], rtol=1e-5
        )
    else:
        for p in predictions:
            assert set(p["probabilities"]) == {"bearish", "neutral", "bullish"}
            assert sum(p["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)
            assert p["prediction"] == max(p["probabilities"], key=p["probabilities"].get)


def test_csv_upload_scores_like_json(client):
    frame = _rows("binary", n=3)
    upload = client.post(
        "/predict", files={"file": ("rows.csv", frame.to_csv(index=False).encode(), "text/csv")}
    )
    as_json = client.post("/predict", json={"rows": _records(frame)})
    assert upload.status_code == 200, upload.text
    assert [p["prediction"] for p in upload.json()["predictions"]] == [
        p["prediction"] for p in as_json.json()["predictions"]
    ]
    np.testing.assert_allclose(
        [p["probabilities"]["bad"] for p in upload.json()["predictions"]],
        [p["probabilities"]["bad"] for p in as_json.json()["predictions"]],
        atol=1e-6,
    )


def test_extra_columns_are_ignored_with_a_warning(client):
    rows = _records(_rows("binary"))
    rows[0]["branch_manager"] = "Ms <b>Ada</b>"
    response = client.post("/predict", json={"rows": rows})
    assert response.status_code == 200
    assert response.json()["warnings"] == [
        "Column 'branch_manager' was not seen in training and is ignored."
    ]
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-content-type-options"] == "nosniff"
    frame = _rows("binary").assign(internal_score=1.0)
    upload = client.post(
        "/predict", files={"file": ("rows.csv", frame.to_csv(index=False).encode(), "text/csv")}
    )
    assert upload.json()["warnings"] == [
        "Column 'internal_score' was not seen in training and is ignored."
    ]


# --------------------------------------------------------------------------- 422 and 413


def test_a_wrong_type_names_the_row_and_column(client):
    rows = _records(_rows("binary"))
    rows[1]["monthly_income"] = "a lot"
    error = _only_error(client.post("/predict", json={"rows": rows}))
    assert error["loc"] == ["body", "rows", 1, "monthly_income"]
    assert "rows[1]['monthly_income']" in error["msg"] and "send a number or null" in error["msg"]
    assert "input" not in error  # the server does not echo what was sent

    rows = _records(_rows("binary"))
    rows[0]["application_date"] = "the day after tomorrow"
    error = _only_error(client.post("/predict", json={"rows": rows}))
    assert error["loc"] == ["body", "rows", 0, "application_date"] and "2024-03-31" in error["msg"]


def test_a_missing_column_is_named_with_the_fix(client):
    rows = _records(_rows("binary"))
    del rows[0]["housing"]
    error = _only_error(client.post("/predict", json={"rows": rows}))
    assert error["loc"] == ["body", "rows", 0, "housing"]
    assert "lacks 'housing'" in error["msg"] and "null when unknown" in error["msg"]
    rows[0]["housing"] = None  # an unknown value is fine
    assert client.post("/predict", json={"rows": rows}).status_code == 200


def test_empty_too_many_and_malformed_bodies_are_422(client):
    error = _only_error(client.post("/predict", json={"rows": []}))
    assert error["loc"] == ["body", "rows"] and "empty" in error["msg"]
    row = _records(_rows("binary", n=1))[0]
    error = _only_error(client.post("/predict", json={"rows": [row] * (MAX_PREDICT_ROWS + 1)}))
    assert error["loc"] == ["body", "rows"] and f"at most {MAX_PREDICT_ROWS}" in error["msg"]
    error = _only_error(
        client.post("/explain", json={"rows": [row] * (MAX_EXPLAIN_ROWS_PER_REQUEST + 1)})
    )
    assert f"at most {MAX_EXPLAIN_ROWS_PER_REQUEST}" in error["msg"]
    error = _only_error(
        client.post(
            "/predict", content=b"{rows: oops", headers={"content-type": "application/json"}
        )
    )
    assert "not valid JSON" in error["msg"]
    error = _only_error(client.post("/predict", json={"rows": [row], "threshold": 0.2}))
    assert error["loc"] == ["body", "threshold"]
    response = client.post("/predict", content=b"rows", headers={"content-type": "text/plain"})
    assert response.status_code == 415 and "application/json" in response.json()["detail"]


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"\x00\x01\x02binary\x00" * 50, "binary file"),
        (b"age_years,monthly_income\n", "no data rows"),
        (b"age_years,notes\n1,x\n2,x,y,z\n", "could not be parsed"),
        (b"age_years,notes\n1,x\n", "lacks column"),
        (b"PAR1\x00\x00", "Parquet"),
    ],
)
def test_a_csv_that_does_not_parse_is_422(client, content, fragment):
    error = _only_error(client.post("/predict", files={"file": ("rows.csv", content, "text/csv")}))
    assert error["loc"][:2] == ["body", "file"] and fragment in error["msg"], error


def test_csv_values_and_the_file_field_are_checked(client):
    frame = _rows("binary", n=3).astype({"age_years": object})
    frame.loc[frame.index[2], "age_years"] = "forty"
    error = _only_error(
        client.post("/predict", files={"file": ("rows.csv", frame.to_csv(index=False), "text/csv")})
    )
    assert error["loc"] == ["body", "file", 2, "age_years"] and "data row 3" in error["msg"]
    error = _only_error(
        client.post("/predict", data={"other": "x"}, files={"note": ("a.txt", b"x")})
    )
    assert error["loc"] == ["body", "file"] and "curl -F file=@rows.csv" in error["msg"]


def test_bodies_over_the_limit_are_413(served_runs):
    small = TestClient(create_app(served_runs["binary"], max_body_bytes=2_000))
    rows = _records(_rows("binary", n=20))
    assert small.post("/predict", json={"rows": rows[:1]}).status_code == 200
    response = small.post("/predict", json={"rows": rows})
    assert response.status_code == 413 and "2,000 bytes" in response.json()["detail"]

    def chunks():  # no Content-Length: the limit holds on the stream too
        for _ in range(10):
            yield b" " * 500

    streamed = small.post(
        "/predict", content=chunks(), headers={"content-type": "application/json"}
    )
    assert streamed.status_code == 413


# --------------------------------------------------------------------------- explain


def test_explain_values_add_up_to_the_model_output(client, served_runs):
    frame = _rows("binary")
    response = client.post("/explain", json={"rows": _records(frame)})
    assert response.status_code == 200, response.text
    body = response.json()
    spec = load_model(served_runs["binary"]).spec_
    assert body["output"] == spec.positive_class
    probabilities = [
        p["probabilities"][spec.positive_class]
        for p in client.post("/predict", json={"rows": _records(frame)}).json()["predictions"]
    ]
    for row, probability in zip(body["rows"], probabilities, strict=True):
        assert list(row["values"]) == spec.feature_columns
        assert row["base_value"] + sum(row["values"].values()) == pytest.approx(
            row["output_value"], abs=1e-9
        )
        assert row["output_value"] == pytest.approx(probability, abs=1e-3)
    good = client.post("/explain", json={"rows": _records(frame.head(1)), "class": "good"}).json()
    assert good["output"] == "good"
    error = _only_error(
        client.post("/explain", json={"rows": _records(frame.head(1)), "class": "maybe"})
    )
    assert error["loc"] == ["body", "class"] and "['bad', 'good']" in error["msg"]


def test_explain_regression_explains_the_value(clients):
    response = clients["regression"].post(
        "/explain", json={"rows": _records(_rows("regression", n=1))}
    )
    assert response.status_code == 200, response.text
    assert response.json()["output"] == "spread_bps"


# --------------------------------------------------------------------------- token


def test_a_token_guards_everything_but_health(served_runs):
    guarded = TestClient(create_app(served_runs["binary"], token=TOKEN))
    rows = {"rows": _records(_rows("binary"))}
    assert guarded.post("/predict", json=rows).status_code == 401
    wrong = guarded.post(
        "/predict", json=rows, headers={"Authorization": "Bearer " + TOKEN[:-1] + "x"}
    )
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
    assert (
        guarded.post("/predict", json=rows, headers={"Authorization": f"Basic {TOKEN}"}).status_code
        == 401
    )
    assert (
        guarded.get("/openapi.json").status_code == 401 and guarded.get("/docs").status_code == 401
    )
    assert guarded.post("/explain", json=rows).status_code == 401
    assert (
        guarded.post(
            "/predict", json=rows, headers={"Authorization": f"Bearer {TOKEN}"}
        ).status_code
        == 200
    )
    # /health answers everyone (probes), but shows the run's columns only with the token.
    assert guarded.get("/health").json() == {"status": "ok", "run_id": served_runs["binary"].name}
    assert "columns" in guarded.get("/health", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    with pytest.raises(ConfigError, match="at least 16"):
        create_app(served_runs["binary"], token="short")


# --------------------------------------------------------------------------- never a 5xx

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
_VALID_ROW = _records(credit_table(seed=11).head(1))[0]
_KEYS = st.sampled_from([*_VALID_ROW, "", "rows", "class"]) | st.text(max_size=8)


@st.composite
def _mutated_rows(draw) -> dict:
    rows = []
    for _ in range(draw(st.integers(1, 3))):
        row = dict(_VALID_ROW)
        for _ in range(draw(st.integers(0, 3))):
            key = draw(_KEYS)
            if draw(st.booleans()):
                row.pop(key, None)
            else:
                row[key] = draw(_JSON)
        rows.append(row)
    body = {"rows": rows}
    if draw(st.booleans()):
        body[draw(st.sampled_from(["class", "threshold"]))] = draw(_JSON)
    return body


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    payload=_JSON | _mutated_rows() | st.fixed_dictionaries({"rows": _JSON}),
    path=st.sampled_from(["/predict", "/explain", "/counterfactuals"]),
)
def test_arbitrary_json_never_gives_a_server_error(client, payload, path):
    # json.dumps writes NaN and Infinity as bare words: servers meet those too.
    response = client.post(
        path, content=json.dumps(payload).encode(), headers={"content-type": "application/json"}
    )
    assert response.status_code < 500, response.text
    assert response.status_code in (200, 422), response.text


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(content=st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_arbitrary_uploads_never_give_a_server_error(client, content):
    header = b"age_years,monthly_income,purpose,housing,notes,application_date\n"
    for data in (content, header + content):
        response = client.post("/predict", files={"file": ("rows.csv", data, "text/csv")})
        assert response.status_code in (200, 422), response.text


# ------------------------------------------------------------------------ the CLI and a real server


def test_the_cli_refuses_a_run_without_a_model_and_an_open_host(
    tmp_path, served_runs, capsys, monkeypatch
):
    monkeypatch.delenv("FINTUNE_API_TOKEN", raising=False)
    unfinished = tmp_path / "20250101-000000-abcdef"
    unfinished.mkdir()
    assert main(["serve", str(unfinished)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "has no saved model" in err[0]
    assert main(["serve", str(served_runs["binary"]), "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "FINTUNE_API_TOKEN" in err[0]
    with pytest.raises(RunError):
        create_app(unfinished)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def live_server(served_runs, tmp_path_factory):
    """``fintune serve`` on the binary run, as a real subprocess on 127.0.0.1: (url, log path)."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("FINTUNE_API_TOKEN", "FINTUNE_REQUEST_TIMEOUT", "FINTUNE_SERVE_THREADS")
    }
    log_path = tmp_path_factory.mktemp("server") / "server.log"
    log = open(log_path, "wb")
    command = [
        sys.executable,
        "-m",
        "core.cli",
        "serve",
        str(served_runs["binary"]),
        "--port",
        str(port),
    ]
    server = subprocess.Popen(
        command, cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, log_path.read_text()
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                    assert json.load(answer)["status"] == "ok"
                break
            except OSError:
                assert time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.3)
        yield url, log_path
    finally:
        stop_process(server)
        log.close()


def _post(url: str, rows: list[dict], timeout: float = 120) -> dict:
    request = urllib.request.Request(
        f"{url}/predict",
        data=json.dumps({"rows": rows}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=timeout) as answer:
        return json.load(answer)


def test_a_real_server_answers_curl(served_runs, live_server):
    url, log_path = live_server
    payload = json.dumps({"rows": _records(_rows("binary"))})
    result = subprocess.run(
        [
            "curl",
            "-sS",
            "--fail-with-body",
            "-X",
            "POST",
            f"{url}/predict",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            payload,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr + result.stdout + log_path.read_text()
    body = json.loads(result.stdout)
    assert body["run_id"] == served_runs["binary"].name and len(body["predictions"]) == 2
    for p in body["predictions"]:
        assert p["prediction"] in ("bad", "good")
        assert sum(p["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)


# --------------------------------------------------------------------------- NaN, warnings, CSV


@pytest.mark.parametrize(
    ("column", "value", "spelt"),
    [
        ("monthly_income", float("nan"), "NaN"),
        ("monthly_income", float("inf"), "Infinity"),
        ("monthly_income", float("-inf"), "-Infinity"),
        ("purpose", float("nan"), "NaN"),  # would otherwise become the category "nan"
        ("notes", float("inf"), "Infinity"),
    ],
)
def test_nan_and_infinity_are_refused_naming_the_row_and_column(client, column, value, spelt):
    rows = _records(_rows("binary"))
    rows[1][column] = value
    content = json.dumps({"rows": rows}).encode()  # json.dumps writes NaN and Infinity as words
    assert spelt.encode() in content
    sent = client.post("/predict", content=content, headers={"content-type": "application/json"})
    error = _only_error(sent)
    assert error["loc"] == ["body", "rows", 1, column]
    assert error["msg"].startswith(f"rows[1][{column!r}]: {spelt} is not a JSON value")
    assert "null marks a missing value" in error["msg"]
    rows[1][column] = None  # a missing value is sent as null
    assert client.post("/predict", json={"rows": rows}).status_code == 200


def test_warnings_for_unused_columns_are_capped(client):
    rows = _records(_rows("binary"))
    rows[0].update({f"extra_{i}": i for i in range(1000)})
    rows[1].update({f"extra_{i}": i for i in range(500, 1500)})  # 1,500 distinct extra keys in all
    response = client.post("/predict", json={"rows": rows})
    assert response.status_code == 200, response.text
    warnings = response.json()["warnings"]
    assert len(warnings) == 21
    assert warnings[0] == "Column 'extra_0' was not seen in training and is ignored."
    assert warnings[-1] == "... and 1,480 more columns the model does not use."
    frame = _rows("binary").assign(**{f"x{i}": 1 for i in range(30)})
    csv = frame.to_csv(index=False).encode()
    upload = client.post("/predict", files={"file": ("rows.csv", csv, "text/csv")})
    assert upload.status_code == 200, upload.text
    assert upload.json()["warnings"][-1] == "... and 10 more columns the model does not use."


def test_a_csv_with_trailing_delimiters_scores_like_the_clean_csv(client):
    # Needs core.data.read_table to read trailing empty fields as such (issue 14, D).
    clean = _rows("binary", n=3).to_csv(index=False)
    header, *lines = clean.splitlines()
    trailing = "\n".join([header, *(line + "," for line in lines)]) + "\n"
    expected = client.post("/predict", files={"file": ("rows.csv", clean.encode(), "text/csv")})
    got = client.post("/predict", files={"file": ("rows.csv", trailing.encode(), "text/csv")})
    assert expected.status_code == 200, expected.text
    assert got.status_code == 200, got.text
    assert got.json()["predictions"] == expected.json()["predictions"]

    extra = "\n".join([header, lines[0], lines[1] + ",surplus", lines[2]]) + "\n"
    sent = client.post("/predict", files={"file": ("rows.csv", extra.encode(), "text/csv")})
    error = _only_error(sent)
    assert error["loc"][:2] == ["body", "file"]
    assert re.search(r"\b(row 2|line 3)\b", error["msg"]), error  # data row 2 is the file's line 3


# --------------------------------------------------------------------------- load and budgets


def _assert_scored_like_the_cli(predictions: list[dict], expected: pd.DataFrame) -> None:
    assert [p["row"] for p in predictions] == list(range(len(expected)))
    assert [p["prediction"] for p in predictions] == list(expected["prediction"])
    got = [p["probabilities"]["bad"] for p in predictions]
    np.testing.assert_allclose(got, expected["prob_bad"], atol=1e-5)


def _health(url: str) -> tuple[float, dict]:
    started = time.perf_counter()
    with urllib.request.urlopen(f"{url}/health", timeout=10) as answer:
        body = json.load(answer)
    return time.perf_counter() - started, body


def test_health_answers_at_once_while_a_long_inference_runs(live_server, served_runs):
    # Issue 14: with big requests running and 45 small ones queued, /health waited 36 s.
    url, log_path = live_server
    big_frame = credit_table(n=MAX_PREDICT_ROWS, seed=21)
    small_frame = credit_table(n=45 * 3, seed=22)
    big_rows, small_rows = _records(big_frame), _records(small_frame)
    latencies, queued = [], []
    with ThreadPoolExecutor(48) as pool:
        big = [pool.submit(_post, url, big_rows) for _ in range(3)]
        small = [pool.submit(_post, url, small_rows[3 * k : 3 * k + 3]) for k in range(45)]
        while not all(answer.done() for answer in big):
            seconds, body = _health(url)
            latencies.append(seconds)
            queued.append(body.get("inference", {}).get("queued_rows", 0))
            time.sleep(0.02)
    assert max(latencies) < 1.0, (max(latencies), log_path.read_text()[-2000:])
    assert max(queued) > 0, "no /health answer came while rows waited for the model"
    expected, _ = score_file(served_runs["binary"], big_frame)
    for answer in big:
        _assert_scored_like_the_cli(answer.result()["predictions"], expected)
    expected, _ = score_file(served_runs["binary"], small_frame)
    for k, answer in enumerate(small):
        part = expected.iloc[3 * k : 3 * k + 3].reset_index(drop=True)
        _assert_scored_like_the_cli(answer.result()["predictions"], part)


def test_fifty_concurrent_clients_each_get_their_own_answers(live_server, served_runs):
    url, _ = live_server
    sizes = [1 + i % 13 for i in range(50)]
    frame = credit_table(n=sum(sizes), seed=23)
    expected, _ = score_file(served_runs["binary"], frame)
    records = _records(frame)
    starts = np.cumsum([0, *sizes[:-1]])
    together = threading.Barrier(50)

    def client(k: int) -> dict:
        together.wait(timeout=30)
        return _post(url, records[starts[k] : starts[k] + sizes[k]])

    with ThreadPoolExecutor(50) as pool:
        answers = list(pool.map(client, range(50)))
    for k, answer in enumerate(answers):
        part = expected.iloc[starts[k] : starts[k] + sizes[k]].reset_index(drop=True)
        _assert_scored_like_the_cli(answer["predictions"], part)
    inference = _health(url)[1]["inference"]
    assert inference["queued_rows"] == 0 and inference["rows_dropped"] == 0


def test_a_request_over_its_time_budget_gets_a_503_and_its_rows_are_dropped(served_runs):
    # One row per forward pass: 10,000 passes take several seconds, far over a 1.5 s budget.
    app = create_app(served_runs["binary"], request_timeout=1.5, batch_size=1)
    client = TestClient(app)
    response = client.post("/predict", json={"rows": _records(credit_table(n=10_000, seed=4))})
    assert response.status_code == 503, response.text
    detail = response.json()["detail"]
    assert "10,000 rows did not finish within the server's time budget of 1.5 s" in detail
    assert "send fewer rows per request" in detail and "FINTUNE_REQUEST_TIMEOUT" in detail
    worker = app.state.inference
    deadline = time.monotonic() + 10
    while worker.queued_rows and time.monotonic() < deadline:  # dropped at the next step
        time.sleep(0.01)
    assert worker.queued_rows == 0 and worker.rows_dropped > 0 and worker.rows_scored < 10_000
    assert client.post("/predict", json={"rows": _records(_rows("binary"))}).status_code == 200
    worker.close()


def test_a_client_that_goes_away_has_its_queued_rows_dropped(served_runs):
    app = create_app(served_runs["binary"], batch_size=2)
    worker = app.state.inference
    body = json.dumps({"rows": _records(credit_table(n=4000, seed=5))}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/predict",
        "raw_path": b"/predict",
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }

    async def scenario() -> list[dict]:
        gone, sent = asyncio.Event(), []
        incoming = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive() -> dict:
            if incoming:
                return incoming.pop()
            await gone.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict) -> None:
            sent.append(message)

        task = asyncio.create_task(app(scope, receive, send))
        deadline = time.monotonic() + 60
        while worker.rows_scored == 0:  # the model has started on the rows
            assert time.monotonic() < deadline and not task.done(), sent
            await asyncio.sleep(0.005)
        gone.set()  # the client closes the connection
        await asyncio.wait_for(task, 30)
        return sent

    sent = asyncio.run(scenario())
    assert sent[0]["status"] == 499  # the reply nobody reads
    deadline = time.monotonic() + 10
    while worker.queued_rows and time.monotonic() < deadline:
        time.sleep(0.01)
    assert worker.queued_rows == 0 and worker.rows_dropped > 0 and worker.rows_scored < 4000
    worker.close()


def test_bad_serving_settings_are_refused_with_the_fix(served_runs, monkeypatch):
    with pytest.raises(ConfigError, match="positive number of seconds"):
        create_app(served_runs["binary"], request_timeout=0)
    monkeypatch.setenv("FINTUNE_REQUEST_TIMEOUT", "a minute")
    with pytest.raises(ConfigError, match="FINTUNE_REQUEST_TIMEOUT='a minute': set the time"):
        create_app(served_runs["binary"])
    monkeypatch.setenv("FINTUNE_REQUEST_TIMEOUT", "5")
    monkeypatch.setenv("FINTUNE_SERVE_THREADS", "0")
    with pytest.raises(ConfigError, match="FINTUNE_SERVE_THREADS='0'"):
        create_app(served_runs["binary"])
    monkeypatch.setenv("FINTUNE_SERVE_THREADS", "1")
    inference = TestClient(create_app(served_runs["binary"])).get("/health").json()["inference"]
    assert inference["request_timeout_s"] == 5 and inference["threads"] == 1


# --------------------------------------------------------------------------- reasons (issue 19)


def test_declined_rows_carry_reasons_and_other_tasks_none(clients):
    frame = _rows("binary", n=8, seed=31)
    body = clients["binary"].post("/predict", json={"rows": _records(frame)}).json()
    if not any("no reason codes" in w for w in body["warnings"]):
        for p in body["predictions"]:
            assert isinstance(p["reasons"], list)
            assert bool(p["reasons"]) == (p["prediction"] == "bad")
            assert len(p["reasons"]) <= 4 and all(isinstance(r, str) and r for r in p["reasons"])
    for task in ("multiclass", "regression"):
        answer = clients[task].post("/predict", json={"rows": _records(_rows(task))}).json()
        assert all(p["reasons"] is None for p in answer["predictions"])


def test_the_reasons_flag_is_checked(client):
    rows = _records(_rows("binary"))
    error = _only_error(client.post("/predict", json={"rows": rows, "reasons": "maybe"}))
    assert error["loc"] == ["body", "reasons"]
    upload = client.post(
        "/predict?reasons=maybe",
        files={"file": ("rows.csv", _rows("binary").to_csv(index=False).encode(), "text/csv")},
    )
    error = _only_error(upload)
    assert error["loc"] == ["query", "reasons"] and "use true or false" in error["msg"]
    skipped = client.post("/predict", json={"rows": rows, "reasons": False}).json()
    assert all(p["reasons"] is None for p in skipped["predictions"])


# --------------------------------------------------------------------------- decisions


def test_counterfactuals_flip_the_decision_when_scored(client, served_runs):
    run_dir = served_runs["binary"]
    tuner = load_model(run_dir)
    decision = runs.read_decision(run_dir)
    positive = list(tuner.spec_.classes).index(decision.positive_class)
    rows = credit_table(n=120, seed=11)
    scores = tuner.predict_proba(rows)[:, positive]
    actionable = ["age_years", "monthly_income", "housing", "purpose"]
    flipped = 0
    for i in np.argsort(np.abs(scores - decision.threshold))[:6]:  # the closest calls
        row = rows.iloc[[i]]
        response = client.post(
            "/counterfactuals", json={"rows": _records(row), "actionable": actionable}
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["probability"] == pytest.approx(scores[i], abs=1e-6)
        assert body["threshold"] == pytest.approx(decision.threshold)
        was_flagged = scores[i] >= decision.threshold
        assert body["results"] or body["message"]
        for result in body["results"]:
            changed = row.copy()
            for change in result["changes"]:
                assert change["column"] in actionable
                changed[change["column"]] = change["new"]
            score = tuner.predict_proba(changed)[0, positive]
            assert (score >= decision.threshold) != was_flagged  # the decision flipped
            assert score == pytest.approx(result["probability"], abs=1e-6)
            flipped += 1
    assert flipped > 0


def test_counterfactuals_refuse_bad_columns_and_other_tasks(client, clients):
    row = _records(_rows("binary", 1))
    error = _only_error(client.post("/counterfactuals", json={"rows": row, "actionable": ["nope"]}))
    assert "nope" in error["msg"]
    error = _only_error(
        client.post("/counterfactuals", json={"rows": row, "actionable": ["notes"]})
    )
    assert "notes" in error["msg"] and "text" in error["msg"]
    two = _records(_rows("binary", 2))
    assert (
        client.post("/counterfactuals", json={"rows": two, "actionable": ["housing"]}).status_code
        == 422
    )
    regression = clients["regression"].post(
        "/counterfactuals",
        json={"rows": _records(_rows("regression", 1)), "actionable": ["leverage"]},
    )
    assert regression.status_code == 422 and "binary" in regression.text


def test_fairness_by_group_of_the_served_run(client, served_runs, clients):
    # Test and validation rows: 30 test rows alone leave every housing group under 20 rows.
    response = client.get("/fairness", params={"by": ["housing"], "rows": "held_out"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["columns"] == ["housing"] and body["rows_used"] == "held_out"
    run_dir = served_runs["binary"]
    held_out = len(runs.read_predictions(run_dir)) + len(runs.read_val_predictions(run_dir))
    assert body["rows"] == held_out and len(body["groups"]) >= 2
    assert sum(g["rows"] for g in body["groups"]) == body["rows"]
    assert {d["group"] for d in body["disparities"]} == {g["group"] for g in body["groups"]}
    assert {g["measure"] for g in body["gaps"]} >= {"demographic_parity", "equalized_odds"}
    default = client.get("/fairness").json()  # the inputs named like protected attributes
    assert default["columns"] == ["age_years"]
    error = _only_error(client.get("/fairness", params={"by": ["nope"]}))
    assert "nope" in error["msg"]
    assert client.get("/fairness", params={"rows": "train"}).status_code == 422
    assert clients["regression"].get("/fairness").status_code == 409
