"""Shared fixtures and the test tiers.

The servers are the sandbox's own launchers (sandbox/servers.py, what ``make demo`` runs): one moto
(sandbox.moto_server) and one fakesnow per session, that is per pytest worker, on loopback ports,
shared by every directory and always stopped. Tests keep out of each other's way by name (a fresh
env name, bucket or parameter path per test) and by region (tests/lifecycle works in eu-west-1),
never by a fresh server. ``aws_environment`` points every boto3 client at moto; ``make_settings`` and
``put_parameters`` create the SSM parameters a ``RuntimeSettings`` names, SecureStrings under a
KMS key, the way the stacks do.

Every test gets a tier marker, the heaviest of those its markers name and its fixtures need, so a
new test is tiered without anyone marking it: ``infra`` when it synthesizes (a fixture in
SYNTH_FIXTURES or one returning a ``Synth``), ``integration`` when it needs a server
(SERVER_FIXTURES), ``unit`` otherwise (what ``make unit`` runs). A test that synthesizes or starts a
server by itself says so with ``@pytest.mark.infra`` or ``@pytest.mark.integration``; ``e2e`` is
always marked by hand.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sandbox import servers
from sandbox.servers import Server, free_port
from snowsage.settings import ALL_SECRET_KEYS, PLACEHOLDER, SECRET_KEYS_BY_AUTH, SETTING_KEYS, RuntimeSettings

REPO_ROOT = Path(__file__).resolve().parents[1]
REGION = "us-east-1"
STARTUP_TIMEOUT = 30.0
ServerProcess = Server  # the name the tier conftests import
pytest_plugins = ["pytester"]  # tests/test_tiers.py runs the tier hook on a sample

TIERS = ("unit", "integration", "infra", "e2e")  # lightest first
SERVER_FIXTURES = frozenset({"moto_server", "fakesnow_server"})
SYNTH_FIXTURES = frozenset({"nat", "privatelink", "any_synth"})


def _returns_synth(fixturedef: Any) -> bool:
    returns = getattr(fixturedef.func, "__annotations__", {}).get("return")
    return getattr(returns, "__name__", returns) == "Synth"


def tier_of(item: pytest.Item) -> str:
    """The heaviest of the tiers its markers name and its fixtures need."""
    names = set(getattr(item, "fixturenames", ()))
    info = getattr(item, "_fixtureinfo", None)
    fixturedefs = [d for chain in info.name2fixturedefs.values() for d in chain] if info else []
    found = {t for t in TIERS if item.get_closest_marker(t)}
    if names & SYNTH_FIXTURES or any(_returns_synth(d) for d in fixturedefs):
        found.add("infra")
    if names & SERVER_FIXTURES:
        found.add("integration")
    return max(found, key=TIERS.index, default="unit")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        tier = tier_of(item)
        if not item.get_closest_marker(tier):
            item.add_marker(getattr(pytest.mark, tier))


def _serve(
    tmp_path_factory: pytest.TempPathFactory, name: str, args: Callable[[int], list[str]], ready_path: str
) -> Iterator[Server]:
    port = free_port()
    log = tmp_path_factory.mktemp(name) / f"{name}.log"
    server = servers.start(
        name, args(port), port=port, log=log, ready_path=ready_path, timeout=STARTUP_TIMEOUT
    )
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The sandbox's moto (sandbox.moto_server, without the custom-resource spool) on a free
    loopback port; ``.url`` is the AWS endpoint."""
    yield from _serve(tmp_path_factory, "moto", servers.moto_args, "/moto-api/")


@pytest.fixture(scope="session")
def moto_endpoint(moto_server: Server) -> str:
    return moto_server.url


@pytest.fixture(scope="session")
def fakesnow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """fakesnow's HTTP server (see sandbox/fakesnow_server.py); connect with host 127.0.0.1,
    ``.port`` and protocol http, any account and credentials."""
    yield from _serve(tmp_path_factory, "fakesnow", servers.fakesnow_args, "/")


@dataclass(frozen=True)
class Housing:
    connection: Any  # open while the fixture that yielded it lives
    database: str
    table: str  # db.schema.table
    rows: int


@contextlib.contextmanager
def housing_database(fakesnow: Server, prefix: str, user: str, rows: int) -> Iterator[Housing]:
    """``rows`` deterministic housing rows (sandbox/sample_data.py) in ``<prefix>_<fresh>.PUBLIC.HOUSING``
    on fakesnow, with the connection that loaded them (closed on exit)."""
    import snowflake.connector

    from sandbox.sample_data import housing_frame, load_housing

    database = f"{prefix}_{uuid.uuid4().hex[:8].upper()}"
    conn = snowflake.connector.connect(
        account="sandbox",
        user=user,
        password="any",
        host="127.0.0.1",
        port=fakesnow.port,
        protocol="http",
        network_timeout=60,
    )
    try:
        conn.cursor().execute(" ".join(["create database", database]))
        conn.cursor().execute(" ".join(["create schema", database + ".PUBLIC"]))
        table = database + ".PUBLIC.HOUSING"
        yield Housing(conn, database, table, load_housing(conn, table, housing_frame(rows)))
    finally:
        conn.close()


AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
}


@pytest.fixture(scope="session")
def aws_environment(moto_server: Server) -> Iterator[dict[str, str]]:
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


def sandbox_values(fakesnow: Server, **values: str | None) -> dict[str, str | None]:
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
