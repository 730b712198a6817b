"""on_create.sh against moto S3: restore an empty home from the backup, never overwrite user files."""

from __future__ import annotations

import subprocess

from .conftest import BUCKET, EXAMPLE_NOTEBOOK, NOTEBOOK, REGION, render, root_access

PREFIX = f"backups/{NOTEBOOK}-create/"


def run_on_create(box, wheelhouse_uri: str) -> subprocess.CompletedProcess:
    script = box.root / "on_create.rendered.sh"
    script.write_text(
        render(
            "on_create.sh",
            WHEELHOUSE_S3_URI=wheelhouse_uri,
            BACKUP_S3_URI=f"s3://{BUCKET}/{PREFIX}",
            AWS_REGION=REGION,
        )
    )
    return subprocess.run(["bash", str(script)], env=box.env, capture_output=True, text=True, timeout=60)


def put_backup(s3, files: dict[str, str]) -> None:
    for key, body in files.items():
        s3.put_object(Bucket=BUCKET, Key=PREFIX + key, Body=body.encode())


def clear_backup(s3) -> None:
    for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=PREFIX).get("Contents", []):
        s3.delete_object(Bucket=BUCKET, Key=o["Key"])


def test_an_empty_home_is_restored_then_gets_the_example(sandbox, s3, wheelhouse_uri):
    put_backup(s3, {"work/analysis.ipynb": '{"mine": 1}', EXAMPLE_NOTEBOOK: '{"edited": true}'})
    (sandbox.home / "lost+found").mkdir()  # a fresh EBS volume has one; still "empty"
    try:
        result = run_on_create(sandbox, wheelhouse_uri)
    finally:
        clear_backup(s3)

    assert result.returncode == 0, result.stderr
    assert (sandbox.home / "work" / "analysis.ipynb").read_text() == '{"mine": 1}'
    # The restored, user-edited example wins over the shipped one.
    assert (sandbox.home / EXAMPLE_NOTEBOOK).read_text() == '{"edited": true}'
    assert "restored 2 files" in result.stdout
    assert f"{EXAMPLE_NOTEBOOK} exists" in result.stdout
    assert root_access(sandbox) == []


def test_a_home_with_work_in_it_is_not_restored_over(sandbox, s3, wheelhouse_uri):
    put_backup(s3, {"old.ipynb": "{}"})
    (sandbox.home / "current.ipynb").write_text("{}")
    try:
        result = run_on_create(sandbox, wheelhouse_uri)
    finally:
        clear_backup(s3)

    assert result.returncode == 0, result.stderr
    assert not (sandbox.home / "old.ipynb").exists()
    assert "not empty" in result.stdout
    assert '"nbformat": 4' in (sandbox.home / EXAMPLE_NOTEBOOK).read_text()  # shipped example copied
    assert root_access(sandbox) == []


def test_an_unreadable_wheelhouse_or_backup_never_fails_the_creation(sandbox):
    result = run_on_create(sandbox, f"s3://{BUCKET}/assets/missing.zip")
    assert result.returncode == 0, result.stderr
    assert "no example notebook" in result.stdout
    assert not (sandbox.home / EXAMPLE_NOTEBOOK).exists()
    assert root_access(sandbox) == []
