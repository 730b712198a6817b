"""Every error a notebook user can hit: one message naming the problem and the fix, no secret."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, ClassVar

import boto3
import pandas as pd
import pytest
from botocore.exceptions import ClientError

import snowsage.notebook as nb
from snowsage.settings import NOTEBOOK_SETTINGS_PATH
from tests.notebook.conftest import Deploy


def test_settings_path_argument_wins_over_env_var_over_instance_default(tmp_path, monkeypatch) -> None:
    assert nb.settings_path() == NOTEBOOK_SETTINGS_PATH
    monkeypatch.setenv(nb.SETTINGS_FILE_ENV_VAR, str(tmp_path / "env.json"))
    assert nb.settings_path() == tmp_path / "env.json"
    assert nb.settings_path(tmp_path / "arg.json") == tmp_path / "arg.json"


def test_missing_settings_file_says_what_writes_it_and_to_restart(tmp_path, monkeypatch) -> None:
    missing = tmp_path / ".snowsage" / "settings.json"
    monkeypatch.setenv(nb.SETTINGS_FILE_ENV_VAR, str(missing))
    with pytest.raises(nb.SettingsNotFound) as err:
        nb.query("select 1")
    message = str(err.value)
    assert str(missing) in message
    assert "lifecycle script writes it" in message
    assert "restart the notebook instance" in message


def test_malformed_settings_file_is_reported_as_such(tmp_path) -> None:
    bad = tmp_path / "settings.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(nb.SettingsNotFound, match=r"settings.json is not valid JSON"):
        nb.connect(bad)


def test_install_still_running_says_wait_and_rerun(deploy: Deploy) -> None:
    dep = deploy()
    dep.set_install_status("running", "installing snowsage and 29 pinned requirements from the wheelhouse")
    with pytest.raises(nb.InstallNotFinished) as err:
        nb.connect(dep.settings_file)
    message = str(err.value)
    assert (
        "still installing the Snowflake connector (started 2025-01-01T10:00:00Z: installing snowsage"
        in message
    )
    assert "wait a minute and re-run this cell" in message
    assert nb.INSTALL_LOG in message
    with pytest.raises(nb.InstallNotFinished):  # S3 helpers refuse too: pip may be replacing pyarrow
        nb.read_s3("anything")


def test_failed_install_with_missing_connector_gives_the_reason_and_the_log(
    deploy: Deploy, monkeypatch: pytest.MonkeyPatch
) -> None:
    dep = deploy()
    reason = "pip could not install from the wheelhouse, and privatelink mode has no package index"
    dep.set_install_status("failed", reason)
    monkeypatch.setitem(sys.modules, "snowflake.connector", None)  # import now fails
    with pytest.raises(nb.InstallFailed) as err:
        nb.connect(dep.settings_file)
    message = str(err.value)
    assert reason in message
    assert nb.INSTALL_LOG in message
    assert "stop and start the notebook instance" in message


def test_missing_connector_without_an_install_problem_points_at_the_kernel(
    deploy: Deploy, monkeypatch: pytest.MonkeyPatch
) -> None:
    dep = deploy()
    monkeypatch.setitem(sys.modules, "snowflake.connector", None)
    wrong_kernel = (
        r"cannot import snowflake.connector: run this notebook in the 'Python 3 \(Snowflake\)' kernel"
    )
    with pytest.raises(nb.InstallFailed, match=wrong_kernel):
        nb.connect(dep.settings_file)


def test_a_failed_install_does_not_block_when_the_packages_import(deploy: Deploy) -> None:
    dep = deploy(credentials=False)
    dep.set_install_status("failed", "the python3 env runs Python 3.11")
    # Gets past the install check to the next real problem.
    with pytest.raises(nb.CredentialsNotReady):
        nb.connect(dep.settings_file)


def test_a_newer_lifecycles_extra_status_keys_still_say_running(deploy: Deploy) -> None:
    dep = deploy()
    doc = {"state": "running", "detail": "installing the kernel", "kernel": {"name": "snowsage"}}
    dep.status_file.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(nb.InstallNotFinished, match=r"\(installing the kernel\): wait a minute"):
        nb.connect(dep.settings_file)


@pytest.mark.parametrize("doc", [["running"], {"state": 1}, {"detail": "no state"}], ids=str)
def test_an_install_status_that_is_not_one_does_not_block(deploy: Deploy, doc: Any) -> None:
    dep = deploy(credentials=False)
    dep.status_file.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(nb.CredentialsNotReady):
        nb.connect(dep.settings_file)


def test_placeholder_key_names_the_keypair_command(deploy: Deploy) -> None:
    dep = deploy(credentials=False)
    with pytest.raises(nb.CredentialsNotReady) as err:
        nb.connect(dep.settings_file)
    message = str(err.value)
    assert "not set yet" in message
    assert "`snowsage keypair generate`" in message
    assert f"--env {dep.env_name}" in message
    assert f"/snowsage/{dep.env_name}/snowflake/private_key" in message


def test_placeholder_password_names_the_credentials_command(deploy: Deploy) -> None:
    dep = deploy("password", credentials=False)
    with pytest.raises(nb.CredentialsNotReady, match=r"`snowsage credentials set`"):
        nb.connect(dep.settings_file)


def test_missing_parameter_says_redeploy(deploy: Deploy) -> None:
    dep = deploy(warehouse=None)
    with pytest.raises(
        nb.ConfigurationError, match=r"snowflake/warehouse does not exist in us-east-1; redeploy"
    ):
        nb.connect(dep.settings_file)


def test_settings_for_another_region_say_where_parameters_were_looked_for(deploy: Deploy) -> None:
    dep = deploy()
    settings = json.loads(dep.settings_file.read_text())
    settings["region"] = "eu-north-1"  # nothing deployed there
    dep.settings_file.write_text(json.dumps(settings))
    with pytest.raises(nb.ConfigurationError, match="do not exist in eu-north-1; redeploy the stacks"):
        nb.connect(dep.settings_file)


def test_unreachable_ssm_names_the_permissions_and_route(
    deploy: Deploy, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.conftest import free_port

    dep = deploy()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with pytest.raises(nb.ConfigurationError) as err:
        nb.connect(dep.settings_file)
    message = str(err.value)
    assert (
        f"reading the Snowflake parameters for env '{dep.env_name}' from SSM in us-east-1 failed" in message
    )
    assert "EndpointConnectionError" in message
    assert "ssm:GetParameters" in message and "a route to SSM" in message


def test_no_results_bucket_in_settings(deploy: Deploy) -> None:
    dep = deploy(bucket=False)
    nb.connect(dep.settings_file)
    with pytest.raises(nb.ResultsError, match="names no results bucket; redeploy the stacks"):
        nb.to_s3(pd.DataFrame({"a": [1]}), "x")


def test_reading_a_result_that_was_never_written(deploy: Deploy) -> None:
    dep = deploy()
    nb.connect(dep.settings_file)
    with pytest.raises(nb.ResultsError) as err:
        nb.read_s3("never/written")
    assert str(err.value) == (
        f"there is no result 'never/written' (s3://{dep.bucket}/results/never/written.parquet); "
        "write it first with to_s3(df, 'never/written')"
    )


def test_error_messages_never_carry_the_private_key(deploy: Deploy, private_key_pem: str) -> None:
    dep = deploy(warehouse=None)  # the key is stored and read, then the missing warehouse fails
    with pytest.raises(nb.ConfigurationError) as err:
        nb.connect(dep.settings_file)
    body = [line for line in private_key_pem.splitlines() if line and not line.startswith("-----")]
    text = repr(err.value) + str(err.value)
    assert "PRIVATE KEY" not in text
    assert not [line for line in body if line in text]


class _Conn:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.closed = False

    def is_closed(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True


def test_connection_is_reused_and_reopened_when_closed(tmp_path, monkeypatch) -> None:
    opened: list[_Conn] = []

    def fake_open(path: Path) -> _Conn:
        opened.append(_Conn(path))
        return opened[-1]

    monkeypatch.setattr(nb, "_open", fake_open)
    first = nb.connect(tmp_path / "a.json")
    assert nb.connect(tmp_path / "a.json") is first
    first.closed = True  # e.g. conn.close() in a cell
    second = nb.connect(tmp_path / "a.json")
    assert second is not first and len(opened) == 2
    third = nb.connect(tmp_path / "b.json")  # other settings: new connection, the old one closed
    assert third.path == tmp_path / "b.json" and second.closed
    monkeypatch.setattr(nb.os, "getpid", lambda: -1)  # a forked worker opens its own
    assert nb.connect(tmp_path / "b.json") is not third and not third.closed


def test_rejected_sign_in_is_explained_without_the_key(
    deploy: Deploy, monkeypatch: pytest.MonkeyPatch, private_key_pem: str
) -> None:
    import snowflake.connector
    from snowflake.connector.errors import DatabaseError

    def refuse(**kwargs: object) -> None:
        assert isinstance(kwargs["private_key"], bytes)  # the key went to the connector, and only there
        raise DatabaseError(msg="JWT token is invalid. [a1b2c3d4-0000-1111-2222-333344445555]", errno=390144)

    monkeypatch.setattr(snowflake.connector, "connect", refuse)
    dep = deploy()
    with pytest.raises(nb.ConnectFailed) as err:
        nb.connect(dep.settings_file)
    message = str(err.value)
    assert "rejected the key-pair login for user NOTEBOOK_USER" in message
    assert "`snowsage keypair generate`" in message
    assert not [line for line in private_key_pem.splitlines()[1:-1] if line in message]


def _ssm_answers(monkeypatch: pytest.MonkeyPatch, code: str, message: str) -> None:
    """Every GetParameters the helper makes gets this AWS error (as after botocore's own retries)."""
    import boto3

    real = boto3.client

    class _Http:
        status_code = 400
        headers: ClassVar[dict[str, str]] = {}

    def client(service: str, *args: object, **kwargs: object) -> object:
        made = real(service, *args, **kwargs)
        made.meta.events.register(
            "before-call.ssm.GetParameters",
            lambda **_: (_Http(), {"Error": {"Code": code, "Message": message}}),
        )
        return made

    monkeypatch.setattr(boto3, "client", client)


def test_ssm_throttling_says_retry_later_and_connect_fewer_at_once(
    deploy: Deploy, monkeypatch: pytest.MonkeyPatch
) -> None:
    dep = deploy()
    _ssm_answers(monkeypatch, "ThrottlingException", "Rate exceeded")
    with pytest.raises(nb.ConfigurationError) as err:
        nb.connect(dep.settings_file)
    message = str(err.value)
    assert "ThrottlingException: Rate exceeded" in message
    assert "wait a minute and re-run this cell" in message and "start fewer at once" in message
    assert "redeploy" not in message and "ssm:GetParameters" not in message


def test_expired_aws_token_says_refresh_or_restart_the_kernel(
    deploy: Deploy, monkeypatch: pytest.MonkeyPatch
) -> None:
    dep = deploy()
    _ssm_answers(
        monkeypatch, "ExpiredTokenException", "The security token included in the request is expired"
    )
    with pytest.raises(nb.ConfigurationError) as err:
        nb.connect(dep.settings_file)
    message = str(err.value)
    assert "ExpiredTokenException" in message and "rejected this kernel's credentials" in message
    assert "refresh them" in message and "restart the kernel" in message
    assert "redeploy" not in message


def _point_settings_at_bucket(dep, bucket: str) -> None:
    settings = json.loads(dep.settings_file.read_text())
    settings["bucket"] = bucket
    dep.settings_file.write_text(json.dumps(settings))


@pytest.mark.parametrize("action", ["read", "write"])
def test_missing_results_bucket_names_it_and_the_setting_to_fix(deploy: Deploy, action: str) -> None:
    dep = deploy()
    nb.connect(dep.settings_file)
    gone = f"snowsage-{dep.env_name}-no-such-bucket"
    _point_settings_at_bucket(dep, gone)
    with pytest.raises(nb.ResultsError) as err:
        if action == "read":
            nb.read_s3("quickstart/sample")
        else:
            nb.to_s3(pd.DataFrame({"a": [1]}), "quickstart/sample")
    message = str(err.value)
    assert f"the results bucket {gone} does not exist in us-east-1" in message
    assert f"SnowSage-{dep.env_name}-Data stack's ResultsBucketName output" in message
    assert str(dep.settings_file) in message and "restart the notebook instance" in message
    assert "there is no result" not in message


def test_a_denied_read_of_a_missing_result_says_there_is_none(
    deploy: Deploy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The role may list only results/ and backups/<notebook>/, so real S3 answers GetObject on a
    missing key with 403, not 404: that must still read as "no such result", not "denied"."""
    dep = deploy()
    nb.connect(dep.settings_file)
    real_client = boto3.client

    def client(service: str, *args: Any, **kwargs: Any) -> Any:
        made = real_client(service, *args, **kwargs)
        if service == "s3":

            def denied(*_a: Any, **_k: Any) -> None:
                raise ClientError({"Error": {"Code": "403", "Message": "Forbidden"}}, "HeadObject")

            made.download_fileobj = denied
        return made

    monkeypatch.setattr(boto3, "client", client)
    with pytest.raises(nb.ResultsError) as err:
        nb.read_s3("never/written")
    assert str(err.value).startswith("there is no result 'never/written'")

    nb.to_s3(pd.DataFrame({"a": [1]}), "written/once")
    with pytest.raises(nb.ResultsError) as err:
        nb.read_s3("written/once")
    assert "was denied" in str(err.value) and "there is no result" not in str(err.value)
