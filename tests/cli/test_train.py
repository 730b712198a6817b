"""`snowsage train ...` against moto: a Training stack's outputs, the pipeline (the real definition,
stacks/constructs/training/pipeline_definition.py), the export function and the model package group
created with boto3. moto runs no step and has no ListPipelineExecutionSteps, so a run's steps come
from a botocore Stubber."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from snowsage.ops import deployment as deployment_ops
from snowsage.training.spec import EXPORT_CONFIG_ENV_VAR, export_config
from stacks.constructs.training import pipeline_definition as pd
from tests.cli.conftest import ACCOUNT, REGION, FakeDeployment

USER_ARN = "arn:aws:iam::987654321098:user/abc1-b-self1234"
EXTERNAL_ID = "MYORG_SFCRole=2_abcdefGHIJ123456789="
UNLOAD_ROLE = f"arn:aws:iam::{ACCOUNT}:role/snowsage-unload"
DESC_TEXT = f"""+---------------------------+---------------+----------------------------------------+------------------+
| property                  | property_type | property_value                         | property_default |
|---------------------------+---------------+----------------------------------------+------------------|
| ENABLED                   | Boolean       | true                                   | false            |
| STORAGE_AWS_IAM_USER_ARN  | String        | {USER_ARN} |                  |
| STORAGE_AWS_ROLE_ARN      | String        | {UNLOAD_ROLE} |                  |
| STORAGE_AWS_EXTERNAL_ID   | String        | {EXTERNAL_ID}   |                  |
+---------------------------+---------------+----------------------------------------+------------------+
"""


@dataclass
class TrainingDeployment:
    base: FakeDeployment
    pipeline: str
    group: str
    function: str

    @property
    def env(self) -> str:
        return self.base.env

    def sagemaker(self) -> Any:
        return self.base.client("sagemaker")


def _definition(env: str) -> dict[str, Any]:
    return pd.build_definition(
        pd.PipelineSpec(
            export_function_arn=f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:snowsage-{env}-training-export",
            bucket_name=f"snowsage-{env}-results",
            image_uri=f"683313688378.dkr.ecr.{REGION}.amazonaws.com/sagemaker-xgboost:3.0-5",
            training_role_arn=f"arn:aws:iam::{ACCOUNT}:role/snowsage-{env}-training",
            subnet_ids=("subnet-0abc",),
            security_group_ids=("sg-0abc",),
            kms_key_arn=f"arn:aws:kms:{REGION}:{ACCOUNT}:key/00000000-0000-0000-0000-000000000000",
            model_package_group_name=f"snowsage-{env}-models",
            objective="regression",
            metric_threshold=100000.0,
        )
    )


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("handler.py", "def handler(event, context):\n    return {}\n")
    return buf.getvalue()


@pytest.fixture
def deploy_training(deploy: Callable[..., FakeDeployment]) -> Callable[..., TrainingDeployment]:
    """The three stacks of ``deploy`` plus SnowSage-<env>-Training with its pipeline, function and group."""

    def _deploy(
        exporter: str = "client", source: dict[str, Any] | None = None, group_exists: bool = True
    ) -> TrainingDeployment:
        d = deploy()
        pipeline, group, function = (
            f"snowsage-{d.env}-training",
            f"snowsage-{d.env}-models",
            f"snowsage-{d.env}-training-export",
        )
        role = boto3.client("iam", region_name=REGION).create_role(
            RoleName=f"snowsage-{d.env}-export",
            AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}),
        )["Role"]["Arn"]
        fields = {
            **(source or {"table": "ANALYTICS.PUBLIC.HOUSING"}),
            "label": "PRICE",
            "id_column": "HOUSE_ID",
            "exporter": exporter,
            **({"stage": "ANALYTICS.PUBLIC.SNOWSAGE_TRAINING"} if exporter == "unload" else {}),
        }
        d.client("lambda").create_function(
            FunctionName=function,
            Runtime="python3.12",
            Role=role,
            Handler="handler.handler",
            Code={"ZipFile": _zip()},
            Environment={"Variables": {EXPORT_CONFIG_ENV_VAR: export_config(**fields)}},
        )
        d.client("sagemaker").create_pipeline(
            PipelineName=pipeline,
            PipelineDefinition=json.dumps(_definition(d.env)),
            RoleArn=f"arn:aws:iam::{ACCOUNT}:role/snowsage-{d.env}-pipeline",
        )
        if group_exists:
            d.client("sagemaker").create_model_package_group(ModelPackageGroupName=group)
        outputs = {
            "TrainingPipelineName": pipeline,
            "ModelPackageGroupName": group,
            "TrainingExportFunctionName": function,
            "TrainingRunsPrefix": "training/runs/",
            "TrainingRunRetentionDays": "30",
        }
        d.client("cloudformation").create_stack(
            StackName=f"SnowSage-{d.env}-Training",
            TemplateBody=json.dumps(
                {
                    "Resources": {"Placeholder": {"Type": "AWS::SQS::Queue"}},
                    "Outputs": {k: {"Value": v} for k, v in outputs.items()},
                }
            ),
        )
        return TrainingDeployment(d, pipeline, group, function)

    return _deploy


@pytest.fixture
def stubbed_sagemaker(aws_env: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stubber]:
    """The CLI's SageMaker client answers only what the test stubs, in order (the rest is moto)."""
    client = boto3.client("sagemaker", region_name=REGION)
    stubber = Stubber(client)
    real = deployment_ops.make_session

    def make_session(profile: str | None, region: str | None) -> Any:
        session = real(profile, region)
        create = session.client
        session.client = lambda service, *a, **k: (
            client if service == "sagemaker" else create(service, *a, **k)
        )
        return session

    monkeypatch.setattr(deployment_ops, "make_session", make_session)
    with stubber:
        yield stubber
    stubber.assert_no_pending_responses()


# --- setup-sql ----------------------------------------------------------------------------------


def test_setup_sql_client_mode_grants_the_source_to_the_service_role(deploy_training, run) -> None:
    t = deploy_training()
    r = run("--env", t.env, "train", "setup-sql")
    assert r.exit_code == 0, r.stderr
    assert r.stdout.splitlines() == [
        'GRANT USAGE ON DATABASE "ANALYTICS" TO ROLE SNOWSAGE_ROLE;',
        'GRANT USAGE ON SCHEMA "ANALYTICS"."PUBLIC" TO ROLE SNOWSAGE_ROLE;',
        'GRANT SELECT ON TABLE "ANALYTICS"."PUBLIC"."HOUSING" TO ROLE SNOWSAGE_ROLE;',
    ]
    assert "STORAGE INTEGRATION" not in r.stdout
    assert "client exporter: no storage integration needed" in r.stderr


def test_setup_sql_query_source_asks_for_grants_on_what_it_reads(deploy_training, run) -> None:
    t = deploy_training(source={"query": "select * from HOUSING where PRICE > 0"})
    r = run("--env", t.env, "train", "setup-sql")
    assert r.exit_code == 0, r.stderr
    assert r.stdout.startswith("-- the source is a query: GRANT SELECT on every table it reads")


def test_setup_sql_unload_mode_has_integration_kms_stage_and_desc(deploy_training, run) -> None:
    t = deploy_training(exporter="unload")
    r = run(
        "--env",
        t.env,
        "train",
        "setup-sql",
        "--integration",
        "snowsage_int",
        "--unload-role-arn",
        UNLOAD_ROLE,
    )
    assert r.exit_code == 0, r.stderr
    bucket = f"snowsage-{t.env}-results"
    assert (
        "CREATE STORAGE INTEGRATION IF NOT EXISTS SNOWSAGE_INT TYPE = EXTERNAL_STAGE STORAGE_PROVIDER = 'S3' "
        f"ENABLED = TRUE STORAGE_AWS_ROLE_ARN = '{UNLOAD_ROLE}' "
        f"STORAGE_ALLOWED_LOCATIONS = ('s3://{bucket}/training/runs/');"
    ) in r.stdout
    assert f"ENCRYPTION = (TYPE = 'AWS_SSE_KMS' KMS_KEY_ID = '{t.base.key_arn}')" in r.stdout
    assert '"ANALYTICS"."PUBLIC"."SNOWSAGE_TRAINING"' in r.stdout  # the export function's stage
    assert not any(line.startswith("CREATE OR REPLACE") for line in r.stdout.splitlines())
    assert r.stdout.rstrip().endswith("DESC INTEGRATION SNOWSAGE_INT;")
    assert "--desc-integration -" in r.stderr


def test_setup_sql_unload_mode_says_which_values_to_pass(deploy_training, run) -> None:
    t = deploy_training(exporter="unload")
    r = run("--env", t.env, "train", "setup-sql")
    assert r.exit_code == 1 and r.stdout == ""
    assert "--integration NAME" in r.stderr and "--unload-role-arn ARN" in r.stderr


def test_setup_sql_refuses_a_role_arn_that_is_not_one(deploy_training, run) -> None:
    t = deploy_training(exporter="unload")
    r = run("--env", t.env, "train", "setup-sql", "--integration", "I", "--unload-role-arn", USER_ARN)
    assert r.exit_code == 1 and r.stdout == ""
    assert f"unload role ARN is '{USER_ARN}'" in r.stderr


def test_desc_integration_on_stdin_prints_the_exact_settings(deploy, run) -> None:
    d = deploy()  # needs no Training stack: the values come before the role's trust is deployed
    r = run("--env", d.env, "train", "setup-sql", "--desc-integration", "-", input=DESC_TEXT)
    assert r.exit_code == 0, r.stderr
    assert r.stdout.strip() == (
        f"-c training_storage_aws_iam_user_arn={USER_ARN} -c training_storage_aws_external_id={EXTERNAL_ID}"
    )
    assert f"npx cdk deploy SnowSage-{d.env}-Training -c training_storage_aws_iam_user_arn=" in r.stderr


def test_desc_integration_csv_from_snowsight_works_too(deploy, run) -> None:
    d = deploy()
    csv = (
        '"property","property_type","property_value","property_default"\n'
        f'"STORAGE_AWS_IAM_USER_ARN","String","{USER_ARN}",""\n'
        f'"STORAGE_AWS_EXTERNAL_ID","String","{EXTERNAL_ID}",""\n'
    )
    doc = json.loads(
        run("--env", d.env, "--json", "train", "setup-sql", "--desc-integration", "-", input=csv).stdout
    )
    assert doc["settings"] == {
        "training_storage_aws_iam_user_arn": USER_ARN,
        "training_storage_aws_external_id": EXTERNAL_ID,
    }


def test_desc_integration_without_the_values_says_what_to_paste(deploy, run) -> None:
    d = deploy()
    r = run(
        "--env",
        d.env,
        "train",
        "setup-sql",
        "--desc-integration",
        "-",
        input="| ENABLED | Boolean | true | false |\n",
    )
    assert r.exit_code == 1 and r.stdout == ""
    assert "no STORAGE_AWS_IAM_USER_ARN and no STORAGE_AWS_EXTERNAL_ID" in r.stderr
    assert "paste its whole output" in r.stderr


# --- not deployed -------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [["start"], ["status"], ["runs"], ["model"], ["setup-sql"]])
def test_without_the_training_stack_each_command_names_the_deploy(deploy, run, command) -> None:
    d = deploy()
    r = run("--env", d.env, "train", *command)
    assert r.exit_code == 1 and r.stdout == ""
    assert f"the training stack SnowSage-{d.env}-Training is not deployed in us-east-1" in r.stderr
    assert f"`npx cdk deploy SnowSage-{d.env}-Training`" in r.stderr


def test_a_missing_pipeline_says_to_redeploy(deploy_training, run) -> None:
    t = deploy_training()
    t.sagemaker().delete_pipeline(PipelineName=t.pipeline)
    r = run("--env", t.env, "train", "start")
    assert r.exit_code == 1
    assert (
        f"pipeline {t.pipeline} (TrainingPipelineName of SnowSage-{t.env}-Training) does not exist"
        in r.stderr
    )
    assert f"npx cdk deploy SnowSage-{t.env}-Training" in r.stderr


# --- start, runs --------------------------------------------------------------------------------


def _parameters(t: TrainingDeployment, arn: str) -> dict[str, str]:
    given = t.sagemaker().list_pipeline_parameters_for_execution(PipelineExecutionArn=arn)
    return {p["Name"]: p["Value"] for p in given["PipelineParameters"]}


def test_start_passes_the_params_to_the_pipeline(deploy_training, run) -> None:
    t = deploy_training()
    r = run(
        "--env", t.env, "train", "start", "--param", "InstanceCount=3", "--param", "MetricThreshold=50000"
    )
    assert r.exit_code == 0, r.stderr
    arn = t.sagemaker().list_pipeline_executions(PipelineName=t.pipeline)["PipelineExecutionSummaries"][0][
        "PipelineExecutionArn"
    ]
    execution_id = arn.rsplit("/", 1)[-1]
    assert _parameters(t, arn) == {"InstanceCount": "3", "MetricThreshold": "50000.0"}
    assert f"started run {execution_id} of {t.pipeline}" in r.stdout
    assert f"`snowsage train status {execution_id}`" in r.stderr


def test_start_refuses_an_unknown_param_and_lists_the_pipelines(deploy_training, run) -> None:
    t = deploy_training()
    r = run("--env", t.env, "train", "start", "--param", "InstanceCnt=3")
    assert r.exit_code == 1
    assert (
        "has no parameter 'InstanceCnt'; it has InstanceCount, InstanceType, MetricThreshold, MinimumRows"
        in r.stderr
    )
    assert t.sagemaker().list_pipeline_executions(PipelineName=t.pipeline)["PipelineExecutionSummaries"] == []


@pytest.mark.parametrize(
    ("param", "message"),
    [
        ("InstanceCount=two", "InstanceCount is a pipeline parameter of type Integer; give a whole number"),
        ("MetricThreshold=low", "MetricThreshold is a pipeline parameter of type Float; give a number"),
        ("InstanceCount", "is not K=V"),
    ],
)
def test_start_refuses_a_bad_value(deploy_training, run, param, message) -> None:
    t = deploy_training()
    r = run("--env", t.env, "train", "start", "--param", param)
    assert r.exit_code == 1 and message in r.stderr


def test_start_wait_reports_the_end_and_says_moto_lists_no_steps(deploy_training, run) -> None:
    t = deploy_training()
    r = run("--env", t.env, "--json", "train", "start", "--wait", "--param", "MinimumRows=10")
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["run"]["status"] == "Succeeded"  # moto ends every execution at once
    assert doc["run"]["parameters"]["MinimumRows"] == "10"
    assert doc["run"]["steps"] is None
    assert "does not implement ListPipelineExecutionSteps" in doc["run"]["steps_unavailable"]


def test_runs_lists_newest_first_and_says_when_there_is_none(deploy_training, run) -> None:
    t = deploy_training()
    r = run("--env", t.env, "train", "runs")
    assert r.exit_code == 0 and f"pipeline {t.pipeline} has no run yet" in r.stdout
    assert "`snowsage train start`" in r.stderr
    r = run("--env", t.env, "train", "status")
    assert r.exit_code == 1 and "has no run yet; start one with `snowsage train start`" in r.stderr

    ids = [
        json.loads(run("--env", t.env, "--json", "train", "start").stdout)["execution_id"] for _ in range(2)
    ]
    lines = run("--env", t.env, "train", "runs").stdout.splitlines()
    assert lines[0].split() == ["EXECUTION", "STATUS", "STARTED", "FAILURE"]
    assert [line.split()[0] for line in lines[1:]] == ids[::-1]
    assert all(line.split()[1] == "Succeeded" for line in lines[1:])


# --- status (Stubber: moto has no ListPipelineExecutionSteps) ----------------------------------------

T0 = datetime(2026, 12, 1, 3, 0, tzinfo=timezone.utc)


def _stub_run(
    stubber: Stubber,
    t: TrainingDeployment,
    execution_id: str,
    state: str,
    steps: list[dict[str, Any]],
    metric: float | None,
) -> None:
    arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:pipeline/{t.pipeline}"
    execution_arn = f"{arn}/execution/{execution_id}"
    stubber.add_response(
        "describe_pipeline",
        {
            "PipelineArn": arn,
            "PipelineName": t.pipeline,
            "PipelineDefinition": json.dumps(_definition(t.env)),
        },
        {"PipelineName": t.pipeline},
    )
    stubber.add_response(
        "describe_pipeline_execution",
        {
            "PipelineExecutionArn": execution_arn,
            "PipelineExecutionStatus": state,
            "FailureReason": "Step failure: One or multiple steps failed." if state == "Failed" else "",
            "CreationTime": T0,
            "LastModifiedTime": T0,
        },
        {"PipelineExecutionArn": execution_arn},
    )
    stubber.add_response(
        "list_pipeline_parameters_for_execution",
        {"PipelineParameters": [{"Name": "MetricThreshold", "Value": "40000"}]},
        {"PipelineExecutionArn": execution_arn},
    )
    stubber.add_response(
        "list_pipeline_execution_steps",
        {"PipelineExecutionSteps": steps},
        {"PipelineExecutionArn": execution_arn, "SortOrder": "Ascending"},
    )
    if metric is None:  # no Train step ran: nothing reads the training job
        return
    stubber.add_response(
        "describe_training_job",
        {
            "TrainingJobName": "pipelines-abc-Train-x1",
            "TrainingJobArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:training-job/pipelines-abc-Train-x1",
            "ModelArtifacts": {"S3ModelArtifacts": "s3://b/model.tar.gz"},
            "TrainingJobStatus": "Completed",
            "SecondaryStatus": "Completed",
            "AlgorithmSpecification": {"TrainingInputMode": "File", "TrainingImage": "x"},
            "ResourceConfig": {"InstanceCount": 2, "InstanceType": "ml.m5.xlarge", "VolumeSizeInGB": 30},
            "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
            "CreationTime": T0,
            "FinalMetricDataList": [
                {"MetricName": "train:rmse", "Value": 1.0, "Timestamp": T0},
                {"MetricName": "validation:rmse", "Value": metric, "Timestamp": T0},
            ],
        },
        {"TrainingJobName": "pipelines-abc-Train-x1"},
    )


def _step(name: str, status: str, meta: dict[str, Any], reason: str | None = None) -> dict[str, Any]:
    out = {"StepName": name, "StepStatus": status, "StartTime": T0, "EndTime": T0, "Metadata": meta}
    if reason:
        out["FailureReason"] = reason
    return out


TRAIN_META = {
    "TrainingJob": {"Arn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:training-job/pipelines-abc-Train-x1"}
}
EXPORT_META = {
    "Lambda": {
        "Arn": "arn:aws:lambda:x",
        "OutputParameters": [
            {"Name": "train_rows", "Value": "800"},
            {"Name": "train_files", "Value": "2"},
            {"Name": "train_prefix", "Value": "training/runs/abc/train/"},
        ],
    }
}
GATE_MESSAGE = "The model was not registered: validation:rmse is 52000.5, the gate needs validation:rmse <= MetricThreshold=40000.0."


def test_status_of_a_run_below_the_gate_shows_each_step_the_metric_and_what_to_do(
    deploy_training, run, stubbed_sagemaker
) -> None:
    t = deploy_training()
    _stub_run(
        stubbed_sagemaker,
        t,
        "abc123",
        "Failed",
        [
            _step("Export", "Succeeded", EXPORT_META),
            _step("DataCheck", "Succeeded", {"Condition": {"Outcome": "True"}}),
            _step("Train", "Succeeded", TRAIN_META),
            _step("Gate", "Succeeded", {"Condition": {"Outcome": "False"}}),
            _step("ModelBelowThreshold", "Failed", {"Fail": {"ErrorMessage": GATE_MESSAGE}}, GATE_MESSAGE),
        ],
        metric=52000.5,
    )
    r = run("--env", t.env, "train", "status", "abc123")
    assert r.exit_code == 1  # a failed run fails the command, so a script notices
    lines = r.stdout.splitlines()
    assert lines[0] == f"run abc123 of {t.pipeline}: Failed (started 2026-12-01 03:00:00)"
    table = {
        line.split()[0]: line.split(maxsplit=4)
        for line in lines
        if line.split()[0] in ("Export", "DataCheck", "Train", "Gate", "ModelBelowThreshold")
    }
    assert table["Export"][1] == "Succeeded" and table["Export"][4] == "train_rows=800, train_files=2"
    assert table["Gate"][4] == "outcome False"
    assert table["Train"][4] == "training job pipelines-abc-Train-x1"
    assert table["ModelBelowThreshold"][1] == "Failed" and table["ModelBelowThreshold"][4] == GATE_MESSAGE
    assert "metric: validation:rmse = 52000.5 (gate: <= 40000): fails the gate" in lines
    assert (
        f"what to do: step ModelBelowThreshold failed: {GATE_MESSAGE[:-1]}; fix what it says, then `snowsage train start`"
        in lines
    )


def test_status_of_a_failed_training_job_points_at_its_log(deploy_training, run, stubbed_sagemaker) -> None:
    t = deploy_training()
    reason = "AlgorithmError: label column has NULL values"
    _stub_run(
        stubbed_sagemaker,
        t,
        "def456",
        "Failed",
        [
            _step("Export", "Succeeded", EXPORT_META),
            _step("DataCheck", "Succeeded", {"Condition": {"Outcome": "True"}}),
            _step("Train", "Failed", TRAIN_META, reason),
        ],
        metric=1.0,
    )
    doc = json.loads(run("--env", t.env, "--json", "train", "status", "def456").stdout)
    assert doc["status"] == "Failed" and doc["failed_step"] == "Train" and doc["failure_reason"] == reason
    assert [s["name"] for s in doc["steps"]] == ["Export", "DataCheck", "Train"]
    assert doc["metric"] == {
        "name": "validation:rmse",
        "value": 1.0,
        "threshold": 40000.0,
        "comparison": "<=",
        "passed": True,
    }


def test_status_text_of_a_failed_training_job_names_the_log(deploy_training, run, stubbed_sagemaker) -> None:
    t = deploy_training()
    _stub_run(
        stubbed_sagemaker,
        t,
        "def456",
        "Failed",
        [
            _step("Export", "Succeeded", EXPORT_META),
            _step("Train", "Failed", TRAIN_META, "AlgorithmError: x"),
        ],
        metric=1.0,
    )
    r = run("--env", t.env, "train", "status", "def456")
    assert r.exit_code == 1
    assert "/aws/sagemaker/TrainingJobs, streams pipelines-abc-Train-x1/" in r.stdout


def test_status_of_a_failed_export_points_at_the_functions_log(
    deploy_training, run, stubbed_sagemaker
) -> None:
    t = deploy_training()
    reason = "the source returns no rows: widen the query"
    _stub_run(
        stubbed_sagemaker,
        t,
        "ghi789",
        "Failed",
        [_step("Export", "Failed", {"Lambda": {"Arn": "arn:aws:lambda:x"}}, reason)],
        metric=None,
    )
    r = run("--env", t.env, "train", "status", "ghi789")
    assert r.exit_code == 1
    assert (
        f"what to do: step Export failed: {reason}; its log is in CloudWatch log group /aws/lambda/{t.function}; "
        "fix what it says, then `snowsage train start`"
    ) in r.stdout.splitlines()
    assert "metric: validation:rmse = not reported yet (gate: <= 40000)" in r.stdout


def test_status_of_an_unknown_execution_says_where_to_look(deploy_training, run) -> None:
    t = deploy_training()
    r = run("--env", t.env, "train", "status", "nosuchrun1")
    assert r.exit_code == 1
    assert f"pipeline {t.pipeline} has no run nosuchrun1; `snowsage train runs` lists its runs" in r.stderr


def test_status_when_the_endpoint_lacks_the_steps_operation(deploy_training, run, stubbed_sagemaker) -> None:
    t = deploy_training()
    arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:pipeline/{t.pipeline}"
    stubbed_sagemaker.add_response(
        "describe_pipeline",
        {
            "PipelineArn": arn,
            "PipelineName": t.pipeline,
            "PipelineDefinition": json.dumps(_definition(t.env)),
        },
    )
    stubbed_sagemaker.add_response(
        "describe_pipeline_execution",
        {
            "PipelineExecutionArn": f"{arn}/execution/x1",
            "PipelineExecutionStatus": "Executing",
            "CreationTime": T0,
        },
    )
    stubbed_sagemaker.add_response("list_pipeline_parameters_for_execution", {"PipelineParameters": []})
    stubbed_sagemaker.add_client_error(
        "list_pipeline_execution_steps", service_error_code="UnknownOperationException", http_status_code=400
    )
    r = run("--env", t.env, "train", "status", "x1")
    assert r.exit_code == 0, r.stderr
    assert f"run x1 of {t.pipeline}: Executing" in r.stdout
    assert "does not implement ListPipelineExecutionSteps" in r.stderr
    assert "metric: validation:rmse = not reported yet (gate: <= 100000)" in r.stdout


# --- model --------------------------------------------------------------------------------------


def test_model_shows_the_latest_package_its_metric_and_how_to_approve(deploy_training, run) -> None:
    t = deploy_training()
    r = run("--env", t.env, "train", "model")
    assert r.exit_code == 1
    assert f"no model is registered in {t.group} yet: run `snowsage train start`" in r.stderr

    for value, execution in (("61000.0", "run1"), ("52000.5", "run2")):
        t.sagemaker().create_model_package(
            ModelPackageGroupName=t.group,
            ModelApprovalStatus="PendingManualApproval",
            InferenceSpecification={
                "Containers": [
                    {"Image": "x", "ModelDataUrl": f"s3://b/training/runs/{execution}/model/m.tar.gz"}
                ],
                "SupportedContentTypes": ["text/csv"],
                "SupportedResponseMIMETypes": ["text/csv"],
            },
            CustomerMetadataProperties={
                "metric": "validation:rmse",
                "metric_value": value,
                "threshold": "100000.0",
                "pipeline_execution_id": execution,
            },
        )
    r = run("--env", t.env, "train", "model")
    assert r.exit_code == 0, r.stderr
    arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/{t.group}/2"
    assert f"model package: {arn} (version 2 of {t.group})" in r.stdout
    assert "approval: PendingManualApproval" in r.stdout
    assert "metric: validation:rmse = 52000.5 (threshold 100000.0)" in r.stdout
    assert "by run run2" in r.stdout
    assert f"--model-package-arn {arn} --model-approval-status Approved" in r.stderr


def test_model_without_the_group_says_to_redeploy(deploy_training, run) -> None:
    t = deploy_training(group_exists=False)
    r = run("--env", t.env, "train", "model")
    assert r.exit_code == 1
    assert f"model package group {t.group} (from SnowSage-{t.env}-Training) does not exist" in r.stderr
