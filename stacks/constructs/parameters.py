"""The Snowflake connection settings (String) and credentials (SecureString) in SSM Parameter Store.

CloudFormation cannot create SecureString parameters, so a small provider of our own creates each
one with a non-secret placeholder; the operator sets the real value with the snowsage CLI. No
secret ever passes through the template, a custom-resource property, an environment or a log.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_ssm as ssm
from aws_cdk import custom_resources as cr
from constructs import Construct

from snowsage.settings import PLACEHOLDER, SECRET_KEYS_BY_AUTH

from .lambda_defaults import LAMBDA_ARCH, LAMBDA_RUNTIME, log_group
from .nag import (
    PolicySink,
    acknowledge,
    checkov_skip,
    created_by_cdk,
    least_privilege_role,
    via_service,
    wildcard_finding,
)

PROVIDER_SOURCE = Path(__file__).resolve().parents[2] / "lambda" / "secure_parameter"
# The handler's KEY_ENV; its asset is not importable ("lambda" is a keyword), tests/infra pins the two.
PROVIDER_KEY_ENV = "CONFIGURED_KMS_KEY_ARN"
# The function cr.Provider puts in front of the handler; the Provider exposes only its ARN.
PROVIDER_FRAMEWORK_FUNCTION = ("framework-onEvent",)


class SnowflakeParameters(Construct):
    """Owns every parameter under ``/snowsage/<env>/snowflake/`` and the provider that makes secrets."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        prefix: str,
        auth: str,
        user: str,
        settings: Mapping[str, str],
        key: kms.IKey,
        removal_policy: str,
        log_retention: logs.RetentionDays,
    ) -> None:
        super().__init__(scope, id)
        self.prefix = prefix
        self.key = key
        self.settings: dict[str, ssm.StringParameter] = {}
        for name, value in settings.items():
            self.settings[name] = ssm.StringParameter(
                self,
                f"Setting-{name}",
                parameter_name=f"{prefix}{name}",
                string_value=value,
                description=f"Snowflake {name} for snowsage (non-secret; change it without a redeploy)",
                tier=ssm.ParameterTier.STANDARD,
            )
        self.secret_names: dict[str, str] = {}
        secret_keys = SECRET_KEYS_BY_AUTH[auth]
        if not secret_keys:
            self.provider = None
            return

        stack = cdk.Stack.of(self)
        arns = [
            stack.format_arn(service="ssm", resource="parameter", resource_name=f"{prefix}{k}".lstrip("/"))
            for k in secret_keys
        ]
        previous_keys = stack.format_arn(service="kms", resource="key", resource_name="*")
        handler_logs = log_group(self, "ProviderHandlerLogs", key=key, retention=log_retention)
        handler_role = least_privilege_role(
            self,
            "ProviderHandlerRole",
            service="lambda.amazonaws.com",
            description="snowsage secure-parameter provider: manages only the credential parameters",
            statements=[
                iam.PolicyStatement(
                    sid="ManageCredentialParameters",
                    actions=[
                        "ssm:PutParameter",
                        "ssm:GetParameter",
                        "ssm:DeleteParameter",
                    ],
                    resources=arns,
                ),
                iam.PolicyStatement(
                    sid="EncryptViaSsm",
                    actions=["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey"],
                    resources=[key.key_arn],
                    conditions={"StringEquals": {"kms:ViaService": via_service("ssm", self)}},
                ),
                iam.PolicyStatement(
                    # A key change keeps the values: the handler reads each one under the previous key
                    # before re-encrypting, when this policy already names only the new key. Naming the
                    # previous key would mean a prop nobody remembers to set; instead any key of this
                    # account, but only through SSM and only for these parameters (SSM sets the
                    # PARAMETER_ARN encryption context itself): it only lets the role read the values
                    # it already manages. Other keys fail with an error naming the fix.
                    sid="DecryptPreviousKeyViaSsm",
                    actions=["kms:Decrypt"],
                    resources=[previous_keys],
                    conditions={
                        "StringEquals": {
                            "kms:ViaService": via_service("ssm", self),
                            "kms:EncryptionContext:PARAMETER_ARN": arns,
                        }
                    },
                ),
                iam.PolicyStatement(
                    # Reads the key ID of an existing parameter (GetParameter does not return it)
                    # so a changed key re-encrypts instead of silently keeping the old one.
                    sid="ReadParameterMetadata",
                    actions=["ssm:DescribeParameters"],
                    resources=["*"],
                ),
                _write_logs(handler_logs),
            ],
        )
        acknowledge(
            self,
            wildcard_finding(previous_keys),
            "Decrypt of the previous key after a key change: through SSM only and only for the "
            "credential parameters (kms:ViaService and the PARAMETER_ARN encryption context).",
        )
        acknowledge(
            self,
            "AwsSolutions-IAM5[Resource::*]",
            "ssm:DescribeParameters does not support resource-level permissions; it returns metadata "
            "(name, type, key ID), never a value, and is the only unscoped action of the provider.",
        )
        handler = lambda_.Function(
            self,
            "ProviderHandler",
            runtime=LAMBDA_RUNTIME,
            architecture=LAMBDA_ARCH,
            handler="handler.on_event",
            code=lambda_.Code.from_asset(str(PROVIDER_SOURCE), exclude=["__pycache__", "*.pyc"]),
            role=handler_role.without_policy_updates(),
            # Not a secret: the handler refuses an event naming any other key (see its KEY_ENV).
            environment={PROVIDER_KEY_ENV: key.key_arn},
            environment_encryption=key,
            timeout=cdk.Duration.seconds(60),
            memory_size=256,
            log_group=handler_logs,
            description="Creates snowsage SecureString parameters with a placeholder; never sees a secret",
            reserved_concurrent_executions=2,
        )
        framework_logs = log_group(self, "ProviderFrameworkLogs", key=key, retention=log_retention)
        framework_role = least_privilege_role(
            self,
            "ProviderFrameworkRole",
            service="lambda.amazonaws.com",
            description="snowsage secure-parameter provider framework: invokes the handler",
            statements=[
                iam.PolicyStatement(
                    sid="InvokeHandler", actions=["lambda:InvokeFunction"], resources=[handler.function_arn]
                ),
                _write_logs(framework_logs),
            ],
        )
        self.provider = cr.Provider(
            self,
            "Provider",
            on_event_handler=handler,
            framework_on_event_role=framework_role.without_policy_updates(),
            log_group=framework_logs,
            provider_function_env_encryption=key,
        )
        framework = created_by_cdk(self.provider, *PROVIDER_FRAMEWORK_FUNCTION)
        cfn_framework = framework.node.default_child
        assert isinstance(cfn_framework, lambda_.CfnFunction)
        cfn_framework.reserved_concurrent_executions = 2
        for fn in (handler, framework):
            checkov_skip(
                fn,
                "CKV_AWS_116",
                "Invoked synchronously by CloudFormation; a DLQ would never receive anything.",
            )
            checkov_skip(
                fn, "CKV_AWS_117", "Deploy-time SSM-only function; the VPC stack depends on this stack's key."
            )
            for pack in ("NIST.800.53.R5", "HIPAA.Security"):
                acknowledge(
                    fn,
                    f"{pack}-LambdaDLQ",
                    "CloudFormation invokes this custom-resource function synchronously and reports "
                    "failures on the stack event itself; an asynchronous dead-letter queue would never receive anything.",
                )
                acknowledge(
                    fn,
                    f"{pack}-LambdaInsideVPC",
                    "Deploy-time custom-resource function that only calls SSM; the VPC lives in the "
                    "Network stack, which depends on this stack's KMS key, so placing it there would form a cycle.",
                )
        for k in secret_keys:
            name = f"{prefix}{k}"
            initial = user if k == "user" else PLACEHOLDER
            cdk.CustomResource(
                self,
                f"Secret-{k}",
                service_token=self.provider.service_token,
                resource_type="Custom::SnowsageSecureParameter",
                properties={
                    "ParameterName": name,
                    "KmsKeyId": key.key_arn,
                    "Description": f"Snowflake {k} for snowsage (SecureString; set with the snowsage CLI)",
                    "InitialValue": initial,
                    "RemovalPolicy": removal_policy,
                },
                removal_policy=cdk.RemovalPolicy.RETAIN
                if removal_policy == "retain"
                else cdk.RemovalPolicy.DESTROY,
            )
            self.secret_names[k] = name

    @property
    def parameter_names(self) -> dict[str, str]:
        # Plain strings, not tokens: consumers in other stacks get names, not cross-stack imports.
        return {**{k: f"{self.prefix}{k}" for k in self.settings}, **self.secret_names}

    def parameter_arns(self) -> list[str]:
        stack = cdk.Stack.of(self)
        return [
            stack.format_arn(service="ssm", resource="parameter", resource_name=n.lstrip("/"))
            for n in self.parameter_names.values()
        ]

    def grant_read(self, policy: PolicySink) -> None:
        """Read and decrypt exactly these parameters. Written out rather than CDK's
        ``StringParameter.grant_read``, which adds ssm:DescribeParameters on every parameter."""
        policy.add_statements(
            iam.PolicyStatement(
                sid="ReadSnowflakeParameters",
                actions=["ssm:GetParameter", "ssm:GetParameters"],
                resources=self.parameter_arns(),
            ),
            iam.PolicyStatement(
                sid="DecryptParametersViaSsm",
                actions=["kms:Decrypt"],
                resources=[self.key.key_arn],
                conditions={"StringEquals": {"kms:ViaService": via_service("ssm", self)}},
            ),
        )


def _write_logs(group: logs.ILogGroup) -> iam.PolicyStatement:
    return iam.PolicyStatement(
        sid="WriteOwnLogs",
        actions=["logs:CreateLogStream", "logs:PutLogEvents"],
        resources=[group.log_group_arn],
    )
