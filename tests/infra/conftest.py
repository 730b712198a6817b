"""Synthesize each configuration once per session; every infra test reads these templates."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template

REPO = Path(__file__).resolve().parents[2]
# The same PATH as `make test` (Node 22 and the venv's tools, cfn-lint among them, which CDK runs
# during synth as its CloudFormation-Validate plugin), however pytest was launched.
os.environ["PATH"] = os.pathsep.join(
    [str(REPO / "node_modules" / ".bin"), str(REPO / ".venv" / "bin"), os.environ["PATH"]]
)
os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")

from stacks.app_builder import build_app  # noqa: E402
from stacks.config import AppConfig, load_config  # noqa: E402

BASE_CONTEXT: dict[str, Any] = json.loads((REPO / "cdk.json").read_text())["context"]

PRIVATELINK = {
    "network": "privatelink",
    "env_name": "pl",
    "auth": "password",
    "privatelink_endpoint_service": "com.amazonaws.vpce.us-east-1.vpce-svc-0123456789abcdef0",
    "privatelink_account_url": "xy12345.us-east-1.privatelink.snowflakecomputing.com",
    "privatelink_ocsp_url": "ocsp.xy12345.us-east-1.privatelink.snowflakecomputing.com",
    "alarm_email": "data-platform@example.com",
    "check_schedule": "rate(30 minutes)",
    "removal_policy": "destroy",
    # The Training stack's other shape: scheduled (schedule, alarms, dead-letter queue), on demand.
    "training_schedule": "cron(0 3 * * ? *)",
    "training_schedule_time_zone": "Europe/Berlin",
    "training_spot": "false",
    "training_hyperparameters": {"max_depth": 6, "eta": 0.2},
    # ...and the unload exporter: the role Snowflake's storage integration assumes.
    "training_exporter": "unload",
    "training_storage_integration": "SNOWSAGE_TRAINING_INT",
    "training_storage_aws_iam_user_arn": "arn:aws:iam::123456789012:user/abc1-b-self1234",
    "training_storage_aws_external_id": "MYORG_SFCRole=2_abcdefg123=",
}


@dataclass
class Synth:
    cfg: AppConfig
    outdir: Path
    templates: dict[str, dict[str, Any]]

    def template(self, kind: str) -> Template:
        return Template.from_json(self.templates[kind])

    def raw(self, kind: str) -> dict[str, Any]:
        return self.templates[kind]

    def resources(self, kind: str, type_: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.templates[kind]["Resources"].items() if v["Type"] == type_}

    def report(self) -> dict[str, Any]:
        path = self.outdir / "policy-validation-report.json"
        return json.loads(path.read_text()) if path.exists() else {"pluginReports": []}


def synthesize(tmp: Path, **overrides: Any) -> Synth:
    context = {**BASE_CONTEXT, **overrides}
    app = cdk.App(outdir=str(tmp), context=context)
    cfg = load_config(app.node.get_all_context())
    stacks = build_app(app, cfg)
    app.synth()
    templates = {
        kind: json.loads((tmp / f"{stack.stack_name}.template.json").read_text())
        for kind, stack in stacks.items()
    }
    return Synth(cfg=cfg, outdir=tmp, templates=templates)


@pytest.fixture(scope="session")
def nat(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    return synthesize(tmp_path_factory.mktemp("cdk-nat"))


@pytest.fixture(scope="session")
def privatelink(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    return synthesize(tmp_path_factory.mktemp("cdk-privatelink"), **PRIVATELINK)


@pytest.fixture(scope="session", params=["nat", "privatelink"])
def any_synth(request: pytest.FixtureRequest) -> Synth:
    return request.getfixturevalue(request.param)
