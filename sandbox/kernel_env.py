"""The `snowsage` kernel's env for the demo's notebook, built by the real on_start.sh.

On an instance, on_start.sh copies the wheelhouse (cp310 wheels) from S3 and install_wheels.sh
builds the kernel's env on the EBS volume from it, then registers the "Python 3 (Snowflake)"
kernel. This machine's Python is not 3.10, so the sandbox builds the same wheelhouse for THIS
Python: the same pins (notebook_lifecycle/requirements.txt) downloaded by pip for the running
interpreter (bench.common.wheelhouse: cached in .build/ by the pins' hash), the snowsage wheel
(stacks.constructs.bundling.snowsage_wheel) and uv (tools.txt), zipped in the layout the
construct ships, and uploads it to moto's S3. Then it runs the deployed on-start script (as the
construct rendered it; only the wheelhouse URI is this one) with the lifecycle scripts' own
environment overrides: a temporary home, /opt/snowsage and kernelspec folder under the workdir, a
venv of this Python as conda_python3, a runuser stub (this is not an instance: there is no
ec2-user), a crontab stub. Given the deployed on-create script too (`make notebook`), it runs first,
in the same environment, as on an instance's first start: it restores the (empty) backup and copies
the example notebooks from the wheelhouse into the home. Neither script has a sandbox branch.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from . import servers

REPO_ROOT = servers.REPO_ROOT
LIFECYCLE = REPO_ROOT / "notebook_lifecycle"
NOTEBOOKS = REPO_ROOT / "notebooks"
HELPERS = ("idle_stop.py", "install_wheels.sh")
KERNEL_NAME = "snowsage"
ZIP_CACHE = REPO_ROOT / ".build" / "sandbox"
INSTALL_TIMEOUT = 420.0
HOST_PYTHON = f"{sys.version_info[0]}.{sys.version_info[1]}"

RUNUSER_STUB = """#!/bin/bash
# runuser -u USER -- CMD...: the sandbox runs as one user; the switch is recorded, the command runs.
if [ "$1" != -u ] || [ -z "$2" ] || [ "$3" != -- ] || [ $# -lt 4 ]; then
  echo "runuser stub: expected -u USER -- COMMAND..., got: $*" >&2; exit 2
fi
printf '%s\\t%s\\n' "$2" "${*:4}" >> "$SNOWSAGE_SANDBOX_RUNUSER_LOG"
exec "${@:4}"
"""
CRONTAB_STUB = """#!/bin/bash
# crontab -l / crontab -: the table is a file; nothing is scheduled on this machine.
if [ "$1" = -l ]; then cat "$SNOWSAGE_SANDBOX_CRONTAB" 2>/dev/null || exit 1
elif [ "$1" = - ]; then cat > "$SNOWSAGE_SANDBOX_CRONTAB"; else exit 2; fi
"""


class KernelEnvError(RuntimeError):
    pass


@dataclass
class KernelEnv:
    home: Path  # SAGEMAKER_HOME
    env_dir: Path  # what .snowsage/kernel-env points at
    kernels_dir: Path  # holds snowsage/kernel.json
    jupyter_dir: Path  # JUPYTER_PATH / JUPYTER_DATA_DIR for the kernel
    status: dict
    wheelhouse_uri: str
    wheels: int
    seconds: dict[str, float]


def host_wheelhouse_zip(log: Callable[[str], None] = lambda _: None) -> Path:
    """The wheelhouse zip for this machine's Python, cached by what went in."""
    from bench.common import wheelhouse

    wheels = wheelhouse()  # requirements for this interpreter, tools/ (uv); cached by the pins' hash
    snowsage = _snowsage_wheel_dir()
    parts = sorted([*wheels.glob("*.whl"), *(wheels / "tools").glob("*.whl"), *snowsage.glob("*.whl")])
    helpers = [LIFECYCLE / h for h in HELPERS]
    notebooks = sorted(NOTEBOOKS.glob("*.ipynb"))
    h = hashlib.sha256()
    for path in [*parts, LIFECYCLE / "requirements.txt", *helpers, *notebooks]:
        h.update(str(path).encode() + b"\0")
        h.update(path.read_bytes() if path.stat().st_size < 1_000_000 else str(path.stat().st_size).encode())
    zip_path = ZIP_CACHE / f"wheelhouse-cp{HOST_PYTHON.replace('.', '')}-{h.hexdigest()[:16]}.zip"
    if zip_path.exists():
        return zip_path
    log(f"  zipping the wheelhouse for Python {HOST_PYTHON} into {zip_path}")
    ZIP_CACHE.mkdir(parents=True, exist_ok=True)
    for old in ZIP_CACHE.glob("wheelhouse-*.zip"):
        old.unlink()
    tmp = zip_path.with_suffix(".tmp")
    # Wheels are zips already: stored, not compressed again.
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as z:
        for whl in sorted([*wheels.glob("*.whl"), *snowsage.glob("*.whl")]):
            z.write(whl, f"wheels/{whl.name}")
        for whl in sorted((wheels / "tools").glob("*.whl")):
            z.write(whl, f"tools/{whl.name}")
        z.write(LIFECYCLE / "requirements.txt", "requirements.txt")
        for nb in notebooks:
            z.write(nb, f"notebooks/{nb.name}")
        for helper in helpers:
            z.write(helper, helper.name)
    tmp.rename(zip_path)
    return zip_path


def _snowsage_wheel_dir() -> Path:
    """stacks.constructs.bundling.snowsage_wheel() in a child (the module loads the CDK's jsii runtime)."""
    code = "from stacks.constructs.bundling import snowsage_wheel; print(snowsage_wheel())"
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if proc.returncode != 0:
        raise KernelEnvError(f"building the snowsage wheel failed: {proc.stderr.strip()[-1500:]}")
    return Path(proc.stdout.strip().splitlines()[-1])


def with_wheelhouse(script: str, uri: str) -> str:
    """The deployed on-start script with another wheelhouse URI: the one value that differs."""
    new, count = re.subn(r"^WHEELHOUSE_S3_URI='[^']*'$", f"WHEELHOUSE_S3_URI='{uri}'", script, flags=re.M)
    if count != 1:
        raise KernelEnvError("the deployed on-start script has no WHEELHOUSE_S3_URI='...' line")
    return new


def build(
    *,
    on_start_script: str,
    root: Path,
    home: Path,
    s3: object,
    bucket: str,
    child_env: Mapping[str, str],
    log: Callable[[str], None] = lambda _: None,
    timeout: float = INSTALL_TIMEOUT,
    on_create_script: str | None = None,
) -> KernelEnv:
    """Run the deployed on_start.sh against ``home`` with this machine's wheelhouse; return the
    kernel env once install-status.json says ok (KernelEnvError with the reason otherwise).
    With ``on_create_script`` (the deployed on-create script), it runs first, as on an instance's
    first start: it restores the backup into an empty home and copies the example notebooks."""
    seconds: dict[str, float] = {}
    began = time.monotonic()
    zip_path = host_wheelhouse_zip(log)
    with zipfile.ZipFile(zip_path) as z:
        wheels = sum(1 for n in z.namelist() if n.startswith("wheels/"))
    key = f"sandbox/{zip_path.name}"
    s3.upload_file(str(zip_path), bucket, key)  # type: ignore[attr-defined]
    uri = f"s3://{bucket}/{key}"
    seconds["wheelhouse"] = time.monotonic() - began

    shutil.rmtree(root, ignore_errors=True)
    opt, fake_bin, conda = root / "opt-snowsage", root / "bin", root / "anaconda3" / "envs" / "python3"
    user_home = root / "ec2-user"
    kernels = user_home / ".local" / "share" / "jupyter" / "kernels"
    for d in (fake_bin, home, user_home):
        d.mkdir(parents=True, exist_ok=True)
    for name, body in (("runuser", RUNUSER_STUB), ("crontab", CRONTAB_STUB)):
        (fake_bin / name).write_text(body)
        (fake_bin / name).chmod(0o755)
    # conda_python3's stand-in: a venv of this Python (install_wheels.sh makes the env from it).
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(conda)], check=True, timeout=120)
    (root / "jupyter.log").touch()
    metadata = root / "resource-metadata.json"
    metadata.write_text('{"ResourceName": "snowsage-sandbox", "ResourceArn": "arn:aws:sagemaker:sandbox"}')
    script = root / "on_start.rendered.sh"
    script.write_text(with_wheelhouse(on_start_script, uri))

    env = {k: v for k, v in child_env.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(
        PATH=f"{fake_bin}{os.pathsep}{child_env.get('PATH', '')}",
        SAGEMAKER_HOME=str(home),
        CONDA_ENV_DIR=str(conda),
        SNOWSAGE_OPT_DIR=str(opt),
        SNOWSAGE_SYSTEM_PYTHON=sys.executable,
        SNOWSAGE_EXPECTED_PYTHON=HOST_PYTHON,
        SNOWSAGE_OWNER="ec2-user",
        SNOWSAGE_KERNELS_DIR=str(kernels),
        SNOWSAGE_SANDBOX_RUNUSER_LOG=str(root / "runuser.log"),
        SNOWSAGE_SANDBOX_CRONTAB=str(root / "crontab.txt"),
        CRONTAB_CMD=str(fake_bin / "crontab"),
        JUPYTER_LOG=str(root / "jupyter.log"),
        RESOURCE_METADATA=str(metadata),
        PIP_NO_INDEX="1",
    )
    if on_create_script is not None:
        began = time.monotonic()
        created = root / "on_create.rendered.sh"
        created.write_text(with_wheelhouse(on_create_script, uri))
        _run_script(created, env, root / "on_create.log")
        seconds["on_create"] = time.monotonic() - began
    began = time.monotonic()
    _run_script(script, env, root / "on_start.log")
    seconds["on_start foreground"] = time.monotonic() - began

    status_file = home / ".snowsage" / "install-status.json"
    install_log = opt / "install.log"
    deadline = time.monotonic() + timeout
    status: dict = {}
    while time.monotonic() < deadline:
        try:
            status = json.loads(status_file.read_text())
        except (OSError, ValueError):
            status = {}
        if status.get("state") in ("ok", "failed"):
            break
        time.sleep(0.5)
    seconds["kernel env build"] = time.monotonic() - began
    tail = (
        "\n".join(install_log.read_text(errors="replace").splitlines()[-8:]) if install_log.exists() else ""
    )
    if status.get("state") != "ok":
        why = (
            f"install-status.json says failed: {status.get('detail')}"
            if status.get("state") == "failed"
            else f"install-status.json did not say ok within {timeout:g} s (last: {status or 'none'})"
        )
        raise KernelEnvError(f"{why} (log {install_log}):\n{tail}")
    env_dir = (home / ".snowsage" / "kernel-env").resolve()
    spec = kernels / KERNEL_NAME / "kernel.json"
    if not spec.exists():
        raise KernelEnvError(f"install-status.json says ok but no kernel is registered at {spec}")
    argv0 = json.loads(spec.read_text())["argv"][0]
    if Path(argv0) != env_dir / "bin" / "python":
        raise KernelEnvError(f"{spec} starts {argv0}, not the kernel env {env_dir}")
    return KernelEnv(
        home=home,
        env_dir=env_dir,
        kernels_dir=kernels,
        jupyter_dir=kernels.parent,
        status=status,
        wheelhouse_uri=uri,
        wheels=wheels,
        seconds=seconds,
    )


def _run_script(script: Path, env: Mapping[str, str], log: Path) -> None:
    """Run a rendered lifecycle script the way SageMaker does (bash, its 5-minute limit); its output
    goes to ``log``."""
    name = script.name.replace(".rendered", "")
    try:
        proc = subprocess.run(
            ["bash", str(script)], env=dict(env), capture_output=True, text=True, timeout=300, check=False
        )
    except subprocess.TimeoutExpired:
        raise KernelEnvError(f"{name} did not finish within SageMaker's 5-minute limit") from None
    log.write_text(f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}")
    if proc.returncode != 0:
        raise KernelEnvError(
            f"{name} exited with {proc.returncode} (log {log}): {proc.stderr.strip()[-800:]}"
        )


PROBE_SOURCE = (
    "# sandbox probe (not in the shipped notebook): which environment ran this notebook\n"
    "import json, sys, snowflake.connector, snowsage\n"
    "print('SNOWSAGE_KERNEL_PROBE ' + json.dumps({'prefix': sys.prefix, 'executable': sys.executable, "
    "'snowsage': snowsage.__file__, 'connector': snowflake.connector.__file__}))"
)


def probe_result(nb: object) -> dict:
    """The probe cell's report from the executed notebook."""
    for cell in reversed(nb.cells):  # type: ignore[attr-defined]
        for out in cell.get("outputs", []):
            for line in str(out.get("text", "")).splitlines():
                if line.startswith("SNOWSAGE_KERNEL_PROBE "):
                    return json.loads(line.split(" ", 1)[1])
    raise KernelEnvError("the probe cell printed nothing")


def check_ran_in(env: KernelEnv, probe: Mapping[str, str]) -> None:
    prefix = Path(probe["prefix"]).resolve()
    if prefix != env.env_dir:
        raise KernelEnvError(f"the notebook ran in {prefix}, not in the snowsage kernel env {env.env_dir}")
    for module in ("snowsage", "connector"):
        if not Path(probe[module]).resolve().is_relative_to(env.env_dir):
            raise KernelEnvError(
                f"the notebook imported {module} from {probe[module]}, outside {env.env_dir}"
            )
