"""The HTML conformance report (``--cl-report PATH.html``): one self-contained page rendered with Jinja2.

Built from the report's JSON data (``Results.as_dict``), so the same page can be rendered from a saved JSON.
Inline CSS, charts as static inline SVG (``pytest_cl._svg``), no scripts, fonts or images: it opens offline.
Imported only when an HTML report is written (jinja2 is the ``report`` extra).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import cast

from pytest_cl._svg import COLOURS, P50_COLOUR, P95_COLOUR, Scale, histogram, timeline

TEMPLATE = Path(__file__).with_name("report.html.j2")
HINT = 'cl: --cl-report PATH.html needs jinja2: pip install "cl-client[report]"'


def _when(value: object) -> str:
    if not isinstance(value, int | float):
        return "-"
    return dt.datetime.fromtimestamp(value, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _duration(start: object, end: object) -> str:
    if not isinstance(start, int | float) or not isinstance(end, int | float):
        return "-"
    seconds = max(0.0, end - start)
    return f"{int(seconds // 60)} min {seconds % 60:.1f} s" if seconds >= 60 else f"{seconds:.1f} s"


def _ms(value: object) -> str:
    return f"{value:.0f}" if isinstance(value, int | float) else "-"


def verdict(data: Mapping[str, object], totals: Mapping[str, int]) -> dict[str, object]:
    """The banner at the top: ``certified``, ``not certified`` or ``certified with known gaps``, and why.

    Not certified: a check failed, or a security finding is not acknowledged. Known gaps: acknowledged security
    findings, deployment lacks, checks skipped or not checked (nothing failed, but not everything was certified).

    Args:
        data: the report's JSON data.
        totals: the matrix totals (passed, failed, skipped, not_checked, jobs).
    """
    findings = cast(list[dict[str, object]], data.get("security_findings") or [])
    open_findings = [f for f in findings if not f.get("acknowledged")]
    lacks = cast(list[object], data.get("deployment_lacks") or [])
    reasons: list[str] = []
    if findings:
        reasons.append(
            f"{len(findings)} security finding(s)"
            + (f", {len(open_findings)} not acknowledged" if open_findings else ", all acknowledged")
        )
    if totals.get("failed"):
        reasons.append(f"{totals['failed']} check(s) failed")
    if lacks:
        reasons.append(f"{len(lacks)} deployment lack(s)")
    if totals.get("skipped") or totals.get("not_checked"):
        reasons.append(
            f"{totals.get('skipped', 0)} skipped, {totals.get('not_checked', 0)} not checked (see "
            '"Skipped and not checked")'
        )
    if open_findings or totals.get("failed"):
        kind, title = "bad", "Not certified"
    elif reasons:
        kind, title = "gaps", "Certified with known gaps"
    else:
        kind, title = "good", "Certified"
    passed = f"{totals.get('passed', 0)} check(s) passed"
    return {"kind": kind, "title": title, "reasons": [passed, *reasons]}


def view(data: Mapping[str, object]) -> dict[str, object]:
    """The template's data: header, rows with their charts, failures, lacks, comparison."""
    tests = cast(dict[str, dict[str, object]], data.get("tests") or {})
    comparison = cast(dict[str, object] | None, data.get("comparison"))
    marks = cast(dict[str, list[str]], comparison.get("row_marks", {})) if comparison else {}
    changed: set[tuple[str, str]] = set()
    if comparison:
        for key in ("newly_failing", "newly_passing"):
            changed |= {(key, cast(str, i["test"])) for i in cast(list[dict[str, object]], comparison[key])}
    lacks_list = cast(list[dict[str, str]], data.get("deployment_lacks") or [])
    everything = [float(x) for t in tests.values() for x in cast(list[float], t.get("latencies_ms") or [])]
    scale = Scale.of(everything)  # one latency axis for every row
    rows: list[dict[str, object]] = []
    expected_errors = 0
    for entry in cast(list[dict[str, object]], data.get("matrix") or []):
        name = cast(str, entry["row"])
        mine = [t for t in tests.values() if t.get("row") == name]
        latencies = [float(x) for t in mine for x in cast(list[float], t.get("latencies_ms") or [])]
        jobs: list[dict[str, object]] = []
        for t in mine:
            for j in cast(list[dict[str, object]], t.get("jobs") or []):
                # a job that ended in error while its check passed: the check asked for that error
                expected = j.get("status") == "error" and t.get("outcome") == "passed"
                expected_errors += expected
                jobs.append({**j, "expected_error": expected})
        rows.append(
            {
                **entry,
                "p50": _ms(entry.get("latency_p50_ms")),
                "p95": _ms(entry.get("latency_p95_ms")),
                "marks": marks.get(name, []),
                "lacks": sum(1 for i in lacks_list if tests.get(i["test"], {}).get("row") == name),
                "histogram": histogram(latencies, scale=scale),
                "timeline": timeline(jobs),
            }
        )
    failures = cast(dict[str, dict[str, object]], data.get("failures") or {})
    failed = [
        {
            "test": nodeid,
            "row": tests.get(nodeid, {}).get("row", ""),
            "new": ("newly_failing", nodeid) in changed,
            **detail,
        }
        for nodeid, detail in failures.items()
    ]
    lacks: dict[str, list[str]] = {}
    for item in lacks_list:
        lacks.setdefault(item["lack"], []).append(item["test"])
    totals = {
        k: sum(cast(int, r.get(k, 0)) for r in rows) for k in ("passed", "failed", "skipped", "not_checked", "jobs")
    }
    return {
        "d": data,
        "verdict": verdict(data, totals),
        "skip_groups": cast(list[dict[str, object]], data.get("skip_groups") or []),
        "scale": scale.text() if scale is not None else "",
        "expected_errors": expected_errors,
        "p50_colour": P50_COLOUR,
        "p95_colour": P95_COLOUR,
        "header": cast(dict[str, object], data.get("header") or {}),
        "when": _when(data.get("started")),
        "duration": _duration(data.get("started"), data.get("finished")),
        "rows": rows,
        "totals": totals,
        "failed": failed,
        "lacks": lacks,
        "comparison": comparison,
        "colours": COLOURS,
    }


def render(data: Mapping[str, object]) -> str:
    """Render the report page (raises ``ImportError`` naming the install command when jinja2 is missing)."""
    try:
        import jinja2
        import markupsafe
    except ImportError:
        raise ImportError(HINT) from None
    env = jinja2.Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True)
    env.filters["svg"] = markupsafe.Markup  # our own SVG, its texts escaped in pytest_cl._svg
    template = env.from_string(TEMPLATE.read_text(encoding="utf-8"))
    return template.render(**view(data))
