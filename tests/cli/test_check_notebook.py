"""check invokes the check function (answered in-process: moto cannot run Lambda without Docker) and
renders its report; notebook commands run against moto, the presigned URL is answered in-process."""

from __future__ import annotations

import json

OK_REPORT = {
    "ok": True,
    "status": "ok",
    "steps": [
        {"name": "settings", "ok": True, "ms": 3.2, "detail": "auth=keypair"},
        {"name": "credentials", "ok": True, "ms": 41, "detail": "key SHA256:abc"},
        {"name": "connect", "ok": True, "ms": 812.6, "detail": "xy12345"},
        {"name": "query", "ok": None, "ms": None, "detail": "skipped"},
    ],
    "snowflake": {"version": "9.1.0"},
    "diagnosis": None,
}
FAILED_REPORT = {
    "ok": False,
    "status": "failed",
    "steps": [
        {"name": "settings", "ok": True, "ms": 2, "detail": ""},
        {"name": "connect", "ok": False, "ms": 1500, "detail": "JWT token is invalid"},
    ],
    "snowflake": {},
    "diagnosis": "Snowflake rejected the key: run the ALTER USER printed by `snowsage keypair generate`",
}


def test_check_ok_prints_each_step_and_exits_0(deploy, run, aws_hooks) -> None:
    d = deploy()
    aws_hooks.invoke_returns(OK_REPORT)
    r = run("--env", d.env, "check")
    assert r.exit_code == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["STEP", "RESULT", "MS", "DETAIL"]
    assert lines[1].split() == ["settings", "ok", "3", "auth=keypair"]
    assert lines[3].split()[:3] == ["connect", "ok", "813"]
    assert lines[4].split() == ["query", "skip", "skipped"]
    assert "status: ok" in r.stdout
    ((op, params),) = aws_hooks.calls
    assert op == "lambda.Invoke" and d.check_function in params["url_path"] and params["body"] == b"{}"


def test_check_failure_shows_fail_and_diagnosis_and_exits_1(deploy, run, aws_hooks) -> None:
    d = deploy()
    aws_hooks.invoke_returns(FAILED_REPORT)
    r = run("--env", d.env, "check")
    assert r.exit_code == 1
    assert any(line.split()[:3] == ["connect", "FAIL", "1500"] for line in r.stdout.splitlines())
    assert "diagnosis: Snowflake rejected the key" in r.stdout
    assert "status: failed" in r.stdout


def test_check_not_configured_exits_1(deploy, run, aws_hooks) -> None:
    d = deploy()
    aws_hooks.invoke_returns({"ok": False, "status": "not_configured", "steps": [], "diagnosis": "set creds"})
    r = run("--env", d.env, "--json", "check")
    assert r.exit_code == 1
    assert json.loads(r.stdout)["status"] == "not_configured"


def test_check_crash_is_one_line_with_the_log_group(deploy, run, aws_hooks) -> None:
    d = deploy()
    aws_hooks.invoke_returns({"errorType": "ImportError", "errorMessage": "no module snowflake"}, "Unhandled")
    r = run("--env", d.env, "check")
    assert r.exit_code == 1
    assert "ImportError" in r.stderr and f"/aws/lambda/{d.check_function}" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_check_rejects_a_payload_that_is_not_a_report(deploy, run, aws_hooks) -> None:
    d = deploy()
    aws_hooks.invoke_returns(["not", "a", "report"])
    r = run("--env", d.env, "check")
    assert r.exit_code == 1 and "not a check report" in r.stderr


def test_check_function_missing(deploy, run) -> None:
    d = deploy()  # moto has no such function deployed
    r = run("--env", d.env, "check")
    assert r.exit_code == 1
    assert f"check function {d.check_function}" in r.stderr and "does not exist" in r.stderr


def test_notebook_status_stop_start(deploy, run) -> None:
    d = deploy()
    r = run("--env", d.env, "notebook", "status")
    assert r.exit_code == 0 and f"notebook: {d.notebook}" in r.stdout and "status: InService" in r.stdout
    r = run("--env", d.env, "notebook", "stop")
    assert r.exit_code == 0, r.stderr
    assert d.notebook_status() in ("Stopping", "Stopped")
    r = run("--env", d.env, "notebook", "stop")
    assert r.exit_code == 0 and "already" in r.stdout
    r = run("--env", d.env, "notebook", "start")
    assert r.exit_code == 0, r.stderr
    assert d.notebook_status() in ("Pending", "InService")
    r = run("--env", d.env, "--json", "notebook", "status")
    assert json.loads(r.stdout)["status"] == d.notebook_status()


def test_notebook_url_is_presigned_for_the_stack_notebook(deploy, run, aws_hooks) -> None:
    d = deploy()
    url = f"https://{d.notebook}.notebook.us-east-1.sagemaker.aws?authToken=abc"
    aws_hooks.respond("sagemaker.CreatePresignedNotebookInstanceUrl", {"AuthorizedUrl": url})
    r = run("--env", d.env, "notebook", "url")
    assert r.exit_code == 0, r.stderr
    assert r.stdout.strip() == url
    ((_op, params),) = aws_hooks.calls
    assert json.loads(params["body"]) == {
        "NotebookInstanceName": d.notebook,
        "SessionExpirationDurationInSeconds": 43200,
    }


def test_notebook_url_opens_a_browser(deploy, run, aws_hooks, monkeypatch) -> None:
    d = deploy()
    aws_hooks.respond("sagemaker.CreatePresignedNotebookInstanceUrl", {"AuthorizedUrl": "https://x.example/"})
    opened = []
    monkeypatch.setattr("webbrowser.open", lambda u: opened.append(u) or True)
    assert run("--env", d.env, "notebook", "url", "--open").exit_code == 0
    assert opened == ["https://x.example/"]


def test_notebook_url_for_a_stopped_notebook_says_start_it(deploy, run, aws_hooks) -> None:
    d = deploy()
    d.client("sagemaker").stop_notebook_instance(NotebookInstanceName=d.notebook)
    aws_hooks.respond("sagemaker.CreatePresignedNotebookInstanceUrl", {"AuthorizedUrl": "https://x.example/"})
    r = run("--env", d.env, "notebook", "url")
    assert r.exit_code == 1 and "notebook start" in r.stderr
    assert aws_hooks.calls == []
