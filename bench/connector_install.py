"""Installing the connector into a fresh env: our offline wheelhouse vs the online install from the index.

Baseline: ``pip install --no-cache-dir snowflake-connector-python[pandas]==4.8.0`` from the package
index pip is configured with on this machine (a registry mirror reachable from here; no local
find-links). Ours: ``pip install --no-index --find-links <wheelhouse> -r
notebook_lifecycle/requirements.txt``, what install_wheels.sh runs, with the wheelhouse downloaded
once for this machine's Python and platform outside the timing. An informational third variant
adds ``--no-compile`` to show how much of either install is bytecode compilation rather than
download. Every run gets a fresh venv (created outside the timing) and must import the connector.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from .common import (
    REPO_ROOT,
    Metric,
    Result,
    Target,
    alternate,
    dir_size,
    make_venv,
    median,
    pip_env,
    run_checked,
    timed,
    wheelhouse,
)

NAME = "connector_install"
TITLE = "Connector install into a fresh env"
DEFAULT_REPETITIONS = 3
REQUIREMENTS = REPO_ROOT / "notebook_lifecycle" / "requirements.txt"
ONLINE_SPEC = "snowflake-connector-python[pandas]==4.8.0"
PIP = ["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-cache-dir"]
IMPORT_CHECK = "import snowflake.connector, pandas, pyarrow; print(snowflake.connector.__version__)"


def run(repetitions: int = DEFAULT_REPETITIONS) -> Result:
    house = wheelhouse()
    wheels = sorted(house.glob("*.whl"))
    work = Path(tempfile.mkdtemp(prefix="snowsage-bench-install-"))
    freezes: dict[str, str] = {}

    def install(label: str, args: list[str]) -> float:
        python = make_venv(work / label)
        seconds = timed([str(python), *PIP, *args], timeout=900, env=pip_env())
        run_checked([str(python), "-c", IMPORT_CHECK], timeout=120)
        freezes.setdefault(label, run_checked([str(python), "-m", "pip", "freeze"], timeout=60).stdout)
        freezes.setdefault(f"{label}:site-packages-bytes", str(dir_size(python.parents[1] / "lib")))
        shutil.rmtree(work / label, ignore_errors=True)
        return seconds

    offline = ["--no-index", "--find-links", str(house), "--requirement", str(REQUIREMENTS)]
    try:
        runs = alternate(
            {
                "baseline": lambda: install("baseline", [ONLINE_SPEC]),
                "ours": lambda: install("ours", offline),
                "ours_no_compile": lambda: install("ours_no_compile", ["--no-compile", *offline]),
            },
            repetitions,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)

    total = Metric("install wall time", "s", runs["baseline"], runs["ours"], "online index", "wheelhouse")
    no_compile = Metric(
        "install wall time, wheelhouse with --no-compile (informational)",
        "s",
        runs["baseline"],
        runs["ours_no_compile"],
        "online index",
        "wheelhouse --no-compile",
    )
    base_m, ours_m, nc_m = median(runs["baseline"]), median(runs["ours"]), median(runs["ours_no_compile"])
    assert base_m is not None and ours_m is not None and nc_m is not None
    notes = [
        f"The wheelhouse holds {len(wheels)} wheels, {sum(w.stat().st_size for w in wheels) / 1e6:.0f} MB; "
        f"an installed env's lib/ is about {int(freezes['ours:site-packages-bytes']) / 1e6:.0f} MB "
        f"(baseline {int(freezes['baseline:site-packages-bytes']) / 1e6:.0f} MB).",
        "Both sides use the fresh venv's bundled pip and --no-cache-dir; the baseline resolves the newest "
        "numpy/pandas/pyarrow the extra allows, ours the pins (see details).",
        f"The online side downloads from a registry mirror close to this machine: download and resolution "
        f"cost only baseline - ours = {base_m - ours_m:.1f} s here. Most of both installs is unpacking "
        f"and byte-compiling the same ~{len(wheels)} wheels: with --no-compile ours takes {nc_m:.1f} s, so "
        f"byte-compilation alone is about {ours_m - nc_m:.1f} s of ours.",
    ]
    ratio = total.ratio
    if ratio is not None and ratio < 3:
        notes.append(
            f"MISSED the 3x target (measured {ratio:.2f}x): the wheelhouse only removes the download, and "
            "from this nearby mirror the download is a small part of the install. Against the public "
            "internet (or no internet at all, the privatelink mode) the gap is larger; it cannot be shown here."
        )
    return Result(
        summary=f"baseline = `pip install --no-cache-dir {ONLINE_SPEC}` from the package index; "
        "ours = `pip install --no-index --find-links <wheelhouse> -r notebook_lifecycle/requirements.txt`",
        metrics=[total, no_compile],
        targets=[
            Target("ours ≥ 3x faster than the online install", ratio, 3.0, "x", at_most=False),
            Target("ours ≤ 30 s", ours_m, 30.0, "s"),
        ],
        notes=notes,
        details={"installed": {k: v.split() for k, v in freezes.items() if ":" not in k}},
    )
