"""Run the benchmarks (`make bench` = ``python -m bench.run``), write bench/results/<name>.json and
regenerate bench/RESULTS.md from every result file there.

    python -m bench.run                          # all, each with its default repetitions
    python -m bench.run -b synth -b check_latency -r 5
    python -m bench.run --list
    python -m bench.run --report-only            # rewrite RESULTS.md from the JSON files

A benchmark that fails is recorded as failed (with the error) and the others still run; the exit
status is 1 then. Targets are judged here and in RESULTS.md, never in the unit tests.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
import traceback
from datetime import datetime, timezone
from typing import Any

from .common import RESULTS_DIR, log, machine, versions
from .report import write_report

BENCHMARKS = (
    "connector_install",
    "lifecycle_start",
    "query_to_dataframe",
    "lambda_bundle",
    "synth",
    "check_latency",
    "training_data",
    "training_scale",
    # Last: it loads both cores for minutes and would disturb the others.
    "test_suite",
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "-b", "--benchmark", action="append", choices=BENCHMARKS, help="run only this one (repeatable)"
    )
    parser.add_argument(
        "-r", "--repetitions", type=int, help="repetitions per side (default: each benchmark's own)"
    )
    parser.add_argument("--list", action="store_true", help="list the benchmarks and their defaults")
    parser.add_argument("--report-only", action="store_true", help="only regenerate RESULTS.md")
    args = parser.parse_args(argv)

    if args.list:
        for name in BENCHMARKS:
            module = importlib.import_module(f"bench.{name}")
            print(f"{name:20} {module.DEFAULT_REPETITIONS} repetition(s)  {module.TITLE}")
        return 0
    if args.repetitions is not None and args.repetitions < 1:
        parser.error("--repetitions must be at least 1")
    if args.report_only:
        print(write_report())
        return 0

    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
    host, found = machine(), versions()
    failures = 0
    for name in args.benchmark or BENCHMARKS:
        module = importlib.import_module(f"bench.{name}")
        reps = args.repetitions or module.DEFAULT_REPETITIONS
        log(f"== {name}: {module.TITLE} ({reps} repetition(s))")
        began = time.monotonic()
        doc: dict[str, Any] = {
            "name": name,
            "title": module.TITLE,
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "repetitions": reps,
            "machine": {**host, "load_average": [round(x, 2) for x in os.getloadavg()]},
            "versions": found,
        }
        try:
            result = module.run(reps)
        except Exception as exc:  # noqa: BLE001 - one broken benchmark must not lose the others' results
            failures += 1
            doc.update(
                status="failed", error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc()
            )
            log(f"!! {name} failed: {exc}")
        else:
            doc.update(
                status="ok",
                summary=result.summary,
                metrics=[m.to_json() for m in result.metrics],
                targets=[t.to_json() for t in result.targets],
                notes=result.notes,
                details=result.details,
            )
        doc["seconds"] = round(time.monotonic() - began, 1)
        doc["machine"]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
        path = RESULTS_DIR / f"{name}.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n")
        tmp.replace(path)
        log(f"== {name}: {doc['status']} in {doc['seconds']} s -> {path.relative_to(RESULTS_DIR.parents[1])}")
    report = write_report()
    log(f"wrote {report}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
