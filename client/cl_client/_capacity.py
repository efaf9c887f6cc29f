"""Capacity search (``cl-client load --find-capacity``), without Locust: objective, ramp, steps, knee, report, chart.

The load shape of ``cl_client._capacity_locustfile`` (on Locust's master) raises the offered load step by step
(``Ramp``): every user runs one job per ``pace`` seconds (Locust's ``constant_throughput``), so a step of ``u``
users offers ``u / pace`` jobs/s whatever the latency (an open arrival rate as long as a job ends within the pace;
the pace is twice the objective's latency, so the rate holds past the objective). Each step first settles
(``settle`` seconds, not measured), then is measured; a job counts in the step in which it ended. A step meets the
objective (``Objective``) when its p95 (and p99) are within the limits, its errors too, and it sustained the
offered rate (achieved >= ``SUSTAINED`` x offered). The search stops at the first step that breaks (past the
knee) or after ``max_steps``. The capacity is the achieved jobs/s of the highest step that met the objective,
for the mix and per plugin; the report names the step that broke and why (which plugin's latency).

Pure functions and plain data: the shape, the command and the tests share them.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from html import escape
from typing import cast

from cl_client._load import LoadUsageError

#: a step sustained its offered load when it achieved at least this share of it.
SUSTAINED = 0.9
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(ms|s|m)?$")


def parse_seconds(text: str, what: str) -> float:
    """Seconds of ``2s``, ``1500ms``, ``1m`` or a bare number of seconds.

    Raises:
        LoadUsageError: not such a duration.
    """
    match = _DURATION.match(text.strip().lower())
    if not match:
        raise LoadUsageError(f"{what}: expected a duration like 2s, 1500ms or 1m, got {text!r}")
    value = float(match.group(1))
    return value / 1000 if match.group(2) == "ms" else value * 60 if match.group(2) == "m" else value


@dataclass(frozen=True)
class Objective:
    """The service-level objective of a capacity search (``--slo p95=2s,errors=0``).

    Attributes:
        p95_ms: the p95 limit of a step (ms), or None.
        p99_ms: the p99 limit of a step (ms), or None.
        errors: failed jobs allowed in a step (a count, or a percentage when ``errors_percent``).
        errors_percent: ``errors`` is a percentage of the step's jobs.
    """

    p95_ms: float | None = None
    p99_ms: float | None = None
    errors: float = 0.0
    errors_percent: bool = False

    @classmethod
    def parse(cls, text: str) -> Objective:
        """Parse ``p95=2s[,p99=5s][,errors=0|errors=1%]`` (latencies in s or ms).

        Raises:
            LoadUsageError: an unknown key, a bad value, or no latency limit.
        """
        p95: float | None = None
        p99: float | None = None
        errors, percent = 0.0, False
        for part in (p.strip() for p in text.split(",")):
            if not part:
                continue
            key, _, value = part.partition("=")
            key, value = key.strip().lower(), value.strip()
            if key in ("p95", "p99"):
                limit = parse_seconds(value, f"--slo {key}") * 1000
                if limit <= 0:
                    raise LoadUsageError(f"--slo {key} must be positive, got {value!r}")
                p95, p99 = (limit, p99) if key == "p95" else (p95, limit)
            elif key == "errors":
                percent = value.endswith("%")
                try:
                    errors = float(value.removesuffix("%"))
                except ValueError:
                    raise LoadUsageError(f"--slo errors: expected N or N%, got {value!r}") from None
                if errors < 0 or not math.isfinite(errors):
                    raise LoadUsageError(f"--slo errors must be >= 0, got {value!r}")
            else:
                raise LoadUsageError(f"--slo: unknown key {key!r}; known: p95, p99, errors")
        if p95 is None and p99 is None:
            raise LoadUsageError(f"--slo: expected a latency limit such as p95=2s, got {text!r}")
        return cls(p95, p99, errors, percent)

    @property
    def latency_ms(self) -> float:
        """The tightest latency limit that paces the users (p95, else p99)."""
        return cast(float, self.p95_ms if self.p95_ms is not None else self.p99_ms)

    def text(self) -> str:
        """The objective as the option reads (``p95=2s,errors=0``)."""
        parts = [f"{k}={v / 1000:g}s" for k, v in (("p95", self.p95_ms), ("p99", self.p99_ms)) if v is not None]
        return ",".join([*parts, f"errors={self.errors:g}{'%' if self.errors_percent else ''}"])


@dataclass(frozen=True)
class Ramp:
    """How the offered load rises: users per step, each running one job per ``pace`` seconds.

    Attributes:
        start: the first step's offered jobs/s.
        factor: each step offers this many times the previous one (at least one more user).
        step_time: seconds of a step (settling included).
        settle: seconds at the start of a step that are not measured.
        max_steps: the search gives up after this many steps.
        pace: seconds between the starts of one user's jobs.
    """

    start: float = 1.0
    factor: float = 1.5
    step_time: float = 30.0
    settle: float = 10.0
    max_steps: int = 12
    pace: float = 4.0

    def check(self) -> None:
        """Raise ``LoadUsageError`` for a ramp that cannot work."""
        if self.start <= 0:
            raise LoadUsageError(f"--capacity-start must be > 0 jobs/s, got {self.start:g}")
        if self.factor <= 1:
            raise LoadUsageError(f"--capacity-factor must be > 1, got {self.factor:g}")
        if self.max_steps < 1:
            raise LoadUsageError(f"--max-steps must be >= 1, got {self.max_steps}")
        if self.settle < 0 or self.step_time - self.settle < 2:
            raise LoadUsageError(
                f"--step-time ({self.step_time:g} s) must exceed --settle ({self.settle:g} s) by at least 2 s"
            )

    def users(self) -> list[int]:
        """The users of every step (strictly rising)."""
        out: list[int] = []
        for _ in range(self.max_steps):
            want = self.start * self.pace if not out else out[-1] * self.factor
            out.append(max(1, round(want), out[-1] + 1 if out else 1))
        return out

    def offered(self, users: int) -> float:
        """The jobs/s that ``users`` users offer."""
        return users / self.pace


@dataclass(frozen=True)
class Done:
    """One ended job as the shape saw it: when it ended (epoch s), its plugin, latency (ms) and outcome."""

    at: float
    name: str
    ms: float
    failed: bool


def _percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


@dataclass(frozen=True)
class Stat:
    """The jobs of one plugin (or ``all``) that ended in a step's measured window.

    Attributes:
        jobs: how many ended.
        failed: how many of them failed.
        rate: ended jobs per second of the window.
        p50, p95, p99: latency (ms).
        noise: the relative spread of the rate (two standard errors of the per-second counts / their mean).
    """

    jobs: int
    failed: int
    rate: float
    p50: float
    p95: float
    p99: float
    noise: float

    @classmethod
    def of(cls, done: Sequence[Done], start: float, end: float) -> Stat:
        """The statistics of ``done`` over the window [start, end)."""
        span = max(end - start, 1e-9)
        times = [d.ms for d in done]
        bins = [0] * max(1, int(span))
        for d in done:
            bins[min(len(bins) - 1, int(d.at - start))] += 1
        mean = statistics.fmean(bins)
        noise = 2 * statistics.stdev(bins) / math.sqrt(len(bins)) / mean if len(bins) > 1 and mean else 0.0
        return cls(
            jobs=len(done), failed=sum(d.failed for d in done), rate=len(done) / span,
            p50=_percentile(times, 0.5), p95=_percentile(times, 0.95), p99=_percentile(times, 0.99), noise=noise,
        )  # fmt: skip

    def as_dict(self) -> dict[str, float | int]:
        """JSON-ready data."""
        return {
            "jobs": self.jobs, "failed": self.failed, "rate": round(self.rate, 3), "p50_ms": round(self.p50, 1),
            "p95_ms": round(self.p95, 1), "p99_ms": round(self.p99, 1), "noise": round(self.noise, 4),
        }  # fmt: skip

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Stat:
        """Read ``as_dict``'s data."""

        def num(key: str) -> float:
            value = data.get(key)
            return float(value) if isinstance(value, int | float) else 0.0

        return cls(int(num("jobs")), int(num("failed")), num("rate"), num("p50_ms"), num("p95_ms"), num("p99_ms"),
                   num("noise"))  # fmt: skip


@dataclass(frozen=True)
class Step:
    """One step of the search: its offered load and what was measured.

    Attributes:
        index: 1-based.
        users: Locust users.
        offered: offered jobs/s.
        window: seconds measured.
        total: every job of the window (name ``all``).
        plugins: plugin -> its jobs of the window.
        broken: why the step broke the objective (empty: it met it).
        culprit: the plugin whose latency (or errors) broke it, if one did.
    """

    index: int
    users: int
    offered: float
    window: float
    total: Stat
    plugins: Mapping[str, Stat] = field(default_factory=dict[str, Stat])
    broken: tuple[str, ...] = ()
    culprit: str | None = None

    @property
    def met(self) -> bool:
        """The step met the objective."""
        return not self.broken

    def as_dict(self) -> dict[str, object]:
        """JSON-ready data."""
        return {
            "step": self.index, "users": self.users, "offered": round(self.offered, 3),
            "window_s": round(self.window, 2), "met": self.met, "broken": list(self.broken),
            "culprit": self.culprit, "total": self.total.as_dict(),
            "plugins": {name: stat.as_dict() for name, stat in sorted(self.plugins.items())},
        }  # fmt: skip

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Step:
        """Read ``as_dict``'s data."""
        plugins = cast("Mapping[str, Mapping[str, object]]", data.get("plugins") or {})
        return cls(
            index=int(cast(int, data.get("step", 0))), users=int(cast(int, data.get("users", 0))),
            offered=float(cast(float, data.get("offered", 0.0))), window=float(cast(float, data.get("window_s", 0))),
            total=Stat.from_dict(cast("Mapping[str, object]", data.get("total") or {})),
            plugins={name: Stat.from_dict(stat) for name, stat in plugins.items()},
            broken=tuple(str(b) for b in cast("list[object]", data.get("broken") or [])),
            culprit=cast("str | None", data.get("culprit")),
        )  # fmt: skip


def measure(
    index: int, users: int, offered: float, done: Iterable[Done], start: float, end: float, objective: Objective
) -> Step:
    """Measure one step from the jobs that ended in [start, end) and judge it against ``objective``."""
    window = [d for d in done if start <= d.at < end]
    by_name: dict[str, list[Done]] = {}
    for d in window:
        by_name.setdefault(d.name, []).append(d)
    total = Stat.of(window, start, end)
    plugins = {name: Stat.of(items, start, end) for name, items in sorted(by_name.items())}
    broken: list[str] = []
    culprit: str | None = None
    worst = 0.0
    for key, limit in (("p95", objective.p95_ms), ("p99", objective.p99_ms)):
        if limit is None:
            continue
        value = cast(float, getattr(total, key))
        if value > limit:
            broken.append(f"{key} {value:.0f} ms > {limit:.0f} ms")
        for name, stat in plugins.items():
            ratio = cast(float, getattr(stat, key)) / limit
            if ratio > 1 and ratio > worst:
                worst, culprit = ratio, name
    allowed = objective.errors * total.jobs / 100 if objective.errors_percent else objective.errors
    if total.failed > allowed:
        broken.append(f"{total.failed} failed job(s) > {objective.text().split('errors=')[1]} allowed")
        if culprit is None:
            culprit = max(plugins, key=lambda n: plugins[n].failed, default=None)
    if total.rate < SUSTAINED * offered:
        broken.append(f"achieved {total.rate:.2f} jobs/s < {SUSTAINED:.0%} of offered {offered:.2f}")
        if culprit is None and plugins:  # the slowest plugin of the mix holds the workers longest
            culprit = max(plugins, key=lambda n: plugins[n].p95)
    return Step(index, users, offered, end - start, total, plugins, tuple(broken), culprit)


@dataclass(frozen=True)
class CapacityReport:
    """The result of a capacity search.

    Attributes:
        steps: every measured step, in order.
        objective: the objective's text.
        mix: the plugin mix.
        meta: where and when (``url``, ``machine``, ``date``, ``workers``, ``note``...).
    """

    steps: tuple[Step, ...]
    objective: str
    mix: str
    meta: Mapping[str, object] = field(default_factory=dict[str, object])

    @property
    def knee(self) -> Step | None:
        """The highest step that met the objective before the first that broke it (None: none met it)."""
        best: Step | None = None
        for step in self.steps:
            if not step.met:
                break
            best = step
        return best

    @property
    def broke(self) -> Step | None:
        """The first step that broke the objective (None: the search ran out of steps first)."""
        return next((step for step in self.steps if not step.met), None)

    @property
    def capacity(self) -> float:
        """The highest sustained jobs/s of the mix that met the objective (0 when no step met it)."""
        knee = self.knee
        return knee.total.rate if knee is not None else 0.0

    def per_plugin(self) -> dict[str, float]:
        """Each plugin's jobs/s at the knee (its share of the mix's capacity)."""
        knee = self.knee
        return {name: stat.rate for name, stat in sorted(knee.plugins.items())} if knee is not None else {}

    def noise(self, name: str = "all") -> float:
        """The relative spread of the knee's rate (``all`` or a plugin): the noise band of a comparison."""
        knee = self.knee
        if knee is None:
            return 0.0
        return knee.total.noise if name == "all" else knee.plugins[name].noise if name in knee.plugins else 0.0

    def lines(self) -> list[str]:
        """The plain-text report: one line per step, then the verdict."""
        out = [f"{'step':>4} {'users':>5} {'offered':>8} {'achieved':>8} {'p50 ms':>7} {'p95 ms':>7} "
               f"{'failed':>6}  verdict"]  # fmt: skip
        for s in self.steps:
            verdict = "met" if s.met else "BROKE: " + "; ".join(s.broken) + (f" ({s.culprit})" if s.culprit else "")
            out.append(
                f"{s.index:>4} {s.users:>5} {s.offered:>8.2f} {s.total.rate:>8.2f} {s.total.p50:>7.0f} "
                f"{s.total.p95:>7.0f} {s.total.failed:>6}  {verdict}"
            )
        knee, broke = self.knee, self.broke
        if knee is not None:
            plugins = ", ".join(f"{n} {r:.2f}" for n, r in self.per_plugin().items())
            out.append(
                f"capacity: {self.capacity:.2f} jobs/s of mix {self.mix} within {self.objective} "
                f"(step {knee.index}, offered {knee.offered:.2f}; noise ±{self.noise():.0%}); per plugin: {plugins}"
            )
        elif self.steps:
            out.append(f"capacity: no step met {self.objective} (the first step already broke it)")
        else:
            out.append("capacity: no step was measured (Locust stopped before the first step ended)")
        if broke is not None:
            who = f"; {broke.culprit}'s latency broke it" if broke.culprit else ""
            out.append(f"knee: broke at step {broke.index} (offered {broke.offered:.2f} jobs/s){who}")
        else:
            out.append(f"knee: not reached within {len(self.steps)} step(s); raise --max-steps or --capacity-start")
        return out

    def as_dict(self) -> dict[str, object]:
        """The whole report as JSON-ready data."""
        knee, broke = self.knee, self.broke
        return {
            "kind": "cl-client capacity",
            "objective": self.objective,
            "mix": self.mix,
            "meta": dict(self.meta),
            "capacity": round(self.capacity, 3),
            "noise": round(self.noise(), 4),
            "knee_step": knee.index if knee is not None else None,
            "broke_step": broke.index if broke is not None else None,
            "broke_by": broke.culprit if broke is not None else None,
            "per_plugin": {
                name: {"capacity": round(rate, 3), "noise": round(self.noise(name), 4)}
                for name, rate in self.per_plugin().items()
            },
            "steps": [step.as_dict() for step in self.steps],
        }

    def to_json(self) -> str:
        """JSON text of ``as_dict``."""
        return json.dumps(self.as_dict(), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> CapacityReport:
        """Read ``to_json``'s text.

        Raises:
            LoadUsageError: not a capacity report.
        """
        try:
            data = cast("dict[str, object]", json.loads(text))
            if data.get("kind") != "cl-client capacity":
                raise ValueError("not a capacity report")
            steps = cast("list[Mapping[str, object]]", data["steps"])
            return cls(
                tuple(Step.from_dict(s) for s in steps), str(data.get("objective", "")), str(data.get("mix", "")),
                cast("Mapping[str, object]", data.get("meta") or {}),
            )  # fmt: skip
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise LoadUsageError(f"not a cl-client capacity report (JSON written by --find-capacity): {exc}") from None

    def to_csv(self) -> str:
        """One CSV row per step and plugin (``all`` for the mix)."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["step", "users", "offered", "plugin", "jobs", "failed", "achieved", "p50_ms", "p95_ms",
                         "p99_ms", "met", "culprit"])  # fmt: skip
        for s in self.steps:
            for name, stat in [("all", s.total), *sorted(s.plugins.items())]:
                writer.writerow([s.index, s.users, f"{s.offered:.3f}", name, stat.jobs, stat.failed,
                                 f"{stat.rate:.3f}", f"{stat.p50:.1f}", f"{stat.p95:.1f}", f"{stat.p99:.1f}",
                                 int(s.met), s.culprit or ""])  # fmt: skip
        return buffer.getvalue()


# -- comparison -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Change:
    """The capacity of the mix or of one plugin, before and now, and whether it moved beyond the noise."""

    name: str
    old: float
    new: float
    band: float

    @property
    def ratio(self) -> float:
        """new / old (inf when old was 0)."""
        return self.new / self.old if self.old else math.inf

    @property
    def beyond(self) -> bool:
        """The change is larger than the noise band."""
        return abs(self.ratio - 1) > self.band

    def text(self) -> str:
        """One line."""
        change = f"{(self.ratio - 1):+.0%}" if math.isfinite(self.ratio) else "new"
        mark = "CHANGED" if self.beyond else "within noise"
        return (
            f"{self.name:<18} {self.old:>8.2f} -> {self.new:>8.2f} jobs/s  {change:>6} (band ±{self.band:.0%}) {mark}"
        )


#: the smallest noise band of a comparison (steps are short; below this nothing is called a change).
MIN_BAND = 0.05


def compare(old: CapacityReport, new: CapacityReport) -> list[Change]:
    """The change of the mix's and each plugin's capacity; the band combines both runs' own spreads."""
    out: list[Change] = []
    old_plugins, new_plugins = old.per_plugin(), new.per_plugin()
    for name in ["all", *sorted(set(old_plugins) | set(new_plugins))]:
        before = old.capacity if name == "all" else old_plugins.get(name, 0.0)
        now = new.capacity if name == "all" else new_plugins.get(name, 0.0)
        band = max(MIN_BAND, math.hypot(old.noise(name), new.noise(name)))
        out.append(Change(name, before, now, band))
    return out


# -- chart (SVG, standard library only) -------------------------------------------------------------------------
_FONT = 'font-family="sans-serif"'
_COLOURS = ("#2e9d5b", "#8a5cc2", "#e08a1e", "#1f9bb5", "#b5651d", "#c2185b", "#607d8b", "#7cb342", "#5d4037")


def _n(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _nice(top: float) -> float:
    if top <= 0:
        return 1.0
    magnitude = float(10.0 ** math.floor(math.log10(top)))
    return next(m * magnitude for m in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10) if m * magnitude >= top)


def chart(
    report: CapacityReport,
    *,
    ceiling: Mapping[str, float] | None = None,
    old: CapacityReport | None = None,
    width: int = 760,
) -> str:
    """The capacity chart as one SVG document: offered vs achieved jobs/s, p95 vs offered, objective and knee.

    ``ceiling``: per-plugin jobs/s of one deployment worker (``bench_server.py``), drawn as the mix's ceiling
    (the weighted harmonic combination) and listed; ``old``: a previous report, drawn dashed, with a panel of the
    per-plugin change and its noise band. The title carries the machine, the date, the mix and ``meta["note"]``.
    """
    steps = list(report.steps)
    meta = report.meta
    left, right, gap, head, panel = 64, 150, 46, 78, 220
    compare_rows = compare(old, report) if old is not None else []
    height = head + 2 * panel + gap + 40 + (24 + 18 * len(compare_rows) if compare_rows else 0)
    plot_w = width - left - right
    offered = [s.offered for s in steps] + ([s.offered for s in old.steps] if old else [])
    x_top = _nice(max(offered, default=1.0) * 1.05)
    mix_ceiling = _mix_ceiling(report.mix, ceiling) if ceiling else None
    announced = meta.get("deployment_workers")
    n_workers = announced if isinstance(announced, int) and not isinstance(announced, bool) and announced > 1 else 0
    all_ceiling = mix_ceiling * n_workers if mix_ceiling and n_workers else None
    rates = [s.total.rate for s in steps] + [x_top] + [c for c in (mix_ceiling, all_ceiling) if c]
    y1_top = _nice(max(rates) * 1.05)
    latency_limit = _limit_ms(report.objective)
    p95s = [s.total.p95 for s in steps] + ([latency_limit] if latency_limit else [])
    y2_top = _nice(max(p95s, default=1.0) * 1.1)

    # offered load on a log scale: the finder's steps grow geometrically, so they come out evenly spaced
    positive = [v for v in offered if v > 0]
    x_lo = _nice_below(min(positive, default=x_top / 10) / 1.15)
    x_span = math.log(x_top / x_lo) if x_top > x_lo else 1.0

    def x(v: float) -> float:
        return left + plot_w * math.log(max(v, x_lo) / x_lo) / x_span

    def y1(v: float) -> float:
        return head + panel * (1 - v / y1_top)

    top2 = head + panel + gap

    def y2(v: float) -> float:
        return top2 + panel * (1 - min(v, y2_top) / y2_top)

    title = f"capacity of {meta.get('url', 'the deployment')} within {report.objective} — mix {report.mix}"
    sub = ", ".join(str(meta[k]) for k in ("machine", "date", "workers_text") if meta.get(k))
    note = str(meta.get("note") or "")
    p: list[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="capacity chart">',
        f'<rect width="{width}" height="{height}" fill="#fff"/>',
        '<g font-size="11" fill="#333">',
        f'<text x="{left}" y="18" {_FONT} font-size="13" font-weight="bold">{escape(title)}</text>',
        f'<text x="{left}" y="36" {_FONT}>{escape(sub)}</text>',
    ]
    if note:  # red when it warns that the machine was shared
        warn = any(word in note.lower() for word in ("loaded", "shared", "busy"))
        p.append(f'<text x="{left}" y="54" {_FONT} fill="{"#c62828" if warn else "#333"}" font-weight="bold">'
                 f"{escape(note)}</text>")  # fmt: skip
    knee, broke = report.knee, report.broke
    summary = f"capacity {report.capacity:.2f} jobs/s (step {knee.index})" if knee else "no step met the objective"
    if broke is not None:
        summary += f"; broke at step {broke.index}" + (f" by {broke.culprit}" if broke.culprit else "")
    p.append(f'<text x="{left}" y="70" {_FONT}>{escape(summary)}</text>')
    for top, y_top, label, fmt in ((head, y1_top, "jobs/s", "{:g}"), (top2, y2_top, "p95 ms", "{:.0f}")):
        p.append(f'<rect x="{left}" y="{top}" width="{plot_w}" height="{panel}" fill="none" stroke="#999"/>')
        for i in range(5):
            value = y_top * i / 4
            yy = top + panel * (1 - i / 4)
            p.append(f'<line x1="{left}" y1="{_n(yy)}" x2="{left + plot_w}" y2="{_n(yy)}" stroke="#eee"/>')
            p.append(f'<text x="{left - 4}" y="{_n(yy + 4)}" text-anchor="end" {_FONT}>{fmt.format(value)}</text>')
        p.append(f'<text x="14" y="{top + panel / 2:.0f}" {_FONT} transform="rotate(-90 14 {top + panel / 2:.0f})" '
                 f'text-anchor="middle">{label}</text>')  # fmt: skip
        for value in _log_ticks(x_lo, x_top):
            p.append(f'<line x1="{_n(x(value))}" y1="{top}" x2="{_n(x(value))}" y2="{top + panel}" stroke="#eee"/>')
            p.append(f'<text x="{_n(x(value))}" y="{top + panel + 14}" text-anchor="middle" {_FONT}>{value:g}</text>')
    p.append(f'<text x="{left + plot_w / 2:.0f}" y="{top2 + panel + 30}" text-anchor="middle" {_FONT}>'
             f"offered jobs/s (log scale)</text>")  # fmt: skip
    # panel 1: offered = achieved diagonal, achieved per step, ceiling
    diagonal = [(x(v), y1(min(v, y1_top))) for v in _log_points(x_lo, x_top)]
    p.append(_polyline(diagonal, "#bbb", "4,3").replace("/>", "><title>achieved = offered</title></polyline>"))
    legend: list[tuple[str, str, str]] = [("#bbb", "4,3", "achieved = offered"), ("#1f5fa8", "", "achieved (mix)")]
    if mix_ceiling:
        p.append(f'<line x1="{left}" y1="{_n(y1(mix_ceiling))}" x2="{left + plot_w}" y2="{_n(y1(mix_ceiling))}" '
                 f'stroke="#555" stroke-dasharray="8,3"/>')  # fmt: skip
        p.append(f'<text x="{left + 4}" y="{_n(y1(mix_ceiling) - 4)}" {_FONT}>'
                 f"ceiling {mix_ceiling:.1f} jobs/s (one worker per plugin, bench_server.py)</text>")  # fmt: skip
        legend.append(("#555", "8,3", "one-worker ceiling"))
    if all_ceiling:
        p.append(f'<line x1="{left}" y1="{_n(y1(all_ceiling))}" x2="{left + plot_w}" y2="{_n(y1(all_ceiling))}" '
                 f'stroke="#555" stroke-dasharray="2,3"/>')  # fmt: skip
        p.append(f'<text x="{left + 4}" y="{_n(y1(all_ceiling) - 4)}" {_FONT}>ceiling {all_ceiling:.1f} jobs/s '
                 f"({n_workers} workers x one-worker rate)</text>")  # fmt: skip
        legend.append(("#555", "2,3", f"{n_workers}-worker ceiling"))
    if old is not None:
        p.append(_polyline([(x(s.offered), y1(s.total.rate)) for s in old.steps], "#1f5fa8", "5,4"))
        p.append(_polyline([(x(s.offered), y2(s.total.p95)) for s in old.steps], "#c62828", "5,4"))
        legend.append(("#777", "5,4", "previous run"))
    p.append(_polyline([(x(s.offered), y1(s.total.rate)) for s in steps], "#1f5fa8", ""))
    xs = [x(s.offered) for s in steps]
    tilted = any(b - a < 34 for a, b in itertools.pairwise(xs))  # close points: slanted labels stay apart
    for s in steps:
        cx, cy = x(s.offered), y1(s.total.rate)
        fill = "#1f5fa8" if s.met else "#fff"
        p.append(f'<circle cx="{_n(cx)}" cy="{_n(cy)}" r="4" fill="{fill}" stroke="#1f5fa8">'
                 f"<title>step {s.index}: offered {s.offered:.2f}, achieved {s.total.rate:.2f} jobs/s</title>"
                 f"</circle>")  # fmt: skip
        p.append(_point_label(cx, cy, f"{s.total.rate:.1f}", tilted))
    # panel 2: p95 per step (and per plugin), the objective
    if latency_limit:
        p.append(f'<line x1="{left}" y1="{_n(y2(latency_limit))}" x2="{left + plot_w}" y2="{_n(y2(latency_limit))}" '
                 f'stroke="#c62828" stroke-width="1.5"/>')  # fmt: skip
        p.append(f'<text x="{left + 4}" y="{_n(y2(latency_limit) - 4)}" {_FONT} fill="#c62828">objective '
                 f"{escape(report.objective)}</text>")  # fmt: skip
        legend.append(("#c62828", "", "objective"))
    names = sorted({n for s in steps for n in s.plugins})
    if len(names) > 1:
        for i, name in enumerate(names):
            colour = _COLOURS[i % len(_COLOURS)]
            pts = [(x(s.offered), y2(s.plugins[name].p95)) for s in steps if name in s.plugins]
            p.append(_polyline(pts, colour, "2,2"))
            legend.append((colour, "2,2", f"p95 {name}"))
    p.append(_polyline([(x(s.offered), y2(s.total.p95)) for s in steps], "#333", ""))
    legend.append(("#333", "", "p95 (mix)"))
    for s in steps:
        cx, cy = x(s.offered), y2(s.total.p95)
        p.append(f'<rect x="{_n(cx - 3.5)}" y="{_n(cy - 3.5)}" width="7" height="7" '
                 f'fill="{"#333" if s.met else "#fff"}" stroke="#333"><title>step {s.index}: p95 {s.total.p95:.0f} ms'
                 f"</title></rect>")  # fmt: skip
        label = f"{s.total.p95 / 1000:.2f} s" if s.total.p95 >= 1000 else f"{s.total.p95:.0f} ms"
        p.append(_point_label(cx, cy, label, tilted))
    # the knee across both panels
    if knee is not None:
        kx = x(knee.offered)
        p.append(f'<line x1="{_n(kx)}" y1="{head}" x2="{_n(kx)}" y2="{top2 + panel}" stroke="#2e7d32" '
                 f'stroke-width="1.5" stroke-dasharray="6,3"/>')  # fmt: skip
        tx, anchor = _beside(kx, left + plot_w * 0.7, 4)
        p.append(f'<text x="{_n(tx)}" y="{head + 12}" text-anchor="{anchor}" {_FONT} fill="#2e7d32">'
                 f"knee: {report.capacity:.2f} jobs/s</text>")  # fmt: skip
    if broke is not None:
        bx, anchor = _beside(x(broke.offered), left + plot_w * 0.7, 8)
        p.append(f'<text x="{_n(bx)}" y="{top2 + 12}" text-anchor="{anchor}" {_FONT} fill="#c62828">broke'
                 f"{' (' + escape(broke.culprit) + ')' if broke.culprit else ''}</text>")  # fmt: skip
    for i, (colour, dash, label) in enumerate(legend):
        ly = head + 8 + 16 * i
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        p.append(f'<line x1="{width - right + 10}" y1="{ly}" x2="{width - right + 32}" y2="{ly}" stroke="{colour}" '
                 f'stroke-width="2"{dash_attr}/>')  # fmt: skip
        p.append(f'<text x="{width - right + 36}" y="{ly + 4}" {_FONT} font-size="10">{escape(label)}</text>')
    if ceiling:
        for i, (name, rate) in enumerate(sorted(ceiling.items())):
            p.append(f'<text x="{width - right + 10}" y="{top2 + 12 + 13 * i}" {_FONT} font-size="10">'
                     f"1 worker: {escape(name)} {rate:.1f}/s</text>")  # fmt: skip
    if compare_rows:
        y0 = top2 + panel + 50
        since = escape(str(old.meta.get("date", "the previous run")) if old else "")
        p.append(f'<text x="{left}" y="{y0}" {_FONT} font-weight="bold">change since {since} '
                 f"(band: both runs' own spread, at least ±{MIN_BAND:.0%})</text>")  # fmt: skip
        for i, change in enumerate(compare_rows):
            colour = "#c62828" if change.beyond and change.ratio < 1 else "#2e7d32" if change.beyond else "#555"
            p.append(f'<text x="{left}" y="{y0 + 18 * (i + 1)}" fill="{colour}" xml:space="preserve" '
                     f'font-family="monospace">{escape(change.text())}</text>')  # fmt: skip
    p.append("</g></svg>")
    return "\n".join(p) + "\n"


def _nice_below(value: float) -> float:
    """The largest 1-2-5 number at or below ``value`` (the log axis's lower end)."""
    if value <= 0:
        return 0.1
    magnitude = float(10.0 ** math.floor(math.log10(value)))
    return max(m * magnitude for m in (1, 2, 5) if m * magnitude <= value * (1 + 1e-9))


def _log_ticks(low: float, high: float) -> list[float]:
    """The 1-2-5 numbers from ``low`` to ``high`` (tick marks of the log axis)."""
    ticks: list[float] = []
    magnitude = float(10.0 ** math.floor(math.log10(low)))
    while magnitude <= high:
        ticks += [v for m in (1, 2, 5) if low * (1 - 1e-9) <= (v := round(m * magnitude, 10)) <= high * (1 + 1e-9)]
        magnitude *= 10
    return ticks


def _log_points(low: float, high: float, n: int = 40) -> list[float]:
    """``n`` points evenly spaced on a log scale from ``low`` to ``high``."""
    return [low * (high / low) ** (i / (n - 1)) for i in range(n)]


def _beside(at: float, edge: float, gap: float) -> tuple[float, str]:
    """Where a label beside the vertical line at ``at`` goes, and its anchor: right of it, or left of it past
    ``edge`` (near the plot's right side); ``gap`` px away on the left, 4 px on the right."""
    return (at - gap, "end") if at > edge else (at + 4, "start")


def _point_label(cx: float, cy: float, text: str, tilted: bool) -> str:
    """A point's value above it; slanted up to the right when points lie close together, so labels do not overlap."""
    if tilted:
        return (f'<text x="{_n(cx + 3)}" y="{_n(cy - 6)}" transform="rotate(-50 {_n(cx + 3)} {_n(cy - 6)})" '
                f'{_FONT} font-size="10">{escape(text)}</text>')  # fmt: skip
    return f'<text x="{_n(cx)}" y="{_n(cy - 8)}" text-anchor="middle" {_FONT} font-size="10">{escape(text)}</text>'


def _polyline(points: Sequence[tuple[float, float]], colour: str, dash: str) -> str:
    if not points:
        return ""
    dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
    coords = " ".join(f"{_n(a)},{_n(b)}" for a, b in points)
    return f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="1.8"{dash_attr}/>'


def _limit_ms(objective: str) -> float | None:
    try:
        parsed = Objective.parse(objective)
    except LoadUsageError:
        return None
    return parsed.latency_ms


def _mix_ceiling(mix: str, ceiling: Mapping[str, float]) -> float | None:
    """The mix's jobs/s on one worker from each plugin's one-worker rate (time per job weighted by the mix)."""
    weights: dict[str, float] = {}
    for part in mix.split(","):
        name, _, weight = part.partition("=")
        weights[name.strip().replace("-", "_")] = float(weight or 1)
    if not weights or any(name not in ceiling or ceiling[name] <= 0 for name in weights):
        return None
    seconds = sum(w / ceiling[name] for name, w in weights.items()) / sum(weights.values())
    return 1 / seconds
