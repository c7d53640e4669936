"""Text for people: durations, parameter counts, metric names, run labels, state icons.

Pure functions of what ``core`` returns; nothing here draws or computes a metric.
"""

from __future__ import annotations

import core

STATE_ICONS = {
    "queued": ":material/schedule:",
    "running": ":material/autorenew:",
    "succeeded": ":material/check_circle:",
    "failed": ":material/error:",
    "cancelled": ":material/cancel:",
    "interrupted": ":material/warning:",
    "damaged": ":material/broken_image:",
}  # for markdown


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = int(round(seconds))
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return (
        f"{hours}h {minutes:02d}m"
        if hours
        else (f"{minutes}m {seconds:02d}s" if minutes else f"{seconds}s")
    )


def millions(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1e5 else f"{n:,}"


def metric_label(name: str) -> str:
    """A metric's label with its direction: ``ROC AUC ↑``, ``Brier score ↓``."""
    arrow = "↑" if core.HIGHER_IS_BETTER.get(name, True) else "↓"
    return f"{core.metric_label(name)} {arrow}"


def with_interval(value, interval, digits: int = 3) -> str:
    """``0.811 [0.729, 0.879]``; ``–`` for a missing value (three digits on the pages)."""
    return core.format_interval(value, interval, digits)


def run_label(summary) -> str:
    """``file → target · backbone (freeze n) · test metric · date time · run id``, for run
    pickers: what a person recognises first, the id last."""
    metric = (
        f" · {core.metric_label(summary.test_metric)} {summary.test_value:.3f}"
        if summary.test_value is not None
        else ""
    )
    when = summary.created[:16].replace("T", " ") if summary.created else ""
    data = f"{summary.source} → " if summary.source else ""
    return (
        f"{data}{summary.target} · {summary.backbone} ({summary.tuning}){metric}"
        + (f" · {when}" if when else "")
        + f" · {summary.run_id}"
    )


def output_label(explanation, task: str) -> str:
    """What the SHAP values add up to: ``P(label)`` for a class, the target's name for
    regression."""
    name = explanation.output_names
    return name if task == "regression" else f"P({name})"


_MARKDOWN_SPECIAL = set("\\`*_{}[]()<>#+-.!|~$:")


def literal(text: str) -> str:
    """``text`` for st.markdown as written: every markdown character escaped, so a value from the
    user's data ("<b>", "[link](...)", "$x$", ":material/...:") shows as text and does nothing."""
    return "".join(f"\\{c}" if c in _MARKDOWN_SPECIAL else c for c in str(text))
