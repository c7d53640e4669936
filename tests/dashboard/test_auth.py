"""A password guards the app whenever it is bound to anything but this machine."""

import os

import pytest
from apptest_helpers import texts
from live_server import start_dashboard
from playwright.sync_api import expect

from core.cli import main as fintune_main
from tests.conftest import stop_process


def test_local_binding_needs_no_password(app):
    app.run()
    assert not app.exception
    assert app.selectbox(key="data.target").value == "credit_risk"


def test_exposed_app_asks_for_the_password(app, monkeypatch):
    monkeypatch.setenv("FINTUNE_REQUIRE_PASSWORD", "1")
    app.secrets["password"] = "correct horse"
    app.run()
    assert not app.exception
    assert not [s for s in app.selectbox if s.key == "data.target"]  # nothing of the app yet
    app.text_input(key="auth.password").input("wrong")
    app.button[0].click().run()
    assert "Wrong password." in texts(app.error)
    assert not [s for s in app.selectbox if s.key == "data.target"]
    app.text_input(key="auth.password").input("correct horse")
    app.button[0].click().run()
    assert not app.exception
    assert app.selectbox(key="data.target").value == "credit_risk"


def test_exposed_app_without_a_password_refuses_to_serve(app, monkeypatch):
    monkeypatch.setenv("FINTUNE_REQUIRE_PASSWORD", "1")
    monkeypatch.delenv("FINTUNE_PASSWORD", raising=False)
    app.run()
    assert not app.exception
    assert "no password is set" in texts(app.error)
    assert not [s for s in app.selectbox if s.key == "data.target"]


def test_cli_refuses_an_open_address_without_a_password(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("FINTUNE_PASSWORD", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.streamlit/secrets.toml either
    assert fintune_main(["dashboard", "--host", "0.0.0.0", "--runs-dir", str(tmp_path)]) == 2
    assert "set a password first" in capsys.readouterr().err


def test_unset_address_means_every_interface_so_a_password_is_asked(app, monkeypatch):
    import streamlit as st

    real = st.get_option
    monkeypatch.setattr(
        st, "get_option", lambda key: None if key == "server.address" else real(key)
    )
    monkeypatch.delenv("FINTUNE_REQUIRE_PASSWORD", raising=False)
    app.secrets["password"] = "correct horse"
    app.run()
    assert not app.exception
    assert [t for t in app.text_input if t.key == "auth.password"]
    assert not [s for s in app.selectbox if s.key == "data.target"]


@pytest.mark.browser
def test_streamlit_run_from_another_folder_asks_for_the_password(tmp_path, browser):
    """The real entry point: `streamlit run dashboard/app.py` outside the project root leaves the
    address unset (every interface), so the project's config.toml does not apply: a password is
    asked. Bound to 127.0.0.1 from the same folder, none is."""
    home = tmp_path / "home"
    home.mkdir()
    env = dict(
        os.environ,
        HOME=str(home),
        FINTUNE_RUNS_DIR=str(tmp_path / "runs"),
        FINTUNE_PASSWORD="correct horse",
        TOKENIZERS_PARALLELISM="false",
    )
    env.pop("FINTUNE_REQUIRE_PASSWORD", None)
    for address, asks in ((None, True), ("127.0.0.1", False)):
        process, url = start_dashboard(
            tmp_path / f"streamlit-{address}.log", cwd=tmp_path, env=env, address=address
        )
        try:
            page = browser.new_page()
            page.goto(url)
            if asks:
                password = page.get_by_label("Password", exact=True)
                password.wait_for(timeout=60_000)
                assert page.get_by_role("heading", name="Data", level=1).count() == 0
                password.fill("correct horse")
                page.get_by_role("button", name="Sign in").click()
            page.get_by_role("heading", name="Data", level=1).wait_for(timeout=60_000)
            # The sign-in form can linger a moment after the page is drawn (a stale element of the
            # run before): wait for it to go, and fail if it stays.
            expect(page.get_by_label("Password", exact=True)).to_have_count(0, timeout=30_000)
            page.close()
        finally:
            stop_process(process, timeout=20)
