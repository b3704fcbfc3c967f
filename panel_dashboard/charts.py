"""The function page's four time charts as Bokeh figures built once per page: a redraw replaces their sources'
columns (a few hundred bucket points and the anomaly markers), never the figures themselves. The charts share
one time axis (panning one pans all), and its ticker and formatter, so a page holds few Bokeh models."""

from __future__ import annotations

import pandas as pd
from bokeh.models import (
    ColumnDataSource,
    DataRange1d,
    DatetimeAxis,
    DatetimeTicker,
    DatetimeTickFormatter,
    Grid,
    HoverTool,
    Line,
    Scatter,
)
from bokeh.models.renderers import GlyphRenderer
from bokeh.plotting import figure

from panel_dashboard.frames import MARK_COLUMNS

SERIES_FIELDS = ("time", "value", "count", "errors")
MARK_TOOLTIPS = [("anomaly", "@kind (#@id)"), ("metric", "@metric"), ("observed", "@observed"),
                 ("expected", "@expected"), ("detector", "@detector"), ("score", "@score")]
BUCKET_TOOLTIPS = [("bucket", "@time{%F %T}"), ("value", "@value{0.[000]}"), ("executions", "@count"),
                   ("errors", "@errors")]
BLUE, RED = "#0969da", "#cf222e"
HEIGHT = 210


class TimeAxis:
    """What the charts of one page share: the time range, its ticker and its label formatter."""

    def __init__(self) -> None:
        self.range = DataRange1d()
        self.ticker = DatetimeTicker()
        self.formatter = DatetimeTickFormatter()


class Chart:
    """One metric over time: a line through the buckets (hover: the nearest bucket's figures), the metric's
    anomalies as red markers explained on hover (metric, observed value, expected range, detector, score)."""

    def __init__(self, title: str, axis: TimeAxis) -> None:
        self.series = ColumnDataSource({f: [] for f in SERIES_FIELDS})
        self.marks = ColumnDataSource({f: [] for f in MARK_COLUMNS})
        self.figure = figure(title=title, x_axis_type=None, x_range=axis.range, height=HEIGHT,
                             sizing_mode="stretch_width", tools="xpan,reset", toolbar_location="right",
                             y_axis_label=title, name=f"chart {title}")
        self.figure.toolbar.autohide = True
        self.figure.add_layout(DatetimeAxis(ticker=axis.ticker, formatter=axis.formatter, axis_label="time (UTC)"),
                               "below")
        self.figure.add_layout(Grid(dimension=0, ticker=axis.ticker))
        # renderers made directly: the figure's glyph methods also make a selection and a muted copy of every
        # glyph in Python, models BokehJS makes itself when left "auto"
        line = GlyphRenderer(data_source=self.series, glyph=Line(x="time", y="value", line_color=BLUE,
                                                                 line_width=1.5))
        red = GlyphRenderer(data_source=self.marks, glyph=Scatter(x="time", y="value", fill_color=RED,
                                                                  line_color="white", size=11),
                            name="anomaly-marks")
        self.figure.renderers.extend([line, red])
        # a bucket's figures on hover anywhere above or below it (the line's nearest point), an anomaly's
        # explanation on its marker
        self.figure.add_tools(HoverTool(renderers=[red], tooltips=MARK_TOOLTIPS, description="anomaly"),
                              HoverTool(renderers=[line], tooltips=BUCKET_TOOLTIPS, description="bucket",
                                        mode="vline", formatters={"@time": "datetime"}))

    def draw(self, df: pd.DataFrame, column: str, marks: pd.DataFrame) -> None:
        """Show COLUMN of the bucket frame DF and the anomaly MARKS (both with naive-UTC `time`)."""
        self.series.data = {"time": _ms(df["time"]), "value": _floats(df[column]),
                            "count": [int(c) for c in df["count"]], "errors": [int(e) for e in df["errors"]]}
        self.marks.data = {c: (_ms(marks[c]) if c == "time" else list(marks[c])) for c in MARK_COLUMNS}


def _ms(times: pd.Series) -> list[float]:
    """Naive-UTC timestamps as milliseconds since the epoch (what a Bokeh datetime axis plots)."""
    return [float(t.value) / 1e6 for t in pd.to_datetime(times)]


def _floats(values: pd.Series) -> list[float]:
    """A column as floats, NaN for a missing value (Bokeh leaves a gap)."""
    return [float(v) for v in values.astype(float)]
