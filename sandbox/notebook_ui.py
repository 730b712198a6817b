"""`make notebook`: the JupyterLab a notebook instance serves, on this machine, set up by the real
lifecycle scripts against the sandbox.

``python -m sandbox.notebook_ui``:

- finds the deployment ``python -m sandbox --keep-running`` keeps up in the workdir
  (``demo.running_sandbox``) or deploys afresh with the demo's own steps (moto, fakesnow, the housing
  table, ``cdk bootstrap`` and ``cdk deploy --all``, the operator CLI's key pair);
- reads the deployed lifecycle configuration from moto and runs its on-create and on-start scripts
  (sandbox/kernel_env.py) against a fresh home: on_create.sh copies the example notebooks from the
  wheelhouse in moto's S3, on_start.sh writes the settings file and builds and registers the
  "Python 3 (Snowflake)" kernel;
- starts JupyterLab from this venv on 127.0.0.1 with a random token, rooted at that home, the
  snowsage kernel the default, its kernels in the sandbox's AWS settings (the endpoint, the fake key
  pair, the settings file path: what the demo's notebook step passes);
- prints one URL and stays up until Ctrl-C or SIGTERM, then stops JupyterLab (and its kernels) and
  every server it started; a reused deployment is left running.

Neither the lifecycle scripts nor the snowsage helper know they run here (docs/notebook-local.md).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlparse

from . import demo, kernel_env, servers

WORKDIR = demo.REPO_ROOT / ".sandbox"
UI_DIR = "notebook-ui"  # under the workdir: the home, the kernel env's root, JupyterLab's state
QUICKSTART = demo.NOTEBOOK.name
JUPYTER_TIMEOUT = 90.0
# JupyterLab's own settings for a closed network: it asks for and fetches no news, checks no updates.
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
}


class NotebookUIError(RuntimeError):
    def __init__(self, step: str, message: str) -> None:
        super().__init__(f"make notebook: {step} failed: {message}")
        self.step = step


@dataclass
class Paths:
    """Where everything lives under ``<workdir>/notebook-ui`` (wiped at each start)."""

    root: Path

    @property
    def home(self) -> Path:  # SAGEMAKER_HOME
        return self.root / "SageMaker"

    @property
    def kernel_root(self) -> Path:  # kernel_env.build's root: /opt/snowsage, conda_python3, stubs
        return self.root / "kernel"

    @property
    def jupyter(self) -> Path:  # JupyterLab's config, runtime and settings folders, its log
        return self.root / "jupyter"

    @property
    def settings_file(self) -> Path:  # what on_start.sh writes
        return self.home / ".snowsage" / "settings.json"


def paths(workdir: Path) -> Paths:
    return Paths(workdir / UI_DIR)


@dataclass
class Deployment:
    """The sandbox the notebook runs against; ``stop`` stops only the servers this process started."""

    sandbox: demo.Sandbox
    reused: bool
    owned: list[servers.Server] = field(default_factory=list)

    @property
    def moto_url(self) -> str:
        assert self.sandbox.moto is not None
        return self.sandbox.moto.url

    @property
    def bucket(self) -> str:
        return self.sandbox.output("Data", "ResultsBucketName")

    def client(self, service: str) -> Any:
        return self.sandbox.client(service)

    def stop(self) -> None:
        for server in self.owned:
            server.stop()


@dataclass
class NotebookUI:
    url: str  # http://127.0.0.1:<port>/lab?token=<token>
    token: str
    port: int
    paths: Paths
    kernel: kernel_env.KernelEnv
    deployment: Deployment
    jupyter: servers.Server

    @property
    def home(self) -> Path:
        return self.paths.home

    def stop(self) -> None:
        """JupyterLab (it shuts its kernels down on SIGTERM), then the servers this process started."""
        try:
            self.jupyter.stop()
        finally:
            self.deployment.stop()

    def __enter__(self) -> NotebookUI:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def attach(running: demo.RunningSandbox, out: TextIO) -> Deployment:
    """The kept deployment of ``python -m sandbox --keep-running``; its owner stops its servers."""
    if (running.env_name, running.region) != (demo.ENV_NAME, demo.REGION):
        raise NotebookUIError(
            "reusing the kept sandbox",
            f"{running.workdir / demo.RUNNING_FILE} is for env {running.env_name!r} in {running.region}, "
            f"not {demo.ENV_NAME!r} in {demo.REGION}; stop that sandbox (Ctrl-C) and run again",
        )
    sandbox = demo.Sandbox(demo.Options(workdir=running.workdir, out=out))
    port = urlparse(running.moto_url).port
    assert port is not None
    sandbox.moto = servers.Server("moto", port, sandbox.logs / "moto.log")  # no proc: not ours to stop
    sandbox.fakesnow = servers.Server("fakesnow", running.fakesnow_port, sandbox.logs / "fakesnow.log")
    sandbox.cfg = demo.sandbox_config(running.fakesnow_port)
    return Deployment(sandbox, reused=True)


def deploy(workdir: Path, out: TextIO, fakesnow_port: int | None = None) -> Deployment:
    """A fresh deployment with the demo's steps up to the operator CLI (the notebook needs no more)."""
    sandbox = demo.Sandbox(demo.Options(workdir=workdir, fakesnow_port=fakesnow_port, out=out))
    deployment = Deployment(sandbox, reused=False)
    context_before = demo.CONTEXT_FILE.read_bytes() if demo.CONTEXT_FILE.exists() else None
    try:
        sandbox.prepare()
        sandbox.start_servers()
        deployment.owned = [s for s in (sandbox.fakesnow, sandbox.moto) if s is not None]
        sandbox.load_data()
        sandbox.deploy()
        sandbox.operator_cli()
    except BaseException as exc:
        for server in (sandbox.fakesnow, sandbox.moto):
            if server is not None:
                server.stop()
        if isinstance(exc, demo.StepFailed):
            raise NotebookUIError("deploying the sandbox", str(exc)) from None
        raise
    finally:
        # The CDK CLI caches the availability-zone lookup for the fake account in cdk.json's folder.
        if context_before is None:
            demo.CONTEXT_FILE.unlink(missing_ok=True)
        else:
            demo.CONTEXT_FILE.write_bytes(context_before)
    return deployment


def lifecycle_scripts(deployment: Deployment) -> tuple[str, str]:
    """The deployed lifecycle configuration's on-create and on-start scripts, as the construct
    rendered them (read from moto's SageMaker, like the console shows them)."""
    sagemaker = deployment.client("sagemaker")
    name = deployment.sandbox.output("Notebook", "NotebookName")
    config = sagemaker.describe_notebook_instance(NotebookInstanceName=name)[
        "NotebookInstanceLifecycleConfigName"
    ]
    hooks = sagemaker.describe_notebook_instance_lifecycle_config(NotebookInstanceLifecycleConfigName=config)
    on_create, on_start = (base64.b64decode(hooks[k][0]["Content"]).decode() for k in ("OnCreate", "OnStart"))
    return on_create, on_start


def set_up_home(deployment: Deployment, where: Paths, say: Callable[[str], None]) -> kernel_env.KernelEnv:
    """A fresh home, set up by the deployed on_create.sh and on_start.sh (sandbox/kernel_env.py)."""
    step = "the lifecycle scripts (on_create.sh, on_start.sh)"
    shutil.rmtree(where.root, ignore_errors=True)
    where.home.mkdir(parents=True)
    try:
        on_create, on_start = lifecycle_scripts(deployment)
        kenv = kernel_env.build(
            on_start_script=on_start,
            on_create_script=on_create,
            root=where.kernel_root,
            home=where.home,
            s3=deployment.client("s3"),
            bucket=deployment.bucket,
            child_env=deployment.sandbox.child_env(),
            log=say,
        )
    except kernel_env.KernelEnvError as exc:
        raise NotebookUIError(step, str(exc)) from None
    except (KeyError, IndexError, OSError) as exc:
        raise NotebookUIError(step, f"cannot read the deployed lifecycle configuration ({exc!r})") from None
    missing = [p for p in (where.home / QUICKSTART, where.settings_file) if not p.exists()]
    if missing:
        raise NotebookUIError(
            step,
            f"{', '.join(map(str, missing))} missing after the scripts ran "
            f"(logs {where.kernel_root / 'on_create.log'}, {where.kernel_root / 'on_start.log'})",
        )
    return kenv


def start_jupyterlab(
    deployment: Deployment, where: Paths, kenv: kernel_env.KernelEnv
) -> tuple[servers.Server, str]:
    """JupyterLab from this venv on a free loopback port with a random token, rooted at the home."""
    token = secrets.token_urlsafe(24)
    state = where.jupyter
    for name, doc in LAB_SETTINGS.items():
        target = state / "lab-settings" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(doc))
    # The token in JupyterLab's own config (0600): not on its command line, which any local user can
    # read, and not in its environment, which every kernel inherits.
    config = state / "config" / "jupyter_server_config.json"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.touch(mode=0o600)
    config.write_text(json.dumps({"IdentityProvider": {"token": token}}))
    jupyter_data = str(kenv.jupyter_dir)  # holds kernels/snowsage, which on_start.sh registered
    env = deployment.sandbox.child_env(
        SNOWSAGE_SETTINGS_FILE=str(where.settings_file),
        JUPYTER_PATH=jupyter_data,
        JUPYTER_DATA_DIR=jupyter_data,
        JUPYTER_CONFIG_DIR=str(state / "config"),
        JUPYTER_RUNTIME_DIR=str(state / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(state / "lab-settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(state / "workspaces"),
        IPYTHONDIR=str(state / "ipython"),
    )
    env.pop("JUPYTER_TOKEN", None)
    env.pop("PYTHONPATH", None)  # the kernel's own env: not this checkout's snowsage
    port = servers.free_port()
    args = [
        "-m",
        "jupyterlab",
        "--no-browser",
        f"--ServerApp.ip={servers.LOOPBACK}",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--ServerApp.root_dir={where.home}",
        f"--MappingKernelManager.default_kernel_name={kernel_env.KERNEL_NAME}",
        "--LabApp.news_url=",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    if os.geteuid() == 0:  # a container's root; an instance's JupyterLab runs as ec2-user
        args.append("--allow-root")
    log = state / "jupyterlab.log"
    try:
        server = servers.start(
            "jupyterlab", args, port=port, log=log, ready_path="/api/status", timeout=JUPYTER_TIMEOUT, env=env
        )
    except servers.ServerError as exc:
        raise NotebookUIError("starting JupyterLab", str(exc)) from None
    return server, token


def start(
    workdir: Path = WORKDIR,
    *,
    out: TextIO | None = None,
    reuse: bool = True,
    fakesnow_port: int | None = None,
) -> NotebookUI:
    """Everything up to a JupyterLab answering on its URL; whatever fails, what it started is stopped."""
    stream = out if out is not None else sys.stdout

    def say(text: str) -> None:
        print(text, file=stream, flush=True)

    running = demo.running_sandbox(workdir) if reuse else None
    if running is not None:
        say(f"notebook: using the sandbox kept running by process {running.pid} ({workdir})")
        deployment = attach(running, stream)
    else:
        say(
            f"notebook: deploying the sandbox in {workdir} (the demo's steps up to the operator CLI; a minute or two)"
        )
        deployment = deploy(workdir, stream, fakesnow_port)
    where = paths(workdir)
    try:
        say("notebook: running the deployed on_create.sh and on_start.sh against a fresh home ...")
        began = time.monotonic()
        kenv = set_up_home(deployment, where, say)
        say(
            f"notebook: home {where.home} set up in {time.monotonic() - began:.0f} s "
            f"({kenv.status.get('detail')})"
        )
        jupyter, token = start_jupyterlab(deployment, where, kenv)
    except BaseException:
        deployment.stop()
        raise
    url = f"{jupyter.url}/lab?token={token}"
    return NotebookUI(
        url=url,
        token=token,
        port=jupyter.port,
        paths=where,
        kernel=kenv,
        deployment=deployment,
        jupyter=jupyter,
    )


@contextlib.contextmanager
def _signals_as_interrupt() -> Iterator[None]:
    """SIGTERM and SIGINT both stop the run, also when the shell that started it ignores SIGINT
    (a background job)."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _quiet_jsii_exit(unraisable: Any) -> None:
    """The config loads the CDK's jsii runtime, a node child in this terminal's process group: a
    Ctrl-C ends it too, and its exit hook then fails on the closed pipe. That is expected; say
    nothing. Anything else goes to the default hook."""
    module = getattr(unraisable.object, "__module__", "") or ""
    if isinstance(unraisable.exc_value, BrokenPipeError) and module.startswith("jsii."):
        return
    sys.__unraisablehook__(unraisable)


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m sandbox.notebook_ui", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--workdir", type=Path, default=WORKDIR, help="the sandbox's folder (default .sandbox)"
    )
    parser.add_argument(
        "--fresh", action="store_true", help="deploy afresh even when a kept sandbox is running"
    )
    args = parser.parse_args(argv)
    sys.unraisablehook = _quiet_jsii_exit
    with _signals_as_interrupt():
        try:
            ui = start(args.workdir, reuse=not args.fresh)
        except NotebookUIError as exc:
            print(exc, file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("notebook: interrupted; stopped what it had started", file=sys.stderr)
            return 130
        try:
            print(f"\nJupyterLab, set up by the real lifecycle scripts; open {QUICKSTART} (Ctrl-C stops it):")
            print(ui.url, flush=True)
            while ui.jupyter.proc is not None and ui.jupyter.proc.poll() is None:
                time.sleep(0.5)
            print(
                f"notebook: JupyterLab exited with status {ui.jupyter.proc.returncode if ui.jupyter.proc else '?'} "
                f"(log {ui.jupyter.log})",
                file=sys.stderr,
            )
            return 1
        except KeyboardInterrupt:
            print("\nnotebook: stopping JupyterLab and the servers it started", flush=True)
            return 0
        finally:
            ui.stop()


if __name__ == "__main__":
    sys.exit(main())
