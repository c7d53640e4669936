"""The saved session: a tab's choices kept on disk, so a reload (F5) or the same URL in a new tab
gets them back.

Each tab carries an id in its URL (``?session=<id>``). After every script run the router writes
the values of ``state.REMEMBERED`` as plain JSON to ``<runs>/.sessions/<id>.json`` when they
changed; a fresh Streamlit session that arrives with that id reads them back before the page
draws. Uploaded files are kept by digest beside it (``state.load_bytes``); samples come back by
name. A missing, garbled or older file restores nothing and never raises.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from pathlib import Path

import streamlit as st

from dashboard import state

logger = logging.getLogger(__name__)

PARAM = "session"  # the URL's query parameter
VERSION = 1  # of the file's layout: a file of another version is ignored
_ID = re.compile(r"[0-9a-f]{16}")
_DIGEST = re.compile(r"[0-9a-f]{64}")


def _path(session_id: str) -> Path:
    return state.sessions_dir() / f"{session_id}.json"


def _fits(key: str, value) -> bool:
    """Whether ``value`` is a plain JSON value of a type ``key`` may hold."""
    if type(value) not in state.REMEMBERED[key]:
        return False
    items = [*value, *value.values()] if isinstance(value, dict) else value
    return not isinstance(items, list) or all(isinstance(item, str) for item in items)


def _read(session_id: str) -> dict:
    """The valid remembered values of a saved file; {} when it is missing or not ours."""
    path = _path(session_id)
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        logger.warning("ignoring the unreadable saved session %s", path, exc_info=True)
        return {}
    if not isinstance(saved, dict):
        saved = {}
    values = saved.get("values")
    if saved.get("version") != VERSION or not isinstance(values, dict):
        logger.warning("ignoring the saved session %s: not a version %s file", path, VERSION)
        return {}
    return {k: v for k, v in values.items() if k in state.REMEMBERED and _fits(k, v)}


def _table_notes(values: dict) -> list[str]:
    """Drop the table's choices from ``values`` unless the table can be read again; say why."""
    digest, name, sample = (
        values.get(k) for k in (state.DATA_DIGEST, state.DATA_NAME, state.DATA_SAMPLE)
    )
    if digest is None:
        return []
    if (
        name is not None
        and _DIGEST.fullmatch(digest)
        and (sample in state.SAMPLES if sample is not None else state.kept_upload(digest).is_file())
    ):
        return []
    for key in state.TABLE_CHOICES:
        values.pop(key, None)
    return [f"**{name or 'The file'}** was not restored: its saved copy is gone. Upload it again."]


def restore() -> None:
    """Give this tab its id; on a fresh session, bring back the choices saved under it (what
    could not be brought back goes to ``state.SESSION_NOTES``, which the Data page shows)."""
    session_id = st.session_state.get(state.SESSION_ID)
    if session_id is None:
        given = st.query_params.get(PARAM, "")
        session_id = given if _ID.fullmatch(given) else secrets.token_hex(8)
        st.session_state[state.SESSION_ID] = session_id
        values = _read(session_id) if session_id == given else {}
        notes = _table_notes(values)
        # Set before any widget exists, as init_widget does: the pages' widgets start from them.
        st.session_state.update(values)
        if notes:
            st.session_state[state.SESSION_NOTES] = notes
    if st.query_params.get(PARAM) != session_id:
        st.query_params[PARAM] = session_id  # a fresh tab, or a page switch cleared it


def save() -> None:
    """Write this tab's remembered choices, when they differ from the saved file."""
    # One snapshot through to_dict(): after st.stop() every other read of st.session_state
    # raises StopException again, and this runs after the page, stopped or not.
    current = st.session_state.to_dict()
    session_id = current.get(state.SESSION_ID)
    if session_id is None:  # the run stopped before restore() (the password gate)
        return
    values = {k: current[k] for k in state.REMEMBERED if k in current and _fits(k, current[k])}
    data = json.dumps({"version": VERSION, "values": values}, indent=1, sort_keys=True).encode()
    path = _path(session_id)
    try:
        if path.is_file() and path.read_bytes() == data:  # most runs change no choice
            return
        state.write_atomically(path, data)
    except OSError:  # a full or read-only disk: the tab works on, only a reload forgets
        logger.warning("could not save the session to %s", path, exc_info=True)
