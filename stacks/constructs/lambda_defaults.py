"""What every function of ours shares: runtime, architecture, an encrypted retained log group, the
statements a function in a VPC needs, and the encrypted dead-letter queue of what invokes it."""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from constructs import Construct, IConstruct

from stacks.config import LOG_RETENTION_DAYS

from .nag import acknowledge, via_service

# The newest Python runtime aws-cdk-lib 2.275 knows; arm64 is cheaper per GB-second.
LAMBDA_RUNTIME = lambda_.Runtime.PYTHON_3_14
LAMBDA_PYTHON_VERSION = "3.14"
LAMBDA_ARCH = lambda_.Architecture.ARM_64


def log_group(scope: Construct, id: str, *, key: kms.IKey, retention: logs.RetentionDays) -> logs.LogGroup:
    return logs.LogGroup(
        scope,
        id,
        encryption_key=key,
        retention=retention,
        removal_policy=cdk.RemovalPolicy.RETAIN,
    )


def vpc_function(
    scope: Construct,
    id: str,
    *,
    code: lambda_.Code,
    role: iam.Role,
    vpc: ec2.IVpc,
    subnets: ec2.SubnetSelection,
    security_group: ec2.ISecurityGroup,
    log_group: logs.ILogGroup,
    **props: Any,
) -> lambda_.Function:
    """A function in the private subnets: our runtime, traced, at most two at a time, and holding
    only ``role``'s statements (CDK adds no grants to it)."""
    return lambda_.Function(
        scope,
        id,
        runtime=LAMBDA_RUNTIME,
        architecture=LAMBDA_ARCH,
        handler="handler.handler",
        code=code,
        role=role.without_policy_updates(),
        vpc=vpc,
        vpc_subnets=subnets,
        security_groups=[security_group],
        allow_public_subnet=False,
        reserved_concurrent_executions=2,
        tracing=lambda_.Tracing.ACTIVE,
        log_group=log_group,
        **props,
    )


def write_logs_statement(group: logs.ILogGroup) -> iam.PolicyStatement:
    return iam.PolicyStatement(
        sid="WriteOwnLogs",
        actions=["logs:CreateLogStream", "logs:PutLogEvents"],
        resources=[group.log_group_arn],
    )


def vpc_function_statement() -> iam.PolicyStatement:
    # A function in a VPC manages its network interfaces, and X-Ray takes trace segments; neither
    # API supports resource-level permissions.
    return iam.PolicyStatement(
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
    )


def acknowledge_vpc_function_wildcard(scope: IConstruct) -> None:
    """The one finding ``vpc_function_statement`` raises, on the policy (or construct) that holds it."""
    acknowledge(
        scope,
        "AwsSolutions-IAM5[Resource::*]",
        "ENI management for a function in a VPC and X-Ray trace segments do not support "
        "resource-level permissions (the only statement with Resource '*').",
    )


def dead_letter_queue(scope: Construct, id: str, *, queue_name: str, key: kms.IKey, owner: str) -> sqs.Queue:
    """An encrypted, TLS-only queue that keeps what ``owner`` could not deliver for 14 days."""
    queue = sqs.Queue(
        scope,
        id,
        queue_name=queue_name,
        encryption=sqs.QueueEncryption.KMS,
        encryption_master_key=key,
        enforce_ssl=True,
        retention_period=cdk.Duration.days(14),
    )
    acknowledge(queue, "AwsSolutions-SQS3", f"This queue is the dead-letter queue of {owner} itself.")
    return queue


def dead_letter_alarm(
    scope: Construct, id: str, queue: sqs.IQueue, *, alarm_name: str, alarm_description: str
) -> cloudwatch.Alarm:
    """Alarms while any message waits in ``queue`` (a ``dead_letter_queue``)."""
    return cloudwatch.Alarm(
        scope,
        id,
        alarm_name=alarm_name,
        alarm_description=alarm_description,
        metric=queue.metric_approximate_number_of_messages_visible(
            statistic="Maximum", period=cdk.Duration.minutes(5)
        ),
        threshold=1,
        evaluation_periods=1,
        comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
    )


def encrypt_dead_letters_statement(key: kms.IKey, scope: Construct) -> iam.PolicyStatement:
    """What sending to a ``dead_letter_queue`` needs of its key: only through SQS."""
    return iam.PolicyStatement(
        sid="EncryptDeadLettersViaSqs",
        actions=["kms:GenerateDataKey", "kms:Decrypt"],
        resources=[key.key_arn],
        conditions={"StringEquals": {"kms:ViaService": via_service("sqs", scope)}},
    )


# One list of what CloudWatch accepts (config validates against it); CDK's enum names the same
# periods in the same ascending order, so the two are paired here rather than spelled out twice.
# tests/infra/test_constructs.py renders every pair, so an enum that drifts fails there.
_RETENTION = dict(
    zip(
        LOG_RETENTION_DAYS,
        [d for d in logs.RetentionDays if d is not logs.RetentionDays.INFINITE],
        strict=True,
    )
)


def retention(days: int) -> logs.RetentionDays:
    return _RETENTION[days]
