"""Every security property a reviewer checks, asserted on the synthesized templates."""

from __future__ import annotations

import json
import re
from typing import Any

from aws_cdk.assertions import Match

from .conftest import Synth


def _statements(policy: dict[str, Any]) -> list[dict[str, Any]]:
    return policy["Properties"]["PolicyDocument"]["Statement"]


def _actions(stmt: dict[str, Any]) -> set[str]:
    a = stmt["Action"]
    return {a} if isinstance(a, str) else set(a)


def _policy_of_role(s: Synth, kind: str, role_prefix: str) -> dict[str, Any]:
    policies = {
        k: v for k, v in s.resources(kind, "AWS::IAM::ManagedPolicy").items() if k.startswith(role_prefix)
    }
    assert len(policies) == 1, f"expected one managed policy for {role_prefix}, got {list(policies)}"
    return next(iter(policies.values()))


# ------------------------------------------------------------------ notebook


def test_notebook_instance_posture(any_synth: Synth) -> None:
    s = any_synth
    nb = s.template("notebook")
    nb.has_resource_properties(
        "AWS::SageMaker::NotebookInstance",
        {
            "DirectInternetAccess": "Disabled",
            "RootAccess": "Disabled",
            "InstanceMetadataServiceConfiguration": {"MinimumInstanceMetadataServiceVersion": "2"},
            "PlatformIdentifier": "notebook-al2023-v1",
            "InstanceType": s.cfg.notebook_instance_type,
            "VolumeSizeInGB": s.cfg.notebook_volume_gb,
            "KmsKeyId": Match.any_value(),
            "SubnetId": Match.any_value(),
            "SecurityGroupIds": Match.any_value(),
            "LifecycleConfigName": Match.any_value(),
        },
    )
    instance = next(iter(s.resources("notebook", "AWS::SageMaker::NotebookInstance").values()))
    # The subnet is a private one from the network stack, never a public subnet.
    subnet_ref = json.dumps(instance["Properties"]["SubnetId"])
    assert "Private" in subnet_ref or "Isolated" in subnet_ref
    assert "Public" not in subnet_ref
    assert "NotebookSecurityGroup" in json.dumps(instance["Properties"]["SecurityGroupIds"])


def test_notebook_role_has_no_managed_aws_policy_and_exact_permissions(nat: Synth) -> None:
    roles = nat.resources("notebook", "AWS::IAM::Role")
    nb_role = next(v for k, v in roles.items() if k.startswith("NotebookRole"))
    arns = json.dumps(nb_role["Properties"].get("ManagedPolicyArns", []))
    assert "arn:aws:iam::aws:policy" not in arns and "iam::aws:policy" not in arns
    assert nb_role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "Service": "sagemaker.amazonaws.com"
    }
    policy = _policy_of_role(nat, "notebook", "NotebookPolicy")
    by_sid = {st["Sid"]: st for st in _statements(policy)}
    all_actions = set().union(*(_actions(st) for st in by_sid.values()))
    assert all_actions == {
        "ssm:GetParameter",
        "ssm:GetParameters",
        "kms:Decrypt",
        "kms:GenerateDataKey",
        "s3:ListBucket",
        "s3:GetObject",
        "s3:PutObject",
        "s3:DeleteObject",
        "s3:AbortMultipartUpload",
        "logs:CreateLogGroup",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "logs:DescribeLogStreams",
        "sagemaker:DescribeNotebookInstance",
        "sagemaker:StopNotebookInstance",
        # The training pipeline (snowsage.pipeline; exact resources in test_notebook_training.py).
        "sagemaker:DescribePipeline",
        "sagemaker:StartPipelineExecution",
        "sagemaker:ListPipelineExecutions",
        "sagemaker:DescribePipelineExecution",
        "sagemaker:ListPipelineExecutionSteps",
        "sagemaker:ListPipelineParametersForExecution",
        "sagemaker:DescribeTrainingJob",
        "sagemaker:DescribeModelPackage",
        "sagemaker:DescribeModelPackageGroup",
        "sagemaker:ListModelPackages",
    }
    for forbidden in (
        "ssm:PutParameter",
        "ssm:DeleteParameter",
        "ssm:GetParametersByPath",
        "ssm:DescribeParameters",
        "kms:ListAliases",
    ):
        assert forbidden not in all_actions
    # Exact parameter ARNs, no wildcard.
    params = json.dumps(by_sid["ReadSnowflakeParameters"]["Resource"])
    assert "*" not in params
    for name in (
        "account",
        "role",
        "warehouse",
        "database",
        "schema",
        "user",
        "private_key",
        "private_key_passphrase",
    ):
        assert f"parameter/snowsage/dev/snowflake/{name}" in params
    assert by_sid["DecryptParametersViaSsm"]["Condition"] == {
        "StringEquals": {"kms:ViaService": "ssm.us-east-1.amazonaws.com"}
    }
    assert by_sid["UseResultsBucketKeyViaS3"]["Condition"] == {
        "StringEquals": {"kms:ViaService": "s3.us-east-1.amazonaws.com"}
    }
    # Stop/describe exactly this notebook.
    assert "notebook-instance/snowsage-dev" in json.dumps(by_sid["IdleStopItself"]["Resource"])
    assert "*" not in json.dumps(by_sid["IdleStopItself"]["Resource"])


def _joined_text(value: Any) -> str:
    """A Fn::Join (or a plain string) as text, every token written as <token>."""
    if isinstance(value, str):
        return value
    return "".join(p if isinstance(p, str) else "<token>" for p in value["Fn::Join"][1])


def test_notebook_s3_access_is_results_and_its_own_backups_only(any_synth: Synth) -> None:
    from snowsage.notebook import RESULTS_PREFIX, result_key

    s = any_synth
    bucket = f"arn:aws:s3:::snowsage-{s.cfg.env_name}-results-<token>-us-east-1"
    backups = f"backups/snowsage-{s.cfg.env_name}/"
    policy = _policy_of_role(s, "notebook", "NotebookPolicy")
    s3 = [st for st in _statements(policy) if any(a.startswith("s3:") for a in _actions(st))]
    by_sid = {st["Sid"]: st for st in s3}
    # ReadModelArtefacts: the training runs' models and manifests, read-only (test_notebook_training.py).
    assert set(by_sid) == {"ListOwnPrefixes", "ReadWriteOwnObjects", "ReadWheelhouse", "ReadModelArtefacts"}
    listing = by_sid["ListOwnPrefixes"]
    assert _actions(listing) == {"s3:ListBucket"} and _joined_text(listing["Resource"]) == bucket
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["results/*", f"{backups}*"]}}
    objects = by_sid["ReadWriteOwnObjects"]
    assert sorted(_joined_text(r) for r in objects["Resource"]) == [
        f"{bucket}/{backups}*",
        f"{bucket}/results/*",
    ]
    # Where the notebook helper and the lifecycle scripts actually read and write.
    assert result_key("quickstart/housing").startswith(RESULTS_PREFIX) and RESULTS_PREFIX == "results/"
    lc = next(iter(s.resources("notebook", "AWS::SageMaker::NotebookInstanceLifecycleConfig").values()))
    for phase in ("OnCreate", "OnStart"):
        script = _joined_text(lc["Properties"][phase][0]["Content"]["Fn::Base64"])
        uri = re.search(r"BACKUP_S3_URI='s3://([^/']+)/([^']*)'", script)
        assert uri, phase
        assert f"arn:aws:s3:::{uri.group(1)}" == bucket and uri.group(2) == backups, phase


def test_service_role_trust_is_scoped_to_this_account(any_synth: Synth) -> None:
    account = {"Ref": "AWS::AccountId"}

    def trust(kind: str, prefix: str) -> dict[str, Any]:
        roles = [v for k, v in any_synth.resources(kind, "AWS::IAM::Role").items() if k.startswith(prefix)]
        assert len(roles) == 1, prefix
        (statement,) = roles[0]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        return statement

    notebook = trust("notebook", "NotebookRole")
    assert notebook["Principal"] == {"Service": "sagemaker.amazonaws.com"}
    assert notebook["Condition"] == {"StringEquals": {"aws:SourceAccount": account}}
    flow = trust("network", "NetworkFlowLogRole")
    assert flow["Principal"] == {"Service": "vpc-flow-logs.amazonaws.com"}
    assert flow["Condition"]["StringEquals"] == {"aws:SourceAccount": account}
    assert _joined_text(flow["Condition"]["ArnLike"]["aws:SourceArn"]) == (
        "arn:aws:ec2:us-east-1:<token>:vpc-flow-log/*"
    )


def test_notebook_lifecycle_scripts_rendered_and_small(any_synth: Synth) -> None:
    lc = next(
        iter(any_synth.resources("notebook", "AWS::SageMaker::NotebookInstanceLifecycleConfig").values())
    )
    for phase in ("OnCreate", "OnStart"):
        content = lc["Properties"][phase][0]["Content"]
        # Content is Fn::Base64 of a Fn::Join of the script around the stack's tokens.
        joined = content["Fn::Base64"]
        text = (
            "".join(p for p in joined["Fn::Join"][1] if isinstance(p, str))
            if isinstance(joined, dict)
            else joined
        )
        assert text.startswith("#!/bin/bash")
        assert "set -euo pipefail" in text
        assert not re.search(r"@@[A-Z][A-Z0-9_]*@@", text.replace("@@NAME@@", "")), "unrendered placeholder"
        # SageMaker's 16,384-character limit applies to the base64 content (about 12,288 bytes of
        # script); leave room for the settings and URIs CloudFormation fills in.
        assert len(text) < 12_288 - 3_000, len(text)


# ------------------------------------------------------------------ parameters and key


def test_kms_key_rotation_and_retention(nat: Synth) -> None:
    data = nat.template("data")
    data.has_resource(
        "AWS::KMS::Key",
        {
            "Properties": {"EnableKeyRotation": True},
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
        },
    )


def test_secure_parameters_created_by_provider_with_placeholder_only(any_synth: Synth) -> None:
    s = any_synth
    custom = s.resources("data", "Custom::SnowsageSecureParameter")
    names = sorted(v["Properties"]["ParameterName"] for v in custom.values())
    expected = {
        "keypair": ["private_key", "private_key_passphrase", "user"],
        "password": ["password", "user"],
        "wif": [],
    }[s.cfg.auth]
    assert names == [f"/snowsage/{s.cfg.env_name}/snowflake/{k}" for k in expected]
    for v in custom.values():
        props = v["Properties"]
        assert set(props) == {
            "ServiceToken",
            "ParameterName",
            "KmsKeyId",
            "Description",
            "InitialValue",
            "RemovalPolicy",
        }
        assert props["InitialValue"] in ("snowsage:not-set", s.cfg.snowflake_user)
        assert props["RemovalPolicy"] == s.cfg.removal_policy
    # No SecureString goes through CloudFormation's own parameter type.
    for p in s.resources("data", "AWS::SSM::Parameter").values():
        assert p["Properties"]["Type"] == "String"


def test_plain_settings_parameters(nat: Synth) -> None:
    values = {
        v["Properties"]["Name"]: v["Properties"]["Value"]
        for v in nat.resources("data", "AWS::SSM::Parameter").values()
    }
    assert values == {
        "/snowsage/dev/snowflake/account": "myorg-myaccount",
        "/snowsage/dev/snowflake/role": "SNOWSAGE_ROLE",
        "/snowsage/dev/snowflake/warehouse": "SNOWSAGE_WH",
        "/snowsage/dev/snowflake/database": "ANALYTICS",
        "/snowsage/dev/snowflake/schema": "PUBLIC",
    }


def test_privatelink_host_is_a_setting(privatelink: Synth) -> None:
    values = {
        v["Properties"]["Name"]: v["Properties"]["Value"]
        for v in privatelink.resources("data", "AWS::SSM::Parameter").values()
    }
    assert values["/snowsage/pl/snowflake/host"] == "xy12345.us-east-1.privatelink.snowflakecomputing.com"


def test_provider_role_touches_only_the_credential_parameters(nat: Synth) -> None:
    policy = _policy_of_role(nat, "data", "SnowflakeProviderHandlerRole")
    by_sid = {st["Sid"]: st for st in _statements(policy)}
    resources = json.dumps(by_sid["ManageCredentialParameters"]["Resource"])
    assert "*" not in resources
    assert resources.count("parameter/snowsage/dev/snowflake/") == 3
    assert (
        by_sid["EncryptViaSsm"]["Condition"]["StringEquals"]["kms:ViaService"]
        == "ssm.us-east-1.amazonaws.com"
    )


# ------------------------------------------------------------------ bucket


def test_results_bucket_posture(any_synth: Synth) -> None:
    s = any_synth
    data = s.template("data")
    buckets = s.resources("data", "AWS::S3::Bucket")
    results = next(v for k, v in buckets.items() if k.startswith("ResultsBucket"))
    props = results["Properties"]
    assert (
        props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"][
            "SSEAlgorithm"
        ]
        == "aws:kms"
    )
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    assert "LoggingConfiguration" in props
    expected_policy = "Retain" if s.cfg.removal_policy == "retain" else "Delete"
    assert results["DeletionPolicy"] == expected_policy
    data.has_resource_properties(
        "AWS::S3::BucketPolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}}
                        )
                    ]
                )
            }
        },
    )


# ------------------------------------------------------------------ network


def _egress_rules(s: Synth, sg_prefix: str) -> list[dict[str, Any]]:
    sg = next(
        v for k, v in s.resources("network", "AWS::EC2::SecurityGroup").items() if k.startswith(sg_prefix)
    )
    rules = list(sg["Properties"].get("SecurityGroupEgress", []))
    rules += [
        v["Properties"]
        for v in s.resources("network", "AWS::EC2::SecurityGroupEgress").values()
        if sg_prefix in json.dumps(v["Properties"]["GroupId"])
    ]
    return rules


def test_security_groups_egress_only_443_and_80(any_synth: Synth) -> None:
    s = any_synth
    for prefix in ("NetworkNotebookSecurityGroup", "NetworkCheckFunctionSecurityGroup"):
        rules = _egress_rules(s, prefix)
        assert rules, prefix
        for rule in rules:
            assert rule["IpProtocol"] == "tcp"
            assert (rule["FromPort"], rule["ToPort"]) in ((443, 443), (80, 80)), rule
            assert rule.get("Description"), rule
        cidrs = {r["CidrIp"] for r in rules if "CidrIp" in r}
        assert cidrs == set(s.cfg.snowflake_egress_cidrs)
        to_endpoints = [
            r for r in rules if "EndpointSecurityGroup" in json.dumps(r.get("DestinationSecurityGroupId", ""))
        ]
        assert {r["FromPort"] for r in to_endpoints} == ({443} if s.cfg.network == "nat" else {443, 80})


def test_no_ingress_except_into_endpoint_group(any_synth: Synth) -> None:
    s = any_synth
    for k, sg in s.resources("network", "AWS::EC2::SecurityGroup").items():
        if k.startswith("NetworkEndpointSecurityGroup"):
            continue
        assert not sg["Properties"].get("SecurityGroupIngress"), k
    ingress = list(s.resources("network", "AWS::EC2::SecurityGroupIngress").values())
    assert ingress
    for rule in ingress:
        p = rule["Properties"]
        assert "EndpointSecurityGroup" in json.dumps(p["GroupId"])
        assert "CidrIp" not in p, "endpoints accept traffic only from our two security groups"
        assert p["FromPort"] in (443, 80) and p.get("Description")


def test_vpc_flow_logs_encrypted_with_retention(any_synth: Synth) -> None:
    net = any_synth.template("network")
    net.has_resource_properties(
        "AWS::EC2::FlowLog", {"TrafficType": "ALL", "LogDestinationType": "cloud-watch-logs"}
    )
    net.has_resource_properties(
        "AWS::Logs::LogGroup",
        {"KmsKeyId": Match.any_value(), "RetentionInDays": any_synth.cfg.log_retention_days},
    )


def test_nat_mode_subnets_and_gateways(nat: Synth) -> None:
    net = nat.template("network")
    net.resource_count_is("AWS::EC2::NatGateway", nat.cfg.nat_gateways)
    net.resource_count_is("AWS::EC2::Subnet", 2 * nat.cfg.max_azs)
    for subnet in nat.resources("network", "AWS::EC2::Subnet").values():
        assert subnet["Properties"]["MapPublicIpOnLaunch"] is False
    net.has_resource_properties(
        "AWS::EC2::VPCEndpoint", {"VpcEndpointType": "Gateway", "ServiceName": Match.any_value()}
    )
    outputs = nat.raw("network")["Outputs"]
    eips = json.dumps(outputs["NatElasticIps"]["Value"])
    assert eips.count('"PublicIp"') == nat.cfg.nat_gateways


def test_privatelink_mode_has_no_internet_and_resolves_snowflake_privately(privatelink: Synth) -> None:
    net = privatelink.template("network")
    net.resource_count_is("AWS::EC2::NatGateway", 0)
    net.resource_count_is("AWS::EC2::InternetGateway", 0)
    net.has_resource_properties(
        "AWS::EC2::VPCEndpoint",
        {
            "ServiceName": "com.amazonaws.vpce.us-east-1.vpce-svc-0123456789abcdef0",
            "VpcEndpointType": "Interface",
            "PrivateDnsEnabled": False,
        },
    )
    net.has_resource_properties("AWS::Route53::HostedZone", {"Name": "privatelink.snowflakecomputing.com."})
    records = {
        r["Properties"]["Name"] for r in privatelink.resources("network", "AWS::Route53::RecordSet").values()
    }
    assert records == {
        "xy12345.us-east-1.privatelink.snowflakecomputing.com.",
        "ocsp.xy12345.us-east-1.privatelink.snowflakecomputing.com.",
    }
    services = json.dumps(
        [
            v["Properties"]["ServiceName"]
            for v in privatelink.resources("network", "AWS::EC2::VPCEndpoint").values()
        ]
    )
    for svc in (".ssm", ".kms", ".logs", ".sagemaker.api", "sagemaker.", ".sts", ".monitoring", ".s3"):
        assert svc in services, svc


def test_nat_mode_has_no_interface_endpoints_by_default(nat: Synth) -> None:
    types = [
        v["Properties"]["VpcEndpointType"] for v in nat.resources("network", "AWS::EC2::VPCEndpoint").values()
    ]
    assert types == ["Gateway"]


# ------------------------------------------------------------------ check function


def test_check_function_shell(any_synth: Synth) -> None:
    s = any_synth
    fn = next(
        v
        for k, v in s.resources("notebook", "AWS::Lambda::Function").items()
        if k.startswith("CheckFunction")
    )
    p = fn["Properties"]
    assert p["FunctionName"] == f"snowsage-{s.cfg.env_name}-check"
    assert f'\\"check_function\\":\\"snowsage-{s.cfg.env_name}-check\\"' in json.dumps(p["Environment"])
    assert p["Architectures"] == ["arm64"]
    assert p["Runtime"] == "python3.14"
    assert p["ReservedConcurrentExecutions"] >= 1
    assert p["TracingConfig"] == {"Mode": "Active"}
    assert "SubnetIds" in p["VpcConfig"] and "CheckFunctionSecurityGroup" in json.dumps(
        p["VpcConfig"]["SecurityGroupIds"]
    )
    assert "DeadLetterConfig" in p
    env = p["Environment"]["Variables"]
    settings = json.dumps(env["SNOWSAGE_SETTINGS"])
    assert "/snowsage/" in settings and "snowsage:not-set" not in settings
    assert set(env) == {
        "SNOWSAGE_SETTINGS",
        "POWERTOOLS_SERVICE_NAME",
        "POWERTOOLS_METRICS_NAMESPACE",
        "POWERTOOLS_LOG_LEVEL",
    }


def test_check_role_least_privilege(nat: Synth) -> None:
    policy = _policy_of_role(nat, "notebook", "CheckRolePolicy")
    by_sid = {st["Sid"]: st for st in _statements(policy)}
    assert _actions(by_sid["ReadSnowflakeParameters"]) == {"ssm:GetParameter", "ssm:GetParameters"}
    assert "*" not in json.dumps(by_sid["ReadSnowflakeParameters"]["Resource"])
    assert (
        by_sid["DecryptParametersViaSsm"]["Condition"]["StringEquals"]["kms:ViaService"]
        == "ssm.us-east-1.amazonaws.com"
    )
    wildcard = [st for st in by_sid.values() if st["Resource"] == "*"]
    assert [st["Sid"] for st in wildcard] == ["VpcNetworkInterfacesAndTracing"]
    assert all(a.startswith(("ec2:", "xray:")) for a in _actions(wildcard[0]))
    roles = nat.resources("notebook", "AWS::IAM::Role")
    check_role = next(v for k, v in roles.items() if k.startswith("CheckRole"))
    assert "iam::aws:policy" not in json.dumps(check_role["Properties"].get("ManagedPolicyArns", []))


def test_schedule_alarm_and_encrypted_topic(any_synth: Synth) -> None:
    s = any_synth
    nb = s.template("notebook")
    nb.has_resource_properties(
        "AWS::Events::Rule", {"ScheduleExpression": s.cfg.check_schedule, "State": "ENABLED"}
    )
    nb.has_resource_properties("AWS::SNS::Topic", {"KmsMasterKeyId": Match.any_value()})
    nb.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "MetricName": "CheckFailed",
            "Namespace": "SnowSage",
            "Threshold": 1,
            "TreatMissingData": "notBreaching",
        },
    )
    nb.has_resource_properties("AWS::SQS::Queue", {"KmsMasterKeyId": Match.any_value()})
    subs = s.resources("notebook", "AWS::SNS::Subscription")
    if s.cfg.alarm_email:
        assert [v["Properties"]["Endpoint"] for v in subs.values()] == [s.cfg.alarm_email]
    else:
        assert not subs


def test_outputs_a_user_needs(nat: Synth) -> None:
    assert set(nat.raw("notebook")["Outputs"]) >= {
        "RuntimeSettings",
        "NotebookName",
        "CheckFunctionName",
        "NotebookRoleArn",
        "CheckFunctionRoleArn",
    }
    assert set(nat.raw("data")["Outputs"]) >= {"KeyArn", "ResultsBucketName", "ParameterPrefix"}
    assert set(nat.raw("network")["Outputs"]) >= {"VpcId", "NatElasticIps"}


def test_no_secret_material_anywhere_in_templates(any_synth: Synth) -> None:
    for kind, template in any_synth.templates.items():
        text = json.dumps(template)
        assert "PRIVATE KEY" not in text, kind
        assert "SecureString" not in text or kind == "data", kind


def test_wheelhouse_asset_readable_only_by_the_notebook_role(nat: Synth) -> None:
    policy = _policy_of_role(nat, "notebook", "NotebookPolicy")
    stmt = next(st for st in _statements(policy) if st["Sid"] == "ReadWheelhouse")
    assert _actions(stmt) == {"s3:GetObject"}
    resource = json.dumps(stmt["Resource"])
    assert resource.count(".zip") == 1 and "*" not in resource
    object_key = next(p for p in stmt["Resource"]["Fn::Join"][1] if isinstance(p, str) and ".zip" in p).split(
        "/"
    )[-1]
    readers = [
        (kind, k)
        for kind, template in nat.templates.items()
        for k, v in template["Resources"].items()
        if v["Type"] in ("AWS::IAM::ManagedPolicy", "AWS::IAM::Policy") and object_key in json.dumps(v)
    ]
    assert readers == [
        (
            "notebook",
            next(
                k
                for k in nat.resources("notebook", "AWS::IAM::ManagedPolicy")
                if k.startswith("NotebookPolicy")
            ),
        )
    ]
