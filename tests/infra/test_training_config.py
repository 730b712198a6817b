"""The Training stack's configuration: the defaults train on the sandbox's housing table, every bad
value stops synth with the key, the value and what is allowed, and the settings reach the template."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from snowsage.training.spec import EXPORT_CONFIG_ENV_VAR, ExportSpec
from stacks.config import ConfigError, load_config

from .conftest import BASE_CONTEXT, REPO, Synth

USER_ARN = "arn:aws:iam::123456789012:user/abc1-b-self1234"
EXTERNAL_ID = "MYORG_SFCRole=2_abcdefg123="
UNLOAD = {
    "training_exporter": "unload",
    "training_storage_integration": "SNOWSAGE_TRAINING_INT",
    "training_storage_aws_iam_user_arn": USER_ARN,
    "training_storage_aws_external_id": EXTERNAL_ID,
}


def test_defaults_train_a_regression_on_the_sandbox_housing_table() -> None:
    cfg = load_config(BASE_CONTEXT)
    assert cfg.training_export_fields() == {
        "table": "HOUSING",
        "label": "PRICE",
        "id_column": "HOUSE_ID",
        "features": None,  # every other numeric column
        "validation_percent": 20,
        "files": 2,
        "exporter": "client",
        "stage": None,
    }
    assert cfg.training_objective == "regression" and cfg.training_metric_threshold == 200000.0
    assert cfg.training_schedule is None and cfg.training_period_seconds is None
    assert cfg.training_s3_prefix_list_id == "pl-63a5400a"


def test_cli_strings_are_parsed() -> None:
    cfg = load_config(
        {
            **BASE_CONTEXT,
            "training_source": "select * from HOUSING where CITY = 'Bayview';",
            "training_features": "SQFT, BEDROOMS",
            "training_objective": "binary",
            "training_spot": "off",
            "training_instance_count": "3",
            "training_hyperparameters": '{"max_depth": 6, "eta": 0.2}',
            "training_schedule": "cron(0 3 * * ? *)",
            "training_schedule_time_zone": "Europe/Berlin",
            **UNLOAD,
        }
    )
    fields = cfg.training_export_fields()
    assert fields["query"] == "select * from HOUSING where CITY = 'Bayview'" and "table" not in fields
    assert fields["features"] == ["SQFT", "BEDROOMS"] and fields["files"] == 3
    assert fields["stage"] == "ANALYTICS.PUBLIC.SNOWSAGE_TRAINING"
    assert cfg.training_metric_threshold == 0.7  # the binary default: an AUC better than chance
    assert cfg.training_spot is False and cfg.training_hyperparameters == {"max_depth": 6, "eta": 0.2}
    assert cfg.training_period_seconds == 86400
    # What the export function will be given is an ExportSpec it accepts.
    ExportSpec(
        execution_id="run1",
        bucket="snowsage-x",
        **{k: v for k, v in fields.items() if v is not None}
        | {"features": ("SQFT", "BEDROOMS"), "instance_count": 3},
    )


BAD: list[tuple[dict[str, Any], str, Any, str]] = [
    # (overrides, key named, value shown, what is allowed)
    ({"training_source": "DROP TABLE HOUSING"}, "training_source", "DROP TABLE HOUSING", "SELECT"),
    ({"training_source": "my-table"}, "training_source", "my-table", "db.schema.table"),
    ({"training_label": "sale price"}, "training_label", "sale price", "column identifier"),
    ({"training_id_column": "1ID"}, "training_id_column", "1ID", "column identifier"),
    ({"training_id_column": "price"}, "training_id_column", "price", "cannot be the label"),
    ({"training_features": "SQFT,SQFT"}, "training_features", "SQFT,SQFT", "more than once"),
    ({"training_features": "SQFT,house_id"}, "training_features", "house_id", "may not include"),
    ({"training_features": "SQFT,lot-size"}, "training_features", "lot-size", "column identifiers"),
    ({"training_features": "[]"}, "training_features", "[]", "at least one feature column"),
    ({"training_objective": "multiclass"}, "training_objective", "multiclass", "'regression', 'binary'"),
    ({"training_metric_threshold": "low"}, "training_metric_threshold", "low", "expected a number"),
    ({"training_metric_threshold": -1}, "training_metric_threshold", "-1.0", "above 0"),
    (
        {"training_objective": "binary", "training_metric_threshold": 50000},
        "training_metric_threshold",
        "50000.0",
        "validation:auc, so the threshold is between 0 and 1",
    ),
    ({"training_validation_percent": 0}, "training_validation_percent", 0, "from 1 to 99"),
    ({"training_validation_percent": "half"}, "training_validation_percent", "half", "whole number"),
    ({"training_minimum_rows": 0}, "training_minimum_rows", 0, "from 1 to"),
    ({"training_instance_type": "m5.xlarge"}, "training_instance_type", "m5.xlarge", "ml.m5.xlarge"),
    ({"training_instance_count": 0}, "training_instance_count", 0, "from 1 to 128"),
    ({"training_instance_count": 500}, "training_instance_count", 500, "from 1 to 128"),
    ({"training_spot": "maybe"}, "training_spot", "maybe", "true or false"),
    ({"training_max_runtime_minutes": 0}, "training_max_runtime_minutes", 0, "from 1 to 40320"),
    ({"training_max_runtime_minutes": 50000}, "training_max_runtime_minutes", 50000, "from 1 to 40320"),
    (
        {"training_hyperparameters": {"max_dept": 6}},
        "training_hyperparameters",
        "max_dept",
        "did you mean 'max_depth'",
    ),
    (
        {"training_hyperparameters": {"objective": "binary:logistic"}},
        "training_hyperparameters",
        "binary:logistic",
        "contradicts objective 'regression'",
    ),
    (
        {"training_hyperparameters": {"max_depth": [6]}},
        "training_hyperparameters",
        "max_depth",
        "give a number or a string",
    ),
    ({"training_hyperparameters": "max_depth=6"}, "training_hyperparameters", "max_depth=6", "JSON object"),
    ({"training_exporter": "copy"}, "training_exporter", "copy", "'client', 'unload'"),
    *[
        (
            {**UNLOAD, key: None},
            key,
            "training_exporter is 'unload'",
            "DESC INTEGRATION",
        )
        for key in (
            "training_storage_integration",
            "training_storage_aws_iam_user_arn",
            "training_storage_aws_external_id",
        )
    ],
    (
        {**UNLOAD, "training_storage_integration": "my-int"},
        "training_storage_integration",
        "my-int",
        "storage integration identifier",
    ),
    (
        {**UNLOAD, "training_storage_aws_iam_user_arn": "arn:aws:iam::123456789012:role/snowflake"},
        "training_storage_aws_iam_user_arn",
        "arn:aws:iam::123456789012:role/snowflake",
        "STORAGE_AWS_IAM_USER_ARN",
    ),
    (
        {**UNLOAD, "training_storage_aws_external_id": "has space"},
        "training_storage_aws_external_id",
        "has space",
        "STORAGE_AWS_EXTERNAL_ID",
    ),
    ({"training_stage": "stage;drop"}, "training_stage", "stage;drop", "db.schema.stage"),
    ({"training_schedule": "daily"}, "training_schedule", "daily", "rate(1 hour)"),
    ({"training_schedule": "rate(1 days)"}, "training_schedule", "rate(1 days)", "'rate(1 day)'"),
    ({"training_schedule": "rate(7 days)"}, "training_schedule", "rate(7 days)", "'rate(84 hours)'"),
    ({"training_schedule": "cron(0 3 ? * MON *)"}, "training_schedule", "MON", "runs every day"),
    (
        {"training_schedule": "cron(0 3 * * ? *)", "training_schedule_time_zone": "Mars/Olympus"},
        "training_schedule_time_zone",
        "Mars/Olympus",
        "IANA time zone",
    ),
    (
        {"training_schedule": "rate(1 day)", "training_schedule_time_zone": "Europe/Berlin"},
        "training_schedule_time_zone",
        "Europe/Berlin",
        "cron(...)' training_schedule only",
    ),
    ({"training_run_retention_days": 0}, "training_run_retention_days", 0, "from 1 to 3650"),
    (
        {"region": "af-south-1", "availability_zones": None},
        "region",
        "af-south-1",
        "XGBoost image is published",
    ),
    (
        {"region": "eu-west-1", "availability_zones": None},
        "s3_prefix_list_id",
        "eu-west-1",
        "describe-managed-prefix-lists",
    ),
]


@pytest.mark.parametrize(
    ("overrides", "key", "value", "allowed"), BAD, ids=[f"{i:02d}-{b[1]}" for i, b in enumerate(BAD)]
)
def test_bad_value_names_key_value_and_what_is_allowed(
    overrides: dict[str, Any], key: str, value: Any, allowed: str
) -> None:
    with pytest.raises(ConfigError) as err:
        load_config({**BASE_CONTEXT, **overrides})
    lines = str(err.value).splitlines()
    assert len(lines) == 1, lines  # one problem, one line
    assert f"config key '{key}'" in lines[0]
    assert str(value) in lines[0]
    assert allowed in lines[0]


def test_a_prefix_list_makes_any_xgboost_region_deployable() -> None:
    cfg = load_config(
        {
            **BASE_CONTEXT,
            "region": "eu-west-1",
            "availability_zones": None,
            "s3_prefix_list_id": "pl-6da54004",
        }
    )
    assert cfg.training_s3_prefix_list_id == "pl-6da54004"


@pytest.mark.infra  # runs `cdk synth`
def test_real_cli_refuses_a_bad_training_value_and_writes_no_templates(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.run(
        ["cdk", "synth", "--quiet", "-o", str(out), "-c", 'training_hyperparameters={"max_dept": 6}'],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode != 0
    assert (
        "config key 'training_hyperparameters'" in proc.stderr and "did you mean 'max_depth'" in proc.stderr
    )
    assert not list(out.glob("*.template.json"))


# The settings in the synthesized stacks.


def _export_function(s: Synth) -> dict[str, Any]:
    (function,) = [
        f
        for k, f in s.resources("training", "AWS::Lambda::Function").items()
        if k.startswith("TrainingExportFunction")
    ]
    return function["Properties"]


def _joined(value: Any) -> str:
    """An Fn::Join as text, each intrinsic as <ref>."""
    if isinstance(value, str):
        return value
    sep, parts = value["Fn::Join"]
    return sep.join(p if isinstance(p, str) else "<ref>" for p in parts)


def _definition(s: Synth) -> dict[str, Any]:
    (pipeline,) = s.resources("training", "AWS::SageMaker::Pipeline").values()
    body = pipeline["Properties"]["PipelineDefinition"]["PipelineDefinitionBody"]
    return json.loads(_joined(body).replace('"<ref>"', '"ref"').replace("<ref>", "ref"))


def test_the_fourth_stack_is_named_tagged_and_described(nat: Synth) -> None:
    assert (nat.outdir / "SnowSage-dev-Training.template.json").exists()
    assert "scheduled training pipeline" in nat.raw("training")["Description"]
    for role in nat.resources("training", "AWS::IAM::Role").values():
        tags = {t["Key"]: t["Value"] for t in role["Properties"]["Tags"]}
        assert tags == {"project": "snowsage", "snowsage:env": "dev"}


def test_the_export_function_gets_the_settings_and_the_export_config(nat: Synth) -> None:
    env = _export_function(nat)["Environment"]["Variables"]
    settings = json.loads(_joined(env["SNOWSAGE_SETTINGS"]))
    assert settings["env_name"] == "dev" and settings["auth"] == "keypair"
    assert settings["bucket"] == "snowsage-dev-results-<ref>-us-east-1"
    assert settings["parameters"]["private_key"] == "/snowsage/dev/snowflake/private_key"
    export = json.loads(_joined(env[EXPORT_CONFIG_ENV_VAR]))
    assert export == {
        "table": "HOUSING",
        "label": "PRICE",
        "id_column": "HOUSE_ID",
        "validation_percent": 20,
        "files": 2,
        "exporter": "client",
        "kms_key_id": "<ref>",
    }
    # Names and settings only: no secret value ever reaches the template.
    text = json.dumps(nat.raw("training"))
    assert "PRIVATE KEY" not in text and "password" not in text.lower()


def test_pipeline_parameters_follow_the_config(nat: Synth, privatelink: Synth) -> None:
    defaults = {p["Name"]: p["DefaultValue"] for p in _definition(nat)["Parameters"]}
    assert defaults == {
        "InstanceCount": 2,
        "InstanceType": "ml.m5.xlarge",
        "MinimumRows": 100,
        "MetricThreshold": 200000.0,
    }
    steps = {s["Name"]: s for s in _definition(privatelink)["Steps"]}
    train = steps["DataCheck"]["Arguments"]["IfSteps"][0]["Arguments"]
    assert train["EnableManagedSpotTraining"] is False  # training_spot=false in that configuration
    assert train["HyperParameters"]["max_depth"] == "6" and train["HyperParameters"]["eta"] == "0.2"
    assert train["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600}


def test_schedule_follows_the_config(nat: Synth, privatelink: Synth) -> None:
    assert not nat.resources("training", "AWS::Scheduler::Schedule")
    (schedule,) = privatelink.resources("training", "AWS::Scheduler::Schedule").values()
    assert schedule["Properties"]["ScheduleExpression"] == "cron(0 3 * * ? *)"
    assert schedule["Properties"]["ScheduleExpressionTimezone"] == "Europe/Berlin"
    heartbeat = [
        a
        for a in privatelink.resources("training", "AWS::CloudWatch::Alarm").values()
        if a["Properties"]["AlarmName"].endswith("-heartbeat")
    ]
    assert heartbeat and heartbeat[0]["Properties"]["Period"] == 86400


def test_run_data_expires_from_the_results_bucket(nat: Synth) -> None:
    buckets = nat.resources("data", "AWS::S3::Bucket")
    (results,) = [b for b in buckets.values() if "BucketName" in b["Properties"]]
    rules = {r["Id"]: r for r in results["Properties"]["LifecycleConfiguration"]["Rules"]}
    assert rules["ExpireTrainingRuns"]["Prefix"] == "training/runs/"
    assert rules["ExpireTrainingRuns"]["ExpirationInDays"] == 30
    # The bucket's own rules stay.
    assert {"ExpireOldVersions", "AbortIncompleteUploads"} <= set(rules)


@pytest.mark.infra  # synthesizes its own app
def test_retention_and_instances_reach_the_template(tmp_path: Path) -> None:
    from .conftest import synthesize

    s = synthesize(
        tmp_path,
        env_name="ret",
        training_run_retention_days="7",
        training_instance_count="3",
        training_features="SQFT,BEDROOMS",
    )
    (results,) = [
        b for b in s.resources("data", "AWS::S3::Bucket").values() if "BucketName" in b["Properties"]
    ]
    rules = {r["Id"]: r for r in results["Properties"]["LifecycleConfiguration"]["Rules"]}
    assert rules["ExpireTrainingRuns"]["ExpirationInDays"] == 7
    outputs = {k: v["Value"] for k, v in s.raw("training")["Outputs"].items()}
    assert outputs["TrainingRunRetentionDays"] == "7"
    defaults = {p["Name"]: p["DefaultValue"] for p in _definition(s)["Parameters"]}
    assert defaults["InstanceCount"] == 3
    export = json.loads(_joined(_export_function(s)["Environment"]["Variables"][EXPORT_CONFIG_ENV_VAR]))
    assert export["files"] == 3 and export["features"] == ["SQFT", "BEDROOMS"]


def test_the_check_topic_and_key_let_the_training_failure_rule_notify(nat: Synth) -> None:
    """Wired to the check's topic: without these statements every training failure is dropped."""
    (policy,) = nat.resources("notebook", "AWS::SNS::TopicPolicy").values()
    statements = {st.get("Sid"): st for st in policy["Properties"]["PolicyDocument"]["Statement"]}
    rule = statements["AllowTrainingFailureRuleToPublish"]
    assert rule["Principal"] == {"Service": "events.amazonaws.com"}
    assert _joined(rule["Condition"]["ArnEquals"]["aws:SourceArn"]).endswith(
        ":rule/snowsage-dev-training-failed"
    )
    (key,) = nat.resources("data", "AWS::KMS::Key").values()
    sids = {st.get("Sid") for st in key["Properties"]["KeyPolicy"]["Statement"]}
    assert "AllowEventBridgeToPublishToEncryptedTopic" in sids


def _unload_role(s: Synth) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    roles = {k: r for k, r in s.resources("training", "AWS::IAM::Role").items() if k.startswith("UnloadRole")}
    assert len(roles) <= 1
    if not roles:
        return {}, []
    (role,) = roles.values()
    (policy,) = [
        p
        for k, p in s.resources("training", "AWS::IAM::ManagedPolicy").items()
        if k.startswith("UnloadRolePolicy")
    ]
    return role["Properties"], policy["Properties"]["PolicyDocument"]["Statement"]


def test_unload_role_trusts_only_the_integrations_user_with_its_external_id(
    nat: Synth, privatelink: Synth
) -> None:
    assert _unload_role(nat) == ({}, [])  # client exporter: no role, no output
    assert "TrainingUnloadRoleArn" not in nat.raw("training")["Outputs"]
    role, statements = _unload_role(privatelink)  # training_exporter=unload in that configuration
    assert role["RoleName"] == "snowsage-pl-training-unload"
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"AWS": USER_ARN}
    assert trust["Condition"] == {"StringEquals": {"sts:ExternalId": EXTERNAL_ID}}
    by_sid = {st["Sid"]: st for st in statements}
    assert by_sid["WriteRunFiles"]["Action"] == "s3:PutObject"
    assert _joined(by_sid["WriteRunFiles"]["Resource"]).endswith("/training/runs/*")
    assert by_sid["ListRunsPrefix"]["Condition"] == {"StringLike": {"s3:prefix": ["training/runs/*"]}}
    assert by_sid["EncryptRunFilesViaS3"]["Condition"] == {
        "StringEquals": {"kms:ViaService": "s3.us-east-1.amazonaws.com"}
    }
    assert "TrainingUnloadRoleArn" in privatelink.raw("training")["Outputs"]
    export = json.loads(
        _joined(_export_function(privatelink)["Environment"]["Variables"][EXPORT_CONFIG_ENV_VAR])
    )
    assert export["exporter"] == "unload" and export["stage"] == "ANALYTICS.PUBLIC.SNOWSAGE_TRAINING"
