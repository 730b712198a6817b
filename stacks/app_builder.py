"""Compose the three stacks from one AppConfig and attach the compliance packs."""

from __future__ import annotations

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks, HIPAASecurityChecks, NIST80053R5Checks

from snowsage.settings import stack_name

from .config import AppConfig
from .data_stack import DataStack
from .network_stack import NetworkStack
from .notebook_stack import NotebookStack


def build_app(
    app: cdk.App, cfg: AppConfig, *, default_account: str | None = None, nag: bool = True
) -> dict[str, cdk.Stack]:
    env = cdk.Environment(account=cfg.account or default_account, region=cfg.region)
    data = DataStack(
        app,
        stack_name(cfg.env_name, "Data"),
        cfg=cfg,
        env=env,
        description="snowsage: KMS key, Snowflake parameters, results bucket",
    )
    network = NetworkStack(
        app,
        stack_name(cfg.env_name, "Network"),
        cfg=cfg,
        key=data.key,
        env=env,
        description="snowsage: private VPC, endpoints, security groups",
    )
    notebook = NotebookStack(
        app,
        stack_name(cfg.env_name, "Notebook"),
        cfg=cfg,
        data=data,
        network=network,
        env=env,
        description="snowsage: SageMaker notebook and Snowflake connectivity check",
    )
    for stack in (data, network, notebook):
        cdk.Tags.of(stack).add("project", "snowsage")
        cdk.Tags.of(stack).add("snowsage:env", cfg.env_name)
    if nag:
        cdk.Validations.of(app).add_plugins(
            AwsSolutionsChecks(app), NIST80053R5Checks(app), HIPAASecurityChecks(app)
        )
    return {"data": data, "network": network, "notebook": notebook}
