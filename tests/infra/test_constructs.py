"""Constructs on a bare stack: each fails its own test, in seconds, before any full app synth."""

from __future__ import annotations

import json
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk.assertions import Template

from stacks.base import PinnedZonesStack
from stacks.config import LOG_RETENTION_DAYS
from stacks.constructs.lambda_defaults import log_group, retention
from stacks.constructs.nag import created_by_cdk
from stacks.constructs.network import DEFAULT_SG_PROVIDER_HANDLER, Network, SnowflakePrivateLink
from stacks.constructs.parameters import PROVIDER_FRAMEWORK_FUNCTION, SnowflakeParameters
from stacks.constructs.results_bucket import ResultsBucket

from .conftest import BASE_CONTEXT

REGION = "eu-west-1"
ZONES = ("eu-west-1a", "eu-west-1b")


def _app() -> cdk.App:
    # cdk.json's feature flags, as the real app has them (the access-log bucket needs one).
    return cdk.App(context={k: v for k, v in BASE_CONTEXT.items() if k.startswith("@aws-cdk")})


def _stack() -> cdk.Stack:
    return cdk.Stack(_app(), "Bare", env=cdk.Environment(region=REGION))


def _parameters(stack: cdk.Stack, key: kms.IKey) -> SnowflakeParameters:
    return SnowflakeParameters(
        stack,
        "Snowflake",
        prefix="/snowsage/t/snowflake/",
        auth="keypair",
        user="SVC",
        settings={"account": "org-acct", "role": "R"},
        key=key,
        removal_policy="destroy",
        log_retention=retention(7),
    )


def _statements(template: Template, policy_prefix: str) -> list[dict[str, Any]]:
    policies = {
        k: v
        for k, v in template.find_resources("AWS::IAM::ManagedPolicy").items()
        if k.startswith(policy_prefix)
    }
    assert len(policies) == 1, sorted(policies)
    return list(next(iter(policies.values()))["Properties"]["PolicyDocument"]["Statement"])


def _sorted(values: list[Any]) -> list[Any]:
    return sorted(values, key=lambda v: json.dumps(v, sort_keys=True))


def _ssm_arn(name: str) -> dict[str, Any]:
    return {"Fn::Join": ["", [f"arn:aws:ssm:{REGION}:", {"Ref": "AWS::AccountId"}, f":parameter/snowsage/t/snowflake/{name}"]]}  # fmt: skip


def test_parameters_grant_read_is_get_and_decrypt_via_ssm_on_exactly_its_parameters() -> None:
    stack = _stack()
    key = kms.Key(stack, "Key")
    parameters = _parameters(stack, key)
    reader = iam.ManagedPolicy(stack, "Reader")
    parameters.grant_read(reader)

    read, decrypt = _statements(Template.from_stack(stack), "Reader")
    assert read["Sid"] == "ReadSnowflakeParameters"
    assert read["Action"] == ["ssm:GetParameter", "ssm:GetParameters"]
    # every setting and every credential of this auth mode, nothing under a wildcard
    names = ["account", "role", "user", "private_key", "private_key_passphrase"]
    assert _sorted(read["Resource"]) == _sorted([_ssm_arn(n) for n in names])
    assert decrypt == {
        "Sid": "DecryptParametersViaSsm",
        "Action": "kms:Decrypt",
        "Effect": "Allow",
        "Resource": {"Fn::GetAtt": [stack.get_logical_id(key.node.default_child), "Arn"]},  # type: ignore[arg-type]
        "Condition": {"StringEquals": {"kms:ViaService": f"ssm.{REGION}.amazonaws.com"}},
    }


def test_results_bucket_grant_is_scoped_to_the_given_prefixes() -> None:
    stack = _stack()
    key = kms.Key(stack, "Key")
    results = ResultsBucket(
        stack, "Results", bucket_name="my-results", key=key, removal_policy=cdk.RemovalPolicy.DESTROY
    )
    writer = iam.ManagedPolicy(stack, "Writer")
    results.grant_read_write(writer, ["results/", "backups/nb/"])

    use_key, list_, objects = _statements(Template.from_stack(stack), "Writer")
    assert use_key["Action"] == ["kms:Decrypt", "kms:GenerateDataKey"]
    assert use_key["Condition"] == {"StringEquals": {"kms:ViaService": f"s3.{REGION}.amazonaws.com"}}
    # by name, not by the bucket's token: a grantee in another stack needs no cross-stack import
    bucket_arn = "arn:aws:s3:::my-results"
    assert list_["Action"] == "s3:ListBucket" and list_["Resource"] == bucket_arn
    assert list_["Condition"] == {"StringLike": {"s3:prefix": ["results/*", "backups/nb/*"]}}
    assert set(objects["Action"]) == {
        "s3:GetObject",
        "s3:PutObject",
        "s3:DeleteObject",
        "s3:AbortMultipartUpload",
    }
    assert sorted(objects["Resource"]) == [
        "arn:aws:s3:::my-results/backups/nb/*",
        "arn:aws:s3:::my-results/results/*",
    ]


def test_every_allowed_log_retention_renders_as_that_many_days() -> None:
    stack = _stack()
    key = kms.Key(stack, "Key")
    for days in LOG_RETENTION_DAYS:
        log_group(stack, f"Logs{days}", key=key, retention=retention(days))
    groups = Template.from_stack(stack).find_resources("AWS::Logs::LogGroup")
    rendered = {k: v["Properties"]["RetentionInDays"] for k, v in groups.items()}
    assert sorted(rendered.values()) == sorted(LOG_RETENTION_DAYS)
    assert all(k.startswith(f"Logs{days}") for k, days in rendered.items())


def test_the_cdk_internals_we_patch_are_where_we_look_for_them() -> None:
    stack = _stack()
    key = kms.Key(stack, "Key")
    parameters = _parameters(stack, key)
    ec2.Vpc(stack, "Vpc", max_azs=1, nat_gateways=0, restrict_default_security_group=True)

    assert parameters.provider is not None
    framework = created_by_cdk(parameters.provider, *PROVIDER_FRAMEWORK_FUNCTION).node.default_child
    handler = created_by_cdk(stack, *DEFAULT_SG_PROVIDER_HANDLER)
    functions = Template.from_stack(stack).find_resources("AWS::Lambda::Function")
    assert functions[stack.get_logical_id(framework)]["Properties"]["ReservedConcurrentExecutions"] == 2  # type: ignore[arg-type]
    assert isinstance(handler, cdk.CfnResource) and handler.cfn_resource_type == "AWS::Lambda::Function"

    with pytest.raises(LookupError, match=r"Bare/Snowflake/Provider has no child 'renamed'.*tree\.json"):
        created_by_cdk(parameters.provider, "renamed")


@pytest.mark.parametrize("nat_gateways", [1, 2])
def test_nat_public_ips_are_one_per_nat_gateway(nat_gateways: int) -> None:
    stack = PinnedZonesStack(_app(), "Net", availability_zones=ZONES, env=cdk.Environment(region=REGION))
    network = _network(stack, nat_gateways=nat_gateways, privatelink=None)
    eips = Template.from_stack(stack).find_resources("AWS::EC2::EIP")
    assert stack.availability_zones == list(ZONES)
    assert sorted(stack.resolve(ip)["Fn::GetAtt"][0] for ip in network.nat_public_ips) == sorted(eips)
    assert len(eips) == nat_gateways


def test_privatelink_network_has_no_nat_and_isolated_subnets() -> None:
    stack = PinnedZonesStack(_app(), "Net", availability_zones=ZONES, env=cdk.Environment(region=REGION))
    link = SnowflakePrivateLink(
        endpoint_service="com.amazonaws.vpce.eu-west-1.vpce-svc-0123456789abcdef0",
        account_url="xy1.eu-west-1.privatelink.snowflakecomputing.com",
        ocsp_url="ocsp.xy1.eu-west-1.privatelink.snowflakecomputing.com",
    )
    network = _network(stack, nat_gateways=1, privatelink=link)
    template = Template.from_stack(stack)
    assert network.nat_public_ips == []
    template.resource_count_is("AWS::EC2::NatGateway", 0)
    template.resource_count_is("AWS::EC2::InternetGateway", 0)
    assert len(network.vpc.isolated_subnets) == len(ZONES)
    template.has_resource_properties(
        "AWS::EC2::VPCEndpoint", {"ServiceName": link.endpoint_service, "PrivateDnsEnabled": False}
    )


def _network(stack: cdk.Stack, *, nat_gateways: int, privatelink: SnowflakePrivateLink | None) -> Network:
    return Network(
        stack,
        "Network",
        key=kms.Key(stack, "Key"),
        cidr="10.1.0.0/16",
        availability_zones=ZONES,
        nat_gateways=nat_gateways,
        snowflake_egress_cidrs=["0.0.0.0/0"],
        interface_endpoints=[],
        s3_prefix_list_id=None,
        privatelink=privatelink,
        log_retention=retention(7),
    )
