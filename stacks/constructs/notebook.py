"""The SageMaker notebook instance, its lifecycle configuration, its offline wheelhouse and its role.

Posture: no direct internet, no root, IMDSv2 only, volume encrypted with our key, in a private
subnet behind the notebook security group; the role reads exactly our parameters and bucket, and,
with ``training``, starts and follows exactly the training pipeline and reads its models.
"""

from __future__ import annotations

import base64
import hashlib
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import aws_cdk as cdk
import jsii
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from snowsage.notebook import RESULTS_PREFIX

from .bundling import REPO_ROOT, content_digest, link_tree, pip_target, snowsage_wheel
from .nag import acknowledge, wildcard_finding
from .parameters import SnowflakeParameters
from .results_bucket import ResultsBucket

LIFECYCLE_DIR = REPO_ROOT / "notebook_lifecycle"
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
LIFECYCLE_SCRIPT_LIMIT = 16_384
NOTEBOOK_PYTHON = "3.10"  # conda_python3's on notebook-al2023-v1: the snowsage kernel's env is made from it


@dataclass(frozen=True)
class TrainingAccess:
    """The training pipeline the notebook drives (snowsage.pipeline), by the fixed names the
    Training stack gives it: that stack is deployed after this one, so no reference is possible."""

    pipeline: str
    model_package_group: str
    runs_prefix: str  # where each run's manifest and model live in the results bucket
    job_prefix: str  # how SageMaker Pipelines names the training jobs it starts


def render_script(text: str, values: Mapping[str, str]) -> str:
    """Replace ``@@NAME@@`` placeholders; any left over is a bug caught at synth, not on the instance."""
    for name, value in values.items():
        text = text.replace(f"@@{name}@@", value)
    # "@@NAME@@" itself is how the scripts' OVERVIEW comments describe the convention.
    leftover = sorted(set(re.findall(r"@@([A-Z][A-Z0-9_]*)@@", text)) - {"NAME"})
    if leftover:
        raise ValueError(f"lifecycle script placeholders without a value: {', '.join(leftover)}")
    return text


@jsii.implements(cdk.ILocalBundling)
class WheelhouseBundling:
    """wheels/ (pinned notebook requirements for cp310 x86_64 plus a snowsage wheel), tools/ (uv,
    which installs them), requirements.txt, the example notebook and the lifecycle helper scripts."""

    def try_bundle(self, output_dir: str, options: cdk.BundlingOptions) -> bool:
        out = Path(output_dir)
        requirements = LIFECYCLE_DIR / "requirements.txt"
        wheels = pip_target(requirements, python_version=NOTEBOOK_PYTHON, arch="x86_64", mode="download")
        link_tree(wheels, out / "wheels")
        link_tree(snowsage_wheel(), out / "wheels")
        tools = pip_target(
            LIFECYCLE_DIR / "tools.txt", python_version=NOTEBOOK_PYTHON, arch="x86_64", mode="download"
        )
        link_tree(tools, out / "tools")
        shutil.copy2(requirements, out / "requirements.txt")
        (out / "notebooks").mkdir(exist_ok=True)
        for nb in NOTEBOOKS_DIR.glob("*.ipynb"):
            shutil.copy2(nb, out / "notebooks" / nb.name)
        for helper in ("idle_stop.py", "install_wheels.sh"):
            shutil.copy2(LIFECYCLE_DIR / helper, out / helper)
        return True


class Notebook(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        name: str,
        instance_type: str,
        volume_gb: int,
        platform: str,
        key: kms.IKey,
        parameters: SnowflakeParameters,
        results: ResultsBucket,
        subnet: ec2.ISubnet,
        security_group: ec2.ISecurityGroup,
        settings_json: str,
        network_mode: str,
        idle_stop_minutes: int,
        backup_minutes: int,
        training: TrainingAccess | None = None,
    ) -> None:
        super().__init__(scope, id)
        stack = cdk.Stack.of(self)
        self.name = name
        self.wheelhouse = s3_assets.Asset(
            self,
            "Wheelhouse",
            path=str(LIFECYCLE_DIR),
            asset_hash_type=cdk.AssetHashType.CUSTOM,
            asset_hash=_wheelhouse_hash(),
            bundling=cdk.BundlingOptions(
                image=cdk.DockerImage.from_registry("local-bundling-only"),
                local=WheelhouseBundling(),  # type: ignore[arg-type]  # jsii passes options positionally
            ),
        )
        self.role = iam.Role(
            self,
            "Role",
            # Confused-deputy guard: SageMaker may assume the role only for this account. AWS's
            # SageMaker guide documents aws:SourceArn values for jobs, endpoints, pipelines and
            # Studio but not for notebook instances, and a condition on a key the service does not
            # send would stop the notebook from starting, so the ARN is not pinned.
            assumed_by=iam.ServicePrincipal(
                "sagemaker.amazonaws.com", conditions={"StringEquals": {"aws:SourceAccount": stack.account}}
            ),
            description=f"snowsage notebook {name}: read its Snowflake parameters, use its bucket, stop itself",
        )
        # What the notebook touches in the bucket: to_s3/read_s3 under results/, and its own backup
        # (on_create.sh restores it, the on_start.sh cron syncs to it). Another notebook's backup,
        # or anything else a later feature puts in the bucket, stays out of reach.
        self.backup_prefix = f"backups/{name}/"
        own_prefixes = [RESULTS_PREFIX, self.backup_prefix]
        log_streams_arn = f"arn:{stack.partition}:logs:{stack.region}:{stack.account}:log-group:/aws/sagemaker/NotebookInstances"
        notebook_arn = stack.format_arn(
            service="sagemaker", resource="notebook-instance", resource_name=name.lower()
        )
        self.policy = iam.ManagedPolicy(
            self, "Policy", description=f"snowsage notebook {name}: exactly what the notebook needs"
        )
        parameters.grant_read(self.policy)
        # `aws s3 sync` lists the backup prefix; listing results/ lets a user see them.
        results.grant_read_write(self.policy, own_prefixes)
        self.policy.add_statements(
            iam.PolicyStatement(
                sid="ReadWheelhouse",
                actions=["s3:GetObject"],
                resources=[
                    stack.format_arn(
                        service="s3",
                        region="",
                        account="",
                        resource=self.wheelhouse.s3_bucket_name,
                        resource_name=self.wheelhouse.s3_object_key,
                    )
                ],
            ),
            iam.PolicyStatement(
                sid="WriteOwnLifecycleAndJupyterLogs",
                actions=[
                    "logs:CreateLogGroup",
                    "logs:CreateLogStream",
                    "logs:PutLogEvents",
                    "logs:DescribeLogStreams",
                ],
                resources=[log_streams_arn, f"{log_streams_arn}:log-stream:{name}/*"],
            ),
            iam.PolicyStatement(
                sid="IdleStopItself",
                actions=["sagemaker:DescribeNotebookInstance", "sagemaker:StopNotebookInstance"],
                resources=[notebook_arn],
            ),
        )
        if training is not None:
            self._grant_training(training, results)
        self.role.add_managed_policy(self.policy)
        acknowledge(
            self.policy,
            wildcard_finding(f"{log_streams_arn}:log-stream:{name}/*"),
            "SageMaker names this notebook's log streams <notebook>/LifecycleConfigOnStart, "
            "<notebook>/jupyter.log, ...; the wildcard covers only this notebook's streams.",
        )
        for prefix, reason in zip(
            own_prefixes,
            (
                "to_s3/read_s3 write and read Parquet results under results/<name>.parquet, names the "
                "data scientist chooses; the wildcard covers only the results/ prefix.",
                "The backup cron syncs the notebook's home folder, any file name, to its own "
                f"backups/{name}/ prefix and on_create restores from it; no other notebook's backup.",
            ),
            strict=True,
        ):
            acknowledge(self.policy, wildcard_finding(results.objects_arn(prefix)), reason)

        values = {
            "SETTINGS_B64": cdk.Fn.base64(settings_json),
            "WHEELHOUSE_S3_URI": self.wheelhouse.s3_object_url,
            "NETWORK_MODE": network_mode,
            "IDLE_STOP_MINUTES": str(idle_stop_minutes),
            "BACKUP_MINUTES": str(backup_minutes),
            "BACKUP_S3_URI": f"s3://{results.bucket_name}/{self.backup_prefix}",
            "AWS_REGION": stack.region,
        }
        scripts = {}
        for phase in ("on_create", "on_start"):
            text = (LIFECYCLE_DIR / f"{phase}.sh").read_text()
            rendered = render_script(text, values)
            scripts[phase] = rendered
        self.lifecycle = sagemaker.CfnNotebookInstanceLifecycleConfig(
            self,
            "Lifecycle",
            notebook_instance_lifecycle_config_name=f"{name}-lifecycle",
            on_create=[
                sagemaker.CfnNotebookInstanceLifecycleConfig.NotebookInstanceLifecycleHookProperty(
                    content=cdk.Fn.base64(scripts["on_create"])
                )
            ],
            on_start=[
                sagemaker.CfnNotebookInstanceLifecycleConfig.NotebookInstanceLifecycleHookProperty(
                    content=cdk.Fn.base64(scripts["on_start"])
                )
            ],
        )
        self.instance = sagemaker.CfnNotebookInstance(
            self,
            "Instance",
            notebook_instance_name=name,
            instance_type=instance_type,
            role_arn=self.role.role_arn,
            direct_internet_access="Disabled",
            root_access="Disabled",
            kms_key_id=key.key_id,
            subnet_id=subnet.subnet_id,
            security_group_ids=[security_group.security_group_id],
            volume_size_in_gb=volume_gb,
            platform_identifier=platform,
            lifecycle_config_name=self.lifecycle.attr_notebook_instance_lifecycle_config_name,
            instance_metadata_service_configuration=sagemaker.CfnNotebookInstance.InstanceMetadataServiceConfigurationProperty(
                minimum_instance_metadata_service_version="2"
            ),
        )
        # The role's policy must exist before the instance starts and runs its lifecycle script.
        self.instance.node.add_dependency(self.policy)

    def _grant_training(self, training: TrainingAccess, results: ResultsBucket) -> None:
        """What snowsage.pipeline calls, on this pipeline, its runs and jobs, and its model group."""
        stack = cdk.Stack.of(self)

        def arn(resource: str, name: str) -> str:
            return stack.format_arn(service="sagemaker", resource=resource, resource_name=name)

        pipeline = arn("pipeline", training.pipeline)
        executions = f"{pipeline}/execution/*"
        jobs = arn("training-job", f"{training.job_prefix}*")
        group = arn("model-package-group", training.model_package_group)
        packages = arn("model-package", f"{training.model_package_group}/*")
        artefacts = [
            f"{results.bucket_arn}/{training.runs_prefix}*/model/*",
            f"{results.bucket_arn}/{training.runs_prefix}*/manifest.json",
        ]
        self.policy.add_statements(
            iam.PolicyStatement(
                sid="StartTrainingPipeline",
                actions=[
                    "sagemaker:DescribePipeline",
                    "sagemaker:StartPipelineExecution",
                    "sagemaker:ListPipelineExecutions",
                ],
                resources=[pipeline],
            ),
            iam.PolicyStatement(
                sid="FollowTrainingRuns",
                actions=[
                    "sagemaker:DescribePipelineExecution",
                    "sagemaker:ListPipelineExecutionSteps",
                    "sagemaker:ListPipelineParametersForExecution",
                ],
                resources=[executions],
            ),
            iam.PolicyStatement(
                sid="ReadTrainingJobMetrics", actions=["sagemaker:DescribeTrainingJob"], resources=[jobs]
            ),
            iam.PolicyStatement(
                sid="ReadRegisteredModels",
                actions=["sagemaker:DescribeModelPackage", "sagemaker:DescribeModelPackageGroup"],
                resources=[group, packages],
            ),
            # ListModelPackages has no resource type (Service Authorization Reference): it takes "*"
            # and returns summaries; reading a package is limited to this group above.
            iam.PolicyStatement(
                sid="ListRegisteredModels", actions=["sagemaker:ListModelPackages"], resources=["*"]
            ),
            # The bucket key is already usable through S3 (grant_read_write's UseResultsBucketKeyViaS3).
            iam.PolicyStatement(sid="ReadModelArtefacts", actions=["s3:GetObject"], resources=artefacts),
        )
        for resource, reason in (
            (executions, "Each run of this one pipeline has an execution id known only at run time."),
            (
                jobs,
                "SageMaker Pipelines names each training job it starts pipelines-<execution>-..., known "
                "only at run time; the notebook only reads their final metrics.",
            ),
            (packages, "Each registered model is a new version in this one package group."),
            (
                "*",
                "sagemaker:ListModelPackages supports no resource-level permission; reading a package "
                "(DescribeModelPackage) is limited to this one group.",
            ),
            *(
                (a, "Each run's model and manifest live under its own execution id inside the runs prefix.")
                for a in artefacts
            ),
        ):
            acknowledge(self.policy, wildcard_finding(resource), reason)


def _wheelhouse_hash() -> str:
    return hashlib.sha256(
        content_digest(LIFECYCLE_DIR, NOTEBOOKS_DIR, REPO_ROOT / "snowsage", REPO_ROOT / "pyproject.toml")
    ).hexdigest()


def decode_lifecycle(content_b64: str) -> str:
    return base64.b64decode(content_b64).decode()
