"""Wall time of the whole test suite on this machine's cores, and which modules dominate it.

``python -m pytest tests -q -n auto --dist loadgroup -p no:cacheprovider --durations=15``: what ``make test`` runs
(``-n auto``: one worker per core), run as is (no baseline: the target is absolute). Run last by bench.run: it keeps both cores busy for minutes.
"""

from __future__ import annotations

import os
import re
import time
from collections import defaultdict

from .common import REPO_ROOT, Metric, Result, Target, base_env, median

NAME = "test_suite"
TITLE = "Test suite wall time (pytest -n auto, as make test runs it)"
DEFAULT_REPETITIONS = 1
LIMIT = 180.0
COMMAND = [
    "-m",
    "pytest",
    "tests",
    "-q",
    "-n",
    "auto",
    "--dist",
    "loadgroup",
    "-p",
    "no:cacheprovider",
    "--durations=15",
]
DURATION = re.compile(r"^\s*([\d.]+)s (setup|call|teardown)\s+(\S+?)::(\S+)", re.M)
FAILED = re.compile(r"^FAILED (\S+)", re.M)
SUMMARY = re.compile(r"^=* ?(.*(?:passed|failed|error).*) in ([\d.]+)s", re.M)


def run(repetitions: int = DEFAULT_REPETITIONS) -> Result:
    import subprocess
    import sys

    walls: list[float] = []
    exit_codes: list[int] = []
    output = ""
    for _ in range(repetitions):
        began = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, *COMMAND],
            cwd=REPO_ROOT,
            env=base_env(),
            capture_output=True,
            text=True,
            timeout=1800,
        )
        walls.append(time.perf_counter() - began)
        output = proc.stdout + proc.stderr
        exit_codes.append(proc.returncode)
        if proc.returncode not in (0, 1):  # 1 = some tests failed: the time still counts, said below
            raise RuntimeError(f"pytest could not run the suite (exit {proc.returncode}):\n{output[-3000:]}")

    slowest = [(float(s), phase, module, test) for s, phase, module, test in DURATION.findall(output)]
    by_module: dict[str, float] = defaultdict(float)
    for seconds, _, module, _ in slowest:
        by_module[module] += seconds
    summary = SUMMARY.search(output)
    wall = median(walls)
    notes = [f"pytest's summary: {summary.group(1) if summary else '?'}."]
    failed = FAILED.findall(output)
    if any(exit_codes):
        notes.append(
            "THE SUITE FAILED in this run, so the time is of a red suite (the working tree measured may hold "
            "unfinished work): " + ", ".join(failed)
        )
    top = sorted(by_module.items(), key=lambda kv: -kv[1])
    notes.append(
        "Modules among the 15 slowest test phases (seconds summed over those phases): "
        + ", ".join(f"{m} {s:.1f} s" for m, s in top)
        + ". Phases run on one worker per core at once, so they add up to more than the wall time."
    )
    if wall is not None and wall > LIMIT:
        notes.append(f"MISSED the {LIMIT:g} s target (measured {wall:.0f} s); the modules above dominate.")
    return Result(
        summary="`python " + " ".join(COMMAND) + "` (absolute target, no baseline)",
        metrics=[Metric("suite wall time", "s", [], walls, "—", "pytest -n auto")],
        targets=[
            Target(
                f"suite ≤ {LIMIT:g} s on {os.cpu_count()} cores"
                + (f" (suite RED: {len(failed)} failed)" if failed else ""),
                wall,
                LIMIT,
                "s",
            )
        ],
        notes=notes,
        details={
            "exit_codes": exit_codes,
            "failed": failed,
            "slowest": [{"seconds": s, "phase": p, "module": m, "test": t} for s, p, m, t in slowest],
        },
    )
