"""A deployment as the operator CLI sees it: stack outputs first, then the SSM parameters they name.

Every resource name comes from DescribeStacks outputs of ``SnowSage-<env>-{Network,Data,Notebook}``;
nothing is derived from naming conventions, so a renamed resource cannot be silently missed.
Secret values pass through here in memory only and never appear in an error message.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from snowsage.aws import error_code, get_parameters
from snowsage.settings import RuntimeSettings, SettingsError, stack_name

# Tags on the private_key parameter that remember which Snowflake key slot holds the live key and,
# during a rotation, which slot still holds the key being retired. Tags live with the parameter,
# need no extra resource, and are readable without decrypting anything.
TAG_SLOT = "snowsage:rsa-slot"
TAG_FINGERPRINT = "snowsage:rsa-fingerprint"
TAG_RETIRED_SLOT = "snowsage:rsa-retired-slot"
TAG_RETIRED_FINGERPRINT = "snowsage:rsa-retired-fingerprint"


class DeploymentError(Exception):
    """The deployment cannot be used as found; the message says what was seen and what to do."""


class StackNotDeployed(DeploymentError):
    """DescribeStacks found no stack of that name: a caller may name a more specific fix."""

    def __init__(self, message: str, *, stack: str) -> None:
        super().__init__(message)
        self.stack = stack


@dataclass(frozen=True)
class ParameterValue:
    name: str
    value: str
    last_modified: datetime | None

    def __repr__(self) -> str:  # a stray repr in a traceback must not print a secret
        return f"ParameterValue(name={self.name!r}, value=<hidden>)"


@dataclass
class Deployment:
    session: Any  # boto3.Session
    env_name: str
    _outputs: dict[str, dict[str, str]] = field(default_factory=dict)
    _clients: dict[str, Any] = field(default_factory=dict)

    @property
    def region(self) -> str:
        return str(self.session.region_name)

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self.session.client(service)
        return self._clients[service]

    def stack_name(self, kind: str) -> str:
        return stack_name(self.env_name, kind)

    # --- stack outputs -------------------------------------------------------------------------

    def outputs(self, kind: str) -> dict[str, str]:
        if kind not in self._outputs:
            name = self.stack_name(kind)
            try:
                stacks = self.client("cloudformation").describe_stacks(StackName=name)["Stacks"]
            except ClientError as exc:
                if error_code(exc) == "ValidationError" and "does not exist" in str(exc):
                    raise StackNotDeployed(
                        f"stack {name} is not deployed in {self.region}; deploy it (make deploy) or "
                        f"pass the --env/--region it was deployed with",
                        stack=name,
                    ) from None
                raise
            stack = stacks[0]
            self._outputs[kind] = {o["OutputKey"]: o.get("OutputValue", "") for o in stack.get("Outputs", [])}
            self._outputs[kind]["__status__"] = stack.get("StackStatus", "")
        return self._outputs[kind]

    def output(self, kind: str, key: str, *, required: bool = True) -> str | None:
        outputs = self.outputs(kind)
        value = outputs.get(key)
        if required and not value:
            raise DeploymentError(
                f"stack {self.stack_name(kind)} in {self.region} (status {outputs['__status__']}) has no "
                f"{key} output; redeploy it with the current version of snowsage"
            )
        return value or None

    def settings(self) -> RuntimeSettings:
        raw = self.output("Notebook", "RuntimeSettings")
        try:
            return RuntimeSettings.from_json(
                raw or "", source=f"{self.stack_name('Notebook')} RuntimeSettings output"
            )
        except SettingsError as exc:
            raise DeploymentError(str(exc)) from None

    # --- SSM parameters ------------------------------------------------------------------------

    def get_parameters(
        self, names: Iterable[str], *, decrypt: bool = True
    ) -> dict[str, ParameterValue | None]:
        """Values by name; None for a parameter that does not exist."""
        wanted = list(dict.fromkeys(names))
        read = get_parameters(self.client("ssm"), wanted, decrypt=decrypt)
        return {
            n: ParameterValue(n, read[n]["Value"], read[n].get("LastModifiedDate")) if n in read else None
            for n in wanted
        }

    def require_parameters(self, by_key: Mapping[str, str]) -> dict[str, ParameterValue]:
        """Values by logical key; a missing parameter is an error naming it and the stack that makes it."""
        found = self.get_parameters(by_key.values())
        missing = [f"{name} ({key})" for key, name in by_key.items() if found[name] is None]
        if missing:
            raise DeploymentError(
                f"SSM parameter {', '.join(missing)} does not exist in {self.region}; the "
                f"{self.stack_name('Data')} stack creates it: redeploy it"
            )
        return {key: found[name] for key, name in by_key.items()}  # type: ignore[misc]

    def put_secure(self, name: str, value: str) -> None:
        self.client("ssm").put_parameter(
            Name=name,
            Value=value,
            Type="SecureString",
            KeyId=self.output("Data", "KeyArn"),
            Overwrite=True,
        )

    def tags(self, name: str) -> dict[str, str]:
        resp = self.client("ssm").list_tags_for_resource(ResourceType="Parameter", ResourceId=name)
        return {t["Key"]: t["Value"] for t in resp.get("TagList", [])}

    def set_tags(self, name: str, tags: Mapping[str, str], remove: Iterable[str] = ()) -> None:
        ssm = self.client("ssm")
        if tags:
            ssm.add_tags_to_resource(
                ResourceType="Parameter",
                ResourceId=name,
                Tags=[{"Key": k, "Value": v} for k, v in tags.items()],
            )
        drop = [k for k in remove if k not in tags]
        if drop:
            ssm.remove_tags_from_resource(ResourceType="Parameter", ResourceId=name, TagKeys=drop)
