"""Run a SageMaker pipeline definition on this machine, step by step, the way SageMaker would.

Steps run one at a time in a topological order of their DependsOn, the steps they read and the
condition they sit under (definition order where that leaves a choice: one of the orders SageMaker's
parallel scheduler could produce). A Condition step's outcome skips the branch it did not take and
everything downstream of it; a Fail step, or a step whose executor raises, fails the run with that
reason and starts nothing after it. Each step type runs through an executor the caller plugs in (see
``Executors``); nothing here talks to AWS.
"""

from __future__ import annotations

import re
import secrets
import string
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from sandbox.training.definition import (
    COMPARISONS,
    DefinitionError,
    ExecutionRef,
    Join,
    ParameterRef,
    PipelineDefinition,
    Step,
    StepRef,
    coerce,
)

SUCCEEDED, FAILED = "Succeeded", "Failed"


class StepFailed(RuntimeError):
    """What a step (or an executor) raises to fail its step with this message as the reason."""


class PipelineFailed(RuntimeError):
    def __init__(self, run: PipelineRun) -> None:
        super().__init__(f"pipeline execution {run.execution_id} failed: {run.failure_reason}")
        self.run = run


@dataclass(frozen=True)
class Executors:
    """One callable per step type, each called with keyword arguments only.

    ``invoke_lambda(function_arn=str, arguments=dict)`` returns the function's response payload (a
    mapping; its top-level keys are the step's OutputParameters) or raises with the function's error.
    ``train(job_name=str, request=dict)`` gets a CreateTrainingJob request and returns its
    DescribeTrainingJob properties (``TrainingJobStatus``, ``ModelArtifacts``, ``FinalMetricDataList``).
    ``register_model(request=dict)`` gets a CreateModelPackage request and returns the package's
    DescribeModelPackage properties. Any of them may return an object whose ``.properties`` is that
    mapping instead; the object is kept as ``StepRun.detail``.
    """

    invoke_lambda: Callable[..., Any] | None = None
    train: Callable[..., Any] | None = None
    register_model: Callable[..., Any] | None = None

    def for_type(self, step_type: str) -> Callable[..., Any] | None:
        return {
            "Lambda": self.invoke_lambda,
            "Training": self.train,
            "RegisterModel": self.register_model,
        }.get(step_type)


@dataclass(frozen=True)
class StepRun:
    name: str
    type: str
    status: str  # Succeeded | Failed
    properties: Mapping[str, Any] = field(default_factory=dict)  # what a Get on this step reads
    failure_reason: str | None = None
    seconds: float = 0.0
    detail: Any = None  # what the executor returned, when it was more than the properties


@dataclass(frozen=True)
class PipelineRun:
    pipeline_name: str
    execution_id: str
    execution_arn: str
    parameters: Mapping[str, Any]  # every parameter's value for this run, defaults included
    status: str  # Succeeded | Failed
    steps: tuple[StepRun, ...]  # in the order they ran
    not_run: tuple[str, ...]  # skipped by a condition, or never reached after a failure
    failure_reason: str | None = None

    def step(self, name: str) -> StepRun:
        for s in self.steps:
            if s.name == name:
                return s
        ran = ", ".join(s.name for s in self.steps) or "none"
        raise KeyError(f"step {name!r} did not run in execution {self.execution_id} (ran: {ran})")

    def raise_for_status(self) -> PipelineRun:
        """The run itself when it succeeded; PipelineFailed with the failing step's reason otherwise."""
        if self.status != SUCCEEDED:
            raise PipelineFailed(self)
        return self


def new_execution_id() -> str:
    """A SageMaker-like execution id: 12 lowercase letters and digits."""
    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(12))


def run_pipeline(
    definition: PipelineDefinition | str | Mapping[str, Any],
    *,
    executors: Executors,
    parameters: Mapping[str, Any] | None = None,
    execution_id: str | None = None,
    pipeline_name: str = "sandbox-pipeline",
    region: str = "us-east-1",
    account: str = "123456789012",
    on_step: Callable[[Step, StepRun | None], None] | None = None,
) -> PipelineRun:
    """Execute the definition and return its run record (failed runs too: see ``raise_for_status``).

    ``parameters`` overrides defaults by name (strings are parsed as StartPipelineExecution's are).
    ``on_step(step, None)`` is called as a step starts and ``on_step(step, its StepRun)`` as it ends
    (how the sandbox reports progress to moto).
    A malformed definition, an unknown or missing parameter, or a step type without an executor
    raises DefinitionError before any step runs.
    """
    pipeline = (
        definition if isinstance(definition, PipelineDefinition) else PipelineDefinition.parse(definition)
    )
    values = _parameter_values(pipeline, parameters or {})
    used = {s.type for s in pipeline.steps.values()}
    missing = sorted(
        t for t in ("Lambda", "Training", "RegisterModel") if t in used and not executors.for_type(t)
    )
    if missing:
        raise DefinitionError(
            f"the pipeline has {', '.join(missing)} steps but no executor for them in Executors"
        )
    execution_id = execution_id or new_execution_id()
    pipeline_arn = f"arn:aws:sagemaker:{region}:{account}:pipeline/{pipeline_name.lower()}"
    state = _State(
        parameters=values,
        execution={
            "PipelineExecutionId": execution_id,
            "PipelineExecutionArn": f"{pipeline_arn}/execution/{execution_id}",
            "PipelineName": pipeline_name,
            "PipelineArn": pipeline_arn,
            "StartDateTime": datetime.now(timezone.utc).isoformat(),
        },
    )
    runs: list[StepRun] = []
    skipped: set[str] = set()
    outcomes: dict[str, bool] = {}
    failure: str | None = None
    for name in pipeline.order:
        step = pipeline.steps[name]
        if failure is not None or _blocked(step, skipped, outcomes):
            skipped.add(name)
            continue
        if on_step:
            on_step(step, None)
        run = _run_step(step, state, executors)
        runs.append(run)
        if on_step:
            on_step(step, run)
        if run.status == FAILED:
            failure = run.failure_reason
        else:
            state.properties[name] = run.properties
            if step.type == "Condition":
                outcomes[name] = bool(run.properties["Outcome"])
    return PipelineRun(
        pipeline_name=pipeline_name,
        execution_id=execution_id,
        execution_arn=state.execution["PipelineExecutionArn"],
        parameters=values,
        status=FAILED if failure is not None else SUCCEEDED,
        steps=tuple(runs),
        not_run=tuple(n for n in pipeline.order if n in skipped),
        failure_reason=failure,
    )


def _parameter_values(pipeline: PipelineDefinition, overrides: Mapping[str, Any]) -> dict[str, Any]:
    unknown = [k for k in overrides if k not in pipeline.parameters]
    if unknown:
        raise DefinitionError(
            f"parameter {unknown[0]!r} is not defined by the pipeline (it defines: {', '.join(pipeline.parameters) or 'none'})"
        )
    values = {}
    for name, p in pipeline.parameters.items():
        if name in overrides:
            values[name] = coerce(overrides[name], p.type, f"parameter {name!r}")
        elif p.default is not None:
            values[name] = p.default
        else:
            raise DefinitionError(f"parameter {name!r} has no default: give it a value")
    return values


def _blocked(step: Step, skipped: set[str], outcomes: Mapping[str, bool]) -> bool:
    if step.branch_of and outcomes.get(step.branch_of[0]) is not step.branch_of[1]:
        return True
    return bool(step.upstream() & skipped)


@dataclass
class _State:
    parameters: Mapping[str, Any]
    execution: dict[str, str]
    properties: dict[str, Mapping[str, Any]] = field(default_factory=dict)

    def evaluate(self, expr: Any) -> Any:
        if isinstance(expr, ParameterRef):
            return self.parameters[expr.name]
        if isinstance(expr, ExecutionRef):
            if expr.name == "CurrentDateTime":
                return datetime.now(timezone.utc).isoformat()
            return self.execution[expr.name]
        if isinstance(expr, StepRef):
            return _walk(self.properties[expr.step], expr)
        if isinstance(expr, Join):
            return expr.on.join(_as_text(self.evaluate(v)) for v in expr.values)
        if isinstance(expr, list):
            return [self.evaluate(v) for v in expr]
        if isinstance(expr, dict):
            return {k: self.evaluate(v) for k, v in expr.items()}
        return expr

    def condition(self, cond: Mapping[str, Any]) -> bool:
        ctype = cond["Type"]
        if ctype == "Not":
            return not self.condition(cond["Condition"])
        if ctype == "Or":
            return any(self.condition(c) for c in cond["Conditions"])
        if ctype == "In":
            query = self.evaluate(cond["QueryValue"])
            return any(_compare("Equals", query, self.evaluate(v)) for v in cond["Values"])
        return _compare(ctype, self.evaluate(cond["LeftValue"]), self.evaluate(cond["RightValue"]))


def _as_text(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _compare(ctype: str, left: Any, right: Any) -> bool:
    assert ctype in COMPARISONS

    def numeric(v: Any) -> bool:
        return isinstance(v, int | float) and not isinstance(v, bool)

    if numeric(left) and numeric(right):
        a, b = float(left), float(right)
    elif type(left) is type(right):
        a, b = left, right
    else:
        raise StepFailed(f"condition {ctype} compares {left!r} with {right!r}, which are of different types")
    return {
        "Equals": a == b,
        "GreaterThan": a > b,
        "GreaterThanOrEqualTo": a >= b,
        "LessThan": a < b,
        "LessThanOrEqualTo": a <= b,
    }[ctype]


def _walk(properties: Mapping[str, Any], ref: StepRef) -> Any:
    value: Any = properties
    for token in ref.path:
        by_key = isinstance(value, Mapping) and isinstance(token, str) and token in value
        by_index = isinstance(value, list) and isinstance(token, int) and token < len(value)
        if by_key or by_index:
            value = value[token]
        elif isinstance(value, list) and isinstance(token, str):
            # A list of named entries read by name: FinalMetricDataList['validation:rmse'] is the
            # entry whose MetricName is validation:rmse.
            named = {v.get(k): v for v in value if isinstance(v, Mapping) for k in v if k.endswith("Name")}
            if token not in named:
                raise StepFailed(
                    f"{ref.text!r}: step {ref.step!r} has no entry {token!r} (it has: {', '.join(map(str, named)) or 'none'})"
                )
            value = named[token]
        else:
            have = ", ".join(map(str, value)) if isinstance(value, Mapping) else type(value).__name__
            raise StepFailed(f"{ref.text!r}: step {ref.step!r} has no {token!r} (there: {have})")
    return value


def _run_step(step: Step, state: _State, executors: Executors) -> StepRun:
    started = time.monotonic()
    detail: Any = None
    try:
        if step.type == "Condition":
            properties: Mapping[str, Any] = {"Outcome": all(state.condition(c) for c in step.arguments)}
        elif step.type == "Fail":
            raise StepFailed(_as_text(state.evaluate(step.arguments["ErrorMessage"])))
        else:
            detail = _execute(step, state, executors)
            properties = getattr(detail, "properties", detail)
            if not isinstance(properties, Mapping):
                raise StepFailed(
                    f"the {step.type} executor returned {type(properties).__name__}, not a mapping"
                )
            if step.type == "Lambda":
                properties = {"OutputParameters": _lambda_outputs(step, properties)}
            elif step.type == "Training" and properties.get("TrainingJobStatus", "Completed") != "Completed":
                raise StepFailed(
                    str(
                        properties.get("FailureReason")
                        or f"training job {properties.get('TrainingJobStatus')}"
                    )
                )
    except StepFailed as exc:
        return StepRun(
            step.name, step.type, FAILED, failure_reason=str(exc), seconds=time.monotonic() - started
        )
    except Exception as exc:  # noqa: BLE001 - like SageMaker, any error of a step fails that step with its message
        reason = f"{type(exc).__name__}: {exc}"
        return StepRun(
            step.name, step.type, FAILED, failure_reason=reason, seconds=time.monotonic() - started
        )
    return StepRun(
        step.name, step.type, SUCCEEDED, dict(properties), seconds=time.monotonic() - started,
        detail=detail if detail is not properties else None,
    )  # fmt: skip


def _execute(step: Step, state: _State, executors: Executors) -> Any:
    executor = executors.for_type(step.type)
    assert executor is not None  # run_pipeline checked
    arguments = state.evaluate(step.arguments)
    if step.type == "Lambda":
        return executor(function_arn=state.evaluate(step.function_arn), arguments=arguments)
    if step.type == "Training":
        job_name = arguments.pop("TrainingJobName", None) or _job_name(
            state.execution["PipelineExecutionId"], step.name
        )
        return executor(job_name=job_name, request=arguments)
    return executor(request=arguments)


def _job_name(execution_id: str, step_name: str) -> str:
    """pipelines-<execution id>-<step>, as SageMaker names a pipeline's jobs (63 characters at most)."""
    return re.sub(r"[^A-Za-z0-9-]", "-", f"pipelines-{execution_id}-{step_name}")[:63].rstrip("-")


def _lambda_outputs(step: Step, response: Mapping[str, Any]) -> dict[str, Any]:
    outputs = {}
    for name, otype in step.outputs.items():
        if name not in response:
            raise StepFailed(
                f"the function's response has no {name!r}, which step {step.name!r} declares in OutputParameters "
                f"(it returned: {', '.join(map(str, response)) or 'nothing'})"
            )
        try:
            outputs[name] = coerce(response[name], otype, f"output {name!r} of step {step.name!r}")
        except DefinitionError as exc:
            raise StepFailed(str(exc)) from None
    return outputs
