"""The compliance gates: three cdk-nag packs, cfn-lint and checkov, on every configuration."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO, Synth

CHECKOV = REPO / ".venv-checkov" / "bin" / "checkov"


def test_nag_packs_have_no_unacknowledged_findings(any_synth: Synth) -> None:
    # Synthesis itself fails on any finding; a clean run writes no violation at all.
    violations = [
        (v["ruleName"], r["constructPath"])
        for p in any_synth.report()["pluginReports"]
        for v in p.get("violations", [])
        for r in v.get("violatingResources", [])
    ]
    assert violations == []


@pytest.mark.infra  # synthesizes its own app
def test_nag_packs_are_wired_into_the_app(tmp_path: Path) -> None:
    """Negative control: the same app with one non-compliant bucket must fail synth in all three
    packs, so the clean result above cannot come from packs that never ran."""
    import aws_cdk as cdk
    from aws_cdk import aws_s3 as s3

    from stacks.app_builder import build_app
    from stacks.config import load_config

    from .conftest import BASE_CONTEXT

    app = cdk.App(outdir=str(tmp_path), context={**BASE_CONTEXT, "env_name": "control"})
    build_app(app, load_config(app.node.get_all_context()))
    bad = cdk.Stack(app, "Control", env=cdk.Environment(region="us-east-1"))
    s3.Bucket(bad, "Unencrypted", encryption=s3.BucketEncryption.UNENCRYPTED)
    with pytest.raises(Exception, match="ValidationFailed"):
        app.synth()
    report = json.loads((tmp_path / "policy-validation-report.json").read_text())
    rules = {v["ruleName"] for p in report["pluginReports"] for v in p.get("violations", [])}
    for pack in ("AwsSolutions-", "NIST.800.53.R5-", "HIPAA.Security-"):
        assert any(r.startswith(pack) for r in rules), f"{pack} found nothing: {sorted(rules)}"
    paths = {
        r["constructPath"]
        for p in report["pluginReports"]
        for v in p.get("violations", [])
        for r in v["violatingResources"]
    }
    assert all(p.startswith("Control/") for p in paths), "only the control stack may have findings"


def test_acknowledgments_name_one_finding_each() -> None:
    source = "\n".join(p.read_text() for p in (REPO / "stacks").rglob("*.py"))
    # Never a blanket acknowledgment on an app or a stack.
    assert "Validations.of(app)" not in source.replace("Validations.of(app).add_plugins", "")
    assert 'acknowledge(self, "' not in source.replace("acknowledge(\n", "")


def test_cfn_lint_clean(any_synth: Synth) -> None:
    templates = sorted(str(p) for p in any_synth.outdir.glob("*.template.json"))
    assert len(templates) == 4
    proc = subprocess.run(
        [
            str(Path(sys.executable).parent / "cfn-lint"),
            "--config-file",
            str(REPO / ".cfnlintrc.yaml"),
            *templates,
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.skipif(not CHECKOV.exists(), reason="checkov venv missing: run `make install`")
def test_checkov_clean(any_synth: Synth) -> None:
    proc = subprocess.run(
        [
            str(CHECKOV),
            "-d",
            str(any_synth.outdir),
            "--framework",
            "cloudformation",
            "--compact",
            "--quiet",
            "--skip-download",
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
    )
    out = proc.stdout.strip()
    data = json.loads(out[out.index("{") :] if out.startswith(("{", "[")) is False else out)
    results = data if isinstance(data, dict) else data[0]
    summary = results["summary"]
    failed = [(c["check_id"], c["resource"]) for c in results["results"]["failed_checks"]]
    assert failed == [], failed
    assert summary["passed"] > 100
    # Every skip sits in one resource's metadata and carries a reason.
    for path in any_synth.outdir.glob("*.template.json"):
        for logical_id, resource in json.loads(path.read_text())["Resources"].items():
            for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
                assert skip["id"].startswith("CKV_") and len(skip["comment"]) > 20, (logical_id, skip)


def test_templates_written_per_stack(nat: Synth) -> None:
    names = sorted(p.name for p in Path(nat.outdir).glob("*.template.json"))
    assert names == [
        "SnowSage-dev-Data.template.json",
        "SnowSage-dev-Network.template.json",
        "SnowSage-dev-Notebook.template.json",
        "SnowSage-dev-Training.template.json",
    ]
