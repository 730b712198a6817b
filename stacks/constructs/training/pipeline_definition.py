"""The training pipeline's definition, built as data: Export -> DataCheck -> Train -> Gate -> RegisterModel.

``build_definition(PipelineSpec(...))`` returns the dict SageMaker Pipelines reads
(``{"Version": "2020-12-01", "Parameters": [...], "Steps": [...]}``), in the serialized form of
aws/sagemaker-python-sdk's workflow code (``Get``, ``Std:Join``, Condition ``IfSteps``/``ElseSteps``
holding whole step definitions, a Lambda step's ``FunctionArn``/``OutputParameters``, a Training
step's ``Arguments`` = a CreateTrainingJob request without ``TrainingJobName``, RegisterModel's = a
CreateModelPackage request without ``ModelPackageName``/``Description``/``CertifyForMarketplace``).
CDK tokens (ARNs) may appear anywhere: the construct renders the dict with
``cdk.Stack.to_json_string``. No SageMaker SDK is imported at synth.

The contract other programs share (the export handler, the local runner, the CLI) is named here once:
``STEP_*`` and ``PARAM_*`` names, ``EXPORT_OUTPUTS`` (what the export function returns, one key per
output), ``EXPORT_ARGUMENTS`` (what it receives) and ``run_prefix``'s layout
``training/runs/<execution id>/{train,validation,model,checkpoints}/``. ``train_prefix`` and
``validation_prefix`` are object-key prefixes in the results bucket ending in ``/`` (no ``s3://``).

``check_hyperparameters`` refuses a name the built-in XGBoost algorithm does not know, naming the
nearest known one; ``xgboost_image_account`` refuses a region with no published registry account.
``references`` lists every ``Get`` in a definition and ``unresolved_references`` those that point
at no parameter, execution variable or earlier step: ``build_definition`` fails on any.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

PIPELINE_SCHEMA_VERSION = "2020-12-01"

# The built-in algorithm's image, pinned (never :latest or :1): XGBoost 3.0.5.
XGBOOST_REPOSITORY = "sagemaker-xgboost"
XGBOOST_TAG = "3.0-5"
# Published registry accounts of the built-in XGBoost image, the same for every tag.
XGBOOST_REGISTRY_ACCOUNTS: Mapping[str, str] = {
    "us-east-1": "683313688378",
    "us-east-2": "257758044811",
    "us-west-1": "746614075791",
    "us-west-2": "246618743249",
    "ca-central-1": "341280168497",
    "eu-west-1": "141502667606",
    "eu-west-2": "764974769150",
    "eu-west-3": "659782779980",
    "eu-central-1": "492215442770",
    "eu-north-1": "662702820516",
    "ap-northeast-1": "354813040037",
    "ap-southeast-1": "121021644041",
    "ap-southeast-2": "783357654285",
    "ap-south-1": "720646828776",
    "sa-east-1": "737474898029",
}

# Every hyperparameter aws/sagemaker-xgboost-container's algorithm mode validates
# (src/sagemaker_xgboost_container/algorithm_mode/hyperparameter_validation.py at v3.0-5):
# anything else fails the training job after the instances have started, so synth refuses it.
XGBOOST_HYPERPARAMETERS: frozenset[str] = frozenset(
    {
        "_kfold", "_num_cv_round", "_tuning_objective_metric", "aft_loss_distribution",
        "aft_loss_distribution_scale", "alpha", "base_score", "booster", "colsample_bylevel",
        "colsample_bynode", "colsample_bytree", "csv_weights", "deterministic_histogram", "dsplit",
        "early_stopping_rounds", "eta", "eval_metric", "gamma", "grow_policy",
        "interaction_constraints", "lambda", "lambda_bias", "max_bin", "max_delta_step", "max_depth",
        "max_leaves", "min_child_weight", "monotone_constraints", "normalize_type", "nthread",
        "num_class", "num_parallel_tree", "num_round", "objective", "one_drop", "predictor",
        "prob_buffer_row", "process_type", "rate_drop", "refresh_leaf", "sample_type",
        "sampling_method", "save_model_on_termination", "scale_pos_weight", "seed", "sketch_eps",
        "skip_drop", "subsample", "tree_method", "tweedie_variance_power", "updater",
        "use_dask_gpu_training", "verbosity",
    }
)  # fmt: skip

# Step names: what `snowsage train status` shows and the local runner executes.
STEP_EXPORT = "Export"
STEP_DATA_CHECK = "DataCheck"
STEP_DATA_FAILED = "NotEnoughData"
STEP_TRAIN = "Train"
STEP_GATE = "Gate"
STEP_REGISTER = "RegisterModel"
STEP_GATE_FAILED = "ModelBelowThreshold"

PARAM_INSTANCE_COUNT = "InstanceCount"
PARAM_INSTANCE_TYPE = "InstanceType"
PARAM_MINIMUM_ROWS = "MinimumRows"
PARAM_METRIC_THRESHOLD = "MetricThreshold"

# What the export function returns (a flat JSON object, one key per output) and its type.
EXPORT_OUTPUTS: Mapping[str, Literal["String", "Integer"]] = {
    "train_prefix": "String",
    "validation_prefix": "String",
    "train_rows": "Integer",
    "validation_rows": "Integer",
    "train_files": "Integer",
    "validation_files": "Integer",
}
# What it receives: the run's id, the bucket, the run's key prefix and the minimum file count.
EXPORT_ARGUMENTS = ("run_id", "bucket", "run_prefix", "min_train_files")

RUNS_PREFIX = "training/runs/"
TRAIN_CHANNEL = "train"
VALIDATION_CHANNEL = "validation"
CONTENT_TYPE = "application/x-parquet"
CHECKPOINT_LOCAL_PATH = "/opt/ml/checkpoints"
# Inference with the registered model: what the built-in XGBoost container serves.
INFERENCE_CONTENT_TYPES = ("text/csv", "text/libsvm")
INFERENCE_RESPONSE_TYPES = ("text/csv",)

Objective = Literal["regression", "binary"]


@dataclass(frozen=True)
class ObjectiveSpec:
    """How an objective trains and is gated: the XGBoost objective and eval metric, the metric the
    built-in algorithm reports for the validation channel, and which way is better."""

    xgboost_objective: str
    eval_metric: str
    metric: str
    comparison: Literal["LessThanOrEqualTo", "GreaterThanOrEqualTo"]

    @property
    def symbol(self) -> str:
        return "<=" if self.comparison == "LessThanOrEqualTo" else ">="


OBJECTIVES: Mapping[str, ObjectiveSpec] = {
    "regression": ObjectiveSpec("reg:squarederror", "rmse", "validation:rmse", "LessThanOrEqualTo"),
    "binary": ObjectiveSpec("binary:logistic", "auc", "validation:auc", "GreaterThanOrEqualTo"),
}

# Set from the objective; a hyperparameter may not contradict it.
_OBJECTIVE_KEYS = ("objective", "eval_metric")
DEFAULT_HYPERPARAMETERS: Mapping[str, str] = {"num_round": "200", "early_stopping_rounds": "10"}


class PipelineDefinitionError(ValueError):
    """A setting the pipeline cannot be built from; the message names the value and the fix."""


def xgboost_image_account(region: str) -> str:
    try:
        return XGBOOST_REGISTRY_ACCOUNTS[region]
    except KeyError:
        raise PipelineDefinitionError(
            f"region {region!r} has no published account for the built-in {XGBOOST_REPOSITORY} image "
            f"in this app (known: {', '.join(sorted(XGBOOST_REGISTRY_ACCOUNTS))}); deploy the Training "
            "stack to one of those, or add the region's account from the SageMaker 'Docker registry "
            "paths' page to XGBOOST_REGISTRY_ACCOUNTS in stacks/constructs/training/pipeline_definition.py"
        ) from None


def check_hyperparameters(hyperparameters: Mapping[str, Any], *, objective: Objective) -> dict[str, str]:
    """The job's hyperparameters as strings (what CreateTrainingJob takes): the defaults, the
    objective's, then ``hyperparameters``. Raises naming an unknown name and the nearest known one."""
    spec = objective_spec(objective)
    out = {**DEFAULT_HYPERPARAMETERS, "objective": spec.xgboost_objective, "eval_metric": spec.eval_metric}
    for name, value in hyperparameters.items():
        if name not in XGBOOST_HYPERPARAMETERS:
            near = difflib.get_close_matches(name, sorted(XGBOOST_HYPERPARAMETERS), n=1, cutoff=0.5)
            hint = f"did you mean {near[0]!r}? " if near else ""
            raise PipelineDefinitionError(
                f"hyperparameter {name!r} is not one the built-in XGBoost algorithm knows; {hint}"
                f"the known ones are listed in XGBOOST_HYPERPARAMETERS (stacks/constructs/training/pipeline_definition.py)"
            )
        text = _hyperparameter_text(name, value)
        if name in _OBJECTIVE_KEYS and text != out[name]:
            raise PipelineDefinitionError(
                f"hyperparameter {name}={text!r} contradicts objective {objective!r}, which trains with "
                f"objective={spec.xgboost_objective!r} and eval_metric={spec.eval_metric!r} (the gate reads "
                f"{spec.metric}); drop {name!r} from the hyperparameters or choose the other objective"
            )
        out[name] = text
    return out


def objective_spec(objective: str) -> ObjectiveSpec:
    try:
        return OBJECTIVES[objective]
    except KeyError:
        raise PipelineDefinitionError(
            f"objective {objective!r} is not supported; use one of {', '.join(sorted(OBJECTIVES))}"
        ) from None


def _hyperparameter_text(name: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return str(value)
    raise PipelineDefinitionError(
        f"hyperparameter {name!r} has value {value!r} of type {type(value).__name__}; give a number or a string"
    )


@dataclass(frozen=True)
class PipelineSpec:
    """Everything the definition is made of. ARNs and ids may be CDK tokens.

    ``instance_count``, ``instance_type``, ``minimum_rows`` and ``metric_threshold`` are the
    defaults of the pipeline parameters of those names (a run may override them)."""

    export_function_arn: str
    bucket_name: str
    image_uri: str
    training_role_arn: str
    subnet_ids: tuple[str, ...]
    security_group_ids: tuple[str, ...]
    kms_key_arn: str
    model_package_group_name: str
    objective: Objective
    metric_threshold: float
    instance_type: str = "ml.m5.xlarge"
    instance_count: int = 2
    minimum_rows: int = 100
    spot: bool = True
    max_runtime_seconds: int = 3600
    max_wait_seconds: int | None = None  # spot only; defaults to twice the runtime
    volume_size_gb: int = 30
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)
    # More arguments for the export function (the source, label, split): visible to anyone who may
    # DescribePipeline, so never a secret.
    export_arguments: Mapping[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        taken = sorted(set(self.export_arguments) & set(EXPORT_ARGUMENTS))
        if taken:
            raise PipelineDefinitionError(
                f"export_arguments {taken} are set by the pipeline itself ({', '.join(EXPORT_ARGUMENTS)}); rename them"
            )
        if not self.subnet_ids:
            raise PipelineDefinitionError(
                "subnet_ids is empty: training runs in the private subnets; pass them"
            )
        if not self.security_group_ids:
            raise PipelineDefinitionError("security_group_ids is empty: pass the training security group")
        if self.instance_count < 1:
            raise PipelineDefinitionError(f"instance_count {self.instance_count} must be at least 1")
        if self.minimum_rows < 1:
            raise PipelineDefinitionError(f"minimum_rows {self.minimum_rows} must be at least 1")
        if not re.fullmatch(r"ml\.[a-z0-9]+\.[a-z0-9]+", self.instance_type):
            raise PipelineDefinitionError(
                f"instance_type {self.instance_type!r} is not a SageMaker training instance type (e.g. ml.m5.xlarge)"
            )
        if not 1 <= self.max_runtime_seconds <= 28 * 86400:
            raise PipelineDefinitionError(
                f"max_runtime_seconds {self.max_runtime_seconds} must be between 1 and {28 * 86400} (28 days)"
            )
        if self.max_wait_seconds is not None:
            if not self.spot:
                raise PipelineDefinitionError(
                    "max_wait_seconds applies to managed spot training only; set spot=True or drop it"
                )
            if self.max_wait_seconds < self.max_runtime_seconds:
                raise PipelineDefinitionError(
                    f"max_wait_seconds {self.max_wait_seconds} is below max_runtime_seconds "
                    f"{self.max_runtime_seconds}; SageMaker requires the wait to be at least the runtime"
                )

    @property
    def effective_max_wait_seconds(self) -> int:
        return self.max_wait_seconds or min(2 * self.max_runtime_seconds, 28 * 86400)


def get(path: str) -> dict[str, str]:
    return {"Get": path}


def join(*values: Any, on: str = "") -> dict[str, Any]:
    """``Std:Join`` of strings and ``Get`` expressions. A nested join of the same separator is
    spliced in: the published definition schema allows only strings and ``Get`` as values."""
    flat: list[Any] = []
    for value in values:
        if isinstance(value, dict) and "Std:Join" in value and value["Std:Join"]["On"] == on:
            flat.extend(value["Std:Join"]["Values"])
        else:
            flat.append(value)
    return {"Std:Join": {"On": on, "Values": flat}}


def param(name: str) -> dict[str, str]:
    return get(f"Parameters.{name}")


def export_output(name: str) -> dict[str, str]:
    if name not in EXPORT_OUTPUTS:
        raise KeyError(f"the export step has no output {name!r}")
    return get(f"Steps.{STEP_EXPORT}.OutputParameters['{name}']")


EXECUTION_ID = get("Execution.PipelineExecutionId")


def run_prefix(*parts: str) -> dict[str, Any]:
    """``training/runs/<execution id>/<parts...>/`` as a pipeline expression: a fresh prefix per run."""
    return join(RUNS_PREFIX, EXECUTION_ID, "/", *(f"{p}/" for p in parts))


def _s3_uri(bucket: str, key_prefix: Any) -> dict[str, Any]:
    return join(f"s3://{bucket}/", key_prefix)


def metric_value(spec: ObjectiveSpec) -> dict[str, str]:
    return get(f"Steps.{STEP_TRAIN}.FinalMetricDataList['{spec.metric}'].Value")


def build_definition(spec: PipelineSpec) -> dict[str, Any]:
    spec.validate()
    objective = objective_spec(spec.objective)
    hyperparameters = check_hyperparameters(spec.hyperparameters, objective=spec.objective)
    parameters = [
        {"Name": PARAM_INSTANCE_COUNT, "Type": "Integer", "DefaultValue": spec.instance_count},
        {"Name": PARAM_INSTANCE_TYPE, "Type": "String", "DefaultValue": spec.instance_type},
        {"Name": PARAM_MINIMUM_ROWS, "Type": "Integer", "DefaultValue": spec.minimum_rows},
        {"Name": PARAM_METRIC_THRESHOLD, "Type": "Float", "DefaultValue": float(spec.metric_threshold)},
    ]
    export = {
        "Name": STEP_EXPORT,
        "Type": "Lambda",
        "Arguments": {
            "run_id": EXECUTION_ID,
            "bucket": spec.bucket_name,
            "run_prefix": run_prefix(),
            "min_train_files": param(PARAM_INSTANCE_COUNT),
            **spec.export_arguments,
        },
        "FunctionArn": spec.export_function_arn,
        "OutputParameters": [{"OutputName": n, "OutputType": t} for n, t in EXPORT_OUTPUTS.items()],
    }
    data_failed = {
        "Name": STEP_DATA_FAILED,
        "Type": "Fail",
        "Arguments": {
            "ErrorMessage": join(
                "Not enough data to train: the export wrote ",
                export_output("train_rows"),
                " train rows in ",
                export_output("train_files"),
                " files and ",
                export_output("validation_rows"),
                " validation rows in ",
                export_output("validation_files"),
                " files; training needs at least MinimumRows=",
                param(PARAM_MINIMUM_ROWS),
                " train rows, one train file per instance (InstanceCount=",
                param(PARAM_INSTANCE_COUNT),
                ") and a validation row. Widen the source query, lower MinimumRows or InstanceCount "
                "(snowsage train start --param K=V), or raise the validation percent.",
            )
        },
    }
    train = {
        "Name": STEP_TRAIN,
        "Type": "Training",
        "Arguments": _training_request(spec, hyperparameters),
    }
    gate_failed = {
        "Name": STEP_GATE_FAILED,
        "Type": "Fail",
        "Arguments": {
            "ErrorMessage": join(
                f"The model was not registered: {objective.metric} is ",
                metric_value(objective),
                f", the gate needs {objective.metric} {objective.symbol} MetricThreshold=",
                param(PARAM_METRIC_THRESHOLD),
                ". Look at the training job's metrics, then change the features, the hyperparameters "
                "or the threshold (snowsage train start --param MetricThreshold=...).",
            )
        },
    }
    register = {
        "Name": STEP_REGISTER,
        "Type": "RegisterModel",
        "Arguments": {
            "ModelPackageGroupName": spec.model_package_group_name,
            "ModelApprovalStatus": "PendingManualApproval",
            "InferenceSpecification": {
                "Containers": [
                    {
                        "Image": spec.image_uri,
                        "ModelDataUrl": get(f"Steps.{STEP_TRAIN}.ModelArtifacts.S3ModelArtifacts"),
                    }
                ],
                "SupportedContentTypes": list(INFERENCE_CONTENT_TYPES),
                "SupportedResponseMIMETypes": list(INFERENCE_RESPONSE_TYPES),
            },
            "CustomerMetadataProperties": {
                "metric": objective.metric,
                "metric_value": join(metric_value(objective)),
                "threshold": join(param(PARAM_METRIC_THRESHOLD)),
                "pipeline_execution_id": EXECUTION_ID,
                "training_job": get(f"Steps.{STEP_TRAIN}.TrainingJobName"),
            },
        },
    }
    gate = {
        "Name": STEP_GATE,
        "Type": "Condition",
        "Arguments": {
            "Conditions": [
                {
                    "Type": objective.comparison,
                    "LeftValue": metric_value(objective),
                    "RightValue": param(PARAM_METRIC_THRESHOLD),
                }
            ],
            "IfSteps": [register],
            "ElseSteps": [gate_failed],
        },
    }
    data_check = {
        "Name": STEP_DATA_CHECK,
        "Type": "Condition",
        # Conditions in one step must all hold.
        "Arguments": {
            "Conditions": [
                {
                    "Type": "GreaterThanOrEqualTo",
                    "LeftValue": export_output("train_rows"),
                    "RightValue": param(PARAM_MINIMUM_ROWS),
                },
                {
                    "Type": "GreaterThanOrEqualTo",
                    "LeftValue": export_output("train_files"),
                    "RightValue": param(PARAM_INSTANCE_COUNT),
                },
                # A host with no validation data is dropped by the container.
                {
                    "Type": "GreaterThanOrEqualTo",
                    "LeftValue": export_output("validation_rows"),
                    "RightValue": 1,
                },
            ],
            "IfSteps": [train, gate],
            "ElseSteps": [data_failed],
        },
    }
    definition: dict[str, Any] = {
        "Version": PIPELINE_SCHEMA_VERSION,
        "Metadata": {},
        "Parameters": parameters,
        "Steps": [export, data_check],
    }
    broken = unresolved_references(definition)
    if broken:
        raise PipelineDefinitionError(f"the pipeline definition refers to what does not exist: {broken}")
    return definition


def _training_request(spec: PipelineSpec, hyperparameters: Mapping[str, str]) -> dict[str, Any]:
    def channel(name: str, distribution: str) -> dict[str, Any]:
        return {
            "ChannelName": name,
            "DataSource": {
                "S3DataSource": {
                    "S3DataType": "S3Prefix",
                    "S3Uri": _s3_uri(spec.bucket_name, export_output(f"{name}_prefix")),
                    "S3DataDistributionType": distribution,
                }
            },
            "ContentType": CONTENT_TYPE,
            "CompressionType": "None",
            "InputMode": "File",
        }

    request: dict[str, Any] = {
        "AlgorithmSpecification": {"TrainingImage": spec.image_uri, "TrainingInputMode": "File"},
        "RoleArn": spec.training_role_arn,
        "HyperParameters": dict(hyperparameters),
        # Each host reads about 1/n of the train objects; every host needs the whole validation set.
        "InputDataConfig": [
            channel(TRAIN_CHANNEL, "ShardedByS3Key"),
            channel(VALIDATION_CHANNEL, "FullyReplicated"),
        ],
        "OutputDataConfig": {
            "S3OutputPath": _s3_uri(spec.bucket_name, run_prefix("model")),
            "KmsKeyId": spec.kms_key_arn,
        },
        "ResourceConfig": {
            "InstanceCount": param(PARAM_INSTANCE_COUNT),
            "InstanceType": param(PARAM_INSTANCE_TYPE),
            "VolumeSizeInGB": spec.volume_size_gb,
            "VolumeKmsKeyId": spec.kms_key_arn,
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": spec.max_runtime_seconds},
        "VpcConfig": {
            "SecurityGroupIds": list(spec.security_group_ids),
            "Subnets": list(spec.subnet_ids),
        },
        "EnableNetworkIsolation": True,
        "EnableInterContainerTrafficEncryption": True,
        "EnableManagedSpotTraining": spec.spot,
    }
    if spec.spot:
        request["StoppingCondition"]["MaxWaitTimeInSeconds"] = spec.effective_max_wait_seconds
        request["CheckpointConfig"] = {
            "S3Uri": _s3_uri(spec.bucket_name, run_prefix("checkpoints")),
            "LocalPath": CHECKPOINT_LOCAL_PATH,
        }
    return request


def iter_steps(steps: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every step, depth first in execution order, including those inside condition branches."""
    for step in steps:
        yield step
        if step.get("Type") == "Condition":
            yield from iter_steps(step["Arguments"].get("IfSteps", []))
            yield from iter_steps(step["Arguments"].get("ElseSteps", []))


def references(value: Any) -> list[str]:
    """Every ``Get`` path in ``value``, in order."""
    found: list[str] = []
    if isinstance(value, dict):
        if set(value) == {"Get"} and isinstance(value["Get"], str):
            return [value["Get"]]
        for item in value.values():
            found += references(item)
    elif isinstance(value, list):
        for item in value:
            found += references(item)
    return found


_STEP_REF = re.compile(r"^Steps\.([A-Za-z0-9_-]+)\.(.+)$")
_EXPORT_REF = re.compile(r"^OutputParameters\['([^']+)'\]$")
EXECUTION_VARIABLES = frozenset(
    {
        "PipelineExecutionId",
        "PipelineExecutionArn",
        "PipelineName",
        "PipelineArn",
        "CurrentDateTime",
        "StartDateTime",
    }
)


def unresolved_references(definition: Mapping[str, Any]) -> list[str]:
    """``Get`` paths that name no parameter, execution variable, earlier step or declared Lambda output.

    "Earlier" follows the definition's order: a step may read the steps before it at its level
    and in the branches that enclose it, never a later step or one in a sibling branch."""
    parameters = {p["Name"] for p in definition.get("Parameters", [])}
    broken: list[str] = []

    def visit(steps: list[dict[str, Any]], visible: dict[str, dict[str, Any]]) -> None:
        seen = dict(visible)
        for step in steps:
            args = step.get("Arguments", {})
            own = {k: v for k, v in args.items() if k not in ("IfSteps", "ElseSteps")}
            for path in references(own):
                if not _resolves(path, parameters, seen):
                    broken.append(f"{step['Name']}: {path}")
            if step.get("Type") == "Condition":
                visit(args.get("IfSteps", []), seen)
                visit(args.get("ElseSteps", []), seen)
            seen[step["Name"]] = step

    visit(list(definition.get("Steps", [])), {})
    return broken


def _resolves(path: str, parameters: set[str], steps: Mapping[str, Mapping[str, Any]]) -> bool:
    if path.startswith("Parameters."):
        return path.removeprefix("Parameters.") in parameters
    if path.startswith("Execution."):
        return path.removeprefix("Execution.") in EXECUTION_VARIABLES
    match = _STEP_REF.match(path)
    if not match or match.group(1) not in steps:
        return False
    step = steps[match.group(1)]
    if step["Type"] == "Lambda":
        output = _EXPORT_REF.match(match.group(2))
        return bool(output) and output.group(1) in {o["OutputName"] for o in step["OutputParameters"]}  # type: ignore[union-attr]
    return step["Type"] in ("Training", "RegisterModel")
