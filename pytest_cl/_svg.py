"""Static inline SVG charts for the HTML report: a latency histogram and a job time line (standard library only).

No scripts and no external references: each chart is one ``<svg>`` element whose hover texts are ``<title>``
elements, so the report works offline and in any browser.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape

#: Phase colours of the time line (also used by the legend of the report).
COLOURS = {
    "submit": "#9aa5b1",
    "queued": "#f0a030",
    "processing": "#3b82c4",
    "completed": "#2e9d5b",
    "error": "#d64545",
    "pending": "#b0b0b0",
}
_FONT = 'font-family="sans-serif" font-size="10" fill="#444"'


def _num(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _ms_label(ms: float) -> str:
    return f"{ms / 1000:.2f} s" if ms >= 1000 else f"{ms:.0f} ms"


def histogram(values_ms: Sequence[float], width: int = 360, height: int = 120, bins: int = 20) -> str:
    """Distribution of submit → terminal latencies: bars, with the p50 and p95 marked; ``""`` for no values."""
    if not values_ms:
        return ""
    ordered = sorted(values_ms)
    low, high = ordered[0], ordered[-1]
    # a long tail (max > 20 x min): logarithmic bins, so the bulk of the jobs is not squeezed into one bar
    logarithmic = low > 0 and high / low > 20

    def scale(v: float) -> float:
        return math.log10(max(v, 1e-3)) if logarithmic else v

    def unscale(v: float) -> float:
        return 10**v if logarithmic else v

    s_low = scale(low)
    span = scale(high) - s_low or max(1.0, high * 0.1)
    counts = [0] * bins
    for v in ordered:
        counts[min(bins - 1, int((scale(v) - s_low) / span * bins))] += 1
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
        a, b = unscale(s_low + span * i / bins), unscale(s_low + span * (i + 1) / bins)
        parts.append(
            f'<rect x="{_num(left + i * bar_w + 0.5)}" y="{_num(base - h)}" width="{_num(max(bar_w - 1, 1))}" '
            f'height="{_num(h)}" fill="#3b82c4"><title>{n} job(s): {_ms_label(a)} – {_ms_label(b)}</title></rect>'
        )
    for q, colour in ((50, "#222"), (95, "#d64545")):
        pos = (len(ordered) - 1) * q / 100
        lo = math.floor(pos)
        value = ordered[lo] + (ordered[min(lo + 1, len(ordered) - 1)] - ordered[lo]) * (pos - lo)
        x = left + plot_w * (scale(value) - s_low) / span
        parts.append(
            f'<line x1="{_num(x)}" y1="{head}" x2="{_num(x)}" y2="{base}" stroke="{colour}" stroke-dasharray="3,2">'
            f"<title>p{q} {_ms_label(value)}</title></line>"
        )
    parts.append(f'<text x="{left}" y="{height - 4}" {_FONT}>{_ms_label(low)}</text>')
    parts.append(f'<text x="{width - right}" y="{height - 4}" text-anchor="end" {_FONT}>{_ms_label(high)}</text>')
    parts.append(
        f'<text x="{left + plot_w / 2:.0f}" y="{height - 4}" text-anchor="middle" {_FONT}>'
        f"submit → terminal ({len(ordered)} jobs{', log scale' if logarithmic else ''})</text>"
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
        )
        parts.append(f"<g><title>{title}</title>")
        for k, (start, name) in enumerate(present):
            stop = present[k + 1][0] if k + 1 < len(present) else end
            colour = COLOURS["pending"] if terminal is None and k + 1 == len(present) else COLOURS[name]
            w = max(float(x(stop)) - float(x(start)), 0.5)
            parts.append(f'<rect x="{x(start)}" y="{y}" width="{_num(w)}" height="{bar}" fill="{colour}"/>')
        if terminal is not None:
            colour = COLOURS["error"] if status == "error" else COLOURS["completed"]
            parts.append(f'<rect x="{x(terminal)}" y="{y}" width="2" height="{bar}" fill="{colour}"/>')
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
