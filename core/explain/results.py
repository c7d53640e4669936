"""Explanation files: how an explanation crosses from the explainer process to the app unpickled.

The worker writes the numbers to ``values.npz`` (float arrays only, read back with
``allow_pickle=False``) and the names, stats and reference to ``explanation.json``. The rows'
own values never travel back: the app holds the rows it asked about and puts them in ``.data``,
so :func:`read_explanation` rebuilds the same shap.Explanation that :func:`explain_rows` returns
(``.stats`` and ``.background`` included). A token explanation's words go in the JSON.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

VALUES_FILE = "values.npz"
META_FILE = "explanation.json"


def _plain(value):
    """A JSON value for a name: class labels may be numpy scalars."""
    return value.item() if isinstance(value, np.generic) else value


def write_explanation(explanation, folder: Path, *, tokens: bool = False) -> None:
    """Write an explanation of :func:`explain_rows` (or, with ``tokens``, of
    :func:`explain_tokens`) to ``folder``."""
    folder = Path(folder)
    values = np.asarray(explanation.values, dtype=np.float64)
    base_values = np.asarray(explanation.base_values, dtype=np.float64).reshape(-1)
    with open(folder / VALUES_FILE, "wb") as file:
        np.savez(file, values=values, base_values=base_values)
    background = getattr(explanation, "background", None)
    meta = {
        "kind": "tokens" if tokens else "rows",
        "feature_names": None if tokens else [_plain(n) for n in explanation.feature_names],
        "output_names": _plain(explanation.output_names),
        "stats": asdict(explanation.stats),
        "background": asdict(background) if background is not None else None,
        # One row's words (the tokenizer's pieces, spaces kept): text the user gave, as strings.
        "tokens": [str(t) for t in np.asarray(explanation.data[0], dtype=object)]
        if tokens
        else None,
    }
    (folder / META_FILE).write_text(json.dumps(meta), encoding="utf-8")


def read_explanation(folder: Path, rows: pd.DataFrame | None = None):
    """The shap.Explanation written to ``folder``; ``rows`` are the rows it explains (their
    values become ``.data`` and their index ``.instance_names``), unused for tokens."""
    import shap

    from .attributions import ExplainBackground
    from .cached_model import ExplainStats

    folder = Path(folder)
    meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
    with np.load(folder / VALUES_FILE, allow_pickle=False) as arrays:
        values, base_values = arrays["values"], arrays["base_values"]
    if meta["kind"] == "tokens":
        data = np.empty((1,), dtype=object)
        data[0] = np.asarray(meta["tokens"], dtype=object)
        explanation = shap.Explanation(values, base_values=base_values, data=data)
    else:
        columns = meta["feature_names"]
        explanation = shap.Explanation(
            values,
            base_values=base_values,
            data=rows[columns].to_numpy(dtype=object),
            feature_names=columns,
            output_names=meta["output_names"],
            instance_names=list(rows.index),
        )
    explanation.output_names = meta["output_names"]
    explanation.stats = ExplainStats(**meta["stats"])
    if meta["background"] is not None:
        explanation.background = ExplainBackground(**meta["background"])
    return explanation
