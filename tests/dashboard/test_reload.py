"""Reloading the tab: the choices are saved under the URL's session id and come back in a fresh
session; uploads come back from their kept copy; a bad saved file never breaks the app."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import streamlit as st
from apptest_helpers import open_page, texts
from streamlit.testing.v1 import AppTest

import core
from dashboard import saved_session

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "dashboard" / "app.py"
MARKET = (ROOT / "sample_data" / "market_daily.csv").read_bytes()


def _reload(app: AppTest) -> AppTest:
    """What F5 does: a fresh Streamlit session that arrives with the same URL."""
    fresh = AppTest.from_file(str(APP), default_timeout=120)
    fresh.query_params[saved_session.PARAM] = app.query_params[saved_session.PARAM]
    return fresh


def _saved(runs_dir: Path, app: AppTest) -> Path:
    return runs_dir / ".sessions" / f"{app.query_params[saved_session.PARAM]}.json"


def _upload_market(app: AppTest) -> None:
    app.run()
    app.file_uploader[0].set_value(("prices.csv", MARKET, "text/csv")).run()
    app.selectbox(key="data.target").select("next_day_direction").run()
    assert not app.exception


def test_choices_survive_a_reload(app, runs_dir):
    app.run()
    app.selectbox(key="data.target").select("foreign_worker").run()
    app.radio(key="data.split_kind").set_value("random").run()
    app.session_state["data.roles"] = {"checking_account_status": "ignore"}  # the editor's output
    open_page(app, "model")
    app.number_input(key="train.batch_size").set_value(16).run()
    app.selectbox(key="model.table_encoding").select("cells").run()
    assert not app.exception
    saved = json.loads(_saved(runs_dir, app).read_text())["values"]
    assert saved["train.batch_size"] == 16 and saved["data.target"] == "foreign_worker"

    fresh = _reload(app).run()
    assert not fresh.exception
    assert fresh.selectbox(key="data.target").value == "foreign_worker"
    assert fresh.radio(key="data.split_kind").value == "random"
    assert "19 feature columns" in texts(fresh.success)  # credit_risk in, the ignored column out
    fresh.switch_page("views/model.py").run()
    assert fresh.number_input(key="train.batch_size").value == 16
    assert fresh.selectbox(key="model.table_encoding").value == "cells"
    assert fresh.query_params[saved_session.PARAM] == app.query_params[saved_session.PARAM]


def test_choices_made_before_a_stopped_page_are_saved(app, runs_dir):
    app.run()
    app.session_state["train.batch_size"] = 48
    app.switch_page("views/compare.py").run()  # no runs: the page calls st.stop()
    assert "two finished runs" in texts(app.info)
    assert json.loads(_saved(runs_dir, app).read_text())["values"]["train.batch_size"] == 48


def test_an_unchanged_run_writes_nothing(app, runs_dir):
    app.run()
    path = _saved(runs_dir, app)
    before = path.stat().st_mtime_ns, path.stat().st_ino
    app.run()
    assert (path.stat().st_mtime_ns, path.stat().st_ino) == before


def test_an_upload_comes_back_after_the_cache_is_gone(app, runs_dir):
    _upload_market(app)
    digest = hashlib.sha256(MARKET).hexdigest()
    assert (runs_dir / ".sessions" / "files" / digest).read_bytes() == MARKET
    st.cache_data.clear()  # as after the table was evicted, or a server restart

    fresh = _reload(app).run()
    assert not fresh.exception
    assert "prices.csv" in texts(fresh.caption)
    assert fresh.selectbox(key="data.target").value == "next_day_direction"


def test_a_lost_upload_is_named_and_the_app_starts_fresh(app, runs_dir):
    _upload_market(app)
    for kept in (runs_dir / ".sessions" / "files").iterdir():
        kept.unlink()
    st.cache_data.clear()

    fresh = _reload(app).run()
    assert not fresh.exception
    assert "**prices.csv** was not restored" in texts(fresh.info)
    assert "credit_risk.csv" in texts(fresh.caption)  # the default sample, its default target
    assert fresh.selectbox(key="data.target").value == "credit_risk"
    fresh.run()
    assert "**prices.csv** was not restored" in texts(fresh.info)  # until a table is chosen
    fresh.selectbox(key="data.sample_choice").select("fin_sentiment.csv")
    fresh.button[0].click().run()  # Load sample
    assert "was not restored" not in texts(fresh.info)


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"\xff\xfe\x00",
        b"[]",
        json.dumps({"version": 0, "values": {"train.batch_size": 16}}).encode(),
        json.dumps({"version": 1, "values": ["train.batch_size"]}).encode(),
        json.dumps(
            {
                "version": 1,
                "values": {
                    "train.batch_size": "many",  # a text in a number box would raise
                    "data.digest": "../../etc/passwd",
                    "data.name": "x.csv",
                    "data.roles": {"age_years": 3},
                    "model.lora": "yes",
                },
            }
        ).encode(),
    ],
    ids=["not-json", "not-utf8", "a-list", "old-version", "values-a-list", "wrong-types"],
)
def test_a_garbled_saved_file_starts_fresh(app, runs_dir, content):
    app.run()
    path = _saved(runs_dir, app)
    path.write_bytes(content)

    fresh = _reload(app).run()
    assert not fresh.exception
    assert fresh.selectbox(key="data.target").value == "credit_risk"
    assert "credit_risk.csv" in texts(fresh.caption)
    fresh.switch_page("views/model.py").run()
    assert not fresh.exception
    default = core.default_config("t").train.batch_size
    assert fresh.number_input(key="train.batch_size").value == default
    assert json.loads(path.read_text())["version"] == saved_session.VERSION  # written anew


def test_a_made_up_session_id_gets_a_new_one(app, runs_dir):
    app.query_params[saved_session.PARAM] = "../../outside"
    app.run()
    assert not app.exception
    session_id = app.query_params[saved_session.PARAM]
    assert session_id != "../../outside"
    assert [p.name for p in (runs_dir / ".sessions").glob("*.json")] == [f"{session_id}.json"]
