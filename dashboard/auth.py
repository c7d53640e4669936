"""A password in front of the app unless it is provably reachable from this machine alone.

``fintune dashboard`` and the project's ``.streamlit/config.toml`` bind to 127.0.0.1, and then no
password is asked. Streamlit's own default is no address at all, which listens on every interface:
``streamlit run dashboard/app.py`` started from another folder does that. So every address that is
not a loopback address (unset included), and every ``--server.address`` such as 0.0.0.0, makes
each session first give the password set in ``.streamlit/secrets.toml`` (``password = "..."``) or
``FINTUNE_PASSWORD``. Without one the app refuses to serve: it fails closed.
"""

from __future__ import annotations

import functools
import hmac
import os
from pathlib import Path

import streamlit as st

import core

AUTHENTICATED = "auth.ok"
ROOT = Path(__file__).resolve().parents[1]


@functools.lru_cache(maxsize=8)
def _loopback(address: str) -> bool:
    return core.is_loopback(address)  # a name is resolved once per process, not on every rerun


def password_required() -> bool:
    """True unless the server is bound to a loopback address (an unset address is every
    interface)."""
    address = str(st.get_option("server.address") or "")
    return os.environ.get("FINTUNE_REQUIRE_PASSWORD") == "1" or not _loopback(address)


def expected_password() -> str | None:
    """The password from Streamlit's secrets, else the project's secrets.toml or
    FINTUNE_PASSWORD."""
    try:
        secret = st.secrets.get("password")
    except (FileNotFoundError, KeyError):  # no secrets.toml where Streamlit looks
        secret = None
    return str(secret) if secret else core.configured_password(ROOT)


def _check(expected: str) -> None:
    given = st.session_state.get("auth.password", "")
    st.session_state[AUTHENTICATED] = hmac.compare_digest(given.encode(), expected.encode())
    st.session_state["auth.failed"] = not st.session_state[AUTHENTICATED]
    st.session_state["auth.password"] = ""  # never keep the typed password around


def gate() -> None:
    """Stop the page unless this session may see the app."""
    if not password_required() or st.session_state.get(AUTHENTICATED):
        return
    expected = expected_password()
    st.title("FinTune")
    if expected is None:
        st.error(
            "This app is reachable from other machines but no password is set: add "
            '`password = "..."` to .streamlit/secrets.toml (or set FINTUNE_PASSWORD) and restart, '
            "or bind to 127.0.0.1.",
            icon=":material/lock:",
        )
        st.stop()
    with st.form("auth.form"):
        st.text_input("Password", type="password", key="auth.password")
        st.form_submit_button("Sign in", on_click=_check, args=(expected,))
    if st.session_state.get("auth.failed"):
        st.error("Wrong password.", icon=":material/lock:")
    st.stop()
