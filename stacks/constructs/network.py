"""The private network: VPC, flow logs, AWS service endpoints, Snowflake egress, security groups.

Nothing here accepts traffic from outside the VPC. The notebook and the check function may only
reach Snowflake (443, and 80 for OCSP) and the VPC endpoints (443).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_route53 as route53
from constructs import Construct, Dependable

from .lambda_defaults import log_group
from .nag import acknowledge, checkov_skip, created_by_cdk, least_privilege_role

ENDPOINT_SERVICES = {
    "ssm": ec2.InterfaceVpcEndpointAwsService.SSM,
    "kms": ec2.InterfaceVpcEndpointAwsService.KMS,
    "logs": ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_LOGS,
    "monitoring": ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_MONITORING,
    "sts": ec2.InterfaceVpcEndpointAwsService.STS,
    "sagemaker_api": ec2.InterfaceVpcEndpointAwsService.SAGEMAKER_API,
    "sagemaker_notebook": ec2.InterfaceVpcEndpointAwsService.SAGEMAKER_NOTEBOOK,
    "lambda": ec2.InterfaceVpcEndpointAwsService.LAMBDA_,
}
# CDK's singleton provider behind restrict_default_security_group, in the stack; no public handle.
DEFAULT_SG_PROVIDER_HANDLER = ("Custom::VpcRestrictDefaultSGCustomResourceProvider", "Handler")


@dataclass(frozen=True)
class SnowflakePrivateLink:
    """What ``SELECT SYSTEM$GET_PRIVATELINK_CONFIG();`` returns, for the endpoint and its DNS."""

    endpoint_service: str
    account_url: str
    ocsp_url: str


class Network(Construct):
    """With ``privatelink`` the subnets are isolated and Snowflake is reached through its
    endpoint; without, private subnets leave through NAT gateways."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        key: kms.IKey,
        cidr: str,
        availability_zones: Sequence[str],
        nat_gateways: int,
        snowflake_egress_cidrs: Sequence[str],
        interface_endpoints: Sequence[str],
        s3_prefix_list_id: str | None,
        privatelink: SnowflakePrivateLink | None,
        log_retention: logs.RetentionDays,
    ) -> None:
        super().__init__(scope, id)
        nat = privatelink is None
        if nat:
            subnets = [
                ec2.SubnetConfiguration(
                    name="Public",
                    subnet_type=ec2.SubnetType.PUBLIC,
                    cidr_mask=24,
                    map_public_ip_on_launch=False,
                ),
                ec2.SubnetConfiguration(
                    name="Private", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS, cidr_mask=20
                ),
            ]
        else:
            subnets = [
                ec2.SubnetConfiguration(
                    name="Isolated", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED, cidr_mask=20
                )
            ]
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr(cidr),
            availability_zones=list(availability_zones),
            nat_gateways=nat_gateways if nat else 0,
            subnet_configuration=subnets,
            restrict_default_security_group=True,
            enable_dns_hostnames=True,
            enable_dns_support=True,
        )
        for subnet in [*self.vpc.public_subnets, *self.vpc.private_subnets, *self.vpc.isolated_subnets]:
            acknowledge(
                subnet.node.default_child or subnet,
                "CloudFormation-Validate::W3010",
                "Zones are pinned in config (`availability_zones`) on purpose: synth must never look them up with AWS credentials.",
            )
        # A public subnet's internet_connectivity_established is its route to the internet gateway
        # (and the route table association): the public handle on that route.
        routes = [
            root
            for subnet in self.vpc.public_subnets
            for root in Dependable.of(subnet.internet_connectivity_established).dependency_roots
            if isinstance(root, ec2.CfnRoute)
        ]
        for route in routes:
            for pack in ("NIST.800.53.R5", "HIPAA.Security"):
                acknowledge(
                    route,
                    f"{pack}-VPCNoUnrestrictedRouteToIGW",
                    "Public subnets hold only the NAT gateways, whose default route must reach the "
                    "internet gateway; the notebook and the function sit in private subnets.",
                )
        self._skip_checkov_on_default_sg_provider()
        self.private_subnets = ec2.SubnetSelection(
            subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS if nat else ec2.SubnetType.PRIVATE_ISOLATED
        )
        flow_logs = log_group(self, "FlowLogs", key=key, retention=log_retention)
        stack = cdk.Stack.of(self)
        flow_role = least_privilege_role(
            self,
            "FlowLogRole",
            service="vpc-flow-logs.amazonaws.com",
            description="VPC flow logs: write to the flow-log group only",
            # Flow logs send both keys when they assume the role (confused-deputy guard): only flow
            # logs of this account and region may write through it.
            trust_conditions={
                "StringEquals": {"aws:SourceAccount": stack.account},
                "ArnLike": {
                    "aws:SourceArn": stack.format_arn(
                        service="ec2", resource="vpc-flow-log", resource_name="*"
                    )
                },
            },
            statements=[
                iam.PolicyStatement(
                    sid="WriteFlowLogs",
                    actions=["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
                    resources=[flow_logs.log_group_arn],
                )
            ],
        )
        self.vpc.add_flow_log(
            "FlowLog",
            destination=ec2.FlowLogDestination.to_cloud_watch_logs(
                flow_logs, flow_role.without_policy_updates()
            ),
            traffic_type=ec2.FlowLogTrafficType.ALL,
        )
        self.s3_endpoint = self.vpc.add_gateway_endpoint("S3", service=ec2.GatewayVpcEndpointAwsService.S3)

        self.endpoint_sg = self._security_group(
            "EndpointSecurityGroup", "VPC endpoints: HTTPS from the notebook and the check function only"
        )
        self.notebook_sg = self._security_group(
            "NotebookSecurityGroup", "snowsage notebook: egress to Snowflake and VPC endpoints only"
        )
        self.function_sg = self._security_group(
            "CheckFunctionSecurityGroup",
            "snowsage check function: egress to Snowflake and VPC endpoints only",
        )
        for sg, who in ((self.notebook_sg, "notebook"), (self.function_sg, "check function")):
            self.endpoint_sg.add_ingress_rule(sg, ec2.Port.tcp(443), f"HTTPS from the {who} to VPC endpoints")
            sg.add_egress_rule(
                self.endpoint_sg,
                ec2.Port.tcp(443),
                "HTTPS to VPC endpoints (AWS APIs, Snowflake PrivateLink)",
            )
            # In privatelink mode the subnets have no route out of the VPC, so these CIDRs reach
            # only the Snowflake endpoint and the S3 gateway endpoint.
            for egress in snowflake_egress_cidrs:
                sg.add_egress_rule(ec2.Peer.ipv4(egress), ec2.Port.tcp(443), f"HTTPS to Snowflake ({egress})")
                sg.add_egress_rule(
                    ec2.Peer.ipv4(egress),
                    ec2.Port.tcp(80),
                    f"OCSP certificate checks for Snowflake ({egress})",
                )
            if not nat:
                self.endpoint_sg.add_ingress_rule(
                    sg, ec2.Port.tcp(80), f"OCSP over PrivateLink from the {who}"
                )
                sg.add_egress_rule(
                    self.endpoint_sg, ec2.Port.tcp(80), "OCSP certificate checks over Snowflake PrivateLink"
                )

        for name in interface_endpoints:
            self.vpc.add_interface_endpoint(
                f"Endpoint-{name}",
                service=ENDPOINT_SERVICES[name],
                subnets=self.private_subnets,
                security_groups=[self.endpoint_sg],
                private_dns_enabled=True,
                open=False,
            )

        if s3_prefix_list_id:
            # Restricted egress CIDRs do not cover S3; its gateway endpoint is reached by prefix list.
            for sg in (self.notebook_sg, self.function_sg):
                sg.add_egress_rule(
                    ec2.Peer.prefix_list(s3_prefix_list_id),
                    ec2.Port.tcp(443),
                    "HTTPS to S3 through the gateway endpoint",
                )
        if privatelink is not None:
            self._snowflake_privatelink(privatelink)

    @property
    def nat_public_ips(self) -> list[str]:
        """The NAT gateways' Elastic IPs (what Snowflake sees). CDK keeps no handle on them, so
        they are found by type, not by the id CDK happens to give them."""
        return [
            child.attr_public_ip
            for subnet in self.vpc.public_subnets
            for child in subnet.node.children
            if isinstance(child, ec2.CfnEIP)
        ]

    def _skip_checkov_on_default_sg_provider(self) -> None:
        """restrict_default_security_group adds CDK's own deploy-time provider to the stack."""
        handler = created_by_cdk(cdk.Stack.of(self), *DEFAULT_SG_PROVIDER_HANDLER)
        for check, reason in (
            (
                "CKV_AWS_115",
                "CDK's deploy-time provider that removes the default security group's rules; runs once per deployment.",
            ),
            ("CKV_AWS_116", "Invoked synchronously by CloudFormation; a DLQ would never receive anything."),
            (
                "CKV_AWS_117",
                "CDK's deploy-time provider only calls the EC2 API to close the default security group.",
            ),
        ):
            checkov_skip(handler, check, reason)

    def _security_group(self, id: str, description: str) -> ec2.SecurityGroup:
        return ec2.SecurityGroup(self, id, vpc=self.vpc, description=description, allow_all_outbound=False)

    def _snowflake_privatelink(self, privatelink: SnowflakePrivateLink) -> None:
        endpoint = ec2.InterfaceVpcEndpoint(
            self,
            "SnowflakePrivateLink",
            vpc=self.vpc,
            service=ec2.InterfaceVpcEndpointService(privatelink.endpoint_service, 443),
            subnets=self.private_subnets,
            security_groups=[self.endpoint_sg],
            private_dns_enabled=False,
            open=False,
        )
        zone = route53.PrivateHostedZone(
            self, "SnowflakePrivateZone", zone_name="privatelink.snowflakecomputing.com", vpc=self.vpc
        )
        endpoint_dns = cdk.Fn.select(
            1, cdk.Fn.split(":", cdk.Fn.select(0, endpoint.vpc_endpoint_dns_entries))
        )
        for id, host in (
            ("AccountRecord", privatelink.account_url),
            ("OcspRecord", privatelink.ocsp_url),
        ):
            route53.CnameRecord(
                self,
                id,
                zone=zone,
                record_name=f"{host}.",
                domain_name=endpoint_dns,
                ttl=cdk.Duration.minutes(5),
            )
        self.snowflake_endpoint = endpoint
