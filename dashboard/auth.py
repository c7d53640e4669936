"""A password in front of the app whenever it is reachable from other machines.

Bound to 127.0.0.1 (the default) only this machine's user can reach it and no password is asked.
Bound to any other address (``fintune dashboard --host 0.0.0.0``, or ``streamlit run`` with
``--server.address``), every session must first give the password set in
``.streamlit/secrets.toml`` (``password = "..."``) or ``FINTUNE_PASSWORD``. Without one the app
refuses to serve: it fails closed.
"""

from __future__ import annotations

import hmac
import os

import streamlit as st

LOCAL_ADDRESSES = {"", "127.0.0.1", "localhost", "::1"}
AUTHENTICATED = "auth.ok"


def password_required() -> bool:
    address = str(st.get_option("server.address") or "")
    return os.environ.get("FINTUNE_REQUIRE_PASSWORD") == "1" or address not in LOCAL_ADDRESSES


def expected_password() -> str | None:
    try:
        secret = st.secrets.get("password")
    except (FileNotFoundError, KeyError):  # no secrets.toml at all
        secret = None
    return str(secret) if secret else os.environ.get("FINTUNE_PASSWORD") or None


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
        st.error("This app is reachable from other machines but no password is set: add `password = \"...\"` "
                 "to .streamlit/secrets.toml (or set FINTUNE_PASSWORD) and restart, or bind to 127.0.0.1.",
                 icon=":material/lock:")
        st.stop()
    with st.form("auth.form"):
        st.text_input("Password", type="password", key="auth.password")
        st.form_submit_button("Sign in", on_click=_check, args=(expected,))
    if st.session_state.get("auth.failed"):
        st.error("Wrong password.", icon=":material/lock:")
    st.stop()
