"""The connectivity check: a Lambda in the private subnets that proves the path to Snowflake.

It reads the parameters (decrypting via SSM only), runs on a schedule, publishes one EMF metric
per run, and parks failed async invocations in an encrypted queue. Four alarms report to one
encrypted topic: a failed check, a function error, a dead letter, and (with a schedule) no
successful check in two schedule periods. Its environment names parameters; it never holds a secret.
"""

from __future__ import annotations

from dataclasses import dataclass

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
from constructs import Construct

from snowsage import metrics
from snowsage.settings import SETTINGS_ENV_VAR
from stacks.config import HEARTBEAT_PERIODS

from .bundling import REPO_ROOT, function_code
from .lambda_defaults import (
    LAMBDA_PYTHON_VERSION,
    acknowledge_vpc_function_wildcard,
    dead_letter_alarm,
    dead_letter_queue,
    encrypt_dead_letters_statement,
    log_group,
    vpc_function,
    vpc_function_statement,
    write_logs_statement,
)
from .nag import checkov_skip, least_privilege_role
from .parameters import SnowflakeParameters

CHECK_SOURCE = REPO_ROOT / "lambda" / "connectivity_check"


@dataclass(frozen=True)
class CheckNames:
    """Fixed names, so the Data stack's key policy can name the queue and the alarms without a
    reference into the Notebook stack (which depends on it)."""

    function: str
    dead_letter_queue: str
    alarm_prefix: str

    @classmethod
    def for_env(cls, env_name: str) -> CheckNames:
        function = f"snowsage-{env_name}-check"
        return cls(
            function=function, dead_letter_queue=f"{function}-dead-letters", alarm_prefix=f"{function}-"
        )


def check_code(arch: str | None = "aarch64", python_version: str = LAMBDA_PYTHON_VERSION) -> lambda_.Code:
    """The function's asset: handler, the snowsage library and pinned wheels for the runtime."""
    return function_code(CHECK_SOURCE, arch=arch, python_version=python_version)


class ConnectivityCheck(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        env_name: str,
        names: CheckNames,
        key: kms.IKey,
        vpc: ec2.IVpc,
        subnets: ec2.SubnetSelection,
        security_group: ec2.ISecurityGroup,
        parameters: SnowflakeParameters,
        settings_json: str,
        log_retention: logs.RetentionDays,
        schedule: str | None,
        schedule_period_seconds: int | None,
        alarm_email: str | None,
    ) -> None:
        super().__init__(scope, id)
        stack = cdk.Stack.of(self)
        self.log_group = log_group(self, "Logs", key=key, retention=log_retention)
        self.dead_letters = dead_letter_queue(
            self, "FailedInvocations", queue_name=names.dead_letter_queue, key=key, owner="the check function"
        )
        policy = iam.PolicyDocument()
        parameters.grant_read(policy)
        policy.add_statements(
            write_logs_statement(self.log_group),
            iam.PolicyStatement(
                sid="DeadLetterFailedInvocations",
                actions=["sqs:SendMessage"],
                resources=[self.dead_letters.queue_arn],
            ),
            encrypt_dead_letters_statement(key, self),
            vpc_function_statement(),
        )
        self.role = least_privilege_role(
            self,
            "Role",
            service="lambda.amazonaws.com",
            description=f"snowsage {env_name} connectivity check: read-only parameters, own logs",
            statements=policy,
            policy_checkov_skips={
                "CKV_AWS_111": "Only ENI management for a VPC function and X-Ray segments are unscoped; "
                "neither supports resource-level permissions."
            },
        )
        self.function = vpc_function(
            self,
            "Function",
            code=check_code(),
            role=self.role,
            vpc=vpc,
            subnets=subnets,
            security_group=security_group,
            log_group=self.log_group,
            function_name=names.function,
            timeout=cdk.Duration.seconds(60),
            memory_size=512,
            dead_letter_queue=self.dead_letters,
            retry_attempts=0,
            description=f"snowsage {env_name}: checks DNS, TCP, TLS, OCSP, login and a query against Snowflake",
            environment={
                SETTINGS_ENV_VAR: settings_json,
                "POWERTOOLS_SERVICE_NAME": metrics.check_service(env_name),
                "POWERTOOLS_METRICS_NAMESPACE": metrics.NAMESPACE,
                "POWERTOOLS_LOG_LEVEL": "INFO",
            },
        )
        acknowledge_vpc_function_wildcard(self)

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
        self.alarms = self._build_alarms(env_name, names, schedule_period_seconds)
        for alarm in self.alarms:
            alarm.add_alarm_action(cw_actions.SnsAction(self.topic))
            alarm.add_ok_action(cw_actions.SnsAction(self.topic))
        # CDK's topic policy replaces SNS's default one, which is what let CloudWatch publish: without
        # this statement every alarm action is refused on real AWS (moto does not enforce it).
        self.topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCheckAlarmsToPublish",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["sns:Publish"],
                resources=[self.topic.topic_arn],
                conditions={
                    "ArnEquals": {"aws:SourceArn": [alarm.alarm_arn for alarm in self.alarms]},
                    "StringEquals": {"aws:SourceAccount": stack.account},
                },
            )
        )

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

    def _build_alarms(
        self, env_name: str, names: CheckNames, schedule_period_seconds: int | None
    ) -> list[cloudwatch.Alarm]:
        """A failed check, an error before the check could report, a dead letter, and, with a
        schedule, silence: each alone would let a broken monitor look healthy."""
        five_minutes = cdk.Duration.minutes(5)
        at_least_once = cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD
        service = {metrics.SERVICE_DIMENSION: metrics.check_service(env_name)}
        alarms = [
            cloudwatch.Alarm(
                self,
                "FailureAlarm",
                alarm_name=f"{names.alarm_prefix}failed",
                alarm_description=f"snowsage {env_name}: the Snowflake connectivity check failed; run `snowsage check` for the failing step",
                metric=cloudwatch.Metric(
                    namespace=metrics.NAMESPACE,
                    metric_name=metrics.CHECK_FAILED,
                    dimensions_map=service,
                    statistic="Sum",
                    period=five_minutes,
                ),
                threshold=1,
                evaluation_periods=1,
                comparison_operator=at_least_once,
                # "Not configured yet" publishes a different metric, so it never counts as failed.
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            ),
            cloudwatch.Alarm(
                self,
                "ErrorAlarm",
                alarm_name=f"{names.alarm_prefix}errors",
                alarm_description=f"snowsage {env_name}: the check function raised an error before it could report; "
                f"read its log group, then run `snowsage check`",
                metric=self.function.metric_errors(statistic="Sum", period=five_minutes),
                threshold=1,
                evaluation_periods=1,
                comparison_operator=at_least_once,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            ),
            dead_letter_alarm(
                self,
                "DeadLetterAlarm",
                self.dead_letters,
                alarm_name=f"{names.alarm_prefix}dead-letters",
                alarm_description=f"snowsage {env_name}: a check invocation was dead-lettered to {names.dead_letter_queue} "
                "(throttled, failed or undeliverable); read the message attributes, then purge the queue",
            ),
        ]
        if schedule_period_seconds:
            alarms.append(
                cloudwatch.Alarm(
                    self,
                    "HeartbeatAlarm",
                    alarm_name=f"{names.alarm_prefix}heartbeat",
                    alarm_description=f"snowsage {env_name}: no successful connectivity check in {HEARTBEAT_PERIODS} "
                    "schedule periods (schedule disabled, function throttled or failing, or credentials "
                    "not set yet); run `snowsage check`",
                    metric=cloudwatch.Metric(
                        namespace=metrics.NAMESPACE,
                        metric_name=metrics.CHECK_OK,
                        dimensions_map=service,
                        statistic="Sum",
                        period=cdk.Duration.seconds(schedule_period_seconds),
                    ),
                    threshold=1,
                    evaluation_periods=HEARTBEAT_PERIODS,
                    datapoints_to_alarm=HEARTBEAT_PERIODS,
                    comparison_operator=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
                    # Silence is the failure this alarm exists for.
                    treat_missing_data=cloudwatch.TreatMissingData.BREACHING,
                )
            )
        return alarms
