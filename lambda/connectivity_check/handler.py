"""Connectivity check Lambda: read SNOWSAGE_SETTINGS, run snowsage.diagnostics.run_check, return the report.

One EMF metric per run: CheckOk, CheckFailed or CheckNotConfigured (namespace from
POWERTOOLS_METRICS_NAMESPACE), so a fresh deployment whose credentials are not stored yet never
trips the CheckFailed alarm. A missing or malformed SNOWSAGE_SETTINGS is a deployment defect, not
"not configured": it reports status "failed" with the settings step failed, and counts as CheckFailed.

Parameters are read with ``snowsage.lambda_parameters.fetch_parameters`` (Powertools, decrypted,
cached for ``PARAMETER_MAX_AGE`` seconds); the cache is dropped after any run that was not ok, so a
fix (`snowsage credentials set`) is seen by the very next run. Nothing secret is logged or returned.
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities import parameters

from snowsage.aws import quiet_sdk_loggers
from snowsage.diagnostics import run_check, settings_error_report
from snowsage.lambda_parameters import fetch_parameters
from snowsage.metrics import METRIC_BY_STATUS
from snowsage.settings import SETTINGS_ENV_VAR, RuntimeSettings, SettingsError

logger = Logger()
metrics = Metrics()

# botocore logs response bodies at DEBUG, and GetParameters WithDecryption returns the secrets in
# clear: keep the SDK quiet whatever level the function runs at.
quiet_sdk_loggers()


@metrics.log_metrics
@logger.inject_lambda_context(log_event=False)
def handler(event: dict[str, Any] | None, context: Any) -> dict[str, Any]:
    try:
        settings = RuntimeSettings.from_json(os.environ.get(SETTINGS_ENV_VAR, ""), source=SETTINGS_ENV_VAR)
    except SettingsError as exc:
        report = settings_error_report(str(exc))
    else:
        logger.append_keys(env=settings.env_name, auth=settings.auth)
        report = run_check(settings, fetch_parameters)

    if not report.ok:
        parameters.clear_caches()
    metrics.add_metric(name=METRIC_BY_STATUS[report.status], unit=MetricUnit.Count, value=1)
    log = logger.info if report.ok else logger.warning
    log(
        "connectivity check %s",
        report.status,
        extra={
            "status": report.status,
            "failed_step": report.failed_step,
            "diagnosis": report.diagnosis,
            "warnings": list(report.warnings),
            "steps": {s.name: {"ok": s.ok, "ms": s.ms} for s in report.steps},
            "snowflake_version": report.snowflake.version,
            "duration_ms": report.ms,
        },
    )
    return report.to_dict()
