"""What every function of ours shares: runtime, architecture and an encrypted, retained log group."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from stacks.config import LOG_RETENTION_DAYS

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
