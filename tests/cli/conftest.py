"""CLI test fixtures: the session's moto server (tests/conftest.py), a deployment built the way the
stacks build it (CloudFormation outputs, KMS key, SSM parameters, notebook), and hooks for the two
calls moto cannot serve (Lambda Invoke without Docker, presigned notebook URLs)."""

from __future__ import annotations

import io
import itertools
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from botocore.response import StreamingBody
from click.testing import CliRunner, Result

from snowsage import cli as cli_module
from snowsage.ops import deployment as deployment_ops
from snowsage.settings import PLACEHOLDER, SECRET_KEYS_BY_AUTH, RuntimeSettings

REGION = "us-east-1"
ACCOUNT = "123456789012"
USER = "SNOWSAGE_SVC"
NAT_IPS = "203.0.113.10,198.51.100.7"
_env_counter = itertools.count()


@pytest.fixture
def aws_env(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> str:
    """Point boto3 (and so the CLI) at moto with fake credentials and no local AWS config."""
    for var in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION", "SNOWSAGE_ENV"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return moto_endpoint


def _template(outputs: dict[str, str]) -> str:
    return json.dumps(
        {
            "Resources": {"Placeholder": {"Type": "AWS::SQS::Queue"}},
            "Outputs": {k: {"Value": v} for k, v in outputs.items()},
        }
    )


@dataclass
class FakeDeployment:
    env: str
    auth: str
    key_arn: str
    parameters: dict[str, str]
    notebook: str
    check_function: str
    user: str = USER
    clients: dict[str, Any] = field(default_factory=dict)

    def client(self, service: str) -> Any:
        if service not in self.clients:
            self.clients[service] = boto3.client(service, region_name=REGION)
        return self.clients[service]

    def value(self, key: str) -> str:
        name = self.parameters[key]
        return self.client("ssm").get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]

    def put(self, key: str, value: str) -> None:
        self.client("ssm").put_parameter(
            Name=self.parameters[key], Value=value, Type="SecureString", KeyId=self.key_arn, Overwrite=True
        )

    def tags(self, key: str) -> dict[str, str]:
        resp = self.client("ssm").list_tags_for_resource(
            ResourceType="Parameter", ResourceId=self.parameters[key]
        )
        return {t["Key"]: t["Value"] for t in resp["TagList"]}

    def notebook_status(self) -> str:
        return self.client("sagemaker").describe_notebook_instance(NotebookInstanceName=self.notebook)[
            "NotebookInstanceStatus"
        ]


@pytest.fixture
def deploy(aws_env: str) -> Callable[..., FakeDeployment]:
    """Deploy the three stacks' outputs and the Data stack's parameters into moto, per test."""

    def _deploy(
        auth: str = "keypair",
        nat_ips: str | None = NAT_IPS,
        database: str = "ANALYTICS",
        settings_user: str = USER,
    ) -> FakeDeployment:
        env = f"t{next(_env_counter)}"
        prefix = f"/snowsage/{env}/snowflake/"
        cfn = boto3.client("cloudformation", region_name=REGION)
        ssm = boto3.client("ssm", region_name=REGION)
        key_arn = boto3.client("kms", region_name=REGION).create_key(Description=f"snowsage {env}")[
            "KeyMetadata"
        ]["Arn"]
        plain = {
            "account": "xy12345",
            "role": "SNOWSAGE_ROLE",
            "warehouse": "ANALYST_WH",
            "database": database,
            "schema": "PUBLIC",
        }
        parameters = {k: prefix + k for k in (*plain, *SECRET_KEYS_BY_AUTH[auth])}
        for k, v in plain.items():
            ssm.put_parameter(Name=parameters[k], Value=v, Type="String")
        for k in SECRET_KEYS_BY_AUTH[auth]:
            ssm.put_parameter(
                Name=parameters[k],
                Value=USER if k == "user" else PLACEHOLDER,
                Type="SecureString",
                KeyId=key_arn,
            )
        notebook = f"snowsage-{env}-notebook"
        function = f"snowsage-{env}-check"
        boto3.client("sagemaker", region_name=REGION).create_notebook_instance(
            NotebookInstanceName=notebook,
            InstanceType="ml.t3.medium",
            RoleArn=f"arn:aws:iam::{ACCOUNT}:role/snowsage-{env}-notebook",
        )
        settings = RuntimeSettings(
            env_name=env,
            region=REGION,
            auth=auth,
            parameters=parameters,
            user=settings_user,
            notebook_name=notebook,
            check_function=function,
        )
        outputs = {
            "Network": {"VpcId": "vpc-0abc1234", "NatElasticIps": nat_ips}
            if nat_ips is not None
            else {"VpcId": "vpc-0abc1234"},
            "Data": {
                "KeyArn": key_arn,
                "ResultsBucketName": f"snowsage-{env}-results",
                "ParameterPrefix": prefix,
            },
            "Notebook": {
                "RuntimeSettings": settings.to_json(),
                "NotebookName": notebook,
                "CheckFunctionName": function,
                "NotebookRoleArn": f"arn:aws:iam::{ACCOUNT}:role/snowsage-{env}-notebook",
                "CheckFunctionRoleArn": f"arn:aws:iam::{ACCOUNT}:role/snowsage-{env}-check",
            },
        }
        for kind, outs in outputs.items():
            # CloudFormation drops an output whose value is empty; PrivateLink mode looks the same.
            outs = {k: v for k, v in outs.items() if v}
            cfn.create_stack(StackName=f"SnowSage-{env}-{kind}", TemplateBody=_template(outs))
        return FakeDeployment(env, auth, key_arn, parameters, notebook, function)

    return _deploy


class _Http:
    def __init__(self, status_code: int) -> None:
        self.status_code = status_code
        self.headers: dict[str, str] = {}


@dataclass
class AwsHooks:
    """Answers chosen API calls in-process (botocore's before-call event) and records their requests."""

    handlers: dict[str, Callable[..., Any]] = field(default_factory=dict)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def respond(self, operation: str, parsed: dict[str, Any], status: int = 200) -> None:
        def handler(**kwargs: Any) -> tuple[_Http, dict[str, Any]]:
            self.calls.append((operation, kwargs["params"]))
            body = dict(parsed)
            if "Payload" in body:  # a fresh stream for every call
                data = body["Payload"]
                body["Payload"] = StreamingBody(io.BytesIO(data), len(data))
            return _Http(status), body

        self.handlers[f"before-call.{operation}"] = handler

    def deny(self, operation: str) -> None:
        self.respond(
            operation,
            {
                "Error": {
                    "Code": "AccessDeniedException",
                    "Message": "User: arn:aws:iam::123456789012:user/x is "
                    "not authorized to perform this action",
                }
            },
            status=400,
        )

    def fail_calls(
        self,
        operation: str,
        calls: set[int],
        code: str = "ThrottlingException",
        message: str = "Rate exceeded",
    ) -> None:
        """The listed calls (1 = the first) of ``operation`` get this AWS error; the others go through.

        The error arrives as after botocore's own retries, so a test sees the failure the user would.
        """
        seen = itertools.count(1)

        def handler(**kwargs: Any) -> tuple[_Http, dict[str, Any]] | None:
            self.calls.append((operation, kwargs["params"]))
            if next(seen) in calls:
                return _Http(400), {"Error": {"Code": code, "Message": message}}
            return None

        self.handlers[f"before-call.{operation}"] = handler

    def sent(self, operation: str) -> list[dict[str, Any]]:
        """The request bodies of ``operation`` seen so far (failed ones included)."""
        return [params["body"] for op, params in self.calls if op == operation]

    def invoke_returns(self, report: Any, function_error: str | None = None) -> None:
        parsed: dict[str, Any] = {"StatusCode": 200, "Payload": json.dumps(report).encode()}
        if function_error:
            parsed["FunctionError"] = function_error
        self.respond("lambda.Invoke", parsed)


@pytest.fixture
def aws_hooks(monkeypatch: pytest.MonkeyPatch) -> AwsHooks:
    hooks = AwsHooks()
    real = deployment_ops.make_session

    def make_session(profile: str | None, region: str | None) -> Any:
        session = real(profile, region)
        for event, handler in hooks.handlers.items():
            session.events.register(event, handler)
        return session

    monkeypatch.setattr(deployment_ops, "make_session", make_session)
    return hooks


@dataclass
class Run:
    result: Result
    logs: str

    @property
    def exit_code(self) -> int:
        return self.result.exit_code

    @property
    def stdout(self) -> str:
        return self.result.stdout

    @property
    def stderr(self) -> str:
        return self.result.stderr

    @property
    def everything(self) -> str:
        """All a user or a log collector could see."""
        return self.result.stdout + self.result.stderr + self.logs


@pytest.fixture
def run(caplog: pytest.LogCaptureFixture) -> Callable[..., Run]:
    """Invoke the CLI in-process; logs are captured at DEBUG so a leak through logging shows up."""
    caplog.set_level(logging.DEBUG)

    def _run(*args: str, input: str | None = None) -> Run:
        caplog.clear()
        result = CliRunner().invoke(cli_module.cli, list(args), input=input, prog_name="snowsage")
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        return Run(result, caplog.text)

    return _run
