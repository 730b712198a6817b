"""Compose the three stacks from one AppConfig and attach the compliance packs."""

from __future__ import annotations

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks, HIPAASecurityChecks, NIST80053R5Checks

from .config import AppConfig
from .data_stack import DataStack
from .network_stack import NetworkStack
from .notebook_stack import NotebookStack


def build_app(
    app: cdk.App, cfg: AppConfig, *, default_account: str | None = None, nag: bool = True
) -> dict[str, cdk.Stack]:
    env = cdk.Environment(account=cfg.account or default_account, region=cfg.region)
    data = DataStack(app, cfg=cfg, env=env)
    network = NetworkStack(app, cfg=cfg, env=env, key=data.key)
    notebook = NotebookStack(app, cfg=cfg, env=env, data=data, network=network)
    if nag:
        cdk.Validations.of(app).add_plugins(
            AwsSolutionsChecks(app), NIST80053R5Checks(app), HIPAASecurityChecks(app)
        )
    return {"data": data, "network": network, "notebook": notebook}
