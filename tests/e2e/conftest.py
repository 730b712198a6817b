"""One `make demo` run per test session, shared by the modules that check what it did.

A demo run deploys every stack to its own moto and runs both notebooks and three training runs:
minutes on 2 cores. tests/e2e/test_sandbox.py (the product end to end) and
tests/e2e/test_training_demo.py (its training steps) read the same run; both modules are in the
``sandbox-demo`` xdist group, so with ``--dist loadgroup`` (make test) they land on one worker and
the run happens once. The run reuses the session's fakesnow server; moto is the sandbox's own.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sandbox import demo
from tests.conftest import ServerProcess

REPO_ROOT = Path(__file__).resolve().parents[2]
DEMO_GROUP = pytest.mark.xdist_group("sandbox-demo")


@dataclass(frozen=True)
class DemoRun:
    result: Any  # sandbox.demo.Result
    output: str  # what the run printed
    workdir: Path
    context_before: bytes | None  # cdk.context.json before the run (None: there was none)


@pytest.fixture(scope="session")
def sandbox_demo(tmp_path_factory: pytest.TempPathFactory, fakesnow_server: ServerProcess) -> DemoRun:
    context_file = REPO_ROOT / "cdk.context.json"
    context_before = context_file.read_bytes() if context_file.exists() else None
    workdir = tmp_path_factory.mktemp("demo")
    out = io.StringIO()
    result = demo.run(demo.Options(workdir=workdir, fakesnow_port=fakesnow_server.port, out=out))
    return DemoRun(result, out.getvalue(), workdir, context_before)
