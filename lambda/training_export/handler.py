"""Training export Lambda (a SageMaker pipeline Lambda step): arguments in, step outputs out.

The event is the step's ``Arguments`` (``run_id``/``execution_id`` from
``Execution.PipelineExecutionId``, ``bucket``, ``run_prefix``, ``min_train_files``, or any other
``snowsage.training.ExportSpec`` field) over the static export config in SNOWSAGE_TRAINING_EXPORT
(``snowsage.training.spec.export_config``: source, label, id, features, ...); ``bucket`` defaults
to the settings' results bucket. It connects with the same settings and credentials path as the
connectivity check (SNOWSAGE_SETTINGS, SSM through Powertools), with STATEMENT_TIMEOUT_IN_SECONDS
set from the time the function has left, and returns ``ExportResult.to_dict()``: flat strings and ints the pipeline reads as
``Steps.<export>.OutputParameters['train_prefix']`` and so on. Any failure raises, so the step and
the pipeline fail with the export's own message (no manifest is left behind). Nothing secret is
logged, returned or raised.
"""

from __future__ import annotations

import json
import os
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities import parameters

from snowsage import credentials
from snowsage.aws import quiet_sdk_loggers
from snowsage.lambda_parameters import fetch_parameters
from snowsage.settings import SETTINGS_ENV_VAR, RuntimeSettings, SettingsError
from snowsage.training import ExportError, ExportSpec, TimeBudget, export
from snowsage.training.spec import EXPORT_CONFIG_ENV_VAR

logger = Logger()

# GetParameters WithDecryption returns the secrets in clear: keep the SDK quiet at any level.
quiet_sdk_loggers()


def _export_config() -> dict[str, Any]:
    raw = os.environ.get(EXPORT_CONFIG_ENV_VAR, "").strip()
    if not raw:
        return {}
    try:
        doc = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ExportError(
            f"{EXPORT_CONFIG_ENV_VAR} is not valid JSON ({exc.msg}); redeploy the stacks"
        ) from None
    if not isinstance(doc, dict):
        raise ExportError(f"{EXPORT_CONFIG_ENV_VAR} is not a JSON object; redeploy the stacks")
    return doc


@logger.inject_lambda_context(log_event=False)
def handler(event: dict[str, Any] | None, context: Any) -> dict[str, Any]:
    try:
        settings = RuntimeSettings.from_json(os.environ.get(SETTINGS_ENV_VAR, ""), source=SETTINGS_ENV_VAR)
    except SettingsError as exc:
        raise ExportError(
            f"the export function's settings are unusable ({exc}); redeploy the stacks"
        ) from None
    spec = ExportSpec.from_event(event or {}, defaults=_export_config(), default_bucket=settings.bucket)
    budget = TimeBudget.from_lambda_context(context)
    logger.append_keys(env=settings.env_name, execution_id=spec.execution_id, exporter=spec.exporter)
    try:
        connection = credentials.connect(
            settings, fetch_parameters, session_parameters=budget.session_parameters()
        )
    except credentials.CredentialsError as exc:
        parameters.clear_caches()  # the fix (`snowsage credentials set`) is seen by the next run
        raise ExportError(f"the export cannot connect to Snowflake: {exc}") from None
    try:
        result = export(
            spec, connection=connection, s3=boto3.client("s3", region_name=settings.region), budget=budget
        )
    finally:
        connection.close()
    output = result.to_dict()
    logger.info("training export done", extra=output)
    return output
