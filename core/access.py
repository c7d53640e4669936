"""Who may reach the dashboard and the scoring service: the loopback rule and the password lookup.

One home for both, read by ``fintune dashboard``, ``fintune serve`` and the dashboard's gate.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import tomllib
from pathlib import Path

PASSWORD_ENV = "FINTUNE_PASSWORD"


def is_loopback(host: str | None) -> bool:
    """True only when ``host`` provably binds to this machine alone.

    An empty or unset address is not: Streamlit and uvicorn then listen on every interface. A name
    counts only when every address it resolves to is a loopback address.
    """
    host = (host or "").strip().strip("[]")
    if not host:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        resolved = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except (OSError, UnicodeError):
        return False
    return bool(resolved) and all(_loopback_literal(address) for address in resolved)


def _loopback_literal(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%")[0]).is_loopback
    except ValueError:
        return False


def secrets_files(root: Path) -> tuple[Path, ...]:
    """Where Streamlit looks for ``secrets.toml``: the project's folder, then the user's home."""
    return (root / ".streamlit" / "secrets.toml", Path.home() / ".streamlit" / "secrets.toml")


def configured_password(root: Path) -> str | None:
    """The dashboard password from ``secrets.toml`` (``password = "..."``) or FINTUNE_PASSWORD."""
    for secrets in secrets_files(root):
        try:
            password = tomllib.loads(secrets.read_text()).get("password")
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
            continue
        if password:
            return str(password)
    return os.environ.get(PASSWORD_ENV) or None
