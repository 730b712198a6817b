"""Fixtures for the secure-parameter provider: the handler loaded from its asset folder, moto in-process."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from types import ModuleType, SimpleNamespace

import boto3
import botocore.loaders
import botocore.session
import pytest
from moto import mock_aws

HANDLER_PATH = Path(__file__).resolve().parents[2] / "lambda" / "secure_parameter" / "handler.py"
REGION = "eu-west-1"
ACCOUNT = "123456789012"
# Parsing the SSM, KMS and STS models again for every test's fresh session was most of its time.
_SERVICE_MODELS = botocore.loaders.create_loader()


@pytest.fixture
def handler() -> ModuleType:
    # "lambda" is a keyword, so the asset folder is not an importable package: load the file itself.
    spec = importlib.util.spec_from_file_location("secure_parameter_handler", HANDLER_PATH)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch):
    for var in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        # moto clears boto3's default session; the new one reuses the parsed service models.
        botocore_session = botocore.session.Session()
        botocore_session.register_component("data_loader", _SERVICE_MODELS)
        boto3.setup_default_session(botocore_session=botocore_session)
        yield SimpleNamespace(
            ssm=boto3.client("ssm", region_name=REGION),
            kms=boto3.client("kms", region_name=REGION),
        )


@pytest.fixture
def context() -> SimpleNamespace:
    return SimpleNamespace(invoked_function_arn=f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:secure-param")


@pytest.fixture
def all_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Every record at every level, so a value logged at DEBUG anywhere would be caught."""
    caplog.set_level(logging.DEBUG)
    return caplog
