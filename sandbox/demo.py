"""The whole product on this machine: moto for AWS, fakesnow for Snowflake, the real CDK CLI.

``python -m sandbox`` (``make demo``) runs, in order (``STEPS`` names and numbers each printed step):

- start moto and fakesnow on free loopback ports (always stopped again);
- load a deterministic 20,000-row housing table into fakesnow (``<database>.<schema>.HOUSING``);
- ``cdk bootstrap`` and ``cdk deploy --all --method=direct`` against moto, answering the stacks'
  custom resources the way CloudFormation's callers would (see sandbox/custom_resources.py);
- the operator CLI against moto: ``snowflake-setup``, ``keypair generate``, ``credentials status``;
- the connectivity check, run from the synthesized Lambda asset the way Lambda runs it;
- the example notebook (nbclient) with the settings file the lifecycle script would write;
- the training pipeline: the synthesized definition, each execution's steps run here and reported
  to moto (sandbox/training_demo.py), then `snowsage train` and the training notebook against it;
- a summary: what was deployed (and what moto skipped), the check, the data, the Parquet object.

Any failure stops the run with ``step N (name) failed: ...`` and exit status 1. The sandbox uses only
settings a real deployment has (an AWS endpoint, a Snowflake host/port/protocol); docs/sandbox.md
lists every place where moto falls short and what the sandbox does about it.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from snowsage.reports import CheckReport, ReportError

from . import servers
from .custom_resources import CustomResourceRunner
from .lambda_runtime import find_resource, function_asset, invoke, stack_template

REPO_ROOT = servers.REPO_ROOT
REGION = "us-east-1"
ENV_NAME = "sandbox"
TABLE = "HOUSING"
NOTEBOOK = REPO_ROOT / "notebooks" / "snowflake_quickstart.ipynb"
TRAINING_NOTEBOOK = REPO_ROOT / "notebooks" / "train_from_snowflake.ipynb"
NODE_BIN = REPO_ROOT / "node_modules" / ".bin"
CONTEXT_FILE = REPO_ROOT / "cdk.context.json"
DEPLOY_TIMEOUT = 900.0
# A fake key pair moto accepts; nothing here can reach a real account (see Sandbox.child_env).
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "sandbox", "AWS_SECRET_ACCESS_KEY": "sandbox"}
# Every step the run prints, in order: its number and the total come from here, nowhere else.
STEPS = (
    "start moto",
    "start fakesnow",
    "load housing data",
    "cdk bootstrap",
    "cdk deploy --all",
    "snowsage snowflake-setup",
    "snowsage keypair generate",
    "snowsage credentials status",
    "connectivity check (synthesized Lambda asset)",
    "example notebook",
    "training pipeline (synthesized definition)",
    "snowsage train start, runs, model",
    "training notebook",
    "summary",
)


class StepSkipped(Exception):
    """Raised inside a step that does not apply to this deployment; its message is the reason."""


class StepFailed(Exception):
    def __init__(self, number: int, name: str, message: str) -> None:
        super().__init__(f"step {number} ({name}) failed: {message}")
        self.number = number
        self.name = name


@dataclass
class Options:
    workdir: Path = REPO_ROOT / ".sandbox"
    fakesnow_port: int | None = None  # reuse a running fakesnow server instead of starting one
    fakesnow_args: Callable[[int], list[str]] = servers.fakesnow_args
    server_timeout: float = 60.0
    notebook: Path = NOTEBOOK
    out: TextIO = field(default_factory=lambda: sys.stdout)
    keep_running: bool = (
        False  # after the summary, keep the servers up until Ctrl-C (make notebook reuses them)
    )


@dataclass
class Result:
    ok: bool
    error: str | None = None
    failed_step: int | None = None
    timings: dict[str, float] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)


class Sandbox:
    def __init__(self, options: Options) -> None:
        self.o = options
        self.work = options.workdir
        self.cdk_out = self.work / "cdk.out"
        self.logs = self.work / "logs"
        self.spool = self.work / "spool"
        self.result = Result(ok=False)
        self.moto: servers.Server | None = None
        self.fakesnow: servers.Server | None = None
        self.cfg: Any = None
        self._step = (0, "")

    # --- plumbing ------------------------------------------------------------------------------

    def say(self, text: str) -> None:
        print(text, file=self.o.out, flush=True)

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        number = STEPS.index(name) + 1
        self._step = (number, name)
        self.say(f"[{number}/{len(STEPS)}] {name} ...")
        start = time.monotonic()
        try:
            yield
        except StepSkipped as skipped:
            self.say(f"[{number}/{len(STEPS)}] {name}: skipped ({skipped})")
            return
        except StepFailed:
            raise
        except (Exception, KeyboardInterrupt) as exc:
            detail = "interrupted" if isinstance(exc, KeyboardInterrupt) else str(exc) or type(exc).__name__
            raise StepFailed(number, name, detail) from exc
        seconds = time.monotonic() - start
        self.result.timings[name] = seconds
        self.say(f"[{number}/{len(STEPS)}] {name}: ok ({seconds:.1f} s)")

    def fail(self, message: str) -> StepFailed:
        return StepFailed(*self._step, message)

    @property
    def aws_env(self) -> dict[str, str]:
        assert self.moto is not None
        return {
            **FAKE_CREDENTIALS,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ENDPOINT_URL": self.moto.url,
            # No profile, config or instance role from this machine can leak in.
            "AWS_CONFIG_FILE": str(self.work / "aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(self.work / "aws-config"),
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def child_env(self, **extra: str) -> dict[str, str]:
        """This process's environment minus anything AWS or CDK, plus the sandbox's AWS settings."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CDK_"))}
        env.update(self.aws_env)
        env["PATH"] = os.pathsep.join([str(NODE_BIN), str(Path(sys.executable).parent), env.get("PATH", "")])
        env["PYTHONPATH"] = str(REPO_ROOT)
        env["CDK_DISABLE_CLI_TELEMETRY"] = "true"
        env["JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION"] = "1"
        env.update(extra)
        return env

    def client(self, service: str) -> Any:
        import boto3

        assert self.moto is not None
        return boto3.session.Session(
            aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            region_name=REGION,
        ).client(service, endpoint_url=self.moto.url)

    def run(
        self, args: Sequence[str], *, log: str, timeout: float = 300, env: Mapping[str, str] | None = None
    ) -> str:
        """Run a command to completion; its output goes to logs/<log>; a failure quotes its tail."""
        path = self.logs / log
        proc = subprocess.run(
            list(args),
            cwd=REPO_ROOT,
            env=self.child_env(**(env or {})),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        path.write_text(f"$ {' '.join(args)}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}")
        if proc.returncode != 0:
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-12:])
            raise self.fail(f"`{' '.join(args[:4])} ...` exited with {proc.returncode} (log {path}):\n{tail}")
        return proc.stdout

    # --- the steps -----------------------------------------------------------------------------

    def prepare(self) -> None:
        for sub in ("cdk.out", "logs", "spool", "notebook"):
            shutil.rmtree(self.work / sub, ignore_errors=True)
        self.logs.mkdir(parents=True)
        (self.work / "aws-config").write_text("")
        self.cfg = sandbox_config(fakesnow_port=0)  # validated before anything starts

    def start_servers(self) -> None:
        with self.step("start moto"):
            port = servers.free_port()
            self.moto = servers.start(
                "moto",
                servers.moto_args(port, self.spool),
                port=port,
                log=self.logs / "moto.log",
                ready_path="/moto-api/",
                timeout=self.o.server_timeout,
            )
            self.result.facts["moto_url"] = self.moto.url
        with self.step("start fakesnow"):
            if self.o.fakesnow_port is not None:
                self.fakesnow = servers.Server("fakesnow", self.o.fakesnow_port, self.logs / "fakesnow.log")
                if not servers.answers_http(self.fakesnow.url):
                    raise self.fail(f"nothing answers on {self.fakesnow.url} (--fakesnow-port)")
            else:
                port = servers.free_port()
                self.fakesnow = servers.start(
                    "fakesnow",
                    self.o.fakesnow_args(port),
                    port=port,
                    log=self.logs / "fakesnow.log",
                    ready_path="/",
                    timeout=self.o.server_timeout,
                )
        self.cfg = sandbox_config(fakesnow_port=self.fakesnow.port)

    def load_data(self) -> None:
        import snowflake.connector

        from sandbox.sample_data import load_housing

        assert self.fakesnow is not None
        cfg = self.cfg
        with self.step("load housing data"):
            conn = snowflake.connector.connect(
                account=cfg.snowflake_account,
                user="SANDBOX_LOADER",
                password="sandbox",  # noqa: S106 - fakesnow ignores authentication
                host=servers.LOOPBACK,
                port=self.fakesnow.port,
                protocol="http",
                login_timeout=30,
                network_timeout=60,
            )
            try:
                cur = conn.cursor()
                # Validated identifiers (stacks.config) from cdk.json, not user input.
                cur.execute(f"create database if not exists {cfg.snowflake_database}")
                cur.execute(f"create schema if not exists {cfg.snowflake_database}.{cfg.snowflake_schema}")
                cur.execute(f"use schema {cfg.snowflake_database}.{cfg.snowflake_schema}")
                rows = load_housing(conn, TABLE)
                cur.execute("select count(*) from identifier(%s)", (TABLE,))
                counted = cur.fetchone()[0]  # type: ignore[index]
            finally:
                conn.close()
            if counted != rows:
                raise self.fail(f"loaded {rows} rows but {TABLE} holds {counted}")
            self.result.facts["table"] = f"{cfg.snowflake_database}.{cfg.snowflake_schema}.{TABLE}"
            self.result.facts["rows"] = rows

    def deploy(self) -> None:
        assert self.moto is not None and self.fakesnow is not None
        cdk = str(NODE_BIN / "cdk")
        cfn_s3 = {
            "AWS_ENDPOINT_URL_S3_FOR_CLOUDFORMATION": self.moto.url.replace(servers.LOOPBACK, "localhost")
        }
        with self.step("cdk bootstrap"):
            account = self.client("sts").get_caller_identity()["Account"]
            self.result.facts["account"] = account
            self.run(
                # Its own --output: the CLI locks its output folder, and the repository's cdk.out
                # may be in use by another CLI (a parallel test's run, make synth).
                [
                    cdk,
                    "bootstrap",
                    f"aws://{account}/{REGION}",
                    "--no-notices",
                    "--output",
                    str(self.cdk_out),
                ],
                log="cdk-bootstrap.log",
                env=cfn_s3,
            )
        with self.step("cdk deploy --all"):
            args = [
                cdk,
                "deploy",
                "--all",
                "--method=direct",
                "--require-approval=never",
                "--progress=events",
                "--no-notices",
                "--output",
                str(self.cdk_out),
                "--outputs-file",
                str(self.work / "outputs.json"),
            ]
            for key, value in sandbox_context(self.fakesnow.port).items():
                args += ["--context", f"{key}={value}"]
            log = self.logs / "cdk-deploy.log"
            with (
                CustomResourceRunner(self.spool, self.cdk_out, self.aws_env, self.client) as runner,
                log.open("w") as out,
            ):
                proc = subprocess.Popen(
                    args,
                    cwd=REPO_ROOT,
                    env=self.child_env(**cfn_s3),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
                try:
                    deadline = time.monotonic() + DEPLOY_TIMEOUT
                    while proc.poll() is None:
                        if runner.error:
                            raise self.fail(f"{runner.error} (log {log})")
                        if time.monotonic() > deadline:
                            raise self.fail(
                                f"cdk deploy did not finish within {DEPLOY_TIMEOUT:g} s (log {log})"
                            )
                        time.sleep(0.3)
                finally:
                    if proc.poll() is None:
                        proc.terminate()
                        proc.wait(timeout=30)
            if proc.returncode != 0:
                tail = "\n".join(log.read_text(errors="replace").strip().splitlines()[-12:])
                raise self.fail(f"cdk deploy exited with {proc.returncode} (log {log}):\n{tail}")
            self.result.facts["custom_resources"] = runner.handled
            self.result.facts["stacks"] = self.stack_inventory()

    def operator_cli(self) -> None:
        snowsage = [sys.executable, "-m", "snowsage", "--env", ENV_NAME, "--region", REGION]
        with self.step("snowsage snowflake-setup"):
            sql = self.run([*snowsage, "snowflake-setup"], log="cli-snowflake-setup.log")
            self.result.facts["setup_sql"] = sql
        with self.step("snowsage keypair generate"):
            alter = self.run([*snowsage, "keypair", "generate"], log="cli-keypair-generate.log")
            self.result.facts["alter_user"] = alter.strip().splitlines()[0] if alter.strip() else ""
        with self.step("snowsage credentials status"):
            status = json.loads(
                self.run([*snowsage, "--json", "credentials", "status"], log="cli-status.log")
            )
            if not status.get("complete"):
                raise self.fail(f"credentials are not complete after keypair generate: {status}")
            self.result.facts["credentials"] = status

    def connectivity_check(self) -> None:
        stack = f"{self.cfg.stack_prefix}-Notebook"
        with self.step("connectivity check (synthesized Lambda asset)"):
            template = stack_template(self.cdk_out, stack)
            fn = function_asset(self.cdk_out, stack, find_resource(template, "/Check/Function/Resource"))
            deployed = self.client("lambda").get_function(
                FunctionName=self.output("Notebook", "CheckFunctionName")
            )
            config = deployed["Configuration"]
            # The template's values, except CloudFormation expressions, which take the deployed value.
            deployed_env = config.get("Environment", {}).get("Variables", {})
            env = {k: v if isinstance(v, str) else deployed_env[k] for k, v in fn.environment.items()}
            result = invoke(
                fn,
                {},
                function_name=config["FunctionName"],
                function_arn=config["FunctionArn"],
                aws_env=self.aws_env,
                environment=env,
                library_path=[self.host_libraries()],
            )
            (self.logs / "check-function.log").write_text(result.log)
            if not result.ok:
                raise self.fail(
                    f"the check function crashed: {result.error} (log {self.logs / 'check-function.log'})"
                )
            try:
                report = CheckReport.from_dict(result.payload)
            except ReportError as exc:
                raise self.fail(f"the check function returned no check report ({exc})") from None
            self.result.facts["check"] = {"report": report, "function": fn, "ms": result.ms}
            if not report.ok:
                failed = [s.name for s in report.steps if s.ok is False]
                raise self.fail(
                    f"the check reports {report.status}: failed {', '.join(failed) or '?'}; "
                    f"diagnosis: {report.diagnosis}"
                )

    def host_libraries(self, requirements: Path | None = None) -> Path:
        """This machine's build of a function's pinned wheels (same bundling code, arch=None);
        the check function's by default."""
        code = (
            "import sys\n"
            "from pathlib import Path\n"
            "from stacks.constructs.bundling import pip_target\n"
            "from stacks.constructs.connectivity_check import CHECK_SOURCE\n"
            "from stacks.constructs.lambda_defaults import LAMBDA_PYTHON_VERSION\n"
            "pins = Path(sys.argv[1]) if len(sys.argv) > 1 else CHECK_SOURCE / 'requirements.txt'\n"
            "print(pip_target(pins, python_version=LAMBDA_PYTHON_VERSION, arch=None))"
        )
        args = [sys.executable, "-c", code, *([str(requirements)] if requirements else [])]
        log = f"host-bundle-{requirements.parent.name}.log" if requirements else "host-bundle.log"
        out = self.run(args, log=log, timeout=600)
        return Path(out.strip().splitlines()[-1])

    def notebook(self) -> None:
        import nbformat

        with self.step("example notebook"):
            if not self.o.notebook.exists():
                raise self.fail(f"{self.o.notebook} does not exist")
            settings_file = self.write_notebook_settings()
            home = settings_file.parents[1]
            # The real on_start.sh builds the snowsage kernel's env in home (sandbox/kernel_env.py).
            from sandbox import kernel_env

            try:
                kenv = kernel_env.build(
                    on_start_script=self.on_start_script(),
                    root=self.work / "kernel",
                    home=home,
                    s3=self.client("s3"),
                    bucket=self.output("Data", "ResultsBucketName"),
                    child_env=self.child_env(),
                    log=self.say,
                )
            except kernel_env.KernelEnvError as exc:
                raise self.fail(f"the snowsage kernel env: {exc}") from None
            self.result.facts["kernel_env"] = kenv
            nb = nbformat.read(self.o.notebook, as_version=4)
            nb.cells.append(nbformat.v4.new_code_cell(kernel_env.PROBE_SOURCE))
            began = time.monotonic()
            self._execute_notebook(nb, self.o.notebook.name, kenv, settings_file, log="notebook-kernel.log")
            kenv.seconds["notebook"] = time.monotonic() - began
            try:
                probe = kernel_env.probe_result(nb)
                kernel_env.check_ran_in(kenv, probe)
            except kernel_env.KernelEnvError as exc:
                raise self.fail(str(exc)) from None
            self.result.facts["kernel_probe"] = probe
            self.say(
                "  kernel env "
                + ", ".join(f"{k} {v:.1f} s" for k, v in kenv.seconds.items())
                + f"; the notebook ran in {probe['prefix']}"
            )
            self.result.facts["notebook_out"] = self.work / "notebook" / self.o.notebook.name
            self.result.facts["parquet"] = self.results_object()

    def _execute_notebook(self, nb: Any, name: str, kenv: Any, settings_file: Path, *, log: str) -> None:
        """Run ``nb`` in the snowsage kernel env, as the instance would; written to notebook/<name>."""
        import nbformat
        from jupyter_client.kernelspec import KernelSpecManager
        from jupyter_client.manager import KernelManager
        from nbclient import NotebookClient
        from nbclient.exceptions import CellExecutionError

        from sandbox import kernel_env

        home = settings_file.parents[1]
        jupyter = {"JUPYTER_PATH": str(kenv.jupyter_dir), "JUPYTER_DATA_DIR": str(kenv.jupyter_dir)}
        km = KernelManager(
            kernel_name=kernel_env.KERNEL_NAME,
            kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kenv.kernels_dir)]),
        )
        client = NotebookClient(
            nb,
            km=km,
            timeout=300,
            kernel_name=kernel_env.KERNEL_NAME,
            resources={"metadata": {"path": str(home)}},
        )
        try:
            with (self.logs / log).open("w") as stderr:
                # The kernel's own env: no PYTHONPATH to this checkout's snowsage.
                env = self.child_env(SNOWSAGE_SETTINGS_FILE=str(settings_file), **jupyter)
                env.pop("PYTHONPATH", None)
                client.execute(env=env, stderr=stderr)
        except CellExecutionError as exc:
            raise self.fail(
                f"{_first_line_of_error(str(exc))} (executed notebook in {self.work / 'notebook'})"
            ) from None
        finally:
            nbformat.write(nb, self.work / "notebook" / name)

    def training(self) -> None:
        """Issue 14's pipeline: the synthesized definition resolved against moto, its steps run here."""
        from sandbox import training_demo

        stack = f"{self.cfg.stack_prefix}-Training"
        with self.step("training pipeline (synthesized definition)"):
            if not (self.cdk_out / f"{stack}.template.json").exists():
                raise StepSkipped(f"the app has no {stack} stack")
            try:
                setup = training_demo.prepare_training(
                    cdk_out=self.cdk_out,
                    stack=stack,
                    client=self.client,
                    aws_env=self.aws_env,
                    region=REGION,
                    library_path=[self.host_libraries(training_demo.EXPORT_REQUIREMENTS)],
                    work_dir=self.work / "training",
                    log_dir=self.logs,
                )
                moto = self.moto
                # Runs every execution moto spools (this step's, `snowsage train`'s, the notebook's)
                # for as long as moto runs.
                self.pipelines = training_demo.PipelineRunner(
                    spool=self.spool / "pipelines",
                    executors=setup.executors,
                    region=REGION,
                    account=setup.deployment.account,
                    alive=lambda: moto is not None and moto.proc is not None and moto.proc.poll() is None,
                ).start()
                outcome = training_demo.run_training(setup, self.pipelines, client=self.client)
            except training_demo.TrainingDemoError as exc:
                raise self.fail(str(exc)) from None
            self.result.facts["training"] = outcome

    def training_cli(self) -> None:
        """What an orchestrator or an operator does: start a run by the stack's outputs, list runs and
        read the registered model, with the CLI against moto (the sandbox runs that execution's steps)."""
        outcome = self.result.facts.get("training")
        with self.step("snowsage train start, runs, model"):
            if outcome is None:
                raise StepSkipped("no training pipeline ran")
            snowsage = [sys.executable, "-m", "snowsage", "--env", ENV_NAME, "--region", REGION, "--json"]
            started = json.loads(
                self.run([*snowsage, "train", "start", "--wait"], log="cli-train-start.log", timeout=900)
            )
            run = started.get("run") or {}
            if run.get("status") != "Succeeded":
                raise self.fail(f"train start --wait ended {run.get('status')}: {run.get('failure_reason')}")
            runs = json.loads(self.run([*snowsage, "train", "runs"], log="cli-train-runs.log"))
            if started["execution_arn"] not in {r["execution_arn"] for r in runs["runs"]}:
                raise self.fail(
                    f"train runs does not list the run train start began: {started['execution_arn']}"
                )
            registered = next(
                (
                    s["detail"].removeprefix("model package ")
                    for s in run.get("steps") or []
                    if s["name"] == "RegisterModel"
                ),
                None,
            )
            model = json.loads(self.run([*snowsage, "train", "model"], log="cli-train-model.log"))
            if model["model_package_arn"] != registered:
                raise self.fail(
                    f"train model shows {model['model_package_arn']}, not the package the CLI's run registered "
                    f"({registered})"
                )
            self.result.facts["train_cli"] = {"started": started, "model": model}

    def training_notebook(self) -> None:
        """notebooks/train_from_snowflake.ipynb in the snowsage kernel: start a run, follow it, read
        the gate, load the registered model from S3 and predict a fresh sample."""
        import nbformat

        with self.step("training notebook"):
            kenv = self.result.facts.get("kernel_env")
            if self.result.facts.get("training") is None or kenv is None:
                raise StepSkipped("no training pipeline ran" if kenv else "no snowsage kernel env was built")
            nb = nbformat.read(TRAINING_NOTEBOOK, as_version=4)
            nb.cells.append(nbformat.v4.new_code_cell(TRAINING_RESULT_SOURCE))
            began = time.monotonic()
            self._execute_notebook(
                nb,
                TRAINING_NOTEBOOK.name,
                kenv,
                self.result.facts["settings_file"],
                log="training-notebook-kernel.log",
            )
            facts = training_notebook_facts(nb)
            facts["seconds"] = time.monotonic() - began
            facts["path"] = self.work / "notebook" / TRAINING_NOTEBOOK.name
            self.result.facts["training_notebook"] = facts

    def on_start_script(self) -> str:
        """The deployed lifecycle configuration's on-start script, as the construct rendered it."""
        name = self.output("Notebook", "NotebookName")
        sagemaker = self.client("sagemaker")
        config = sagemaker.describe_notebook_instance(NotebookInstanceName=name)[
            "NotebookInstanceLifecycleConfigName"
        ]
        hooks = sagemaker.describe_notebook_instance_lifecycle_config(
            NotebookInstanceLifecycleConfigName=config
        )
        return base64.b64decode(hooks["OnStart"][0]["Content"]).decode()

    def write_notebook_settings(self) -> Path:
        """What on_start.sh writes: the SETTINGS_B64 value of the deployed lifecycle configuration."""
        script = self.on_start_script()
        match = re.search(r"^SETTINGS_B64='([A-Za-z0-9+/=]+)'$", script, re.MULTILINE)
        if not match:
            raise self.fail(
                "the deployed on-start script has no SETTINGS_B64 value (redeploy the Notebook stack)"
            )
        settings = base64.b64decode(match.group(1)).decode()
        path = self.work / "notebook" / "SageMaker" / ".snowsage" / "settings.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(settings)
        path.chmod(0o644)
        self.result.facts["settings_file"] = path
        return path

    def results_object(self) -> dict[str, Any]:
        import pandas as pd

        bucket = self.output("Data", "ResultsBucketName")
        s3 = self.client("s3")
        objects = s3.list_objects_v2(Bucket=bucket, Prefix="results/").get("Contents", [])
        if not objects:
            raise self.fail(f"the notebook wrote nothing under s3://{bucket}/results/")
        newest = max(objects, key=lambda o: o["LastModified"])
        body = s3.get_object(Bucket=bucket, Key=newest["Key"])["Body"].read()
        frame = pd.read_parquet(io.BytesIO(body))
        return {"uri": f"s3://{bucket}/{newest['Key']}", "bytes": newest["Size"], "frame": frame}

    # --- facts for the summary -----------------------------------------------------------------

    def output(self, kind: str, key: str) -> str:
        outputs = json.loads((self.work / "outputs.json").read_text())
        return str(outputs[f"{self.cfg.stack_prefix}-{kind}"][key])

    def stack_inventory(self) -> list[dict[str, Any]]:
        cfn = self.client("cloudformation")
        rows = []
        for kind in ("Data", "Network", "Notebook"):
            name = f"{self.cfg.stack_prefix}-{kind}"
            template = stack_template(self.cdk_out, name)["Resources"]
            stack = cfn.describe_stacks(StackName=name)["Stacks"][0]
            present = {
                r["LogicalResourceId"]
                for r in cfn.describe_stack_resources(StackName=name)["StackResources"]
                if r.get("LogicalResourceId")
            }
            skipped = Counter(r["Type"] for lid, r in template.items() if lid not in present)
            rows.append(
                {
                    "stack": name,
                    "status": stack["StackStatus"],
                    "template": len(template),
                    "moto": len(present & set(template)),
                    "skipped": dict(sorted(skipped.items())),
                }
            )
        return rows

    def summary(self) -> None:
        with self.step("summary"):
            self.say(render_summary(self.result.facts, self.cfg))


def sandbox_context(fakesnow_port: int) -> dict[str, str]:
    """The only settings the sandbox changes: every one is a setting a real deployment has."""
    return {
        "env_name": ENV_NAME,
        "region": REGION,
        "snowflake_host": servers.LOOPBACK,
        "snowflake_port": str(fakesnow_port),
        "snowflake_protocol": "http",
        "removal_policy": "destroy",
    }


def sandbox_config(fakesnow_port: int) -> Any:
    """The AppConfig the CDK app will see: cdk.json context plus the sandbox's -c overrides."""
    from stacks.config import load_config

    context = json.loads((REPO_ROOT / "cdk.json").read_text())["context"]
    overrides = sandbox_context(fakesnow_port or 1)
    return load_config({**context, **overrides})


TRAINING_NOTEBOOK_RESULT = "SNOWSAGE_TRAINING_RESULT "  # the cell the demo appends prints this + JSON
TRAINING_RESULT_SOURCE = f"""import json as _json
print({TRAINING_NOTEBOOK_RESULT!r} + _json.dumps({{
    "run": run.execution_id,
    "steps": " -> ".join(f"{{s.name}} {{s.status.lower()}}" for s in status.steps or ()),
    "gate": str(decision), "metric": decision.metric, "value": decision.value,
    "threshold": decision.threshold, "passed": decision.passed,
    "model_package_arn": model.package.model_package_arn, "label": model.label,
    "features": list(model.features),
    "rows": comparison.rows, "rmse": comparison.rmse, "mae": comparison.mae,
}}))
"""


def training_notebook_facts(nb: Any) -> dict[str, Any]:
    """What the training notebook's last cell printed: its run, gate and prediction error."""
    for cell in reversed(nb.cells):
        for out in cell.get("outputs", []):
            for line in str(out.get("text", "")).splitlines():
                if line.startswith(TRAINING_NOTEBOOK_RESULT):
                    return dict(json.loads(line.removeprefix(TRAINING_NOTEBOOK_RESULT)))
    raise ValueError(f"the training notebook printed no {TRAINING_NOTEBOOK_RESULT.strip()} line")


def _first_line_of_error(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    errors = [line for line in lines if re.match(r"^\w*(Error|Exception)\b", line)]
    return (errors[-1] if errors else lines[-1] if lines else "a cell failed")[:500]


def render_summary(facts: Mapping[str, Any], cfg: Any) -> str:
    lines = ["", "=" * 78, "snowsage sandbox: the product ran end to end on this machine", "=" * 78, ""]
    lines.append(f"AWS (moto, account {facts.get('account')}, {REGION}) - deployed with the real CDK CLI:")
    for row in facts.get("stacks", []):
        skipped = ", ".join(f"{t} x{n}" for t, n in row["skipped"].items()) or "none"
        lines.append(
            f"  {row['stack']:<26} {row['status']:<16} {row['moto']:>3} of {row['template']:>3} resources "
            f"in moto; skipped by moto: {skipped}"
        )
    for h in facts.get("custom_resources", []):
        lines.append(f"  custom resource {h.stack}/{h.logical_id} ({h.resource_type}): {h.how}")
    lines.append("")
    lines.append(f"Snowflake (fakesnow): {facts.get('rows', 0):,} rows in {facts.get('table')}")
    if facts.get("alter_user"):
        lines.append(f"  operator CLI stored a key pair; the admin would run: {facts['alter_user'][:100]}...")
    check = facts.get("check")
    if check:
        fn = check["function"]
        lines.append("")
        lines.append(
            f"Connectivity check ({fn.logical_id}, handler {fn.handler}, deployed as {fn.runtime}/{fn.architecture}; "
            f"run here on this machine's Python in {check['ms']:.0f} ms):"
        )
        report: CheckReport = check["report"]
        for s in report.steps:
            result = "ok" if s.ok is True else ("FAIL" if s.ok is False else "skip")
            lines.append(f"  {s.name:<12} {result:<5} {s.detail[:90]}")
        lines.append(f"  status: {report.status}")
    parquet = facts.get("parquet")
    if parquet:
        frame = parquet["frame"]
        lines.append("")
        lines.append(
            f"Notebook {NOTEBOOK.name} ran (output: {facts.get('notebook_out')}); it wrote "
            f"{parquet['uri']} ({parquet['bytes']:,} bytes)"
        )
        kenv = facts.get("kernel_env")
        if kenv:
            lines.append(
                f"  in the {kenv.status.get('python')} 'snowsage' kernel whose env on_start.sh built from "
                f"{kenv.wheels} wheels ({kenv.status.get('detail')}): {kenv.env_dir}"
            )
        lines.append(
            f"  DataFrame read back: {frame.shape[0]:,} rows x {frame.shape[1]} columns; first rows:"
        )
        with _pandas_width():
            lines += ["  " + line for line in frame.head(5).to_string(index=False).splitlines()]
    training = facts.get("training")
    if training:
        from sandbox import training_demo

        lines.append("")
        lines += training_demo.render(training)
    train_cli = facts.get("train_cli")
    if train_cli:
        model = train_cli["model"]
        lines.append(
            f"  snowsage train start: {train_cli['started']['execution_id']}; train model: "
            f"{model['model_package_arn']} ({model['approval_status']})"
        )
    trained = facts.get("training_notebook")
    if trained:
        lines.append("")
        lines.append(
            f"Training notebook {TRAINING_NOTEBOOK.name} ran in {trained['seconds']:.0f} s (output: {trained['path']}):"
        )
        lines.append(f"  run {trained['run']}: {trained['steps']}")
        lines.append(f"  gate: {trained['gate']}")
        lines.append(
            f"  model {trained['model_package_arn']} predicted {trained['rows']:,} freshly sampled rows: "
            f"RMSE {trained['rmse']:,.0f}, MAE {trained['mae']:,.0f} ({trained['label']})"
        )
    lines += [
        "",
        "For a real account: set snowflake_account (and user, role, warehouse) in cdk.json, configure AWS",
        "credentials, run `make deploy`, then `snowsage snowflake-setup`, `snowsage keypair generate` and",
        "`snowsage check` (docs/cli.md). What the sandbox emulates, and how, is in docs/sandbox.md.",
    ]
    return "\n".join(lines)


RUNNING_FILE = "running.json"  # in the workdir while a kept sandbox is up: what `make notebook` reuses


@dataclass(frozen=True)
class RunningSandbox:
    """A deployment another process keeps up (``python -m sandbox --keep-running``)."""

    workdir: Path
    pid: int
    moto_url: str
    fakesnow_port: int
    env_name: str
    region: str


def running_sandbox(workdir: Path) -> RunningSandbox | None:
    """The kept sandbox in ``workdir``, or None when there is none or it no longer answers."""
    try:
        doc = json.loads((workdir / RUNNING_FILE).read_text())
        found = RunningSandbox(
            workdir=workdir,
            pid=int(doc["pid"]),
            moto_url=str(doc["moto_url"]),
            fakesnow_port=int(doc["fakesnow_port"]),
            env_name=str(doc["env_name"]),
            region=str(doc["region"]),
        )
        os.kill(found.pid, 0)  # the process that owns the servers is alive
    except (OSError, ValueError, KeyError, TypeError):
        return None
    fakesnow = f"http://{servers.LOOPBACK}:{found.fakesnow_port}"
    if not (servers.answers_http(found.moto_url + "/moto-api/") and servers.answers_http(fakesnow)):
        return None
    return found


def _keep_running(sandbox: Sandbox) -> None:
    """Leave the servers and the deployment up until Ctrl-C (or SIGTERM); then run()'s cleanup stops them."""
    assert sandbox.moto is not None and sandbox.fakesnow is not None
    state = sandbox.work / RUNNING_FILE
    doc = {
        "pid": os.getpid(),
        "moto_url": sandbox.moto.url,
        "fakesnow_port": sandbox.fakesnow.port,
        "env_name": ENV_NAME,
        "region": REGION,
    }
    state.write_text(json.dumps(doc, indent=2) + "\n")
    sandbox.say(
        f"\nsandbox: kept running (moto {sandbox.moto.url}, fakesnow port {sandbox.fakesnow.port}); "
        "`make notebook` in another terminal uses this deployment. Ctrl-C stops it."
    )
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        sandbox.say("sandbox: stopping the servers")
    finally:
        state.unlink(missing_ok=True)


@contextlib.contextmanager
def _pandas_width() -> Iterator[None]:
    import pandas as pd

    with pd.option_context("display.width", 200, "display.max_columns", 20):
        yield


def run(options: Options | None = None) -> Result:
    """Run every step; the servers are stopped and cdk.context.json restored whatever happens."""
    sandbox = Sandbox(options or Options())
    result = sandbox.result
    context_before = CONTEXT_FILE.read_bytes() if CONTEXT_FILE.exists() else None
    started = time.monotonic()
    try:
        sandbox.prepare()
        sandbox.start_servers()
        sandbox.load_data()
        sandbox.deploy()
        sandbox.operator_cli()
        sandbox.connectivity_check()
        sandbox.notebook()
        sandbox.training()
        sandbox.training_cli()
        sandbox.training_notebook()
        sandbox.summary()
        result.ok = True
        if sandbox.o.keep_running:
            _keep_running(sandbox)
    except StepFailed as exc:
        result.error, result.failed_step = str(exc), exc.number
    finally:
        for server in (sandbox.fakesnow, sandbox.moto):
            if server is not None:
                server.stop()
        # The CLI caches the availability-zone lookup for the fake account in cdk.json's folder.
        if context_before is None:
            CONTEXT_FILE.unlink(missing_ok=True)
        else:
            CONTEXT_FILE.write_bytes(context_before)
        result.timings["total"] = time.monotonic() - started
    return result


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=Options.workdir, help="logs, cdk.out, outputs")
    parser.add_argument("--fakesnow-port", type=int, help="use the fakesnow server already on this port")
    parser.add_argument(
        "--keep-running",
        action="store_true",
        help="after the summary, keep moto, fakesnow and the deployment up until Ctrl-C (for `make notebook`)",
    )
    args = parser.parse_args(argv)

    def terminate(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    result = run(
        Options(workdir=args.workdir, fakesnow_port=args.fakesnow_port, keep_running=args.keep_running)
    )
    total = result.timings.get("total", 0.0)
    if not result.ok:
        print(
            f"\nsandbox: {result.error}\n(logs in {args.workdir / 'logs'}; ran {total:.0f} s)",
            file=sys.stderr,
        )
        return 1
    print(f"\nsandbox: all steps passed in {total:.0f} s", file=sys.stdout)
    return 0
