"""Compliance acknowledgments: one granular finding on the narrowest construct, with its reason."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from constructs import IConstruct


def acknowledge(scope: IConstruct, finding: str, reason: str) -> None:
    cdk.Validations.of(scope).acknowledge(cdk.Acknowledgment(id=finding, reason=reason))


class PolicySink(Protocol):
    """Where a construct's ``grant_*`` puts its statements: an ``iam.ManagedPolicy`` or an
    ``iam.PolicyDocument``. The grantee chooses the policy, so each keeps its own policy resource
    and statement order."""

    def add_statements(self, *statement: iam.PolicyStatement) -> None: ...


def least_privilege_role(
    scope: IConstruct,
    id: str,
    *,
    service: str,
    description: str,
    statements: Sequence[iam.PolicyStatement] | iam.PolicyDocument,
    trust_conditions: Mapping[str, Any] | None = None,
    policy_checkov_skips: Mapping[str, str] | None = None,
) -> iam.Role:
    """A role whose permissions are exactly ``statements``, in a customer-managed policy (no inline
    policy), assumable by ``service`` only under ``trust_conditions``. Returns the role; pass
    ``role.without_policy_updates()`` to constructs that would otherwise add grants of their own,
    so nothing beyond these statements is ever attached. ``policy_checkov_skips`` (check ID to
    reason) go on the policy, which callers have no other handle on."""
    principal = iam.ServicePrincipal(service, conditions=dict(trust_conditions) if trust_conditions else None)
    role = iam.Role(scope, id, assumed_by=principal, description=description)  # type: ignore[arg-type]
    document = (
        statements
        if isinstance(statements, iam.PolicyDocument)
        else iam.PolicyDocument(statements=list(statements))
    )
    policy = iam.ManagedPolicy(scope, f"{id}Policy", document=document, description=description)  # type: ignore[arg-type]
    for check_id, reason in (policy_checkov_skips or {}).items():
        checkov_skip(policy, check_id, reason)
    role.add_managed_policy(policy)
    return role


def via_service(service: str, scope: IConstruct) -> str:
    """The kms:ViaService value for ``service`` in the region of ``scope``'s stack."""
    return f"{service}.{cdk.Stack.of(scope).region}.amazonaws.com"


def alarms_use_key_statement(sid: str, scope: IConstruct, alarm_prefix: str) -> iam.PolicyStatement:
    """A key-policy statement that lets CloudWatch publish the alarms named ``alarm_prefix*`` in this
    account to a topic encrypted with the key; without it SNS refuses every alarm notification."""
    stack = cdk.Stack.of(scope)
    return iam.PolicyStatement(
        sid=sid,
        principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
        actions=["kms:Decrypt", "kms:GenerateDataKey*"],
        resources=["*"],
        conditions={
            "StringEquals": {"aws:SourceAccount": stack.account},
            "ArnLike": {
                "aws:SourceArn": stack.format_arn(
                    service="cloudwatch",
                    resource="alarm",
                    resource_name=f"{alarm_prefix}*",
                    arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME,
                )
            },
        },
    )


def wildcard_finding(resource: str) -> str:
    """The granular AwsSolutions-IAM5 finding ID cdk-nag reports for a resource string built
    from pseudo-parameters (it prints them as ``<AWS::AccountId>``)."""
    for token, name in (
        (cdk.Aws.ACCOUNT_ID, "AccountId"),
        (cdk.Aws.PARTITION, "Partition"),
        (cdk.Aws.REGION, "Region"),
    ):
        resource = resource.replace(token, f"<AWS::{name}>")
    return f"AwsSolutions-IAM5[Resource::{resource}]"


def created_by_cdk(scope: IConstruct, *path: str) -> IConstruct:
    """A construct CDK creates without giving us a handle (no property, no return value), by the
    ids CDK gives it. Those ids are CDK internals an upgrade may rename: this says so by name, and
    tests/infra/test_constructs.py builds each one used here on its own, so it fails there first."""
    found = scope
    for part in path:
        child = found.node.try_find_child(part)
        if child is None:
            raise LookupError(
                f"{found.node.path or 'the app'} has no child {part!r} (looking for {'/'.join(path)}): "
                "aws-cdk-lib no longer creates it under that id; find its new id in the synthesized "
                "tree (cdk.out/tree.json) and update the caller"
            )
        found = child
    return found


def checkov_skip(scope: IConstruct, check_id: str, comment: str) -> None:
    """Skip one checkov check on the resource behind ``scope``, with the reason in its metadata."""
    resource = scope if isinstance(scope, cdk.CfnResource) else scope.node.default_child
    assert isinstance(resource, cdk.CfnResource), f"{scope.node.path} has no CloudFormation resource"
    meta = resource.get_metadata("checkov") or {"skip": []}
    meta["skip"] = [*meta["skip"], {"id": check_id, "comment": comment}]
    resource.add_metadata("checkov", meta)
