"""``snowsage``: the operator CLI. Finds a deployment through its stack outputs, prints the SQL a
Snowflake admin runs, keeps credentials in SSM, runs the connectivity check and opens the notebook.

Commands only parse options, call one operation (``snowsage.ops``) and hand its result to
``snowsage.ops.output``. Secrets (private key, passphrase, password) arrive only through standard
input, a hidden prompt or a key file, leave only towards SSM (or ``--out`` with mode 0600) and are
never printed or logged. Statements for the admin go to stdout; progress and guidance go to stderr,
so ``snowsage keypair generate > alter.sql`` keeps a runnable script.
"""

from __future__ import annotations

import re
import webbrowser
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from snowsage import __version__
from snowsage.aws import quiet_sdk_loggers
from snowsage.ops import check as check_ops
from snowsage.ops import credentials as cred_ops
from snowsage.ops import notebook as notebook_ops
from snowsage.ops import snowflake_sql as sql_ops
from snowsage.ops import training as train_ops
from snowsage.ops.deployment import OptionConflict, open_deployment, user_message
from snowsage.ops.output import Output
from snowsage.setup_sql import identifier
from snowsage.stack_outputs import Deployment

F = TypeVar("F", bound=Callable[..., Any])


class CliError(click.ClickException):
    """One line on stderr, exit status 1, no traceback."""


class SnowsageCommand(click.Command):
    """Turns the failures a user can hit into one-line errors (no tracebacks)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except OptionConflict as exc:
            raise click.UsageError(str(exc), ctx=ctx) from None
        except Exception as exc:
            message = user_message(exc)
            if message is None:
                raise
            raise CliError(message) from None


class SnowsageGroup(click.Group):
    command_class = SnowsageCommand
    group_class = type  # subgroups are SnowsageGroups too


@dataclass
class Ctx:
    env_name: str
    region: str | None
    profile: str | None
    out: Output
    _deployment: Deployment | None = field(default=None, repr=False)

    def deployment(self) -> Deployment:
        if self._deployment is None:
            self._deployment = open_deployment(self.env_name, profile=self.profile, region=self.region)
        return self._deployment


pass_ctx = click.make_pass_decorator(Ctx)


def _fail(ctx: click.Context) -> NoReturn:
    ctx.exit(1)
    raise AssertionError("unreachable")


# Options several commands share.

user_override_option = click.option(
    "--user", "user_override", help="Service user name (default: the deployment's configured user)."
)
bits_option = click.option(
    "--bits", type=click.Choice(["2048", "4096"]), default="2048", show_default=True, help="RSA key size."
)


def passphrase_stdin_option(help: str) -> Callable[[F], F]:
    return click.option("--passphrase-stdin", is_flag=True, help=help)


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
    stacks (and -Training for `train`). After `make deploy`: snowflake-setup, keypair generate,
    (admin runs the SQL), check, notebook url.
    """
    if not re.fullmatch(r"[A-Za-z0-9-]{1,64}", env_name):
        raise click.BadParameter(
            "use letters, digits and '-' (it is part of the stack names)", param_hint="--env"
        )
    quiet_sdk_loggers()  # botocore's DEBUG output would carry the parameter values
    ctx.obj = Ctx(env_name, region or None, profile or None, Output(as_json=as_json))


# --- Snowflake SQL -----------------------------------------------------------------------------


@cli.command("snowflake-setup")
@user_override_option
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
    request = sql_ops.SetupRequest(user_override, create_table, network_policy)
    c.out.show(sql_ops.setup(c.deployment(), request))


@cli.command("network-policy")
@user_override_option
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
    request = sql_ops.NetworkPolicyRequest(user_override, rule_database, rule_schema, vpce_ids)
    c.out.show(sql_ops.network_policy(c.deployment(), request))


# --- keypair -----------------------------------------------------------------------------------


@cli.group()
def keypair() -> None:
    """Make and rotate the RSA key pair the service user authenticates with (auth=keypair)."""


@keypair.command("generate")
@bits_option
@passphrase_stdin_option("Encrypt the key with a passphrase read from stdin.")
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
    request = cred_ops.GenerateRequest(int(bits), passphrase_stdin, out, force)
    c.out.show(cred_ops.generate(c.deployment(), request))


@keypair.command("rotate")
@click.option(
    "--finish", is_flag=True, help="Print the UNSET that retires the old key (after `snowsage check`)."
)
@bits_option
@passphrase_stdin_option("Encrypt the new key with a passphrase read from stdin.")
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
    if finish:
        c.out.show(cred_ops.finish_rotation(dep))
        return
    request = cred_ops.RotateRequest(int(bits), passphrase_stdin, int(live_slot) if live_slot else None)
    plan = cred_ops.plan_rotation(dep, request)
    c.out.show(plan)
    confirmed = no_wait or click.confirm(
        "Has the admin run it? Answer y to store the new key in SSM", default=False, err=True
    )
    c.out.show(cred_ops.complete_rotation(dep, plan, confirmed=confirmed))


# --- credentials -------------------------------------------------------------------------------


@cli.group()
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
@passphrase_stdin_option("Read the key's passphrase from stdin instead of a prompt.")
@pass_ctx
def credentials_set(
    c: Ctx, user: str, private_key_file: Path | None, password_stdin: bool, passphrase_stdin: bool
) -> None:
    """Validate and store the user and its key or password; nothing is written if anything is wrong."""
    if bool(private_key_file) == password_stdin:
        raise click.UsageError("give exactly one of --private-key-file F or --password-stdin")
    if passphrase_stdin and not private_key_file:
        raise click.UsageError("--passphrase-stdin goes with --private-key-file")
    identifier(user, "service user")  # a bad name fails before any AWS call
    request = cred_ops.SetCredentialsRequest(user, private_key_file, passphrase_stdin)
    c.out.show(cred_ops.set_credentials(c.deployment(), request))


@credentials.command("status")
@pass_ctx
def credentials_status(c: Ctx) -> None:
    """Show, per parameter, whether it is set or still the placeholder, and when it last changed.

    Exits 1 when a required parameter is missing or unset. Values are never shown.
    """
    result = cred_ops.status(c.deployment())
    c.out.show(result)
    if not result.complete:
        _fail(click.get_current_context())


# --- check -------------------------------------------------------------------------------------


@cli.command("check")
@pass_ctx
def check(c: Ctx) -> None:
    """Run the connectivity check function and show each step; exit 0 only when all is well."""
    report = check_ops.run_check(c.deployment())
    c.out.show(report)
    if not report.ok:
        _fail(click.get_current_context())


# --- notebook ----------------------------------------------------------------------------------


@cli.group()
def notebook() -> None:
    """Open, inspect, start or stop the SageMaker notebook instance."""


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
    result = notebook_ops.presigned_url(c.deployment(), session_hours)
    c.out.show(result)
    if open_browser and not webbrowser.open(result.url):
        c.out.browser_unavailable()


@notebook.command("status")
@pass_ctx
def notebook_status(c: Ctx) -> None:
    """Show the notebook instance's state."""
    c.out.show(notebook_ops.status(c.deployment()))


@notebook.command("start")
@pass_ctx
def notebook_start(c: Ctx) -> None:
    """Start the notebook instance (takes a few minutes)."""
    c.out.show(notebook_ops.change_state(c.deployment(), "start"))


@notebook.command("stop")
@pass_ctx
def notebook_stop(c: Ctx) -> None:
    """Stop the notebook instance (its storage volume is kept)."""
    c.out.show(notebook_ops.change_state(c.deployment(), "stop"))


# --- training ----------------------------------------------------------------------------------


@cli.group()
def train() -> None:
    """The scheduled training pipeline (SnowSage-<env>-Training): setup SQL, runs, the model."""


@train.command("setup-sql")
@click.option(
    "--desc-integration",
    "desc_integration",
    type=click.File("r"),
    help="Instead: read the admin's DESC INTEGRATION output from this file ('-' for stdin) and "
    "print the two -c settings for the unload role's trust.",
)
@click.option(
    "--integration",
    help="Unload mode: the storage integration (the training_storage_integration setting; not a stack output yet).",
)
@click.option(
    "--unload-role-arn", help="Unload mode: the ARN of the role Snowflake assumes (not a stack output yet)."
)
@click.option("--stage", help="Unload mode: the stage (default: the export function's configured stage).")
@pass_ctx
def train_setup_sql(
    c: Ctx,
    desc_integration: Any,
    integration: str | None,
    unload_role_arn: str | None,
    stage: str | None,
) -> None:
    """Print the SQL a Snowflake admin runs for the training export.

    Always: read access to the source for the service role. With the unload exporter also the
    storage integration (IF NOT EXISTS: replacing it would break the role's trust), the stage with
    KMS encryption, its grants and the DESC INTEGRATION to run last. Its output, pasted into
    `snowsage train setup-sql --desc-integration -`, becomes the two -c settings to deploy with.
    """
    if desc_integration is not None:
        if integration or unload_role_arn or stage:
            raise click.UsageError("--desc-integration reads the admin's output; give it alone")
        c.out.show(train_ops.integration_settings(c.deployment(), desc_integration.read()))
        return
    request = train_ops.SetupSqlRequest(integration, unload_role_arn, stage)
    c.out.show(train_ops.setup_sql(c.deployment(), request))


@train.command("start")
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="K=V",
    help="A pipeline parameter for this run (repeatable): InstanceCount, InstanceType, MinimumRows, "
    "MetricThreshold.",
)
@click.option("--wait", is_flag=True, help="Wait until the run ends; exit 1 if it failed.")
@click.option(
    "--timeout",
    "timeout_minutes",
    type=click.IntRange(1, 7 * 24 * 60),
    default=240,
    show_default=True,
    help="With --wait: give up waiting after this many minutes (the run goes on).",
)
@pass_ctx
def train_start(c: Ctx, params: tuple[str, ...], wait: bool, timeout_minutes: int) -> None:
    """Start a run of the training pipeline (Export, DataCheck, Train, Gate, RegisterModel)."""
    request = train_ops.StartRequest(params, wait, timeout_minutes * 60)
    result = train_ops.start(c.deployment(), request)
    c.out.show(result)
    if not result.ok:
        _fail(click.get_current_context())


@train.command("status")
@click.argument("execution", required=False)
@pass_ctx
def train_status(c: Ctx, execution: str | None) -> None:
    """Show a run (default: the latest): each step, its status and failure, the gate's metric.

    EXECUTION is the execution id or ARN (`snowsage train runs` lists them). Exits 1 when the run
    failed or was stopped.
    """
    result = train_ops.status(c.deployment(), execution)
    c.out.show(result)
    if not result.ok:
        _fail(click.get_current_context())


@train.command("runs")
@click.option("--limit", type=click.IntRange(1, 100), default=10, show_default=True, help="How many runs.")
@pass_ctx
def train_runs(c: Ctx, limit: int) -> None:
    """List the pipeline's runs, newest first."""
    c.out.show(train_ops.runs(c.deployment(), limit))


@train.command("model")
@pass_ctx
def train_model(c: Ctx) -> None:
    """Show the latest registered model: its metric, the run that made it and its approval status."""
    c.out.show(train_ops.latest_model(c.deployment()))


def main() -> None:
    cli(prog_name="snowsage")


if __name__ == "__main__":
    main()
