"""What every snowsage stack shares."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import aws_cdk as cdk
from constructs import Construct


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
