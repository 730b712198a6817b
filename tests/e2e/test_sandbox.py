"""The sandbox end to end (``make demo``), and a broken step failing with that step named.

The fast path reuses the session's fakesnow server from tests/conftest.py. moto cannot be shared:
the sandbox needs its own server (sandbox.moto_server) with the custom-resource spool and the
CloudFormation fixes, and a deployment would leave stacks in the session's moto for other tests.
"""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from sandbox import demo, servers
from sandbox.sample_data import COLUMNS
from tests.e2e.conftest import DEMO_GROUP, DemoRun

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]


def _written(workdir: Path, output: str) -> str:
    """Everything the run wrote for people: its output, every log and the executed notebook."""
    parts = [output]
    for path in [*(workdir / "logs").glob("*"), *(workdir / "notebook").glob("*.ipynb")]:
        parts.append(path.read_text(errors="replace"))
    return "\n".join(parts)


@DEMO_GROUP
def test_sandbox_runs_the_product_end_to_end(sandbox_demo: DemoRun) -> None:
    context_file = REPO_ROOT / "cdk.context.json"
    result, tmp_path, context_before = sandbox_demo.result, sandbox_demo.workdir, sandbox_demo.context_before

    assert result.ok, f"{result.error}\n--- output\n{sandbox_demo.output[-3000:]}"
    facts = result.facts
    assert [s["status"] for s in facts["stacks"]] == ["CREATE_COMPLETE"] * 3
    # The skipped types are listed, and nothing the product depends on at run time is among them.
    skipped = {t for s in facts["stacks"] for t in s["skipped"]}
    assert not skipped & {"AWS::SSM::Parameter", "AWS::Lambda::Function", "AWS::KMS::Key", "AWS::S3::Bucket"}
    handled = sorted(
        (h.resource_type, h.logical_id.split("Secret")[-1][:4]) for h in facts["custom_resources"]
    )
    assert [t for t, _ in handled].count("Custom::SnowsageSecureParameter") == 3
    assert [t for t, _ in handled].count("Custom::VpcRestrictDefaultSG") == 1
    assert facts["credentials"]["complete"] is True

    report = facts["check"]["report"]
    assert report.status == "ok"
    steps = {s.name: s.ok for s in report.steps}
    assert steps["login"] is True and steps["query"] is True

    frame = facts["parquet"]["frame"]
    assert list(frame.columns) == list(COLUMNS)
    assert 0 < len(frame) < facts["rows"] == 20000
    assert facts["parquet"]["uri"].endswith("/results/quickstart/housing_sample.parquet")
    # The notebook ran in the snowsage kernel whose env the real on_start.sh built on the "volume".
    kenv = facts["kernel_env"]
    assert kenv.status["state"] == "ok" and kenv.status["source"] == "wheelhouse", kenv.status
    assert kenv.env_dir.parent == tmp_path.resolve() / "notebook" / "SageMaker" / ".snowsage" / "envs"
    probe = facts["kernel_probe"]
    assert Path(probe["prefix"]).resolve() == kenv.env_dir
    assert Path(probe["snowsage"]).resolve().is_relative_to(kenv.env_dir)
    assert Path(probe["connector"]).resolve().is_relative_to(kenv.env_dir)
    executed = nbformat.read(facts["notebook_out"], as_version=4)
    assert executed.metadata.kernelspec.name == "snowsage"
    assert [o for c in executed.cells for o in c.get("outputs", []) if o.output_type == "error"] == []
    assert "SNOWSAGE_KERNEL_PROBE" in str(executed.cells[-1].outputs)

    summary = sandbox_demo.output
    total = len(demo.STEPS)
    started = [line for line in summary.splitlines() if line.startswith("[") and line.endswith(" ...")]
    assert started == [f"[{n}/{total}] {name} ..." for n, name in enumerate(demo.STEPS, 1)]
    assert "20,000 rows in ANALYTICS.PUBLIC.HOUSING" in summary
    assert "skipped by moto" in summary and "make deploy" in summary
    # The private key went to SSM only: no log, output or notebook holds it.
    assert "PRIVATE KEY" not in _written(tmp_path, summary)
    # The servers are stopped and the CLI's context cache is as it was.
    assert not servers.answers_http(facts["moto_url"])
    assert (context_file.read_bytes() if context_file.exists() else None) == context_before


def test_fakesnow_not_answering_fails_step_2_and_stops_moto(tmp_path: Path) -> None:
    def silent(port: int) -> list[str]:  # a process that never listens
        return ["-c", "import time; time.sleep(120)"]

    out = io.StringIO()
    # The timeout is moto's too: on 2 busy cores moto alone takes 2-4 s to answer.
    result = demo.run(demo.Options(workdir=tmp_path, fakesnow_args=silent, server_timeout=10, out=out))

    assert not result.ok
    assert result.failed_step == 2
    assert result.error is not None
    assert result.error.startswith(
        "step 2 (start fakesnow) failed: fakesnow did not answer on http://127.0.0.1:"
    )
    assert not servers.answers_http(result.facts["moto_url"])


def test_cli_names_the_failed_step_and_exits_non_zero(tmp_path: Path) -> None:
    dead_port = servers.free_port()  # nothing listens here
    proc = subprocess.run(
        [sys.executable, "-m", "sandbox", "--workdir", str(tmp_path), "--fakesnow-port", str(dead_port)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert proc.returncode == 1
    assert f"step 2 (start fakesnow) failed: nothing answers on http://127.0.0.1:{dead_port}" in proc.stderr
    assert f"[1/{len(demo.STEPS)}] start moto: ok" in proc.stdout
