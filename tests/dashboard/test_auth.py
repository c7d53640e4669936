"""A password guards the app whenever it is bound to anything but this machine."""

from apptest_helpers import texts

from core.cli import main as fintune_main


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
