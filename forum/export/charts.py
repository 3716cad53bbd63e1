"""Simple bar charts as geometry for inline SVG (templates/export/_charts.html), no JavaScript.

Each chart is drawn on a fixed viewBox that scales to the page width; the data table next
to it is the accessible alternative.
"""

from dataclasses import dataclass, field

WIDTH = 600
LABEL_WIDTH = 190
ROW_HEIGHT = 26
BAR_HEIGHT = 18


@dataclass
class Segment:
    x: float
    width: float
    series: int  # index of the series (CSS class chart-s0, chart-s1, ...)
    value: int


@dataclass
class BarRow:
    label: str
    y: float
    total: int
    segments: list[Segment] = field(default_factory=list)

    @property
    def value_x(self) -> float:
        """Where the total is written: just after the bar."""
        end = self.segments[-1] if self.segments else None
        return (end.x + end.width if end else LABEL_WIDTH) + 4


@dataclass
class BarChart:
    title: str
    series: list[str]
    rows: list[BarRow]
    width: int = WIDTH
    label_width: int = LABEL_WIDTH
    bar_height: int = BAR_HEIGHT

    @property
    def height(self) -> int:
        return max(1, len(self.rows)) * ROW_HEIGHT + 8


def stacked_bars(title: str, series: list[str], data: list[tuple[str, list[int]]]) -> BarChart:
    """Horizontal stacked bars: one row per label, one segment per series."""
    largest = max((sum(values) for _, values in data), default=0) or 1
    scale = (WIDTH - LABEL_WIDTH - 40) / largest
    rows = []
    for index, (label, values) in enumerate(data):
        row = BarRow(label=label[:30], y=4 + index * ROW_HEIGHT, total=sum(values))
        x = float(LABEL_WIDTH)
        for number, value in enumerate(values):
            if value:
                row.segments.append(Segment(x, value * scale, number, value))
                x += value * scale
        rows.append(row)
    return BarChart(title, series, rows)
