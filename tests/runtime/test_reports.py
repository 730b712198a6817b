"""The report and status documents: JSON shape both sides read, and clear errors for a bad one."""

from __future__ import annotations

import json
import re

import pytest

from snowsage.reports import STEPS, CheckReport, InstallStatus, ReportError, SnowflakeInfo, Step

FAILED_AT_TCP = {
    "ok": False,
    "status": "failed",
    "env": "dev",
    "auth": "keypair",
    "host": "acme-prod.snowflakecomputing.com",
    "ms": 3012,
    "steps": [
        {"name": "settings", "ok": True, "ms": 41, "detail": "auth=keypair", "skipped": False},
        {"name": "dns", "ok": True, "ms": 2, "detail": "resolved", "skipped": False},
        {"name": "tcp", "ok": False, "ms": 3000, "detail": "no answer", "skipped": False},
        *(
            {"name": n, "ok": None, "ms": 0, "detail": "not run: the tcp step failed", "skipped": True}
            for n in STEPS[3:]
        ),
    ],
    "snowflake": {"version": None, "account": None, "region": None, "role": None, "date": None},
    "diagnosis": "No TCP answer from acme-prod.snowflakecomputing.com:443: add a NAT route.",
    "warnings": ["the OCSP host is not reachable"],
}


def test_check_report_round_trips_the_json_the_cli_reads():
    report = CheckReport.from_dict(json.loads(json.dumps(FAILED_AT_TCP)))

    assert report.to_dict() == FAILED_AT_TCP
    assert list(report.to_dict()) == list(FAILED_AT_TCP)  # key order of `snowsage check --json`
    assert report.failed_step == "tcp"
    assert not report.ok


def test_a_failed_ocsp_step_only_warns():
    report = CheckReport(
        status="ok",
        steps=(Step("tcp", True, 3, "connected"), Step("ocsp", False, 2, "unreachable")),
        snowflake=SnowflakeInfo(version="10.0.0"),
    )
    assert report.ok and report.failed_step is None
    assert report.to_dict()["ok"] is True


def test_check_report_tolerates_unknown_keys_from_a_newer_function():
    doc = {**FAILED_AT_TCP, "trace_id": "abc", "steps": [{**FAILED_AT_TCP["steps"][0], "extra": 1}]}
    assert CheckReport.from_dict(doc).steps[0].name == "settings"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"steps": "settings"}, "check report: 'steps' must be a list, got str"),
        ({"ok": "yes"}, "check report: 'ok' must be true or false"),
        ({"status": "maybe"}, "'status' must be one of ok, failed, not_configured, got 'maybe'"),
        ({"ok": True}, "'ok' is true but 'status' is 'failed'"),
        ({"steps": [{"ok": True}]}, "check report step 1: 'name' is missing"),
        ({"steps": [{"name": "dns", "ms": True}]}, "step 1: 'ms' must be a number or null, got bool"),
        ({"warnings": [1]}, "'warnings' must be a list of strings"),
        ({"snowflake": {"version": 10}}, "check report 'snowflake': 'version' must be a string or null"),
    ],
)
def test_malformed_check_report_names_the_field(change, message):
    with pytest.raises(ReportError, match=re.escape(message)):
        CheckReport.from_dict({**FAILED_AT_TCP, **change})


@pytest.mark.parametrize("doc", [None, [], "ok", 3])
def test_a_check_report_must_be_an_object(doc):
    with pytest.raises(ReportError, match="check report must be a JSON object"):
        CheckReport.from_dict(doc)


def test_missing_ok_is_rejected():
    doc = {k: v for k, v in FAILED_AT_TCP.items() if k != "ok"}
    with pytest.raises(ReportError, match="'ok' is missing"):
        CheckReport.from_dict(doc)


LIFECYCLE_STATUS = {
    "state": "ok",
    "detail": "installed snowsage 0.1.0 with uv",
    "started_at": "2026-01-01T10:00:00Z",
    "updated_at": "2026-01-01T10:02:00Z",
    "wheelhouse": "s3://bucket/wheelhouse.zip",
    "wheelhouse_sha256": "ab" * 32,
    "network_mode": "nat",
    "source": "wheelhouse",
    "python": "3.11.9",
    "versions": {"snowflake-connector-python": "4.8.0"},
}


def test_install_status_round_trips_what_the_lifecycle_writes():
    status = InstallStatus.from_dict(LIFECYCLE_STATUS)
    assert status.to_dict() == LIFECYCLE_STATUS
    assert not status.running and not status.failed


def test_install_status_tolerates_new_keys_and_missing_details():
    status = InstallStatus.from_dict({"state": "running", "kernel": "conda_python3"})
    assert status.running and status.detail == "" and status.versions == {}


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([], "install status must be a JSON object, got list"),
        ({"detail": "x"}, "install status: 'state' is missing"),
        ({"state": ""}, "install status: 'state' must not be empty"),
        ({"state": 1}, "install status: 'state' must be a string, got int"),
        ({"state": "ok", "detail": None}, "install status: 'detail' must be a string, got NoneType"),
        ({"state": "ok", "versions": {"pip": 24}}, "'versions' must map package names to version strings"),
    ],
)
def test_malformed_install_status_names_the_field(doc, message):
    with pytest.raises(ReportError, match=re.escape(message)):
        InstallStatus.from_dict(doc)
