"""Errors a user can hit: one line on stderr naming the cause and the fix, exit 1, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _one_line_error(r) -> str:
    assert r.exit_code == 1, (r.stdout, r.stderr)
    assert "Traceback" not in r.everything
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), r.stderr
    return lines[0]


def test_stacks_not_deployed_in_that_region(deploy, run) -> None:
    d = deploy()
    err = _one_line_error(run("--env", d.env, "--region", "eu-west-1", "check"))
    assert f"SnowSage-{d.env}-Notebook" in err and "eu-west-1" in err and "--region" in err


def test_unknown_env(aws_env, run) -> None:
    err = _one_line_error(run("--env", "nosuch", "credentials", "status"))
    assert "SnowSage-nosuch-Notebook is not deployed in us-east-1" in err


def test_no_aws_credentials(deploy, run, monkeypatch) -> None:
    d = deploy()
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    err = _one_line_error(run("--env", d.env, "snowflake-setup"))
    assert "no AWS credentials" in err and "--profile" in err


def test_unknown_profile(aws_env, run) -> None:
    err = _one_line_error(run("--profile", "ghost", "check"))
    assert "'ghost'" in err


@pytest.mark.parametrize(
    ("operation", "args", "action"),
    [
        ("cloudformation.DescribeStacks", ["check"], "cloudformation:DescribeStacks"),
        ("ssm.PutParameter", ["keypair", "generate"], "ssm:PutParameter"),
        ("lambda.Invoke", ["check"], "lambda:InvokeFunction"),
        ("sagemaker.StopNotebookInstance", ["notebook", "stop"], "sagemaker:StopNotebookInstance"),
    ],
)
def test_access_denied_names_the_action(deploy, run, aws_hooks, operation, args, action) -> None:
    d = deploy()
    aws_hooks.deny(operation)
    err = _one_line_error(run("--env", d.env, *args))
    assert f"access denied for {action}" in err


def test_access_denied_on_put_writes_nothing_and_shows_no_key(deploy, run, aws_hooks) -> None:
    d = deploy()
    aws_hooks.deny("ssm.PutParameter")
    r = run("--env", d.env, "keypair", "generate", "--passphrase-stdin", input="deny-me-pass\n")
    _one_line_error(r)
    assert "kms:Encrypt" in r.stderr
    assert "deny-me-pass" not in r.everything and "PRIVATE KEY" not in r.everything


def test_missing_parameter_is_named(deploy, run) -> None:
    d = deploy()
    d.client("ssm").delete_parameter(Name=d.parameters["private_key"])
    err = _one_line_error(run("--env", d.env, "keypair", "generate"))
    assert d.parameters["private_key"] in err and f"SnowSage-{d.env}-Data" in err


def test_missing_output_is_named(deploy, run) -> None:
    d = deploy()
    d.client("cloudformation").delete_stack(StackName=f"SnowSage-{d.env}-Data")
    err = _one_line_error(run("--env", d.env, "keypair", "generate"))
    assert f"SnowSage-{d.env}-Data" in err


def _python_m_snowsage(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "snowsage", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        cwd=REPO,
        timeout=60,
        check=False,
    )


def test_python_dash_m_runs_the_cli(deploy) -> None:
    d = deploy()
    ok = _python_m_snowsage("--env", d.env, "credentials", "status")
    assert ok.returncode == 1 and "placeholder" in ok.stdout  # key not set yet
    bad = _python_m_snowsage("--env", d.env, "--region", "eu-west-1", "check")
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines() == [
        f"Error: stack SnowSage-{d.env}-Notebook is not deployed in eu-west-1; deploy it (make deploy) or "
        "pass the --env/--region it was deployed with"
    ]


def test_help_everywhere(run) -> None:
    for args in (
        ["--help"],
        ["keypair", "--help"],
        ["keypair", "rotate", "--help"],
        ["credentials", "set", "--help"],
        ["notebook", "url", "--help"],
        ["network-policy", "--help"],
        ["check", "--help"],
    ):
        r = run(*args)
        assert r.exit_code == 0 and "Usage: snowsage" in r.stdout


def test_no_secret_ever_travels_as_an_argument(run) -> None:
    for args in (["credentials", "set"], ["keypair", "generate"], ["keypair", "rotate"]):
        text = run(*args, "--help").stdout
        assert "--password " not in text and "--passphrase " not in text and "--private-key " not in text
