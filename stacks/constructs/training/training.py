"""Scheduled XGBoost training: an export function, a SageMaker pipeline, its roles, schedule and alarms.

Training runs in the private subnets with network isolation and encrypted inter-node traffic; its
security group talks only to itself and to S3 on 443. Every role holds exact actions on exact
ARNs (the run prefix, this pipeline, this package group, the one function and role it may use).

Interface (keyword arguments of ``Training``): ``env_name``; ``key`` (the app's KMS key: run data,
volumes, logs, the schedule and its queue); ``vpc``, ``subnets`` (the private ones);
``s3_prefix_list_id`` (``pl-...``, the S3 prefix list the training group may reach);
``bucket_name`` (the results bucket, by name); ``export_security_group`` (the export function's:
Snowflake egress, e.g. the network's ``function_sg``); ``alarm_topic`` (an ``sns.Topic`` this app
owns: its policy and its key's get the statements that let this rule and these alarms publish);
``objective`` (``regression`` | ``binary``), ``metric_threshold``; ``log_retention``;
``run_retention_days``; optional ``parameters`` (anything with ``grant_read(policy)``, e.g.
``SnowflakeParameters``), ``export_environment`` (the handler's environment, e.g. the runtime
settings JSON; never a secret), ``export_arguments`` (extra Export step arguments), ``export_source``
(default ``lambda/training_export``), ``export_timeout`` (10 minutes), ``instance_type``,
``instance_count``, ``minimum_rows``, ``spot``, ``max_runtime_seconds``, ``max_wait_seconds``,
``hyperparameters``, ``schedule`` (``TrainingSchedule``; none = no schedule and no heartbeat),
``names`` (``TrainingNames.for_env(env_name)``).

Attributes for the stack and the wiring: ``pipeline`` (CfnPipeline), ``pipeline_name``,
``pipeline_arn``, ``definition`` (the dict), ``model_package_group_name``, ``image_uri``,
``export_function``, ``export_role``, ``training_role``, ``pipeline_role``, ``security_group``,
``failure_rule``, ``schedule``, ``schedule_dead_letters``, ``alarms``, ``run_retention_days`` and
``run_data_lifecycle_rule`` (an ``s3.LifecycleRule`` for the results bucket in the Data stack).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import aws_cdk as cdk
import jsii
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sagemaker as sagemaker
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from aws_cdk.interfaces import aws_events as events_ref
from constructs import Construct, IConstruct

from ..bundling import REPO_ROOT, function_code
from ..lambda_defaults import (
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
from ..nag import acknowledge, alarms_use_key_statement, checkov_skip, least_privilege_role, wildcard_finding
from . import pipeline_definition as pd

EXPORT_SOURCE = REPO_ROOT / "lambda" / "training_export"
PIPELINE_EXECUTION_STATUS_CHANGE = "SageMaker Model Building Pipeline Execution Status Change"
PIPELINE_METRICS_NAMESPACE = "AWS/Sagemaker/ModelBuildingPipeline"
# No successful run in this many schedule periods raises the heartbeat alarm.
HEARTBEAT_PERIODS = 2
MAX_ALARM_WINDOW_SECONDS = 7 * 86400
# SageMaker Pipelines names the jobs it starts pipelines-<execution>-<step>-<suffix>.
PIPELINE_JOB_PREFIX = "pipelines-"
ALARM_SUFFIXES = ("heartbeat", "schedule-dead-letters")
_PREFIX_LIST = re.compile(r"^pl-[0-9a-f]{8,17}$")


@dataclass(frozen=True)
class TrainingNames:
    """Fixed names: ARNs built from them need no reference into this stack, so the Data and
    Notebook stacks' key and topic policies can name this stack's rule and alarms without a cycle."""

    pipeline: str
    model_package_group: str
    export_function: str
    failure_rule: str
    alarm_prefix: str
    schedule: str
    schedule_dead_letter_queue: str

    @classmethod
    def for_env(cls, env_name: str) -> TrainingNames:
        base = f"snowsage-{env_name}-training"
        return cls(
            pipeline=base,
            model_package_group=f"snowsage-{env_name}-models",
            export_function=f"{base}-export",
            failure_rule=f"{base}-failed",
            alarm_prefix=f"{base}-",
            schedule=base,
            schedule_dead_letter_queue=f"{base}-schedule-dead-letters",
        )


@dataclass(frozen=True)
class TrainingSchedule:
    """``rate(...)`` or ``cron(...)`` as EventBridge Scheduler takes it, an IANA time zone for cron,
    and the period the heartbeat alarm watches (config derives it from the expression)."""

    expression: str
    period_seconds: int
    time_zone: str | None = None

    def validate(self) -> None:
        if not re.fullmatch(r"(rate|cron)\(.+\)", self.expression):
            raise ValueError(
                f"training schedule {self.expression!r} is neither rate(...) nor cron(...); "
                "e.g. 'rate(1 day)' or 'cron(0 3 * * ? *)'"
            )
        if self.period_seconds < 60 or self.period_seconds % 60:
            raise ValueError(
                f"training schedule period {self.period_seconds}s must be a whole number of minutes"
            )
        if self.period_seconds * HEARTBEAT_PERIODS > MAX_ALARM_WINDOW_SECONDS:
            raise ValueError(
                f"training schedule {self.expression!r} runs every {self.period_seconds}s, but the "
                f"no-successful-run alarm watches {HEARTBEAT_PERIODS} periods and CloudWatch alarms look "
                f"back at most 7 days: schedule at least every {MAX_ALARM_WINDOW_SECONDS // HEARTBEAT_PERIODS // 3600} hours"
            )


class ParameterReader(Protocol):
    """What holds the Snowflake credentials: it adds its own read statements (SnowflakeParameters)."""

    def grant_read(self, policy: Any) -> None: ...


class _Statements(list[iam.PolicyStatement]):
    """A policy sink for ``grant_read``: collects statements in order."""

    def add_statements(self, *statements: iam.PolicyStatement) -> None:
        self.extend(statements)


def export_code(
    source: Path = EXPORT_SOURCE, *, arch: str | None = "aarch64", python_version: str = LAMBDA_PYTHON_VERSION
) -> lambda_.Code:
    """The export function's asset, bundled like the check: handler, snowsage and pinned wheels."""
    if not (source / "handler.py").is_file():
        raise FileNotFoundError(
            f"the training export handler {source / 'handler.py'} does not exist; it is the function the "
            "pipeline's Export step invokes (lambda/training_export)"
        )
    return function_code(source, arch=arch, python_version=python_version)


@jsii.implements(events.IRuleTarget)
class _TopicTarget:
    """The alarm topic as a rule target, without CDK's SnsTopic grant (an unconditioned publish
    for every rule in the account); the construct adds a statement for this rule only."""

    def __init__(self, topic: sns.ITopic, message: events.RuleTargetInput) -> None:
        self.topic = topic
        self.message = message

    def bind(self, rule: events_ref.IRuleRef, id: str | None = None) -> events.RuleTargetConfig:
        return events.RuleTargetConfig(arn=self.topic.topic_arn, input=self.message)


class Training(Construct):
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
        objective: pd.Objective,
        metric_threshold: float,
        log_retention: logs.RetentionDays,
        run_retention_days: int,
        export_source: Path = EXPORT_SOURCE,
        export_environment: Mapping[str, str] | None = None,
        parameters: ParameterReader | None = None,
        export_timeout: cdk.Duration | None = None,
        instance_type: str = "ml.m5.xlarge",
        instance_count: int = 2,
        minimum_rows: int = 100,
        spot: bool = True,
        max_runtime_seconds: int = 3600,
        max_wait_seconds: int | None = None,
        hyperparameters: Mapping[str, Any] | None = None,
        export_arguments: Mapping[str, Any] | None = None,
        schedule: TrainingSchedule | None = None,
        names: TrainingNames | None = None,
    ) -> None:
        super().__init__(scope, id)
        stack = cdk.Stack.of(self)
        self.names = names or TrainingNames.for_env(env_name)
        if not _PREFIX_LIST.match(s3_prefix_list_id):
            raise ValueError(
                f"s3_prefix_list_id {s3_prefix_list_id!r} is not a prefix list id (pl-...); find the S3 one "
                "with `aws ec2 describe-managed-prefix-lists --filters Name=prefix-list-name,Values=com.amazonaws.<region>.s3`"
            )
        if run_retention_days < 1:
            raise ValueError(
                f"run_retention_days {run_retention_days} must be at least 1 (days run data is kept)"
            )
        if schedule:
            schedule.validate()
        self.key = key
        self.bucket_name = bucket_name
        self.run_retention_days = run_retention_days
        self.pipeline_name = self.names.pipeline
        self.pipeline_arn = stack.format_arn(
            service="sagemaker", resource="pipeline", resource_name=self.names.pipeline
        )
        self.model_package_group_name = self.names.model_package_group
        self.image_uri = self._xgboost_image()
        subnet_ids = vpc.select_subnets(
            subnet_type=subnets.subnet_type,
            subnet_group_name=subnets.subnet_group_name,
            subnets=subnets.subnets,
        ).subnet_ids

        self.security_group = self._build_security_group(vpc, s3_prefix_list_id)
        self.export_function, self.export_role = self._build_export_function(
            env_name,
            key=key,
            vpc=vpc,
            subnets=subnets,
            security_group=export_security_group,
            source=export_source,
            environment=export_environment or {},
            parameters=parameters,
            timeout=export_timeout or cdk.Duration.minutes(10),
            log_retention=log_retention,
        )
        self.training_role = self._build_training_role(env_name)
        self.model_package_group = sagemaker.CfnModelPackageGroup(
            self,
            "ModelPackageGroup",
            model_package_group_name=self.names.model_package_group,
            model_package_group_description=f"snowsage {env_name}: models trained by {self.names.pipeline}, pending manual approval",
        )
        self.pipeline_role = self._build_pipeline_role(env_name)
        self.definition = pd.build_definition(
            pd.PipelineSpec(
                export_function_arn=self.export_function.function_arn,
                bucket_name=bucket_name,
                image_uri=self.image_uri,
                training_role_arn=self.training_role.role_arn,
                subnet_ids=tuple(subnet_ids),
                security_group_ids=(self.security_group.security_group_id,),
                kms_key_arn=key.key_arn,
                model_package_group_name=self.names.model_package_group,
                objective=objective,
                metric_threshold=metric_threshold,
                instance_type=instance_type,
                instance_count=instance_count,
                minimum_rows=minimum_rows,
                spot=spot,
                max_runtime_seconds=max_runtime_seconds,
                max_wait_seconds=max_wait_seconds,
                hyperparameters=dict(hyperparameters or {}),
                export_arguments=dict(export_arguments or {}),
            )
        )
        self.pipeline = sagemaker.CfnPipeline(
            self,
            "Pipeline",
            pipeline_name=self.names.pipeline,
            pipeline_description=f"snowsage {env_name}: export from Snowflake, train XGBoost, gate, register",
            role_arn=self.pipeline_role.role_arn,
            pipeline_definition={"PipelineDefinitionBody": stack.to_json_string(self.definition)},
        )
        self.pipeline.node.add_dependency(self.model_package_group)

        # What the Data stack's bucket adds for the wiring step: run data expires under its prefix.
        self.run_data_lifecycle_rule = s3.LifecycleRule(
            id="ExpireTrainingRuns",
            prefix=pd.RUNS_PREFIX,
            expiration=cdk.Duration.days(run_retention_days),
            noncurrent_version_expiration=cdk.Duration.days(1),
            abort_incomplete_multipart_upload_after=cdk.Duration.days(1),
        )

        self.failure_rule = self._build_failure_rule(env_name, alarm_topic)
        self.schedule: scheduler.CfnSchedule | None = None
        self.schedule_dead_letters: sqs.Queue | None = None
        self.alarms: list[cloudwatch.Alarm] = []
        self.alarm_names: list[str] = []
        if schedule:
            self.schedule = self._build_schedule(env_name, schedule)
            self.alarms = self._build_alarms(env_name, schedule)
            self.alarm_names = [f"{self.names.alarm_prefix}{s}" for s in ALARM_SUFFIXES]
            for alarm in self.alarms:
                alarm.add_alarm_action(cw_actions.SnsAction(alarm_topic))
                alarm.add_ok_action(cw_actions.SnsAction(alarm_topic))
        self._allow_publishing(alarm_topic)

    def _xgboost_image(self) -> str:
        stack = cdk.Stack.of(self)
        if cdk.Token.is_unresolved(stack.region):
            raise ValueError(
                f"stack {stack.stack_name} has no region: the built-in XGBoost image account is per region, "
                "so the Training stack needs env=cdk.Environment(region=...)"
            )
        pd.xgboost_image_account(stack.region)  # raises naming an unmapped region
        mapping = cdk.CfnMapping(
            self,
            "XgboostImageAccounts",
            mapping={
                region: {"account": account} for region, account in pd.XGBOOST_REGISTRY_ACCOUNTS.items()
            },
            lazy=False,
        )
        account = mapping.find_in_map(cdk.Aws.REGION, "account")
        return f"{account}.dkr.ecr.{cdk.Aws.REGION}.{cdk.Aws.URL_SUFFIX}/{pd.XGBOOST_REPOSITORY}:{pd.XGBOOST_TAG}"

    def _build_security_group(self, vpc: ec2.IVpc, s3_prefix_list_id: str) -> ec2.SecurityGroup:
        sg = ec2.SecurityGroup(
            self,
            "TrainingSecurityGroup",
            vpc=vpc,
            allow_all_outbound=False,
            description="snowsage training instances: each other (the collective) and S3 on 443 only",
        )
        # The XGBoost collective and SageMaker's encrypted inter-container traffic run between the
        # job's own instances on ports the container chooses.
        sg.add_ingress_rule(sg, ec2.Port.all_traffic(), "Between the training job's own instances")
        sg.add_egress_rule(sg, ec2.Port.all_traffic(), "Between the training job's own instances")
        for pack in ("NIST.800.53.R5", "HIPAA.Security"):
            acknowledge(
                sg,
                f"{pack}-EC2RestrictedCommonPorts",
                "The only ingress is from this security group itself (the job's own instances, which "
                "need every port for the collective and IPsec); nothing outside the job can reach it.",
            )
        sg.add_egress_rule(
            ec2.Peer.prefix_list(s3_prefix_list_id), ec2.Port.tcp(443), "S3 (input, model, checkpoints)"
        )
        return sg

    def _build_export_function(
        self,
        env_name: str,
        *,
        key: kms.IKey,
        vpc: ec2.IVpc,
        subnets: ec2.SubnetSelection,
        security_group: ec2.ISecurityGroup,
        source: Path,
        environment: Mapping[str, str],
        parameters: ParameterReader | None,
        timeout: cdk.Duration,
        log_retention: logs.RetentionDays,
    ) -> tuple[lambda_.Function, iam.Role]:
        code = export_code(source)
        group = log_group(self, "ExportLogs", key=key, retention=log_retention)
        statements = _Statements()
        if parameters is not None:
            parameters.grant_read(statements)
        statements.add_statements(
            write_logs_statement(group),
            iam.PolicyStatement(
                sid="WriteRunData",
                # Multipart Parquet uploads, and a failed export deletes what it wrote.
                actions=["s3:PutObject", "s3:GetObject", "s3:AbortMultipartUpload", "s3:DeleteObject"],
                resources=[self._object_arn(f"{pd.RUNS_PREFIX}*")],
            ),
            iam.PolicyStatement(
                sid="ListRunData",
                actions=["s3:ListBucket"],
                resources=[self._bucket_arn()],
                conditions={"StringLike": {"s3:prefix": [f"{pd.RUNS_PREFIX}*"]}},
            ),
            iam.PolicyStatement(
                sid="EncryptRunDataViaS3",
                actions=["kms:GenerateDataKey", "kms:Decrypt"],
                resources=[key.key_arn],
                conditions={"StringEquals": {"kms:ViaService": self._via("s3")}},
            ),
            vpc_function_statement(),
        )
        role = least_privilege_role(
            self,
            "ExportRole",
            service="lambda.amazonaws.com",
            description=f"snowsage {env_name} training export: Snowflake parameters, the run prefix, own logs",
            statements=list(statements),
        )
        self._skip_checkov_on_policy(
            "ExportRole",
            "CKV_AWS_111",
            "Only ENI management for a VPC function and X-Ray segments are unscoped.",
        )
        function = vpc_function(
            self,
            "ExportFunction",
            code=code,
            role=role,
            vpc=vpc,
            subnets=subnets,
            security_group=security_group,
            log_group=group,
            function_name=self.names.export_function,
            timeout=timeout,
            memory_size=2048,
            description=f"snowsage {env_name}: exports the training data from Snowflake to the run's S3 prefix",
            environment={"POWERTOOLS_SERVICE_NAME": self.names.export_function, **environment},
        )
        for pack in ("NIST.800.53.R5", "HIPAA.Security"):
            acknowledge(
                function,
                f"{pack}-LambdaDLQ",
                "Invoked synchronously by the pipeline's Export step, which receives the error and fails "
                "the run (the failure rule notifies); a dead-letter queue applies to asynchronous invocations only.",
            )
        checkov_skip(
            function,
            "CKV_AWS_116",
            "Invoked synchronously by the pipeline's Export step, which fails the run with the error; no async invocations.",
        )
        checkov_skip(
            function,
            "CKV_AWS_173",
            "The environment holds settings and parameter names only, never a secret.",
        )
        acknowledge_vpc_function_wildcard(self._policy("ExportRole"))
        for resource in (self._object_arn(f"{pd.RUNS_PREFIX}*"),):
            acknowledge(
                self._policy("ExportRole"),
                wildcard_finding(resource),
                "The export writes each run under its own execution id, known only at run time, inside the runs prefix.",
            )
        return function, role

    def _build_training_role(self, env_name: str) -> iam.Role:
        stack = cdk.Stack.of(self)
        jobs_log_group = stack.format_arn(
            service="logs",
            resource="log-group",
            resource_name="/aws/sagemaker/TrainingJobs",
            arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME,
        )
        statements = [
            iam.PolicyStatement(
                sid="ReadRunData",
                actions=["s3:GetObject"],
                resources=[self._object_arn(f"{pd.RUNS_PREFIX}*")],
            ),
            iam.PolicyStatement(
                sid="ListRunData",
                actions=["s3:ListBucket"],
                resources=[self._bucket_arn()],
                conditions={"StringLike": {"s3:prefix": [f"{pd.RUNS_PREFIX}*"]}},
            ),
            iam.PolicyStatement(
                sid="WriteModelAndCheckpoints",
                actions=["s3:PutObject"],
                resources=[
                    self._object_arn(f"{pd.RUNS_PREFIX}*/model/*"),
                    self._object_arn(f"{pd.RUNS_PREFIX}*/checkpoints/*"),
                ],
            ),
            iam.PolicyStatement(
                sid="EncryptRunDataViaS3",
                actions=["kms:GenerateDataKey", "kms:Decrypt", "kms:Encrypt"],
                resources=[self.key.key_arn],
                conditions={"StringEquals": {"kms:ViaService": self._via("s3")}},
            ),
            # The instances' volumes are encrypted with the key (VolumeKmsKeyId): SageMaker attaches
            # them through a grant, which only an AWS service may create.
            iam.PolicyStatement(
                sid="EncryptVolumesThroughAGrant",
                actions=["kms:CreateGrant"],
                resources=[self.key.key_arn],
                conditions={"Bool": {"kms:GrantIsForAWSResource": "true"}},
            ),
            iam.PolicyStatement(
                sid="WriteJobLogs",
                actions=["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
                resources=[f"{jobs_log_group}:log-stream:{PIPELINE_JOB_PREFIX}*"],
            ),
            iam.PolicyStatement(
                sid="CreateJobLogGroup",
                actions=["logs:CreateLogGroup"],
                resources=[jobs_log_group],
            ),
            iam.PolicyStatement(
                sid="PutTrainingMetrics",
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],
                conditions={"StringEquals": {"cloudwatch:namespace": "/aws/sagemaker/TrainingJobs"}},
            ),
            # A job in a VPC gets network interfaces in its subnets; these APIs take no resource.
            iam.PolicyStatement(
                sid="VpcNetworkInterfaces",
                actions=[
                    "ec2:CreateNetworkInterface",
                    "ec2:CreateNetworkInterfacePermission",
                    "ec2:DeleteNetworkInterface",
                    "ec2:DeleteNetworkInterfacePermission",
                    "ec2:DescribeNetworkInterfaces",
                    "ec2:DescribeVpcs",
                    "ec2:DescribeDhcpOptions",
                    "ec2:DescribeSubnets",
                    "ec2:DescribeSecurityGroups",
                ],
                resources=["*"],
            ),
        ]
        role = least_privilege_role(
            self,
            "TrainingRole",
            service="sagemaker.amazonaws.com",
            description=f"snowsage {env_name} training jobs: read the run's data, write its model and checkpoints",
            statements=statements,
            trust_conditions={"StringEquals": {"aws:SourceAccount": stack.account}},
        )
        self._skip_checkov_on_policy(
            "TrainingRole",
            "CKV_AWS_111",
            "Only ENI management for a VPC training job and namespaced metrics are unscoped.",
        )
        for resource in (
            self._object_arn(f"{pd.RUNS_PREFIX}*"),
            self._object_arn(f"{pd.RUNS_PREFIX}*/model/*"),
            self._object_arn(f"{pd.RUNS_PREFIX}*/checkpoints/*"),
            f"{jobs_log_group}:log-stream:{PIPELINE_JOB_PREFIX}*",
        ):
            acknowledge(
                self._policy("TrainingRole"),
                wildcard_finding(resource),
                "Each run writes under its own execution id, which exists only at run time; the wildcard "
                "is the run (or job) name inside the exact prefix.",
            )
        acknowledge(
            self._policy("TrainingRole"),
            "AwsSolutions-IAM5[Resource::*]",
            "ENI management for a training job in a VPC and PutMetricData (limited to the training "
            "namespace by condition) do not support resource-level permissions.",
        )
        return role

    def _build_pipeline_role(self, env_name: str) -> iam.Role:
        stack = cdk.Stack.of(self)
        jobs = stack.format_arn(
            service="sagemaker", resource="training-job", resource_name=f"{PIPELINE_JOB_PREFIX}*"
        )
        group = stack.format_arn(
            service="sagemaker", resource="model-package-group", resource_name=self.names.model_package_group
        )
        packages = stack.format_arn(
            service="sagemaker", resource="model-package", resource_name=f"{self.names.model_package_group}/*"
        )
        statements = [
            iam.PolicyStatement(
                sid="InvokeExport",
                actions=["lambda:InvokeFunction"],
                resources=[self.export_function.function_arn],
            ),
            # The pipeline can only start jobs that are isolated and encrypt traffic between nodes.
            iam.PolicyStatement(
                sid="StartIsolatedTrainingJobs",
                actions=["sagemaker:CreateTrainingJob"],
                resources=[jobs],
                conditions={
                    "Bool": {
                        "sagemaker:NetworkIsolation": "true",
                        "sagemaker:InterContainerTrafficEncryption": "true",
                    }
                },
            ),
            iam.PolicyStatement(
                sid="FollowTrainingJobs",
                actions=["sagemaker:DescribeTrainingJob", "sagemaker:StopTrainingJob", "sagemaker:AddTags"],
                resources=[jobs],
            ),
            iam.PolicyStatement(
                sid="RegisterModels",
                actions=[
                    "sagemaker:CreateModelPackage",
                    "sagemaker:DescribeModelPackage",
                    "sagemaker:AddTags",
                ],
                resources=[group, packages],
            ),
            iam.PolicyStatement(
                sid="PassTrainingRole",
                actions=["iam:PassRole"],
                resources=[self.training_role.role_arn],
                conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
            ),
        ]
        role = least_privilege_role(
            self,
            "PipelineRole",
            service="sagemaker.amazonaws.com",
            description=f"snowsage {env_name} training pipeline: invoke the export, run the job, register the model",
            statements=statements,
            trust_conditions={"StringEquals": {"aws:SourceAccount": stack.account}},
        )
        for resource, reason in (
            (
                jobs,
                "SageMaker Pipelines names each job it starts pipelines-<execution>-..., known only at run time.",
            ),
            (packages, "Each registered model is a new version in this one package group."),
        ):
            acknowledge(self._policy("PipelineRole"), wildcard_finding(resource), reason)
        return role

    def _build_failure_rule(self, env_name: str, topic: sns.ITopic) -> events.Rule:
        detail = events.EventField.from_path
        message = events.RuleTargetInput.from_multiline_text(
            f"snowsage {env_name}: training pipeline run {detail('$.detail.pipelineExecutionDisplayName')} ended "
            f"{detail('$.detail.currentPipelineExecutionStatus')} "
            f"({detail('$.detail.pipelineExecutionArn')}). Run `snowsage train status` for the failing step and its reason."
        )
        return events.Rule(
            self,
            "FailureRule",
            rule_name=self.names.failure_rule,
            description=f"snowsage {env_name}: a training pipeline run failed or was stopped",
            event_pattern=events.EventPattern(
                source=["aws.sagemaker"],
                detail_type=[PIPELINE_EXECUTION_STATUS_CHANGE],
                detail={
                    "currentPipelineExecutionStatus": ["Failed", "Stopped"],
                    "pipelineArn": [self.pipeline_arn],
                },
            ),
            targets=[_TopicTarget(topic, message)],
        )

    def _build_schedule(self, env_name: str, schedule: TrainingSchedule) -> scheduler.CfnSchedule:
        stack = cdk.Stack.of(self)
        self.schedule_dead_letters = dead_letter_queue(
            self,
            "ScheduleDeadLetters",
            queue_name=self.names.schedule_dead_letter_queue,
            key=self.key,
            owner="the training schedule",
        )
        # Scheduler assumes the role naming the schedule's group as aws:SourceArn (confused-deputy guard).
        schedule_group_arn = stack.format_arn(
            service="scheduler", resource="schedule-group", resource_name="default"
        )
        role = least_privilege_role(
            self,
            "ScheduleRole",
            service="scheduler.amazonaws.com",
            description=f"snowsage {env_name} training schedule: start this pipeline, dead-letter what fails",
            trust_conditions={
                "StringEquals": {"aws:SourceAccount": stack.account},
                "ArnEquals": {"aws:SourceArn": schedule_group_arn},
            },
            statements=[
                iam.PolicyStatement(
                    sid="StartThisPipeline",
                    actions=["sagemaker:StartPipelineExecution"],
                    resources=[self.pipeline_arn],
                ),
                iam.PolicyStatement(
                    sid="DeadLetterFailedStarts",
                    actions=["sqs:SendMessage"],
                    resources=[self.schedule_dead_letters.queue_arn],
                ),
                encrypt_dead_letters_statement(self.key, self),
                # The schedule's target input is stored under the key; Scheduler decrypts it as this role.
                iam.PolicyStatement(
                    sid="DecryptScheduleViaScheduler",
                    actions=["kms:Decrypt"],
                    resources=[self.key.key_arn],
                    conditions={"StringEquals": {"kms:ViaService": self._via("scheduler")}},
                ),
            ],
        )
        return scheduler.CfnSchedule(
            self,
            "Schedule",
            name=self.names.schedule,
            description=f"snowsage {env_name}: start the training pipeline",
            schedule_expression=schedule.expression,
            schedule_expression_timezone=schedule.time_zone,
            flexible_time_window=scheduler.CfnSchedule.FlexibleTimeWindowProperty(mode="OFF"),
            kms_key_arn=self.key.key_arn,
            state="ENABLED",
            target=scheduler.CfnSchedule.TargetProperty(
                # EventBridge Scheduler's universal target: the SDK call, nothing else.
                arn=f"arn:{cdk.Aws.PARTITION}:scheduler:::aws-sdk:sagemaker:startPipelineExecution",
                role_arn=role.role_arn,
                input=json.dumps(
                    {
                        "PipelineName": self.names.pipeline,
                        "PipelineExecutionDescription": "scheduled by EventBridge Scheduler",
                    }
                ),
                retry_policy=scheduler.CfnSchedule.RetryPolicyProperty(
                    maximum_retry_attempts=3, maximum_event_age_in_seconds=3600
                ),
                dead_letter_config=scheduler.CfnSchedule.DeadLetterConfigProperty(
                    arn=self.schedule_dead_letters.queue_arn
                ),
            ),
        )

    def _build_alarms(self, env_name: str, schedule: TrainingSchedule) -> list[cloudwatch.Alarm]:
        assert self.schedule_dead_letters is not None
        return [
            cloudwatch.Alarm(
                self,
                "HeartbeatAlarm",
                alarm_name=f"{self.names.alarm_prefix}{ALARM_SUFFIXES[0]}",
                alarm_description=f"snowsage {env_name}: no successful training run in {HEARTBEAT_PERIODS} schedule "
                "periods (schedule failing to start it, runs failing, or the gate refusing every model); run "
                "`snowsage train runs`",
                metric=cloudwatch.Metric(
                    namespace=PIPELINE_METRICS_NAMESPACE,
                    metric_name="ExecutionSucceeded",
                    dimensions_map={"PipelineName": self.names.pipeline},
                    statistic="Sum",
                    period=cdk.Duration.seconds(schedule.period_seconds),
                ),
                threshold=1,
                evaluation_periods=HEARTBEAT_PERIODS,
                datapoints_to_alarm=HEARTBEAT_PERIODS,
                comparison_operator=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
                # Silence is the failure this alarm exists for.
                treat_missing_data=cloudwatch.TreatMissingData.BREACHING,
            ),
            dead_letter_alarm(
                self,
                "ScheduleDeadLetterAlarm",
                self.schedule_dead_letters,
                alarm_name=f"{self.names.alarm_prefix}{ALARM_SUFFIXES[1]}",
                alarm_description=f"snowsage {env_name}: the schedule could not start the training pipeline "
                f"(message in {self.names.schedule_dead_letter_queue}); read it, fix, then purge the queue",
            ),
        ]

    def _allow_publishing(self, topic: sns.ITopic) -> None:
        """The topic's and its key's policies must let EventBridge (this rule) and CloudWatch (these
        alarms) publish, or every notification is dropped on real AWS."""
        stack = cdk.Stack.of(self)
        rule_arn = stack.format_arn(service="events", resource="rule", resource_name=self.names.failure_rule)
        statements = [
            iam.PolicyStatement(
                sid="AllowTrainingFailureRuleToPublish",
                principals=[iam.ServicePrincipal("events.amazonaws.com")],
                actions=["sns:Publish"],
                resources=[topic.topic_arn],
                conditions={"ArnEquals": {"aws:SourceArn": rule_arn}},
            )
        ]
        if self.alarms:
            statements.append(
                iam.PolicyStatement(
                    sid="AllowTrainingAlarmsToPublish",
                    principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                    actions=["sns:Publish"],
                    resources=[topic.topic_arn],
                    conditions={
                        "ArnEquals": {"aws:SourceArn": [self._alarm_arn(n) for n in self.alarm_names]},
                        "StringEquals": {"aws:SourceAccount": stack.account},
                    },
                )
            )
        for statement in statements:
            if not topic.add_to_resource_policy(statement).statement_added:
                raise ValueError(
                    f"the alarm topic {topic.node.path} is imported, so its policy cannot let the training "
                    "failure rule publish; pass the sns.Topic construct that owns the topic"
                )
        key = topic.master_key
        if key is None:
            return
        # EventBridge sends no aws:SourceArn/SourceAccount to KMS for an encrypted topic (AWS
        # documents this grant without them); the topic policy above is what limits it to our rule.
        key_statements = [
            iam.PolicyStatement(
                sid="AllowEventBridgeToPublishToEncryptedTopic",
                principals=[iam.ServicePrincipal("events.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],
            )
        ]
        if self.alarms:
            key_statements.append(
                alarms_use_key_statement(
                    "AllowTrainingAlarmsToPublishToEncryptedTopic", self, self.names.alarm_prefix
                )
            )
        for statement in key_statements:
            if not key.add_to_resource_policy(statement).statement_added:
                raise ValueError(
                    f"the alarm topic's key {key.node.path} is imported, so its policy cannot let EventBridge "
                    "publish to the encrypted topic; pass the kms.Key construct that owns the key"
                )

    def _alarm_arn(self, name: str) -> str:
        # By name, not by token: the topic may live in a stack this one depends on.
        return cdk.Stack.of(self).format_arn(
            service="cloudwatch",
            resource="alarm",
            resource_name=name,
            arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME,
        )

    def _bucket_arn(self) -> str:
        return f"arn:{cdk.Aws.PARTITION}:s3:::{self.bucket_name}"

    def _object_arn(self, key_pattern: str) -> str:
        return f"{self._bucket_arn()}/{key_pattern}"

    def _via(self, service: str) -> str:
        return f"{service}.{cdk.Stack.of(self).region}.amazonaws.com"

    def _policy(self, role_id: str) -> IConstruct:
        """The managed policy least_privilege_role put beside the role (its id + "Policy")."""
        return self.node.find_child(f"{role_id}Policy")

    def _skip_checkov_on_policy(self, role_id: str, check_id: str, reason: str) -> None:
        checkov_skip(self._policy(role_id), check_id, reason)


__all__ = [
    "EXPORT_SOURCE",
    "ParameterReader",
    "Training",
    "TrainingNames",
    "TrainingSchedule",
    "export_code",
]
