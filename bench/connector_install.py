"""Installing the connector into a fresh env: our offline wheelhouse vs the online install from the index.

Baseline: ``pip install --no-cache-dir snowflake-connector-python[pandas]==4.8.0`` from the package
index pip is configured with on this machine (a registry mirror reachable from here; no local
find-links). Ours: what install_wheels.sh runs, timed whole: unpack uv from the wheelhouse's tools/
with pip, then ``uv pip install --python <env> --compile-bytecode --no-index --find-links <wheels>
-r notebook_lifecycle/requirements.txt``. An informational third variant is install_wheels.sh's
fallback when uv is missing or fails: ``pip install --no-index`` from the same wheelhouse. The
wheelhouse is downloaded once for this machine's Python and platform outside the timing. Every run
gets a fresh venv (created outside the timing) and must import the connector.
"""

from __future__ import annotations

import shutil
import tempfile
import time
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
    tools = [str(p) for p in sorted((house / "tools").glob("uv-*.whl"))]
    if not tools:
        raise RuntimeError(f"no uv wheel in {house / 'tools'}: delete {house} and run again")
    work = Path(tempfile.mkdtemp(prefix="snowsage-bench-install-"))
    freezes: dict[str, str] = {}

    def install(label: str, args: list[str]) -> float:
        python = make_venv(work / label)
        seconds = timed([str(python), *PIP, *args], timeout=900, env=pip_env())
        return _checked(label, python, seconds)

    def install_with_uv(label: str) -> float:
        python = make_venv(work / label)
        uv_dir = work / f"{label}-uv"
        began = time.perf_counter()
        run_checked(
            [str(python), *PIP, "--no-index", "--no-deps", "--target", str(uv_dir), *tools], timeout=300
        )
        run_checked(
            [
                str(uv_dir / "bin" / "uv"),
                "pip",
                "install",
                "--quiet",
                "--python",
                str(python),
                "--no-config",
                "--no-cache",
                "--compile-bytecode",
                *offline,
            ],
            timeout=900,
        )
        seconds = time.perf_counter() - began
        shutil.rmtree(uv_dir, ignore_errors=True)
        return _checked(label, python, seconds)

    def _checked(label: str, python: Path, seconds: float) -> float:
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
                "ours": lambda: install_with_uv("ours"),
                "ours_pip": lambda: install("ours_pip", offline),
            },
            repetitions,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)

    total = Metric(
        "install wall time", "s", runs["baseline"], runs["ours"], "online index", "wheelhouse + uv"
    )
    with_pip = Metric(
        "install wall time, wheelhouse with pip (the fallback; informational)",
        "s",
        runs["baseline"],
        runs["ours_pip"],
        "online index",
        "wheelhouse + pip",
    )
    base_m, ours_m, pip_m = median(runs["baseline"]), median(runs["ours"]), median(runs["ours_pip"])
    assert base_m is not None and ours_m is not None and pip_m is not None
    notes = [
        f"The wheelhouse holds {len(wheels)} wheels, {sum(w.stat().st_size for w in wheels) / 1e6:.0f} MB; "
        f"an installed env's lib/ is about {int(freezes['ours:site-packages-bytes']) / 1e6:.0f} MB "
        f"(baseline {int(freezes['baseline:site-packages-bytes']) / 1e6:.0f} MB).",
        "The sides do not install the same set: the baseline installs only the connector with its pandas "
        "extra, ours every pin of the notebook's kernel env (the connector plus ipykernel for the kernel and "
        "xgboost-cpu with scipy for the training notebook's model, and their dependencies), so ours "
        "unpacks and compiles about twice the bytes.",
        "Every side byte-compiles everything it installs (pip by default, uv with --compile-bytecode), so "
        "the first import in the notebook is equally fast after each; the baseline resolves the newest "
        "numpy/pandas/pyarrow the extra allows, ours the pins (see details).",
        f"Where the time goes: the online side downloads from a registry mirror close to this machine, "
        f"yet pip from the local wheelhouse still takes {pip_m:.1f} s: most of a pip install is unpacking "
        f"and byte-compiling ~{len(wheels)} wheels one at a time. uv does both in parallel, which is what "
        f"brings ours to {ours_m:.1f} s (including unpacking uv itself).",
    ]
    ratio = total.ratio
    if ratio is not None and ratio < 3:
        notes.append(
            f"MISSED the 3x target (measured {ratio:.2f}x): see where the time goes above; the download the "
            "wheelhouse removes is a small part of the install from this nearby mirror, and ours installs the "
            "larger set."
        )
    return Result(
        summary=f"baseline = `pip install --no-cache-dir {ONLINE_SPEC}` from the package index; "
        "ours = install_wheels.sh's way: uv unpacked from the wheelhouse, then `uv pip install "
        "--compile-bytecode --no-index --find-links <wheelhouse> -r notebook_lifecycle/requirements.txt`",
        metrics=[total, with_pip],
        targets=[
            Target("ours ≥ 3x faster than the online install", ratio, 3.0, "x", at_most=False),
            Target("ours ≤ 30 s", ours_m, 30.0, "s"),
        ],
        notes=notes,
        details={"installed": {k: v.split() for k, v in freezes.items() if ":" not in k}},
    )
