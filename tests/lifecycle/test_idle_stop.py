"""idle_stop.py against a fake Jupyter API: busy is never idle, idle past the limit stops once."""

from __future__ import annotations

import json
import subprocess
from datetime import datetime, timedelta, timezone

from .conftest import LIFECYCLE, NOTEBOOK, al2023_python


def ago(minutes: float) -> str:
    return (datetime.now(timezone.utc) - timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def tick(sandbox, jupyter, started_minutes_ago: float = 120, limit: int = 60) -> subprocess.CompletedProcess:
    state = sandbox.root / "idle-state.json"
    if not state.exists():
        state.write_text(json.dumps({"started_at": ago(started_minutes_ago)}))
    return subprocess.run(
        [
            al2023_python(),
            str(LIFECYCLE / "idle_stop.py"),
            "--idle-minutes",
            str(limit),
            "--state-file",
            str(state),
            "--jupyter-url",
            jupyter.url,
            "--metadata",
            sandbox.env["RESOURCE_METADATA"],
        ],
        env=sandbox.env,
        capture_output=True,
        text=True,
        timeout=30,
    )


def stops(sandbox) -> list[str]:
    return sandbox.stop_calls.read_text().splitlines() if sandbox.stop_calls.exists() else []


def test_a_busy_kernel_is_never_idle(sandbox, jupyter):
    jupyter.kernels[:] = [{"id": "k1", "execution_state": "busy", "last_activity": ago(600)}]
    result = tick(sandbox, jupyter)
    assert result.returncode == 0, result.stderr
    assert stops(sandbox) == []
    assert "busy" in result.stdout


def test_a_busy_kernel_seen_through_a_session_is_never_idle(sandbox, jupyter):
    jupyter.sessions[:] = [
        {"id": "s1", "kernel": {"id": "k9", "execution_state": "busy", "last_activity": ago(600)}}
    ]
    assert tick(sandbox, jupyter).returncode == 0
    assert stops(sandbox) == []


def test_idle_past_the_limit_stops_exactly_once(sandbox, jupyter):
    jupyter.kernels[:] = [{"id": "k1", "execution_state": "idle", "last_activity": ago(90)}]
    jupyter.sessions[:] = [
        {"id": "s1", "kernel": {"id": "k1", "execution_state": "idle", "last_activity": ago(90)}}
    ]
    first = tick(sandbox, jupyter)
    second = tick(sandbox, jupyter)

    assert first.returncode == 0 and second.returncode == 0, first.stdout + first.stderr
    assert stops(sandbox) == [f"sagemaker stop-notebook-instance --notebook-instance-name {NOTEBOOK}"]
    assert "already requested" in second.stdout


def test_recent_activity_anywhere_keeps_it_running(sandbox, jupyter):
    jupyter.kernels[:] = [{"id": "k1", "execution_state": "idle", "last_activity": ago(90)}]
    jupyter.terminals[:] = [{"name": "1", "last_activity": ago(5)}]
    result = tick(sandbox, jupyter)
    assert stops(sandbox) == []
    assert "idle for 5 of 60 minutes" in result.stdout


def test_no_kernels_counts_from_the_start_of_the_instance(sandbox, jupyter):
    assert tick(sandbox, jupyter, started_minutes_ago=30).returncode == 0
    assert stops(sandbox) == []
    (sandbox.root / "idle-state.json").unlink()
    assert tick(sandbox, jupyter, started_minutes_ago=61).returncode == 0
    assert len(stops(sandbox)) == 1


def test_an_unreachable_jupyter_never_stops_the_notebook(sandbox, jupyter):
    jupyter.url = "http://127.0.0.1:9"  # discard port: connection refused
    result = tick(sandbox, jupyter)
    assert result.returncode == 0
    assert stops(sandbox) == []
    assert "cannot read Jupyter" in result.stdout
