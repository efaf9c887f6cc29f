"""Static inline SVG charts for the HTML report: a latency histogram and a job time line (standard library only).

No scripts and no external references: each chart is one ``<svg>`` element whose hover texts are ``<title>``
elements, so the report works offline and in any browser.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape

#: Phase colours of the time line (also used by the legend of the report).
COLOURS = {
    "submit": "#9aa5b1",
    "queued": "#f0a030",
    "processing": "#3b82c4",
    "completed": "#2e9d5b",
    "error": "#d64545",
    "expected_error": "#8e5bd0",
    "pending": "#b0b0b0",
}
#: the dotted lines of the histogram: the median and the 95th percentile.
P50_COLOUR = "#222"
P95_COLOUR = "#d64545"
_FONT = 'font-family="sans-serif" font-size="10" fill="#444"'


def _num(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _ms_label(ms: float) -> str:
    return f"{ms / 1000:.2f} s" if ms >= 1000 else f"{ms:.0f} ms"


@dataclass(frozen=True)
class Scale:
    """The latency axis every histogram of a report shares, so rows compare at a glance.

    Attributes:
        low: the smallest latency of the report (ms).
        high: the largest (ms).
        logarithmic: log10 bins (the report's latencies span more than ``LOG_SPAN`` x), else linear.
    """

    low: float
    high: float
    logarithmic: bool

    @classmethod
    def of(cls, values_ms: Sequence[float]) -> Scale | None:
        """The scale of all the latencies of a report (None for none)."""
        if not values_ms:
            return None
        low, high = min(values_ms), max(values_ms)
        return cls(low, high, low > 0 and high / low > LOG_SPAN)

    def at(self, v: float) -> float:
        """``v`` on the axis (log10 of it on a log scale)."""
        return math.log10(max(v, 1e-3)) if self.logarithmic else v

    def back(self, v: float) -> float:
        """The latency at axis position ``v``."""
        return 10**v if self.logarithmic else v

    @property
    def span(self) -> float:
        """Width of the axis in its own units (never 0)."""
        return self.at(self.high) - self.at(self.low) or max(1.0, self.high * 0.1)

    def text(self) -> str:
        """``log scale`` or ``linear scale``, for the legend."""
        return "log scale" if self.logarithmic else "linear scale"


#: a report whose largest latency is more than this many times its smallest uses log bins (a long tail)
LOG_SPAN = 20


def histogram(
    values_ms: Sequence[float], width: int = 360, height: int = 120, bins: int = 20, scale: Scale | None = None
) -> str:
    """Distribution of submit → terminal latencies: bars, with the p50 and p95 marked; ``""`` for no values.

    Args:
        values_ms: the latencies of one row.
        width: the chart's width (it shrinks with the page: ``viewBox``).
        height: its height.
        bins: number of bars over the axis.
        scale: the axis shared by the report's histograms (default: the axis of these values alone).
    """
    if not values_ms:
        return ""
    ordered = sorted(values_ms)
    axis = scale or Scale.of(ordered)
    assert axis is not None
    s_low = axis.at(axis.low)
    span = axis.span
    counts = [0] * bins
    for v in ordered:
        counts[max(0, min(bins - 1, int((axis.at(v) - s_low) / span * bins)))] += 1
    top = max(counts)
    left, right, base, head = 28, 8, height - 18, 8
    plot_w, plot_h = width - left - right, base - head
    bar_w = plot_w / bins
    parts = [
        f'<svg class="chart" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="latency histogram">',
        f'<line x1="{left}" y1="{base}" x2="{width - right}" y2="{base}" stroke="#888"/>',
        f'<text x="{left - 4}" y="{head + 8}" text-anchor="end" {_FONT}>{top}</text>',
        f'<text x="{left - 4}" y="{base}" text-anchor="end" {_FONT}>0</text>',
    ]
    for i, n in enumerate(counts):
        if not n:
            continue
        h = plot_h * n / top
        a, b = axis.back(s_low + span * i / bins), axis.back(s_low + span * (i + 1) / bins)
        parts.append(
            f'<rect x="{_num(left + i * bar_w + 0.5)}" y="{_num(base - h)}" width="{_num(max(bar_w - 1, 1))}" '
            f'height="{_num(h)}" fill="#3b82c4"><title>{n} job(s): {_ms_label(a)} – {_ms_label(b)}</title></rect>'
        )
    for q, colour in ((50, P50_COLOUR), (95, P95_COLOUR)):
        pos = (len(ordered) - 1) * q / 100
        lo = math.floor(pos)
        value = ordered[lo] + (ordered[min(lo + 1, len(ordered) - 1)] - ordered[lo]) * (pos - lo)
        x = left + plot_w * (axis.at(value) - s_low) / span
        parts.append(
            f'<line class="p{q}" x1="{_num(x)}" y1="{head}" x2="{_num(x)}" y2="{base}" stroke="{colour}" '
            f'stroke-dasharray="3,2"><title>p{q} {_ms_label(value)}</title></line>'
        )
    parts.append(f'<text x="{left}" y="{height - 4}" {_FONT}>{_ms_label(axis.low)}</text>')
    parts.append(f'<text x="{width - right}" y="{height - 4}" text-anchor="end" {_FONT}>{_ms_label(axis.high)}</text>')
    parts.append(
        f'<text x="{left + plot_w / 2:.0f}" y="{height - 4}" text-anchor="middle" {_FONT}>'
        f"submit → terminal ({len(ordered)} jobs, {axis.text()})</text>"
    )
    parts.append("</svg>")
    return "".join(parts)


def _float(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def timeline(jobs: Sequence[Mapping[str, object]], width: int = 720) -> str:
    """One line per job (in submit order): submitted → queued → processing → terminal; ``""`` for no jobs.

    Grey: from the POST to the first ``queued`` event; orange: queued; blue: processing; the end mark is green
    (completed) or red (error); a job never seen terminal runs grey to the end of the chart.
    """
    rows = sorted((j for j in jobs if _float(j.get("submitted")) is not None), key=lambda j: cast_float(j["submitted"]))
    if not rows:
        return ""
    times = [t for j in rows for k in ("submitted", "queued", "processing", "terminal") if (t := _float(j.get(k)))]
    t0, t1 = min(times), max(times)
    span = (t1 - t0) or 0.001
    lane = 8 if len(rows) <= 60 else 4 if len(rows) <= 150 else 2
    left, right, head = 6, 6, 4
    height = head + lane * len(rows) + 18
    plot_w = width - left - right

    def x(t: float) -> str:
        return _num(left + plot_w * (t - t0) / span)

    parts = [
        f'<svg class="chart" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="job time line">'
    ]
    bar = max(lane - 1, 1)
    for i, job in enumerate(rows):
        y = _num(head + i * lane)
        sub = cast_float(job.get("submitted"))
        queued, processing, terminal = (_float(job.get(k)) for k in ("queued", "processing", "terminal"))
        status = str(job.get("status") or "")
        end = terminal if terminal is not None else t1
        marks = [(sub, "submit"), (queued, "queued"), (processing, "processing")]
        present = [(t, name) for t, name in marks if t is not None]
        title = escape(
            f"{job.get('id')} ({job.get('task')}): "
            + ", ".join(f"{name} +{(t - sub) * 1000:.0f} ms" for t, name in present[1:])
            + (f", {status or 'terminal'} +{(terminal - sub) * 1000:.0f} ms" if terminal is not None else "")
            + ("" if terminal is not None else ", never seen terminal")
            + (" (an error the check expected)" if status == "error" and job.get("expected_error") else "")
        )
        parts.append(f"<g><title>{title}</title>")
        for k, (start, name) in enumerate(present):
            stop = present[k + 1][0] if k + 1 < len(present) else end
            colour = COLOURS["pending"] if terminal is None and k + 1 == len(present) else COLOURS[name]
            w = max(float(x(stop)) - float(x(start)), 0.5)
            parts.append(f'<rect x="{x(start)}" y="{y}" width="{_num(w)}" height="{bar}" fill="{colour}"/>')
        if terminal is not None:
            if status == "error":
                colour = COLOURS["expected_error"] if job.get("expected_error") else COLOURS["error"]
            else:
                colour = COLOURS["completed"]
            width = 2 if status != "error" else 4  # an error end stands out, expected or not
            parts.append(f'<rect x="{x(terminal)}" y="{y}" width="{width}" height="{bar}" fill="{colour}"/>')
        parts.append("</g>")
    base = head + lane * len(rows) + 2
    parts.append(f'<line x1="{left}" y1="{base}" x2="{width - right}" y2="{base}" stroke="#888"/>')
    parts.append(f'<text x="{left}" y="{height - 3}" {_FONT}>0</text>')
    parts.append(
        f'<text x="{width - right}" y="{height - 3}" text-anchor="end" {_FONT}>{_ms_label(span * 1000)}</text>'
    )
    parts.append(
        f'<text x="{left + plot_w / 2:.0f}" y="{height - 3}" text-anchor="middle" {_FONT}>'
        f"{len(rows)} jobs, time since the first submit</text>"
    )
    parts.append("</svg>")
    return "".join(parts)


def cast_float(value: object) -> float:
    """A number from the report data (0.0 when it is not one)."""
    return _float(value) or 0.0
