"""What every benchmark shares: the machine description, alternating runs, medians, loopback servers.

A benchmark module exposes ``NAME``, ``TITLE``, ``DEFAULT_REPETITIONS`` and ``run(repetitions)``,
which returns a ``Result``; ``bench.run`` adds the date, the machine and the versions and writes
``bench/results/<name>.json``. Baseline and ours always run in the same process tree, alternating,
so a machine that slows down mid-run slows both.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = REPO_ROOT / "bench"
RESULTS_DIR = BENCH_DIR / "results"
# Downloads and builds that are set up once, outside the timings (.build/ is git-ignored).
CACHE_DIR = REPO_ROOT / ".build" / "bench"
VENV_BIN = Path(sys.executable).parent
NODE_BIN = REPO_ROOT / "node_modules" / ".bin"
STARTUP_TIMEOUT = 30.0

PACKAGES = (
    "pip",
    "snowflake-connector-python",
    "pandas",
    "pyarrow",
    "numpy",
    "fakesnow",
    "duckdb",
    "moto",
    "boto3",
    "aws-lambda-powertools",
    "aws-cdk-lib",
    "cdk-nag",
    "pytest",
    "pytest-xdist",
)


@dataclass
class Metric:
    """One measured quantity: all runs of both sides, judged on medians. ``ratio`` is how many times
    better ours is (baseline / ours for lower-is-better)."""

    name: str
    unit: str
    baseline: list[float] = field(default_factory=list)
    ours: list[float] = field(default_factory=list)
    baseline_label: str = "baseline"
    ours_label: str = "ours"
    higher_is_better: bool = False

    @property
    def baseline_median(self) -> float | None:
        return statistics.median(self.baseline) if self.baseline else None

    @property
    def ours_median(self) -> float | None:
        return statistics.median(self.ours) if self.ours else None

    @property
    def ratio(self) -> float | None:
        b, o = self.baseline_median, self.ours_median
        if b is None or o is None or (o if not self.higher_is_better else b) == 0:
            return None
        return o / b if self.higher_is_better else b / o

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc.update(baseline_median=self.baseline_median, ours_median=self.ours_median, ratio=self.ratio)
        return doc


@dataclass
class Target:
    description: str
    measured: float | None
    threshold: float
    unit: str
    at_most: bool = True  # met when measured <= threshold (else when measured >= threshold)

    @property
    def met(self) -> bool:
        if self.measured is None:
            return False
        return self.measured <= self.threshold if self.at_most else self.measured >= self.threshold

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "met": self.met}


@dataclass
class Result:
    summary: str  # what baseline and ours are, in one or two sentences
    metrics: list[Metric]
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def alternate(variants: Mapping[str, Callable[[], Any]], repetitions: int) -> dict[str, list[Any]]:
    """Run every variant ``repetitions`` times, interleaved; each round starts with the next variant,
    so none always runs first (cold caches) or last (a warm, busy machine)."""
    names = list(variants)
    runs: dict[str, list[Any]] = {n: [] for n in names}
    for rep in range(repetitions):
        shift = rep % len(names)
        for name in names[shift:] + names[:shift]:
            began = time.monotonic()
            runs[name].append(variants[name]())
            log(f"  {name} #{rep + 1}: done in {time.monotonic() - began:.1f} s")
    return runs


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def base_env(**extra: str) -> dict[str, str]:
    """This environment with the repo importable and the pinned Node/CDK CLI and venv tools first on PATH."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env["PATH"] = os.pathsep.join((str(NODE_BIN), str(VENV_BIN), env.get("PATH", "")))
    env.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
    env.setdefault("CDK_DISABLE_CLI_TELEMETRY", "true")
    env.update(extra)
    return env


def pip_env(**extra: str) -> dict[str, str]:
    """pip with no configuration files and no extra find-links: the package index only, as on a
    developer's machine, so neither side silently picks wheels from this machine's local folders."""
    env = base_env(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", **extra)
    for key in (
        "PIP_FIND_LINKS",
        "PIP_EXTRA_INDEX_URL",
        "PIP_NO_INDEX",
        "PIP_CONSTRAINT",
        "PIP_REQUIRE_VIRTUALENV",
    ):
        env.pop(key, None)
    return env


def run_checked(cmd: Sequence[str], *, timeout: float, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, check=False, **kwargs)
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(map(str, cmd))} exited {proc.returncode}:\n{proc.stdout[-1500:]}\n{proc.stderr[-3000:]}"
        )
    return proc


def timed(cmd: Sequence[str], *, timeout: float, **kwargs: Any) -> float:
    """Wall seconds of a command that must succeed."""
    began = time.perf_counter()
    run_checked(cmd, timeout=timeout, **kwargs)
    return time.perf_counter() - began


def make_venv(dest: Path) -> Path:
    """A fresh venv with the interpreter's bundled pip (ensurepip: no download); returns its python."""
    shutil.rmtree(dest, ignore_errors=True)
    run_checked([sys.executable, "-m", "venv", str(dest)], timeout=180)
    return dest / "bin" / "python"


def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.log_path.unlink(missing_ok=True)


@contextlib.contextmanager
def server(name: str, args: Sequence[str], ready_path: str = "/") -> Iterator[Server]:
    """A Python server module on a free loopback port (``-p PORT`` is appended), always stopped."""
    port = free_port()
    log_path = Path(tempfile.mkstemp(prefix=f"snowsage-bench-{name}-", suffix=".log")[1])
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, *args, "-p", str(port)],
            cwd=REPO_ROOT,
            env=base_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    srv = Server(name, proc, port, log_path)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{srv.url}{ready_path}", timeout=2):  # noqa: S310 - loopback
                    break
            except urllib.error.HTTPError:
                break  # it answers HTTP: ready
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"{name} did not answer on {srv.url} within {STARTUP_TIMEOUT:g} s"
                    ) from None
                time.sleep(0.1)
        yield srv
    finally:
        srv.stop()


def moto_server() -> contextlib.AbstractContextManager[Server]:
    return server("moto", ["-m", "moto.server", "-H", "127.0.0.1"], "/moto-api/")


def fakesnow_server() -> contextlib.AbstractContextManager[Server]:
    return server("fakesnow", ["-m", "sandbox.fakesnow_server"])


def aws_env(endpoint: str, region: str, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: base_env()) with every AWS call sent to the moto endpoint, fake
    credentials and no profile or config file."""
    env = {k: v for k, v in (base if base is not None else base_env()).items() if not k.startswith("AWS_")}
    env.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",  # noqa: S106 - moto's fake credentials
        AWS_DEFAULT_REGION=region,
        AWS_REGION=region,
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
    )
    return env


def wheelhouse() -> Path:
    """notebook_lifecycle/requirements.txt downloaded once for THIS machine's Python and platform,
    with tools.txt (uv) in tools/ as the real wheelhouse has it."""
    requirements = REPO_ROOT / "notebook_lifecycle" / "requirements.txt"
    tools = REPO_ROOT / "notebook_lifecycle" / "tools.txt"
    tag = f"cp{sys.version_info[0]}{sys.version_info[1]}-{platform.machine()}"
    # Keyed by the pins' hash: a changed pin gets a fresh download.
    digest = hashlib.sha256(requirements.read_bytes() + tools.read_bytes()).hexdigest()[:12]
    dest = CACHE_DIR / f"wheelhouse-{tag}-{digest}"
    if (dest / ".complete").exists():
        return dest
    log(f"  downloading the notebook wheelhouse for {tag} (once, not timed) into {dest}")
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    download = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:"]
    for folder, source, args in ((dest, requirements, ()), (dest / "tools", tools, ("--no-deps",))):
        cmd = [*download, *args, "--dest", str(folder), "--requirement", str(source)]
        run_checked(cmd, timeout=600, env=pip_env())
    (dest / ".complete").write_text(requirements.read_text())
    return dest


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gib = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = round(int(line.split()[1]) / 1024**2, 1)
    os_name = platform.platform()
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = f"{line.split('=', 1)[1].strip(chr(34))} (kernel {platform.release()})"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": mem_gib,
        "os": os_name,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "arch": platform.machine(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def versions() -> dict[str, str]:
    found: dict[str, str] = {}
    for name in PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[name] = metadata.version(name)
    for name, cmd in (
        ("node", [str(NODE_BIN / "node"), "--version"]),
        ("cdk-cli", [str(NODE_BIN / "cdk"), "--version"]),
    ):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=base_env(), check=False)
            if out.returncode == 0:
                found[name] = out.stdout.strip().split()[0]
    return found
