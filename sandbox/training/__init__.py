"""Issue 14's pipeline on this machine: a SageMaker pipeline definition run step by step, training on
N local XGBoost hosts under the built-in container's data contract, the model registered in moto.

The interface (keyword arguments throughout)::

    from sandbox.training import Executors, LocalTrainer, ModelRegistry, PipelineDefinition, run_pipeline

    pipeline = PipelineDefinition.parse(definition_json)   # DefinitionError names a broken reference
    run = run_pipeline(
        pipeline,                                           # or the JSON text / dict itself
        executors=Executors(
            invoke_lambda=call_export,                      # (*, function_arn, arguments) -> payload dict
            train=LocalTrainer(s3=s3_client, work_dir=tmp), # (*, job_name, request) -> TrainingResult
            register_model=ModelRegistry(sagemaker=sm),     # (*, request) -> DescribeModelPackage dict
        ),
        parameters={"InstanceCount": 2},                    # overrides; defaults from the definition
        execution_id=None,                                  # default: a fresh SageMaker-like id
        pipeline_name="...",
    )
    run.status, run.failure_reason                          # "Succeeded" | "Failed"; a Fail step's ErrorMessage
    run.step("Train").properties["FinalMetricDataList"]     # what a Get reads; .status, .failure_reason
    run.step("Train").detail.hosts                          # TrainingResult: HostRun(host, objects, rows)
    run.not_run                                             # skipped by a condition or after a failure
    run.raise_for_status()                                  # PipelineFailed naming the reason

``train_locally(job_name=, request=, s3=, work_dir=)`` is the trainer without the runner. See
definition.py (format, checks), runner.py (order, conditions, executors) and local_trainer.py (the
container's data contract and the ShardedByS3Key rule chosen).
"""

from sandbox.training.definition import DefinitionError, PipelineDefinition
from sandbox.training.local_trainer import HostRun, LocalTrainer, TrainingError, TrainingResult, train_locally
from sandbox.training.registry import ModelRegistry
from sandbox.training.runner import Executors, PipelineFailed, PipelineRun, StepFailed, StepRun, run_pipeline

__all__ = [
    "DefinitionError",
    "Executors",
    "HostRun",
    "LocalTrainer",
    "ModelRegistry",
    "PipelineDefinition",
    "PipelineFailed",
    "PipelineRun",
    "StepFailed",
    "StepRun",
    "TrainingError",
    "TrainingResult",
    "run_pipeline",
    "train_locally",
]
