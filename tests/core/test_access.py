"""The loopback rule and the password lookup shared by the dashboard, its CLI command and serve."""

import pytest

from core.access import configured_password, is_loopback


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost"])
def test_loopback_addresses_are_local(host):
    assert is_loopback(host)


@pytest.mark.parametrize(
    "host", [None, "", "  ", "0.0.0.0", "::", "10.1.2.3", "192.168.0.5", "no-such-host.invalid"]
)
def test_unset_open_and_other_addresses_are_not_local(host):
    # unset is what Streamlit and uvicorn treat as every interface
    assert not is_loopback(host)


def test_password_from_the_project_secrets_then_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FINTUNE_PASSWORD", raising=False)
    assert configured_password(tmp_path) is None
    monkeypatch.setenv("FINTUNE_PASSWORD", "from env")
    assert configured_password(tmp_path) == "from env"
    (tmp_path / ".streamlit").mkdir()
    (tmp_path / ".streamlit" / "secrets.toml").write_text('password = "from file"\n')
    assert configured_password(tmp_path) == "from file"
    (tmp_path / ".streamlit" / "secrets.toml").write_text("password = [broken\n")
    assert configured_password(tmp_path) == "from env"  # a damaged file is skipped, not a traceback
