"""The GitHub deploy role (docs/github-oidc-role.yaml) against the synthesized cloud assembly: it may
assume every role the CDK CLI asks for when it diffs, publishes and deploys this app, and not the
CloudFormation execution role, which the deploy role only passes to CloudFormation."""

from __future__ import annotations

import fnmatch
import re

from tests.ci.test_workflows import role_template

from .conftest import Synth


def test_the_deploy_role_may_assume_every_role_the_cloud_assembly_names(nat: Synth) -> None:
    template = role_template()
    qualifier = template["Parameters"]["CdkQualifier"]["Default"]
    (policy,) = template["Resources"]["DeployRole"]["Properties"]["Policies"]
    (statement,) = policy["PolicyDocument"]["Statement"]
    patterns = [r["Fn::Sub"].replace("${CdkQualifier}", qualifier) for r in statement["Resource"]]

    def allowed(arn: str) -> bool:
        return any(fnmatch.fnmatchcase(arn, pattern) for pattern in patterns)

    assumed, passed = set(), set()
    for path in [nat.outdir / "manifest.json", *nat.outdir.glob("*.assets.json")]:
        text = path.read_text()
        assumed |= set(re.findall(r'"(?:assumeRoleArn|arn)": "(arn:[^"]*:role/[^"]*)"', text))
        passed |= set(re.findall(r'"cloudFormationExecutionRoleArn": "([^"]*)"', text))
    kinds = {re.sub(r".*:role/cdk-\w+-(.+)-role-.*", r"\1", arn) for arn in assumed}
    assert kinds == {"deploy", "file-publishing", "lookup"}, assumed
    assert [arn for arn in sorted(assumed) if not allowed(arn)] == []
    assert passed and not any(allowed(arn) for arn in passed)
