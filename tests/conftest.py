"""Shared fixtures: a moto server and a fakesnow server on loopback ports, started once per session.

Both run as subprocesses (like the local sandbox), wait for readiness with a bounded timeout and are
always terminated. ``aws_environment`` points every boto3 client at moto; ``make_settings`` and
``put_parameters`` create the SSM parameters a ``RuntimeSettings`` names, SecureStrings under a
KMS key, the way the stacks do.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from snowsage.settings import ALL_SECRET_KEYS, PLACEHOLDER, SECRET_KEYS_BY_AUTH, SETTING_KEYS, RuntimeSettings

REPO_ROOT = Path(__file__).resolve().parents[1]
REGION = "us-east-1"
STARTUP_TIMEOUT = 30.0


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ServerProcess:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


def _start(name: str, args: list[str], port: int, ready: str) -> ServerProcess:
    log = Path(tempfile.mkstemp(prefix=f"snowsage-{name}-", suffix=".log")[1])
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, *args],
            cwd=REPO_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    server = ServerProcess(name, proc, port, log)
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"{name} exited with {proc.returncode} before it was ready:\n{server.log_tail()}"
            )
        try:
            with urllib.request.urlopen(f"{server.url}{ready}", timeout=2):  # noqa: S310 - loopback URL
                return server
        except urllib.error.HTTPError:
            return server  # it answers HTTP: ready
        except OSError:
            time.sleep(0.1)
    server.stop()
    raise RuntimeError(
        f"{name} did not answer on port {port} within {STARTUP_TIMEOUT:g} s:\n{server.log_tail()}"
    )


@pytest.fixture(scope="session")
def moto_server() -> Iterator[ServerProcess]:
    """``python -m moto.server`` on a free loopback port; ``.url`` is the AWS endpoint."""
    port = free_port()
    server = _start("moto", ["-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], port, "/moto-api/")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def fakesnow_server() -> Iterator[ServerProcess]:
    """fakesnow's HTTP server (see sandbox/fakesnow_server.py); connect with host 127.0.0.1,
    ``.port`` and protocol http, any account and credentials."""
    port = free_port()
    server = _start("fakesnow", ["-m", "sandbox.fakesnow_server", "-p", str(port)], port, "/")
    try:
        yield server
    finally:
        server.stop()


AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
}


@pytest.fixture(scope="session")
def aws_environment(moto_server: ServerProcess) -> Iterator[dict[str, str]]:
    """Fake credentials, us-east-1 and AWS_ENDPOINT_URL=moto for the whole session (restored after)."""
    env = {**AWS_ENV, "AWS_ENDPOINT_URL": moto_server.url}
    saved = {k: os.environ.get(k) for k in (*env, "AWS_PROFILE", "AWS_SESSION_TOKEN")}
    os.environ.pop("AWS_PROFILE", None)
    os.environ.pop("AWS_SESSION_TOKEN", None)
    os.environ.update(env)
    try:
        yield env
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="session")
def ssm_client(aws_environment: dict[str, str]) -> Any:
    import boto3

    return boto3.client("ssm", region_name=REGION)


@pytest.fixture(scope="session")
def kms_client(aws_environment: dict[str, str]) -> Any:
    import boto3

    return boto3.client("kms", region_name=REGION)


@pytest.fixture(scope="session")
def kms_key_id(kms_client: Any) -> str:
    return create_kms_key(kms_client)


def create_kms_key(kms_client: Any, description: str = "snowsage test parameters") -> str:
    return kms_client.create_key(Description=description, KeyUsage="ENCRYPT_DECRYPT")["KeyMetadata"]["KeyId"]


def make_settings(
    env_name: str,
    auth: str = "keypair",
    *,
    overrides: tuple[str, ...] = ("host", "port", "protocol"),
    user: str = "",
    region: str = REGION,
) -> RuntimeSettings:
    """RuntimeSettings naming /snowsage/<env>/snowflake/<key> for the auth mode's keys plus ``overrides``."""
    keys = [k for k in SETTING_KEYS if k not in ("host", "port", "protocol") or k in overrides]
    keys += list(SECRET_KEYS_BY_AUTH[auth])
    return RuntimeSettings(
        env_name=env_name,
        region=region,
        auth=auth,
        parameters={k: f"/snowsage/{env_name}/snowflake/{k}" for k in keys},
        user=user,
    )


def put_parameters(
    ssm_client: Any,
    settings: RuntimeSettings,
    values: Mapping[str, str | None],
    *,
    kms_key_id: str | None = None,
) -> None:
    """Write the named parameters: settings as String, secrets as SecureString under ``kms_key_id``.

    Secrets not in ``values`` get the placeholder, as the stack's provider writes them; a value of
    ``None`` leaves the parameter out (to test a missing one).
    """
    for key, name in settings.parameters.items():
        if key in values:
            value = values[key]
        elif key in ALL_SECRET_KEYS:
            value = PLACEHOLDER
        else:
            continue
        if value is None:
            with contextlib.suppress(ssm_client.exceptions.ParameterNotFound):
                ssm_client.delete_parameter(Name=name)
            continue
        kwargs: dict[str, Any] = {"Name": name, "Value": value, "Overwrite": True}
        if key in ALL_SECRET_KEYS:
            kwargs["Type"] = "SecureString"
            if kms_key_id:
                kwargs["KeyId"] = kms_key_id
        else:
            kwargs["Type"] = "String"
        ssm_client.put_parameter(**kwargs)


def sandbox_values(fakesnow: ServerProcess, **values: str | None) -> dict[str, str | None]:
    """Plain settings that point the connector at the fakesnow server, plus ``values``."""
    return {
        "account": "sandbox",
        "role": "SANDBOX_ROLE",
        "warehouse": "SANDBOX_WH",
        "database": "SANDBOX_DB",
        "schema": "PUBLIC",
        "host": "127.0.0.1",
        "port": str(fakesnow.port),
        "protocol": "http",
        **values,
    }
