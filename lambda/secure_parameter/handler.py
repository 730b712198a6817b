"""on_event handler of the secure-parameter provider: SSM SecureString parameters CloudFormation cannot make.

CloudFormation only ever sees the parameter name and a non-secret initial value (the placeholder or
the user name); the secret is put later by an operator. So the rules are: never overwrite a value
set since creation, keep (and re-encrypt) the value when the key changes, encrypt only under the key
the construct configured, and never let a value reach a log line, an exception message or the
response.
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
# The key the construct configured, set on this function by the construct itself. The event's KmsKeyId
# is only checked against it: whoever may invoke this function can write any event, and must not be
# able to move the secrets to another key (alias/aws/ssm, say, which every SSM user may decrypt).
KEY_ENV = "CONFIGURED_KMS_KEY_ARN"
THROTTLED = ("ThrottlingException", "TooManyUpdates", "RequestLimitExceeded")


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
    if request_type != "Delete":
        # Delete never encrypts anything, and refusing it would leave a stack that cannot be deleted.
        props["KmsKeyId"] = _configured_key(props["KmsKeyId"], name)

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


def _configured_key(requested: str, name: str) -> str:
    """The configured key ARN, if ``requested`` names that same key; otherwise a ProviderError."""
    configured = os.environ.get(KEY_ENV, "").strip()
    if not configured:
        raise ProviderError(
            f"this function's environment lacks {KEY_ENV}, the ARN of the key the credential parameters "
            "must be encrypted with; the SnowflakeParameters construct sets it, so deploy the stack with "
            "it instead of changing this function by hand"
        )
    if not _same_key(requested, configured):
        raise ProviderError(
            f"KmsKeyId for {name} is {requested!r}, not the configured key {configured}; this provider "
            f"encrypts the credentials only under the key in its {KEY_ENV} setting. Deploy the stack that "
            "owns the key (cdk deploy) instead of invoking the provider with another key"
        )
    return configured


def _same_key(requested: str, configured: str) -> bool:
    """Key ARN and bare key id name the same key; an alias matches only the very same alias, because
    what an alias points to can be changed by anyone allowed to update aliases."""
    if requested == configured:
        return True
    req_kind, req_ref, req_scope = _key_parts(requested)
    cfg_kind, cfg_ref, cfg_scope = _key_parts(configured)
    # A bare id or alias name resolves in this function's own account and region, which are the
    # configured key's (the construct passes a key of the same stack).
    scopes_match = req_scope is None or cfg_scope is None or req_scope == cfg_scope
    return req_kind == cfg_kind and req_ref == cfg_ref and scopes_match


def _key_parts(key: str) -> tuple[str, str, str | None]:
    """(``key`` or ``alias``, the id or alias name, the ``arn:partition:kms:region:account`` or None)."""
    if key.startswith("arn:"):
        scope, sep, resource = key.partition(":key/")
        if sep:
            return "key", resource, scope
        scope, sep, resource = key.partition(":alias/")
        if sep:
            return "alias", resource, scope
        return "other", key, None
    if key.startswith("alias/"):
        return "alias", key.removeprefix("alias/"), None
    return "key", key, None


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
    current_key = current.get("KeyId") or "alias/aws/ssm"
    if not _same_key(current_key, props["KmsKeyId"]):
        changes.append("key")
    if props["Description"] and current.get("Description", "") != props["Description"]:
        changes.append("description")
    if props["Tier"] and current.get("Tier") != props["Tier"]:
        changes.append("tier")
    if not changes:
        logger.info("%s: exists as SecureString under the configured key; value kept", name)
        return
    value = _read_value(ssm, name, old_key=current_key)
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


def _read_value(ssm: Any, name: str, old_key: str | None = None) -> str | None:
    """The decrypted value, or None if the parameter does not exist. ``old_key``: the key it is under,
    when that is not the configured one (a key change), so a failure can name it."""
    try:
        return str(ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"])
    except ClientError as exc:
        code = _code(exc)
        if code == "ParameterNotFound":
            return None
        if code in THROTTLED:
            raise ProviderError(
                f"SSM throttled reading parameter {name} ({code}); retry the deployment"
            ) from None
        if old_key is None and (found := _describe(ssm, name)) is not None:
            old_key = found.get("KeyId") or "alias/aws/ssm"
        # Only the code is reported: AWS messages are not ours to echo. The role may decrypt these
        # parameters through SSM under any key of this account (see the construct), so a refusal means
        # the key itself is unusable to it.
        raise ProviderError(
            f"cannot decrypt parameter {name}, encrypted under key {old_key or 'unknown'} ({code}), to keep "
            "its value under the configured key. The key is disabled, pending deletion, in another "
            "account, or its key policy does not let this account's IAM policies use it. Either make it "
            "usable for this deployment (enable it, cancel its deletion, or allow the provider's role "
            "kms:Decrypt in its key policy), or drop the old value: delete the parameter (aws ssm "
            f"delete-parameter --name {name}), redeploy, then set it again with `snowsage credentials "
            "set` or `snowsage keypair generate`"
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
