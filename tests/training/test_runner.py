"""The local runner executes a pipeline definition the way SageMaker would: order, expressions,
conditions and both their branches, Fail, and broken references refused before anything runs."""

from __future__ import annotations

import copy
import re
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from sandbox.training import (
    DefinitionError,
    Executors,
    LocalTrainer,
    ModelRegistry,
    PipelineDefinition,
    PipelineFailed,
    run_pipeline,
)
from tests.training.test_local_training import training_request, write_dataset

IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:3.0-5"
ROWS = {"Get": "Steps.Export.OutputParameters['rows']"}
FILES = {"Get": "Steps.Export.OutputParameters['train_files']"}
METRIC = {"Get": "Steps.Train.FinalMetricDataList['validation:rmse'].Value"}


def join(on: str, *values: Any) -> dict[str, Any]:
    return {"Std:Join": {"On": on, "Values": list(values)}}


def param(name: str) -> dict[str, str]:
    return {"Get": f"Parameters.{name}"}


def definition(bucket: str = "bucket", group: str = "models") -> dict[str, Any]:
    """Export -> data check (else Fail) -> Train -> gate on the metric (else Fail) -> RegisterModel,
    written by hand in the serialized format, with an Audit step listed first that DependsOn Export."""
    train = training_request(bucket, "unused", instances=1)
    train["ResourceConfig"]["InstanceCount"] = param("InstanceCount")
    train["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] = {
        "Get": "Steps.Export.OutputParameters['train_uri']"
    }
    train["InputDataConfig"][1]["DataSource"]["S3DataSource"]["S3Uri"] = {
        "Get": "Steps.Export.OutputParameters['validation_uri']"
    }
    train["OutputDataConfig"]["S3OutputPath"] = join(
        "/", "s3:/", param("Bucket"), "models", {"Get": "Execution.PipelineExecutionId"}
    )
    register = {
        "Name": "Register",
        "Type": "RegisterModel",
        "Arguments": {
            "ModelPackageGroupName": group,
            "ModelApprovalStatus": "PendingManualApproval",
            "ModelPackageDescription": join("", "validation:rmse=", METRIC),
            "InferenceSpecification": {
                "Containers": [
                    {"Image": IMAGE, "ModelDataUrl": {"Get": "Steps.Train.ModelArtifacts.S3ModelArtifacts"}}
                ],
                "SupportedContentTypes": ["text/csv"],
                "SupportedResponseMIMETypes": ["text/csv"],
            },
        },
    }
    gate = {
        "Name": "Gate",
        "Type": "Condition",
        "Arguments": {
            "Conditions": [
                {"Type": "LessThanOrEqualTo", "LeftValue": METRIC, "RightValue": param("MaxRmse")}
            ],
            "IfSteps": [register],
            "ElseSteps": [
                {
                    "Name": "GateFail",
                    "Type": "Fail",
                    "Arguments": {
                        "ErrorMessage": join(
                            "", "validation:rmse ", METRIC, " is above the threshold ", param("MaxRmse")
                        )
                    },
                }
            ],
        },
    }
    data_fail = {
        "Name": "DataFail",
        "Type": "Fail",
        "Arguments": {
            "ErrorMessage": join(
                " ",
                "export returned",
                ROWS,
                "rows and",
                FILES,
                "files; need",
                param("MinRows"),
                "and",
                param("InstanceCount"),
            )
        },
    }
    return {
        "Version": "2020-12-01",
        "Parameters": [
            {"Name": "InstanceCount", "Type": "Integer", "DefaultValue": 2},
            {"Name": "MinRows", "Type": "Integer", "DefaultValue": 100},
            {"Name": "MaxRmse", "Type": "Float", "DefaultValue": 1000.0},
            {"Name": "Trigger", "Type": "String", "DefaultValue": "schedule"},
            {"Name": "Bucket", "Type": "String", "DefaultValue": bucket},
        ],
        "Steps": [
            {
                "Name": "Audit",
                "Type": "Lambda",
                "DependsOn": ["Export"],
                "FunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:audit",
                "Arguments": {
                    "pipeline": {"Get": "Execution.PipelineName"},
                    "execution": {"Get": "Execution.PipelineExecutionArn"},
                },
                "OutputParameters": [],
            },
            {
                "Name": "Export",
                "Type": "Lambda",
                "FunctionArn": join(
                    ":",
                    "arn:aws:lambda:us-east-1:123456789012:function",
                    join("-", "snowsage", param("Trigger"), "export"),
                ),
                "Arguments": {
                    "prefix": join(
                        "/",
                        "s3:/",
                        param("Bucket"),
                        "training/runs",
                        {"Get": "Execution.PipelineExecutionId"},
                    ),
                    "files": param("InstanceCount"),
                },
                "OutputParameters": [
                    {"OutputName": "rows", "OutputType": "Integer"},
                    {"OutputName": "train_files", "OutputType": "Integer"},
                    {"OutputName": "train_uri", "OutputType": "String"},
                    {"OutputName": "validation_uri", "OutputType": "String"},
                ],
            },
            {
                "Name": "DataCheck",
                "Type": "Condition",
                "Arguments": {
                    "Conditions": [
                        {"Type": "GreaterThanOrEqualTo", "LeftValue": ROWS, "RightValue": param("MinRows")},
                        {
                            "Type": "GreaterThanOrEqualTo",
                            "LeftValue": FILES,
                            "RightValue": param("InstanceCount"),
                        },
                        {"Type": "Not", "Condition": {"Type": "Equals", "LeftValue": ROWS, "RightValue": 0}},
                        {
                            "Type": "Or",
                            "Conditions": [
                                {
                                    "Type": "In",
                                    "QueryValue": param("Trigger"),
                                    "Values": ["schedule", "manual"],
                                },
                                {"Type": "GreaterThan", "LeftValue": ROWS, "RightValue": 1_000_000},
                            ],
                        },
                        {"Type": "LessThan", "LeftValue": 0, "RightValue": FILES},
                    ],
                    "IfSteps": [{"Name": "Train", "Type": "Training", "Arguments": train}, gate],
                    "ElseSteps": [data_fail],
                },
            },
        ],
    }


class Fakes:
    """Executors that record what they were given and answer like the real ones."""

    def __init__(self, *, rows: int = 200, files: int = 2, metric: float = 0.5) -> None:
        self.rows, self.files, self.metric = rows, files, metric
        self.calls: list[tuple[str, Any]] = []

    def invoke_lambda(self, *, function_arn: str, arguments: Mapping[str, Any]) -> dict[str, Any]:
        self.calls.append((function_arn, dict(arguments)))
        if not function_arn.endswith("-export"):
            return {}
        prefix = arguments["prefix"]
        return {
            "rows": str(self.rows),
            "train_files": self.files,
            "train_uri": f"{prefix}/train/",
            "validation_uri": f"{prefix}/validation/",
            "extra": 1,
        }

    def train(self, *, job_name: str, request: Mapping[str, Any]) -> dict[str, Any]:
        self.calls.append((job_name, copy.deepcopy(dict(request))))
        return {
            "TrainingJobStatus": "Completed",
            "ModelArtifacts": {
                "S3ModelArtifacts": f"{request['OutputDataConfig']['S3OutputPath']}/{job_name}/output/model.tar.gz"
            },
            "FinalMetricDataList": [
                {"MetricName": "train:rmse", "Value": 0.1},
                {"MetricName": "validation:rmse", "Value": self.metric},
            ],
        }

    def register_model(self, *, request: Mapping[str, Any]) -> dict[str, Any]:
        self.calls.append(("register", copy.deepcopy(dict(request))))
        return {"ModelPackageArn": "arn:aws:sagemaker:us-east-1:123456789012:model-package/models/1"}

    def executors(self) -> Executors:
        return Executors(
            invoke_lambda=self.invoke_lambda, train=self.train, register_model=self.register_model
        )


def test_every_expression_resolves_and_the_if_branches_run_in_dependency_order() -> None:
    fakes = Fakes()
    run = run_pipeline(
        definition(),
        executors=fakes.executors(),
        execution_id="exec123abc",
        pipeline_name="SnowSage-dev-Training",
    )
    assert run.raise_for_status().status == "Succeeded"
    assert [s.name for s in run.steps] == ["Export", "Audit", "DataCheck", "Train", "Gate", "Register"]
    assert run.not_run == ("GateFail", "DataFail")
    (export_arn, export_args), (_, audit_args), (job, train), (_register, register) = fakes.calls
    assert export_arn == "arn:aws:lambda:us-east-1:123456789012:function:snowsage-schedule-export"
    assert export_args == {"prefix": "s3://bucket/training/runs/exec123abc", "files": 2}
    assert audit_args == {
        "pipeline": "SnowSage-dev-Training",
        "execution": "arn:aws:sagemaker:us-east-1:123456789012:pipeline/snowsage-dev-training/execution/exec123abc",
    }
    assert job == "pipelines-exec123abc-Train"
    assert train["ResourceConfig"]["InstanceCount"] == 2
    uris = [c["DataSource"]["S3DataSource"]["S3Uri"] for c in train["InputDataConfig"]]
    assert uris == [
        "s3://bucket/training/runs/exec123abc/train/",
        "s3://bucket/training/runs/exec123abc/validation/",
    ]
    assert register["ModelPackageDescription"] == "validation:rmse=0.5"
    model_url = register["InferenceSpecification"]["Containers"][0]["ModelDataUrl"]
    assert model_url == "s3://bucket/models/exec123abc/pipelines-exec123abc-Train/output/model.tar.gz"
    assert run.step("Export").properties == {
        "OutputParameters": {"rows": 200, "train_files": 2, "train_uri": uris[0], "validation_uri": uris[1]}
    }  # declared outputs only, typed as declared
    assert run.step("DataCheck").properties == {"Outcome": True}
    assert run.parameters == {
        "InstanceCount": 2,
        "MinRows": 100,
        "MaxRmse": 1000.0,
        "Trigger": "schedule",
        "Bucket": "bucket",
    }


def test_the_gate_else_branch_fails_the_run_with_the_metric_and_the_threshold() -> None:
    fakes = Fakes(metric=2.5)
    run = run_pipeline(definition(), executors=fakes.executors(), parameters={"MaxRmse": "2.0"})
    assert run.status == "Failed"
    assert run.failure_reason == "validation:rmse 2.5 is above the threshold 2.0"
    assert [(s.name, s.status) for s in run.steps][-2:] == [("Gate", "Succeeded"), ("GateFail", "Failed")]
    assert run.step("Gate").properties == {"Outcome": False}
    assert "Register" in run.not_run and not [c for c in fakes.calls if c[0] == "register"]
    with pytest.raises(
        PipelineFailed, match=f"pipeline execution {run.execution_id} failed: validation:rmse 2.5 is above"
    ):
        run.raise_for_status()


@pytest.mark.parametrize(
    ("fakes", "parameters", "reason"),
    [
        (Fakes(rows=50), {}, "export returned 50 rows and 2 files; need 100 and 2"),
        (Fakes(files=1), {"InstanceCount": 2}, "export returned 200 rows and 1 files; need 100 and 2"),
        (
            Fakes(),
            {"Trigger": "adhoc"},
            "export returned 200 rows and 2 files; need 100 and 2",
        ),  # the Or/In condition
    ],
    ids=["too-few-rows", "fewer-files-than-instances", "trigger-not-in-list"],
)
def test_the_data_check_else_branch_fails_before_training(
    fakes: Fakes, parameters: dict[str, Any], reason: str
) -> None:
    run = run_pipeline(definition(), executors=fakes.executors(), parameters=parameters)
    assert (run.status, run.failure_reason) == ("Failed", reason)
    assert [s.name for s in run.steps] == ["Export", "Audit", "DataCheck", "DataFail"]
    assert set(run.not_run) == {"Train", "Gate", "Register", "GateFail"}
    assert len(fakes.calls) == 2  # the two Lambda calls, no training


def _break(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """Set the value at a path of step names and keys, e.g. 'DataCheck/Train/ResourceConfig/InstanceCount'."""
    steps = {s["Name"]: s for s in _all_steps(doc["Steps"])}
    name, *keys = path.split("/")
    target = steps[name]
    for k in keys[:-1]:
        target = target[int(k)] if isinstance(target, list) else target[k]
    target[keys[-1]] = value
    return doc


def _all_steps(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found = []
    for s in steps:
        found.append(s)
        if s["Type"] == "Condition":
            found += _all_steps(s["Arguments"].get("IfSteps", []) + s["Arguments"].get("ElseSteps", []))
    return found


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (
            "Train/Arguments/ResourceConfig/InstanceCount",
            param("Instances"),
            "names parameter 'Instances', which the pipeline does not define",
        ),
        (
            "Audit/Arguments/pipeline",
            {"Get": "Execution.PipelineRunId"},
            "'Execution.PipelineRunId' is no execution variable",
        ),
        (
            "Register/Arguments/ModelPackageDescription",
            {"Get": "Steps.Training.ModelArtifacts.S3ModelArtifacts"},
            "names step 'Training', which the pipeline does not define",
        ),
        (
            "Train/Arguments/ResourceConfig/InstanceCount",
            {"Get": "Steps.Export.OutputParameters['files']"},
            "is no output of Lambda step 'Export' (read OutputParameters['<name>']; it declares: rows, train_files, train_uri, validation_uri)",
        ),
        (
            "Gate/Arguments/Conditions/0/LeftValue",
            {"Get": "Steps.Train.FinalMetricData['validation:rmse'].Value"},
            "'FinalMetricData' is no property there",
        ),
        (
            "Register/Arguments/ModelPackageDescription",
            {"Get": "Steps.DataCheck.Result"},
            "a Condition step has only the property 'Outcome'",
        ),
        ("Audit/DependsOn", ["Exporter"], "DependsOn names step 'Exporter'"),
        ("Gate/Arguments/Conditions/0/Type", "AtMost", "condition type 'AtMost' is unknown"),
        (
            "Audit/Type",
            "Processing",
            "step 'Audit' has Type 'Processing', which the local runner does not run",
        ),
        ("Export/DependsOn", ["Audit"], "the steps Audit, Export depend on each other in a cycle"),
        ("Audit/Arguments/pipeline", {"Std:JsonGet": {"Path": "x"}}, "does not evaluate Std:JsonGet"),
    ],
    ids=[
        "parameter",
        "execution-variable",
        "step",
        "lambda-output",
        "training-property",
        "condition-property",
        "depends-on",
        "condition-type",
        "step-type",
        "cycle",
        "function",
    ],
)
def test_a_broken_reference_fails_before_any_step_runs_naming_it(path: str, value: Any, message: str) -> None:
    fakes = Fakes()
    with pytest.raises(DefinitionError, match=re.escape(message)):
        run_pipeline(_break(definition(), path, value), executors=fakes.executors())
    assert fakes.calls == []


def test_a_metric_the_job_did_not_report_fails_the_gate_naming_it() -> None:
    doc = _break(
        definition(),
        "Gate/Arguments/Conditions/0/LeftValue",
        {"Get": "Steps.Train.FinalMetricDataList['validation:auc'].Value"},
    )
    run = run_pipeline(doc, executors=Fakes().executors())
    assert run.status == "Failed" and run.steps[-1].name == "Gate"
    assert run.failure_reason == (
        "\"Steps.Train.FinalMetricDataList['validation:auc'].Value\": step 'Train' has no entry 'validation:auc' "
        "(it has: train:rmse, validation:rmse)"
    )


def test_a_lambda_response_without_a_declared_output_fails_its_step() -> None:
    fakes = Fakes()
    real = fakes.invoke_lambda

    def forgetful(**kwargs: Any) -> dict[str, Any]:
        return {k: v for k, v in real(**kwargs).items() if k != "train_uri"}

    run = run_pipeline(
        definition(),
        executors=Executors(invoke_lambda=forgetful, train=fakes.train, register_model=fakes.register_model),
    )
    assert run.status == "Failed" and [s.name for s in run.steps] == ["Export"]
    assert run.failure_reason is not None and run.failure_reason.startswith(
        "the function's response has no 'train_uri', which step 'Export' declares in OutputParameters"
    )


def test_an_executor_error_fails_its_step_with_the_message() -> None:
    def broken(**_: Any) -> dict[str, Any]:
        raise RuntimeError("Snowflake said: Object 'HOUSING' does not exist")

    fakes = Fakes()
    run = run_pipeline(
        definition(),
        executors=Executors(invoke_lambda=broken, train=fakes.train, register_model=fakes.register_model),
    )
    assert (run.status, run.failure_reason) == (
        "Failed",
        "RuntimeError: Snowflake said: Object 'HOUSING' does not exist",
    )
    assert run.not_run[0] == "Audit" and fakes.calls == []


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        (
            {"Instances": 2},
            "parameter 'Instances' is not defined by the pipeline (it defines: InstanceCount, MinRows, MaxRmse, Trigger, Bucket)",
        ),
        ({"InstanceCount": "two"}, "parameter 'InstanceCount' is 'two', which is not a Integer"),
        ({"MaxRmse": True}, "parameter 'MaxRmse' is True, which is not a Float"),
    ],
)
def test_a_bad_parameter_is_refused_before_any_step_runs(parameters: dict[str, Any], message: str) -> None:
    fakes = Fakes()
    with pytest.raises(DefinitionError, match=re.escape(message)):
        run_pipeline(definition(), executors=fakes.executors(), parameters=parameters)
    assert fakes.calls == []


def test_a_step_type_without_an_executor_is_refused() -> None:
    with pytest.raises(
        DefinitionError, match="the pipeline has RegisterModel, Training steps but no executor for them"
    ):
        run_pipeline(definition(), executors=Executors(invoke_lambda=Fakes().invoke_lambda))


# The real thing: Lambda writes shards to moto S3, two local XGBoost hosts train, moto registers.


@pytest.fixture(scope="module")
def sandbox(aws_environment: dict[str, str]) -> dict[str, Any]:
    import boto3

    s3, sagemaker = (
        boto3.client("s3", region_name="us-east-1"),
        boto3.client("sagemaker", region_name="us-east-1"),
    )
    bucket, group = f"runner-{uuid.uuid4().hex[:12]}", f"models-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    sagemaker.create_model_package_group(ModelPackageGroupName=group)
    return {"s3": s3, "sagemaker": sagemaker, "bucket": bucket, "group": group}


def _run_for_real(sandbox: dict[str, Any], work_dir: Path, **parameters: Any) -> Any:
    s3, bucket = sandbox["s3"], sandbox["bucket"]

    def export(*, function_arn: str, arguments: Mapping[str, Any]) -> dict[str, Any]:
        if not function_arn.endswith("-export"):
            return {}
        prefix = arguments["prefix"].removeprefix(f"s3://{bucket}/")
        keys = write_dataset(s3, bucket, prefix)
        uri = f"s3://{bucket}/{prefix}"
        return {
            "rows": 40 * len(keys["train"]),
            "train_files": len(keys["train"]),
            "train_uri": f"{uri}/train/",
            "validation_uri": f"{uri}/validation/",
        }

    executors = Executors(
        invoke_lambda=export,
        train=LocalTrainer(s3=s3, work_dir=work_dir),
        register_model=ModelRegistry(sagemaker=sandbox["sagemaker"]),
    )
    return run_pipeline(
        PipelineDefinition.parse(definition(bucket, sandbox["group"])),
        executors=executors,
        parameters=parameters,
    )


def test_two_local_hosts_train_and_the_gate_registers_the_model_in_moto(
    sandbox: dict[str, Any], tmp_path: Path
) -> None:
    run = _run_for_real(sandbox, tmp_path).raise_for_status()
    trained = run.step("Train").detail
    assert [h.host for h in trained.hosts] == ["algo-1", "algo-2"]
    metric = trained.metrics["validation:rmse"]
    packages = sandbox["sagemaker"].list_model_packages(ModelPackageGroupName=sandbox["group"])[
        "ModelPackageSummaryList"
    ]
    assert [p["ModelPackageArn"] for p in packages] == [run.step("Register").properties["ModelPackageArn"]]
    described = sandbox["sagemaker"].describe_model_package(ModelPackageName=packages[0]["ModelPackageArn"])
    assert described["ModelApprovalStatus"] == "PendingManualApproval"
    assert described["ModelPackageDescription"] == f"validation:rmse={metric}"
    assert described["InferenceSpecification"]["Containers"][0]["ModelDataUrl"] == trained.model_uri


def test_the_gate_compares_the_real_metric_and_registers_nothing_above_the_threshold(
    sandbox: dict[str, Any], tmp_path: Path
) -> None:
    before = sandbox["sagemaker"].list_model_packages(ModelPackageGroupName=sandbox["group"])[
        "ModelPackageSummaryList"
    ]
    run = _run_for_real(sandbox, tmp_path, MaxRmse=0.001)
    metric = run.step("Train").detail.metrics["validation:rmse"]
    assert metric > 0.001
    assert (run.status, run.failure_reason) == (
        "Failed",
        f"validation:rmse {metric} is above the threshold 0.001",
    )
    after = sandbox["sagemaker"].list_model_packages(ModelPackageGroupName=sandbox["group"])[
        "ModelPackageSummaryList"
    ]
    assert after == before


def test_a_failed_training_job_fails_its_step_with_the_jobs_reason() -> None:
    fakes = Fakes()

    def failing(**_: Any) -> dict[str, Any]:
        return {"TrainingJobStatus": "Failed", "FailureReason": "ClientError: no train data on algo-2"}

    executors = Executors(
        invoke_lambda=fakes.invoke_lambda, train=failing, register_model=fakes.register_model
    )
    run = run_pipeline(definition(), executors=executors)
    assert (run.status, run.failure_reason) == ("Failed", "ClientError: no train data on algo-2")
    assert run.steps[-1].name == "Train" and set(run.not_run) >= {"Gate", "Register"}
