"""The `snowsage` kernel's env on the EBS volume: built once, registered at every start in the
foreground, rebuilt only for another deployment or a broken env; conda_python3 is never written."""

from __future__ import annotations

import json

import pytest

from .conftest import BUCKET, PINS, build_wheelhouse, kernel_requirements, root_access, tree_digest
from .test_on_start import (
    cron_jobs,
    kernel_env_dir,
    kernel_python,
    run_on_start,
    start_values,
)


def upload(s3, tmp_path, name: str, wheels, requirements: str = PINS, **kw) -> str:
    zip_path = build_wheelhouse(wheels, tmp_path / name, requirements=requirements, **kw)
    s3.upload_file(str(zip_path), BUCKET, f"assets/{name}")
    return f"s3://{BUCKET}/assets/{name}"


def new_start(box) -> None:
    """What a stop and start does to the instance: the root volume (ec2-user's kernelspecs and
    /opt/snowsage) starts empty; the EBS volume (the home, the env) is kept."""
    import shutil

    shutil.rmtree(box.kernel_json.parent.parent, ignore_errors=True)
    shutil.rmtree(box.opt, ignore_errors=True)


def wait_for_background(box, timeout: float = 180.0) -> dict:
    """The status once this start's background job is over: it logged its outcome (install.log is
    new at each start, see new_start) and let go of its lock."""
    import re
    import subprocess
    import time

    lock, log, deadline = box.opt / "install.lock", box.opt / "install.log", time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = log.exists() and re.search(r"snowsage on-start: install (ok|failed):", log.read_text())
        if done and subprocess.run(["flock", "-n", str(lock), "true"]).returncode == 0:
            return json.loads(box.status_file.read_text())
        time.sleep(0.2)
    pytest.fail(f"the background job did not finish within {timeout}s")


def dateutil_init(env) -> object:
    return next(env.glob("lib/python*/site-packages/dateutil/__init__.py"))


def built(box, uri: str) -> dict:
    result, _ = run_on_start(box, start_values(uri))
    assert result.returncode == 0, result.stderr
    status = wait_for_background(box)
    assert status["state"] == "ok", status
    return status


def test_a_second_start_of_the_same_deployment_rebuilds_nothing_and_is_ready_in_the_foreground(
    sandbox, wheelhouse_uri
):
    built(sandbox, wheelhouse_uri)
    env, conda = kernel_env_dir(sandbox), tree_digest(sandbox.env_dir)
    before = dateutil_init(env).stat().st_mtime_ns
    new_start(sandbox)

    result, seconds = run_on_start(sandbox, start_values(wheelhouse_uri))
    assert result.returncode == 0, result.stderr
    # Before the background job has done anything: the kernel is registered and ready.
    status = json.loads(sandbox.status_file.read_text())
    assert status["state"] == "ok" and status["source"] == "unchanged", status
    assert status["versions"] == {"six": "1.17.0", "python-dateutil": "2.9.0.post0"}
    assert json.loads(sandbox.kernel_json.read_text())["argv"][0] == str(env / "bin" / "python")
    assert seconds < 3, f"the restart's foreground took {seconds:.1f}s"
    assert kernel_python(sandbox, "import dateutil, six").returncode == 0

    status = wait_for_background(sandbox)
    assert status["state"] == "ok" and "unchanged" in status["detail"], status
    assert dateutil_init(env).stat().st_mtime_ns == before, "the second start reinstalled the packages"
    assert [p.name for p in (sandbox.home / ".snowsage" / "envs").iterdir()] == [env.name]
    assert len(cron_jobs(sandbox)) == 2  # replaced, not duplicated
    assert tree_digest(sandbox.env_dir) == conda
    assert root_access(sandbox) == []


def test_a_changed_pin_builds_a_new_env_and_switches_the_kernel_to_it(sandbox, s3, wheels, old_six, tmp_path):
    first = upload(s3, tmp_path, "first.zip", wheels)
    built(sandbox, first)
    old_env, conda = kernel_env_dir(sandbox), tree_digest(sandbox.env_dir)
    new_start(sandbox)

    second = upload(s3, tmp_path, "second.zip", [wheels, old_six], requirements="six==1.16.0\n")
    result, _ = run_on_start(sandbox, start_values(second))
    assert result.returncode == 0, result.stderr
    # Until the new env is complete the kernel stays on the one that works.
    assert json.loads(sandbox.kernel_json.read_text())["argv"][0] == str(old_env / "bin" / "python")
    status = wait_for_background(sandbox)

    assert status["state"] == "ok" and status["source"] == "wheelhouse", status
    new_env = kernel_env_dir(sandbox)
    assert new_env != old_env
    assert json.loads(sandbox.kernel_json.read_text())["argv"][0] == str(new_env / "bin" / "python")
    assert kernel_python(sandbox, "import six; print(six.__version__)").stdout.strip() == "1.16.0"
    assert status["versions"]["six"] == "1.16.0"
    # The replaced env goes at the next start (a kernel of this start may still run in it).
    assert old_env.exists()
    new_start(sandbox)
    built(sandbox, second)
    assert not old_env.exists() and new_env.exists()
    assert tree_digest(sandbox.env_dir) == conda
    assert root_access(sandbox) == []


def test_a_changed_wheel_with_the_same_pins_rebuilds(sandbox, s3, wheels, old_six, tmp_path):
    built(sandbox, upload(s3, tmp_path, "first.zip", wheels))
    old_env = kernel_env_dir(sandbox)
    new_start(sandbox)

    built(sandbox, upload(s3, tmp_path, "more-wheels.zip", [wheels, old_six]))
    assert kernel_env_dir(sandbox) != old_env


def test_a_new_wheelhouse_with_only_other_helpers_or_notebooks_keeps_the_env(sandbox, s3, wheels, tmp_path):
    first = upload(s3, tmp_path, "first.zip", wheels)
    built(sandbox, first)
    env = kernel_env_dir(sandbox)
    manifest = json.loads((env / "snowsage-kernel.json").read_text())
    new_start(sandbox)

    other = upload(
        s3, tmp_path, "other-notebook.zip", wheels, notebook='{"cells": [], "nbformat": 4, "x": 1}'
    )
    status = built(sandbox, other)
    assert status["source"] == "unchanged" and kernel_env_dir(sandbox) == env, status
    recorded = json.loads((env / "snowsage-kernel.json").read_text())
    assert recorded == {**manifest, "wheelhouse": other, "wheelhouse_sha256": recorded["wheelhouse_sha256"]}
    assert recorded["wheelhouse_sha256"] != manifest["wheelhouse_sha256"]
    # The env now records the new wheelhouse, so the next start is ready in the foreground.
    new_start(sandbox)
    run_on_start(sandbox, start_values(other))
    assert json.loads(sandbox.status_file.read_text())["state"] == "ok"
    wait_for_background(sandbox)


@pytest.mark.parametrize("damage", ["missing module", "no manifest", "broken python"])
def test_a_corrupt_or_half_built_env_is_detected_and_rebuilt(sandbox, wheelhouse_uri, damage):
    built(sandbox, wheelhouse_uri)
    env, conda = kernel_env_dir(sandbox), tree_digest(sandbox.env_dir)
    if damage == "missing module":
        next(env.glob("lib/python*/site-packages/six.py")).unlink()
    elif damage == "no manifest":  # what a build cut off by a stop leaves
        (env / "snowsage-kernel.json").unlink()
    else:
        (env / "bin" / "python").unlink()
        (env / "bin" / "python").symlink_to("/nonexistent/python3")
    new_start(sandbox)

    result, _ = run_on_start(sandbox, start_values(wheelhouse_uri))
    assert result.returncode == 0, result.stderr
    # Not "ready" from a damaged env: the foreground leaves it to the background.
    if damage != "missing module":  # that damage only an import can see
        assert json.loads(sandbox.status_file.read_text())["state"] == "running"
    status = wait_for_background(sandbox)

    assert status["state"] == "ok" and status["source"] == "wheelhouse", status
    assert kernel_python(sandbox, "import dateutil, six").returncode == 0
    assert "half-built or broken; building it again" in (sandbox.opt / "install.log").read_text()
    assert tree_digest(sandbox.env_dir) == conda
    assert root_access(sandbox) == []


def test_a_failed_rebuild_leaves_the_previous_kernel_working(sandbox, s3, wheels, tmp_path):
    built(sandbox, upload(s3, tmp_path, "first.zip", wheels))
    env = kernel_env_dir(sandbox)
    new_start(sandbox)

    broken = upload(s3, tmp_path, "unsatisfiable.zip", wheels, requirements="six==1.16.0\n")
    result, _ = run_on_start(sandbox, start_values(broken))
    assert result.returncode == 0
    status = wait_for_background(sandbox)

    assert status["state"] == "failed" and "no package index" in status["detail"], status
    assert kernel_env_dir(sandbox) == env
    assert json.loads(sandbox.kernel_json.read_text())["argv"][0] == str(env / "bin" / "python")
    assert kernel_python(sandbox, "import dateutil, six").returncode == 0


def test_the_registered_kernel_runs_code_in_the_env(
    sandbox, s3, kernel_wheels, wheels, tmp_path, monkeypatch
):
    """With the real pins' ipykernel closure: the env is linked and the kernel registered before
    the rest is in, and Jupyter starts the kernel from kernel.json."""
    from jupyter_client.manager import start_new_kernel

    uri = upload(s3, tmp_path, "kernel.zip", kernel_wheels, requirements=kernel_requirements())
    sandbox.env["SNOWSAGE_VERIFY_IMPORTS"] = "dateutil six ipykernel"
    built(sandbox, uri)
    assert (
        "the snowsage kernel is registered; its packages follow" in (sandbox.opt / "install.log").read_text()
    )
    assert root_access(sandbox) == []

    monkeypatch.setenv("JUPYTER_PATH", str(sandbox.kernel_json.parent.parent.parent))
    km, kc = start_new_kernel(kernel_name="snowsage", startup_timeout=60)
    outputs: list[str] = []
    try:
        reply = kc.execute_interactive(
            "import sys, dateutil; print(sys.prefix, dateutil.__version__)",
            timeout=60,
            output_hook=lambda msg: outputs.append(msg["content"].get("text", "")),
        )
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    assert reply["content"]["status"] == "ok", reply["content"]
    assert "".join(outputs).split() == [str(kernel_env_dir(sandbox)), "2.9.0.post0"]


def test_the_status_file_parses_with_the_shared_model(sandbox, wheelhouse_uri):
    reports = pytest.importorskip("snowsage.reports")  # the typed contract, once that module exists
    status = built(sandbox, wheelhouse_uri)
    parsed = reports.InstallStatus.from_dict(status)
    assert parsed.state == "ok"
    for state in ("running", "failed"):
        doc = {**status, "state": state, "detail": "x"}
        assert reports.InstallStatus.from_dict(doc).state == state
