"""The export Lambda's handler, loaded from lambda/training_export as the bundle runs it: the
pipeline's arguments in, flat step outputs out, credentials from SSM, no secret anywhere."""

from __future__ import annotations

import base64
import contextlib
import importlib.util
import io
import json
import logging
import os
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from snowsage import keys
from snowsage.settings import SETTINGS_ENV_VAR
from snowsage.training import ExportError, ExportInputError
from snowsage.training.spec import EXPORT_CONFIG_ENV_VAR, export_config
from tests.conftest import make_settings, put_parameters, sandbox_values
from tests.training.conftest import FakeContext, keys_under

HANDLER_PATH = Path(__file__).resolve().parents[2] / "lambda" / "training_export" / "handler.py"


def context(remaining_ms: int = 600_000) -> Any:
    ctx = FakeContext(remaining_ms)
    return SimpleNamespace(
        function_name="snowsage-test-export",
        memory_limit_in_mb=1024,
        invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:snowsage-test-export",
        aws_request_id="req-1",
        get_remaining_time_in_millis=ctx.get_remaining_time_in_millis,
    )


@pytest.fixture(scope="module")
def handler_module() -> Any:
    spec = importlib.util.spec_from_file_location("training_export_handler", HANDLER_PATH)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def private_key_pem() -> str:
    return keys.private_key_to_pem(keys.generate_private_key())


@pytest.fixture
def deployed(ssm_client, kms_key_id, fakesnow_server, housing, bucket, private_key_pem, monkeypatch):
    """The function's environment: settings naming moto parameters that point at fakesnow."""
    settings = make_settings(f"tx{uuid.uuid4().hex[:8]}", "keypair")
    values = sandbox_values(fakesnow_server, user="SVC", private_key=private_key_pem)
    put_parameters(ssm_client, settings, values, kms_key_id=kms_key_id)
    settings = type(settings)(**{**settings.__dict__, "bucket": bucket})
    monkeypatch.setenv(SETTINGS_ENV_VAR, settings.to_json())
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "snowsage-test-export")
    monkeypatch.setenv(
        EXPORT_CONFIG_ENV_VAR,
        export_config(table=housing.table, label="PRICE", id_column="HOUSE_ID", validation_percent=20),
    )
    return settings


def run(module: Any, event: dict[str, Any], ctx: Any = None) -> tuple[Any, str]:
    out = io.StringIO()
    records: list[str] = []

    class Grab(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(f"{record.getMessage()} {record.__dict__}")

    grab = Grab(level=logging.DEBUG)
    root = logging.getLogger()
    root.addHandler(grab)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            try:
                result: Any = module.handler(event, ctx or context())
            except Exception as exc:  # noqa: BLE001 - the step fails with this message
                result = exc
    finally:
        root.removeHandler(grab)
    return result, out.getvalue() + "\n".join(records)


def test_the_pipeline_arguments_give_the_step_outputs(
    handler_module, deployed, s3, bucket, housing, private_key_pem
):
    run_id = uuid.uuid4().hex[:12]
    event = {
        "run_id": run_id,
        "bucket": bucket,
        "run_prefix": f"training/runs/{run_id}/",
        "min_train_files": 2,
    }
    result, output = run(handler_module, event)
    assert isinstance(result, dict), result
    for name, kind in {
        "train_prefix": str,
        "validation_prefix": str,
        "train_rows": int,
        "validation_rows": int,
        "train_files": int,
        "validation_files": int,
    }.items():
        assert isinstance(result[name], kind), name
    assert result["train_prefix"] == f"training/runs/{run_id}/train/"
    assert result["train_rows"] + result["validation_rows"] == housing.rows
    assert result["train_files"] == 2
    assert f"training/runs/{run_id}/manifest.json" in keys_under(s3, bucket, f"training/runs/{run_id}/")
    key = keys.load_private_key(private_key_pem)
    der = base64.b64encode(keys.private_key_der(key)).decode()
    body = "".join(line for line in private_key_pem.splitlines() if not line.startswith("-----"))
    for text in (json.dumps(result), output):
        assert body[40:80] not in text and der[40:80] not in text


def test_credentials_not_set_fail_the_step_with_the_fix(handler_module, deployed, ssm_client, kms_key_id):
    put_parameters(ssm_client, deployed, {"private_key": "snowsage:not-set"}, kms_key_id=kms_key_id)
    result, _ = run(handler_module, {"run_id": "r1"})
    assert isinstance(result, ExportError)
    assert "cannot connect to Snowflake" in str(result) and "snowsage keypair generate" in str(result)


def test_bad_arguments_fail_the_step_naming_them(handler_module, deployed):
    result, _ = run(handler_module, {"run_id": "r1", "label": "PRICE; drop"})
    assert isinstance(result, ExportInputError) and "label column is 'PRICE; drop'" in str(result)
    os.environ[EXPORT_CONFIG_ENV_VAR] = "{not json"
    result, _ = run(handler_module, {"run_id": "r1"})
    assert isinstance(result, ExportError) and f"{EXPORT_CONFIG_ENV_VAR} is not valid JSON" in str(result)
