"""Notebook fixtures: a deployment in moto (parameters, results bucket, settings file) and fakesnow data.

``deploy`` writes what the stacks and the lifecycle script would leave on a notebook instance: the
SSM parameters (pointing at the fakesnow server), a results bucket and ``settings.json`` in a temp
``.snowsage`` folder. ``housing_table`` loads the deterministic housing rows into a fresh database.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import snowsage.notebook as nb
from snowsage import keys
from tests.conftest import (
    REGION,
    Housing,
    ServerProcess,
    housing_database,
    make_settings,
    put_parameters,
    sandbox_values,
)

HOUSING_ROWS = 3000
HousingTable = Housing  # the name this directory's tests use


@dataclass(frozen=True)
class Deployment:
    env_name: str
    settings_file: Path
    bucket: str | None

    @property
    def status_file(self) -> Path:
        return self.settings_file.parent / nb.INSTALL_STATUS_NAME

    def set_install_status(self, state: str, detail: str) -> None:
        doc = {"state": state, "detail": detail, "started_at": "2025-01-01T10:00:00Z"}
        self.status_file.write_text(json.dumps(doc), encoding="utf-8")


Deploy = Callable[..., Deployment]


@pytest.fixture(autouse=True)
def fresh_helper(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test starts with no cached connection and no settings-file override."""
    monkeypatch.delenv(nb.SETTINGS_FILE_ENV_VAR, raising=False)
    nb.close()
    nb._state["path"] = None  # forget the previous test's settings file
    yield
    nb.close()


@pytest.fixture(scope="session")
def private_key_pem() -> str:
    return keys.private_key_to_pem(keys.generate_private_key())


@pytest.fixture
def deploy(
    tmp_path: Path, ssm_client: Any, kms_key_id: str, fakesnow_server: ServerProcess, private_key_pem: str
) -> Deploy:
    """deploy(auth="keypair", *, credentials=True, bucket=True, **values) -> Deployment.

    ``credentials=False`` leaves the secrets at the stack's placeholder; ``values`` override the
    plain settings (e.g. database) or remove a parameter with None.
    """
    import boto3

    def _deploy(
        auth: str = "keypair", *, credentials: bool = True, bucket: bool = True, **values: str | None
    ) -> Deployment:
        env_name = f"nb{uuid.uuid4().hex[:10]}"
        secrets: dict[str, str | None] = {}
        if credentials:
            secrets = (
                {"user": "NOTEBOOK_USER", "private_key": private_key_pem}
                if auth == "keypair"
                else {"user": "NOTEBOOK_USER", "password": "sandbox-password"}
            )
        settings = make_settings(env_name, auth)
        put_parameters(
            ssm_client, settings, sandbox_values(fakesnow_server, **secrets, **values), kms_key_id=kms_key_id
        )
        bucket_name = f"snowsage-{env_name}-results" if bucket else None
        if bucket_name:
            boto3.client("s3", region_name=REGION).create_bucket(Bucket=bucket_name)
        settings = dataclasses.replace(settings, bucket=bucket_name, notebook_name=f"{env_name}-notebook")
        state_dir = tmp_path / env_name / ".snowsage"
        state_dir.mkdir(parents=True)
        settings_file = state_dir / "settings.json"
        settings_file.write_text(settings.to_json() + "\n", encoding="utf-8")
        return Deployment(env_name, settings_file, bucket_name)

    return _deploy


@pytest.fixture(scope="module")
def housing_table(fakesnow_server: ServerProcess) -> Iterator[Housing]:
    """HOUSING_ROWS deterministic rows in <fresh db>.PUBLIC.HOUSING on the fakesnow server."""
    with housing_database(fakesnow_server, "NB", "loader", HOUSING_ROWS) as housing:
        yield housing
