"""Issue 14's pipeline in the sandbox: the synthesized definition, run here against what moto deployed.

``prepare_training(...)`` reads the Training stack's ``AWS::SageMaker::Pipeline`` from ``cdk.out``,
resolves its ``PipelineDefinitionBody`` (CloudFormation's ``Fn::Join`` of text and tokens) against
the deployment (``Deployment``) and plays CloudFormation's part for the two resource types moto
skips (it creates the model package group and the pipeline in moto from their resolved
properties). ``PipelineRunner`` is SageMaker's part: sandbox.moto_server leaves every started
execution Executing and spools it, and the runner runs that execution's steps on this machine with
``sandbox.training.run_pipeline``, reporting each step, the training job and the end back to moto
(sandbox.moto_server ``REPORT_PATH``), so whoever started it (``run_training``, ``snowsage train``,
the notebook's ``snowsage.pipeline``) follows it through the SageMaker API:

- Export: the export function's handler from the synthesized asset (``cdk.out/asset.<hash>``),
  with its deployed environment, through ``sandbox.lambda_runtime`` against fakesnow; the shards
  and the manifest go to moto's S3. The step's ``FunctionArn`` must be the deployed function's.
- DataCheck, Gate: conditions on the real step outputs and the real metric.
- Train: ``LocalTrainer`` on ``InstanceCount`` local XGBoost hosts (the container's data contract).
- RegisterModel: ``ModelRegistry``, CreateModelPackage in moto.

Tokens resolve as CloudFormation would: pseudo parameters from moto's STS and the region,
``Fn::FindInMap`` from the template's Mappings, ``Fn::ImportValue`` from moto's exports, ``Ref`` to
the physical id moto reports and ``Fn::GetAtt`` through the resource's own API (a function's ARN from
Lambda, a role's from IAM, a security group's id). A resource moto skipped has no physical id: its
``Ref``/``Arn`` are derived from its name property (``DERIVED``); any other token is an error naming it.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sandbox.lambda_runtime import FunctionAsset, function_asset, invoke, stack_template
from sandbox.training import (
    DefinitionError,
    Executors,
    LocalTrainer,
    ModelRegistry,
    PipelineDefinition,
    PipelineRun,
    StepFailed,
    TrainingResult,
    run_pipeline,
)
from sandbox.training.definition import ParameterRef, Step, StepRef
from sandbox.training.runner import StepRun
from stacks.constructs.training import pipeline_definition as pd

# The export function's pins: the sandbox builds them for this machine, as for the check function.
# (stacks.constructs.training.training.EXPORT_SOURCE; not imported: it would load aws_cdk here.)
EXPORT_REQUIREMENTS = Path(__file__).resolve().parents[1] / "lambda" / "training_export" / "requirements.txt"
PIPELINE_TYPE = "AWS::SageMaker::Pipeline"
PACKAGE_GROUP_TYPE = "AWS::SageMaker::ModelPackageGroup"
# Resource types moto's CloudFormation skips whose Ref / Arn a definition may use: how CloudFormation
# would name them (its documented return values), from the resource's own name property.
DERIVED: Mapping[str, tuple[str, str, str]] = {
    # type: (name property, ARN resource path, what Ref returns: "name" or "arn")
    PIPELINE_TYPE: ("PipelineName", "pipeline", "name"),
    PACKAGE_GROUP_TYPE: ("ModelPackageGroupName", "model-package-group", "arn"),
}


class TrainingDemoError(RuntimeError):
    """The Training stack, its definition or its run is not what the sandbox can run; says why."""


# --- resolving CloudFormation tokens against moto ---------------------------------------------------


class Deployment:
    """What CloudFormation deployed in moto for one stack: resolves the template's tokens."""

    def __init__(self, *, client: Callable[[str], Any], template: Mapping[str, Any], stack: str, region: str):
        self.client, self.template, self.stack, self.region = client, template, stack, region
        self._account: str | None = None
        self._exports: dict[str, str] | None = None
        resources = client("cloudformation").describe_stack_resources(StackName=stack)["StackResources"]
        self.physical = {
            r["LogicalResourceId"]: r["PhysicalResourceId"] for r in resources if r.get("PhysicalResourceId")
        }

    @property
    def account(self) -> str:
        if self._account is None:
            self._account = str(self.client("sts").get_caller_identity()["Account"])
        return self._account

    def resolve(self, value: Any, where: str = "") -> Any:
        if isinstance(value, list):
            return [self.resolve(v, where) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) != 1 or not next(iter(value)).startswith(("Ref", "Fn::")):
            return {k: self.resolve(v, f"{where}.{k}" if where else k) for k, v in value.items()}
        ((fn, arg),) = value.items()
        if fn == "Ref":
            return self.ref(str(arg))
        if fn == "Fn::GetAtt":
            logical, attribute = arg if isinstance(arg, list) else str(arg).split(".", 1)
            return self.get_att(logical, attribute)
        if fn == "Fn::Join":
            sep, parts = arg
            return str(sep).join(str(self.resolve(p, where)) for p in parts)
        if fn == "Fn::FindInMap":
            name, top, second = (self.resolve(a, where) for a in arg)
            try:
                return self.template["Mappings"][name][top][second]
            except KeyError:
                raise TrainingDemoError(
                    f"{self.stack}: Fn::FindInMap {name}/{top}/{second} is not in the template's Mappings"
                ) from None
        if fn == "Fn::ImportValue":
            return self.import_value(str(self.resolve(arg, where)))
        if fn == "Fn::Select":
            index, items = self.resolve(arg, where)
            return items[int(index)]
        raise TrainingDemoError(
            f"{self.stack}: {where or 'a value'} uses {fn}, which the sandbox does not resolve"
        )

    def ref(self, name: str) -> str:
        pseudo = {
            "AWS::AccountId": lambda: self.account,
            "AWS::Region": lambda: self.region,
            "AWS::Partition": lambda: "aws",
            "AWS::URLSuffix": lambda: "amazonaws.com",
            "AWS::StackName": lambda: self.stack,
        }
        if name in pseudo:
            return pseudo[name]()
        if name in self.physical:
            return self.physical[name]
        derived = self._derived(name)
        if derived is not None:
            return derived[1] if DERIVED[derived[2]][2] == "name" else derived[0]
        raise TrainingDemoError(
            f"{self.stack}: Ref {name} names no resource moto deployed or the sandbox derives"
        )

    def get_att(self, logical: str, attribute: str) -> str:
        resource = self.template.get("Resources", {}).get(logical)
        if resource is None:
            raise TrainingDemoError(f"{self.stack}: Fn::GetAtt {logical}.{attribute} names no resource")
        rtype = resource["Type"]
        physical = self.physical.get(logical)
        if physical is None:
            derived = self._derived(logical)
            if derived is not None and attribute == "Arn":
                return derived[0]
            raise TrainingDemoError(
                f"{self.stack}: Fn::GetAtt {logical}.{attribute}: moto did not create this {rtype}"
            )
        if rtype == "AWS::Lambda::Function" and attribute == "Arn":
            return str(
                self.client("lambda").get_function(FunctionName=physical)["Configuration"]["FunctionArn"]
            )
        if rtype == "AWS::IAM::Role" and attribute == "Arn":
            return str(self.client("iam").get_role(RoleName=physical.rsplit("/", 1)[-1])["Role"]["Arn"])
        if rtype == "AWS::EC2::SecurityGroup" and attribute == "GroupId":
            if physical.startswith("sg-"):
                return physical
            groups = self.client("ec2").describe_security_groups(
                Filters=[{"Name": "group-name", "Values": [physical]}]
            )["SecurityGroups"]
            if len(groups) == 1:
                return str(groups[0]["GroupId"])
        raise TrainingDemoError(
            f"{self.stack}: the sandbox cannot read {rtype} attribute {attribute} ({logical})"
        )

    def import_value(self, name: str) -> str:
        if self._exports is None:
            self._exports = {}
            for page in self.client("cloudformation").get_paginator("list_exports").paginate():
                self._exports.update({e["Name"]: e["Value"] for e in page.get("Exports", [])})
        if name not in self._exports:
            raise TrainingDemoError(
                f"{self.stack}: Fn::ImportValue {name} is not exported by any stack in moto"
            )
        return self._exports[name]

    def _derived(self, logical: str) -> tuple[str, str, str] | None:
        """(ARN, name, type) of a resource moto skipped whose identity follows from its name."""
        resource = self.template.get("Resources", {}).get(logical, {})
        rtype = resource.get("Type", "")
        if rtype not in DERIVED:
            return None
        prop, path, _ = DERIVED[rtype]
        name = self.resolve(resource.get("Properties", {}).get(prop), f"{logical}.{prop}")
        if not isinstance(name, str) or not name:
            raise TrainingDemoError(
                f"{self.stack}: {rtype} {logical} has no {prop} to derive its identity from"
            )
        # SageMaker lowercases names in ARNs.
        return f"arn:aws:sagemaker:{self.region}:{self.account}:{path}/{name.lower()}", name, rtype


# --- the stack's pipeline ------------------------------------------------------------------------


@dataclass(frozen=True)
class DeployedPipeline:
    name: str
    role_arn: str
    definition: dict[str, Any]  # the resolved PipelineDefinitionBody, parsed
    package_group: str
    logical_id: str


def deployed_pipeline(deployment: Deployment) -> DeployedPipeline:
    """The template's one pipeline with every token resolved (and its model package group)."""
    resources = deployment.template.get("Resources", {})
    pipelines = [lid for lid, r in resources.items() if r.get("Type") == PIPELINE_TYPE]
    if len(pipelines) != 1:
        raise TrainingDemoError(f"{deployment.stack} has {len(pipelines)} {PIPELINE_TYPE} resources, not one")
    logical = pipelines[0]
    props = resources[logical]["Properties"]
    body = props.get("PipelineDefinition", {}).get("PipelineDefinitionBody")
    if body is None:
        raise TrainingDemoError(
            f"{deployment.stack}/{logical} has no PipelineDefinition.PipelineDefinitionBody (an S3 location?)"
        )
    text = deployment.resolve(body, f"{logical}.PipelineDefinitionBody")
    try:
        definition = json.loads(text) if isinstance(text, str) else dict(text)
    except json.JSONDecodeError as exc:
        raise TrainingDemoError(
            f"{deployment.stack}/{logical}: the resolved definition is not JSON ({exc})"
        ) from None
    groups = [r for r in resources.values() if r.get("Type") == PACKAGE_GROUP_TYPE]
    group = groups[0]["Properties"]["ModelPackageGroupName"] if len(groups) == 1 else ""
    return DeployedPipeline(
        name=str(deployment.resolve(props["PipelineName"])),
        role_arn=str(deployment.resolve(props["RoleArn"])),
        definition=definition,
        package_group=str(deployment.resolve(group)),
        logical_id=logical,
    )


def create_in_moto(sagemaker: Any, pipeline: DeployedPipeline) -> None:
    """CloudFormation's part for the two types moto skips: the package group, then the pipeline."""
    if pipeline.package_group:
        existing = sagemaker.list_model_package_groups(NameContains=pipeline.package_group)
        if not any(
            g["ModelPackageGroupName"] == pipeline.package_group
            for g in existing["ModelPackageGroupSummaryList"]
        ):
            sagemaker.create_model_package_group(ModelPackageGroupName=pipeline.package_group)
    names = {
        p["PipelineName"]
        for p in sagemaker.list_pipelines(PipelineNamePrefix=pipeline.name)["PipelineSummaries"]
    }
    if pipeline.name not in names:
        sagemaker.create_pipeline(
            PipelineName=pipeline.name,
            RoleArn=pipeline.role_arn,
            PipelineDefinition=json.dumps(pipeline.definition),
        )


# --- the export step's executor -----------------------------------------------------------------


class ExportFunction:
    """The Lambda executor: the synthesized asset's handler with the deployed environment."""

    def __init__(
        self,
        *,
        asset: FunctionAsset,
        configuration: Mapping[str, Any],
        aws_env: Mapping[str, str],
        library_path: Sequence[Path],
        log: Path,
    ) -> None:
        deployed_env = configuration.get("Environment", {}).get("Variables", {})
        missing = [
            k for k, v in asset.environment.items() if not isinstance(v, str) and k not in deployed_env
        ]
        if missing:
            raise TrainingDemoError(
                f"{asset.logical_id}: moto holds no value for its environment {', '.join(missing)}"
            )
        # The template's values, except CloudFormation expressions, which take the deployed value.
        self.environment = {
            k: v if isinstance(v, str) else deployed_env[k] for k, v in asset.environment.items()
        }
        self.asset, self.configuration, self.aws_env = asset, configuration, aws_env
        self.library_path, self.log = list(library_path), log
        self.calls: list[dict[str, Any]] = []

    def __call__(self, *, function_arn: str, arguments: Mapping[str, Any]) -> dict[str, Any]:
        deployed = self.configuration["FunctionArn"]
        if function_arn != deployed:
            raise StepFailed(
                f"the step invokes {function_arn}, but the deployed export function is {deployed}"
            )
        result = invoke(
            self.asset,
            dict(arguments),
            function_name=self.configuration["FunctionName"],
            function_arn=deployed,
            aws_env=self.aws_env,
            environment=self.environment,
            library_path=self.library_path,
        )
        self.log.write_text(result.log)
        self.calls.append({"arguments": dict(arguments), "ok": result.ok, "ms": result.ms})
        if not result.ok:
            raise StepFailed(f"the export function failed: {result.error} (log {self.log})")
        if not isinstance(result.payload, dict):
            raise StepFailed(f"the export function returned {type(result.payload).__name__}, not an object")
        return result.payload


# --- the run -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Gate:
    metric: str  # validation:rmse
    comparison: str  # LessThanOrEqualTo
    value: float
    threshold: float
    passed: bool

    @property
    def text(self) -> str:
        symbol = {
            "LessThanOrEqualTo": "<=",
            "LessThan": "<",
            "GreaterThanOrEqualTo": ">=",
            "GreaterThan": ">",
        }
        verdict = "passed" if self.passed else "FAILED"
        return f"{self.metric} = {self.value!r} {symbol.get(self.comparison, self.comparison)} threshold {self.threshold!r}: {verdict}"


@dataclass(frozen=True)
class TrainingOutcome:
    stack: str
    pipeline: str
    execution_arn: str
    run: PipelineRun
    export: Mapping[str, Any]  # the Export step's OutputParameters
    training: TrainingResult
    gate: Gate
    model_package_arn: str
    model_package_status: str
    packages_in_moto: tuple[Mapping[str, Any], ...]  # ListModelPackages of the group, after the run
    manifest: Mapping[str, Any]
    start_parameters: Mapping[str, Any]  # what the sandbox passed to StartPipelineExecution
    skipped_by_moto: Mapping[str, int]  # resource type -> how many of the stack's moto did not create


def gate_of(pipeline: PipelineDefinition, run: PipelineRun) -> Gate:
    """The Gate step's comparison, with the values the run gave its two sides."""
    step = pipeline.steps.get(pd.STEP_GATE)
    if step is None or step.type != "Condition" or not step.arguments:
        raise TrainingDemoError(f"the pipeline has no Condition step {pd.STEP_GATE!r}")
    cond = step.arguments[0]
    left, right = cond.get("LeftValue"), cond.get("RightValue")
    if not isinstance(left, StepRef) or left.step != pd.STEP_TRAIN or "FinalMetricDataList" not in left.path:
        raise TrainingDemoError(f"step {pd.STEP_GATE!r} does not compare a metric of {pd.STEP_TRAIN!r}")
    metric = str(left.path[left.path.index("FinalMetricDataList") + 1])
    entries = run.step(pd.STEP_TRAIN).properties["FinalMetricDataList"]
    value = float(next(e["Value"] for e in entries if e["MetricName"] == metric))
    threshold = float(run.parameters[right.name]) if isinstance(right, ParameterRef) else float(right)
    passed = run.step(pd.STEP_GATE).properties.get("Outcome") is True
    return Gate(metric=metric, comparison=str(cond["Type"]), value=value, threshold=threshold, passed=passed)


def check_shards(training: TrainingResult, export: Mapping[str, Any], bucket: str) -> None:
    """Every train object went to exactly one host, and the hosts' rows add up to the export's."""
    seen: dict[str, str] = {}
    for host in training.hosts:
        for uri in host.objects.get(pd.TRAIN_CHANNEL, ()):
            if uri in seen:
                raise TrainingDemoError(f"{uri} went to both {seen[uri]} and {host.host}")
            seen[uri] = host.host
    rows = sum(h.rows.get(pd.TRAIN_CHANNEL, 0) for h in training.hosts)
    if rows != export["train_rows"] or len(seen) != export["train_files"]:
        raise TrainingDemoError(
            f"the hosts trained on {rows} rows in {len(seen)} objects, but the export wrote "
            f"{export['train_rows']} rows in {export['train_files']} files"
        )
    prefix = f"s3://{bucket}/{export['train_prefix']}"
    stray = [u for u in seen if not u.startswith(prefix)]
    if stray:
        raise TrainingDemoError(f"{stray[0]} is outside the run's train prefix {prefix}")


def run_definition(
    definition: Mapping[str, Any],
    *,
    executors: Executors,
    pipeline_name: str,
    execution_id: str,
    region: str,
    account: str,
    parameters: Mapping[str, Any] | None = None,
) -> tuple[PipelineDefinition, PipelineRun]:
    """Parse (every reference checked first) and run; a broken definition or a failed run raises."""
    try:
        pipeline = PipelineDefinition.parse(definition)
    except DefinitionError as exc:
        raise TrainingDemoError(f"the synthesized pipeline definition is broken: {exc}") from None
    run = run_pipeline(
        pipeline,
        executors=executors,
        parameters=parameters,
        execution_id=execution_id,
        pipeline_name=pipeline_name,
        region=region,
        account=account,
    )
    if run.status != "Succeeded":
        failed = next((s.name for s in run.steps if s.status == "Failed"), "?")
        raise TrainingDemoError(f"pipeline step {failed} failed: {run.failure_reason}")
    return pipeline, run


@dataclass
class TrainingSetup:
    """The Training stack as deployed in moto, and the executors its steps run with here."""

    stack: str
    template: Mapping[str, Any]
    deployment: Deployment
    pipeline: DeployedPipeline
    export_fn: ExportFunction
    executors: Executors


def prepare_training(
    *,
    cdk_out: Path,
    stack: str,
    client: Callable[[str], Any],
    aws_env: Mapping[str, str],
    region: str,
    library_path: Sequence[Path],
    work_dir: Path,
    log_dir: Path,
) -> TrainingSetup:
    """Resolve the stack's pipeline, create it in moto, and build the executors its steps need."""
    template = stack_template(cdk_out, stack)
    deployment = Deployment(client=client, template=template, stack=stack, region=region)
    pipeline = deployed_pipeline(deployment)
    work_dir.mkdir(parents=True, exist_ok=True)
    (work_dir / "definition.json").write_text(json.dumps(pipeline.definition, indent=2))
    sagemaker = client("sagemaker")
    create_in_moto(sagemaker, pipeline)
    export_fn = _export_function(deployment, template, cdk_out, aws_env, library_path, log_dir)
    executors = Executors(
        invoke_lambda=export_fn,
        train=LocalTrainer(s3=client("s3"), work_dir=work_dir / "jobs"),
        register_model=ModelRegistry(sagemaker=sagemaker),
    )
    return TrainingSetup(stack, template, deployment, pipeline, export_fn, executors)


class _Report:
    """One execution's progress as SageMaker's API shows it, posted to moto after every change."""

    def __init__(self, event: Mapping[str, Any], region: str, account: str) -> None:
        self.url, self.arn = str(event["ReportURL"]), str(event["PipelineExecutionArn"])
        self.region, self.account = region, account
        self.steps: dict[str, dict[str, Any]] = {}
        self.jobs: list[Mapping[str, Any]] = []

    def post(self, status: str, failure: str | None = None) -> None:
        body = {
            "PipelineExecutionArn": self.arn,
            "Status": status,
            "FailureReason": failure,
            "Steps": list(self.steps.values()),
            "TrainingJobs": self.jobs,
        }
        request = urllib.request.Request(  # noqa: S310 - the URL is our own loopback moto server
            self.url,
            data=json.dumps(body, default=str).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            if response.status != 200:
                raise TrainingDemoError(f"moto answered {response.status} to the report of {self.arn}")

    def train(self, trainer: Callable[..., Any]) -> Callable[..., Any]:
        """The Training executor, recording the job as DescribeTrainingJob will show it."""

        def run(*, job_name: str, request: Mapping[str, Any]) -> Any:
            try:
                result = trainer(job_name=job_name, request=request)
            except Exception as exc:
                self.jobs.append(
                    {
                        **request,
                        "TrainingJobName": job_name,
                        "TrainingJobStatus": "Failed",
                        "FailureReason": str(exc),
                    }
                )
                raise
            properties = getattr(result, "properties", result)
            self.jobs.append({**properties, "TrainingJobName": job_name})
            return result

        return run

    def step(self, step: Step, run: StepRun | None) -> None:
        now = datetime.now(timezone.utc).isoformat()
        if run is None:
            self.steps[step.name] = {
                "StepName": step.name,
                "StepStatus": "Executing",
                "StartTime": now,
                "Metadata": {},
            }
        else:
            record = self.steps[step.name]
            record.update(StepStatus=run.status, EndTime=now, Metadata=self._metadata(step, run))
            if run.failure_reason:
                record["FailureReason"] = run.failure_reason
        self.post("Executing")

    def _metadata(self, step: Step, run: StepRun) -> dict[str, Any]:
        props = run.properties
        if step.type == "Lambda":
            outputs = props.get("OutputParameters", {})
            return {
                "Lambda": {
                    "Arn": step.function_arn if isinstance(step.function_arn, str) else "",
                    "OutputParameters": [{"Name": k, "Value": str(v)} for k, v in outputs.items()],
                }
            }
        if step.type == "Training" and self.jobs:
            name = self.jobs[-1]["TrainingJobName"]
            return {
                "TrainingJob": {"Arn": f"arn:aws:sagemaker:{self.region}:{self.account}:training-job/{name}"}
            }
        if step.type == "Condition" and "Outcome" in props:
            return {"Condition": {"Outcome": "True" if props["Outcome"] else "False"}}
        if step.type == "RegisterModel" and "ModelPackageArn" in props:
            return {"RegisterModel": {"Arn": props["ModelPackageArn"]}}
        if step.type == "Fail":
            return {"Fail": {"ErrorMessage": run.failure_reason or ""}}
        return {}


class PipelineRunner:
    """SageMaker's part for the executions moto spools: each one's steps run here, one execution at a
    time, with the stack's executors; ``runs`` keeps each finished PipelineRun by execution ARN.

    A thread polls the spool; it ends with ``stop()`` or when ``alive()`` turns false (moto stopped).
    """

    def __init__(
        self,
        *,
        spool: Path,
        executors: Executors,
        region: str,
        account: str,
        alive: Callable[[], bool] = lambda: True,
        poll_seconds: float = 0.2,
    ) -> None:
        self.spool, self.executors, self.alive, self.poll_seconds = spool, executors, alive, poll_seconds
        self.region, self.account = region, account
        self.runs: dict[str, PipelineRun] = {}
        self.errors: dict[str, str] = {}
        self.definitions: dict[str, PipelineDefinition] = {}
        self._done = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="pipeline-runner", daemon=True)

    def start(self) -> PipelineRunner:
        self.spool.mkdir(parents=True, exist_ok=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def wait_for(self, arn: str, timeout: float) -> PipelineRun:
        deadline = time.monotonic() + timeout
        with self._done:
            while arn not in self.runs and arn not in self.errors:
                left = deadline - time.monotonic()
                if left <= 0 or not self._thread.is_alive():
                    raise TrainingDemoError(
                        f"the sandbox's pipeline runner did not finish {arn} in {timeout:g} s"
                    )
                self._done.wait(min(left, 1.0))
        if arn in self.errors:
            raise TrainingDemoError(self.errors[arn])
        return self.runs[arn]

    def _loop(self) -> None:
        while not self._stop.is_set() and self.alive():
            for path in sorted(self.spool.glob("*.json"), key=lambda p: p.stat().st_mtime):
                claimed = path.with_suffix(".taken")
                try:
                    path.rename(claimed)  # each execution is run once, by the runner that claims it
                except FileNotFoundError:
                    continue
                self._execute(json.loads(claimed.read_text()))
                if self._stop.is_set():
                    break
            self._stop.wait(self.poll_seconds)

    def _execute(self, event: Mapping[str, Any]) -> None:
        arn = str(event["PipelineExecutionArn"])
        region, account = self.region, self.account
        report = _Report(event, region, account)
        try:
            definition = PipelineDefinition.parse(json.loads(event["PipelineDefinition"]))
            executors = self.executors
            run = run_pipeline(
                definition,
                executors=Executors(
                    invoke_lambda=executors.invoke_lambda,
                    train=report.train(executors.train) if executors.train else None,
                    register_model=executors.register_model,
                ),
                parameters={p["Name"]: p["Value"] for p in event.get("PipelineParameters") or []},
                execution_id=arn.rsplit("/", 1)[-1],
                pipeline_name=str(event["PipelineName"]),
                region=region,
                account=account,
                on_step=report.step,
            )
            report.post(run.status, run.failure_reason)
        except Exception as exc:  # noqa: BLE001 - an execution the runner cannot run fails, as on AWS
            reason = f"the sandbox could not run this execution: {type(exc).__name__}: {exc}"
            with self._done:
                self.errors[arn] = reason
                self._done.notify_all()
            with contextlib.suppress(Exception):  # moto is gone; the error above is kept
                report.post("Failed", reason)
            return
        with self._done:
            self.definitions[arn] = definition
            self.runs[arn] = run
            self._done.notify_all()


def run_training(
    setup: TrainingSetup,
    runner: PipelineRunner,
    *,
    client: Callable[[str], Any],
    parameters: Mapping[str, Any] | None = None,
    timeout: float = 1800.0,
) -> TrainingOutcome:
    """Start an execution in moto, let the runner run it, and check what it did (see the module docstring)."""
    pipeline = setup.pipeline
    sagemaker = client("sagemaker")
    parameters = dict(parameters or {})
    execution_arn = sagemaker.start_pipeline_execution(
        PipelineName=pipeline.name,
        PipelineParameters=[{"Name": k, "Value": str(v)} for k, v in parameters.items()],
    )["PipelineExecutionArn"]
    run = runner.wait_for(execution_arn, timeout)
    if run.status != "Succeeded":
        failed = next((s.name for s in run.steps if s.status == "Failed"), "?")
        raise TrainingDemoError(f"pipeline step {failed} failed: {run.failure_reason}")
    status = sagemaker.describe_pipeline_execution(PipelineExecutionArn=execution_arn)[
        "PipelineExecutionStatus"
    ]
    if status != "Succeeded":
        raise TrainingDemoError(
            f"the run succeeded here, but moto reports execution {execution_arn} {status}"
        )
    parsed = runner.definitions[execution_arn]
    export = run.step(pd.STEP_EXPORT).properties["OutputParameters"]
    training = run.step(pd.STEP_TRAIN).detail
    if not isinstance(training, TrainingResult):
        raise TrainingDemoError(f"step {pd.STEP_TRAIN} ran no local training job")
    bucket = _bucket(setup.export_fn, export)
    check_shards(training, export, bucket)
    registered = run.step(pd.STEP_REGISTER).properties
    packages = tuple(
        sagemaker.list_model_packages(ModelPackageGroupName=pipeline.package_group)["ModelPackageSummaryList"]
    )
    if not any(p["ModelPackageArn"] == registered["ModelPackageArn"] for p in packages):
        raise TrainingDemoError(
            f"{registered['ModelPackageArn']} is not in moto's group {pipeline.package_group}"
        )
    manifest_key = f"{export['train_prefix'].rsplit('/', 2)[0]}/manifest.json"
    manifest = json.loads(client("s3").get_object(Bucket=bucket, Key=manifest_key)["Body"].read())
    template, deployment = setup.template, setup.deployment
    return TrainingOutcome(
        stack=setup.stack,
        pipeline=pipeline.name,
        execution_arn=execution_arn,
        run=run,
        export=export,
        training=training,
        gate=gate_of(parsed, run),
        model_package_arn=str(registered["ModelPackageArn"]),
        model_package_status=str(registered.get("ModelApprovalStatus", "")),
        packages_in_moto=packages,
        manifest=manifest,
        start_parameters=parameters,
        skipped_by_moto=dict(
            sorted(
                Counter(
                    r["Type"] for lid, r in template["Resources"].items() if lid not in deployment.physical
                ).items()
            )
        ),
    )


def _export_function(
    deployment: Deployment,
    template: Mapping[str, Any],
    cdk_out: Path,
    aws_env: Mapping[str, str],
    library_path: Sequence[Path],
    log_dir: Path,
) -> ExportFunction:
    found = [
        lid
        for lid, r in template.get("Resources", {}).items()
        if r.get("Type") == "AWS::Lambda::Function"
        and str(r.get("Metadata", {}).get("aws:cdk:path", "")).endswith("/ExportFunction/Resource")
    ]
    if len(found) != 1:
        raise TrainingDemoError(
            f"{deployment.stack} has {len(found)} export functions (*/ExportFunction), not one"
        )
    asset = function_asset(cdk_out, deployment.stack, found[0])
    physical = deployment.physical.get(found[0])
    if physical is None:
        raise TrainingDemoError(f"moto did not create the export function {found[0]}")
    configuration = deployment.client("lambda").get_function(FunctionName=physical)["Configuration"]
    return ExportFunction(
        asset=asset,
        configuration=configuration,
        aws_env=aws_env,
        library_path=library_path,
        log=log_dir / "training-export-function.log",
    )


def _bucket(export_fn: ExportFunction, export: Mapping[str, Any]) -> str:
    """The bucket the export wrote to: the step's argument, else the function's settings."""
    args = export_fn.calls[-1]["arguments"] if export_fn.calls else {}
    if args.get("bucket"):
        return str(args["bucket"])
    settings = json.loads(export_fn.environment.get("SNOWSAGE_SETTINGS", "{}"))
    return str(settings["bucket"])


def render(outcome: TrainingOutcome) -> list[str]:
    """The summary's training section: rows per host, the metric against the threshold, the model."""
    export, training = outcome.export, outcome.training
    lines = [
        f"Training pipeline {outcome.pipeline} ({outcome.stack}; execution {outcome.execution_arn.rsplit('/', 1)[-1]} "
        "started in moto, its steps run here and reported back to moto):",
        "  skipped by moto: "
        + (", ".join(f"{t} x{n}" for t, n in outcome.skipped_by_moto.items()) or "none")
        + f"; the sandbox created {PIPELINE_TYPE} and {PACKAGE_GROUP_TYPE} in moto from the template",
        "  steps: " + " -> ".join(f"{s.name} {s.status.lower()}" for s in outcome.run.steps),
        f"  export: {export['train_rows']:,} train rows in {export['train_files']} files, "
        f"{export['validation_rows']:,} validation rows in {export['validation_files']} files "
        f"(s3 prefix {export['train_prefix'].rsplit('/', 2)[0]}/)",
    ]
    for host in training.hosts:
        objects = len(host.objects.get(pd.TRAIN_CHANNEL, ()))
        lines.append(
            f"  {host.host}: {host.rows.get(pd.TRAIN_CHANNEL, 0):,} train rows "
            f"({objects} object{'' if objects == 1 else 's'}, ShardedByS3Key), "
            f"{host.rows.get(pd.VALIDATION_CHANNEL, 0):,} validation rows (FullyReplicated)"
        )
    lines.append(f"  hosts' train rows are disjoint and cover all {export['train_rows']:,} train rows")
    for name, value in outcome.start_parameters.items():
        lines.append(f"  started with {name}={value}")
    lines.append(f"  gate: {outcome.gate.text}")
    lines.append(f"  model package: {outcome.model_package_arn} ({outcome.model_package_status})")
    return lines
