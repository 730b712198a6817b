"""The notebook drives the training pipeline (snowsage.pipeline): its settings name the Training
stack's resources and its role may make exactly the calls the helper makes, on exactly those."""

from __future__ import annotations

import json
from typing import Any

from snowsage.settings import TRAINING_OUTPUT_KEYS, TRAINING_SETTINGS_KEY
from stacks.constructs.training import pipeline_definition as pd

from .conftest import Synth
from .test_security import _actions, _joined_text, _policy_of_role, _statements

TRAINING_SIDS = {
    "StartTrainingPipeline",
    "FollowTrainingRuns",
    "ReadTrainingJobMetrics",
    "ReadRegisteredModels",
    "ListRegisteredModels",
    "ReadModelArtefacts",
}


def _by_sid(s: Synth) -> dict[str, dict[str, Any]]:
    return {st["Sid"]: st for st in _statements(_policy_of_role(s, "notebook", "NotebookPolicy"))}


def _resources(stmt: dict[str, Any]) -> list[str]:
    found = stmt["Resource"]
    return sorted(_joined_text(r) for r in (found if isinstance(found, list) else [found]))


def _training_names(s: Synth) -> dict[str, str]:
    """What the Training stack actually names its pipeline, model group and export function."""
    pipeline = next(iter(s.resources("training", "AWS::SageMaker::Pipeline").values()))
    group = next(iter(s.resources("training", "AWS::SageMaker::ModelPackageGroup").values()))
    functions = [
        f["Properties"]["FunctionName"]
        for f in s.resources("training", "AWS::Lambda::Function").values()
        if "export" in str(f["Properties"].get("FunctionName", ""))
    ]
    assert len(functions) == 1
    return {
        "TrainingPipelineName": pipeline["Properties"]["PipelineName"],
        "ModelPackageGroupName": group["Properties"]["ModelPackageGroupName"],
        "TrainingExportFunctionName": functions[0],
    }


def test_notebook_settings_name_the_training_stacks_resources(any_synth: Synth) -> None:
    s = any_synth
    lc = next(iter(s.resources("notebook", "AWS::SageMaker::NotebookInstanceLifecycleConfig").values()))
    script = lc["Properties"]["OnStart"][0]["Content"]["Fn::Base64"]["Fn::Join"][1]
    encoded = next(p["Fn::Base64"] for p in script if isinstance(p, dict) and "Fn::Base64" in p)
    # Tokens (the account in the bucket name) sit inside JSON strings: the document still parses.
    settings = json.loads(_joined_text(encoded))
    training = settings["extra"][TRAINING_SETTINGS_KEY]
    assert set(training) == set(TRAINING_OUTPUT_KEYS)
    assert training == _training_names(s)
    # The same keys as the Training stack's outputs, which the CLI reads.
    outputs = s.raw("training")["Outputs"]
    assert set(TRAINING_OUTPUT_KEYS) <= set(outputs)
    assert outputs["TrainingPipelineName"]["Value"] == training["TrainingPipelineName"]


def test_notebook_role_may_start_and_follow_only_the_training_pipeline(any_synth: Synth) -> None:
    s = any_synth
    env = s.cfg.env_name
    by_sid = _by_sid(s)
    assert set(by_sid) >= TRAINING_SIDS
    arn = "arn:aws:sagemaker:us-east-1:<token>:"
    pipeline = f"{arn}pipeline/snowsage-{env}-training"
    expected = {
        "StartTrainingPipeline": (
            {
                "sagemaker:DescribePipeline",
                "sagemaker:StartPipelineExecution",
                "sagemaker:ListPipelineExecutions",
            },
            [pipeline],
        ),
        "FollowTrainingRuns": (
            {
                "sagemaker:DescribePipelineExecution",
                "sagemaker:ListPipelineExecutionSteps",
                "sagemaker:ListPipelineParametersForExecution",
            },
            [f"{pipeline}/execution/*"],
        ),
        "ReadTrainingJobMetrics": ({"sagemaker:DescribeTrainingJob"}, [f"{arn}training-job/pipelines-*"]),
        "ReadRegisteredModels": (
            {"sagemaker:DescribeModelPackage", "sagemaker:DescribeModelPackageGroup"},
            sorted(
                [
                    f"{arn}model-package-group/snowsage-{env}-models",
                    f"{arn}model-package/snowsage-{env}-models/*",
                ]
            ),
        ),
        "ListRegisteredModels": ({"sagemaker:ListModelPackages"}, ["*"]),
    }
    for sid, (actions, resources) in expected.items():
        assert _actions(by_sid[sid]) == actions, sid
        assert _resources(by_sid[sid]) == resources, sid
        assert "Condition" not in by_sid[sid], sid
    # The Training stack's pipeline and group are the ones granted; the jobs are the ones it starts.
    names = _training_names(s)
    assert pipeline.endswith(f"pipeline/{names['TrainingPipelineName']}")
    assert f"{arn}model-package-group/{names['ModelPackageGroupName']}" in _resources(
        by_sid["ReadRegisteredModels"]
    )
    sagemaker_actions = {a for st in by_sid.values() for a in _actions(st) if a.startswith("sagemaker:")}
    for forbidden in (
        "sagemaker:CreatePipeline",
        "sagemaker:UpdatePipeline",
        "sagemaker:DeletePipeline",
        "sagemaker:StopPipelineExecution",
        "sagemaker:CreateTrainingJob",
        "sagemaker:CreateModelPackage",
        "sagemaker:UpdateModelPackage",  # approving a model is the operator's
    ):
        assert forbidden not in sagemaker_actions


def test_notebook_reads_only_each_runs_model_and_manifest(any_synth: Synth) -> None:
    s = any_synth
    bucket = f"arn:aws:s3:::snowsage-{s.cfg.env_name}-results-<token>-us-east-1"
    read = _by_sid(s)["ReadModelArtefacts"]
    assert _actions(read) == {"s3:GetObject"}
    assert _resources(read) == [
        f"{bucket}/{pd.RUNS_PREFIX}*/manifest.json",
        f"{bucket}/{pd.RUNS_PREFIX}*/model/*",
    ]
    # What the training jobs write there is what the notebook reads (and nothing else of a run).
    training_policy = next(
        v
        for k, v in s.resources("training", "AWS::IAM::ManagedPolicy").items()
        if k.startswith("TrainingTrainingRolePolicy")
    )
    writes = next(st for st in _statements(training_policy) if st.get("Sid") == "WriteModelAndCheckpoints")
    written = {
        r.split(":s3:::", 1)[1] for r in _resources(writes)
    }  # the training stack's partition is a token
    assert bucket.split(":s3:::", 1)[1] + f"/{pd.RUNS_PREFIX}*/model/*" in written
    # The bucket key through S3 only, as for results.
    assert _by_sid(s)["UseResultsBucketKeyViaS3"]["Condition"] == {
        "StringEquals": {"kms:ViaService": "s3.us-east-1.amazonaws.com"}
    }
