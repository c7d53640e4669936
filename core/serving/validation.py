"""What is wrong with a request, said with the fix: 422 details, the 415, the CSV upload.

Every ``detail`` entry names the field (``loc``) and says what to send instead (``msg``), and
never echoes more than a short piece of the input.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from fastapi import HTTPException, Request
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException

from ..data.schema import parse_datetime, to_number
from .schemas import EXPECTED

MAX_REPORTED_ERRORS = 20  # a 10,000-row file with one bad column would otherwise list 10,000 errors


# --------------------------------------------------------------------------- validation messages


def _where(loc: tuple) -> str:
    """``rows[3]['income']`` from a pydantic location."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f"[{part!r}]" if text else str(part))
    return text or "The body"


def _message(error: dict, spec, max_rows: int) -> str:
    loc, kind, msg = tuple(error.get("loc", ())), error.get("type", ""), error.get("msg", "")
    where = _where(loc)
    if kind == "json_invalid":
        return (
            f'The body is not valid JSON ({msg}): send {{"rows": [{{...}}, ...]}} with '
            "Content-Type: application/json."
        )
    if loc == () and kind in ("model_type", "model_attributes_type", "dict_type"):
        return 'The body must be a JSON object: send {"rows": [{column: value, ...}, ...]}.'
    if loc == ("rows",):
        if kind == "missing":
            return "The body has no 'rows': send {\"rows\": [{column: value, ...}, ...]}."
        if kind == "too_short":
            return "'rows' is empty: send at least one row."
        if kind == "too_long":
            actual = error.get("ctx", {}).get("actual_length")
            return (
                f"'rows' has {actual if actual is not None else 'too many'} rows; at most "
                f"{max_rows} per request: split them."
            )
        return f"'rows' must be a list of objects, one per row ({msg})."
    if len(loc) == 1 and kind == "extra_forbidden":
        return f"Unknown field {loc[0]!r} at the top of the body: put columns inside 'rows'."
    if len(loc) == 2 and loc[0] == "rows":
        return f"{where} must be an object of column: value ({msg})."
    if len(loc) == 3 and loc[0] == "rows" and loc[2] in spec.roles:
        column = loc[2]
        if kind == "missing":
            return (
                f"{_where(loc[:2])} lacks {column!r}, a column the model was trained on: add "
                "it (null when unknown)."
            )
        if kind == "not_finite":
            value = error.get("ctx", {}).get("value", "NaN")
            return (
                f"{where}: {value} is not a JSON value (JSON has no NaN or Infinity): send "
                f"{EXPECTED[spec.roles[column]]}; null marks a missing value."
            )
        return f"{where}: {msg}; send {EXPECTED[spec.roles[column]]}."
    return f"{where}: {msg}."


def _capped(problems: list[dict]) -> list[dict]:
    if len(problems) <= MAX_REPORTED_ERRORS:
        return problems
    more = len(problems) - MAX_REPORTED_ERRORS
    rest = {"loc": ["body"], "msg": f"... and {more} more errors.", "type": "too_many_errors"}
    return [*problems[:MAX_REPORTED_ERRORS], rest]


def problems(errors: list[dict], spec, max_rows: int, prefix: tuple = ("body",)) -> list[dict]:
    """Pydantic errors as FastAPI's ``detail`` entries, with messages that say the fix; never
    echoing input."""
    return _capped(
        [
            {
                "loc": [*prefix, *error.get("loc", ())],
                "msg": _message(error, spec, max_rows),
                "type": error.get("type", ""),
            }
            for error in errors
        ]
    )


def invalid(loc: list, msg: str, kind: str = "value_error") -> HTTPException:
    """A 422 with one ``detail`` entry."""
    return HTTPException(422, detail=[{"loc": loc, "msg": msg, "type": kind}])


# --------------------------------------------------------------------------- cell values


def _given(series: pd.Series) -> np.ndarray:
    """Cells that hold a value (not null, not blank)."""
    blank = series.map(lambda v: isinstance(v, str) and not v.strip()).to_numpy(dtype=bool)
    return series.notna().to_numpy() & ~blank


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def value_errors(frame: pd.DataFrame, spec, name_row) -> list[dict]:
    """Numeric and date cells the model would silently read as missing, named by row and column."""
    found = []
    checks = (
        ("numeric", lambda s: np.isfinite(to_number(s)), "a finite number"),
        ("datetime", lambda s: parse_datetime(s).notna().to_numpy(), "a date"),
    )
    for role, parse, wanted in checks:
        for column in spec.columns(role):
            series = frame[column]
            bad = np.flatnonzero(_given(series) & ~parse(series))
            for i in bad:
                loc, where = name_row(int(i), column)
                found.append(
                    {
                        "loc": loc,
                        "type": f"{role}_value",
                        "msg": f"{where}: {_short(series.iloc[i])} is not {wanted}; send "
                        f"{EXPECTED[role]}.",
                    }
                )
    return _capped(found)


def json_row(i: int, column: str) -> tuple[list, str]:
    """Where a cell of a JSON body is: its ``loc`` and its name in a message."""
    return ["body", "rows", i, column], f"rows[{i}][{column!r}]"


def csv_row(i: int, column: str) -> tuple[list, str]:
    """Where a cell of an uploaded CSV is: its ``loc`` and its name in a message."""
    return ["body", "file", i, column], f"column {column!r}, data row {i + 1} of the file"


# --------------------------------------------------------------------------- the body's kind


def media_type(request: Request) -> str:
    """The request's Content-Type without its parameters, in lower case."""
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def is_json(media: str) -> bool:
    """Whether a media type is JSON (``application/json`` or ``application/*+json``)."""
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def unsupported(media: str, *, csv: bool) -> HTTPException:
    """The 415 for a body that is neither JSON nor (where ``csv``) a multipart CSV upload."""
    alternative = " or a CSV as the multipart field 'file'" if csv else ""
    return HTTPException(
        415,
        detail=f"Content-Type {media or 'none'!r} is not accepted: send JSON "
        f"(Content-Type: application/json){alternative}.",
    )


async def uploaded_csv(request: Request) -> bytes:
    """The bytes of the CSV uploaded as the multipart field ``file``; a 422 says what is wrong."""
    try:
        form = await request.form(max_files=1, max_fields=10)
    except (MultiPartException, StarletteHTTPException) as exc:
        detail = getattr(exc, "detail", None) or getattr(exc, "message", "")
        message = (
            f"The upload is not valid multipart/form-data ({detail}): send the CSV as the "
            "multipart field 'file', e.g. curl -F file=@rows.csv."
        )
        raise invalid(["body"], message) from None
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise invalid(
                ["body", "file"],
                "No file in the multipart field 'file': upload the CSV "
                "as file, e.g. curl -F file=@rows.csv.",
                "missing",
            )
        return await upload.read()
    finally:
        await form.close()
