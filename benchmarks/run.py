"""Run every benchmark: ``python -m benchmarks.run [--quick] [--only NAME ...] [--postgres URL] [--json PATH] [--markdown PATH]``.

Seeds realistic data at scale on SQLite (and PostgreSQL with ``--postgres URL``),
measures each figure with the baseline it is compared to in the same run, and
prints median, p95, target, ratio and PASS/MISS; the same goes to a JSON file.
``--quick`` runs at a tenth of the scale, for development.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import importlib
import sys
import time

from .apps import backends
from .apps import cleanup
from .harness import Figure
from .harness import load_average
from .harness import machine
from .harness import markdown_table
from .harness import print_table
from .harness import write_json

#: Benchmark sections, each a module with ``run_backend(scale, backend, server_url) -> list[Figure]``.
SECTIONS = ("recorder", "rollup", "status", "errors", "export", "connector")


@dataclasses.dataclass(frozen=True)
class Scale:
    """How much data each figure works on; ``--quick`` divides by ten."""

    factor: float
    postgres_url: str | None = None

    def n(self, full: int) -> int:
        return max(1, int(full * self.factor))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the scale, for development")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, help="run only these sections")
    parser.add_argument("--json", default="benchmarks/results.json", help="where to write the figures")
    parser.add_argument("--postgres", metavar="URL", help="also run the database figures on PostgreSQL "
                        "(a server URL; databases dsync_bench_* are created there); the recorder stays on SQLite")
    parser.add_argument("--markdown", metavar="PATH", help="also write the table as Markdown (for the README)")
    args = parser.parse_args(argv)

    scale = Scale(factor=0.1 if args.quick else 1.0, postgres_url=args.postgres)
    context = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "scale": "quick (1/10)" if args.quick else "full",
        "command": " ".join(["python -m benchmarks.run", *(sys.argv[1:] if argv is None else argv)]),
        "load_before": load_average(),
    }
    print(f"Flask-Dynamics-Sync benchmarks — {context['date']}")
    print("machine: " + ", ".join(f"{k}={v}" for k, v in context["machine"].items()))
    print(f"scale: {context['scale']}; load average before: {context['load_before']}\n")

    figures: list[Figure] = []
    began = time.perf_counter()
    try:
        # Every SQLite figure first, then every PostgreSQL one: seeding one database
        # server never overlaps with measuring on the other.
        for backend, server in backends(scale):
            for name in args.only or SECTIONS:
                section = importlib.import_module(f"benchmarks.bench_{name}")
                started = time.perf_counter()
                print(f"[{name}, {backend}] running …", flush=True)
                figures.extend(section.run_backend(scale, backend, server))
                print(f"[{name}, {backend}] done in {time.perf_counter() - started:.1f} s", flush=True)
    finally:
        cleanup()
    print()
    print_table(figures)
    context["load_after"] = load_average()
    context["seconds"] = round(time.perf_counter() - began)
    print(f"\ntotal {context['seconds']} s; load average after: {context['load_after']}; figures written to {args.json}")
    write_json(args.json, figures, context)
    if args.markdown:
        with open(args.markdown, "w") as out:
            out.write(markdown_table(figures, context))
    return 0 if all(f.passed is not False for f in figures) else 1


if __name__ == "__main__":
    sys.exit(main())
