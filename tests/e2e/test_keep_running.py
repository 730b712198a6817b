"""`python -m sandbox --keep-running` leaves a state file that `make notebook` reuses only while the
process that owns the servers is alive and both servers answer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from sandbox import demo, servers
from tests.conftest import ServerProcess


def _state(workdir: Path, pid: int, moto_url: str, fakesnow_port: int) -> None:
    doc = {"pid": pid, "moto_url": moto_url, "fakesnow_port": fakesnow_port, "env_name": "sandbox"}
    (workdir / demo.RUNNING_FILE).write_text(json.dumps({**doc, "region": demo.REGION}))


def test_a_kept_sandbox_is_found_while_its_owner_and_servers_are_up(
    tmp_path: Path, moto_server: ServerProcess, fakesnow_server: ServerProcess
) -> None:
    _state(tmp_path, os.getpid(), moto_server.url, fakesnow_server.port)

    found = demo.running_sandbox(tmp_path)

    assert found is not None
    assert (found.moto_url, found.fakesnow_port, found.env_name) == (
        moto_server.url,
        fakesnow_server.port,
        "sandbox",
    )


def test_a_stale_state_file_is_not_reused(
    tmp_path: Path, moto_server: ServerProcess, fakesnow_server: ServerProcess
) -> None:
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    _state(tmp_path, int(gone.stdout), moto_server.url, fakesnow_server.port)
    assert demo.running_sandbox(tmp_path) is None  # its owner exited

    _state(tmp_path, os.getpid(), f"http://{servers.LOOPBACK}:{servers.free_port()}", fakesnow_server.port)
    assert demo.running_sandbox(tmp_path) is None  # moto no longer answers

    (tmp_path / demo.RUNNING_FILE).write_text("{not json")
    assert demo.running_sandbox(tmp_path) is None
    assert demo.running_sandbox(tmp_path / "never-ran") is None
