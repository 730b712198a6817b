"""RootAccess: Disabled holds through the lifecycle: root never runs the user's interpreter, and
everything that reads or writes ec2-user's home or conda env runs as ec2-user.

The sandbox's runuser stub marks what it runs; a .pth planted in the stand-in conda env and the
wrapped file commands record who touched what (conftest.root_access)."""

from __future__ import annotations

import subprocess
import time

from .conftest import EXAMPLE_NOTEBOOK, render, root_access
from .test_kernel_env import built, new_start
from .test_on_create import clear_backup, put_backup, run_on_create
from .test_on_start import cron_jobs, kernel_env_dir, run_on_start, start_values, wait_for_outcome


def rows(box, who: str) -> list[str]:
    text = box.access_log.read_text() if box.access_log.exists() else ""
    return [r for r in text.splitlines() if r.startswith(who + "\t")]


def test_start_runs_the_env_and_writes_the_home_only_as_the_notebook_user(sandbox, wheelhouse_uri):
    result, _ = run_on_start(sandbox, start_values(wheelhouse_uri))
    assert result.returncode == 0, result.stderr
    status = wait_for_outcome(sandbox)
    assert status["state"] == "ok" and status["detail"].endswith("with uv"), status
    (sandbox.home / "analysis.ipynb").write_text("{}")
    backup = next(j for j in cron_jobs(sandbox) if "s3 sync" in j).split(" ", 5)[5]
    run = subprocess.run(["bash", "-c", backup], env=sandbox.env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr

    assert root_access(sandbox) == []
    # The conda env's interpreter runs only with -I -S -B (its version, `-m venv`), so even as
    # ec2-user nothing of that env's site-packages runs: its planted .pth never fired.
    assert not sandbox.pth_log.exists(), sandbox.pth_log.read_text()
    # The probes saw the work, so the empty list above means something.
    touched = "\n".join(rows(sandbox, "ec2-user"))
    for name in ("settings.json", "install-status.json"):
        assert f".snowsage/{name}\n" in touched + "\n", (
            f"{name} was not written through the probes:\n{touched}"
        )
    assert f"aws\ts3 sync {sandbox.home} " in touched, "the backup did not run as ec2-user"
    assert f"{sandbox.kernel_json}\n" in touched + "\n", (
        f"kernel.json was not written as ec2-user:\n{touched}"
    )
    assert f"{sandbox.home}/.snowsage/envs/" in touched, "the kernel env was not built through the probes"


def test_root_never_runs_the_kernel_envs_python(sandbox, wheelhouse_uri):
    """The env is ec2-user's: a .pth they drop into it runs at every start of its python, so that
    python only ever runs as ec2-user (conftest.root_access reads what the .pth records)."""
    built(sandbox, wheelhouse_uri)
    env = kernel_env_dir(sandbox)
    site = next(env.glob("lib/python*/site-packages"))
    (site / "zz_planted_in_kernel_env.pth").write_text(
        (sandbox.env_dir.glob("lib/python*/site-packages/zz_planted_by_user.pth").__next__()).read_text()
    )
    for damage in (False, True):  # the unchanged path, then a rebuild
        if damage:
            (env / "snowsage-kernel.json").unlink()
        new_start(sandbox)
        built(sandbox, wheelhouse_uri)
    starts = sandbox.pth_log.read_text().splitlines()
    assert any(str(env) in s for s in starts), "the probe never saw the kernel env's python start"
    assert root_access(sandbox) == []


def test_create_restores_and_copies_the_example_only_as_the_notebook_user(sandbox, s3, wheelhouse_uri):
    put_backup(s3, {"work/analysis.ipynb": '{"mine": 1}'})
    try:
        result = run_on_create(sandbox, wheelhouse_uri)
    finally:
        clear_backup(s3)

    assert result.returncode == 0, result.stderr
    assert (sandbox.home / "work" / "analysis.ipynb").read_text() == '{"mine": 1}'
    assert (sandbox.home / EXAMPLE_NOTEBOOK).exists()
    assert root_access(sandbox) == []
    touched = "\n".join(rows(sandbox, "ec2-user"))
    assert "aws\ts3 sync s3://" in touched and f"{sandbox.home / EXAMPLE_NOTEBOOK}" in touched, touched


def test_a_slow_restore_carries_on_in_the_background_as_the_notebook_user(sandbox, s3, wheelhouse_uri):
    put_backup(s3, {"late.ipynb": "{}"})
    sandbox.env["SNOWSAGE_RESTORE_SECONDS"] = "0.05"  # the CLI alone takes longer to start
    try:
        result = run_on_create(sandbox, wheelhouse_uri)
        assert result.returncode == 0, result.stderr
        assert "continuing in the background" in result.stdout
        deadline = time.monotonic() + 60
        while not (sandbox.home / "late.ipynb").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        time.sleep(1)  # let the background sync finish its last write before the backup goes
        clear_backup(s3)

    assert (sandbox.home / "late.ipynb").exists(), "the background restore never finished"
    assert root_access(sandbox) == []


def test_root_never_runs_a_program_from_the_users_folder_through_the_relative_path(sandbox, wheelhouse_uri):
    """SageMaker documents the lifecycle PATH as /sbin:bin:/usr/sbin:/usr/bin: a relative `bin`,
    which resolves to $PWD/bin. Started inside the home, root must not run what the user put there."""
    planted = sandbox.home / "bin"
    planted.mkdir()
    hijacks = sandbox.root / "hijacked.txt"
    for name in ("date", "flock", "sha256sum", "base64"):
        (planted / name).write_text(
            f'#!/bin/bash\necho "{name} as ${{SNOWSAGE_TEST_AS_USER:-root}}" >> {hijacks}\n'
        )
        (planted / name).chmod(0o755)
    fake_bin, rest = sandbox.env["PATH"].split(":", 1)
    sandbox.env["PATH"] = f"{fake_bin}:bin:{rest}"
    script = sandbox.root / "on_start.rendered.sh"
    script.write_text(render("on_start.sh", **start_values(wheelhouse_uri)))
    result = subprocess.run(
        ["/bin/bash", str(script)],
        env=sandbox.env,
        cwd=sandbox.home,
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert result.returncode == 0, result.stderr
    assert wait_for_outcome(sandbox)["state"] == "ok"
    ran = hijacks.read_text().splitlines() if hijacks.exists() else []
    assert not [r for r in ran if r.endswith(" as root")], ran
