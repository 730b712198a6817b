"""What every snowsage stack shares: pinned zones, its name, its description and its tags."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import aws_cdk as cdk
from constructs import Construct

from snowsage.settings import stack_name

from .config import AppConfig


class PinnedZonesStack(cdk.Stack):
    """A stack whose availability zones are the ones pinned in config: CDK would otherwise look
    them up in context (and, with an account, ask AWS) at synth."""

    def __init__(
        self, scope: Construct, id: str, *, availability_zones: Sequence[str], **kwargs: Any
    ) -> None:
        # Set first: CDK may read availability_zones while the stack itself is constructed.
        self._zones = list(availability_zones)
        super().__init__(scope, id, **kwargs)

    @property
    def availability_zones(self) -> list[str]:
        return self._zones


class SnowSageStack(PinnedZonesStack):
    """``SnowSage-<env>-<KIND>``, described and tagged alike, so a new stack declares two names."""

    KIND: ClassVar[str]
    DESCRIPTION: ClassVar[str]

    def __init__(self, scope: Construct, *, cfg: AppConfig, env: cdk.Environment) -> None:
        super().__init__(
            scope,
            stack_name(cfg.env_name, self.KIND),
            availability_zones=cfg.availability_zones,
            env=env,
            description=self.DESCRIPTION,
        )
        cdk.Tags.of(self).add("project", "snowsage")
        cdk.Tags.of(self).add("snowsage:env", cfg.env_name)
