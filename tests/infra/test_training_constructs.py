"""The Training construct and its pipeline definition, on a small app with a VPC and key of its own.

The pipeline definition is read back from the synthesized template (its Fn::Join with each
CloudFormation token replaced by a readable placeholder), so every assertion is about what
CloudFormation would hand to SageMaker.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from cdk_nag import AwsSolutionsChecks, HIPAASecurityChecks, NIST80053R5Checks

from stacks.constructs.nag import acknowledge
from stacks.constructs.training import pipeline_definition as pd
from stacks.constructs.training.training import Training, TrainingSchedule, export_code

from .conftest import REPO

REGION = "us-east-1"
ACCOUNT = "123456789012"
BUCKET = "snowsage-test-results"
PREFIX_LIST = "pl-63a5400a"


@dataclass
class Synth:
    """One synthesized small app (named like conftest's Synth, so tests/conftest.py tiers the
    tests that use it as infra)."""

    template: dict[str, Any]
    outdir: Path
    definition: dict[str, Any]
    other: dict[str, Any] = field(default_factory=dict)  # another stack's template, when there is one

    def resources(self, type_: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.template["Resources"].items() if v["Type"] == type_}

    def one(self, type_: str) -> tuple[str, dict[str, Any]]:
        found = self.resources(type_)
        assert len(found) == 1, (type_, list(found))
        return next(iter(found.items()))

    def logical_id(self, type_: str, contains: str = "") -> str:
        ids = [k for k in self.resources(type_) if contains in k]
        assert len(ids) == 1, (type_, contains, ids)
        return ids[0]

    def policy(self, role_id_part: str) -> list[dict[str, Any]]:
        lid = self.logical_id("AWS::IAM::ManagedPolicy", f"{role_id_part}Policy")
        return self.template["Resources"][lid]["Properties"]["PolicyDocument"]["Statement"]

    def step(self, name: str) -> dict[str, Any]:
        for step in pd.iter_steps(self.definition["Steps"]):
            if step["Name"] == name:
                return step
        raise AssertionError(f"no step {name}")


def placeholder(token: Any) -> str:
    """A readable stand-in for a CloudFormation intrinsic inside the definition's JSON."""
    if "Ref" in token:
        return "${" + token["Ref"] + "}"
    if "Fn::GetAtt" in token:
        return "${" + ".".join(token["Fn::GetAtt"]) + "}"
    if "Fn::FindInMap" in token:
        name, first, second = token["Fn::FindInMap"]
        return "${FindInMap:" + name + ":" + placeholder(first) + ":" + second + "}"
    if "Fn::ImportValue" in token:
        return "${Import}"
    raise AssertionError(f"unexpected intrinsic {token}")


def rendered(body: Any) -> str:
    if isinstance(body, str):
        return body
    sep, parts = body["Fn::Join"]
    return sep.join(p if isinstance(p, str) else placeholder(p) for p in parts)


def resolve(value: Any) -> str:
    """A template value (a string, a Ref/GetAtt or an Fn::Join) as one placeholder string."""
    if isinstance(value, dict) and "Fn::Join" in value:
        return rendered(value)
    if isinstance(value, dict):
        return placeholder(value)
    return value


def make_export_source(tmp: Path) -> Path:
    # A stand-in handler: these tests are about the infrastructure, not the export's code.
    source = tmp / "training_export"
    source.mkdir(parents=True, exist_ok=True)
    (source / "handler.py").write_text("def handler(event, context):\n    return {}\n")
    return source


def small_app(tmp: Path, *, region: str | None = REGION) -> tuple[cdk.App, cdk.Stack, dict[str, Any]]:
    app = cdk.App(outdir=str(tmp / "out"))
    env = cdk.Environment(account=ACCOUNT, region=region) if region else None
    stack = cdk.Stack(app, "TrainingTest", env=env)
    key = kms.Key(stack, "Key", enable_key_rotation=True)
    vpc = ec2.Vpc(
        stack,
        "Vpc",
        max_azs=2,
        nat_gateways=0,
        subnet_configuration=[
            ec2.SubnetConfiguration(name="Isolated", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)
        ],
    )
    # The test's own VPC; the app's Network stack has flow logs and a closed default group.
    for finding in (
        "AwsSolutions-VPC7",
        "NIST.800.53.R5-VPCFlowLogsEnabled",
        "HIPAA.Security-VPCFlowLogsEnabled",
        "NIST.800.53.R5-VPCDefaultSecurityGroupClosed",
        "HIPAA.Security-VPCDefaultSecurityGroupClosed",
    ):
        acknowledge(vpc, finding, "A VPC made by the test only, to hold the construct under test.")
    function_sg = ec2.SecurityGroup(stack, "ExportSg", vpc=vpc, allow_all_outbound=False)
    topic = sns.Topic(stack, "AlarmTopic", master_key=key, enforce_ssl=True)
    kwargs: dict[str, Any] = dict(
        env_name="test",
        key=key,
        vpc=vpc,
        subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED),
        s3_prefix_list_id=PREFIX_LIST,
        bucket_name=BUCKET,
        export_security_group=function_sg,
        alarm_topic=topic,
        objective="regression",
        metric_threshold=50000.0,
        log_retention=logs.RetentionDays.ONE_YEAR,
        run_retention_days=30,
        export_source=make_export_source(tmp),
    )
    return app, stack, kwargs


def build(tmp: Path, **overrides: Any) -> Synth:
    app, stack, kwargs = small_app(tmp)
    Training(stack, "Training", **{**kwargs, **overrides})
    cdk.Validations.of(app).add_plugins(
        AwsSolutionsChecks(app), NIST80053R5Checks(app), HIPAASecurityChecks(app)
    )
    app.synth()  # raises on any unacknowledged finding of the three packs
    outdir = tmp / "out"
    template = json.loads((outdir / "TrainingTest.template.json").read_text())
    pipelines = [v for v in template["Resources"].values() if v["Type"] == "AWS::SageMaker::Pipeline"]
    body = pipelines[0]["Properties"]["PipelineDefinition"]["PipelineDefinitionBody"]
    return Synth(template=template, outdir=outdir, definition=json.loads(rendered(body)))


@pytest.fixture(scope="module")
def scheduled(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    return build(
        tmp_path_factory.mktemp("training-scheduled"),
        schedule=TrainingSchedule("cron(0 3 * * ? *)", 86400, time_zone="Europe/Berlin"),
        hyperparameters={"max_depth": 6, "eta": 0.2},
    )


@pytest.fixture(scope="module")
def unscheduled(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    return build(
        tmp_path_factory.mktemp("training-unscheduled"), objective="binary", metric_threshold=0.8, spot=False
    )


def _spec(**overrides: Any) -> pd.PipelineSpec:
    values: dict[str, Any] = dict(
        export_function_arn="arn:aws:lambda:us-east-1:123456789012:function:export",
        bucket_name=BUCKET,
        image_uri="683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:3.0-5",
        training_role_arn="arn:aws:iam::123456789012:role/training",
        subnet_ids=("subnet-1", "subnet-2"),
        security_group_ids=("sg-1",),
        kms_key_arn="arn:aws:kms:us-east-1:123456789012:key/k",
        model_package_group_name="models",
        objective="regression",
        metric_threshold=1.0,
    )
    return pd.PipelineSpec(**{**values, **overrides})


def test_definition_has_the_schema_version_and_four_typed_parameters(scheduled: Synth) -> None:
    assert scheduled.definition["Version"] == "2020-12-01"
    params = {p["Name"]: (p["Type"], p["DefaultValue"]) for p in scheduled.definition["Parameters"]}
    assert params == {
        "InstanceCount": ("Integer", 2),
        "InstanceType": ("String", "ml.m5.xlarge"),
        "MinimumRows": ("Integer", 100),
        "MetricThreshold": ("Float", 50000.0),
    }


def test_steps_run_export_then_check_then_train_gate_register(scheduled: Synth) -> None:
    top = [s["Name"] for s in scheduled.definition["Steps"]]
    assert top == ["Export", "DataCheck"]
    check = scheduled.step("DataCheck")["Arguments"]
    assert [s["Name"] for s in check["IfSteps"]] == ["Train", "Gate"]
    assert [(s["Name"], s["Type"]) for s in check["ElseSteps"]] == [("NotEnoughData", "Fail")]
    gate = scheduled.step("Gate")["Arguments"]
    assert [(s["Name"], s["Type"]) for s in gate["IfSteps"]] == [("RegisterModel", "RegisterModel")]
    assert [(s["Name"], s["Type"]) for s in gate["ElseSteps"]] == [("ModelBelowThreshold", "Fail")]


def test_every_get_in_the_synthesized_definition_points_at_something_that_exists(scheduled: Synth) -> None:
    paths = pd.references(scheduled.definition)
    assert "Execution.PipelineExecutionId" in paths
    assert "Steps.Train.FinalMetricDataList['validation:rmse'].Value" in paths
    assert pd.unresolved_references(scheduled.definition) == []


def _joins(value: Any) -> list[dict[str, Any]]:
    found = []
    if isinstance(value, dict):
        if "Std:Join" in value:
            found.append(value)
        for item in value.values():
            found += _joins(item)
    elif isinstance(value, list):
        for item in value:
            found += _joins(item)
    return found


def test_joins_hold_only_strings_and_gets_as_the_definition_schema_allows(scheduled: Synth) -> None:
    joins = _joins(scheduled.definition)
    assert len(joins) >= 6  # S3 URIs, the run prefix, both failure messages
    for j in joins:
        for value in j["Std:Join"]["Values"]:
            assert isinstance(value, str) or set(value) == {"Get"}, j


def test_reference_check_catches_a_misspelt_output_and_a_step_read_before_it_runs() -> None:
    definition = pd.build_definition(_spec())
    check = definition["Steps"][1]["Arguments"]
    check["Conditions"][0]["LeftValue"] = {"Get": "Steps.Export.OutputParameters['train_row']"}
    check["Conditions"][1]["LeftValue"] = {"Get": "Steps.Train.ModelArtifacts.S3ModelArtifacts"}
    assert pd.unresolved_references(definition) == [
        "DataCheck: Steps.Export.OutputParameters['train_row']",
        "DataCheck: Steps.Train.ModelArtifacts.S3ModelArtifacts",
    ]


def test_export_is_a_lambda_step_on_the_export_function_with_its_outputs(scheduled: Synth) -> None:
    export = scheduled.step("Export")
    function_id = scheduled.logical_id("AWS::Lambda::Function", "ExportFunction")
    assert export["Type"] == "Lambda"
    assert export["FunctionArn"] == "${" + function_id + ".Arn}"
    assert export["OutputParameters"] == [
        {"OutputName": name, "OutputType": kind}
        for name, kind in [
            ("train_prefix", "String"),
            ("validation_prefix", "String"),
            ("train_rows", "Integer"),
            ("validation_rows", "Integer"),
            ("train_files", "Integer"),
            ("validation_files", "Integer"),
        ]
    ]
    args = export["Arguments"]
    assert args["run_id"] == {"Get": "Execution.PipelineExecutionId"}
    assert args["bucket"] == BUCKET
    # A fresh prefix per run: training/runs/<execution id>/
    assert args["run_prefix"] == {
        "Std:Join": {"On": "", "Values": ["training/runs/", {"Get": "Execution.PipelineExecutionId"}, "/"]}
    }
    assert args["min_train_files"] == {"Get": "Parameters.InstanceCount"}


def test_data_check_needs_minimum_rows_and_a_train_file_per_instance(scheduled: Synth) -> None:
    conditions = scheduled.step("DataCheck")["Arguments"]["Conditions"]
    out = "Steps.Export.OutputParameters"
    assert {"Type": "GreaterThanOrEqualTo", "LeftValue": {"Get": f"{out}['train_rows']"},
            "RightValue": {"Get": "Parameters.MinimumRows"}} in conditions  # fmt: skip
    assert {"Type": "GreaterThanOrEqualTo", "LeftValue": {"Get": f"{out}['train_files']"},
            "RightValue": {"Get": "Parameters.InstanceCount"}} in conditions  # fmt: skip
    message = scheduled.step("NotEnoughData")["Arguments"]["ErrorMessage"]["Std:Join"]["Values"]
    gets = [v["Get"] for v in message if isinstance(v, dict)]
    assert f"{out}['train_rows']" in gets and f"{out}['train_files']" in gets
    assert "Parameters.MinimumRows" in gets and "Parameters.InstanceCount" in gets
    assert any("Widen the source query" in v for v in message if isinstance(v, str))


def _train(built: Synth) -> dict[str, Any]:
    return built.step("Train")["Arguments"]


def test_train_channel_is_sharded_and_validation_replicated_as_parquet_files(scheduled: Synth) -> None:
    channels = {c["ChannelName"]: c for c in _train(scheduled)["InputDataConfig"]}
    assert set(channels) == {"train", "validation"}
    for name, distribution in (("train", "ShardedByS3Key"), ("validation", "FullyReplicated")):
        channel = channels[name]
        source = channel["DataSource"]["S3DataSource"]
        assert source["S3DataDistributionType"] == distribution
        assert source["S3DataType"] == "S3Prefix"
        assert source["S3Uri"] == {
            "Std:Join": {
                "On": "",
                "Values": [f"s3://{BUCKET}/", {"Get": f"Steps.Export.OutputParameters['{name}_prefix']"}],
            }
        }
        assert channel["ContentType"] == "application/x-parquet"
        assert channel["InputMode"] == "File"
    assert _train(scheduled)["AlgorithmSpecification"]["TrainingInputMode"] == "File"


def test_training_is_isolated_in_the_private_subnets_with_encrypted_traffic(scheduled: Synth) -> None:
    train = _train(scheduled)
    assert train["EnableNetworkIsolation"] is True
    assert train["EnableInterContainerTrafficEncryption"] is True
    subnets = {"${" + k + "}" for k in scheduled.resources("AWS::EC2::Subnet")}
    assert set(train["VpcConfig"]["Subnets"]) == subnets and len(subnets) == 2
    sg = scheduled.logical_id("AWS::EC2::SecurityGroup", "TrainingSecurityGroup")
    assert train["VpcConfig"]["SecurityGroupIds"] == ["${" + sg + ".GroupId}"]
    role = scheduled.logical_id("AWS::IAM::Role", "TrainingRole")
    assert train["RoleArn"] == "${" + role + ".Arn}"


def test_output_and_volumes_are_encrypted_with_the_key(scheduled: Synth) -> None:
    key = "${" + scheduled.logical_id("AWS::KMS::Key") + ".Arn}"
    train = _train(scheduled)
    assert train["OutputDataConfig"]["KmsKeyId"] == key
    assert train["ResourceConfig"]["VolumeKmsKeyId"] == key
    assert train["OutputDataConfig"]["S3OutputPath"]["Std:Join"]["Values"] == [
        f"s3://{BUCKET}/",
        "training/runs/",
        {"Get": "Execution.PipelineExecutionId"},
        "/",
        "model/",
    ]
    assert train["ResourceConfig"]["InstanceCount"] == {"Get": "Parameters.InstanceCount"}
    assert train["ResourceConfig"]["InstanceType"] == {"Get": "Parameters.InstanceType"}


def test_managed_spot_checkpoints_and_waits_at_least_the_runtime(
    scheduled: Synth, unscheduled: Synth
) -> None:
    train = _train(scheduled)
    assert train["EnableManagedSpotTraining"] is True
    stop = train["StoppingCondition"]
    assert stop["MaxWaitTimeInSeconds"] >= stop["MaxRuntimeInSeconds"] == 3600
    assert train["CheckpointConfig"]["LocalPath"] == "/opt/ml/checkpoints"
    assert train["CheckpointConfig"]["S3Uri"]["Std:Join"]["Values"] == [
        f"s3://{BUCKET}/",
        "training/runs/",
        {"Get": "Execution.PipelineExecutionId"},
        "/",
        "checkpoints/",
    ]
    # Without spot there is nothing to wait for or resume from.
    on_demand = _train(unscheduled)
    assert on_demand["EnableManagedSpotTraining"] is False
    assert "MaxWaitTimeInSeconds" not in on_demand["StoppingCondition"]
    assert "CheckpointConfig" not in on_demand


def test_extra_export_arguments_reach_the_export_step_but_cannot_replace_the_run_id() -> None:
    definition = pd.build_definition(_spec(export_arguments={"label": "PRICE"}))
    assert definition["Steps"][0]["Arguments"]["label"] == "PRICE"
    with pytest.raises(
        pd.PipelineDefinitionError, match=r"export_arguments \['run_id'\] are set by the pipeline"
    ):
        pd.build_definition(_spec(export_arguments={"run_id": "fixed"}))


def test_a_wait_shorter_than_the_runtime_is_refused() -> None:
    with pytest.raises(
        pd.PipelineDefinitionError, match="max_wait_seconds 600 is below max_runtime_seconds 3600"
    ):
        pd.build_definition(_spec(max_wait_seconds=600))


def test_hyperparameters_set_objective_rounds_and_early_stopping(
    scheduled: Synth, unscheduled: Synth
) -> None:
    hp = _train(scheduled)["HyperParameters"]
    assert hp == {
        "objective": "reg:squarederror",
        "eval_metric": "rmse",
        "num_round": "200",
        "early_stopping_rounds": "10",
        "max_depth": "6",
        "eta": "0.2",
    }
    assert _train(unscheduled)["HyperParameters"]["objective"] == "binary:logistic"
    assert _train(unscheduled)["HyperParameters"]["eval_metric"] == "auc"


def test_an_unknown_hyperparameter_fails_naming_it_and_the_nearest_known_one(tmp_path: Path) -> None:
    _, stack, kwargs = small_app(tmp_path)
    with pytest.raises(
        pd.PipelineDefinitionError, match=r"'max_dept' is not one .* did you mean 'max_depth'\?"
    ):
        Training(stack, "Training", **{**kwargs, "hyperparameters": {"max_dept": 6}})


def test_a_hyperparameter_contradicting_the_objective_is_refused() -> None:
    with pytest.raises(
        pd.PipelineDefinitionError, match="objective='binary:logistic' contradicts objective 'regression'"
    ):
        pd.check_hyperparameters({"objective": "binary:logistic"}, objective="regression")


def test_the_known_hyperparameters_include_the_containers_required_and_common_ones() -> None:
    for name in ("num_round", "objective", "eval_metric", "early_stopping_rounds", "max_depth", "eta"):
        assert name in pd.XGBOOST_HYPERPARAMETERS


def test_the_image_is_the_pinned_builtin_xgboost_from_the_region_mapping(scheduled: Synth) -> None:
    image = _train(scheduled)["AlgorithmSpecification"]["TrainingImage"]
    (mapping_name, mapping), *_ = scheduled.template["Mappings"].items()
    assert (
        image
        == "${FindInMap:"
        + mapping_name
        + ":${AWS::Region}:account}.dkr.ecr.${AWS::Region}.${AWS::URLSuffix}/sagemaker-xgboost:3.0-5"
    )
    assert mapping["us-east-1"] == {"account": "683313688378"}
    assert mapping["eu-west-1"] == {"account": "141502667606"}
    register = scheduled.step("RegisterModel")["Arguments"]
    assert register["InferenceSpecification"]["Containers"][0]["Image"] == image


def test_an_unmapped_region_fails_synth_naming_the_region(tmp_path: Path) -> None:
    _, stack, kwargs = small_app(tmp_path, region="af-south-1")
    with pytest.raises(
        pd.PipelineDefinitionError,
        match=r"region 'af-south-1' has no published account .*known: ap-northeast-1",
    ):
        Training(stack, "Training", **kwargs)


def test_a_stack_without_a_region_is_refused(tmp_path: Path) -> None:
    _, stack, kwargs = small_app(tmp_path, region=None)
    with pytest.raises(ValueError, match=r"needs env=cdk\.Environment"):
        Training(stack, "Training", **kwargs)


def test_regression_gate_registers_only_when_rmse_is_at_most_the_threshold(scheduled: Synth) -> None:
    gate = scheduled.step("Gate")["Arguments"]["Conditions"]
    assert gate == [
        {
            "Type": "LessThanOrEqualTo",
            "LeftValue": {"Get": "Steps.Train.FinalMetricDataList['validation:rmse'].Value"},
            "RightValue": {"Get": "Parameters.MetricThreshold"},
        }
    ]
    message = scheduled.step("ModelBelowThreshold")["Arguments"]["ErrorMessage"]["Std:Join"]["Values"]
    assert {"Get": "Steps.Train.FinalMetricDataList['validation:rmse'].Value"} in message
    assert {"Get": "Parameters.MetricThreshold"} in message
    assert any("validation:rmse <= MetricThreshold" in v for v in message if isinstance(v, str))


def test_binary_gate_registers_only_when_auc_is_at_least_the_threshold(unscheduled: Synth) -> None:
    (condition,) = unscheduled.step("Gate")["Arguments"]["Conditions"]
    assert condition["Type"] == "GreaterThanOrEqualTo"
    assert condition["LeftValue"] == {"Get": "Steps.Train.FinalMetricDataList['validation:auc'].Value"}
    assert condition["RightValue"] == {"Get": "Parameters.MetricThreshold"}


def test_the_model_is_registered_into_the_group_pending_manual_approval(scheduled: Synth) -> None:
    register = scheduled.step("RegisterModel")["Arguments"]
    _, group = scheduled.one("AWS::SageMaker::ModelPackageGroup")
    assert (
        register["ModelPackageGroupName"]
        == group["Properties"]["ModelPackageGroupName"]
        == "snowsage-test-models"
    )
    assert register["ModelApprovalStatus"] == "PendingManualApproval"
    (container,) = register["InferenceSpecification"]["Containers"]
    assert container["ModelDataUrl"] == {"Get": "Steps.Train.ModelArtifacts.S3ModelArtifacts"}
    # Keys the workflow service rejects in a RegisterModel step.
    assert not {"Description", "CertifyForMarketplace", "ModelPackageName"} & set(register)


def test_the_pipeline_resource_uses_the_pipeline_role_and_waits_for_the_group(scheduled: Synth) -> None:
    _, pipeline = scheduled.one("AWS::SageMaker::Pipeline")
    assert pipeline["Properties"]["PipelineName"] == "snowsage-test-training"
    role = scheduled.logical_id("AWS::IAM::Role", "PipelineRole")
    assert pipeline["Properties"]["RoleArn"] == {"Fn::GetAtt": [role, "Arn"]}
    assert scheduled.logical_id("AWS::SageMaker::ModelPackageGroup") in pipeline["DependsOn"]


def test_training_security_group_reaches_only_itself_and_s3_on_443(scheduled: Synth) -> None:
    sg = scheduled.logical_id("AWS::EC2::SecurityGroup", "TrainingSecurityGroup")
    group = scheduled.template["Resources"][sg]["Properties"]
    assert "SecurityGroupIngress" not in group and "SecurityGroupEgress" not in group
    own = {"Fn::GetAtt": [sg, "GroupId"]}
    ingress = [r["Properties"] for r in scheduled.resources("AWS::EC2::SecurityGroupIngress").values()
               if r["Properties"]["GroupId"] == own]  # fmt: skip
    egress = [r["Properties"] for r in scheduled.resources("AWS::EC2::SecurityGroupEgress").values()
              if r["Properties"]["GroupId"] == own]  # fmt: skip
    assert [(r["IpProtocol"], r["SourceSecurityGroupId"]) for r in ingress] == [("-1", own)]
    assert sorted(
        (
            r["IpProtocol"],
            r.get("DestinationSecurityGroupId") or r.get("DestinationPrefixListId"),
            r.get("FromPort"),
        )
        for r in egress
    ) == sorted([("-1", own, None), ("tcp", PREFIX_LIST, 443)])
    assert all(r.get("ToPort", 443) == 443 for r in egress if r["IpProtocol"] == "tcp")


def test_a_prefix_list_that_is_not_one_is_refused(tmp_path: Path) -> None:
    _, stack, kwargs = small_app(tmp_path)
    with pytest.raises(
        ValueError, match=r"s3_prefix_list_id 'com.amazonaws.us-east-1.s3' is not a prefix list id"
    ):
        Training(stack, "Training", **{**kwargs, "s3_prefix_list_id": "com.amazonaws.us-east-1.s3"})


def _statements(built: Synth, role: str) -> dict[str, dict[str, Any]]:
    return {s["Sid"]: s for s in built.policy(role)}


def _arn(value: Any) -> str:
    return resolve(value)


def test_pipeline_role_may_do_exactly_its_five_things(scheduled: Synth) -> None:
    s = _statements(scheduled, "PipelineRole")
    assert set(s) == {
        "InvokeExport",
        "StartIsolatedTrainingJobs",
        "FollowTrainingJobs",
        "RegisterModels",
        "PassTrainingRole",
    }
    function = scheduled.logical_id("AWS::Lambda::Function", "ExportFunction")
    assert (s["InvokeExport"]["Action"], s["InvokeExport"]["Resource"]) == (
        "lambda:InvokeFunction",
        {"Fn::GetAtt": [function, "Arn"]},
    )
    jobs = f"arn:${{AWS::Partition}}:sagemaker:{REGION}:{ACCOUNT}:training-job/pipelines-*"
    create = s["StartIsolatedTrainingJobs"]
    assert create["Action"] == "sagemaker:CreateTrainingJob" and _arn(create["Resource"]) == jobs
    assert create["Condition"] == {
        "Bool": {"sagemaker:NetworkIsolation": "true", "sagemaker:InterContainerTrafficEncryption": "true"}
    }
    assert _arn(s["FollowTrainingJobs"]["Resource"]) == jobs
    assert sorted(_arn(r) for r in s["RegisterModels"]["Resource"]) == [
        f"arn:${{AWS::Partition}}:sagemaker:{REGION}:{ACCOUNT}:model-package-group/snowsage-test-models",
        f"arn:${{AWS::Partition}}:sagemaker:{REGION}:{ACCOUNT}:model-package/snowsage-test-models/*",
    ]
    assert "sagemaker:CreateModelPackage" in s["RegisterModels"]["Action"]
    training_role = scheduled.logical_id("AWS::IAM::Role", "TrainingRole")
    passing = s["PassTrainingRole"]
    assert (passing["Action"], passing["Resource"]) == (
        "iam:PassRole",
        {"Fn::GetAtt": [training_role, "Arn"]},
    )
    assert passing["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}
    assert all(st.get("Resource") != "*" for st in s.values())


def test_training_role_reads_the_runs_and_writes_only_model_and_checkpoints(scheduled: Synth) -> None:
    s = _statements(scheduled, "TrainingRole")
    runs = f"arn:${{AWS::Partition}}:s3:::{BUCKET}/training/runs/"
    assert (s["ReadRunData"]["Action"], _arn(s["ReadRunData"]["Resource"])) == ("s3:GetObject", runs + "*")
    assert s["ListRunData"]["Condition"] == {"StringLike": {"s3:prefix": ["training/runs/*"]}}
    write = s["WriteModelAndCheckpoints"]
    assert write["Action"] == "s3:PutObject"
    assert sorted(_arn(r) for r in write["Resource"]) == [runs + "*/checkpoints/*", runs + "*/model/*"]
    kms_via_s3 = s["EncryptRunDataViaS3"]
    assert kms_via_s3["Condition"] == {"StringEquals": {"kms:ViaService": f"s3.{REGION}.amazonaws.com"}}
    assert s["EncryptVolumesThroughAGrant"]["Condition"] == {"Bool": {"kms:GrantIsForAWSResource": "true"}}
    assert _arn(s["WriteJobLogs"]["Resource"]).endswith(
        ":log-group:/aws/sagemaker/TrainingJobs:log-stream:pipelines-*"
    )
    # Only network interfaces and the namespaced metric are unscoped; nothing touches ECR (built-in image).
    assert {sid for sid, st in s.items() if st["Resource"] == "*"} == {
        "PutTrainingMetrics",
        "VpcNetworkInterfaces",
    }
    assert not any(
        "ecr:" in a
        for st in s.values()
        for a in ([st["Action"]] if isinstance(st["Action"], str) else st["Action"])
    )
    role = scheduled.template["Resources"][scheduled.logical_id("AWS::IAM::Role", "TrainingRole")]
    trust = role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]
    assert trust["Principal"] == {"Service": "sagemaker.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT}}


def test_export_role_writes_only_under_the_runs_prefix(scheduled: Synth) -> None:
    s = _statements(scheduled, "ExportRole")
    assert _arn(s["WriteRunData"]["Resource"]) == f"arn:${{AWS::Partition}}:s3:::{BUCKET}/training/runs/*"
    assert sorted(s["WriteRunData"]["Action"]) == [
        "s3:AbortMultipartUpload",
        "s3:DeleteObject",
        "s3:GetObject",
        "s3:PutObject",
    ]
    assert s["EncryptRunDataViaS3"]["Condition"] == {
        "StringEquals": {"kms:ViaService": f"s3.{REGION}.amazonaws.com"}
    }
    assert {sid for sid, st in s.items() if st["Resource"] == "*"} == {"VpcNetworkInterfacesAndTracing"}


def test_export_function_runs_in_the_private_subnets_with_the_given_group(scheduled: Synth) -> None:
    _, function = next(iter(scheduled.resources("AWS::Lambda::Function").items()))
    props = function["Properties"]
    assert props["FunctionName"] == "snowsage-test-training-export"
    subnets = {k for k in scheduled.resources("AWS::EC2::Subnet")}
    assert {s["Ref"] for s in props["VpcConfig"]["SubnetIds"]} == subnets
    sg = scheduled.logical_id("AWS::EC2::SecurityGroup", "ExportSg")
    assert props["VpcConfig"]["SecurityGroupIds"] == [{"Fn::GetAtt": [sg, "GroupId"]}]
    assert props["Handler"] == "handler.handler" and props["TracingConfig"] == {"Mode": "Active"}


def test_the_export_handler_folder_must_exist(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"training export handler .*handler.py does not exist"):
        export_code(tmp_path / "missing")


def test_schedule_starts_only_this_pipeline_under_the_key_with_retries_and_a_dlq(scheduled: Synth) -> None:
    _, schedule = scheduled.one("AWS::Scheduler::Schedule")
    props = schedule["Properties"]
    assert (props["ScheduleExpression"], props["ScheduleExpressionTimezone"]) == (
        "cron(0 3 * * ? *)",
        "Europe/Berlin",
    )
    assert props["KmsKeyArn"] == {"Fn::GetAtt": [scheduled.logical_id("AWS::KMS::Key"), "Arn"]}
    target = props["Target"]
    assert (
        resolve(target["Arn"]) == "arn:${AWS::Partition}:scheduler:::aws-sdk:sagemaker:startPipelineExecution"
    )
    assert json.loads(target["Input"])["PipelineName"] == "snowsage-test-training"
    assert target["RetryPolicy"]["MaximumRetryAttempts"] >= 1
    queue = scheduled.logical_id("AWS::SQS::Queue", "ScheduleDeadLetters")
    assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": [queue, "Arn"]}}
    queue_props = scheduled.template["Resources"][queue]["Properties"]
    assert queue_props["KmsMasterKeyId"] == {"Fn::GetAtt": [scheduled.logical_id("AWS::KMS::Key"), "Arn"]}


def test_schedule_role_may_only_start_this_pipeline(scheduled: Synth) -> None:
    s = _statements(scheduled, "ScheduleRole")
    start = s["StartThisPipeline"]
    assert start["Action"] == "sagemaker:StartPipelineExecution"
    assert (
        _arn(start["Resource"])
        == f"arn:${{AWS::Partition}}:sagemaker:{REGION}:{ACCOUNT}:pipeline/snowsage-test-training"
    )
    actions = [
        a for st in s.values() for a in ([st["Action"]] if isinstance(st["Action"], str) else st["Action"])
    ]
    assert [a for a in actions if a.startswith("sagemaker:")] == ["sagemaker:StartPipelineExecution"]
    assert all(st["Resource"] != "*" for st in s.values())
    role = scheduled.template["Resources"][scheduled.logical_id("AWS::IAM::Role", "ScheduleRole")]
    trust = role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]
    assert trust["Principal"] == {"Service": "scheduler.amazonaws.com"}
    assert trust["Condition"]["StringEquals"] == {"aws:SourceAccount": ACCOUNT}
    assert resolve(trust["Condition"]["ArnEquals"]["aws:SourceArn"]) == (
        f"arn:${{AWS::Partition}}:scheduler:{REGION}:{ACCOUNT}:schedule-group/default"
    )


def test_failed_or_stopped_runs_of_this_pipeline_notify_the_topic(scheduled: Synth) -> None:
    _, rule = scheduled.one("AWS::Events::Rule")
    pattern = rule["Properties"]["EventPattern"]
    assert pattern["source"] == ["aws.sagemaker"]
    assert pattern["detail-type"] == ["SageMaker Model Building Pipeline Execution Status Change"]
    assert pattern["detail"]["currentPipelineExecutionStatus"] == ["Failed", "Stopped"]
    assert [resolve(a) for a in pattern["detail"]["pipelineArn"]] == [
        f"arn:${{AWS::Partition}}:sagemaker:{REGION}:{ACCOUNT}:pipeline/snowsage-test-training"
    ]
    topic = scheduled.logical_id("AWS::SNS::Topic")
    (target,) = rule["Properties"]["Targets"]
    assert target["Arn"] == {"Ref": topic}
    assert "snowsage train status" in target["InputTransformer"]["InputTemplate"]


def test_eventbridge_may_publish_to_the_encrypted_topic_for_this_rule_only(scheduled: Synth) -> None:
    _, rule = scheduled.one("AWS::Events::Rule")
    _, policy = scheduled.one("AWS::SNS::TopicPolicy")
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    (events_publish,) = [s for s in statements if s.get("Principal") == {"Service": "events.amazonaws.com"}]
    assert events_publish["Action"] == "sns:Publish" and events_publish["Effect"] == "Allow"
    source = resolve(events_publish["Condition"]["ArnEquals"]["aws:SourceArn"])
    assert source == f"arn:${{AWS::Partition}}:events:{REGION}:{ACCOUNT}:rule/{rule['Properties']['Name']}"
    _, key = scheduled.one("AWS::KMS::Key")
    key_statements = key["Properties"]["KeyPolicy"]["Statement"]
    (events_key,) = [s for s in key_statements if s.get("Principal") == {"Service": "events.amazonaws.com"}]
    assert {"kms:Decrypt", "kms:GenerateDataKey*"} <= set(events_key["Action"])


def test_no_successful_run_in_two_periods_raises_the_heartbeat(scheduled: Synth) -> None:
    alarms = {
        a["Properties"]["AlarmName"]: a["Properties"]
        for a in scheduled.resources("AWS::CloudWatch::Alarm").values()
    }
    heartbeat = alarms["snowsage-test-training-heartbeat"]
    assert (heartbeat["Namespace"], heartbeat["MetricName"]) == (
        "AWS/Sagemaker/ModelBuildingPipeline",
        "ExecutionSucceeded",
    )
    assert heartbeat["Dimensions"] == [{"Name": "PipelineName", "Value": "snowsage-test-training"}]
    assert (
        heartbeat["Period"] == 86400
        and heartbeat["EvaluationPeriods"] == 2
        and heartbeat["DatapointsToAlarm"] == 2
    )
    assert heartbeat["ComparisonOperator"] == "LessThanThreshold" and heartbeat["Threshold"] == 1
    assert heartbeat["TreatMissingData"] == "breaching"
    topic = {"Ref": scheduled.logical_id("AWS::SNS::Topic")}
    for alarm in alarms.values():
        assert alarm["AlarmActions"] == [topic] and alarm["OKActions"] == [topic]
    # CloudWatch may publish for these alarms only, and use the key for them only.
    _, policy = scheduled.one("AWS::SNS::TopicPolicy")
    (cw,) = [s for s in policy["Properties"]["PolicyDocument"]["Statement"]
             if s.get("Principal") == {"Service": "cloudwatch.amazonaws.com"}]  # fmt: skip
    assert sorted(
        resolve(a).rsplit(":", 1)[1] for a in cw["Condition"]["ArnEquals"]["aws:SourceArn"]
    ) == sorted(alarms)


def test_without_a_schedule_there_is_no_schedule_role_or_heartbeat(unscheduled: Synth) -> None:
    assert unscheduled.resources("AWS::Scheduler::Schedule") == {}
    assert unscheduled.resources("AWS::CloudWatch::Alarm") == {}
    assert [k for k in unscheduled.resources("AWS::IAM::Role") if "ScheduleRole" in k] == []
    # The failure rule is there either way: a manual run that fails is just as loud.
    assert len(unscheduled.resources("AWS::Events::Rule")) == 1


def test_a_schedule_too_sparse_for_the_heartbeat_is_refused(tmp_path: Path) -> None:
    _, stack, kwargs = small_app(tmp_path)
    with pytest.raises(ValueError, match=r"'rate\(7 days\)' .* schedule at least every 84 hours"):
        Training(stack, "Training", **{**kwargs, "schedule": TrainingSchedule("rate(7 days)", 7 * 86400)})


def test_run_retention_is_exposed_for_the_data_bucket(tmp_path: Path) -> None:
    _, stack, kwargs = small_app(tmp_path)
    training = Training(stack, "Training", **{**kwargs, "run_retention_days": 14})
    rule = training.run_data_lifecycle_rule
    assert rule.prefix == "training/runs/" and rule.expiration is not None
    assert rule.expiration.to_days() == 14


def test_nag_packs_report_no_violation(scheduled: Synth, unscheduled: Synth) -> None:
    for built in (scheduled, unscheduled):
        report = built.outdir / "policy-validation-report.json"
        data = json.loads(report.read_text()) if report.exists() else {"pluginReports": []}
        assert [v for p in data["pluginReports"] for v in p.get("violations", [])] == []


def test_cfn_lint_clean(scheduled: Synth) -> None:
    proc = subprocess.run(
        [
            str(Path(sys.executable).parent / "cfn-lint"),
            "--config-file",
            str(REPO / ".cfnlintrc.yaml"),
            str(scheduled.outdir / "TrainingTest.template.json"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def cross_stack(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    """The key, VPC and topic in one stack (as in Data, Network, Notebook), the TrainingStack in another."""
    from stacks.training_stack import TrainingOptions, TrainingStack

    tmp = tmp_path_factory.mktemp("training-stack")
    app, base, kwargs = small_app(tmp)
    stack = TrainingStack(
        app,
        "SnowSage-test-Training",
        env=cdk.Environment(account=ACCOUNT, region=REGION),
        env_name="test",
        key=kwargs["key"],
        vpc=kwargs["vpc"],
        subnets=kwargs["subnets"],
        s3_prefix_list_id=PREFIX_LIST,
        bucket_name=BUCKET,
        export_security_group=kwargs["export_security_group"],
        alarm_topic=kwargs["alarm_topic"],
        log_retention=logs.RetentionDays.ONE_YEAR,
        export_source=kwargs["export_source"],
        options=TrainingOptions(schedule=TrainingSchedule("rate(12 hours)", 12 * 3600)),
    )
    cdk.Validations.of(app).add_plugins(
        AwsSolutionsChecks(app), NIST80053R5Checks(app), HIPAASecurityChecks(app)
    )
    app.synth()  # a dependency cycle or a nag finding raises here
    assert stack.stack_name not in {d.stack_name for d in base.dependencies}
    outdir = tmp / "out"
    template = json.loads((outdir / "SnowSage-test-Training.template.json").read_text())
    base_template = json.loads((outdir / "TrainingTest.template.json").read_text())
    return Synth(template=template, outdir=outdir, definition={}, other=base_template)


def test_training_stack_composes_across_stacks_without_a_cycle(cross_stack: Synth) -> None:
    """The topic's and the key's policies name the rule and alarms by name, so the stacks that
    own them never depend on the Training stack."""
    outputs = {k: v["Value"] for k, v in cross_stack.template["Outputs"].items()}
    assert outputs["TrainingPipelineName"] == "snowsage-test-training"
    assert outputs["ModelPackageGroupName"] == "snowsage-test-models"
    assert outputs["TrainingRunRetentionDays"] == "30"
    base_template = cross_stack.other
    key = next(v for v in base_template["Resources"].values() if v["Type"] == "AWS::KMS::Key")
    principals = [s.get("Principal") for s in key["Properties"]["KeyPolicy"]["Statement"]]
    assert {"Service": "events.amazonaws.com"} in principals
