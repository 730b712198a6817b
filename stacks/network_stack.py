"""The private network the notebook and the check function live in."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_kms as kms
from constructs import Construct

from .config import AppConfig
from .constructs.network import Network


class NetworkStack(cdk.Stack):
    @property
    def availability_zones(self) -> list[str]:
        """The zones pinned in config: no context lookup (and no AWS call) at synth."""
        return self._zones

    def __init__(self, scope: Construct, id: str, *, cfg: AppConfig, key: kms.IKey, **kwargs: object) -> None:
        super().__init__(scope, id, **kwargs)  # type: ignore[arg-type]
        self._zones = list(cfg.availability_zones)
        self.network = Network(self, "Network", cfg=cfg, key=key)
        eips = [
            child.attr_public_ip
            for subnet in self.network.vpc.public_subnets
            for child in subnet.node.children
            if isinstance(child, ec2.CfnEIP)
        ]
        cdk.CfnOutput(self, "VpcId", value=self.network.vpc.vpc_id)
        cdk.CfnOutput(
            self,
            "NatElasticIps",
            value=cdk.Fn.join(",", eips) if eips else "none",
            description="Public addresses Snowflake sees; list them in a network policy (`snowsage network-policy`)",
        )
