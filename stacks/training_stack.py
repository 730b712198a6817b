"""SnowSage-<env>-Training: the scheduled training pipeline; it costs nothing until a run starts.

Composed from explicit arguments; stacks/app_builder.py builds it after the Notebook stack (the
network's private subnets and function security group, the Data stack's key, parameters and bucket
by name, the check's alarm topic) and adds ``training.run_data_lifecycle_rule`` to the results bucket.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from constructs import Construct

from .constructs.nag import acknowledge, checkov_skip, via_service, wildcard_finding
from .constructs.training import pipeline_definition as pd
from .constructs.training.training import EXPORT_SOURCE, ParameterReader, Training, TrainingSchedule


@dataclass(frozen=True)
class UnloadTrust:
    """What the Snowflake admin's ``DESC INTEGRATION`` shows: who assumes the unload role, and how."""

    iam_user_arn: str  # STORAGE_AWS_IAM_USER_ARN
    external_id: str  # STORAGE_AWS_EXTERNAL_ID


@dataclass(frozen=True)
class TrainingOptions:
    """What the user chooses about training (the config model's training settings)."""

    objective: pd.Objective = "regression"
    metric_threshold: float = 100000.0
    instance_type: str = "ml.m5.xlarge"
    instance_count: int = 2
    minimum_rows: int = 100
    spot: bool = True
    max_runtime_seconds: int = 3600
    max_wait_seconds: int | None = None
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)
    schedule: TrainingSchedule | None = None
    run_retention_days: int = 30
    unload: UnloadTrust | None = None  # the unload exporter's storage integration, when chosen


class TrainingStack(cdk.Stack):
    KIND = "Training"
    DESCRIPTION = "snowsage: scheduled training pipeline (Snowflake export, XGBoost, gate, model registry)"

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        env_name: str,
        key: kms.IKey,
        vpc: ec2.IVpc,
        subnets: ec2.SubnetSelection,
        s3_prefix_list_id: str,
        bucket_name: str,
        export_security_group: ec2.ISecurityGroup,
        alarm_topic: sns.ITopic,
        log_retention: logs.RetentionDays,
        options: TrainingOptions,
        parameters: ParameterReader | None = None,
        export_environment: Mapping[str, str] | None = None,
        export_arguments: Mapping[str, Any] | None = None,
        export_source: Path = EXPORT_SOURCE,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, id, **kwargs)
        # The same tags as every SnowSageStack (this one is composed from arguments, not the config).
        cdk.Tags.of(self).add("project", "snowsage")
        cdk.Tags.of(self).add("snowsage:env", env_name)
        self.training = Training(
            self,
            "Training",
            env_name=env_name,
            key=key,
            vpc=vpc,
            subnets=subnets,
            s3_prefix_list_id=s3_prefix_list_id,
            bucket_name=bucket_name,
            export_security_group=export_security_group,
            alarm_topic=alarm_topic,
            parameters=parameters,
            export_environment=export_environment,
            export_arguments=export_arguments,
            export_source=export_source,
            log_retention=log_retention,
            objective=options.objective,
            metric_threshold=options.metric_threshold,
            instance_type=options.instance_type,
            instance_count=options.instance_count,
            minimum_rows=options.minimum_rows,
            spot=options.spot,
            max_runtime_seconds=options.max_runtime_seconds,
            max_wait_seconds=options.max_wait_seconds,
            hyperparameters=options.hyperparameters,
            schedule=options.schedule,
            run_retention_days=options.run_retention_days,
        )
        checkov_skip(
            self.training.node.find_child("TrainingRolePolicy"),
            "CKV_AWS_109",
            "SageMaker attaches a VPC training job's network interfaces with "
            "ec2:CreateNetworkInterfacePermission/DeleteNetworkInterfacePermission, which take no resource; "
            "kms:CreateGrant is limited to grants for AWS resources on the one key.",
        )
        self.unload_role = (
            self._build_unload_role(env_name, options.unload, key=key, bucket_name=bucket_name)
            if options.unload
            else None
        )
        outputs = {
            "TrainingPipelineName": (
                self.training.pipeline_name,
                "SageMaker pipeline (`snowsage train start`, or StartPipelineExecution from an orchestrator)",
            ),
            "ModelPackageGroupName": (
                self.training.model_package_group_name,
                "Registered models, pending manual approval (`snowsage train model`)",
            ),
            "TrainingExportFunctionName": (
                self.training.export_function.function_name,
                "The pipeline's Export step (Snowflake to the run's S3 prefix)",
            ),
            "TrainingRunsPrefix": (
                pd.RUNS_PREFIX,
                "Where each run's data, model and checkpoints live in the bucket",
            ),
            "TrainingRunRetentionDays": (
                str(self.training.run_retention_days),
                "Days run data is kept (the bucket's lifecycle rule)",
            ),
        }
        if self.unload_role is not None:
            outputs["TrainingUnloadRoleArn"] = (
                self.unload_role.role_arn,
                "The storage integration's STORAGE_AWS_ROLE_ARN (`snowsage train setup-sql`)",
            )
        for name, (value, description) in outputs.items():
            cdk.CfnOutput(self, name, value=value, description=description)

    def _build_unload_role(
        self, env_name: str, trust: UnloadTrust, *, key: kms.IKey, bucket_name: str
    ) -> iam.Role:
        """The role Snowflake's storage integration assumes to write a run's files: only its IAM
        user, only with the integration's external id, only under the runs prefix."""
        bucket_arn = f"arn:{cdk.Aws.PARTITION}:s3:::{bucket_name}"
        runs = f"{bucket_arn}/{pd.RUNS_PREFIX}*"
        policy = iam.ManagedPolicy(
            self,
            "UnloadRolePolicy",
            description=f"snowsage {env_name} training unload: Snowflake writes run files under {pd.RUNS_PREFIX}",
            statements=[
                iam.PolicyStatement(sid="WriteRunFiles", actions=["s3:PutObject"], resources=[runs]),
                iam.PolicyStatement(
                    sid="ListRunsPrefix",
                    actions=["s3:ListBucket"],
                    resources=[bucket_arn],
                    conditions={"StringLike": {"s3:prefix": [f"{pd.RUNS_PREFIX}*"]}},
                ),
                iam.PolicyStatement(
                    sid="LocateBucket", actions=["s3:GetBucketLocation"], resources=[bucket_arn]
                ),
                iam.PolicyStatement(
                    sid="EncryptRunFilesViaS3",
                    actions=["kms:GenerateDataKey", "kms:Decrypt"],
                    resources=[key.key_arn],
                    conditions={"StringEquals": {"kms:ViaService": via_service("s3", self)}},
                ),
            ],
        )
        acknowledge(
            policy,
            wildcard_finding(runs),
            "Snowflake writes each run under its own execution id, known only at run time, inside the runs prefix.",
        )
        role = iam.Role(
            self,
            "UnloadRole",
            role_name=f"snowsage-{env_name}-training-unload",
            description=f"snowsage {env_name} training unload: assumed by the Snowflake storage integration only",
            assumed_by=iam.ArnPrincipal(trust.iam_user_arn).with_conditions(
                {"StringEquals": {"sts:ExternalId": trust.external_id}}
            ),
            managed_policies=[policy],
        )
        return role
