"""The model report's sections on the rows: the data fingerprint and the split."""

from __future__ import annotations

from .. import facts as f
from ..page import Html, code, p, share, table
from ..page import facts as pairs_table

MAX_COLUMNS_LISTED = 300  # wider tables list their first columns only: the page must stay readable


def data_section(run: f.RunFacts, data_sha: str) -> list:
    """Fingerprint of data.parquet, columns and roles, class balance or target summary, dates."""
    import pandas as pd

    from ...data.schema import parse_datetime, target_labels

    frame, spec = run.frame, run.spec
    parts: list = [
        pairs_table(
            [
                ("Source file", run.raw_config.get("source") or "not recorded"),
                ("data.parquet SHA-256", code(data_sha)),
                ("data.parquet size", f"{(run.path / 'data.parquet').stat().st_size:,} bytes"),
                ("Rows", len(frame)),
                ("Rows with a target value", int(frame[run.target].notna().sum())),
                ("Columns", len(frame.columns)),
                ("Target", run.target),
                ("Task", run.task),
            ]
        )
    ]

    roles = {**spec.roles, run.target: "target"}
    listed = list(frame.columns)[:MAX_COLUMNS_LISTED]
    parts.append(Html("<h3>Columns and roles</h3>"))
    parts.append(
        table(
            ["column", "role", "type", "missing", "distinct values"],
            [
                [
                    column,
                    roles.get(column, "not used"),
                    str(frame[column].dtype),
                    int(frame[column].isna().sum()),
                    int(frame[column].nunique(dropna=True)),
                ]
                for column in listed
            ],
        )
    )
    if len(frame.columns) > len(listed):
        parts.append(p(f"Only the first {len(listed)} of {len(frame.columns)} columns are listed."))
    parts += [p(w, "note") for w in spec.warnings]

    parts.append(
        Html("<h3>Target summary</h3>" if run.task == "regression" else "<h3>Class balance</h3>")
    )
    splits = f.labelled_positions(run)
    if run.task == "regression":
        y = pd.to_numeric(frame[run.target], errors="coerce")
        rows = []
        for name, positions in splits.items():
            values = y.iloc[positions].dropna()
            rows.append(
                [
                    name,
                    len(values),
                    float(values.mean()),
                    float(values.std()),
                    float(values.min()),
                    float(values.median()),
                    float(values.max()),
                ]
            )
        parts.append(table(["rows of", "rows", "mean", "std", "min", "median", "max"], rows))
    else:
        labels = target_labels(frame[run.target])
        rows = []
        for label in spec.classes:
            counts = [(int((labels.iloc[at] == label).sum()), len(at)) for at in splits.values()]
            rows.append(
                [
                    f"{label} (positive)" if label == spec.positive_class else label,
                    *(f"{n:,} ({share(n, size)})" for n, size in counts),
                ]
            )
        parts.append(table(["class", *splits], rows))

    dates = spec.columns("datetime")
    if dates:
        parts.append(Html("<h3>Date range</h3>"))
        rows = []
        for column in dates:
            stamps = parse_datetime(frame[column])
            rows.append(
                [column, _date(stamps.min()), _date(stamps.max()), int(stamps.isna().sum())]
            )
        parts.append(table(["column", "first", "last", "missing or unreadable"], rows))
    return parts


def _date(stamp) -> str:
    """A day as 2024-03-31, a moment within a day with its time; "–" for none."""
    import pandas as pd

    if pd.isna(stamp):
        return "–"
    stamp = pd.Timestamp(stamp)
    return stamp.date().isoformat() if stamp == stamp.normalize() else stamp.isoformat(sep=" ")


def split_section(run: f.RunFacts) -> list:
    """How the rows were split, and each split's size, positive share or mean, and dates."""
    import pandas as pd

    from ...data.schema import parse_datetime, target_labels

    data = run.config.data
    split = f.resolved_split(run)
    time_column = split[5:] if split.startswith("time:") else None
    parts: list = [
        pairs_table(
            [
                ("Split", f.split_description(run)),
                (
                    "Configured as",
                    data.split + (f" (resolved to {split})" if data.split == "auto" else ""),
                ),
                ("Time column", time_column or "none (rows are shuffled)"),
                (
                    "Embargo",
                    f"{data.embargo} dates between train | validation | test"
                    if time_column
                    else "not applicable",
                ),
                ("Validation / test fractions", f"{data.val_fraction:g} / {data.test_fraction:g}"),
                ("Split seed", run.config.train.seed),
                ("Positive class", run.spec.positive_class or "not applicable"),
            ]
        )
    ]
    total = sum(len(rows) for rows in run.splits.values())
    header = ["split", "rows", "share"]
    if run.task == "binary":
        header.append(f"share {run.spec.positive_class}")
    elif run.task == "regression":
        header.append(f"mean {run.target}")
    if time_column:
        header += [f"first {time_column}", f"last {time_column}"]
        stamps = parse_datetime(run.frame[time_column])
    rows = []
    for name, positions in run.splits.items():
        part = run.frame.iloc[positions]
        row = [name, len(positions), share(len(positions), total)]
        if run.task == "binary":
            positive = int((target_labels(part[run.target]) == run.spec.positive_class).sum())
            row.append(share(positive, len(part)))
        elif run.task == "regression":
            row.append(float(pd.to_numeric(part[run.target], errors="coerce").mean()))
        if time_column:
            row += [_date(stamps.iloc[positions].min()), _date(stamps.iloc[positions].max())]
        rows.append(row)
    parts.append(table(header, rows))
    return parts
