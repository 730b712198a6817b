"""The Lambda handler module itself: reports, one EMF metric per run, and no secret in any output.

The module is loaded from lambda/connectivity_check/handler.py once, with stdout redirected, and
every case runs inside that capture plus a root logging handler at DEBUG, so Powertools' JSON logs,
the EMF blobs, the connector's own debug logs and the returned reports are all searched.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import logging
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from snowsage.settings import SETTINGS_ENV_VAR
from tests.conftest import make_settings, put_parameters, sandbox_values
from tests.runtime.conftest import PASSPHRASE, PASSWORD

HANDLER_PATH = Path(__file__).resolve().parents[2] / "lambda" / "connectivity_check" / "handler.py"
NAMESPACE = "SnowSageTest"
CONTEXT = SimpleNamespace(
    function_name="snowsage-check",
    memory_limit_in_mb=512,
    invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:snowsage-check",
    aws_request_id="req-1",
)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.name} {record.getMessage()} {record.__dict__}")


@pytest.fixture(scope="module")
def runs(ssm_client, kms_key_id, fakesnow_server, test_key, closed_port_module) -> dict[str, Any]:
    """Run every case through the handler once; returns {case: (report, output)} plus all output."""
    env = {"POWERTOOLS_SERVICE_NAME": "snowsage-test-check", "POWERTOOLS_METRICS_NAMESPACE": NAMESPACE}
    saved = {k: os.environ.get(k) for k in (*env, SETTINGS_ENV_VAR)}
    os.environ.update(env)

    def deployed(name: str, auth: str, **values: str | None):
        settings = make_settings(f"h-{name}", auth)
        put_parameters(ssm_client, settings, sandbox_values(fakesnow_server, **values), kms_key_id=kms_key_id)
        return settings.to_json()

    cases = {
        "keypair_ok": deployed(
            "kp", "keypair", user="SVC", private_key=test_key.encrypted_pem, private_key_passphrase=PASSPHRASE
        ),
        "keypair_refused": deployed(
            "kpr",
            "keypair",
            user="SVC",
            private_key=test_key.encrypted_pem,
            private_key_passphrase=PASSPHRASE,
            port=str(closed_port_module),
        ),
        "password_ok": deployed("pw", "password", user="SVC", password=PASSWORD),
        "not_configured": deployed("nc", "keypair"),
        "broken_settings": '{"env_name": "dev"',
    }

    records = _Records()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(records)
    root.setLevel(logging.DEBUG)
    out = io.StringIO()
    results: dict[str, Any] = {}
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            spec = importlib.util.spec_from_file_location("connectivity_check_handler", HANDLER_PATH)
            assert spec and spec.loader
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            for case, settings_json in cases.items():
                os.environ[SETTINGS_ENV_VAR] = settings_json
                start = out.tell()
                report = module.handler({}, CONTEXT)
                results[case] = (report, out.getvalue()[start:])
            # Credentials stored after a not-configured run are seen at once: the cache was dropped.
            # (The test's own PutParameter request is not the handler's output: don't record it.)
            root.removeHandler(records)
            put_parameters(
                ssm_client,
                make_settings("h-nc", "keypair"),
                {"user": "SVC", "private_key": test_key.pem},
                kms_key_id=kms_key_id,
            )
            root.addHandler(records)
            os.environ[SETTINGS_ENV_VAR] = cases["not_configured"]
            start = out.tell()
            results["fixed_after_not_configured"] = (module.handler({}, CONTEXT), out.getvalue()[start:])
    finally:
        root.removeHandler(records)
        root.setLevel(old_level)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return {"results": results, "stdout": out.getvalue(), "logs": "\n".join(records.lines)}


@pytest.fixture(scope="module")
def closed_port_module() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _emf(output: str) -> list[dict]:
    blobs = []
    for line in output.splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            doc = json.loads(line)
            if isinstance(doc, dict) and "_aws" in doc:
                blobs.append(doc)
    return blobs


@pytest.mark.parametrize(
    ("case", "status", "metric"),
    [
        ("keypair_ok", "ok", "CheckOk"),
        ("password_ok", "ok", "CheckOk"),
        ("keypair_refused", "failed", "CheckFailed"),
        ("not_configured", "not_configured", "CheckNotConfigured"),
        ("broken_settings", "failed", "CheckFailed"),
        ("fixed_after_not_configured", "ok", "CheckOk"),
    ],
)
def test_each_run_reports_and_publishes_one_metric(runs, case, status, metric):
    report, output = runs["results"][case]

    assert report["status"] == status, report["diagnosis"]
    json.dumps(report)  # the Lambda response must be JSON
    blobs = _emf(output)
    assert len(blobs) == 1
    metrics = blobs[0]["_aws"]["CloudWatchMetrics"]
    assert metrics[0]["Namespace"] == NAMESPACE
    assert [m["Name"] for m in metrics[0]["Metrics"]] == [metric]
    assert blobs[0][metric] == [1.0] or blobs[0][metric] == 1.0
    assert blobs[0]["service"] == "snowsage-test-check"


def test_failing_runs_log_the_failed_step_and_diagnosis(runs):
    report, output = runs["results"]["keypair_refused"]
    log_lines = [
        json.loads(line) for line in output.splitlines() if line.startswith("{") and '"level"' in line
    ]
    entry = next(line for line in log_lines if line.get("status") == "failed")
    assert entry["failed_step"] == "tcp"
    assert entry["diagnosis"] == report["diagnosis"]
    assert entry["level"] == "WARNING"


def test_broken_settings_are_a_failed_settings_step(runs):
    report, _ = runs["results"]["broken_settings"]
    assert report["steps"][0]["name"] == "settings" and report["steps"][0]["ok"] is False
    assert SETTINGS_ENV_VAR in report["diagnosis"]


def test_no_secret_appears_in_logs_metrics_or_responses(runs, test_key):
    everything = "\n".join(
        [runs["stdout"], runs["logs"], *(json.dumps(report) for report, _ in runs["results"].values())]
    )
    assert "connectivity check" in everything  # the capture did see the handler's own logs

    leaks = [f for f in test_key.secret_fragments() if f in everything]
    assert not leaks
    assert PASSPHRASE not in everything
    assert PASSWORD not in everything
