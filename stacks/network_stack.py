"""The private network the notebook and the check function live in."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_kms as kms
from constructs import Construct

from .base import SnowSageStack
from .config import AppConfig
from .constructs.lambda_defaults import retention
from .constructs.network import Network, SnowflakePrivateLink


class NetworkStack(SnowSageStack):
    KIND = "Network"
    DESCRIPTION = "snowsage: private VPC, endpoints, security groups"

    def __init__(self, scope: Construct, *, cfg: AppConfig, env: cdk.Environment, key: kms.IKey) -> None:
        super().__init__(scope, cfg=cfg, env=env)
        privatelink = None
        if cfg.network == "privatelink":
            # config refuses privatelink without all three
            assert (
                cfg.privatelink_endpoint_service and cfg.privatelink_account_url and cfg.privatelink_ocsp_url
            )
            privatelink = SnowflakePrivateLink(
                endpoint_service=cfg.privatelink_endpoint_service,
                account_url=cfg.privatelink_account_url,
                ocsp_url=cfg.privatelink_ocsp_url,
            )
        self.network = Network(
            self,
            "Network",
            key=key,
            cidr=cfg.vpc_cidr,
            availability_zones=cfg.availability_zones[: cfg.max_azs],
            nat_gateways=cfg.nat_gateways,
            snowflake_egress_cidrs=cfg.snowflake_egress_cidrs,
            interface_endpoints=cfg.interface_endpoints,
            s3_prefix_list_id=cfg.s3_prefix_list_id,
            privatelink=privatelink,
            log_retention=retention(cfg.log_retention_days),
        )
        eips = self.network.nat_public_ips
        cdk.CfnOutput(self, "VpcId", value=self.network.vpc.vpc_id)
        cdk.CfnOutput(
            self,
            "NatElasticIps",
            value=cdk.Fn.join(",", eips) if eips else "none",
            description="Public addresses Snowflake sees; list them in a network policy (`snowsage network-policy`)",
        )
