"""Configuration: defaults work, -c strings parse, every bad value fails with key, value and fix."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from stacks.config import AL2_END_OF_SUPPORT, VALID_KEYS, ConfigError, load_config

from .conftest import BASE_CONTEXT, PRIVATELINK, REPO


def test_defaults_are_valid() -> None:
    cfg = load_config(BASE_CONTEXT)
    assert cfg.auth == "keypair" and cfg.network == "nat" and cfg.removal_policy == "retain"
    assert cfg.notebook_platform == "notebook-al2023-v1"
    assert cfg.interface_endpoints == ()
    assert cfg.parameter_prefix == "/snowsage/dev/snowflake/"


def test_cli_strings_are_parsed() -> None:
    cfg = load_config(
        {
            **BASE_CONTEXT,
            "max_azs": "3",
            "nat_gateways": "2",
            "snowflake_egress_cidrs": "203.0.113.0/24, 0.0.0.0/0",
            "interface_endpoints": "ssm,logs",
            "check_schedule": "off",
            "snowflake_port": "8080",
            "snowflake_host": "localhost",
            "snowflake_protocol": "http",
        }
    )
    assert cfg.max_azs == 3 and cfg.nat_gateways == 2
    assert cfg.snowflake_egress_cidrs == ("203.0.113.0/24", "0.0.0.0/0")
    assert cfg.interface_endpoints == ("ssm", "logs")
    assert cfg.check_schedule is None
    assert cfg.snowflake_port == 8080 and cfg.account_host == "localhost"


@pytest.mark.parametrize(
    ("schedule", "period"),
    [
        ("rate(1 minute)", 60),
        ("rate(15 minutes)", 900),
        ("rate(1 hour)", 3600),
        ("rate(84 hours)", 302_400),
        ("rate(3 days)", 259_200),
        ("cron(0 8 * * ? *)", 86_400),
        ("cron(0/10 * ? * * *)", 86_400),
        ("off", None),
    ],
)
def test_check_period_is_what_the_heartbeat_alarm_watches(schedule: str, period: int | None) -> None:
    cfg = load_config({**BASE_CONTEXT, "check_schedule": schedule})
    assert cfg.check_period_seconds == period
    if period:
        # Two periods must fit CloudWatch's alarm window: 1 day under an hour, 7 days otherwise.
        assert 2 * period <= (86_400 if period < 3600 else 604_800)


def test_privatelink_defaults_enable_endpoints() -> None:
    cfg = load_config({**BASE_CONTEXT, **PRIVATELINK})
    assert {"ssm", "kms", "logs", "sagemaker_api", "sagemaker_notebook"} <= set(cfg.interface_endpoints)
    assert cfg.account_host == PRIVATELINK["privatelink_account_url"]


BAD: list[tuple[dict[str, Any], str, str]] = [
    ({"snowflake_acount": "x"}, "snowflake_acount", "did you mean 'snowflake_account'"),
    ({"snowflake_account": "myorg-acct.snowflakecomputing.com"}, "snowflake_account", "not the URL"),
    ({"snowflake_account": "my org"}, "snowflake_account", "orgname-accountname"),
    ({"snowflake_user": "bad-user"}, "snowflake_user", "identifier"),
    ({"snowflake_role": "1ROLE"}, "snowflake_role", "identifier"),
    ({"snowflake_warehouse": "WH;DROP"}, "snowflake_warehouse", "identifier"),
    ({"auth": "oauth"}, "auth", "'keypair', 'password', 'wif'"),
    ({"network": "public"}, "network", "'nat', 'privatelink'"),
    ({"nat_gateways": 0}, "nat_gateways", "from 1 to 6"),
    ({"nat_gateways": 3}, "nat_gateways", "at most max_azs"),
    ({"vpc_cidr": "10.0.0.0/8"}, "vpc_cidr", "between /16 and /24"),
    ({"vpc_cidr": "8.8.0.0/16"}, "vpc_cidr", "private"),
    ({"vpc_cidr": "10.0.0.1/16"}, "vpc_cidr", "IPv4 network"),
    ({"max_azs": 4}, "max_azs", "number of zones"),
    ({"max_azs": "two"}, "max_azs", "whole number"),
    ({"snowflake_egress_cidrs": ["300.1.1.0/24"]}, "snowflake_egress_cidrs", "IPv4 CIDRs"),
    ({"snowflake_egress_cidrs": []}, "snowflake_egress_cidrs", "at least one"),
    ({"snowflake_egress_cidrs": ["203.0.113.0/24"]}, "s3_prefix_list_id", "describe-managed-prefix-lists"),
    ({"network": "privatelink"}, "privatelink_endpoint_service", "SYSTEM$GET_PRIVATELINK_CONFIG"),
    (
        {**PRIVATELINK, "privatelink_account_url": "xy12345.snowflakecomputing.com"},
        "privatelink_account_url",
        ".privatelink.snowflakecomputing.com",
    ),
    (
        {
            **PRIVATELINK,
            "privatelink_endpoint_service": "com.amazonaws.vpce.eu-west-1.vpce-svc-0123456789abcdef0",
        },
        "privatelink_endpoint_service",
        "deployment region",
    ),
    ({**PRIVATELINK, "interface_endpoints": ["ssm"]}, "interface_endpoints", "needs endpoints for kms, logs"),
    ({"interface_endpoints": ["ec2"]}, "interface_endpoints", "services among"),
    ({"notebook_instance_type": "t3.medium"}, "notebook_instance_type", "ml.t3.medium"),
    ({"notebook_volume_gb": 2}, "notebook_volume_gb", "from 5 to 16384"),
    (
        {"notebook_platform": "notebook-al2-v3"},
        "notebook_platform",
        f"end of support on {AL2_END_OF_SUPPORT}",
    ),
    ({"notebook_platform": "ubuntu"}, "notebook_platform", "notebook-al2023-v1"),
    ({"removal_policy": "snapshot"}, "removal_policy", "'retain', 'destroy'"),
    ({"log_retention_days": 100}, "log_retention_days", "CloudWatch Logs accepts"),
    ({"check_schedule": "every hour"}, "check_schedule", "rate(1 hour)"),
    ({"check_schedule": "rate(1 hours)"}, "check_schedule", "'rate(1 hour)'"),
    ({"check_schedule": "rate(5 minute)"}, "check_schedule", "'rate(5 minutes)'"),
    ({"check_schedule": "rate(0 minutes)"}, "check_schedule", "at least 1 minute"),
    ({"check_schedule": "rate(4 days)"}, "check_schedule", "'rate(84 hours)'"),
    ({"check_schedule": "cron(0 8 ? * MON *)"}, "check_schedule", "runs every day"),
    ({"check_schedule": "cron(0 8 1 * ? *)"}, "check_schedule", "runs every day"),
    ({"check_schedule": "cron(0 8 * *)"}, "check_schedule", "6 fields"),
    ({"alarm_email": "not-an-email"}, "alarm_email", "email address"),
    ({"idle_stop_minutes": 2}, "idle_stop_minutes", "or 0"),
    ({"backup_minutes": -1}, "backup_minutes", "or 0"),
    ({"env_name": "Prod_1"}, "env_name", "lowercase"),
    ({"region": "useast1"}, "region", "us-east-1"),
    ({"account": "12345"}, "account", "12-digit"),
    ({"availability_zones": ["eu-west-1a", "eu-west-1b"]}, "availability_zones", "in region us-east-1"),
    ({"snowflake_protocol": "http"}, "snowflake_protocol", "local emulator"),
    ({"snowflake_port": 70000}, "snowflake_port", "from 1 to 65535"),
    ({"snowflake_port": 8080}, "snowflake_port", "needs 'snowflake_host'"),
    ({"s3_prefix_list_id": "s3"}, "s3_prefix_list_id", "pl-63a5400a"),
]


@pytest.mark.parametrize(("overrides", "key", "fix"), BAD, ids=[f"{i:02d}-{b[1]}" for i, b in enumerate(BAD)])
def test_bad_value_names_key_value_and_fix(overrides: dict[str, Any], key: str, fix: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config({**BASE_CONTEXT, **overrides})
    message = str(err.value)
    assert f"'{key}'" in message
    assert fix in message
    bad_value = overrides.get(key)
    if isinstance(bad_value, (str, int)) and not isinstance(bad_value, bool):
        assert repr(bad_value) in message or str(bad_value) in message


def test_unknown_key_lists_valid_keys() -> None:
    with pytest.raises(ConfigError) as err:
        load_config({**BASE_CONTEXT, "notebok_type": "ml.t3.large"})
    for key in VALID_KEYS:
        assert key in str(err.value)


def test_cdk_feature_flags_are_not_unknown_keys() -> None:
    load_config(
        {
            **BASE_CONTEXT,
            "@aws-cdk/core:newStyleStackSynthesis": True,
            "availability-zones:account=1:region=x": [],
        }
    )


def test_every_problem_reported_at_once() -> None:
    with pytest.raises(ConfigError) as err:
        load_config({**BASE_CONTEXT, "auth": "oauth", "network": "public"})
    assert "'auth'" in str(err.value) and "'network'" in str(err.value)


@pytest.mark.infra  # runs `cdk synth`
def test_real_cli_refuses_bad_config_and_writes_no_templates(tmp_path: Path) -> None:
    """The path a user takes: `cdk synth -c ...` with a typo exits non-zero and writes nothing."""
    out = tmp_path / "out"
    proc = subprocess.run(
        ["cdk", "synth", "--quiet", "-o", str(out), "-c", "notebook_platform=notebook-al2-v2"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode != 0
    assert "notebook_platform" in proc.stderr and "end of support" in proc.stderr
    assert not list(out.glob("*.template.json"))


@pytest.mark.infra  # synthesizes its own app
def test_synth_for_a_named_account_needs_no_lookup(tmp_path: Path) -> None:
    """With an account set, CDK would look the zones up through the AWS API; pinned zones mean
    the cloud assembly asks for no missing context at all."""
    import json

    from .conftest import synthesize

    s = synthesize(tmp_path, account="123456789012", env_name="acct")
    manifest = json.loads((s.outdir / "manifest.json").read_text())
    assert not manifest.get("missing"), manifest.get("missing")
    subnets = s.resources("network", "AWS::EC2::Subnet").values()
    assert {sn["Properties"]["AvailabilityZone"] for sn in subnets} == {"us-east-1a", "us-east-1b"}
