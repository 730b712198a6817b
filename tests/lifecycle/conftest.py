"""Sandbox for the lifecycle scripts: a moto S3 server, a wheelhouse zip, a venv as the conda env.

The scripts run for real with bash; only the AWS endpoint, the paths and the crontab command are
pointed elsewhere, through the environment overrides the scripts document.
"""

from __future__ import annotations

import base64
import glob
import os
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import boto3
import pytest

from snowsage.settings import RuntimeSettings

ROOT = Path(__file__).resolve().parents[2]
LIFECYCLE = ROOT / "notebook_lifecycle"
VENV_BIN = Path(sys.executable).parent
REGION = "eu-west-1"
BUCKET = "snowsage-test-data"
NOTEBOOK = "snowsage-dev-notebook"
# A small real package set standing in for the connector: python-dateutil (our "PACKAGE") on top of
# the pinned six, which it needs, so --find-links resolution is exercised.
PINS = "six==1.17.0\n"
PACKAGE = "python-dateutil"
VERIFY_IMPORTS = "dateutil six"
HELPERS = ("idle_stop.py", "install_wheels.sh")
EXAMPLE_NOTEBOOK = "snowflake_quickstart.ipynb"


def settings_json() -> str:
    params = {k: f"/snowsage/dev/{k}" for k in ("account", "role", "warehouse", "database", "schema")}
    params |= {k: f"/snowsage/dev/{k}" for k in ("user", "private_key", "private_key_passphrase")}
    return RuntimeSettings(
        env_name="dev",
        region=REGION,
        auth="keypair",
        parameters=params,
        user="SNOWSAGE_SVC",
        bucket=BUCKET,
        notebook_name=NOTEBOOK,
    ).to_json()


def render(script: str, **values: str) -> str:
    """What the construct does: replace each @@NAME@@ (all must be given, none may remain)."""
    text = (LIFECYCLE / script).read_text()
    names = set(re.findall(r"@@([A-Z0-9_]+)@@", text))
    assert names == set(values), f"{script} placeholders {sorted(names)} != given {sorted(values)}"
    for name, value in values.items():
        text = text.replace(f"@@{name}@@", value)
    return text


def build_wheelhouse(
    wheels: Path | list[Path],
    dest: Path,
    requirements: str = PINS,
    tools: Path | None = None,
    notebook: str = '{"cells": [], "nbformat": 4, "nbformat_minor": 5}',
    helpers: Path = LIFECYCLE,
) -> Path:
    """The zip layout the construct must build: wheels/, tools/, requirements.txt, notebooks/, helpers."""
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as z:
        for whl in sorted(
            w for folder in ([wheels] if isinstance(wheels, Path) else wheels) for w in folder.glob("*.whl")
        ):
            z.write(whl, f"wheels/{whl.name}")
        for whl in sorted(tools.glob("*.whl")) if tools else []:
            z.write(whl, f"tools/{whl.name}")
        z.writestr("requirements.txt", requirements)
        z.writestr(f"notebooks/{EXAMPLE_NOTEBOOK}", notebook)
        for helper in HELPERS:
            z.write(helpers / helper, helper)
    return dest


def _python310() -> str | None:
    """A real Python 3.10 makes the env match the script's default expectation (cp310 wheels)."""
    for candidate in [
        shutil.which("python3.10"),
        *glob.glob(os.path.expanduser("~/.pyenv/versions/3.10*/bin/python3.10")),
    ]:
        if (
            candidate
            and subprocess.run([candidate, "-c", "import venv"], capture_output=True).returncode == 0
        ):
            return candidate
    return None


@pytest.fixture(scope="session")
def aws_env(moto_endpoint) -> dict[str, str]:
    """The session's moto (tests/conftest.py), shared with the other tiers: this one keeps to
    eu-west-1 and its own bucket."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ENDPOINT_URL=moto_endpoint,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION=REGION,
        AWS_CONFIG_FILE="/dev/null",
        AWS_SHARED_CREDENTIALS_FILE="/dev/null",
        PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
    )
    return env


@pytest.fixture(scope="session")
def s3(aws_env):
    client = boto3.client(
        "s3",
        endpoint_url=aws_env["AWS_ENDPOINT_URL"],
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    client.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    return client


def _pip_download(target: Path, *args: str) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "-d", str(target), *args]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"pip download {' '.join(args)} failed:\n{result.stderr[-2000:]}"
    return target


@pytest.fixture(scope="session")
def wheels(tmp_path_factory) -> Path:
    return _pip_download(tmp_path_factory.mktemp("wheels"), "python-dateutil==2.9.0.post0", "six==1.17.0")


@pytest.fixture(scope="session")
def tools(tmp_path_factory) -> Path:
    """notebook_lifecycle/tools.txt (uv) for this machine, as the construct ships it for the notebook."""
    return _pip_download(tmp_path_factory.mktemp("tools"), "--no-deps", "-r", str(LIFECYCLE / "tools.txt"))


@pytest.fixture(scope="session")
def wheelhouse_uri(s3, wheels, tools, tmp_path_factory) -> str:
    zip_path = build_wheelhouse(wheels, tmp_path_factory.mktemp("zip") / "wheelhouse.zip", tools=tools)
    s3.upload_file(str(zip_path), BUCKET, "assets/wheelhouse.zip")
    return f"s3://{BUCKET}/assets/wheelhouse.zip"


@pytest.fixture(scope="session")
def conda_env(tmp_path_factory) -> tuple[Path, str]:
    """(env dir, Python major.minor) of a real venv standing in for anaconda3/envs/python3."""
    python = _python310() or sys.executable
    env_dir = tmp_path_factory.mktemp("conda") / "python3"
    subprocess.run([python, "-m", "venv", str(env_dir)], check=True, timeout=120)
    version = subprocess.run(
        [str(env_dir / "bin" / "python"), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # What a notebook user could drop into their own env: a .pth runs at every start of its python.
    # This one writes down whose start it was (the runuser stub's marker, or "root" without it).
    (env_dir / "lib" / f"python{version}" / "site-packages" / "zz_planted_by_user.pth").write_text(
        "import os, sys; p = os.environ.get('SNOWSAGE_TEST_PTH_LOG'); "
        "p and open(p, 'a').write(os.environ.get('SNOWSAGE_TEST_AS_USER', 'root') + ' ' + sys.executable + '\\n')\n"
    )
    return env_dir, version


AUDIT_HOOK = r"""
import os, sys

_watch = [w for w in os.environ.get("SNOWSAGE_TEST_WATCH", "").split(os.pathsep) if w]
_log = os.environ.get("SNOWSAGE_TEST_ACCESS_LOG")
_busy = []


def _record(event, args):
    if _busy:
        return
    paths = []
    for arg in args:
        if isinstance(arg, (str, bytes, os.PathLike)):
            try:
                paths.append(os.fsdecode(arg))
            except TypeError:
                pass
    if any(p == w or p.startswith(w + os.sep) for p in paths for w in _watch):
        _busy.append(1)
        try:
            with open(_log, "a") as f:
                who = os.environ.get("SNOWSAGE_TEST_AS_USER", "root")
                f.write(f"{who}\tpython:{event}\t{' '.join(paths)}\n")
        finally:
            _busy.clear()


if _watch and _log:
    sys.addaudithook(_record)
"""

# Commands the scripts use on files: each is wrapped to record who ran it when it names the home or
# the env. Python's own file calls are recorded by the audit hook above.
WATCHED_COMMANDS = (
    "cat",
    "chmod",
    "chown",
    "cp",
    "find",
    "install",
    "ln",
    "mkdir",
    "mktemp",
    "mv",
    "rm",
    "touch",
)


@pytest.fixture(scope="session")
def system_python(tmp_path_factory) -> Path:
    """The scripts' SYSTEM_PYTHON: this interpreter, with an audit hook recording who opens, lists,
    renames or chmods anything under the watched folders (SNOWSAGE_TEST_WATCH)."""
    probe = tmp_path_factory.mktemp("system-python")
    (probe / "sitecustomize.py").write_text(AUDIT_HOOK)
    wrapper = probe / "python3"
    wrapper.write_text(
        f'#!/bin/bash\nPYTHONPATH={probe}${{PYTHONPATH:+:$PYTHONPATH}} exec {sys.executable} "$@"\n'
    )
    wrapper.chmod(0o755)
    return wrapper


def _record_if_watched(name: str, log: Path, watched: tuple[Path, ...]) -> str:
    """Bash lines: append "<user> <name> <args>" to log when an argument names a watched folder."""
    cases = "|".join(f"*{shlex.quote(str(w))}*" for w in watched)
    return (
        'for a in "$@"; do case "$a" in '
        f'{cases}) printf \'%s\\t%s\\t%s\\n\' "${{SNOWSAGE_TEST_AS_USER:-root}}" {name} "$*" >> {log}; break;; '
        "esac; done\n"
    )


def _write_stubs(fake_bin: Path, env_dir: Path, home: Path, root: Path, user_home: Path) -> None:
    """runuser (root switching to the notebook user: records it, marks the command's environment),
    aws (`sagemaker` recorded, the rest to the real CLI on moto) and the file commands, recording
    who runs them on the home or the env. The tests run as root and there is no ec2-user, so "runs as
    ec2-user" means "went through runuser -u ec2-user", which is what the scripts control."""
    access, watched = root / "access.log", (home, env_dir, user_home)
    search = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if p != str(fake_bin))
    stubs = {
        "runuser": (
            'if [ -n "$SNOWSAGE_TEST_AS_USER" ]; then echo "runuser: may not be used by non-root users" >&2; exit 1; fi\n'
            'if [ "$1" != -u ] || [ -z "$2" ] || [ "$3" != -- ] || [ $# -lt 4 ]; then\n'
            '  echo "runuser stub: expected -u USER -- COMMAND..., got: $*" >&2; exit 2\nfi\n'
            f'printf \'%s\\t%s\\n\' "$2" "${{*:4}}" >> {root / "runuser.log"}\n'
            'SNOWSAGE_TEST_AS_USER="$2" exec "${@:4}"\n'
        ),
        "aws": (
            _record_if_watched("aws", access, watched)
            + f'if [ "$1" = sagemaker ]; then echo "$*" >> {root / "stop-calls.txt"}; exit 0; fi\n'
            f'exec {VENV_BIN / "aws"} "$@"\n'
        ),
    }
    for name in WATCHED_COMMANDS:
        real = shutil.which(name, path=search)
        assert real, f"{name} is not on PATH"
        stubs[name] = _record_if_watched(name, access, watched) + f'exec {real} "$@"\n'
    for name, body in stubs.items():
        (fake_bin / name).write_text("#!/bin/bash\n" + body)
        (fake_bin / name).chmod(0o755)


def root_access(box) -> list[str]:
    """Every recorded touch of the home or the env by root, and every start of the env's python as
    root (the planted .pth). Empty is the promise of RootAccess: Disabled."""
    rows = box.access_log.read_text().splitlines() if box.access_log.exists() else []
    starts = box.pth_log.read_text().splitlines() if box.pth_log.exists() else []
    return [r for r in rows if r.startswith("root\t")] + [
        f"env python as {s}" for s in starts if s.startswith("root ")
    ]


@pytest.fixture
def sandbox(tmp_path, aws_env, conda_env, system_python):
    """Paths and environment for one run of the scripts, with ec2-user as the owner (runuser is a
    stub that records the switch); crontab, `aws sagemaker` and every touch of the home or the env
    are recorded."""
    home, opt, fake_bin = tmp_path / "SageMaker", tmp_path / "opt-snowsage", tmp_path / "bin"
    user_home = tmp_path / "ec2-user"  # the rest of /home/ec2-user: Jupyter's kernelspecs live there
    for d in (home, fake_bin, user_home):
        d.mkdir()
    crontab_file, stop_calls = tmp_path / "crontab.txt", tmp_path / "stop-calls.txt"
    fake_crontab = fake_bin / "fake-crontab"
    fake_crontab.write_text(
        f'#!/bin/bash\nif [ "$1" = -l ]; then cat {crontab_file} 2>/dev/null || exit 1; '
        f'elif [ "$1" = - ]; then cat > {crontab_file}; else exit 2; fi\n'
    )
    fake_crontab.chmod(0o755)
    env_dir, version = conda_env
    _write_stubs(fake_bin, env_dir, home, tmp_path, user_home)
    metadata = tmp_path / "resource-metadata.json"
    metadata.write_text(f'{{"ResourceName": "{NOTEBOOK}", "ResourceArn": "arn:aws:sagemaker:x"}}')
    env = dict(aws_env)
    env.pop("SNOWSAGE_TEST_AS_USER", None)
    env.update(
        PATH=f"{fake_bin}{os.pathsep}{aws_env['PATH']}",
        SAGEMAKER_HOME=str(home),
        CONDA_ENV_DIR=str(env_dir),
        SNOWSAGE_OPT_DIR=str(opt),
        SNOWSAGE_SYSTEM_PYTHON=str(system_python),
        SNOWSAGE_EXPECTED_PYTHON=version,
        SNOWSAGE_VERIFY_IMPORTS=VERIFY_IMPORTS,
        SNOWSAGE_PACKAGE=PACKAGE,
        SNOWSAGE_OWNER="ec2-user",
        SNOWSAGE_KERNELS_DIR=str(user_home / ".local" / "share" / "jupyter" / "kernels"),
        SNOWSAGE_TEST_WATCH=os.pathsep.join((str(home), str(env_dir), str(user_home))),
        SNOWSAGE_TEST_ACCESS_LOG=str(tmp_path / "access.log"),
        SNOWSAGE_TEST_PTH_LOG=str(tmp_path / "pth.log"),
        CRONTAB_CMD=str(fake_crontab),
        JUPYTER_LOG=str(tmp_path / "jupyter.log"),
        RESOURCE_METADATA=str(metadata),
        PIP_NO_INDEX="1",
    )
    (tmp_path / "jupyter.log").touch()

    class Sandbox:
        pass

    box = Sandbox()
    box.__dict__.update(
        root=tmp_path,
        home=home,
        opt=opt,
        env=env,
        env_dir=env_dir,
        python_version=version,
        crontab=crontab_file,
        stop_calls=stop_calls,
        jupyter_log=tmp_path / "jupyter.log",
        status_file=home / ".snowsage" / "install-status.json",
        kernel_env=home / ".snowsage" / "kernel-env",
        kernel_json=user_home / ".local" / "share" / "jupyter" / "kernels" / "snowsage" / "kernel.json",
        access_log=tmp_path / "access.log",
        pth_log=tmp_path / "pth.log",
        runuser_log=tmp_path / "runuser.log",
        settings_json=settings_json(),
    )
    return box


def settings_b64() -> str:
    return base64.b64encode(settings_json().encode()).decode()


@pytest.fixture
def jupyter():
    """A tiny stand-in for the Jupyter server API: /api/kernels, /api/sessions, /api/terminals."""
    import http.server
    import json
    import threading
    from types import SimpleNamespace

    state = SimpleNamespace(kernels=[], sessions=[], terminals=[], url="")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            name = self.path.rstrip("/").rsplit("/", 1)[-1]
            body = json.dumps(getattr(state, name, None)).encode()
            self.send_response(200 if hasattr(state, name) else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


def al2023_python() -> str:
    """The cron job runs idle_stop.py with the system python3, 3.9 on Amazon Linux 2023."""
    for candidate in [
        shutil.which("python3.9"),
        *glob.glob(os.path.expanduser("~/.pyenv/versions/3.9*/bin/python3.9")),
    ]:
        if candidate and subprocess.run([candidate, "-c", "pass"], capture_output=True).returncode == 0:
            return candidate
    return sys.executable


def kernel_requirements() -> str:
    """ipykernel's closure as notebook_lifecycle/requirements.txt pins it, and the stand-in pins."""
    wanted = {
        "asttokens", "comm", "debugpy", "decorator", "exceptiongroup", "executing", "ipykernel", "ipython",
        "jedi", "jupyter_client", "jupyter_core", "matplotlib-inline", "nest-asyncio2", "packaging",
        "parso", "pexpect", "platformdirs", "prompt_toolkit", "psutil", "ptyprocess", "pure_eval",
        "pygments", "python-dateutil", "pyzmq", "six", "stack-data", "tornado", "traitlets",
        "typing_extensions", "tzdata", "wcwidth",
    }  # fmt: skip
    lines = (LIFECYCLE / "requirements.txt").read_text().splitlines()
    pins = [line for line in lines if line.split("==")[0].lower() in wanted]
    assert len(pins) == len(wanted), f"requirements.txt lacks some of ipykernel's closure: {sorted(wanted)}"
    return "\n".join(pins) + "\n"


@pytest.fixture(scope="session")
def kernel_wheels(tmp_path_factory, conda_env) -> Path:
    """The pinned ipykernel closure for the stand-in env's Python, as the construct downloads it."""
    from stacks.constructs.bundling import MANYLINUX_TAGS

    _, version = conda_env
    reqs = tmp_path_factory.mktemp("kernel-reqs") / "requirements.txt"
    reqs.write_text(kernel_requirements())
    platforms = [arg for tag in MANYLINUX_TAGS["x86_64"] for arg in ("--platform", tag)]
    return _pip_download(
        tmp_path_factory.mktemp("kernel-wheels"),
        *("--no-deps", "--python-version", version, "--implementation", "cp", *platforms, "-r", str(reqs)),
    )


@pytest.fixture(scope="session")
def old_six(tmp_path_factory) -> Path:
    """six 1.16.0: a changed pin for the rebuild tests."""
    return _pip_download(tmp_path_factory.mktemp("six-1.16"), "--no-deps", "six==1.16.0")


def tree_digest(root: Path) -> str:
    """sha256 over every path, link target and file body under root: 'byte-for-byte unchanged'."""
    import hashlib

    h = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        h.update(str(path.relative_to(root)).encode() + b"\0")
        if path.is_symlink():
            h.update(b"->" + os.readlink(path).encode())
        elif path.is_file():
            h.update(path.read_bytes())
    return h.hexdigest()
