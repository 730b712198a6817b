"""A SageMaker pipeline definition, parsed and checked the way CreatePipeline would check it.

The format is the one the SageMaker Python SDK serializes (``{"Version", "Parameters", "Steps"}``,
names checked against aws/sagemaker-python-sdk's ``workflow`` modules): a step has ``Name``, ``Type``,
``Arguments`` and optional ``DependsOn``; a Lambda step adds ``FunctionArn`` and ``OutputParameters``
(``[{"OutputName", "OutputType"}]``); a Condition step's ``Arguments`` hold ``Conditions`` and the full
definitions of its ``IfSteps`` and ``ElseSteps``; a Fail step's hold ``ErrorMessage``. Values are
literals or expressions: ``{"Get": "Parameters.<name>"}``, ``{"Get": "Execution.<variable>"}``,
``{"Get": "Steps.<step>.<property path>"}`` and ``{"Std:Join": {"On": ..., "Values": [...]}}``.

Every reference is checked before anything runs: an unknown parameter, step, execution variable,
Lambda output or property (Training and RegisterModel paths are walked through botocore's
DescribeTrainingJob / DescribeModelPackage shapes, as the SDK's ``Properties`` are) raises one
``DefinitionError`` naming it, so a broken definition fails the sandbox instead of failing on AWS.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

SUPPORTED_STEP_TYPES = ("Lambda", "Condition", "Fail", "Training", "RegisterModel")
PARAMETER_TYPES = ("String", "Integer", "Float", "Boolean")
LAMBDA_OUTPUT_TYPES = PARAMETER_TYPES
EXECUTION_VARIABLES = (
    "PipelineExecutionId",
    "PipelineExecutionArn",
    "PipelineName",
    "PipelineArn",
    "StartDateTime",
    "CurrentDateTime",
)
COMPARISONS = ("Equals", "GreaterThan", "GreaterThanOrEqualTo", "LessThan", "LessThanOrEqualTo")
CONDITION_TYPES = (*COMPARISONS, "In", "Not", "Or")
# The botocore shape a step's properties follow (what the SDK builds its Properties from).
PROPERTY_SHAPES = {"Training": "DescribeTrainingJobResponse", "RegisterModel": "DescribeModelPackageOutput"}

_PATH_TOKEN = re.compile(r"\.?([A-Za-z_][A-Za-z0-9_]*)|\['([^']*)'\]|\[(\d+)\]")


class DefinitionError(ValueError):
    """The definition is malformed or references something it does not define."""


# Expressions ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParameterRef:
    name: str


@dataclass(frozen=True)
class ExecutionRef:
    name: str


@dataclass(frozen=True)
class StepRef:
    step: str
    path: tuple[str | int, ...]  # attribute names, ['key'] strings and [index] ints, in order
    text: str  # the Get string, for messages

    @property
    def root(self) -> str | int:
        return self.path[0]


@dataclass(frozen=True)
class Join:
    on: str
    values: tuple[Any, ...]


def parse_path(text: str, ref: str) -> tuple[str | int, ...]:
    """``OutputParameters['rows']`` -> ("OutputParameters", "rows"); ``A.B[0]`` -> ("A", "B", 0)."""
    tokens: list[str | int] = []
    pos = 0
    while pos < len(text):
        m = _PATH_TOKEN.match(text, pos)
        if not m or (pos == 0 and text.startswith(".")):
            raise DefinitionError(f"{ref!r}: cannot parse the property path at {text[pos:]!r}")
        name, key, index = m.groups()
        tokens.append(name if name is not None else key if key is not None else int(index))
        pos = m.end()
    if not tokens:
        raise DefinitionError(f"{ref!r}: no property path after the step name")
    return tuple(tokens)


def parse_expression(value: Any, where: str) -> Any:
    """Literals stay as they are; Get and Std:Join become ParameterRef/ExecutionRef/StepRef/Join."""
    if isinstance(value, list):
        return [parse_expression(v, where) for v in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"Get"}:
        ref = value["Get"]
        if not isinstance(ref, str):
            raise DefinitionError(f"{where}: a Get takes a string, got {ref!r}")
        kind, _, rest = ref.partition(".")
        if kind == "Parameters" and rest:
            return ParameterRef(rest)
        if kind == "Execution" and rest:
            return ExecutionRef(rest)
        if kind == "Steps" and rest:
            m = re.match(r"[A-Za-z0-9_-]+", rest)
            if not m or m.end() == len(rest) or rest[m.end()] not in ".[":
                raise DefinitionError(
                    f"{where}: {ref!r} names no property of a step (Steps.<step>.<property>)"
                )
            return StepRef(m.group(), parse_path(rest[m.end() :].lstrip("."), ref), ref)
        raise DefinitionError(
            f"{where}: cannot read {ref!r}; a Get names Parameters.<name>, Execution.<variable> or Steps.<step>.<property>"
        )
    if set(value) == {"Std:Join"}:
        join = value["Std:Join"]
        if not isinstance(join, dict) or not isinstance(join.get("Values"), list):
            raise DefinitionError(
                f"{where}: Std:Join needs {{'On': <string>, 'Values': [...]}}, got {join!r}"
            )
        return Join(str(join.get("On", "")), tuple(parse_expression(v, where) for v in join["Values"]))
    functions = [k for k in value if k.startswith("Std:")]
    if functions:
        raise DefinitionError(
            f"{where}: the local runner does not evaluate {functions[0]} (only Get and Std:Join)"
        )
    return {k: parse_expression(v, where) for k, v in value.items()}


def references(expr: Any) -> list[Any]:
    """Every ParameterRef, ExecutionRef and StepRef inside a parsed expression."""
    if isinstance(expr, (ParameterRef, ExecutionRef, StepRef)):
        return [expr]
    if isinstance(expr, Join):
        return [r for v in expr.values for r in references(v)]
    if isinstance(expr, list):
        return [r for v in expr for r in references(v)]
    if isinstance(expr, dict):
        return [r for v in expr.values() for r in references(v)]
    return []


# Steps and parameters ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Parameter:
    name: str
    type: str
    default: Any = None  # None: no default, a value must be given


@dataclass(frozen=True)
class Step:
    name: str
    type: str
    arguments: Any  # parsed; for a Condition only its Conditions (the branches are steps of their own)
    depends_on: tuple[str, ...] = ()
    function_arn: Any = None  # Lambda
    outputs: Mapping[str, str] = field(default_factory=dict)  # Lambda: OutputName -> OutputType
    if_steps: tuple[str, ...] = ()  # Condition
    else_steps: tuple[str, ...] = ()
    branch_of: tuple[str, bool] | None = None  # (condition step, True for IfSteps) when nested

    def upstream(self) -> set[str]:
        """Steps that must finish first: DependsOn, every step it reads, and its condition."""
        found = set(self.depends_on)
        found |= {r.step for r in references([self.arguments, self.function_arn]) if isinstance(r, StepRef)}
        if self.branch_of:
            found.add(self.branch_of[0])
        return found


@dataclass(frozen=True)
class PipelineDefinition:
    version: str
    parameters: Mapping[str, Parameter]
    steps: Mapping[str, Step]  # every step, nested branches included, in definition order
    order: tuple[str, ...]  # a topological order (definition order where free)

    @classmethod
    def parse(cls, definition: str | Mapping[str, Any]) -> PipelineDefinition:
        doc = json.loads(definition) if isinstance(definition, str) else definition
        if not isinstance(doc, Mapping) or not isinstance(doc.get("Steps"), list):
            raise DefinitionError("a pipeline definition is a JSON object with a 'Steps' list")
        parameters: dict[str, Parameter] = {}
        for raw in doc.get("Parameters") or []:
            p = _parse_parameter(raw)
            if p.name in parameters:
                raise DefinitionError(f"parameter {p.name!r} is defined twice")
            parameters[p.name] = p
        steps: dict[str, Step] = {}
        _collect_steps(doc["Steps"], steps, branch_of=None)
        pipeline = cls(str(doc.get("Version", "")), parameters, steps, _topological_order(steps))
        pipeline._check_references()
        return pipeline

    def _check_references(self) -> None:
        for step in self.steps.values():
            where = f"step {step.name!r}"
            for dep in step.depends_on:
                if dep not in self.steps:
                    raise DefinitionError(
                        f"{where}: DependsOn names step {dep!r}, which the pipeline does not define"
                    )
            for ref in references([step.arguments, step.function_arn]):
                if isinstance(ref, ParameterRef) and ref.name not in self.parameters:
                    raise DefinitionError(
                        f"{where}: {{'Get': 'Parameters.{ref.name}'}} names parameter {ref.name!r}, which the pipeline does "
                        f"not define (it defines: {', '.join(self.parameters) or 'none'})"
                    )
                if isinstance(ref, ExecutionRef) and ref.name not in EXECUTION_VARIABLES:
                    raise DefinitionError(
                        f"{where}: 'Execution.{ref.name}' is no execution variable (known: {', '.join(EXECUTION_VARIABLES)})"
                    )
                if isinstance(ref, StepRef):
                    self._check_step_ref(ref, where)

    def _check_step_ref(self, ref: StepRef, where: str) -> None:
        target = self.steps.get(ref.step)
        if target is None:
            raise DefinitionError(
                f"{where}: {ref.text!r} names step {ref.step!r}, which the pipeline does not define"
            )
        if target.type == "Lambda":
            if len(ref.path) != 2 or ref.root != "OutputParameters" or ref.path[1] not in target.outputs:
                declared = ", ".join(target.outputs) or "none"
                raise DefinitionError(
                    f"{where}: {ref.text!r} is no output of Lambda step {ref.step!r} (read OutputParameters['<name>']; "
                    f"it declares: {declared})"
                )
        elif target.type == "Condition":
            if ref.path != ("Outcome",):
                raise DefinitionError(
                    f"{where}: {ref.text!r}: a Condition step has only the property 'Outcome'"
                )
        elif target.type == "Fail":
            raise DefinitionError(f"{where}: {ref.text!r}: a Fail step has no properties to read")
        else:
            _check_shape_path(PROPERTY_SHAPES[target.type], ref, where)


def _parse_parameter(raw: Any) -> Parameter:
    if not isinstance(raw, Mapping) or not isinstance(raw.get("Name"), str):
        raise DefinitionError(f"a parameter needs a 'Name', got {raw!r}")
    ptype = raw.get("Type", "String")
    if ptype not in PARAMETER_TYPES:
        raise DefinitionError(
            f"parameter {raw['Name']!r} has Type {ptype!r}; use one of {', '.join(PARAMETER_TYPES)}"
        )
    default = raw.get("DefaultValue")
    if default is not None:
        default = coerce(default, ptype, f"the default of parameter {raw['Name']!r}")
    return Parameter(raw["Name"], ptype, default)


def coerce(value: Any, ptype: str, what: str) -> Any:
    """A value as a parameter or Lambda output type; strings (what StartPipelineExecution sends) are parsed."""
    try:
        if ptype == "String":
            return value if isinstance(value, str) else str(value)
        if ptype == "Boolean":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "false"):
                return value.lower() == "true"
            raise ValueError
        if isinstance(value, bool):
            raise ValueError
        if ptype == "Integer":
            number = float(value)
            if number != int(number):
                raise ValueError
            return int(number)
        return float(value)
    except (TypeError, ValueError):
        raise DefinitionError(f"{what} is {value!r}, which is not a {ptype}") from None


def _collect_steps(raw_steps: Any, steps: dict[str, Step], branch_of: tuple[str, bool] | None) -> list[str]:
    if not isinstance(raw_steps, list):
        raise DefinitionError(f"steps must be a list, got {raw_steps!r}")
    names = []
    for raw in raw_steps:
        if not isinstance(raw, Mapping) or not isinstance(raw.get("Name"), str) or not raw["Name"]:
            raise DefinitionError(f"a step needs a 'Name', got {str(raw)[:200]}")
        name, stype = raw["Name"], raw.get("Type")
        if name in steps:
            raise DefinitionError(f"step {name!r} is defined twice; step names are unique in a pipeline")
        if stype not in SUPPORTED_STEP_TYPES:
            raise DefinitionError(
                f"step {name!r} has Type {stype!r}, which the local runner does not run (it runs: {', '.join(SUPPORTED_STEP_TYPES)})"
            )
        where = f"step {name!r}"
        args = raw.get("Arguments", {})
        depends_on = raw.get("DependsOn") or []
        if not isinstance(depends_on, list) or not all(isinstance(d, str) for d in depends_on):
            raise DefinitionError(f"{where}: DependsOn is a list of step names, got {depends_on!r}")
        kwargs: dict[str, Any] = {}
        if stype == "Condition":
            if not isinstance(args, Mapping) or not isinstance(args.get("Conditions"), list):
                raise DefinitionError(f"{where}: a Condition step's Arguments hold a 'Conditions' list")
            conditions = parse_expression(args["Conditions"], where)
            for condition in conditions:
                _check_condition(condition, where)
            # reserved first, so the condition comes before its branches in definition order
            steps[name] = Step(name, stype, conditions, tuple(depends_on), branch_of=branch_of)
            if_steps = _collect_steps(args.get("IfSteps", []), steps, (name, True))
            else_steps = _collect_steps(args.get("ElseSteps", []), steps, (name, False))
            steps[name] = Step(
                name, stype, conditions, tuple(depends_on), if_steps=tuple(if_steps),
                else_steps=tuple(else_steps), branch_of=branch_of,
            )  # fmt: skip
            names.append(name)
            continue
        if stype == "Lambda":
            if "FunctionArn" not in raw:
                raise DefinitionError(f"{where}: a Lambda step needs a FunctionArn")
            outputs = {}
            for out in raw.get("OutputParameters") or []:
                otype = out.get("OutputType", "String")
                if otype not in LAMBDA_OUTPUT_TYPES:
                    raise DefinitionError(
                        f"{where}: output {out.get('OutputName')!r} has OutputType {otype!r}"
                    )
                outputs[out["OutputName"]] = otype
            kwargs = {"function_arn": parse_expression(raw["FunctionArn"], where), "outputs": outputs}
        if stype == "Fail" and (not isinstance(args, Mapping) or "ErrorMessage" not in args):
            raise DefinitionError(f"{where}: a Fail step's Arguments hold an 'ErrorMessage'")
        if stype in ("Training", "RegisterModel") and not isinstance(args, Mapping):
            raise DefinitionError(f"{where}: Arguments must be a request object, got {args!r}")
        steps[name] = Step(
            name, stype, parse_expression(args, where), tuple(depends_on), branch_of=branch_of, **kwargs
        )
        names.append(name)
    return names


def _check_condition(condition: Any, where: str) -> None:
    ctype = condition.get("Type") if isinstance(condition, dict) else None
    if ctype not in CONDITION_TYPES:
        raise DefinitionError(
            f"{where}: condition type {ctype!r} is unknown (known: {', '.join(CONDITION_TYPES)})"
        )
    needs = {
        "In": ("QueryValue", "Values"),
        "Not": ("Condition",),
        "Or": ("Conditions",),
    }.get(ctype, ("LeftValue", "RightValue"))
    missing = [k for k in needs if k not in condition]
    if missing:
        raise DefinitionError(f"{where}: condition {ctype} needs {', '.join(missing)}")
    if ctype == "Not":
        _check_condition(condition["Condition"], where)
    if ctype == "Or":
        for c in condition["Conditions"]:
            _check_condition(c, where)


def _topological_order(steps: Mapping[str, Step]) -> tuple[str, ...]:
    position = {name: i for i, name in enumerate(steps)}
    upstream = {name: {u for u in s.upstream() if u in steps} for name, s in steps.items()}
    done: list[str] = []
    remaining = dict(upstream)
    while remaining:
        ready = sorted((n for n, ups in remaining.items() if ups <= set(done)), key=position.__getitem__)
        if not ready:
            cycle = sorted(n for n in remaining if n in _reachable(n, remaining))
            raise DefinitionError(f"the steps {', '.join(cycle)} depend on each other in a cycle")
        done.append(ready[0])
        del remaining[ready[0]]
    return tuple(done)


def _reachable(start: str, upstream: Mapping[str, set[str]]) -> set[str]:
    seen: set[str] = set()
    todo = list(upstream.get(start, ()))
    while todo:
        n = todo.pop()
        if n not in seen:
            seen.add(n)
            todo += upstream.get(n, ())
    return seen


# Property paths through botocore's shapes --------------------------------------------------------


@functools.cache
def sagemaker_model() -> Any:
    import botocore.session

    return botocore.session.get_session().get_service_model("sagemaker")


def _check_shape_path(shape_name: str, ref: StepRef, where: str) -> None:
    shape = sagemaker_model().shape_for(shape_name)
    for token in ref.path:
        if shape.type_name == "structure" and isinstance(token, str) and token in shape.members:
            shape = shape.members[token]
        elif shape.type_name == "list" and isinstance(token, (int, str)):
            shape = shape.member  # [i], or ['name'] for a list of named entries (FinalMetricDataList)
        elif shape.type_name == "map" and isinstance(token, str):
            shape = shape.value
        else:
            raise DefinitionError(
                f"{where}: {ref.text!r}: {token!r} is no property there (the step's properties follow botocore's {shape_name})"
            )
