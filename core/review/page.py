"""The report's HTML: escaping, tables, embedded figures, the stylesheet and the page around it.

Every string that comes from the user's data or settings (column names, class labels, file
names, messages that quote them) goes through :func:`esc` before it reaches the page; markup built
here from escaped parts is a :class:`Html`, which tables pass through as it is. CSS and plotly.js
are inlined, so the file opens offline and can be archived or mailed.
"""

from __future__ import annotations

import html

from ..stats.metrics import format_number

CSS = """
:root { --ink: #1d2330; --muted: #5b6475; --line: #dde1e8; --accent: #1f5fa8; --warn: #a15c00;
        --bad: #b3261e; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       color: var(--ink); background: #f6f7f9; }
header, main, footer { max-width: 1120px; margin: 0 auto; padding: 0 28px; }
header { padding-top: 28px; }
h1 { font-size: 28px; margin: 0 0 4px; }
h2 { font-size: 21px; margin: 0 0 12px; padding-bottom: 6px;
     border-bottom: 2px solid var(--accent); }
h3 { font-size: 16px; margin: 20px 0 8px; }
.subtitle { color: var(--muted); margin: 0 0 16px; }
nav { max-width: 1120px; margin: 0 auto 8px; padding: 0 28px; }
nav a { display: inline-block; margin: 0 14px 6px 0; color: var(--accent); text-decoration: none; }
section { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 18px 22px;
          margin: 16px 0; }
table { border-collapse: collapse; margin: 8px 0 12px; font-size: 14px; }
th, td { border-bottom: 1px solid var(--line); padding: 5px 12px 5px 0; text-align: left;
         vertical-align: top; }
thead th { color: var(--muted); font-weight: 600; border-bottom: 2px solid var(--line); }
table.facts th { color: var(--muted); font-weight: 500; width: 300px; }
table.metrics td, table.confusion td { font-variant-numeric: tabular-nums; }
code { font: 13px ui-monospace, SFMono-Regular, Menlo, monospace; word-break: break-all; }
pre { background: #f3f4f7; padding: 12px; border-radius: 6px; font-size: 12.5px; overflow-x: auto; }
.note { color: var(--muted); }
.warn { color: var(--warn); }
ul.warnings li { color: var(--bad); }
ul.limits li { margin-bottom: 6px; }
.glance { display: grid; grid-template-columns: repeat(auto-fit, minmax(170px, 1fr)); gap: 10px; }
details { margin-top: 16px; } summary { cursor: pointer; font-weight: 600; }
.glance div { background: #f3f6fb; border-radius: 6px; padding: 10px 12px; }
.glance b { display: block; font-size: 12px; color: var(--muted); font-weight: 600;
            text-transform: uppercase; }
.level { padding: 1px 8px; border-radius: 10px; font-size: 12px; color: #fff; background: #2e7d32; }
.level.watch { background: #b77f00; } .level.shift { background: var(--bad); }
.figure { width: 100%; }
footer { color: var(--muted); font-size: 13px; padding-bottom: 28px; }
@media print { body { background: #fff; } section { break-inside: avoid; border: none; padding: 0; }
               nav { display: none; } }
"""


class Html(str):
    """Markup built here from escaped parts: table cells pass it through as it is."""


def esc(value) -> str:
    """``value`` as text that is safe anywhere in HTML (element content or a quoted attribute)."""
    return html.escape(str(value), quote=True)


def share(part: float, whole: float) -> str:
    """``part`` as a percentage of ``whole`` ("–" when there is no whole)."""
    return f"{100 * part / whole:.1f}%" if whole else "–"


def _cell(value, tag: str = "td") -> str:
    text = value if isinstance(value, Html) else esc(format_number(value))
    return f"<{tag}>{text}</{tag}>"


def table(header: list, rows: list[list], *, classes: str = "") -> Html:
    """A table with a header row; cells are escaped unless they are :class:`Html`."""
    head = "".join(_cell(h, "th") for h in header)
    body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in rows)
    return Html(
        f'<table class="{classes}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
    )


def facts(pairs: list[tuple[str, object]]) -> Html:
    """A two-column table of name / value."""
    body = "".join(f"<tr><th>{esc(name)}</th>{_cell(value)}</tr>" for name, value in pairs)
    return Html(f'<table class="facts"><tbody>{body}</tbody></table>')


def p(text: str, kind: str = "") -> Html:
    """A paragraph of escaped text, of CSS class ``kind`` (note, warn)."""
    return Html(f'<p class="{kind}">{esc(text)}</p>')


def code(text: str) -> Html:
    """Escaped text in a code element."""
    return Html(f"<code>{esc(text)}</code>")


def bold(text: str) -> Html:
    """Escaped text in a strong element."""
    return Html(f"<strong>{esc(text)}</strong>")


def items(texts: list[str], kind: str = "") -> Html:
    """A bulleted list of escaped texts."""
    return Html(f"<ul class='{kind}'>" + "".join(f"<li>{esc(t)}</li>" for t in texts) + "</ul>")


class Figures:
    """Plotly figures as a div and a script each; plotly.js itself is inlined once in the head."""

    def __init__(self):
        self.count = 0

    def __call__(self, figure, *, height: int = 360) -> Html:
        """The figure as markup that draws it on the page."""
        self.count += 1
        figure.update_layout(
            template="plotly_white",
            height=height,
            margin={"l": 60, "r": 20, "t": 50, "b": 50},
            font={"family": "system-ui, sans-serif", "size": 12},
        )
        # plotly writes < > / inside strings as \u escapes already; this makes sure no label can
        # close the script element, whatever plotly's version does.
        payload = figure.to_json().replace("<", "\\u003c").replace(">", "\\u003e")
        div = f"figure-{self.count}"
        return Html(
            f'<div class="figure" id="{div}" style="height:{height}px"></div>'
            f'<script>(function(){{var f={payload};Plotly.newPlot("{div}",f.data,f.layout,'
            "{displaylogo:false,responsive:true});})();</script>"
        )


def page(
    *,
    title: str,
    subtitle: str,
    glance: list[tuple[str, str]],
    sections: list[tuple[str, str, list]],
    footer: str,
) -> str:
    """The whole HTML document: header with the at-a-glance boxes, a nav, one section per entry.

    ``sections`` holds (anchor, heading, parts); the texts are escaped here, the parts are markup.
    """
    import plotly.offline

    boxes = "".join(f"<div><b>{esc(k)}</b>{esc(v)}</div>" for k, v in glance)
    nav = "".join(f'<a href="#{key}">{esc(name)}</a>' for key, name, _ in sections)
    body = "".join(
        f'<section id="{key}"><h2>{esc(name)}</h2>{"".join(parts)}</section>'
        for key, name, parts in sections
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style>"
        f'<script type="text/javascript">{plotly.offline.get_plotlyjs()}</script></head><body>'
        f"<header><h1>Model risk report</h1><p class='subtitle'>{esc(subtitle)}</p>"
        f'<div class="glance">{boxes}</div></header>'
        f"<nav>{nav}</nav><main>{body}</main><footer>{esc(footer)}</footer></body></html>"
    )
