"""The training pipeline from a notebook: start a run, follow it, read its gate, load its model.

Everything goes through ``snowsage.ops.training`` (what ``snowsage train`` runs), over the Training
stack's names that the notebook's settings file carries (``RuntimeSettings.extra["training"]``,
written by the Notebook stack: the notebook role may not call DescribeStacks). The settings file is
the one ``snowsage.notebook`` uses. Every error a user can hit is a ``NotebookError`` whose message
says what to do next in the notebook. Importing this module is cheap: boto3, pandas and xgboost
load on first use.
"""

from __future__ import annotations

import contextlib
import io
import tarfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from snowsage import notebook as nb
from snowsage.notebook import InvalidArgument, NotebookError
from snowsage.settings import TRAINING_SETTINGS_KEY, RuntimeSettings, stack_name

if TYPE_CHECKING:
    import pandas as pd

    from snowsage.ops.training import Metric, RegisteredModel, RunStatus, StartedRun, _Pipeline
    from snowsage.stack_outputs import Deployment

__all__ = [
    "Comparison",
    "GateDecision",
    "NoModelRegistered",
    "NoRunYet",
    "RunFailed",
    "RunTimedOut",
    "TrainedModel",
    "TrainingNotDeployed",
    "gate",
    "load_model",
    "start_run",
    "steps",
    "wait",
]

MODEL_FILE = "xgboost-model"  # what the built-in XGBoost container writes into model.tar.gz
DEFAULT_TIMEOUT_MINUTES = 120.0
DEFAULT_POLL_SECONDS = 10.0
Run = Any  # a StartedRun, a RunStatus, an execution id or ARN; None: the newest run


class TrainingNotDeployed(NotebookError):
    """The deployment has no training pipeline, or this notebook's settings do not name it."""


class NoRunYet(NotebookError):
    """The pipeline has no run, or none has finished."""


class RunFailed(NotebookError):
    """The run failed or was stopped; ``step`` and ``reason`` say where and why."""

    def __init__(self, message: str, *, run: RunStatus, step: str | None, reason: str | None) -> None:
        super().__init__(message)
        self.run, self.step, self.reason = run, step, reason


class RunTimedOut(NotebookError):
    """``wait`` gave up; the run itself goes on."""


class NoModelRegistered(NotebookError):
    """No model is registered in the group, or the run registered none."""


# ------------------------------------------------------------------------------------------ context


@dataclass
class _Context:
    dep: Deployment
    settings: RuntimeSettings
    _pipeline: _Pipeline | None = None

    @property
    def pipeline(self) -> _Pipeline:
        from snowsage.ops import training as ops

        if self._pipeline is None:
            with _errors(self):
                self._pipeline = ops._pipeline(self.dep)
        return self._pipeline

    def client(self, service: str) -> Any:
        return self.dep.client(service)

    @property
    def redeploy(self) -> str:
        env = self.settings.env_name
        return (
            f"deploy the training stack and then the notebook's (`npx cdk deploy {stack_name(env, 'Training')} "
            f"{stack_name(env, 'Notebook')}`, or make deploy), then stop and start the notebook instance"
        )


def _context() -> _Context:
    path = nb.settings_path(nb._state["path"])
    settings = nb.load_settings(path)
    outputs = settings.extra.get(TRAINING_SETTINGS_KEY) or {}
    if not isinstance(outputs, Mapping) or not outputs.get("TrainingPipelineName"):
        env = settings.env_name
        raise TrainingNotDeployed(
            f"training is not deployed for this notebook: its settings ({path}) name no training "
            f"pipeline, so either env {env!r} has no {stack_name(env, 'Training')} stack or the "
            f"{stack_name(env, 'Notebook')} stack was deployed before it. Deploy both (`npx cdk deploy "
            f"{stack_name(env, 'Training')} {stack_name(env, 'Notebook')}`, or make deploy), then stop "
            "and start the notebook instance so its lifecycle script rewrites the settings"
        )
    boto3 = nb._import("boto3", path)
    nb._import("botocore.exceptions", path)
    from snowsage import aws
    from snowsage.stack_outputs import Deployment

    with aws.sdk_loggers_quiet():
        session = boto3.Session(region_name=settings.region)  # honours AWS_ENDPOINT_URL (sandbox)
    training = {str(k): str(v) for k, v in outputs.items()}
    dep = Deployment(
        session, settings.env_name, _outputs={"Training": {**training, "__status__": f"in {path}"}}
    )
    return _Context(dep, settings)


@contextlib.contextmanager
def _errors(ctx: _Context) -> Iterator[None]:
    """ops' errors in the notebook's words; AWS denials name the stack that grants the call."""
    from botocore.exceptions import BotoCoreError, ClientError

    from snowsage import aws
    from snowsage.ops import training as ops
    from snowsage.ops.deployment import OperationError

    try:
        with aws.sdk_loggers_quiet():
            yield
    except ops.TrainingNotDeployed as exc:  # the settings name it, but SageMaker has no such resource
        raise TrainingNotDeployed(str(exc)) from None
    except ops.NoRunYet:
        raise NoRunYet(
            f"pipeline {ctx.dep.output('Training', 'TrainingPipelineName')} has no run yet: start one "
            "with start_run(), then follow it with wait(run)"
        ) from None
    except ops.NoModelYet:
        raise NoModelRegistered(
            f"no model is registered in {ctx.dep.output('Training', 'ModelPackageGroupName')} yet: a run "
            "registers its model only when it passes the gate; start one with start_run(), wait(run) for "
            "it, and gate(run) shows why a run registered none"
        ) from None
    except OperationError as exc:
        raise InvalidArgument(str(exc)) from None
    except ClientError as exc:
        if aws.error_code(exc) in ("AccessDenied", "AccessDeniedException", "403"):
            operation = exc.operation_name
            raise NotebookError(
                f"{operation} was denied to this notebook's role ({aws.error_code(exc)}): the Notebook "
                f"stack grants the training calls only when it is deployed with training; {ctx.redeploy}"
            ) from None
        raise NotebookError(aws.aws_error_message(exc)) from None
    except BotoCoreError as exc:
        raise NotebookError(aws.aws_error_message(exc)) from None


def _execution_id(run: Run) -> str | None:
    if run is None:
        return None
    for attr in ("execution_id", "execution_arn"):
        if hasattr(run, attr):
            return str(getattr(run, attr))
    if isinstance(run, str) and run.strip():
        return run.strip()
    raise InvalidArgument(
        f"run is {run!r}; pass what start_run() returned, a run's execution id or ARN, or nothing for the "
        "newest run"
    )


def _status(ctx: _Context, run: Run) -> RunStatus:
    from snowsage.ops import training as ops

    with _errors(ctx):
        return ops.status(ctx.dep, _execution_id(run), pipeline=ctx.pipeline)


def _finished(ctx: _Context, run: Run) -> RunStatus:
    """``run``'s status, or the newest finished run's; NoRunYet when nothing has finished."""
    from snowsage.ops import training as ops

    if run is not None:
        return _status(ctx, run)
    with _errors(ctx):
        found = ops.runs(ctx.dep, limit=20).runs
    if not found:
        raise NoRunYet(
            f"pipeline {ctx.pipeline.name} has no run yet: start one with start_run(), then follow it "
            "with wait(run)"
        )
    done = next((r for r in found if r.status in ops.DONE), None)
    if done is None:
        raise NoRunYet(
            f"no run of {ctx.pipeline.name} has finished yet (the newest, {found[0].execution_id}, is "
            f"{found[0].status}): wait() follows it to the end"
        )
    return _status(ctx, done.execution_id)


# ----------------------------------------------------------------------------------------- the run


def start_run(**parameters: Any) -> StartedRun:
    """Start the pipeline; keyword arguments override its parameters (``InstanceCount=2``).

    Returns at once; ``wait(run)`` follows it. Unknown parameters and values of the wrong type are
    refused before anything starts.
    """
    from snowsage.ops import training as ops
    from snowsage.ops.deployment import OperationError

    ctx = _context()
    pipeline = ctx.pipeline
    pairs = [f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in parameters.items()]
    try:
        params = ops.parse_params(pipeline, pairs, option="")
    except OperationError as exc:
        raise InvalidArgument(str(exc)) from None
    with _errors(ctx):
        started = ops.start(
            ctx.dep,
            ops.StartRequest(description="started from a notebook (snowsage.pipeline.start_run)"),
            pipeline=pipeline,
            params=params,
        )
    given = ", ".join(f"{k}={v}" for k, v in params.items()) or "the pipeline's default parameters"
    print(f"started run {started.execution_id} of {pipeline.name} with {given}")
    return started


def _when(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def wait(
    run: Run = None,
    *,
    timeout_minutes: float = DEFAULT_TIMEOUT_MINUTES,
    poll_seconds: float = DEFAULT_POLL_SECONDS,
    echo: Callable[[str], None] = print,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> RunStatus:
    """Follow ``run`` (the newest by default) to its end, printing each step as it changes.

    Returns the finished run's status (``.steps``, ``.metric``); RunFailed names the failing step
    and why; RunTimedOut after ``timeout_minutes`` (the run goes on: call wait again).
    """
    if not (isinstance(timeout_minutes, int | float) and timeout_minutes > 0):
        raise InvalidArgument(f"timeout_minutes is {timeout_minutes!r}; give a number of minutes above 0")
    if not (isinstance(poll_seconds, int | float) and poll_seconds > 0):
        raise InvalidArgument(f"poll_seconds is {poll_seconds!r}; give a number of seconds above 0")
    from snowsage.ops import training as ops

    ctx = _context()
    began = clock()
    deadline = began + timeout_minutes * 60
    seen: dict[str, str] = {}
    state, noted = "", False
    while True:
        st = _status(ctx, run)
        run = st.execution_id  # the newest run, once found, stays the one followed
        if st.status != state:
            state = st.status
            echo(f"[{_when(clock() - began):>6}] run {st.execution_id}: {state}")
        for s in st.steps or ():
            if seen.get(s.name) != s.status:
                seen[s.name] = s.status
                extra = f"  {s.detail}" if s.detail and s.status != "Executing" else ""
                why = f"  {s.failure_reason}" if s.status == "Failed" and s.failure_reason else ""
                echo(f"[{_when(clock() - began):>6}]   {s.name:<20} {s.status}{extra}{why}")
        if st.steps is None and st.steps_unavailable and not noted:
            noted = True
            echo(f"         ({st.steps_unavailable})")
        if st.status in ops.DONE:
            break
        if clock() + poll_seconds > deadline:
            raise RunTimedOut(
                f"run {st.execution_id} is still {st.status} after {timeout_minutes:g} minutes; it goes on "
                f"running: wait({st.execution_id!r}) follows it again (and steps({st.execution_id!r}) shows "
                "where it is)"
            )
        sleep(poll_seconds)
    if st.status in ops.FAILED:
        raise _failure(ctx, st)
    if st.metric is not None and st.metric.value is not None:
        echo(f"         {_gate_text(st.metric)}")
    return st


def _failure(ctx: _Context, st: RunStatus) -> RunFailed:
    from snowsage.ops import training as ops

    failed = next((s for s in st.steps or () if s.status == "Failed"), None)
    reason = (st.failure_reason or "no reason given").rstrip(". ")
    if st.status == "Stopped":
        message = f"run {st.execution_id} was stopped before it finished; start a new one with start_run()"
    elif failed is not None:
        where = ops.failure_log(ctx.dep, ctx.pipeline, failed)
        message = (
            f"run {st.execution_id} failed at step {failed.name}: {reason}{where}. Fix what it says, then "
            "start a new run with start_run()"
        )
    else:
        message = (
            f"run {st.execution_id} failed: {reason}. Fix what it says, then start a new run with start_run()"
        )
    return RunFailed(message, run=st, step=failed.name if failed else None, reason=st.failure_reason)


def steps(run: Run = None) -> pd.DataFrame:
    """The run's steps (the newest run by default) as a table: name, status, times, detail, failure."""
    ctx = _context()
    pd = nb._import("pandas", nb.settings_path(nb._state["path"]))
    st = _status(ctx, run)
    if st.steps is None:
        raise NotebookError(st.steps_unavailable or "this endpoint lists no pipeline steps")
    return pd.DataFrame(
        [
            {
                "step": s.name,
                "status": s.status,
                "started": s.started,
                "ended": s.ended,
                "detail": s.detail,
                "failure": s.failure_reason or "",
            }
            for s in st.steps
        ],
        columns=["step", "status", "started", "ended", "detail", "failure"],
    )


# ---------------------------------------------------------------------------------------- the gate


def _gate_text(m: Metric) -> str:
    verdict = {True: "passed", False: "refused", None: "undecided"}[m.passed]
    value = "?" if m.value is None else f"{m.value:.6g}"
    threshold = "?" if m.threshold is None else f"{m.threshold:g}"
    return f"{m.name} = {value} {m.comparison or '?'} threshold {threshold}: gate {verdict}"


@dataclass(frozen=True)
class GateDecision:
    """The run's validation metric against the pipeline's threshold, and what the gate made of it."""

    run: str
    metric: str
    value: float
    threshold: float
    comparison: str
    passed: bool
    model_package_arn: str | None  # what the run registered (only when it passed)

    def __str__(self) -> str:
        verdict = "passed" if self.passed else "refused"
        model = (
            f"; registered {self.model_package_arn}" if self.model_package_arn else "; no model registered"
        )
        return (
            f"run {self.run}: {self.metric} = {self.value:.6g} {self.comparison} threshold "
            f"{self.threshold:g}: gate {verdict}{model}"
        )


def _registered_arn(st: RunStatus) -> str | None:
    for s in st.steps or ():
        if s.status == "Succeeded" and s.detail.startswith("model package "):
            return s.detail.removeprefix("model package ")
    return None


def gate(run: Run = None) -> GateDecision:
    """The validation metric, the threshold and the gate's decision of ``run`` (default: the newest
    finished run). A run that failed before its model was trained raises RunFailed."""
    ctx = _context()
    st = _finished(ctx, run)
    m = st.metric
    if m is None or m.value is None or m.threshold is None or m.passed is None:
        if st.status in ("Failed", "Stopped"):
            raise _failure(ctx, st)
        raise NoRunYet(
            f"run {st.execution_id} is {st.status} and has no validation metric yet: wait({st.execution_id!r})"
        )
    return GateDecision(
        run=st.execution_id,
        metric=m.name,
        value=m.value,
        threshold=m.threshold,
        comparison=m.comparison or "?",
        passed=m.passed,
        model_package_arn=_registered_arn(st),
    )


# --------------------------------------------------------------------------------------- the model


@dataclass(frozen=True)
class Comparison:
    """Predictions next to the truth: ``table`` (actual, predicted, error) and its RMSE and MAE."""

    table: pd.DataFrame = field(repr=False)
    label: str
    rmse: float
    mae: float

    @property
    def rows(self) -> int:
        return len(self.table)

    def __str__(self) -> str:
        return f"{self.rows:,} rows: RMSE {self.rmse:,.6g}, MAE {self.mae:,.6g} (predicted {self.label} - actual)"


@dataclass(frozen=True)
class TrainedModel:
    """A registered model: the XGBoost booster and the columns it was trained on (label first)."""

    booster: Any = field(repr=False)  # xgboost.Booster
    label: str
    features: tuple[str, ...]
    package: RegisteredModel
    model_data_url: str

    def _columns(self, frame: Any, wanted: Sequence[str]) -> list[str]:
        pd = nb._import("pandas", nb.settings_path(nb._state["path"]))
        if not isinstance(frame, pd.DataFrame):
            raise InvalidArgument(f"pass a pandas DataFrame (e.g. from sample()); got {type(frame).__name__}")
        by_upper = {str(c).upper(): c for c in frame.columns}
        missing = [c for c in wanted if c.upper() not in by_upper]
        if missing:
            raise InvalidArgument(
                f"the DataFrame has no column {', '.join(missing)}; the model needs {', '.join(wanted)} "
                f"(it has {', '.join(map(str, frame.columns)) or 'none'}): select the same columns the "
                "pipeline exported"
            )
        return [by_upper[c.upper()] for c in wanted]

    def predict(self, frame: pd.DataFrame) -> Any:
        """One prediction per row of ``frame`` (a numpy array), from its feature columns by name."""
        xgb = nb._import("xgboost", nb.settings_path(nb._state["path"]))
        columns = self._columns(frame, self.features)
        try:
            values = frame[columns].to_numpy(dtype="float64")
        except (TypeError, ValueError) as exc:
            raise InvalidArgument(
                f"the feature columns are not all numeric ({exc}); cast them first"
            ) from None
        return self.booster.predict(xgb.DMatrix(values))

    def compare(self, frame: pd.DataFrame) -> Comparison:
        """Predict ``frame`` and put each prediction next to its true label."""
        pd = nb._import("pandas", nb.settings_path(nb._state["path"]))
        (label,) = self._columns(frame, (self.label,))
        predicted = self.predict(frame)
        actual = frame[label].to_numpy(dtype="float64")
        table = pd.DataFrame({"actual": actual, "predicted": predicted, "error": predicted - actual})
        errors = table["error"]
        return Comparison(
            table=table,
            label=self.label,
            rmse=float((errors**2).mean() ** 0.5) if len(table) else float("nan"),
            mae=float(errors.abs().mean()) if len(table) else float("nan"),
        )


def _split_s3(url: str) -> tuple[str, str]:
    bucket, _, key = url.removeprefix("s3://").partition("/")
    if not url.startswith("s3://") or not bucket or not key:
        raise NoModelRegistered(f"the model package's ModelDataUrl {url!r} is not an s3:// object")
    return bucket, key


def load_model(run: Run = None) -> TrainedModel:
    """The model ``run`` registered (default: the newest registered model), read from its
    model.tar.gz in S3, with the columns of the export it was trained on."""
    from snowsage.ops import training as ops
    from snowsage.training.export import read_manifest

    ctx = _context()
    path = nb.settings_path(nb._state["path"])
    xgb = nb._import("xgboost", path)
    if run is None:
        with _errors(ctx):
            package = ops.latest_model(ctx.dep)
    else:
        st = _status(ctx, run)
        arn = _registered_arn(st)
        if arn is None:
            why = _gate_text(st.metric) if st.metric and st.metric.value is not None else f"it is {st.status}"
            raise NoModelRegistered(
                f"run {st.execution_id} registered no model ({why}); load_model() loads the newest model "
                "that is registered"
            )
        with _errors(ctx):
            package = ops.model_package(ctx.dep, arn)
    if not package.model_data_url:
        raise NoModelRegistered(f"model package {package.model_package_arn} names no ModelDataUrl")
    bucket, key = _split_s3(package.model_data_url)
    s3 = ctx.client("s3")
    with _errors(ctx):
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        manifest = (
            read_manifest(s3, bucket=bucket, execution_id=package.pipeline_execution_id)
            if package.pipeline_execution_id
            else None
        )
    try:
        with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as tar:
            member = tar.extractfile(MODEL_FILE)
            raw = member.read() if member else None
    except (tarfile.TarError, KeyError, OSError):
        raw = None
    if raw is None:
        raise NoModelRegistered(
            f"{package.model_data_url} holds no {MODEL_FILE} (not a model.tar.gz of the built-in XGBoost "
            "container); load another run's model with load_model(run)"
        )
    if manifest is None:
        raise NoModelRegistered(
            f"the export manifest of run {package.pipeline_execution_id} (training/runs/.../manifest.json "
            f"in {bucket}) is gone, so the model's columns are unknown (run data expires after the "
            "training_run_retention_days setting); start a new run with start_run()"
        )
    booster = xgb.Booster()
    booster.load_model(bytearray(raw))
    return TrainedModel(
        booster=booster,
        label=manifest.columns[0],
        features=tuple(manifest.columns[1:]),
        package=package,
        model_data_url=package.model_data_url,
    )
