"""The customer-managed KMS key for everything at rest: parameters, volume, logs, bucket, topic."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct

from .connectivity_check import CheckNames
from .nag import alarms_use_key_statement


class EncryptionKey(Construct):
    """One symmetric key with yearly rotation; services that write for us may use it, scoped to us."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        env_name: str,
        removal_policy: cdk.RemovalPolicy,
        check_names: CheckNames,
    ) -> None:
        super().__init__(scope, id)
        stack = cdk.Stack.of(self)
        self.key = kms.Key(
            self,
            "Key",
            alias=f"alias/snowsage/{env_name}",
            description=f"snowsage {env_name}: Snowflake credentials, notebook volume, logs, results",
            enable_key_rotation=True,
            removal_policy=removal_policy,
            pending_window=cdk.Duration.days(30),
        )
        # CloudWatch Logs encrypts our log groups (flow logs, Lambda, lifecycle) with this key.
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCloudWatchLogsForThisAccount",
                principals=[iam.ServicePrincipal(f"logs.{stack.region}.amazonaws.com")],
                actions=[
                    "kms:Encrypt*",
                    "kms:Decrypt*",
                    "kms:ReEncrypt*",
                    "kms:GenerateDataKey*",
                    "kms:Describe*",
                ],
                resources=["*"],
                conditions={
                    "ArnLike": {
                        "kms:EncryptionContext:aws:logs:arn": f"arn:{stack.partition}:logs:{stack.region}:{stack.account}:*"
                    }
                },
            )
        )
        # CloudWatch alarms publish to the encrypted SNS topic; without this key grant SNS refuses
        # every alarm notification. CloudWatch sends the alarm as aws:SourceArn, so only the check's
        # own alarms in this account may use the key this way.
        self.key.add_to_resource_policy(
            alarms_use_key_statement(
                "AllowCheckAlarmsToPublishToEncryptedTopic", self, check_names.alarm_prefix
            )
        )
        # The check's schedule rule dead-letters undeliverable events into a queue under this key;
        # EventBridge writes there as events.amazonaws.com, so without this grant those events are
        # lost. The condition is the encryption context SQS binds to every data key (the queue's
        # ARN), not aws:SourceAccount/SourceArn: AWS documents this grant without a source
        # condition and does not say SQS passes those keys on to KMS (for EventBridge into an
        # encrypted SNS topic it says they are absent), and a condition on a missing key would drop
        # every dead letter. The queue has a fixed name because it lives in the Notebook stack,
        # which depends on this one; a reference to it here would be a cycle.
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowScheduleToDeadLetterIntoCheckQueue",
                principals=[iam.ServicePrincipal("events.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey"],
                resources=["*"],
                conditions={
                    "StringEquals": {
                        "kms:EncryptionContext:aws:sqs:arn": stack.format_arn(
                            service="sqs", resource=check_names.dead_letter_queue
                        )
                    }
                },
            )
        )
