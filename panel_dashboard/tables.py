"""A read-only table drawn as one HTML pane: the function page's versions, anomalies and executions.

A Tabulator costs a page about thirty Bokeh models (columns, editors, formatters, its source) and its script's
layout pass in the browser; these tables are only read (the actions pick their row in a Select), so one HTML
model each does. Every cell is escaped: a task id, a handler or an anomaly's text is shown as text, never markup.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

import pandas as pd
import panel as pn

DASH = "—"
TABLE_CSS = """
:host{display:block}
.scroll{overflow:auto;border:1px solid #d0d7de;border-radius:4px}
table{border-collapse:collapse;width:100%;font:13px system-ui,sans-serif}
th{position:sticky;top:0;background:#f6f8fa;text-align:left;font-weight:600;padding:4px 8px;
   border-bottom:1px solid #d0d7de;white-space:nowrap}
td{padding:3px 8px;border-bottom:1px solid #eaeef2;white-space:nowrap}
td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.row:hover td{background:#f6f8fa}
.empty{padding:12px;color:#6e7781;font:13px system-ui,sans-serif}
"""

CellFormat = Callable[[Any], str]


def one_decimal(v: Any) -> str:
    """A number with one decimal, the dash when missing."""
    return DASH if v is None or pd.isna(v) else f"{float(v):.1f}"


def plain(v: Any) -> str:
    """A cell's text: empty for a missing value."""
    return "" if v is None or (not isinstance(v, str) and pd.isna(v)) else str(v)


class HtmlTable:
    """A DataFrame as an HTML table of fixed height (scrolling inside), redrawn only when its rows change."""

    def __init__(self, frame: pd.DataFrame, *, css: str, height: int, placeholder: str = "",
                 formats: dict[str, CellFormat] | None = None) -> None:
        self.height = height
        self.placeholder = placeholder
        self.formats = formats or {}
        self._value = frame
        self.pane = pn.pane.HTML(self._html(frame), css_classes=[css], stylesheets=[TABLE_CSS],
                                 sizing_mode="stretch_width", margin=(5, 10))

    @property
    def value(self) -> pd.DataFrame:
        """The rows shown."""
        return self._value

    @value.setter
    def value(self, frame: pd.DataFrame) -> None:
        if frame.equals(self._value) and list(frame.columns) == list(self._value.columns):
            return
        self._value = frame
        self.pane.object = self._html(frame)

    def _cell(self, column: str, v: Any) -> str:
        """One escaped cell, numbers aligned right."""
        fmt = self.formats.get(column)
        text = fmt(v) if fmt is not None else plain(v)
        numeric = fmt is not None or (isinstance(v, int | float) and not isinstance(v, bool))
        return f"<td{' class=num' if numeric else ''}>{html.escape(text)}</td>"

    def _html(self, frame: pd.DataFrame) -> str:
        """The table (or the placeholder when there are no rows) in a box of the table's height."""
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
        if len(frame):
            cols = list(frame.columns)
            body = "".join('<tr class="row">' + "".join(self._cell(c, v) for c, v in zip(cols, row, strict=True))
                           + "</tr>" for row in frame.itertuples(index=False, name=None))
        else:
            body = ""
        empty = f'<div class="empty">{html.escape(self.placeholder)}</div>' if not len(frame) else ""
        return (f'<div class="scroll" style="max-height:{self.height}px"><table><thead><tr>{head}</tr></thead>'
                f"<tbody>{body}</tbody></table>{empty}</div>")
