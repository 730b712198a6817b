"""on_event handler of the secure-parameter provider: SSM SecureString parameters CloudFormation cannot make.

CloudFormation only ever sees the parameter name and a non-secret initial value (the placeholder or
the user name); the secret is put later by an operator. So the rules are: never overwrite a value
set since creation, keep (and re-encrypt) the value when the key changes, and never let a value
reach a log line, an exception message or the response.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import boto3
from botocore.exceptions import ClientError

logger = logging.getLogger(__name__)
logger.setLevel(os.environ.get("LOG_LEVEL", "INFO"))
# botocore logs request bodies (put_parameter's Value included) at DEBUG; keep it out of the logs
# whatever level the function runs at.
for _name in ("botocore", "boto3", "urllib3"):
    logging.getLogger(_name).setLevel(logging.WARNING)

REMOVAL_POLICIES = ("retain", "destroy")
SECURE_STRING = "SecureString"


class ProviderError(Exception):
    """Raised to fail the CloudFormation operation; the message is shown in the stack events."""


class _AlreadyExists(ProviderError):
    pass


def on_event(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    request_type = event.get("RequestType")
    if request_type not in ("Create", "Update", "Delete"):
        raise ProviderError(
            f"RequestType is {request_type!r}; expected Create, Update or Delete. This function serves "
            "CloudFormation custom resource events through the CDK Provider framework; do not invoke it "
            "directly"
        )
    props = _properties(event.get("ResourceProperties") or {})
    ssm = boto3.client("ssm")
    name = props["ParameterName"]

    if request_type == "Create":
        logger.info("Create %s", name)
        _ensure(ssm, props)
    elif request_type == "Update":
        old = event.get("OldResourceProperties") or {}
        old_name = event.get("PhysicalResourceId") or old.get("ParameterName")
        logger.info("Update %s", name)
        if old_name and old_name != name:
            # CloudFormation deletes the old physical id afterwards (per its own RemovalPolicy), so carry
            # the secret over first or a rename of a "destroy" parameter would lose it.
            _ensure(ssm, props, copy_from=old_name)
        else:
            _ensure(ssm, props)
    else:
        physical_id = event.get("PhysicalResourceId")
        if physical_id != name:
            # A failed Create reports a marker instead of a name: there is nothing of ours to delete, and
            # a parameter that made the Create fail (e.g. a pre-existing String) is not ours to delete.
            logger.info("Delete %s: nothing to do, physical id is not the parameter name", name)
        elif props["RemovalPolicy"] == "retain":
            logger.info("Delete %s: retained (RemovalPolicy retain)", name)
        else:
            _delete(ssm, name)
        return {"PhysicalResourceId": physical_id}

    return {
        "PhysicalResourceId": name,
        "Data": {"ParameterName": name, "ParameterArn": _parameter_arn(name, context)},
    }


def _properties(raw: dict[str, Any]) -> dict[str, str]:
    missing = [k for k in ("ParameterName", "KmsKeyId", "InitialValue") if not str(raw.get(k) or "").strip()]
    if missing:
        raise ProviderError(
            f"ResourceProperties lack {', '.join(missing)}; the SecureParameter construct must pass them "
            "(InitialValue is the placeholder or the user name, never a secret)"
        )
    policy = str(raw.get("RemovalPolicy") or "retain").lower()
    if policy not in REMOVAL_POLICIES:
        raise ProviderError(
            f"RemovalPolicy is {raw.get('RemovalPolicy')!r}; expected one of {', '.join(REMOVAL_POLICIES)}"
        )
    return {
        "ParameterName": str(raw["ParameterName"]),
        "KmsKeyId": str(raw["KmsKeyId"]),
        "InitialValue": str(raw["InitialValue"]),
        "Description": str(raw.get("Description") or ""),
        "Tier": str(raw.get("Tier") or ""),
        "RemovalPolicy": policy,
    }


def _ensure(ssm: Any, props: dict[str, str], copy_from: str | None = None) -> None:
    """Make the parameter exist as a SecureString under the configured key, keeping any value it has."""
    name = props["ParameterName"]
    current = _describe(ssm, name)
    if current is None:
        value = props["InitialValue"]
        if copy_from:
            copied = _read_value(ssm, copy_from)
            if copied is not None:
                value = copied
                logger.info("Update %s: value carried over from %s", name, copy_from)
            else:
                logger.info("Update %s: %s not found, starting from the initial value", name, copy_from)
        try:
            _put(ssm, props, value, overwrite=False)
            logger.info("%s: created as SecureString", name)
            return
        except _AlreadyExists:
            current = _describe(ssm, name)  # created concurrently; fall through to the checks
            if current is None:
                raise
    if current.get("Type") != SECURE_STRING:
        # A plain String under this name may already hold a secret in clear text, and it is not ours to
        # delete or rewrite: stop and let the operator decide.
        raise ProviderError(
            f"parameter {name} already exists as type {current.get('Type')}, not SecureString. Copy its "
            f"value somewhere safe, delete it (aws ssm delete-parameter --name {name}), redeploy, then put "
            "the value again with the snowsage CLI"
        )
    changes = []
    if _key_ref(current.get("KeyId") or "alias/aws/ssm") != _key_ref(props["KmsKeyId"]):
        changes.append("key")
    if props["Description"] and current.get("Description", "") != props["Description"]:
        changes.append("description")
    if props["Tier"] and current.get("Tier") != props["Tier"]:
        changes.append("tier")
    if not changes:
        logger.info("%s: exists as SecureString under the configured key; value kept", name)
        return
    value = _read_value(ssm, name)
    if value is None:  # deleted between the two calls
        raise ProviderError(f"parameter {name} disappeared during the update; retry the deployment")
    _put(ssm, props, value, overwrite=True)
    logger.info("%s: value kept, %s updated", name, " and ".join(changes))


def _describe(ssm: Any, name: str) -> dict[str, Any] | None:
    try:
        found = ssm.describe_parameters(
            ParameterFilters=[{"Key": "Name", "Option": "Equals", "Values": [name]}]
        ).get("Parameters", [])
    except ClientError as exc:
        raise ProviderError(f"cannot describe parameter {name}: {_code(exc)}") from None
    return found[0] if found else None


def _read_value(ssm: Any, name: str) -> str | None:
    try:
        return str(ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"])
    except ClientError as exc:
        if _code(exc) == "ParameterNotFound":
            return None
        raise ProviderError(
            f"cannot read parameter {name} ({_code(exc)}); the provider's role needs ssm:GetParameter on it "
            "and kms:Decrypt on the key it is encrypted with"
        ) from None


def _put(ssm: Any, props: dict[str, str], value: str, *, overwrite: bool) -> None:
    name = props["ParameterName"]
    kwargs: dict[str, Any] = {
        "Name": name,
        "Value": value,
        "Type": SECURE_STRING,
        "KeyId": props["KmsKeyId"],
        "Overwrite": overwrite,
    }
    if props["Description"]:
        kwargs["Description"] = props["Description"]
    if props["Tier"]:
        kwargs["Tier"] = props["Tier"]
    try:
        ssm.put_parameter(**kwargs)
    except ClientError as exc:
        if _code(exc) == "ParameterAlreadyExists":
            raise _AlreadyExists(name) from None
        # AWS validation messages can echo the submitted value; keep the code and a scrubbed message.
        message = str(exc.response.get("Error", {}).get("Message", "")).replace(value, "***")
        raise ProviderError(
            f"cannot put parameter {name} ({_code(exc)}: {message}); check the provider's role has "
            f"ssm:PutParameter on it and kms:Encrypt/GenerateDataKey on {props['KmsKeyId']}"
        ) from None


def _delete(ssm: Any, name: str) -> None:
    try:
        ssm.delete_parameter(Name=name)
        logger.info("Delete %s: deleted (RemovalPolicy destroy)", name)
    except ClientError as exc:
        if _code(exc) != "ParameterNotFound":
            raise ProviderError(f"cannot delete parameter {name}: {_code(exc)}") from None
        logger.info("Delete %s: already gone", name)


def _key_ref(key: str) -> str:
    """Key ARN, key id and alias forms compared by what follows key/ or alias/ (ARN or not)."""
    for marker in (":key/", ":alias/"):
        if key.startswith("arn:") and marker in key:
            prefix = "alias/" if marker == ":alias/" else ""
            return prefix + key.split(marker, 1)[1]
    return key


def _parameter_arn(name: str, context: Any) -> str:
    function_arn = getattr(context, "invoked_function_arn", "") or ""
    parts = function_arn.split(":")
    if len(parts) >= 5 and parts[0] == "arn":
        partition, region, account = parts[1], parts[3], parts[4]
    else:
        session = boto3.session.Session()
        region = session.region_name or os.environ.get("AWS_REGION", "")
        identity = session.client("sts").get_caller_identity()
        partition, account = identity["Arn"].split(":")[1], identity["Account"]
    path = name if name.startswith("/") else f"/{name}"
    return f"arn:{partition}:ssm:{region}:{account}:parameter{path}"


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", "Unknown"))
