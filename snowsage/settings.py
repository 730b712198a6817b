"""Where a deployment keeps its Snowflake settings and credentials: the non-secret runtime contract.

The stacks produce one ``RuntimeSettings`` document (the check function's ``SNOWSAGE_SETTINGS``
environment variable, the notebook's settings file written by the lifecycle script, the
``RuntimeSettings`` stack output read by the CLI); the Lambda, the notebook helper and the CLI all
parse it here. It names SSM parameters; it never holds a secret.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Value the secure-parameter provider writes into a new SecureString parameter. Anything still
# holding it is reported as "not set" and never sent to Snowflake.
PLACEHOLDER = "snowsage:not-set"

AUTH_MODES = ("keypair", "password", "wif")

# SecureString parameters per auth mode (wif has no secret at all).
SECRET_KEYS_BY_AUTH: dict[str, tuple[str, ...]] = {
    "keypair": ("user", "private_key", "private_key_passphrase"),
    "password": ("user", "password"),
    "wif": (),
}
ALL_SECRET_KEYS = ("user", "private_key", "private_key_passphrase", "password")

# Plain String parameters; host/port/protocol exist only when configured (PrivateLink, sandbox).
SETTING_KEYS = ("account", "role", "warehouse", "database", "schema", "host", "port", "protocol")
REQUIRED_SETTING_KEYS = ("account", "role", "warehouse", "database", "schema")

# Where the notebook lifecycle script writes the settings file.
NOTEBOOK_SETTINGS_PATH = Path("/home/ec2-user/SageMaker/.snowsage/settings.json")

SETTINGS_ENV_VAR = "SNOWSAGE_SETTINGS"

# RuntimeSettings.extra[TRAINING_SETTINGS_KEY]: the Training stack's outputs the notebook uses, by
# output key (TRAINING_OUTPUT_KEYS), written by the Notebook stack from the same deterministic names,
# because the notebook role may not call DescribeStacks. Absent: the deployment has no training.
TRAINING_SETTINGS_KEY = "training"
TRAINING_OUTPUT_KEYS = ("TrainingPipelineName", "ModelPackageGroupName", "TrainingExportFunctionName")

# The stacks are named with it and the CLI finds them by it: one pattern for both sides.
STACK_KINDS = ("Network", "Data", "Notebook")


def stack_name(env_name: str, kind: str) -> str:
    """``SnowSage-<env>-<Kind>``, e.g. ``SnowSage-dev-Network``."""
    return f"SnowSage-{env_name}-{kind}"


class SettingsError(ValueError):
    """The runtime settings document is missing or malformed."""


@dataclass(frozen=True)
class RuntimeSettings:
    env_name: str
    region: str
    auth: str
    # logical key (account, role, ..., user, private_key, ...) -> SSM parameter name
    parameters: Mapping[str, str]
    user: str = ""  # the configured service user name (used by wif and the setup SQL)
    bucket: str | None = None
    notebook_name: str | None = None
    check_function: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.auth not in AUTH_MODES:
            raise SettingsError(f"auth is {self.auth!r}; expected one of {', '.join(AUTH_MODES)}")
        missing = [k for k in (*REQUIRED_SETTING_KEYS, *self.secret_keys) if k not in self.parameters]
        if missing:
            raise SettingsError(
                f"settings name no SSM parameter for {', '.join(missing)}; redeploy the stacks "
                "so the settings are regenerated"
            )

    @property
    def secret_keys(self) -> tuple[str, ...]:
        return SECRET_KEYS_BY_AUTH[self.auth]

    @property
    def setting_keys(self) -> tuple[str, ...]:
        return tuple(k for k in SETTING_KEYS if k in self.parameters)

    def secret_parameter_names(self) -> dict[str, str]:
        return {k: self.parameters[k] for k in self.secret_keys}

    def setting_parameter_names(self) -> dict[str, str]:
        return {k: self.parameters[k] for k in self.setting_keys}

    def to_dict(self) -> dict[str, Any]:
        return {
            "env_name": self.env_name,
            "region": self.region,
            "auth": self.auth,
            "parameters": dict(self.parameters),
            "user": self.user,
            "bucket": self.bucket,
            "notebook_name": self.notebook_name,
            "check_function": self.check_function,
            **({"extra": dict(self.extra)} if self.extra else {}),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "settings") -> RuntimeSettings:
        try:
            return cls(
                env_name=str(data["env_name"]),
                region=str(data["region"]),
                auth=str(data["auth"]),
                parameters=dict(data["parameters"]),
                user=str(data.get("user") or ""),
                bucket=data.get("bucket") or None,
                notebook_name=data.get("notebook_name") or None,
                check_function=data.get("check_function") or None,
                extra=dict(data.get("extra") or {}),
            )
        except KeyError as exc:
            raise SettingsError(f"{source} has no {exc.args[0]!r} field; redeploy the stacks") from None
        except (TypeError, ValueError) as exc:
            if isinstance(exc, SettingsError):
                raise
            raise SettingsError(f"{source} is malformed: {exc}") from None

    @classmethod
    def from_json(cls, text: str, *, source: str = "settings") -> RuntimeSettings:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SettingsError(f"{source} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
        if not isinstance(data, dict):
            raise SettingsError(f"{source} is not a JSON object")
        return cls.from_dict(data, source=source)

    @classmethod
    def from_file(cls, path: Path | str = NOTEBOOK_SETTINGS_PATH) -> RuntimeSettings:
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise SettingsError(
                f"settings file {p} does not exist: the notebook's lifecycle script writes it on "
                "start; restart the notebook instance, or check the lifecycle log in CloudWatch "
                "(/aws/sagemaker/NotebookInstances, stream <notebook>/LifecycleConfigOnStart)"
            ) from None
        return cls.from_json(text, source=str(p))


def is_placeholder(value: str | None) -> bool:
    return value is None or value.strip() == "" or value.strip() == PLACEHOLDER
