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
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from constructs import Construct

from .constructs.nag import checkov_skip
from .constructs.training import pipeline_definition as pd
from .constructs.training.training import EXPORT_SOURCE, ParameterReader, Training, TrainingSchedule


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
        for name, (value, description) in outputs.items():
            cdk.CfnOutput(self, name, value=value, description=description)
