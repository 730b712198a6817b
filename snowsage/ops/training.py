"""The training pipeline as the operator sees it: the Snowflake admin's SQL for the export, starting a
run, following it, listing runs and the latest registered model.

Everything is found through the ``SnowSage-<env>-Training`` outputs (TrainingPipelineName,
ModelPackageGroupName, TrainingExportFunctionName) and what the pipeline itself publishes: its
parameters, the metric its gate reads and the export's settings come from DescribePipeline's
definition and the export function's configuration, so the CLI cannot disagree with what runs.
"""

from __future__ import annotations

import json
import re
import shlex
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from botocore.exceptions import ClientError

from snowsage.aws import error_code
from snowsage.ops.deployment import OperationError
from snowsage.stack_outputs import Deployment, StackNotDeployed
from snowsage.training import integration
from snowsage.training.spec import EXPORT_CONFIG_ENV_VAR, ExportInputError, execution_id_of

KIND = "Training"
DONE = ("Succeeded", "Failed", "Stopped")
FAILED = ("Failed", "Stopped")
# The config keys (stacks/config.py) `train setup-sql --desc-integration` prints, one per DESC value.
IAM_USER_ARN_KEY = "training_storage_aws_iam_user_arn"
EXTERNAL_ID_KEY = "training_storage_aws_external_id"
# Answers that mean "this endpoint has no such operation" (moto answers an unknown one with an HTML 500).
_NOT_IMPLEMENTED = frozenset(
    {"NotImplemented", "NotImplementedException", "UnknownOperationException", "500"}
)
_METRIC_REF = re.compile(r"FinalMetricDataList\['([^']+)'\]")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_SYMBOLS = {"LessThanOrEqualTo": "<=", "LessThan": "<", "GreaterThanOrEqualTo": ">=", "GreaterThan": ">"}


# --- errors a caller may word for its own users (the notebook helper does) -------------------------


class TrainingNotDeployed(OperationError):
    """The Training stack, its pipeline or its model package group is not there."""


class NoRunYet(OperationError):
    """The pipeline has never been started."""


class NoModelYet(OperationError):
    """The model package group holds no model."""


# --- results ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainingSetupSql:
    exporter: str
    role: str
    source: str  # the table, or "query"
    sql: str
    integration: str | None = None
    stage: str | None = None


@dataclass(frozen=True)
class IntegrationSettings:
    """The two DESC INTEGRATION values as the config settings the unload role's trust is built from."""

    settings: Mapping[str, str]
    stack: str

    @property
    def context_args(self) -> list[str]:
        return [f"-c {k}={shlex.quote(v)}" for k, v in self.settings.items()]

    @property
    def deploy_command(self) -> str:
        return f"npx cdk deploy {self.stack} " + " ".join(self.context_args)


@dataclass(frozen=True)
class Metric:
    name: str
    value: float | None
    threshold: float | None
    comparison: str | None  # "<=", ">=", ...
    passed: bool | None


@dataclass(frozen=True)
class StepState:
    name: str
    status: str
    started: datetime | None
    ended: datetime | None
    failure_reason: str | None
    detail: str


@dataclass(frozen=True)
class RunStatus:
    pipeline: str
    execution_id: str
    execution_arn: str
    status: str
    failure_reason: str | None
    started: datetime | None
    last_modified: datetime | None
    parameters: Mapping[str, str]
    steps: tuple[StepState, ...] | None  # None: the endpoint cannot list them
    steps_unavailable: str | None
    metric: Metric | None
    failed_step: str | None
    next_step: str | None  # what to do about a failed run

    @property
    def ok(self) -> bool:
        return self.status not in FAILED


@dataclass(frozen=True)
class StartedRun:
    pipeline: str
    execution_id: str
    execution_arn: str
    parameters: Mapping[str, str]  # only those given; the rest keep the pipeline's defaults
    run: RunStatus | None = None  # with --wait, how it ended

    @property
    def ok(self) -> bool:
        return self.run is None or self.run.ok


@dataclass(frozen=True)
class RunSummary:
    execution_id: str
    execution_arn: str
    status: str
    started: datetime | None
    failure_reason: str | None


@dataclass(frozen=True)
class RunList:
    pipeline: str
    runs: tuple[RunSummary, ...]


@dataclass(frozen=True)
class RegisteredModel:
    group: str
    model_package_arn: str
    version: int | None
    approval_status: str
    created: datetime | None
    metric: str | None
    metric_value: str | None
    threshold: str | None
    pipeline_execution_id: str | None
    training_job: str | None
    model_data_url: str | None


# --- inputs ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SetupSqlRequest:
    integration: str | None = None  # not published as an output yet
    unload_role_arn: str | None = None  # not published as an output yet
    stage: str | None = None  # overrides the export config's


@dataclass(frozen=True)
class StartRequest:
    params: tuple[str, ...] = ()  # K=V
    wait: bool = False
    timeout_seconds: int = 4 * 3600
    poll_seconds: float = 30.0
    description: str = "started by snowsage train start"


# --- the Training stack ----------------------------------------------------------------------------


def _deploy_hint(dep: Deployment) -> str:
    return f"npx cdk deploy {dep.stack_name(KIND)}"


def _output(dep: Deployment, key: str) -> str:
    try:
        return str(dep.output(KIND, key))
    except StackNotDeployed:
        raise TrainingNotDeployed(
            f"the training stack {dep.stack_name(KIND)} is not deployed in {dep.region}; deploy it with "
            f"`{_deploy_hint(dep)}` (or make deploy), or pass the --env/--region it was deployed with"
        ) from None


def _missing(exc: ClientError) -> bool:
    return error_code(exc) in ("ResourceNotFound", "ResourceNotFoundException") or (
        error_code(exc) == "ValidationException" and ("not find" in str(exc) or "does not exist" in str(exc))
    )


@dataclass(frozen=True)
class _Pipeline:
    name: str
    arn: str
    definition: Mapping[str, Any]

    def parameters(self) -> dict[str, Mapping[str, Any]]:
        return {p["Name"]: p for p in self.definition.get("Parameters", []) if "Name" in p}

    def steps(self) -> list[Mapping[str, Any]]:
        out: list[Mapping[str, Any]] = []

        def walk(steps: Sequence[Mapping[str, Any]]) -> None:
            for step in steps:
                out.append(step)
                args = step.get("Arguments", {})
                if step.get("Type") == "Condition":
                    walk(args.get("IfSteps", []))
                    walk(args.get("ElseSteps", []))

        walk(self.definition.get("Steps", []))
        return out

    def execution_arn(self, execution_id: str) -> str:
        return f"{self.arn}/execution/{execution_id}"


def _pipeline(dep: Deployment) -> _Pipeline:
    name = _output(dep, "TrainingPipelineName")
    try:
        resp = dep.client("sagemaker").describe_pipeline(PipelineName=name)
    except ClientError as exc:
        if _missing(exc):
            raise TrainingNotDeployed(
                f"pipeline {name} (TrainingPipelineName of {dep.stack_name(KIND)}) does not exist in "
                f"{dep.region}; redeploy the training stack: `{_deploy_hint(dep)}`"
            ) from None
        raise
    try:
        definition = json.loads(resp.get("PipelineDefinition") or "{}")
    except ValueError:
        definition = {}
    return _Pipeline(name, str(resp["PipelineArn"]), definition if isinstance(definition, dict) else {})


# --- setup SQL -------------------------------------------------------------------------------------


def _export_config(dep: Deployment, pipeline: _Pipeline) -> dict[str, Any]:
    """The export's static settings: the function's config document, then the Export step's literal
    arguments over it (the step wins, as in ``ExportSpec.from_event``)."""
    function = _output(dep, "TrainingExportFunctionName")
    try:
        conf = dep.client("lambda").get_function_configuration(FunctionName=function)
    except ClientError as exc:
        if error_code(exc) == "ResourceNotFoundException":
            raise OperationError(
                f"export function {function} (from {dep.stack_name(KIND)}) does not exist in {dep.region}; "
                f"redeploy the training stack: `{_deploy_hint(dep)}`"
            ) from None
        raise
    raw = (conf.get("Environment") or {}).get("Variables", {}).get(EXPORT_CONFIG_ENV_VAR)
    try:
        config = json.loads(raw) if raw else {}
    except ValueError:
        raise OperationError(
            f"export function {function} has a {EXPORT_CONFIG_ENV_VAR} that is not JSON; redeploy the "
            f"training stack: `{_deploy_hint(dep)}`"
        ) from None
    merged = dict(config) if isinstance(config, dict) else {}
    for step in pipeline.steps():
        if step.get("Type") == "Lambda":
            for key, value in step.get("Arguments", {}).items():
                if isinstance(value, str | int | float) and not isinstance(value, bool):
                    merged[key] = value
            break
    return merged


def setup_sql(dep: Deployment, req: SetupSqlRequest) -> TrainingSetupSql:
    """Read access to the source for the service role; in unload mode also the storage integration,
    the KMS-encrypted stage, its grants and the DESC INTEGRATION whose output comes back here."""
    pipeline = _pipeline(dep)
    config = _export_config(dep, pipeline)
    settings = dep.settings()
    role = dep.require_parameters({"role": settings.parameters["role"]})["role"].value
    table, query = config.get("table") or None, config.get("query") or None
    if not table and not query:
        raise OperationError(
            f"the export function of {dep.stack_name(KIND)} names no source (table or query); set the "
            f"training source in the config and redeploy: `{_deploy_hint(dep)}`"
        )
    exporter = str(config.get("exporter") or "client")
    try:
        return _setup_sql(dep, req, config, role=role, table=table, exporter=exporter)
    except ExportInputError as exc:  # a value no statement can be built from: the message names it
        raise OperationError(str(exc)) from None


def _setup_sql(
    dep: Deployment,
    req: SetupSqlRequest,
    config: Mapping[str, Any],
    *,
    role: str,
    table: str | None,
    exporter: str,
) -> TrainingSetupSql:
    lines = integration.source_grants_sql(role=role, table=table)
    if exporter != "unload":
        return TrainingSetupSql(exporter, role.upper(), table or "query", "\n".join(lines) + "\n")
    stage = req.stage or config.get("stage")
    missing = [
        what
        for what, value in (
            ("--integration NAME (the training_storage_integration setting)", req.integration),
            ("--unload-role-arn ARN (the Training stack's unload role)", req.unload_role_arn),
            ("--stage NAME (the export config has none)", stage),
        )
        if not value
    ]
    if missing:
        raise OperationError(f"the exporter is unload, so this SQL needs {'; '.join(missing)}: pass it")
    lines += integration.unload_setup_sql(
        integration=str(req.integration),
        role_arn=str(req.unload_role_arn),
        bucket=str(dep.output("Data", "ResultsBucketName")),
        stage=str(stage),
        kms_key_arn=str(dep.output("Data", "KeyArn")),
        role=role,
    )
    return TrainingSetupSql(
        exporter, role.upper(), table or "query", "\n".join(lines) + "\n", str(req.integration).upper(), stage
    )


def integration_settings(dep: Deployment, pasted: str) -> IntegrationSettings:
    """The ``-c`` settings for the unload role's trust from the admin's pasted DESC INTEGRATION output."""
    try:
        trust = integration.parse_desc_integration(pasted)
    except ExportInputError as exc:
        raise OperationError(str(exc)) from None
    return IntegrationSettings(
        {IAM_USER_ARN_KEY: trust.iam_user_arn, EXTERNAL_ID_KEY: trust.external_id}, dep.stack_name(KIND)
    )


# --- runs ------------------------------------------------------------------------------------------


def _typed(name: str, kind: str, value: str, option: str = "--param ") -> str:
    """The value as the pipeline will parse it, or an error naming the parameter's type."""
    try:
        if kind == "Integer":
            return str(int(value))
        if kind == "Float":
            return repr(float(value))
    except ValueError:
        raise OperationError(
            f"{option}{name}={value!r}: {name} is a pipeline parameter of type {kind}; give a "
            f"{'whole number' if kind == 'Integer' else 'number'}"
        ) from None
    if kind == "Boolean" and value.lower() not in ("true", "false"):
        raise OperationError(f"{option}{name}={value!r}: {name} is a Boolean; give true or false")
    if not value:
        raise OperationError(f"{option}{name}= is empty; give a value or leave the parameter out")
    return value


def parse_params(pipeline: _Pipeline, raw: Sequence[str], *, option: str = "--param ") -> dict[str, str]:
    """``K=V`` overrides checked against the pipeline's parameters; ``option`` is how the caller's
    user writes one (the CLI's ``--param ``, a keyword argument's nothing)."""
    known = pipeline.parameters()
    names = ", ".join(sorted(known)) or "none"
    out: dict[str, str] = {}
    for item in raw:
        name, eq, value = item.partition("=")
        name = name.strip()
        if not eq or not name:
            raise OperationError(
                f"{option}{item!r} is not K=V; e.g. {option}InstanceCount=2 (parameters: {names})"
            )
        if name not in known:
            raise OperationError(
                f"{option}{name}: pipeline {pipeline.name} has no parameter {name!r}; it has {names}"
            )
        if name in out:
            raise OperationError(f"{option}{name} is given twice; give it once")
        out[name] = _typed(name, str(known[name].get("Type", "String")), value.strip(), option)
    return out


def start(
    dep: Deployment,
    req: StartRequest,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    pipeline: _Pipeline | None = None,
    params: Mapping[str, str] | None = None,  # already checked by parse_params
) -> StartedRun:
    pipeline = pipeline or _pipeline(dep)
    params = dict(params) if params is not None else parse_params(pipeline, req.params)
    sm = dep.client("sagemaker")
    resp = sm.start_pipeline_execution(
        PipelineName=pipeline.name,
        PipelineParameters=[{"Name": k, "Value": v} for k, v in params.items()],
        PipelineExecutionDescription=req.description,
    )
    arn = str(resp["PipelineExecutionArn"])
    execution_id = arn.rsplit("/", 1)[-1]
    if not req.wait:
        return StartedRun(pipeline.name, execution_id, arn, params)
    deadline = clock() + req.timeout_seconds
    while True:
        state = sm.describe_pipeline_execution(PipelineExecutionArn=arn).get("PipelineExecutionStatus")
        if state in DONE:
            break
        if clock() + req.poll_seconds > deadline:
            raise OperationError(
                f"run {execution_id} is still {state} after {req.timeout_seconds // 60} minutes; follow it "
                f"with `snowsage train status {execution_id}`"
            )
        sleep(req.poll_seconds)
    return StartedRun(pipeline.name, execution_id, arn, params, status(dep, execution_id, pipeline=pipeline))


def _summaries(dep: Deployment, pipeline: _Pipeline, limit: int) -> list[Mapping[str, Any]]:
    """The newest runs first; sorted here as well, as not every endpoint honours SortOrder (moto)."""
    found = (
        dep.client("sagemaker")
        .list_pipeline_executions(
            PipelineName=pipeline.name, SortBy="CreationTime", SortOrder="Descending", MaxResults=limit
        )
        .get("PipelineExecutionSummaries", [])
    )
    return sorted(found, key=lambda s: s.get("StartTime") or _EPOCH, reverse=True)[:limit]


def _latest(dep: Deployment, pipeline: _Pipeline) -> str:
    summaries = _summaries(dep, pipeline, 1)
    if not summaries:
        raise NoRunYet(f"pipeline {pipeline.name} has no run yet; start one with `snowsage train start`")
    return str(summaries[0]["PipelineExecutionArn"]).rsplit("/", 1)[-1]


def status(dep: Deployment, execution: str | None = None, *, pipeline: _Pipeline | None = None) -> RunStatus:
    """One run (the latest by default): its status, each step, the gate's metric, what to do if it failed."""
    pipeline = pipeline or _pipeline(dep)
    if execution:
        try:
            execution_id = execution_id_of(execution)
        except ExportInputError:
            raise OperationError(
                f"{execution!r} is not a pipeline execution id or ARN; `snowsage train runs` lists them"
            ) from None
    else:
        execution_id = _latest(dep, pipeline)
    arn = pipeline.execution_arn(execution_id)
    sm = dep.client("sagemaker")
    try:
        run = sm.describe_pipeline_execution(PipelineExecutionArn=arn)
    except ClientError as exc:
        if _missing(exc):
            raise OperationError(
                f"pipeline {pipeline.name} has no run {execution_id}; `snowsage train runs` lists its runs"
            ) from None
        raise
    parameters = _run_parameters(sm, arn, pipeline)
    steps, unavailable = _steps(sm, arn, dep)
    state = str(run.get("PipelineExecutionStatus") or "Unknown")
    metric = _metric(sm, pipeline, steps or (), parameters)
    failed = next((s for s in steps or () if s.status == "Failed"), None)
    reason = (failed.failure_reason if failed else None) or run.get("FailureReason") or None
    next_step = None
    if state in FAILED:
        next_step = _what_to_do(dep, pipeline, failed, reason, state)
    return RunStatus(
        pipeline=pipeline.name,
        execution_id=execution_id,
        execution_arn=arn,
        status=state,
        failure_reason=reason if state in FAILED else None,
        started=run.get("CreationTime"),
        last_modified=run.get("LastModifiedTime"),
        parameters=parameters,
        steps=steps,
        steps_unavailable=unavailable,
        metric=metric,
        failed_step=failed.name if failed else None,
        next_step=next_step,
    )


def _run_parameters(sm: Any, arn: str, pipeline: _Pipeline) -> dict[str, str]:
    values = {k: str(p.get("DefaultValue", "")) for k, p in pipeline.parameters().items()}
    try:
        given = sm.list_pipeline_parameters_for_execution(PipelineExecutionArn=arn).get(
            "PipelineParameters", []
        )
    except ClientError as exc:
        if error_code(exc) in _NOT_IMPLEMENTED:
            return values
        raise
    values.update({p["Name"]: str(p["Value"]) for p in given})
    return values


def _steps(sm: Any, arn: str, dep: Deployment) -> tuple[tuple[StepState, ...] | None, str | None]:
    found: list[Mapping[str, Any]] = []
    try:
        for page in sm.get_paginator("list_pipeline_execution_steps").paginate(
            PipelineExecutionArn=arn, SortOrder="Ascending"
        ):
            found += page.get("PipelineExecutionSteps", [])
    except ClientError as exc:
        if error_code(exc) not in _NOT_IMPLEMENTED:
            raise
        return None, (
            "this SageMaker endpoint does not implement ListPipelineExecutionSteps (the sandbox's moto does "
            f"not), so the steps are not shown; on AWS, see them in SageMaker Studio under Pipelines "
            f"(region {dep.region})"
        )
    return tuple(_step(s) for s in found), None


def _step(s: Mapping[str, Any]) -> StepState:
    meta = s.get("Metadata") or {}
    detail = ""
    if "TrainingJob" in meta:
        detail = "training job " + str(meta["TrainingJob"].get("Arn", "")).rsplit("/", 1)[-1]
    elif "Lambda" in meta:
        outputs = {o.get("Name"): o.get("Value") for o in meta["Lambda"].get("OutputParameters", [])}
        detail = ", ".join(f"{k}={v}" for k, v in outputs.items() if k and k.endswith(("_rows", "_files")))
    elif "Condition" in meta:
        detail = f"outcome {meta['Condition'].get('Outcome', '?')}"
    elif "RegisterModel" in meta:
        detail = "model package " + str(meta["RegisterModel"].get("Arn", ""))
    elif "Fail" in meta:
        detail = str(meta["Fail"].get("ErrorMessage", ""))
    return StepState(
        name=str(s.get("StepName", "?")),
        status=str(s.get("StepStatus", "?")),
        started=s.get("StartTime"),
        ended=s.get("EndTime"),
        failure_reason=s.get("FailureReason") or (meta.get("Fail") or {}).get("ErrorMessage") or None,
        detail=detail,
    )


def _gate(pipeline: _Pipeline) -> tuple[str, str | None, Any] | None:
    """The metric the gate reads, its comparison and the right-hand side, from the definition."""
    for step in pipeline.steps():
        for cond in (
            step.get("Arguments", {}).get("Conditions", []) if step.get("Type") == "Condition" else []
        ):
            match = _METRIC_REF.search(json.dumps(cond.get("LeftValue")))
            if match:
                return match.group(1), _SYMBOLS.get(str(cond.get("Type"))), cond.get("RightValue")
    return None


def _metric(
    sm: Any, pipeline: _Pipeline, steps: Sequence[StepState], parameters: Mapping[str, str]
) -> Metric | None:
    gate = _gate(pipeline)
    if gate is None:
        return None
    name, symbol, right = gate
    threshold: float | None = None
    ref = right.get("Get", "") if isinstance(right, dict) else None
    try:
        if isinstance(ref, str) and ref.startswith("Parameters."):
            threshold = float(parameters[ref.removeprefix("Parameters.")])
        elif isinstance(right, int | float):
            threshold = float(right)
    except (KeyError, ValueError):
        threshold = None
    value: float | None = None
    job = next(
        (s.detail.removeprefix("training job ") for s in steps if s.detail.startswith("training job ")), ""
    )
    if job:
        desc = sm.describe_training_job(TrainingJobName=job)
        for m in desc.get("FinalMetricDataList", []):
            if m.get("MetricName") == name:
                value = float(m["Value"])
    passed = None
    if value is not None and threshold is not None and symbol:
        passed = {
            "<=": value <= threshold,
            "<": value < threshold,
            ">=": value >= threshold,
            ">": value > threshold,
        }[symbol]
    return Metric(name, value, threshold, symbol, passed)


def _what_to_do(
    dep: Deployment, pipeline: _Pipeline, failed: StepState | None, reason: str | None, state: str
) -> str:
    if state == "Stopped":
        return "the run was stopped before it finished; start a new one with `snowsage train start`"
    if failed is None:
        return f"the run failed ({reason or 'no reason given'}); fix that, then `snowsage train start`"
    why = (reason or "no reason given").rstrip(". ")
    return f"step {failed.name} failed: {why}{failure_log(dep, pipeline, failed)}; fix what it says, then `snowsage train start`"


def failure_log(dep: Deployment, pipeline: _Pipeline, failed: StepState) -> str:
    """``; its log is in ...`` for a failed step whose log has a known place, else empty."""
    kind = {str(s.get("Name")): s.get("Type") for s in pipeline.steps()}.get(failed.name)
    if kind == "Training" and failed.detail.startswith("training job "):
        job = failed.detail.removeprefix("training job ")
        return f"; its log is in CloudWatch log group /aws/sagemaker/TrainingJobs, streams {job}/..."
    if kind == "Lambda":
        function = dep.output(KIND, "TrainingExportFunctionName", required=False)
        return f"; its log is in CloudWatch log group /aws/lambda/{function}" if function else ""
    return ""


def runs(dep: Deployment, limit: int = 10) -> RunList:
    pipeline = _pipeline(dep)
    summaries = _summaries(dep, pipeline, limit)
    out = []
    for s in summaries:
        state = str(s.get("PipelineExecutionStatus") or "Unknown")
        reason = s.get("PipelineExecutionFailureReason") if state in FAILED else None
        arn = str(s["PipelineExecutionArn"])
        out.append(RunSummary(arn.rsplit("/", 1)[-1], arn, state, s.get("StartTime"), reason or None))
    return RunList(pipeline.name, tuple(out))


# --- the model ------------------------------------------------------------------------------------


def latest_model(dep: Deployment) -> RegisteredModel:
    group = _output(dep, "ModelPackageGroupName")
    sm = dep.client("sagemaker")
    try:
        found = sm.list_model_packages(
            ModelPackageGroupName=group, SortBy="CreationTime", SortOrder="Descending", MaxResults=1
        ).get("ModelPackageSummaryList", [])
    except ClientError as exc:
        if not _missing(exc):
            raise
        found = None
    if not found:
        try:
            sm.describe_model_package_group(ModelPackageGroupName=group)
        except ClientError as exc:
            if _missing(exc):
                raise TrainingNotDeployed(
                    f"model package group {group} (from {dep.stack_name(KIND)}) does not exist in {dep.region}; "
                    f"redeploy the training stack: `{_deploy_hint(dep)}`"
                ) from None
            raise
        raise NoModelYet(
            f"no model is registered in {group} yet: run `snowsage train start` (a run registers its model "
            "only when it passes the gate; `snowsage train status` shows why one did not)"
        )
    newest = max(found, key=lambda p: p.get("CreationTime") or _EPOCH)  # whatever the endpoint's order
    return model_package(dep, str(newest["ModelPackageArn"]), group=group)


def model_package(dep: Deployment, arn: str, *, group: str | None = None) -> RegisteredModel:
    """One registered model (e.g. the one a run's RegisterModel step created)."""
    group = group or _output(dep, "ModelPackageGroupName")
    pkg = dep.client("sagemaker").describe_model_package(ModelPackageName=arn)
    meta = pkg.get("CustomerMetadataProperties") or {}
    containers = (pkg.get("InferenceSpecification") or {}).get("Containers") or [{}]
    return RegisteredModel(
        group=group,
        model_package_arn=str(pkg["ModelPackageArn"]),
        version=pkg.get("ModelPackageVersion"),
        approval_status=str(pkg.get("ModelApprovalStatus") or "Unknown"),
        created=pkg.get("CreationTime"),
        metric=meta.get("metric"),
        metric_value=meta.get("metric_value"),
        threshold=meta.get("threshold"),
        pipeline_execution_id=meta.get("pipeline_execution_id"),
        training_job=meta.get("training_job"),
        model_data_url=containers[0].get("ModelDataUrl"),
    )
