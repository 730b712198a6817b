"""``snowsage``: the operator CLI. Finds a deployment through its stack outputs, prints the SQL a
Snowflake admin runs, keeps credentials in SSM, runs the connectivity check and opens the notebook.

Secrets (private key, passphrase, password) arrive only through standard input, a hidden prompt or
a key file, leave only towards SSM (or ``--out`` with mode 0600) and are never printed or logged.
Statements for the admin go to stdout; progress and guidance go to stderr, so
``snowsage keypair generate > alter.sql`` keeps a runnable script.
"""

from __future__ import annotations

import json
import os
import re
import sys
import webbrowser
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import boto3
import click
from botocore.exceptions import BotoCoreError, ClientError, NoRegionError, ProfileNotFound
from cryptography.hazmat.primitives import serialization

from snowsage import __version__, keys
from snowsage import setup_sql as sql
from snowsage.aws import aws_error_message, quiet_sdk_loggers
from snowsage.credential_store import CredentialWriteError, TagChange, store_together
from snowsage.settings import PLACEHOLDER, RuntimeSettings, is_placeholder
from snowsage.stack_outputs import (
    TAG_FINGERPRINT,
    TAG_RETIRED_FINGERPRINT,
    TAG_RETIRED_SLOT,
    TAG_SLOT,
    Deployment,
    DeploymentError,
    ParameterValue,
)

_MAX_KEY_FILE_BYTES = 64 * 1024


class CliError(click.ClickException):
    """One line on stderr, exit status 1, no traceback."""


class SnowsageGroup(click.Group):
    """Turns the failures a user can hit into one-line errors (no tracebacks)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (DeploymentError, sql.SqlValueError, keys.PrivateKeyError, CredentialWriteError) as exc:
            raise CliError(str(exc)) from None
        except (ClientError, BotoCoreError) as exc:
            raise CliError(aws_error_message(exc)) from None


@dataclass
class Ctx:
    env_name: str
    region: str | None
    profile: str | None
    as_json: bool
    _deployment: Deployment | None = field(default=None, repr=False)

    def deployment(self) -> Deployment:
        if self._deployment is None:
            self._deployment = Deployment(make_session(self.profile, self.region), self.env_name)
        return self._deployment

    def emit(self, text: str, data: Any) -> None:
        """The command's result on stdout: text for people or, with --json, one JSON document."""
        if self.as_json:
            click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))
        else:
            click.echo(text, nl=not text.endswith("\n"))

    def note(self, text: str) -> None:
        """Guidance for people on stderr; silent with --json so stdout and stderr stay parseable."""
        if not self.as_json:
            click.echo(text, err=True)


def make_session(profile: str | None, region: str | None) -> Any:
    try:
        session = boto3.Session(profile_name=profile, region_name=region)
    except ProfileNotFound:
        raise CliError(
            f"AWS profile {profile!r} is not configured; see `aws configure list-profiles` or drop --profile"
        ) from None
    if not session.region_name:
        raise CliError(aws_error_message(NoRegionError()))
    return session


pass_ctx = click.make_pass_decorator(Ctx)


@click.group(cls=SnowsageGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--env",
    "env_name",
    default="dev",
    show_default=True,
    envvar="SNOWSAGE_ENV",
    help="Deployment environment: the <env> in SnowSage-<env>-* stack names.",
)
@click.option("--region", envvar="AWS_REGION", help="AWS region the stacks are deployed in.")
@click.option("--profile", envvar="AWS_PROFILE", help="AWS named profile to use.")
@click.option("--json", "as_json", is_flag=True, help="Print results as JSON.")
@click.version_option(version=__version__, prog_name="snowsage")
@click.pass_context
def cli(ctx: click.Context, env_name: str, region: str | None, profile: str | None, as_json: bool) -> None:
    """Operate a snowsage deployment: Snowflake setup SQL, credentials, checks and the notebook.

    Everything is found through the outputs of the SnowSage-<env>-Network, -Data and -Notebook
    stacks. After `make deploy`: snowflake-setup, keypair generate, (admin runs the SQL), check,
    notebook url.
    """
    if not re.fullmatch(r"[A-Za-z0-9-]{1,64}", env_name):
        raise click.BadParameter(
            "use letters, digits and '-' (it is part of the stack names)", param_hint="--env"
        )
    quiet_sdk_loggers()  # botocore's DEBUG output would carry the parameter values
    ctx.obj = Ctx(env_name=env_name, region=region or None, profile=profile or None, as_json=as_json)


# --- helpers -----------------------------------------------------------------------------------


def _require_auth(settings: RuntimeSettings, wanted: str, what: str) -> None:
    if settings.auth != wanted:
        raise CliError(
            f"this deployment uses auth={settings.auth}, so {what} does not apply; it needs auth={wanted} "
            "(set it in cdk.json and redeploy)"
        )


def _service_user(dep: Deployment, settings: RuntimeSettings, override: str | None = None) -> str:
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
    raise CliError(
        "the service user name is not configured; pass --user NAME (or set it in cdk.json and redeploy)"
    )


def _stdin_is_terminal() -> bool:
    return sys.stdin is not None and sys.stdin.isatty()


def _read_secret(what: str, option: str, prompt: str | None = None) -> str:
    """One line from stdin (or a hidden prompt on a terminal); never echoed, never an argument."""
    if sys.stdin is None:
        raise CliError(f"{option} needs standard input, but there is none")
    terminal = _stdin_is_terminal()
    try:
        if terminal:
            value = click.prompt(prompt or what[:1].upper() + what[1:], hide_input=True, err=True)
        else:
            value = sys.stdin.readline().rstrip("\r\n")
        value.encode("utf-8")  # a surrogate-escaped byte (C locale) is no more storable than a bad one
    except UnicodeError:
        source = "typed" if terminal else f"read by {option}"
        raise CliError(
            f"the {what} {source} is not UTF-8 text; SSM stores only text, so give the {what} as "
            "UTF-8 (a key encrypted with a non-UTF-8 passphrase must be re-encrypted first, e.g. with "
            "openssl pkcs8 -topk8 -v2 aes-256-cbc)"
        ) from None
    if not value.strip():
        raise CliError(f"{option} read an empty {what}; pipe the {what} in on one line and try again")
    return value


def _pem_is_encrypted(data: bytes) -> bool:
    try:
        serialization.load_pem_private_key(data, password=None)
    except TypeError:
        return True
    except Exception:  # noqa: BLE001 - any other failure is reported by keys.load_private_key
        return False
    return False


def _current_key(dep: Deployment, settings: RuntimeSettings) -> tuple[Any | None, str | None]:
    """The stored private key (or None when it is the placeholder) and why it does not load, if so."""
    vals = dep.require_parameters(
        {k: settings.parameters[k] for k in ("private_key", "private_key_passphrase")}
    )
    pem = vals["private_key"].value
    if is_placeholder(pem):
        return None, None
    passphrase = vals["private_key_passphrase"].value
    try:
        return keys.load_private_key(pem, None if is_placeholder(passphrase) else passphrase), None
    except keys.PrivateKeyError as exc:
        return None, str(exc)


def _store_key(
    dep: Deployment, settings: RuntimeSettings, pem: str, passphrase: str | None, tags: TagChange
) -> None:
    store_together(
        dep,
        {
            settings.parameters["private_key"]: pem,
            settings.parameters["private_key_passphrase"]: passphrase or PLACEHOLDER,
        },
        what="private key and passphrase",
        tags=tags,
    )


def _fail(ctx: click.Context) -> NoReturn:
    ctx.exit(1)
    raise AssertionError("unreachable")


# --- snowflake-setup ---------------------------------------------------------------------------


@cli.command("snowflake-setup")
@click.option(
    "--user", "user_override", help="Service user name (default: the deployment's configured user)."
)
@click.option(
    "--create-table/--read-only",
    default=False,
    show_default=True,
    help="Also grant CREATE TABLE on the schema.",
)
@click.option(
    "--network-policy/--no-network-policy",
    default=True,
    show_default=True,
    help="With NAT gateways, also let the user log in only from their Elastic IPs.",
)
@pass_ctx
def snowflake_setup(c: Ctx, user_override: str | None, create_table: bool, network_policy: bool) -> None:
    """Print the SQL a Snowflake admin runs once: role, grants and the TYPE=SERVICE user.

    The role gets USAGE on the warehouse, database and schema and SELECT on its current and future
    tables. For auth=wif the user trusts the notebook role (its default workload identity) and the
    check function role (a second, named workload identity). With NAT gateways (network=nat) the
    SQL ends with a network policy that admits the user only from their Elastic IPs, so a stolen key
    is useless elsewhere; --no-network-policy leaves it out. PrivateLink mode has no public
    addresses: `snowsage network-policy --vpce-id` limits logins to the VPC endpoint instead.
    """
    dep = c.deployment()
    settings = dep.settings()
    plain = dep.require_parameters(
        {k: settings.parameters[k] for k in ("role", "warehouse", "database", "schema")}
    )
    user = _service_user(dep, settings, user_override)
    arns: dict[str, str | None] = {}
    if settings.auth == "wif":
        arns = {
            "notebook_role_arn": dep.output("Notebook", "NotebookRoleArn"),
            "check_role_arn": dep.output("Notebook", "CheckFunctionRoleArn"),
        }
    text = sql.setup_sql(
        auth=settings.auth,
        user=user,
        role=plain["role"].value,
        warehouse=plain["warehouse"].value,
        database=plain["database"].value,
        schema=plain["schema"].value,
        create_table=create_table,
        **arns,
    )
    text += "\n" + _setup_network_policy(c, dep, user, plain, enabled=network_policy)
    c.emit(text, {"auth": settings.auth, "user": user, "sql": text})
    if settings.auth == "keypair":
        c.note("Next: `snowsage keypair generate` prints the ALTER USER ... SET RSA_PUBLIC_KEY statement.")


def _policy_names(dep: Deployment) -> tuple[str, str]:
    """The network rule's and policy's names: one pair per deployment, the same in every command."""
    tag = re.sub(r"[^A-Za-z0-9_]", "_", dep.env_name).upper()
    return f"SNOWSAGE_{tag}_NOTEBOOK", f"SNOWSAGE_{tag}_POLICY"


def _setup_network_policy(
    c: Ctx, dep: Deployment, user: str, plain: Mapping[str, ParameterValue], *, enabled: bool
) -> str:
    """The network policy part of snowflake-setup, or a comment saying why there is none."""
    ips = sql.parse_ipv4_list(dep.output("Network", "NatElasticIps", required=False))
    if not ips:
        c.note(
            f"No network policy: {dep.stack_name('Network')} has no NAT addresses (PrivateLink). "
            "`snowsage network-policy` explains how to limit logins to the VPC endpoint."
        )
        return (
            f"-- No network policy: {dep.stack_name('Network')} has no NAT Elastic IPs, so the notebook\n"
            "-- reaches Snowflake through PrivateLink with no internet egress. To also limit the user's\n"
            "-- logins to that VPC endpoint, run `snowsage network-policy` (it explains --vpce-id).\n"
        )
    if not enabled:
        c.note("Left out the network policy (--no-network-policy): the user can log in from anywhere.")
        return (
            "-- Network policy left out (--no-network-policy): the user can log in from any address, so\n"
            "-- a stolen key works anywhere. `snowsage network-policy` prints the SQL that limits logins\n"
            f"-- to the NAT gateways' addresses ({', '.join(ips)}).\n"
        )
    rule_name, policy_name = _policy_names(dep)
    c.note(
        f"The SQL ends with a network policy: {user} can log in only from the NAT addresses "
        f"{', '.join(ips)} (--no-network-policy leaves it out)."
    )
    return sql.network_policy_sql(
        user=user,
        rule_database=plain["database"].value,
        rule_schema=plain["schema"].value,
        rule_name=rule_name,
        policy_name=policy_name,
        ips=ips,
    )


# --- keypair -----------------------------------------------------------------------------------


@cli.group(cls=SnowsageGroup)
def keypair() -> None:
    """Make and rotate the RSA key pair the service user authenticates with (auth=keypair)."""


def _key_sql(user: str, slot: int, key: Any) -> str:
    fp = keys.fingerprint(key)
    fp_column = sql.slot_column(slot) + "_FP"
    return (
        f"{sql.set_public_key_sql(user, slot, keys.public_key_body(key))}\n"
        f"-- Check: {sql.describe_user_sql(user)} must show {fp_column} = {fp}\n"
    )


@keypair.command("generate")
@click.option(
    "--bits", type=click.Choice(["2048", "4096"]), default="2048", show_default=True, help="RSA key size."
)
@click.option("--passphrase-stdin", is_flag=True, help="Encrypt the key with a passphrase read from stdin.")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the private key PEM to this new file (mode 0600; never overwritten).",
)
@click.option(
    "--force",
    is_flag=True,
    help="Replace a key that is already stored (breaks logins until the "
    "admin runs the new ALTER USER; prefer `keypair rotate`).",
)
@pass_ctx
def keypair_generate(c: Ctx, bits: str, passphrase_stdin: bool, out: Path | None, force: bool) -> None:
    """Generate an RSA key, store it in SSM and print the ALTER USER ... SET RSA_PUBLIC_KEY statement.

    The private key goes only to the SecureString parameter (encrypted with the stack's KMS key)
    and, with --out, to a new file readable only by you.
    """
    dep = c.deployment()
    settings = dep.settings()
    _require_auth(settings, "keypair", "keypair generate")
    user = _service_user(dep, settings)
    existing, broken = _current_key(dep, settings)
    if (existing is not None or broken) and not force:
        what = f"key {keys.fingerprint(existing)}" if existing is not None else "a key"
        raise CliError(
            f"{settings.parameters['private_key']} already holds {what}; use `snowsage keypair rotate` to "
            "replace it without downtime, or --force to overwrite it"
        )
    passphrase = _read_secret("passphrase", "--passphrase-stdin") if passphrase_stdin else None
    fd = None
    if out is not None:
        try:
            fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise CliError(
                f"{out} already exists; snowsage never overwrites a key file: choose a new path"
            ) from None
        except OSError as exc:
            raise CliError(f"cannot create {out}: {exc.strerror}") from None
    try:
        key = keys.generate_private_key(int(bits))
        pem = keys.private_key_to_pem(key, passphrase)
        fp = keys.fingerprint(key)
        _store_key(
            dep,
            settings,
            pem,
            passphrase,
            TagChange(
                settings.parameters["private_key"],
                {TAG_SLOT: "1", TAG_FINGERPRINT: fp},
                remove=(TAG_RETIRED_SLOT, TAG_RETIRED_FINGERPRINT),
            ),
        )
        if fd is not None:
            os.fchmod(fd, 0o600)
            os.write(fd, pem.encode())
    except BaseException:
        if fd is not None:
            os.close(fd)
            fd = None
            Path(out).unlink(missing_ok=True)  # type: ignore[arg-type]
        raise
    finally:
        if fd is not None:
            os.close(fd)
    text = _key_sql(user, 1, key)
    c.note(
        f"Stored a new {bits}-bit RSA private key in {settings.parameters['private_key']} "
        + (
            "(encrypted with the passphrase now in " + settings.parameters["private_key_passphrase"] + ")"
            if passphrase
            else "(unencrypted; passphrase parameter cleared)"
        )
        + (f"; a copy is in {out} (mode 0600)" if out else "")
        + ".\nHave a Snowflake admin run the statement below, then run `snowsage check`:"
    )
    c.emit(
        text,
        {
            "parameter": settings.parameters["private_key"],
            "user": user,
            "slot": 1,
            "fingerprint": fp,
            "sql": text,
            "out": str(out) if out else None,
        },
    )


@keypair.command("rotate")
@click.option(
    "--finish", is_flag=True, help="Print the UNSET that retires the old key (after `snowsage check`)."
)
@click.option(
    "--bits", type=click.Choice(["2048", "4096"]), default="2048", show_default=True, help="RSA key size."
)
@click.option(
    "--passphrase-stdin", is_flag=True, help="Encrypt the new key with a passphrase read from stdin."
)
@click.option(
    "--live-slot",
    type=click.Choice(["1", "2"]),
    help="Slot holding the live key when snowsage does not know it (key set with `credentials set`).",
)
@click.option(
    "--no-wait",
    is_flag=True,
    help="Store the new key at once instead of waiting for the admin "
    "(logins fail until the ALTER USER runs).",
)
@pass_ctx
def keypair_rotate(
    c: Ctx, finish: bool, bits: str, passphrase_stdin: bool, live_slot: str | None, no_wait: bool
) -> None:
    """Replace the key without downtime, using Snowflake's two public-key slots.

    The new public key goes into the free slot (RSA_PUBLIC_KEY or RSA_PUBLIC_KEY_2) while the old
    one keeps working. Once the admin has run the printed ALTER USER and you confirm, the SSM
    parameter receives the new private key. Then `snowsage check`, and `keypair rotate --finish`
    prints the UNSET for the old slot. The live slot is remembered in tags on the parameter.
    """
    dep = c.deployment()
    settings = dep.settings()
    _require_auth(settings, "keypair", "keypair rotate")
    user = _service_user(dep, settings)
    param = settings.parameters["private_key"]
    tags = dep.tags(param)
    if finish:
        retired = tags.get(TAG_RETIRED_SLOT)
        if retired not in ("1", "2"):
            raise CliError("no rotation to finish: run `snowsage keypair rotate` first")
        text = (
            f"{sql.unset_public_key_sql(user, int(retired))}\n"
            f"-- Retires the old key {tags.get(TAG_RETIRED_FINGERPRINT, '(fingerprint unknown)')}; "
            f"the live key {tags.get(TAG_FINGERPRINT, '')} stays in {sql.slot_column(3 - int(retired))}.\n"
        )
        dep.set_tags(param, {}, remove=(TAG_RETIRED_SLOT, TAG_RETIRED_FINGERPRINT))
        c.note("Have a Snowflake admin run this once `snowsage check` passes with the new key:")
        c.emit(text, {"user": user, "unset_slot": int(retired), "sql": text})
        return

    current, broken = _current_key(dep, settings)
    if current is None:
        why = broken or f"{param} holds no key yet"
        raise CliError(f"nothing to rotate: {why}; run `snowsage keypair generate --force` to start afresh")
    live = int(live_slot or tags.get(TAG_SLOT) or 0)
    if not live:
        live = 1
        c.note("The live key's slot is not recorded; assuming RSA_PUBLIC_KEY (pass --live-slot 2 if not).")
    new_slot = 3 - live
    passphrase = _read_secret("passphrase", "--passphrase-stdin") if passphrase_stdin else None
    key = keys.generate_private_key(int(bits))
    text = _key_sql(user, new_slot, key)
    c.note(
        f"The live key ({keys.fingerprint(current)}) stays in {sql.slot_column(live)}. "
        "Have a Snowflake admin run:"
    )
    c.emit(text, {"user": user, "slot": new_slot, "fingerprint": keys.fingerprint(key), "sql": text})
    if not no_wait and not click.confirm(
        "Has the admin run it? Answer y to store the new key in SSM", default=False, err=True
    ):
        raise CliError(
            f"rotation cancelled; nothing was stored and the key in {sql.slot_column(live)} stays live; "
            "run `snowsage keypair rotate` again when the admin is ready"
        )
    _store_key(
        dep,
        settings,
        keys.private_key_to_pem(key, passphrase),
        passphrase,
        TagChange(
            param,
            {
                TAG_SLOT: str(new_slot),
                TAG_FINGERPRINT: keys.fingerprint(key),
                TAG_RETIRED_SLOT: str(live),
                TAG_RETIRED_FINGERPRINT: keys.fingerprint(current),
            },
        ),
    )
    c.note(f"Stored the new key in {param}. Next: `snowsage check`, then `snowsage keypair rotate --finish`.")


# --- credentials -------------------------------------------------------------------------------


@cli.group(cls=SnowsageGroup)
def credentials() -> None:
    """Store or inspect the Snowflake credentials kept in SSM (never printed)."""


@credentials.command("set")
@click.option("--user", required=True, help="Snowflake service user name.")
@click.option(
    "--private-key-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="PEM private key to store (auth=keypair). Asks for its passphrase if encrypted.",
)
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin (auth=password).")
@click.option(
    "--passphrase-stdin", is_flag=True, help="Read the key's passphrase from stdin instead of a prompt."
)
@pass_ctx
def credentials_set(
    c: Ctx, user: str, private_key_file: Path | None, password_stdin: bool, passphrase_stdin: bool
) -> None:
    """Validate and store the user and its key or password; nothing is written if anything is wrong."""
    if bool(private_key_file) == password_stdin:
        raise click.UsageError("give exactly one of --private-key-file F or --password-stdin")
    if passphrase_stdin and not private_key_file:
        raise click.UsageError("--passphrase-stdin goes with --private-key-file")
    sql.identifier(user, "service user")
    dep = c.deployment()
    settings = dep.settings()
    _require_auth(
        settings,
        "keypair" if private_key_file else "password",
        "--private-key-file" if private_key_file else "--password-stdin",
    )
    by_key = settings.secret_parameter_names()
    dep.require_parameters(by_key)  # every target exists before anything is written

    # The secret first (see credential_store), the user last: all three only work together.
    writes: dict[str, str] = {}
    key = None
    if private_key_file:
        try:
            if private_key_file.stat().st_size > _MAX_KEY_FILE_BYTES:
                raise CliError(
                    f"{private_key_file} is larger than any PEM private key; pass the key file itself"
                )
            data = private_key_file.read_bytes()
        except OSError as exc:
            raise CliError(f"cannot read {private_key_file}: {exc.strerror}") from None
        passphrase = None
        if passphrase_stdin:
            passphrase = _read_secret("passphrase", "--passphrase-stdin")
        elif _pem_is_encrypted(data):
            if not _stdin_is_terminal():  # click.prompt would read EOF and print a bare "Aborted!"
                raise CliError(
                    f"{private_key_file} is encrypted and there is no terminal to ask for its "
                    "passphrase; pipe the passphrase in with --passphrase-stdin"
                )
            passphrase = _read_secret(
                "passphrase", "--passphrase-stdin", f"Passphrase for {private_key_file}"
            )
        try:
            key = keys.load_private_key(data, passphrase)
            keys.require_supported_size(key)
        except keys.PrivateKeyError as exc:
            raise CliError(f"{private_key_file}: {exc}") from None
        writes["private_key"] = keys.private_key_to_pem(key, passphrase)  # normalised to PKCS#8
        writes["private_key_passphrase"] = passphrase or PLACEHOLDER
    else:
        writes["password"] = _read_secret("password", "--password-stdin")
    writes["user"] = user

    tags = None
    if key is not None:
        # The key's Snowflake slot is unknown; `keypair rotate` asks for it (--live-slot) if needed.
        tags = TagChange(
            by_key["private_key"],
            {TAG_FINGERPRINT: keys.fingerprint(key)},
            remove=(TAG_SLOT, TAG_RETIRED_SLOT, TAG_RETIRED_FINGERPRINT),
        )
    store_together(
        dep,
        {by_key[k]: value for k, value in writes.items()},
        what="user, private key and passphrase" if key is not None else "user and password",
        tags=tags,
    )
    c.note("Stored " + ", ".join(f"{k} in {by_key[k]}" for k in writes) + ".")
    result: dict[str, Any] = {"user": user, "parameters": {k: by_key[k] for k in writes}}
    text = ""
    if key is not None:
        fp = keys.fingerprint(key)
        text = _key_sql(user, 1, key)
        result.update(fingerprint=fp, sql=text)
        c.note("If the admin has not registered this key yet, have them run:")
    c.emit(text, result)


@credentials.command("status")
@pass_ctx
def credentials_status(c: Ctx) -> None:
    """Show, per parameter, whether it is set or still the placeholder, and when it last changed.

    Exits 1 when a required parameter is missing or unset. Values are never shown.
    """
    dep = c.deployment()
    settings = dep.settings()
    by_key = {**settings.secret_parameter_names(), **settings.setting_parameter_names()}
    found = dep.get_parameters(by_key.values())
    rows = []
    incomplete = False
    for k, name in by_key.items():
        p = found[name]
        state = "missing" if p is None else ("placeholder" if is_placeholder(p.value) else "set")
        optional = k in ("private_key_passphrase", "host", "port", "protocol")
        incomplete |= state != "set" and not (optional and state == "placeholder")
        modified = p.last_modified.isoformat(timespec="seconds") if p and p.last_modified else ""
        rows.append({"key": k, "parameter": name, "state": state, "last_modified": modified})
    extra: dict[str, Any] = {}
    if settings.auth == "keypair" and found[by_key["private_key"]] is not None:
        key, broken = _current_key(dep, settings)
        tags = dep.tags(by_key["private_key"])
        if key is not None:
            extra["fingerprint"] = keys.fingerprint(key)
            extra["slot"] = (
                sql.slot_column(int(tags[TAG_SLOT])) if tags.get(TAG_SLOT) in ("1", "2") else "unknown"
            )
        elif broken:
            extra["key_error"] = broken
            incomplete = True
        if tags.get(TAG_RETIRED_SLOT) in ("1", "2"):
            extra["rotation_pending"] = sql.slot_column(int(tags[TAG_RETIRED_SLOT]))
    width = max(len(r["parameter"]) for r in rows)
    lines = [f"auth: {settings.auth}   region: {dep.region}   env: {dep.env_name}"]
    lines += [
        f"{r['key']:<24} {r['parameter']:<{width}}  {r['state']:<11} {r['last_modified']}" for r in rows
    ]
    if "fingerprint" in extra:
        lines.append(f"private key fingerprint {extra['fingerprint']} (slot {extra['slot']})")
    if "key_error" in extra:
        lines.append(f"private key does not load: {extra['key_error']}")
    if "rotation_pending" in extra:
        lines.append(
            f"rotation pending: `snowsage keypair rotate --finish` unsets {extra['rotation_pending']}"
        )
    c.emit("\n".join(lines), {"auth": settings.auth, "parameters": rows, "complete": not incomplete, **extra})
    if incomplete:
        _fail(click.get_current_context())


# --- check -------------------------------------------------------------------------------------


def _parse_report(payload: bytes, fn: str) -> dict[str, Any]:
    try:
        report = json.loads(payload or b"null")
    except ValueError:
        report = None
    if not isinstance(report, dict) or not isinstance(report.get("steps"), list) or "ok" not in report:
        raise CliError(
            f"check function {fn} returned something that is not a check report; redeploy the Notebook stack "
            "so the function and this CLI match"
        )
    return report


@cli.command("check")
@pass_ctx
def check(c: Ctx) -> None:
    """Run the connectivity check function and show each step; exit 0 only when all is well."""
    dep = c.deployment()
    fn = str(dep.output("Notebook", "CheckFunctionName"))
    try:
        resp = dep.client("lambda").invoke(FunctionName=fn, InvocationType="RequestResponse", Payload=b"{}")
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            raise CliError(
                f"check function {fn} (from {dep.stack_name('Notebook')}) does not exist in {dep.region}; "
                "redeploy the Notebook stack"
            ) from None
        raise
    payload = resp["Payload"].read()
    if resp.get("FunctionError"):
        try:
            err = json.loads(payload)
            detail = f"{err.get('errorType', 'Error')}: {str(err.get('errorMessage', ''))[:300]}"
        except (ValueError, AttributeError):
            detail = "no error details"
        raise CliError(f"check function {fn} crashed ({detail}); see CloudWatch log group /aws/lambda/{fn}")
    report = _parse_report(payload, fn)
    rows = []
    for step in report["steps"]:
        ok = step.get("ok")
        result = "ok" if ok is True else ("FAIL" if ok is False else "skip")
        ms = step.get("ms")
        ms_text = f"{ms:.0f}" if isinstance(ms, int | float) else ""
        rows.append((str(step.get("name", "?")), result, ms_text, str(step.get("detail") or "")))
    width = max([len(r[0]) for r in rows] + [4])
    lines = [f"{'STEP':<{width}}  RESULT  {'MS':>6}  DETAIL"]
    lines += [f"{n:<{width}}  {r:<6}  {m:>6}  {d}" for n, r, m, d in rows]
    status = report.get("status") or ("ok" if report["ok"] else "failed")
    lines.append(f"status: {status}")
    if report.get("diagnosis"):
        lines.append(f"diagnosis: {report['diagnosis']}")
    c.emit("\n".join(lines), report)
    if report["ok"] is not True:
        _fail(click.get_current_context())


# --- notebook ----------------------------------------------------------------------------------


@cli.group(cls=SnowsageGroup)
def notebook() -> None:
    """Open, inspect, start or stop the SageMaker notebook instance."""


def _describe_notebook(dep: Deployment) -> dict[str, Any]:
    name = dep.output("Notebook", "NotebookName")
    try:
        return dict(dep.client("sagemaker").describe_notebook_instance(NotebookInstanceName=name))
    except ClientError as exc:
        if "RecordNotFound" in str(exc) or "does not exist" in str(exc):
            raise CliError(
                f"notebook instance {name} (from {dep.stack_name('Notebook')}) does not exist in "
                f"{dep.region}; redeploy the Notebook stack"
            ) from None
        raise


@notebook.command("url")
@click.option("--open", "open_browser", is_flag=True, help="Open the URL in a web browser.")
@click.option(
    "--session-hours",
    type=click.IntRange(1, 12),
    default=12,
    show_default=True,
    help="How long the notebook session lasts once opened.",
)
@pass_ctx
def notebook_url(c: Ctx, open_browser: bool, session_hours: int) -> None:
    """Print a presigned URL for the notebook (it must be opened within 5 minutes)."""
    dep = c.deployment()
    nb = _describe_notebook(dep)
    name, status = nb["NotebookInstanceName"], nb.get("NotebookInstanceStatus")
    if status != "InService":
        raise CliError(
            f"notebook {name} is {status}; run `snowsage notebook start` and wait until it is InService"
        )
    url = dep.client("sagemaker").create_presigned_notebook_instance_url(
        NotebookInstanceName=name, SessionExpirationDurationInSeconds=session_hours * 3600
    )["AuthorizedUrl"]
    c.emit(url, {"notebook": name, "url": url})
    c.note("Open it within 5 minutes; it is a login link, so do not share it.")
    if open_browser and not webbrowser.open(url):
        c.note("No web browser could be started; open the URL above yourself.")


@notebook.command("status")
@pass_ctx
def notebook_status(c: Ctx) -> None:
    """Show the notebook instance's state."""
    nb = _describe_notebook(c.deployment())
    data = {
        "notebook": nb["NotebookInstanceName"],
        "status": nb.get("NotebookInstanceStatus"),
        "instance_type": nb.get("InstanceType"),
        "url": nb.get("Url"),
        "failure_reason": nb.get("FailureReason"),
        "last_modified": nb.get("LastModifiedTime"),
    }
    text = "\n".join(f"{k}: {v}" for k, v in data.items() if v)
    c.emit(text, data)


def _start_stop(c: Ctx, action: str) -> None:
    dep = c.deployment()
    nb = _describe_notebook(dep)
    name, status = nb["NotebookInstanceName"], nb.get("NotebookInstanceStatus")
    done = {"start": ("InService", "Pending", "Updating"), "stop": ("Stopped", "Stopping")}[action]
    if status in done:
        c.emit(f"notebook {name} is already {status}", {"notebook": name, "status": status, "changed": False})
        return
    if action == "start" and status not in ("Stopped", "Failed"):
        raise CliError(f"notebook {name} is {status}; wait until it is Stopped, then start it")
    if action == "stop" and status not in ("InService", "Failed"):
        raise CliError(f"notebook {name} is {status}; wait until it is InService, then stop it")
    sm = dep.client("sagemaker")
    (sm.start_notebook_instance if action == "start" else sm.stop_notebook_instance)(
        NotebookInstanceName=name
    )
    verb = "starting" if action == "start" else "stopping"
    c.emit(
        f"{verb} notebook {name}; follow it with `snowsage notebook status`",
        {"notebook": name, "status": status, "changed": True},
    )


@notebook.command("start")
@pass_ctx
def notebook_start(c: Ctx) -> None:
    """Start the notebook instance (takes a few minutes)."""
    _start_stop(c, "start")


@notebook.command("stop")
@pass_ctx
def notebook_stop(c: Ctx) -> None:
    """Stop the notebook instance (its storage volume is kept)."""
    _start_stop(c, "stop")


# --- network-policy ----------------------------------------------------------------------------


@cli.command("network-policy")
@click.option(
    "--user", "user_override", help="Service user name (default: the deployment's configured user)."
)
@click.option("--rule-database", help="Database for the network rule (default: the deployment's database).")
@click.option("--rule-schema", help="Schema for the network rule (default: the deployment's schema).")
@click.option(
    "--vpce-id",
    "vpce_ids",
    multiple=True,
    help="PrivateLink mode: the VPC endpoint ID(s) Snowflake should accept (repeatable).",
)
@pass_ctx
def network_policy(
    c: Ctx,
    user_override: str | None,
    rule_database: str | None,
    rule_schema: str | None,
    vpce_ids: tuple[str, ...],
) -> None:
    """Print SQL that lets the service user log in only from this deployment's network.

    With NAT gateways the rule lists their Elastic IPs (NatElasticIps output). In PrivateLink mode
    there are no public addresses: pass the VPC endpoint ID(s) with --vpce-id instead.
    """
    dep = c.deployment()
    ips = sql.parse_ipv4_list(dep.output("Network", "NatElasticIps", required=False))
    vpc = dep.output("Network", "VpcId", required=False)
    settings = dep.settings()
    user = _service_user(dep, settings, user_override)
    if not rule_database or not rule_schema:
        plain = dep.require_parameters({k: settings.parameters[k] for k in ("database", "schema")})
        rule_database = rule_database or plain["database"].value
        rule_schema = rule_schema or plain["schema"].value
    rule_name, policy_name = _policy_names(dep)
    if not ips and not vpce_ids:
        text = (
            f"-- {dep.stack_name('Network')} has no NAT Elastic IPs: the notebook reaches Snowflake through\n"
            "-- PrivateLink, so Snowflake sees the VPC endpoint, not a public address. List that endpoint:\n"
            f"--   aws ec2 describe-vpc-endpoints --region {dep.region} "
            f"--filters Name=vpc-id,Values={vpc or '<VpcId>'} "
            "--query 'VpcEndpoints[].[VpcEndpointId,ServiceName]'\n"
            "-- and run `snowsage network-policy --vpce-id vpce-...` to get a rule of TYPE = AWSVPCEID.\n"
        )
        c.emit(text, {"mode": "privatelink", "vpc_id": vpc, "sql": None, "explanation": text})
        return
    if ips and vpce_ids:
        raise click.UsageError(
            "this deployment uses NAT gateways; --vpce-id applies only in PrivateLink mode"
        )
    text = sql.network_policy_sql(
        user=user,
        rule_database=rule_database,
        rule_schema=rule_schema,
        rule_name=rule_name,
        policy_name=policy_name,
        ips=ips,
        vpce_ids=vpce_ids,
    )
    c.emit(text, {"mode": "nat" if ips else "privatelink", "values": ips or list(vpce_ids), "sql": text})


def main() -> None:
    cli(prog_name="snowsage")


if __name__ == "__main__":
    main()
