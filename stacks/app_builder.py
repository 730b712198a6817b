"""Compose the four stacks from one AppConfig and attach the compliance packs."""

from __future__ import annotations

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks, HIPAASecurityChecks, NIST80053R5Checks

from snowsage.settings import SETTINGS_ENV_VAR, RuntimeSettings, stack_name
from snowsage.training.spec import EXPORT_CONFIG_ENV_VAR, export_config

from .config import AppConfig
from .constructs.lambda_defaults import retention
from .constructs.training.training import TrainingSchedule
from .data_stack import DataStack
from .network_stack import NetworkStack
from .notebook_stack import NotebookStack
from .training_stack import TrainingOptions, TrainingStack, UnloadTrust


def training_options(cfg: AppConfig) -> TrainingOptions:
    period = cfg.training_period_seconds
    schedule = (
        TrainingSchedule(cfg.training_schedule, period, cfg.training_schedule_time_zone)
        if cfg.training_schedule and period
        else None
    )
    return TrainingOptions(
        objective=cfg.training_objective,
        metric_threshold=cfg.training_metric_threshold,
        instance_type=cfg.training_instance_type,
        instance_count=cfg.training_instance_count,
        minimum_rows=cfg.training_minimum_rows,
        spot=cfg.training_spot,
        max_runtime_seconds=cfg.training_max_runtime_minutes * 60,
        hyperparameters=dict(cfg.training_hyperparameters),
        schedule=schedule,
        run_retention_days=cfg.training_run_retention_days,
        unload=(
            UnloadTrust(cfg.training_storage_aws_iam_user_arn, cfg.training_storage_aws_external_id)
            if cfg.training_exporter == "unload"
            and cfg.training_storage_aws_iam_user_arn
            and cfg.training_storage_aws_external_id
            else None
        ),
    )


def build_training(
    app: cdk.App,
    cfg: AppConfig,
    *,
    env: cdk.Environment,
    data: DataStack,
    network: NetworkStack,
    notebook: NotebookStack,
) -> TrainingStack:
    net = network.network
    # The export function connects as the check does: the same settings document, minus the
    # notebook's own names. Parameter names and the bucket only, never a secret.
    settings = RuntimeSettings(
        env_name=cfg.env_name,
        region=cfg.region,
        auth=cfg.auth,
        parameters=data.parameters.parameter_names,
        user=cfg.snowflake_user,
        bucket=data.results.bucket_name,
    )
    export = export_config(**cfg.training_export_fields(), kms_key_id=data.key.key_arn)
    stack = TrainingStack(
        app,
        stack_name(cfg.env_name, TrainingStack.KIND),
        env=env,
        description=TrainingStack.DESCRIPTION,
        env_name=cfg.env_name,
        key=data.key,
        vpc=net.vpc,
        subnets=net.private_subnets,
        s3_prefix_list_id=cfg.training_s3_prefix_list_id,
        bucket_name=data.results.bucket_name,
        export_security_group=net.function_sg,
        alarm_topic=notebook.check.topic,
        log_retention=retention(cfg.log_retention_days),
        options=training_options(cfg),
        parameters=data.parameters,
        export_environment={SETTINGS_ENV_VAR: settings.to_json(), EXPORT_CONFIG_ENV_VAR: export},
    )
    data.results.add_lifecycle_rule(stack.training.run_data_lifecycle_rule)
    return stack


def build_app(
    app: cdk.App, cfg: AppConfig, *, default_account: str | None = None, nag: bool = True
) -> dict[str, cdk.Stack]:
    env = cdk.Environment(account=cfg.account or default_account, region=cfg.region)
    data = DataStack(app, cfg=cfg, env=env)
    network = NetworkStack(app, cfg=cfg, env=env, key=data.key)
    notebook = NotebookStack(app, cfg=cfg, env=env, data=data, network=network)
    training = build_training(app, cfg, env=env, data=data, network=network, notebook=notebook)
    if nag:
        cdk.Validations.of(app).add_plugins(
            AwsSolutionsChecks(app), NIST80053R5Checks(app), HIPAASecurityChecks(app)
        )
    return {"data": data, "network": network, "notebook": notebook, "training": training}
