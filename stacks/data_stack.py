"""Stateful resources: the KMS key, the Snowflake parameters and the results bucket."""

from __future__ import annotations

import aws_cdk as cdk
from constructs import Construct

from .base import SnowSageStack
from .config import AppConfig
from .constructs.connectivity_check import CheckNames
from .constructs.encryption import EncryptionKey
from .constructs.lambda_defaults import retention
from .constructs.parameters import SnowflakeParameters
from .constructs.results_bucket import ResultsBucket


def removal(cfg: AppConfig) -> cdk.RemovalPolicy:
    return cdk.RemovalPolicy.RETAIN if cfg.removal_policy == "retain" else cdk.RemovalPolicy.DESTROY


def results_bucket_name(cfg: AppConfig) -> str:
    """A name every stack can compute without a cross-stack reference (so IAM resources in the
    notebook stack stay readable and reviewable): unique per environment, account and region."""
    return f"snowsage-{cfg.env_name}-results-{cdk.Aws.ACCOUNT_ID}-{cfg.region}"


class DataStack(SnowSageStack):
    KIND = "Data"
    DESCRIPTION = "snowsage: KMS key, Snowflake parameters, results bucket"

    def __init__(self, scope: Construct, *, cfg: AppConfig, env: cdk.Environment) -> None:
        super().__init__(scope, cfg=cfg, env=env)
        self.key = EncryptionKey(
            self,
            "Encryption",
            env_name=cfg.env_name,
            removal_policy=removal(cfg),
            check_names=CheckNames.for_env(cfg.env_name),
        ).key
        settings = {
            "account": cfg.snowflake_account,
            "role": cfg.snowflake_role,
            "warehouse": cfg.snowflake_warehouse,
            "database": cfg.snowflake_database,
            "schema": cfg.snowflake_schema,
        }
        host = cfg.snowflake_host or (cfg.privatelink_account_url if cfg.network == "privatelink" else None)
        if host:
            settings["host"] = host
        if cfg.snowflake_port is not None:
            settings["port"] = str(cfg.snowflake_port)
        if cfg.snowflake_protocol:
            settings["protocol"] = cfg.snowflake_protocol
        self.parameters = SnowflakeParameters(
            self,
            "Snowflake",
            prefix=cfg.parameter_prefix,
            auth=cfg.auth,
            user=cfg.snowflake_user,
            settings=settings,
            key=self.key,
            removal_policy=cfg.removal_policy,
            log_retention=retention(cfg.log_retention_days),
        )
        self.results = ResultsBucket(
            self, "Results", bucket_name=results_bucket_name(cfg), key=self.key, removal_policy=removal(cfg)
        )
        cdk.CfnOutput(
            self,
            "KeyArn",
            value=self.key.key_arn,
            description="KMS key for parameters, volume, logs and results",
        )
        cdk.CfnOutput(
            self,
            "ResultsBucketName",
            value=self.results.bucket.bucket_name,
            description="Results bucket (Parquet, backups)",
        )
        cdk.CfnOutput(
            self,
            "ParameterPrefix",
            value=cfg.parameter_prefix,
            description="SSM path of the Snowflake settings and credentials",
        )
