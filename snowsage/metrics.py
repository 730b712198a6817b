"""The connectivity check's CloudWatch metrics: the Lambda emits one per run, the stack's alarms
watch them, so both import the names from here."""

from __future__ import annotations

NAMESPACE = "SnowSage"
CHECK_OK = "CheckOk"
CHECK_FAILED = "CheckFailed"
CHECK_NOT_CONFIGURED = "CheckNotConfigured"
METRIC_BY_STATUS = {"ok": CHECK_OK, "failed": CHECK_FAILED, "not_configured": CHECK_NOT_CONFIGURED}
