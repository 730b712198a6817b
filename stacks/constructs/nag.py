"""Compliance acknowledgments: one granular finding on the narrowest construct, with its reason."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from constructs import IConstruct


def acknowledge(scope: IConstruct, finding: str, reason: str) -> None:
    cdk.Validations.of(scope).acknowledge(cdk.Acknowledgment(id=finding, reason=reason))


def least_privilege_role(
    scope: IConstruct,
    id: str,
    *,
    service: str,
    description: str,
    statements: list[iam.PolicyStatement],
    trust_conditions: Mapping[str, Any] | None = None,
) -> iam.Role:
    """A role whose permissions are exactly ``statements``, in a customer-managed policy (no inline
    policy), assumable by ``service`` only under ``trust_conditions``. Returns the role; pass
    ``role.without_policy_updates()`` to constructs that would otherwise add grants of their own,
    so nothing beyond these statements is ever attached."""
    principal = iam.ServicePrincipal(service, conditions=dict(trust_conditions) if trust_conditions else None)
    role = iam.Role(scope, id, assumed_by=principal, description=description)  # type: ignore[arg-type]
    policy = iam.ManagedPolicy(scope, f"{id}Policy", statements=statements, description=description)  # type: ignore[arg-type]
    role.add_managed_policy(policy)
    return role


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


def checkov_skip(scope: IConstruct, check_id: str, comment: str) -> None:
    """Skip one checkov check on the resource behind ``scope``, with the reason in its metadata."""
    resource = scope if isinstance(scope, cdk.CfnResource) else scope.node.default_child
    assert isinstance(resource, cdk.CfnResource), f"{scope.node.path} has no CloudFormation resource"
    meta = resource.get_metadata("checkov") or {"skip": []}
    meta["skip"] = [*meta["skip"], {"id": check_id, "comment": comment}]
    resource.add_metadata("checkov", meta)
