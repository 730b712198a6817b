"""What the user touches: the notebook instance and the connectivity check."""

from __future__ import annotations

import aws_cdk as cdk
from constructs import Construct

from snowsage.settings import TRAINING_OUTPUT_KEYS, TRAINING_SETTINGS_KEY, RuntimeSettings

from .base import SnowSageStack
from .config import AppConfig
from .constructs.connectivity_check import CheckNames, ConnectivityCheck
from .constructs.lambda_defaults import retention
from .constructs.notebook import Notebook, TrainingAccess
from .constructs.training import pipeline_definition as pd
from .constructs.training.training import PIPELINE_JOB_PREFIX, TrainingNames
from .data_stack import DataStack
from .network_stack import NetworkStack


class NotebookStack(SnowSageStack):
    KIND = "Notebook"
    DESCRIPTION = "snowsage: SageMaker notebook and Snowflake connectivity check"

    def __init__(
        self,
        scope: Construct,
        *,
        cfg: AppConfig,
        env: cdk.Environment,
        data: DataStack,
        network: NetworkStack,
    ) -> None:
        super().__init__(scope, cfg=cfg, env=env)
        notebook_name = f"snowsage-{cfg.env_name}"
        check_names = CheckNames.for_env(cfg.env_name)
        self.node.add_dependency(data)  # the bucket is referenced by name, not by token
        settings = RuntimeSettings(
            env_name=cfg.env_name,
            region=self.region,
            auth=cfg.auth,
            parameters=data.parameters.parameter_names,
            user=cfg.snowflake_user,
            bucket=data.results.bucket_name,
            notebook_name=notebook_name,
            check_function=check_names.function,
        )
        settings_json = self.to_json_string(settings.to_dict())
        # The Training stack (built after this one, stacks/app_builder.py) names its pipeline, group
        # and export function from the env: the notebook finds them in its settings file by the
        # Training stack's output keys, and its role gets exactly those resources.
        names = TrainingNames.for_env(cfg.env_name)
        training = TrainingAccess(
            pipeline=names.pipeline,
            model_package_group=names.model_package_group,
            runs_prefix=pd.RUNS_PREFIX,
            job_prefix=PIPELINE_JOB_PREFIX,
        )
        notebook_settings = RuntimeSettings.from_dict(
            {
                **settings.to_dict(),
                "extra": {
                    TRAINING_SETTINGS_KEY: dict(
                        zip(
                            TRAINING_OUTPUT_KEYS,
                            (names.pipeline, names.model_package_group, names.export_function),
                            strict=True,
                        )
                    )
                },
            }
        )
        net = network.network
        subnets = net.vpc.select_subnets(subnet_type=net.private_subnets.subnet_type).subnets

        self.check = ConnectivityCheck(
            self,
            "Check",
            env_name=cfg.env_name,
            names=check_names,
            key=data.key,
            vpc=net.vpc,
            subnets=net.private_subnets,
            security_group=net.function_sg,
            parameters=data.parameters,
            settings_json=settings_json,
            log_retention=retention(cfg.log_retention_days),
            schedule=cfg.check_schedule,
            schedule_period_seconds=cfg.check_period_seconds,
            alarm_email=cfg.alarm_email,
        )
        self.notebook = Notebook(
            self,
            "Notebook",
            name=notebook_name,
            instance_type=cfg.notebook_instance_type,
            volume_gb=cfg.notebook_volume_gb,
            platform=cfg.notebook_platform,
            key=data.key,
            parameters=data.parameters,
            results=data.results,
            subnet=subnets[0],
            security_group=net.notebook_sg,
            settings_json=self.to_json_string(notebook_settings.to_dict()),
            network_mode=cfg.network,
            idle_stop_minutes=cfg.idle_stop_minutes,
            backup_minutes=cfg.backup_minutes,
            training=training,
        )
        outputs = {
            "RuntimeSettings": (
                settings_json,
                "Where the runtime finds its settings (read by the snowsage CLI)",
            ),
            "NotebookName": (notebook_name, "SageMaker notebook instance (`snowsage notebook url --open`)"),
            "CheckFunctionName": (self.check.function.function_name, "Connectivity check (`snowsage check`)"),
            "NotebookRoleArn": (
                self.notebook.role.role_arn,
                "Notebook execution role (for Snowflake workload identity)",
            ),
            "CheckFunctionRoleArn": (
                self.check.role.role_arn,
                "Check function role (for Snowflake workload identity)",
            ),
            "AlarmTopicArn": (
                self.check.topic.topic_arn,
                "Every check alarm (failed, errors, dead letters, heartbeat) notifies this topic",
            ),
        }
        for key, (value, description) in outputs.items():
            cdk.CfnOutput(self, key, value=value, description=description)
