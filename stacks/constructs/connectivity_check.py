"""The connectivity check: a Lambda in the private subnets that proves the path to Snowflake.

It reads the parameters (decrypting via SSM only), runs on a schedule, publishes one EMF metric
per run, alarms to an encrypted topic on failures, and parks failed async invocations in an
encrypted queue. Its environment names parameters; it never holds a secret.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subs
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from snowsage.settings import SETTINGS_ENV_VAR

from .bundling import REPO_ROOT, LambdaLocalBundling, local_bundling_options
from .lambda_defaults import LAMBDA_ARCH, LAMBDA_PYTHON_VERSION, LAMBDA_RUNTIME, log_group
from .nag import acknowledge, checkov_skip, least_privilege_role

CHECK_SOURCE = REPO_ROOT / "lambda" / "connectivity_check"
METRICS_NAMESPACE = "SnowSage"
FAILED_METRIC = "CheckFailed"


def check_code(arch: str | None = "aarch64", python_version: str = LAMBDA_PYTHON_VERSION) -> lambda_.Code:
    """The function's asset: handler, the snowsage library and pinned wheels for the runtime."""
    bundler = LambdaLocalBundling(
        CHECK_SOURCE, python_version=python_version, arch=arch, packages=[REPO_ROOT / "snowsage"]
    )
    # The hash of the inputs, known before bundling: a cdk.out that holds the asset already is
    # not bundled again, and the bundle itself comes from the cache under .build/.
    return lambda_.Code.from_asset(
        str(CHECK_SOURCE),
        asset_hash_type=cdk.AssetHashType.CUSTOM,
        asset_hash=bundler.asset_hash(),
        bundling=local_bundling_options(bundler),
    )


class ConnectivityCheck(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        env_name: str,
        function_name: str,
        key: kms.IKey,
        vpc: ec2.IVpc,
        subnets: ec2.SubnetSelection,
        security_group: ec2.ISecurityGroup,
        parameter_arns: list[str],
        settings_json: str,
        log_retention: logs.RetentionDays,
        schedule: str | None,
        alarm_email: str | None,
    ) -> None:
        super().__init__(scope, id)
        stack = cdk.Stack.of(self)
        self.log_group = log_group(self, "Logs", key=key, retention=log_retention)
        self.dead_letters = sqs.Queue(
            self,
            "FailedInvocations",
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=key,
            enforce_ssl=True,
            retention_period=cdk.Duration.days(14),
        )
        acknowledge(
            self.dead_letters,
            "AwsSolutions-SQS3",
            "This queue is the dead-letter queue of the check function itself.",
        )
        self.role = least_privilege_role(
            self,
            "Role",
            service="lambda.amazonaws.com",
            description=f"snowsage {env_name} connectivity check: read-only parameters, own logs",
            statements=[
                iam.PolicyStatement(
                    sid="ReadSnowflakeParameters",
                    actions=["ssm:GetParameter", "ssm:GetParameters"],
                    resources=parameter_arns,
                ),
                iam.PolicyStatement(
                    sid="DecryptParametersViaSsm",
                    actions=["kms:Decrypt"],
                    resources=[key.key_arn],
                    conditions={"StringEquals": {"kms:ViaService": f"ssm.{stack.region}.amazonaws.com"}},
                ),
                iam.PolicyStatement(
                    sid="WriteOwnLogs",
                    actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                    resources=[self.log_group.log_group_arn],
                ),
                iam.PolicyStatement(
                    sid="DeadLetterFailedInvocations",
                    actions=["sqs:SendMessage"],
                    resources=[self.dead_letters.queue_arn],
                ),
                iam.PolicyStatement(
                    sid="EncryptDeadLettersViaSqs",
                    actions=["kms:GenerateDataKey", "kms:Decrypt"],
                    resources=[key.key_arn],
                    conditions={"StringEquals": {"kms:ViaService": f"sqs.{stack.region}.amazonaws.com"}},
                ),
                # A function in a VPC manages its network interfaces, and X-Ray takes trace
                # segments; neither API supports resource-level permissions.
                iam.PolicyStatement(
                    sid="VpcNetworkInterfacesAndTracing",
                    actions=[
                        "ec2:CreateNetworkInterface",
                        "ec2:DescribeNetworkInterfaces",
                        "ec2:DescribeSubnets",
                        "ec2:DeleteNetworkInterface",
                        "ec2:AssignPrivateIpAddresses",
                        "ec2:UnassignPrivateIpAddresses",
                        "xray:PutTraceSegments",
                        "xray:PutTelemetryRecords",
                    ],
                    resources=["*"],
                ),
            ],
        )
        self.function = lambda_.Function(
            self,
            "Function",
            runtime=LAMBDA_RUNTIME,
            architecture=LAMBDA_ARCH,
            function_name=function_name,
            handler="handler.handler",
            code=check_code(),
            role=self.role.without_policy_updates(),
            vpc=vpc,
            vpc_subnets=subnets,
            security_groups=[security_group],
            allow_public_subnet=False,
            timeout=cdk.Duration.seconds(60),
            memory_size=512,
            reserved_concurrent_executions=2,
            tracing=lambda_.Tracing.ACTIVE,
            log_group=self.log_group,
            dead_letter_queue=self.dead_letters,
            retry_attempts=0,
            description=f"snowsage {env_name}: checks DNS, TCP, TLS, OCSP, login and a query against Snowflake",
            environment={
                SETTINGS_ENV_VAR: settings_json,
                "POWERTOOLS_SERVICE_NAME": f"snowsage-{env_name}-check",
                "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
                "POWERTOOLS_LOG_LEVEL": "INFO",
            },
        )
        acknowledge(
            self,
            "AwsSolutions-IAM5[Resource::*]",
            "ENI management for a function in a VPC and X-Ray trace segments do not support "
            "resource-level permissions (the only statement with Resource '*').",
        )

        checkov_skip(
            self.node.find_child("RolePolicy"),
            "CKV_AWS_111",
            "Only ENI management for a VPC function and X-Ray segments are unscoped; neither supports resource-level permissions.",
        )
        checkov_skip(
            self.function,
            "CKV_AWS_173",
            "The environment holds parameter names only, never a secret; it is encrypted at rest with the AWS managed key.",
        )

        self.topic = sns.Topic(
            self,
            "AlarmTopic",
            master_key=key,
            enforce_ssl=True,
            display_name=f"snowsage {env_name} check failures",
        )
        if alarm_email:
            self.topic.add_subscription(subs.EmailSubscription(alarm_email))
        failures = cloudwatch.Metric(
            namespace=METRICS_NAMESPACE,
            metric_name=FAILED_METRIC,
            dimensions_map={"service": f"snowsage-{env_name}-check"},
            statistic="Sum",
            period=cdk.Duration.minutes(5),
        )
        self.alarm = cloudwatch.Alarm(
            self,
            "FailureAlarm",
            alarm_description=f"snowsage {env_name}: the Snowflake connectivity check failed; run `snowsage check` for the failing step",
            metric=failures,
            threshold=1,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            # "Not configured yet" publishes a different metric, so it never wakes anyone.
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        self.alarm.add_alarm_action(cw_actions.SnsAction(self.topic))
        self.alarm.add_ok_action(cw_actions.SnsAction(self.topic))

        self.schedule = None
        if schedule:
            self.schedule = events.Rule(
                self,
                "Schedule",
                schedule=events.Schedule.expression(schedule),
                description=f"snowsage {env_name}: run the Snowflake connectivity check",
                targets=[
                    targets.LambdaFunction(
                        self.function,
                        event=events.RuleTargetInput.from_object({}),
                        retry_attempts=0,
                        dead_letter_queue=self.dead_letters,
                    )
                ],
            )
