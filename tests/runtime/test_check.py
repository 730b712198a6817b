"""run_check end to end: parameters in moto (SecureStrings under KMS), the real connector, fakesnow."""

from __future__ import annotations

import json
import time

import pytest

from snowsage import diagnostics
from snowsage.credentials import load_connection
from snowsage.diagnostics import STEPS, run_check
from snowsage.reports import CheckReport, Step
from tests.runtime.conftest import FAST, PASSPHRASE, PASSWORD


def steps(report: CheckReport) -> dict[str, Step]:
    return {s.name: s for s in report.steps}


def assert_failed_at(report: CheckReport, step: str) -> None:
    assert report.ok is False
    assert report.status == "failed"
    by_name = steps(report)
    assert by_name[step].ok is False, by_name[step]
    failed = [s.name for s in report.steps if s.ok is False and s.name != "ocsp"]
    assert failed == [step]
    later = STEPS[STEPS.index(step) + 1 :]
    assert all(by_name[name].skipped and by_name[name].ok is None for name in later)
    assert report.diagnosis and report.diagnosis.endswith(".")


def assert_ok(report: CheckReport) -> None:
    assert report.ok is True, report.diagnosis
    assert report.status == "ok"
    assert report.diagnosis is None
    assert [s.name for s in report.steps] == list(STEPS)
    assert all(isinstance(s.ms, int) for s in report.steps)
    by_name = steps(report)
    for name in ("settings", "dns", "tcp", "login", "query", "warehouse"):
        assert by_name[name].ok is True, by_name[name]
    # the sandbox speaks http: no TLS, no OCSP
    assert by_name["tls"].skipped and by_name["ocsp"].skipped
    assert report.snowflake.version == "10.0.0"
    assert report.snowflake.account == "SANDBOX"


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain-key", "encrypted-key"])
def test_keypair_check_passes(deploy, fetch, test_key, encrypted):
    if encrypted:
        settings = deploy(user="SVC", private_key=test_key.encrypted_pem, private_key_passphrase=PASSPHRASE)
    else:
        settings = deploy(user="SVC", private_key=test_key.pem)  # passphrase stays the placeholder

    report = run_check(settings, fetch, timeouts=FAST)

    assert_ok(report)
    assert report.warnings == ()
    assert "auth=keypair" in steps(report)["settings"].detail


def test_password_check_passes_with_legacy_warning(deploy, fetch):
    settings = deploy("password", user="SVC", password=PASSWORD)

    report = run_check(settings, fetch, timeouts=FAST)

    assert_ok(report)
    assert any("TYPE=SERVICE" in w for w in report.warnings)


def test_placeholder_credentials_report_not_configured_after_checking_the_network(deploy, fetch):
    settings = deploy()  # the stack's placeholders only

    report = run_check(settings, fetch, timeouts=FAST)

    assert report.status == "not_configured"
    assert report.ok is False
    by_name = steps(report)
    assert by_name["dns"].ok is True and by_name["tcp"].ok is True
    assert by_name["login"].skipped and "credentials are not set" in by_name["login"].detail
    assert "snowsage keypair generate" in report.diagnosis
    assert settings.parameters["private_key"] in report.diagnosis
    assert settings.parameters["user"] in report.diagnosis


def test_missing_parameter_is_named_with_redeploy_fix(deploy, fetch, test_key):
    settings = deploy(user="SVC", private_key=test_key.pem, warehouse=None)

    report = run_check(settings, fetch, timeouts=FAST)

    assert_failed_at(report, "settings")
    assert settings.parameters["warehouse"] in report.diagnosis
    assert "redeploy" in report.diagnosis


def test_malformed_key_fails_settings_with_keypair_fix(deploy, fetch):
    label = "PRIVATE " + "KEY"  # split: no key-like text in the repo for secret scanners
    garbage = f"-----BEGIN {label}-----\nbm90IGEga2V5\n-----END {label}-----\n"
    settings = deploy(user="SVC", private_key=garbage)

    report = run_check(settings, fetch, timeouts=FAST)

    assert_failed_at(report, "settings")
    assert "could not be parsed" in report.diagnosis
    assert "snowsage keypair generate" in report.diagnosis
    assert settings.parameters["private_key"] in report.diagnosis


def test_wrong_passphrase_fails_settings(deploy, fetch, test_key):
    settings = deploy(user="SVC", private_key=test_key.encrypted_pem, private_key_passphrase="not it")

    report = run_check(settings, fetch, timeouts=FAST)

    assert_failed_at(report, "settings")
    assert "passphrase does not open the private key" in report.diagnosis
    assert "not it" not in json.dumps(report.to_dict())


def test_unresolvable_host_fails_dns(deploy, fetch, test_key):
    settings = deploy(
        user="SVC", private_key=test_key.pem, host="snowsage-check.invalid", port="443", protocol="https"
    )

    report = run_check(settings, fetch, timeouts=FAST)

    assert_failed_at(report, "dns")
    assert "snowsage-check.invalid does not resolve" in report.diagnosis


def test_refused_port_fails_tcp(deploy, fetch, test_key, closed_port):
    settings = deploy(user="SVC", private_key=test_key.pem, port=str(closed_port))

    report = run_check(settings, fetch, timeouts=FAST)

    assert_failed_at(report, "tcp")
    assert f"127.0.0.1:{closed_port}" in report.diagnosis
    assert "refused" in report.diagnosis.lower()


def test_silent_listener_over_http_fails_login_within_its_timeout(deploy, fetch, test_key, silent_listener):
    settings = deploy(user="SVC", private_key=test_key.pem, port=str(silent_listener))

    started = time.monotonic()
    report = run_check(settings, fetch, timeouts=FAST)
    elapsed = time.monotonic() - started

    assert_failed_at(report, "login")
    assert "no answer" in report.diagnosis
    # bounded by the login timeout (3 s) plus the guard's grace, far inside a 60 s Lambda timeout
    assert elapsed < FAST.login + 4, elapsed


def test_silent_listener_over_https_fails_tls_within_its_timeout(deploy, fetch, test_key, silent_listener):
    settings = deploy(user="SVC", private_key=test_key.pem, port=str(silent_listener), protocol="https")

    started = time.monotonic()
    report = run_check(settings, fetch, timeouts=FAST)

    assert_failed_at(report, "tls")
    assert "never completes a TLS handshake" in report.diagnosis
    assert time.monotonic() - started < FAST.tls + 3


def test_query_error_fails_the_warehouse_step(deploy, fetch, test_key, monkeypatch):
    # fakesnow accepts any warehouse, so make the warehouse step hit an error it does raise.
    monkeypatch.setattr(diagnostics, "WAREHOUSE_QUERY", "select count(*) from snowsage_missing_table")
    settings = deploy(user="SVC", private_key=test_key.pem)

    report = run_check(settings, fetch, timeouts=FAST)

    assert_failed_at(report, "warehouse")
    assert steps(report)["query"].ok is True
    assert report.snowflake.version == "10.0.0"
    assert "SNOWSAGE_MISSING_TABLE" in report.diagnosis
    assert "SANDBOX_ROLE" in report.diagnosis


def test_wif_builds_workload_identity_kwargs_without_reading_a_secret(deploy, fetch):
    settings = deploy("wif", wif_user="SVC_WIF")
    asked: list[str] = []

    def spy(names):
        asked.extend(names)
        return fetch(names)

    kwargs = load_connection(settings, spy).connect_kwargs()

    assert kwargs["authenticator"] == "WORKLOAD_IDENTITY"
    assert kwargs["workload_identity_provider"] == "AWS"
    assert kwargs["user"] == "SVC_WIF"
    assert "password" not in kwargs and "private_key" not in kwargs
    assert asked and not any(name.rsplit("/", 1)[-1] in ("user", "private_key", "password") for name in asked)
    assert (kwargs["host"], kwargs["protocol"]) == ("127.0.0.1", "http")


def test_ssm_throttling_is_not_blamed_on_permissions(deploy, test_key):
    from botocore.exceptions import ClientError

    settings = deploy(user="SVC", private_key=test_key.pem)

    def throttled(names):
        raise ClientError(
            {"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "GetParameters"
        )

    report = run_check(settings, throttled, timeouts=FAST)

    assert_failed_at(report, "settings")
    assert "ThrottlingException" in report.diagnosis and "run the check again in a minute" in report.diagnosis
    assert "redeploy" not in report.diagnosis and "grant" not in report.diagnosis
