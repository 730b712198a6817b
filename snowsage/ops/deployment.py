"""Opening a deployment, the errors operations raise, and what several operations ask of it."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError, NoRegionError, ProfileNotFound

from snowsage.aws import aws_error_message
from snowsage.credential_store import CredentialWriteError
from snowsage.keys import PrivateKeyError
from snowsage.settings import RuntimeSettings, is_placeholder
from snowsage.setup_sql import SqlValueError
from snowsage.stack_outputs import Deployment, DeploymentError


class OperationError(Exception):
    """A failure the user can fix; the message says what was seen and what to do next."""


class OptionConflict(OperationError):
    """Options that do not go together for this deployment: a usage error, not a failure."""


# Errors whose message is written for the user; anything else is a bug and keeps its traceback.
_USER_ERRORS = (OperationError, DeploymentError, SqlValueError, PrivateKeyError, CredentialWriteError)


def user_message(exc: BaseException) -> str | None:
    """The one line to show for a failure the user can act on, or None for a bug."""
    if isinstance(exc, _USER_ERRORS):
        return str(exc)
    if isinstance(exc, ClientError | BotoCoreError):
        return aws_error_message(exc)
    return None


def make_session(profile: str | None, region: str | None) -> Any:
    try:
        session = boto3.Session(profile_name=profile, region_name=region)
    except ProfileNotFound:
        raise OperationError(
            f"AWS profile {profile!r} is not configured; see `aws configure list-profiles` or drop --profile"
        ) from None
    if not session.region_name:
        raise OperationError(aws_error_message(NoRegionError()))
    return session


def open_deployment(env_name: str, *, profile: str | None, region: str | None) -> Deployment:
    return Deployment(make_session(profile, region), env_name)


def require_auth(settings: RuntimeSettings, wanted: str, what: str) -> None:
    if settings.auth != wanted:
        raise OperationError(
            f"this deployment uses auth={settings.auth}, so {what} does not apply; it needs auth={wanted} "
            "(set it in cdk.json and redeploy)"
        )


def service_user(dep: Deployment, settings: RuntimeSettings, override: str | None = None) -> str:
    """The user the runtime connects as: the ``user`` parameter when the auth mode has one (it
    changes with `credentials set --user`), else the configured name."""
    if override:
        return override
    if "user" in settings.secret_keys:
        value = dep.require_parameters({"user": settings.parameters["user"]})["user"].value
        if not is_placeholder(value):
            return value
    if settings.user:
        return settings.user
    raise OperationError(
        "the service user name is not configured; pass --user NAME (or set it in cdk.json and redeploy)"
    )
