"""AWS plumbing shared by the CLI, the notebook helper and the Lambdas: keep the SDK's DEBUG logs
(which print request and response bodies, so secrets) quiet, name an AWS error's cause and fix, and
read any number of SSM parameters.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterable, Iterator
from typing import Any

from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
)
from botocore.retries.standard import RetryContext, ThrottledRetryableChecker

# botocore logs request bodies (PutParameter's Value) and response bodies (GetParameters
# WithDecryption's values) at DEBUG; urllib3, boto3 and s3transfer log around them.
SDK_LOGGERS = ("botocore", "boto3", "urllib3", "s3transfer")
QUIET_LEVEL = logging.WARNING

# IAM action per API operation snowsage calls, so "access denied" names what to grant.
IAM_ACTIONS = {
    "DescribeStacks": "cloudformation:DescribeStacks",
    "GetParameters": "ssm:GetParameters",
    "PutParameter": "ssm:PutParameter",
    "ListTagsForResource": "ssm:ListTagsForResource",
    "AddTagsToResource": "ssm:AddTagsToResource",
    "RemoveTagsFromResource": "ssm:RemoveTagsFromResource",
    "Invoke": "lambda:InvokeFunction",
    "DescribeNotebookInstance": "sagemaker:DescribeNotebookInstance",
    "StartNotebookInstance": "sagemaker:StartNotebookInstance",
    "StopNotebookInstance": "sagemaker:StopNotebookInstance",
    "CreatePresignedNotebookInstanceUrl": "sagemaker:CreatePresignedNotebookInstanceUrl",
}
# Operations whose request carries a secret: AWS validation messages can echo request values.
SECRET_BEARING_OPERATIONS = frozenset({"PutParameter"})
ACCESS_DENIED = frozenset(
    {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnauthorizedAccess"}
)
BAD_CREDENTIALS = frozenset(
    {
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidClientTokenId",
        "InvalidToken",
        "UnrecognizedClientException",
        "SignatureDoesNotMatch",
        "InvalidSignatureException",
    }
)
# botocore's own list of throttling codes (the one its retry logic backs off on).
_THROTTLING = ThrottledRetryableChecker()

SSM_BATCH = 10  # GetParameters accepts at most 10 names per call


def quiet_sdk_loggers() -> None:
    """For entry points (CLI, Lambda handlers): the SDK never logs below WARNING in this process."""
    for name in SDK_LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(max(logger.level, QUIET_LEVEL))


_quiet_lock = threading.Lock()
_quiet_state: dict[str, Any] = {"depth": 0, "saved": {}}


@contextlib.contextmanager
def sdk_loggers_quiet() -> Iterator[None]:
    """For a library's own AWS calls (the notebook helper): the SDK logs nothing below WARNING while
    they run, and the user's logging configuration is back as it was afterwards.

    Child loggers the user set to DEBUG explicitly (``botocore.parsers``) are raised too; nested and
    concurrent uses restore only when the last one ends.
    """
    with _quiet_lock:
        if _quiet_state["depth"] == 0:
            saved: dict[str, int] = {}
            for logger in _sdk_loggers():
                # A child left at NOTSET follows its (now quiet) parent; one set explicitly does not.
                inherits = logger.name not in SDK_LOGGERS and logger.level == logging.NOTSET
                if not inherits and logger.level < QUIET_LEVEL:
                    saved[logger.name] = logger.level
                    logger.setLevel(QUIET_LEVEL)
            _quiet_state["saved"] = saved
        _quiet_state["depth"] += 1
    try:
        yield
    finally:
        with _quiet_lock:
            _quiet_state["depth"] -= 1
            if _quiet_state["depth"] == 0:
                for name, level in _quiet_state["saved"].items():
                    logging.getLogger(name).setLevel(level)
                _quiet_state["saved"] = {}


def _sdk_loggers() -> list[logging.Logger]:
    children = [
        logger
        for name, logger in list(logging.Logger.manager.loggerDict.items())
        if isinstance(logger, logging.Logger) and name.startswith(tuple(f"{r}." for r in SDK_LOGGERS))
    ]
    return [*(logging.getLogger(name) for name in SDK_LOGGERS), *children]


def error_code(exc: BaseException) -> str | None:
    """The service's error code (``ThrottlingException``), or None for a client-side failure."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = (response.get("Error") or {}).get("Code")
        return str(code) if code else None
    return None


def is_throttling(exc: BaseException) -> bool:
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return False
    return bool(_THROTTLING.is_retryable(RetryContext(attempt_number=1, parsed_response=response)))


def is_bad_credentials(exc: BaseException) -> bool:
    return isinstance(exc, NoCredentialsError | PartialCredentialsError) or error_code(exc) in BAD_CREDENTIALS


def aws_error_message(exc: BaseException) -> str:
    """One line for an operator at a shell: what AWS refused and what to do next; never a secret."""
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return (
            "no AWS credentials found: configure them (aws configure, aws sso login, or the "
            "AWS_PROFILE/AWS_ACCESS_KEY_ID variables) or pass --profile"
        )
    if isinstance(exc, NoRegionError):
        return "no AWS region: pass --region or set AWS_REGION to the region the stacks are deployed in"
    if isinstance(exc, EndpointConnectionError):
        url = exc.kwargs.get("endpoint_url")
        return f"cannot reach the AWS endpoint ({url}): check the network and --region"
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code = error_code(exc) or "Unknown"
        op = exc.operation_name
        action = IAM_ACTIONS.get(op, op)
        aws_said = (
            "" if op in SECRET_BEARING_OPERATIONS else f" (AWS said: {str(err.get('Message', ''))[:300]})"
        )
        if code in ACCESS_DENIED:
            return (
                f"access denied for {action}{aws_said}; ask for {action} on this deployment's resources"
                + (" and kms:Encrypt/kms:GenerateDataKey on its KMS key" if op == "PutParameter" else "")
            )
        if code in BAD_CREDENTIALS:
            return f"AWS rejected the credentials ({code}) calling {action}: refresh them (aws sso login)"
        if is_throttling(exc):
            return (
                f"AWS throttled {action} ({code}) even after retrying: wait a minute and run the command "
                "again, or make fewer calls against this account and region at the same time"
            )
        return f"{action} failed: {code}{aws_said}"
    return f"AWS call failed: {type(exc).__name__}"


def get_parameters(ssm: Any, names: Iterable[str], *, decrypt: bool = True) -> dict[str, dict[str, Any]]:
    """GetParameters for any number of names: {name: the parameter as SSM returns it}; a name that
    does not exist is absent (SSM lists it under InvalidParameters rather than failing)."""
    wanted = list(dict.fromkeys(names))
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(wanted), SSM_BATCH):
        resp = ssm.get_parameters(Names=wanted[start : start + SSM_BATCH], WithDecryption=decrypt)
        for p in resp.get("Parameters", []):
            found[p["Name"]] = p
    return found
