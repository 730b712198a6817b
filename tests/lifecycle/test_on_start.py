"""on_start.sh / install_wheels.sh run for real: fast foreground, background install, cron jobs."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import time
from pathlib import Path

import pytest

from snowsage.settings import RuntimeSettings

from .conftest import BUCKET, LIFECYCLE, NOTEBOOK, REGION, render, root_access, settings_b64, tree_digest

SCRIPTS = ("on_start.sh", "on_create.sh", "install_wheels.sh")
API_LIMIT = 16384  # NotebookInstanceLifecycleHook.Content: the *base64* text, max 16384 characters


def start_values(wheelhouse_uri: str, **overrides: str) -> dict[str, str]:
    values = {
        "SETTINGS_B64": settings_b64(),
        "WHEELHOUSE_S3_URI": wheelhouse_uri,
        "NETWORK_MODE": "privatelink",
        "IDLE_STOP_MINUTES": "60",
        "BACKUP_MINUTES": "15",
        "BACKUP_S3_URI": f"s3://{BUCKET}/backups/{NOTEBOOK}/",
        "AWS_REGION": REGION,
    }
    return {**values, **overrides}


def run_on_start(
    box, values: dict[str, str], timeout: float = 10.0
) -> tuple[subprocess.CompletedProcess, float]:
    script = box.root / "on_start.rendered.sh"
    script.write_text(render("on_start.sh", **values))
    began = time.monotonic()
    result = subprocess.run(
        ["bash", str(script)], env=box.env, capture_output=True, text=True, timeout=timeout
    )
    return result, time.monotonic() - began


def wait_for_outcome(box, timeout: float = 180.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            status = json.loads(box.status_file.read_text())
        except (OSError, ValueError):
            status = {}
        if status.get("state") in ("ok", "failed"):
            return status
        time.sleep(0.5)
    log = (box.opt / "install.log").read_text() if (box.opt / "install.log").exists() else "(no log)"
    pytest.fail(f"background install did not finish within {timeout}s; status {status}; log:\n{log[-3000:]}")


def env_python(box, code: str) -> subprocess.CompletedProcess:
    """The conda_python3 stand-in's python."""
    return subprocess.run([str(box.env_dir / "bin" / "python"), "-c", code], capture_output=True, text=True)


def kernel_python(box, code: str) -> subprocess.CompletedProcess:
    """The python the registered kernel runs (kernel.json's argv[0])."""
    python = json.loads(box.kernel_json.read_text())["argv"][0]
    return subprocess.run([python, "-c", code], capture_output=True, text=True)


def kernel_env_dir(box) -> Path:
    """The env kernel-env points at (envs/<key>)."""
    return box.kernel_env.resolve()


def cron_jobs(box) -> list[str]:
    return [line for line in box.crontab.read_text().splitlines() if "# snowsage" in line]


@pytest.mark.parametrize("script", SCRIPTS)
def test_scripts_are_shellcheck_clean(script):
    shellcheck = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "shellcheck"
    result = subprocess.run([str(shellcheck), "-x", str(LIFECYCLE / script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("script", SCRIPTS)
def test_scripts_follow_the_house_layout(script):
    text = (LIFECYCLE / script).read_text()
    assert text.startswith("#!/bin/bash\n")
    assert "# OVERVIEW" in text
    assert re.search(r"^set -(eu|u)o pipefail$", text, re.M)


def test_rendered_scripts_fit_the_sagemaker_limit_with_realistic_values():
    # Worst realistic values: CDK asset bucket URI with a 64-character hash, long names everywhere.
    wheelhouse = "s3://cdk-hnb659fds-assets-123456789012-ap-southeast-2/" + "f" * 64 + ".zip"
    backup = "s3://snowsage-production-analytics-data-123456789012-ap-southeast-2/backups/" + "n" * 63 + "/"
    big_settings = json.loads(base64.b64decode(settings_b64()))
    big_settings["parameters"] = {
        k: f"/snowsage/production-analytics/{k}" for k in big_settings["parameters"]
    }
    for k in ("host", "port", "protocol"):
        big_settings["parameters"][k] = f"/snowsage/production-analytics/{k}"
    big_settings["check_function"] = "snowsage-production-analytics-connectivity-check"
    values = start_values(
        wheelhouse,
        BACKUP_S3_URI=backup,
        AWS_REGION="ap-southeast-2",
        SETTINGS_B64=base64.b64encode(json.dumps(big_settings).encode()).decode(),
    )
    rendered = {
        "on_start.sh": render("on_start.sh", **values),
        "on_create.sh": render(
            "on_create.sh", WHEELHOUSE_S3_URI=wheelhouse, BACKUP_S3_URI=backup, AWS_REGION="ap-southeast-2"
        ),
    }
    for name, text in rendered.items():
        assert not re.search(r"@@[A-Z0-9_]+@@", text), f"{name} still holds a placeholder"
        assert len(text) < API_LIMIT, f"{name} rendered is {len(text)} characters"
        encoded = len(base64.b64encode(text.encode()))
        assert encoded <= API_LIMIT, f"{name} is {encoded} characters once base64-encoded (limit {API_LIMIT})"


def test_first_start_builds_the_kernel_env_in_the_background_and_registers_the_kernel(
    sandbox, wheelhouse_uri
):
    conda_before = tree_digest(sandbox.env_dir)
    result, seconds = run_on_start(sandbox, start_values(wheelhouse_uri))

    assert result.returncode == 0, result.stderr
    assert seconds < 10, f"foreground took {seconds:.1f}s"
    settings_file = sandbox.home / ".snowsage" / "settings.json"
    settings = RuntimeSettings.from_file(settings_file)
    assert settings.notebook_name == NOTEBOOK and settings.region == REGION
    assert oct(settings_file.stat().st_mode & 0o777) == "0o644"
    assert oct(settings_file.parent.stat().st_mode & 0o777) == "0o755"

    status = wait_for_outcome(sandbox)
    assert status["state"] == "ok", status
    assert status["source"] == "wheelhouse"
    assert status["detail"].endswith("kernel env from the wheelhouse with uv"), status["detail"]
    env = kernel_env_dir(sandbox)
    assert env.parent == sandbox.home / ".snowsage" / "envs", env  # on the EBS volume, kept by a stop
    assert not list(env.glob("lib/python*/site-packages/uv")), "uv went into the user's env"
    compiled = list(env.glob("lib/python*/site-packages/dateutil/__pycache__/*.pyc"))
    assert compiled, "the install did not byte-compile (the first import would)"
    assert status["python"].startswith(sandbox.python_version + ".")
    assert status["versions"] == {"six": "1.17.0", "python-dateutil": "2.9.0.post0"}
    assert status["started_at"] and status["updated_at"]
    imported = kernel_python(sandbox, "import dateutil, six; print(dateutil.__version__)")
    assert imported.returncode == 0 and imported.stdout.strip() == "2.9.0.post0", imported.stderr
    assert "install ok" in sandbox.jupyter_log.read_text()  # the CloudWatch-shipped log says so too

    spec = json.loads(sandbox.kernel_json.read_text())
    assert spec["display_name"] == "Python 3 (Snowflake)" and spec["language"] == "python"
    assert spec["argv"] == [
        str(env / "bin" / "python"),
        "-m",
        "ipykernel_launcher",
        "-f",
        "{connection_file}",
    ]
    # The conda_python3 stand-in is byte-for-byte what it was, and lacks our packages.
    assert tree_digest(sandbox.env_dir) == conda_before
    assert env_python(sandbox, "import dateutil").returncode != 0
    assert root_access(sandbox) == []


def test_a_corrupt_wheelhouse_is_reported_and_the_start_still_succeeds(sandbox, s3):
    s3.put_object(Bucket=BUCKET, Key="assets/corrupt.zip", Body=b"PK\x03\x04 this is not a zip")
    result, _ = run_on_start(sandbox, start_values(f"s3://{BUCKET}/assets/corrupt.zip"))

    assert result.returncode == 0, result.stderr
    status = wait_for_outcome(sandbox)
    assert status["state"] == "failed"
    assert "not a readable zip" in status["detail"] and "corrupt.zip" in status["detail"]
    assert "redeploy" in status["detail"]


def test_a_missing_wheelhouse_names_the_uri_and_the_permission(sandbox):
    result, _ = run_on_start(sandbox, start_values(f"s3://{BUCKET}/assets/nope.zip"))

    assert result.returncode == 0
    status = wait_for_outcome(sandbox)
    assert status["state"] == "failed"
    assert "nope.zip" in status["detail"] and "s3:GetObject" in status["detail"]


def test_a_python_version_mismatch_says_which_versions(sandbox, wheelhouse_uri):
    sandbox.env["SNOWSAGE_EXPECTED_PYTHON"] = "3.9"
    result, _ = run_on_start(sandbox, start_values(wheelhouse_uri))

    assert result.returncode == 0
    status = wait_for_outcome(sandbox)
    assert status["state"] == "failed"
    assert f"conda_python3 env runs Python {sandbox.python_version}" in status["detail"]
    assert "3.9" in status["detail"]
    assert "cp39" in status["detail"]


def test_nat_mode_falls_back_to_the_index_and_says_so(sandbox, s3, wheels, tmp_path):
    from .conftest import build_wheelhouse

    # Pins that the wheels/ folder cannot satisfy force the fallback (PIP_NO_INDEX keeps it offline).
    zip_path = build_wheelhouse(wheels, tmp_path / "short.zip", requirements="six==1.16.0\n")
    s3.upload_file(str(zip_path), BUCKET, "assets/short.zip")
    result, _ = run_on_start(sandbox, start_values(f"s3://{BUCKET}/assets/short.zip", NETWORK_MODE="nat"))

    assert result.returncode == 0
    status = wait_for_outcome(sandbox)
    assert status["state"] == "failed" and "package index" in status["detail"]
    assert "falling back to the package index (nat mode)" in (sandbox.opt / "install.log").read_text()
    assert root_access(sandbox) == []


def test_without_ipykernel_in_the_wheelhouse_no_kernel_is_offered_until_the_env_is_complete(
    sandbox, s3, wheels, tmp_path
):
    """A kernel that cannot start is worse than none: the env is linked early only once ipykernel and
    the package are in (tests/lifecycle/test_kernel_env.py has the wheelhouse that holds it)."""
    from .conftest import build_wheelhouse

    zip_path = build_wheelhouse(wheels, tmp_path / "short.zip", requirements="six==1.16.0\n")
    s3.upload_file(str(zip_path), BUCKET, "assets/short.zip")
    result, _ = run_on_start(sandbox, start_values(f"s3://{BUCKET}/assets/short.zip"))

    assert result.returncode == 0
    status = wait_for_outcome(sandbox)
    assert status["state"] == "failed" and "privatelink mode has no package index" in status["detail"]
    assert not sandbox.kernel_json.exists() and not sandbox.kernel_env.exists()
    assert root_access(sandbox) == []


def test_a_wheelhouse_without_uv_installs_with_pip(sandbox, s3, wheels, tmp_path):
    from .conftest import build_wheelhouse

    zip_path = build_wheelhouse(wheels, tmp_path / "no-tools.zip")
    s3.upload_file(str(zip_path), BUCKET, "assets/no-tools.zip")
    result, _ = run_on_start(sandbox, start_values(f"s3://{BUCKET}/assets/no-tools.zip"))

    assert result.returncode == 0
    status = wait_for_outcome(sandbox)
    assert status["state"] == "ok" and status["detail"].endswith("with pip"), status
    assert kernel_python(sandbox, "import dateutil, six").returncode == 0
    assert root_access(sandbox) == []


def _broken_uv_wheel(dest: Path) -> Path:
    """A uv wheel whose binary answers --version and fails every install."""
    import zipfile

    dest.mkdir()
    whl = dest / "uv-0.0.1-py3-none-any.whl"
    script = '#!/bin/sh\n[ "$1" = --version ] && echo "uv 0.0.1" && exit 0\necho "uv: broken on purpose" >&2\nexit 2\n'
    with zipfile.ZipFile(whl, "w") as z:
        info = zipfile.ZipInfo("uv-0.0.1.data/scripts/uv")
        info.external_attr = 0o100755 << 16  # a regular, executable file (pip checks both)
        z.writestr(info, script)
        z.writestr("uv-0.0.1.dist-info/METADATA", "Metadata-Version: 2.1\nName: uv\nVersion: 0.0.1\n")
        z.writestr(
            "uv-0.0.1.dist-info/WHEEL",
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        z.writestr("uv-0.0.1.dist-info/RECORD", "")
    return dest


def test_when_uv_fails_pip_installs_the_same_wheelhouse(sandbox, s3, wheels, tmp_path):
    from .conftest import build_wheelhouse

    zip_path = build_wheelhouse(wheels, tmp_path / "bad-uv.zip", tools=_broken_uv_wheel(tmp_path / "tools"))
    s3.upload_file(str(zip_path), BUCKET, "assets/bad-uv.zip")
    result, _ = run_on_start(sandbox, start_values(f"s3://{BUCKET}/assets/bad-uv.zip"))

    assert result.returncode == 0
    status = wait_for_outcome(sandbox)
    assert status["state"] == "ok" and status["detail"].endswith("with pip"), status
    log = (sandbox.opt / "install.log").read_text()
    assert "broken on purpose" in log and "trying pip" in log
    assert kernel_python(sandbox, "import dateutil, six").returncode == 0
    assert root_access(sandbox) == []


def test_cron_jobs_are_installed_next_to_the_users_own(sandbox, wheelhouse_uri):
    sandbox.crontab.write_text("0 3 * * * /usr/local/bin/users-own-job\n")
    result, _ = run_on_start(
        sandbox, start_values(wheelhouse_uri, IDLE_STOP_MINUTES="0", BACKUP_MINUTES="120")
    )

    assert result.returncode == 0
    lines = sandbox.crontab.read_text().splitlines()
    assert "0 3 * * * /usr/local/bin/users-own-job" in lines
    jobs = cron_jobs(sandbox)
    assert len(jobs) == 1 and jobs[0].startswith("0 */2 * * * ") and "aws s3 sync" in jobs[0]
    wait_for_outcome(sandbox)


def test_backup_job_syncs_the_work_but_not_state_checkpoints_or_links(sandbox, wheelhouse_uri, s3):
    result, _ = run_on_start(sandbox, start_values(wheelhouse_uri))
    assert result.returncode == 0
    wait_for_outcome(sandbox)
    (sandbox.home / "analysis.ipynb").write_text("{}")
    (sandbox.home / "data").mkdir()
    (sandbox.home / "data" / "sample.csv").write_text("a,b\n1,2\n")
    (sandbox.home / ".ipynb_checkpoints").mkdir()
    (sandbox.home / ".ipynb_checkpoints" / "analysis-checkpoint.ipynb").write_text("{}")
    (sandbox.home / "lost+found").mkdir()
    (sandbox.home / "lost+found" / "junk").write_text("x")
    secret_outside = sandbox.root / "outside.txt"
    secret_outside.write_text("not for the bucket")
    (sandbox.home / "link.txt").symlink_to(secret_outside)

    backup = next(j for j in cron_jobs(sandbox) if "s3 sync" in j)
    assert backup.startswith("*/15 * * * * ")
    command = backup.split(" ", 5)[5]
    run = subprocess.run(["bash", "-c", command], env=sandbox.env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr

    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"backups/{NOTEBOOK}/").get("Contents", [])
    keys = {o["Key"].removeprefix(f"backups/{NOTEBOOK}/") for o in listed}
    assert keys == {"analysis.ipynb", "data/sample.csv"}
    for o in listed:
        s3.delete_object(Bucket=BUCKET, Key=o["Key"])


def test_idle_stop_job_stops_an_idle_notebook_exactly_once(sandbox, wheelhouse_uri, jupyter):
    result, _ = run_on_start(sandbox, start_values(wheelhouse_uri, IDLE_STOP_MINUTES="60"))
    assert result.returncode == 0
    assert wait_for_outcome(sandbox)["state"] == "ok"
    idle = next(j for j in cron_jobs(sandbox) if "idle_stop.py" in j)
    assert idle.startswith("*/5 * * * * ") and "--idle-minutes 60" in idle
    command = idle.split(" ", 5)[5].replace("https://localhost:8443", jupyter.url)
    # Pretend the instance started two hours ago and the only kernel has been quiet since.
    (sandbox.opt / "idle-state.json").write_text('{"started_at": "2020-01-01T00:00:00Z"}')
    jupyter.kernels[:] = [
        {"id": "k1", "execution_state": "idle", "last_activity": "2020-01-01T00:10:00.000Z"}
    ]

    for _ in range(3):  # three cron ticks
        subprocess.run(["bash", "-c", command], env=sandbox.env, check=True, timeout=30)

    assert sandbox.stop_calls.read_text().splitlines() == [
        f"sagemaker stop-notebook-instance --notebook-instance-name {NOTEBOOK}"
    ]
