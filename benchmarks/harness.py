"""Measurement helpers: timings with median/p95, memory growth, the result table and JSON."""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import sqlite3
import statistics
import sys
import time
import typing as t
from collections.abc import Callable


@dataclasses.dataclass
class Figure:
    """One measured figure with its target and the baseline measured in the same run."""

    name: str
    scale: str
    unit: str
    median: float
    p95: float
    target: float | None
    higher_is_better: bool = False
    baseline: float | None = None
    baseline_label: str = ""
    note: str = ""
    max_ratio: float | None = None
    """A target on the ratio to the baseline (e.g. time at 1M ÷ time at 10k ≤ 1.5)."""

    @property
    def ratio(self) -> float | None:
        """median ÷ baseline (for a rate: baseline ÷ median, so < 1 always means faster)."""
        if self.baseline in (None, 0) or self.median == 0:
            return None
        return self.baseline / self.median if self.higher_is_better else self.median / self.baseline

    @property
    def passed(self) -> bool | None:
        checks = []
        if self.target is not None:
            value = self.median if self.higher_is_better else self.p95
            checks.append(value >= self.target if self.higher_is_better else value <= self.target)
        if self.max_ratio is not None:
            ratio = self.ratio
            checks.append(ratio is not None and ratio <= self.max_ratio)
        return all(checks) if checks else None


def sample(fn: Callable[[], object], *, repeat: int, warmup: int = 1) -> list[float]:
    """Seconds per call of ``fn``, ``repeat`` times after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    timings = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        timings.append(time.perf_counter() - start)
    return timings


def median_p95(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, max(0, round(0.95 * len(ordered)) - 1))]
    return statistics.median(ordered), p95


def rss_bytes(pid: int | None = None) -> int:
    """Resident set size of a process (Linux ``/proc``)."""
    with open(f"/proc/{pid or os.getpid()}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def machine() -> dict[str, t.Any]:
    """Cores, CPU model, Python, SQLite and platform of this machine."""
    return {
        "cores": os.cpu_count(),
        "cpu": _cpu_model(),
        "python": sys.version.split()[0],
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average() -> str:
    """The 1/5/15-minute load averages: other work on the machine skews the figures."""
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "ms":
        return f"{value:,.1f} ms"
    if unit == "s":
        return f"{value:,.2f} s"
    if unit == "MB":
        return f"{value:,.1f} MB"
    if unit == "req/record":
        return f"{value:.4f} {unit}"
    return f"{value:,.0f} {unit}"


def print_table(figures: list[Figure]) -> None:
    header = f"{'figure':44} {'scale':26} {'median':>14} {'p95':>14} {'target':>16} {'baseline':>14} {'ratio':>7}  result"
    print(header)
    print("-" * len(header))
    for f in figures:
        target = None if f.target is None else ("≥ " if f.higher_is_better else "≤ ") + _fmt(f.target, f.unit)
        if f.max_ratio is not None:
            target = (target + ", " if target else "") + f"ratio ≤ {f.max_ratio}"
        ratio = "—" if f.ratio is None else f"{f.ratio:.2f}×"
        result = {True: "PASS", False: "MISS", None: "info"}[f.passed]
        print(
            f"{f.name:44} {f.scale:26} {_fmt(f.median, f.unit):>14} {_fmt(f.p95, f.unit):>14} "
            f"{target or '—':>16} {_fmt(f.baseline, f.unit):>14} {ratio:>7}  {result}"
        )
        if f.baseline_label or f.note:
            print(f"{'':44} baseline: {f.baseline_label}  {f.note}".rstrip())


def write_json(path: str, figures: list[Figure], context: dict[str, t.Any]) -> None:
    payload = {
        **context,
        "figures": [
            {**dataclasses.asdict(f), "ratio": f.ratio, "passed": f.passed} for f in figures
        ],
    }
    with open(path, "w") as out:
        json.dump(payload, out, indent=2, default=str)


def markdown_table(figures: list[Figure], context: dict[str, t.Any]) -> str:
    """The figures as a Markdown table, with the date, machine and command above it."""
    m = context["machine"]
    lines = [
        f"Run {context['date'][:10]} (`{context['command']}`, {context['scale']} scale, {context.get('seconds', '?')} s) "
        f"on {m['cores']} cores ({m['cpu']}), Python {m['python']}, SQLite {m['sqlite']}; "
        f"load average {context['load_before']} before, {context.get('load_after', '?')} after.",
        "",
        "| figure | scale | median | p95 | target | baseline | ratio | result |",
        "|---|---|---:|---:|---|---:|---:|---|",
    ]
    for f in figures:
        target = None if f.target is None else ("≥ " if f.higher_is_better else "≤ ") + _fmt(f.target, f.unit)
        if f.max_ratio is not None:
            target = (target + ", " if target else "") + f"ratio ≤ {f.max_ratio}"
        ratio = "—" if f.ratio is None else f"{f.ratio:.2f}×"
        result = {True: "PASS", False: "**MISS**", None: "info"}[f.passed]
        lines.append(
            f"| {f.name} | {f.scale} | {_fmt(f.median, f.unit)} | {_fmt(f.p95, f.unit)} | {target or '—'} "
            f"| {_fmt(f.baseline, f.unit)} | {ratio} | {result} |"
        )
    return "\n".join(lines) + "\n"
