"""The connectivity check's CloudWatch metrics: the Lambda emits one per run, the stack's alarms
watch them, so both import the names from here."""

from __future__ import annotations

NAMESPACE = "SnowSage"
CHECK_OK = "CheckOk"
CHECK_FAILED = "CheckFailed"
CHECK_NOT_CONFIGURED = "CheckNotConfigured"
METRIC_BY_STATUS = {"ok": CHECK_OK, "failed": CHECK_FAILED, "not_configured": CHECK_NOT_CONFIGURED}

# Powertools puts the service name (POWERTOOLS_SERVICE_NAME, set by the stack) on every metric as
# this dimension; the alarms select the check's metrics by it.
SERVICE_DIMENSION = "service"


def check_service(env_name: str) -> str:
    return f"snowsage-{env_name}-check"
