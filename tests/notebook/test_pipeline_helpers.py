"""snowsage.pipeline's errors, each naming its fix: training not deployed, no run, bad parameters,
a failed run naming its step, no model registered.

The first group uses the session's moto, which marks every execution Succeeded at once. The runs
that fail use a moto with the sandbox's pipeline stand-in (``--pipeline-spool``) and the sandbox's
own PipelineRunner with executors that fail the way a real step would: the helper sees the failure
only through the SageMaker API, as on AWS.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

import snowsage.notebook as nb
import snowsage.pipeline as tp
from sandbox import servers
from sandbox.training import Executors, ModelRegistry, StepFailed
from sandbox.training_demo import PipelineRunner
from snowsage.settings import TRAINING_OUTPUT_KEYS, TRAINING_SETTINGS_KEY, RuntimeSettings
from stacks.constructs.training import pipeline_definition as pd
from tests.cli.test_train import _definition
from tests.conftest import REGION
from tests.notebook.conftest import Deploy

ACCOUNT = "123456789012"


def with_training(dep: Any, *, pipeline: bool = True) -> dict[str, str]:
    """Name the Training stack's resources in the settings file (as the Notebook stack does) and,
    with ``pipeline``, create the pipeline and its model group as that stack would."""
    settings = RuntimeSettings.from_file(dep.settings_file)
    names = dict(
        zip(
            TRAINING_OUTPUT_KEYS,
            (
                f"snowsage-{dep.env_name}-training",
                f"snowsage-{dep.env_name}-models",
                f"snowsage-{dep.env_name}-training-export",
            ),
            strict=True,
        )
    )
    dep.settings_file.write_text(
        dataclasses.replace(settings, extra={TRAINING_SETTINGS_KEY: names}).to_json()
    )
    if pipeline:
        sm = boto3.client("sagemaker", region_name=REGION)
        sm.create_pipeline(
            PipelineName=names["TrainingPipelineName"],
            PipelineDefinition=json.dumps(_definition(dep.env_name)),
            RoleArn=f"arn:aws:iam::{ACCOUNT}:role/snowsage-{dep.env_name}-pipeline",
        )
        sm.create_model_package_group(ModelPackageGroupName=names["ModelPackageGroupName"])
    nb._state["path"] = dep.settings_file
    return names


def test_without_training_in_the_settings_every_helper_says_deploy_it(deploy: Deploy) -> None:
    dep = deploy()
    nb._state["path"] = dep.settings_file
    for call in (tp.start_run, tp.wait, tp.gate, tp.load_model, tp.steps):
        with pytest.raises(tp.TrainingNotDeployed) as err:
            call()
        message = str(err.value)
        assert "training is not deployed for this notebook" in message, call
        assert f"npx cdk deploy SnowSage-{dep.env_name}-Training SnowSage-{dep.env_name}-Notebook" in message
        assert "stop and start the notebook instance" in message


def test_a_pipeline_missing_from_sagemaker_says_redeploy_the_training_stack(deploy: Deploy) -> None:
    dep = deploy()
    names = with_training(dep, pipeline=False)
    with pytest.raises(tp.TrainingNotDeployed) as err:
        tp.start_run()
    message = str(err.value)
    assert f"pipeline {names['TrainingPipelineName']}" in message and "does not exist" in message
    assert f"npx cdk deploy SnowSage-{dep.env_name}-Training" in message


def test_before_any_run_the_gate_the_wait_and_the_model_say_start_one(deploy: Deploy) -> None:
    dep = deploy()
    names = with_training(dep)
    with pytest.raises(tp.NoRunYet, match=r"has no run yet: start one with start_run\(\)"):
        tp.gate()
    with pytest.raises(tp.NoRunYet, match=r"has no run yet: start one with start_run\(\)"):
        tp.wait()
    with pytest.raises(tp.NoModelRegistered) as err:
        tp.load_model()
    assert f"no model is registered in {names['ModelPackageGroupName']} yet" in str(err.value)
    assert "start_run()" in str(err.value) and "snowsage train" not in str(err.value)


def test_parameters_the_pipeline_does_not_take_are_refused_before_anything_starts(deploy: Deploy) -> None:
    dep = deploy()
    names = with_training(dep)
    with pytest.raises(tp.InvalidArgument) as err:
        tp.start_run(Bogus=1)
    assert f"pipeline {names['TrainingPipelineName']} has no parameter 'Bogus'; it has " in str(err.value)
    assert pd.PARAM_INSTANCE_COUNT in str(err.value) and "--param" not in str(err.value)
    with pytest.raises(
        tp.InvalidArgument, match="InstanceCount='two': InstanceCount is a pipeline parameter of type Integer"
    ):
        tp.start_run(InstanceCount="two")
    sm = boto3.client("sagemaker", region_name=REGION)
    assert (
        sm.list_pipeline_executions(PipelineName=names["TrainingPipelineName"])["PipelineExecutionSummaries"]
        == []
    )


def test_wait_rejects_a_timeout_that_is_not_positive(deploy: Deploy) -> None:
    dep = deploy()
    with_training(dep)
    with pytest.raises(tp.InvalidArgument, match="timeout_minutes is 0; give a number of minutes above 0"):
        tp.wait(timeout_minutes=0)


# --------------------------------------------------------------------- runs that fail, reported by the sandbox


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[servers.Server, Path]]:
    """A moto whose StartPipelineExecution leaves the run to the sandbox's runner (sandbox.moto_server)."""
    tmp = tmp_path_factory.mktemp("pipeline-stand-in")
    port = servers.free_port()
    spool = tmp / "pipelines"
    server = servers.start(
        "moto",
        [*servers.moto_args(port), "--pipeline-spool", str(spool)],
        port=port,
        log=tmp / "moto.log",
        ready_path="/moto-api/",
        timeout=60,
    )
    try:
        yield server, spool
    finally:
        server.stop()


Export = Callable[..., dict[str, Any]]


def _export(rows: int = 500) -> Export:
    def export(*, function_arn: str, arguments: dict[str, Any]) -> dict[str, Any]:
        prefix = arguments["run_prefix"]
        return {
            "train_prefix": f"{prefix}train/",
            "validation_prefix": f"{prefix}validation/",
            "train_rows": rows,
            "validation_rows": rows // 4,
            "train_files": 2,
            "validation_files": 1,
        }

    return export


@pytest.fixture
def on_stand_in(
    stand_in: tuple[servers.Server, Path], deploy: Deploy, monkeypatch: pytest.MonkeyPatch
) -> Callable[[Executors], dict[str, str]]:
    """A deployment whose pipeline runs on the stand-in, its steps through ``executors``."""
    server, spool = stand_in
    runners: list[PipelineRunner] = []
    monkeypatch.setenv("AWS_ENDPOINT_URL", server.url)  # every AWS call of the test goes to the stand-in

    def _setup(executors: Executors) -> dict[str, str]:
        dep = deploy()
        names = with_training(dep)
        runner = PipelineRunner(spool=spool, executors=executors, region=REGION, account=ACCOUNT).start()
        runners.append(runner)
        return names

    yield _setup  # type: ignore[misc]
    for runner in runners:
        runner.stop()


def _fast_wait(run: Any) -> Any:
    return tp.wait(run, poll_seconds=0.2, timeout_minutes=2, echo=lambda _line: None)


def test_a_failed_export_names_its_step_and_reason(
    on_stand_in: Callable[[Executors], dict[str, str]],
) -> None:
    def export(**_: Any) -> dict[str, Any]:
        raise StepFailed("Snowflake says: table ANALYTICS.PUBLIC.HOUSING does not exist or not authorized")

    names = on_stand_in(Executors(invoke_lambda=export, train=lambda **_: {}, register_model=lambda **_: {}))
    run = tp.start_run()
    with pytest.raises(tp.RunFailed) as err:
        _fast_wait(run)
    message = str(err.value)
    assert err.value.step == pd.STEP_EXPORT
    assert message.startswith(
        f"run {run.execution_id} failed at step {pd.STEP_EXPORT}: Snowflake says: table"
    )
    assert f"CloudWatch log group /aws/lambda/{names['TrainingExportFunctionName']}" in message
    assert message.endswith("start a new run with start_run()")
    # The steps as SageMaker lists them, and the gate: there is no metric to read.
    table = tp.steps(run)
    assert list(table["step"]) == [pd.STEP_EXPORT] and list(table["status"]) == ["Failed"]
    with pytest.raises(tp.RunFailed, match=f"failed at step {pd.STEP_EXPORT}"):
        tp.gate(run)


def test_a_model_the_gate_refuses_is_not_registered_and_load_model_says_why(
    on_stand_in: Callable[[Executors], dict[str, str]],
) -> None:
    def train(*, job_name: str, request: dict[str, Any]) -> dict[str, Any]:
        return {
            **request,
            "TrainingJobStatus": "Completed",
            "ModelArtifacts": {
                "S3ModelArtifacts": f"{request['OutputDataConfig']['S3OutputPath']}/{job_name}/output/model.tar.gz"
            },
            "FinalMetricDataList": [{"MetricName": "validation:rmse", "Value": 250000.0}],
        }

    sm = boto3.client("sagemaker", region_name=REGION)
    on_stand_in(Executors(invoke_lambda=_export(), train=train, register_model=ModelRegistry(sagemaker=sm)))
    run = tp.start_run(InstanceCount=1)
    lines: list[str] = []
    with pytest.raises(tp.RunFailed) as err:
        tp.wait(run, poll_seconds=0.2, timeout_minutes=2, echo=lines.append)
    assert err.value.step == pd.STEP_GATE_FAILED
    # wait printed each step as it ended, the export's row counts and the training job among them.
    printed = "\n".join(lines)
    for step in (pd.STEP_EXPORT, pd.STEP_DATA_CHECK, pd.STEP_TRAIN, pd.STEP_GATE, pd.STEP_GATE_FAILED):
        assert step in printed
    assert "train_rows=500" in printed and f"training job pipelines-{run.execution_id}-Train" in printed
    decision = tp.gate(run)
    assert (decision.metric, decision.value, decision.threshold) == ("validation:rmse", 250000.0, 100000.0)
    assert decision.passed is False and decision.model_package_arn is None
    assert "gate refused; no model registered" in str(decision)
    with pytest.raises(tp.NoModelRegistered) as no_model:
        tp.load_model(run)
    assert (
        f"run {run.execution_id} registered no model (validation:rmse = 250000 <= threshold 100000: gate refused)"
        in str(no_model.value)
    )


def test_wait_gives_up_after_its_timeout_and_the_run_goes_on(
    on_stand_in: Callable[[Executors], dict[str, str]],
) -> None:
    release = threading.Event()

    def export(**kwargs: Any) -> dict[str, Any]:
        release.wait(30)  # a slow export: the run is still in its first step
        raise StepFailed("stopped by the test")

    on_stand_in(Executors(invoke_lambda=export, train=lambda **_: {}, register_model=lambda **_: {}))
    run = tp.start_run()
    try:
        with pytest.raises(tp.RunTimedOut) as err:
            tp.wait(run, timeout_minutes=0.01, poll_seconds=0.2, echo=lambda _line: None)
        assert str(err.value) == (
            f"run {run.execution_id} is still Executing after 0.01 minutes; it goes on running: "
            f"wait({run.execution_id!r}) follows it again (and steps({run.execution_id!r}) shows where it is)"
        )
        assert list(tp.steps(run)["status"]) == ["Executing"]
        with pytest.raises(tp.NoRunYet) as unfinished:
            tp.gate()  # the newest finished run: there is none yet
        assert f"(the newest, {run.execution_id}, is Executing): wait() follows it to the end" in str(
            unfinished.value
        )
    finally:
        release.set()
    with pytest.raises(tp.RunFailed, match="stopped by the test"):
        _fast_wait(run)
