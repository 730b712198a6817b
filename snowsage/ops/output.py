"""The one place the CLI's results become output: text for people or, with --json, one JSON
document on stdout; guidance on stderr (silent with --json, so both streams stay parseable).

``Output.show`` takes any operation's result; the JSON keys per result are the CLI's contract.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Collection, Sequence
from typing import Any

import click

from snowsage.ops.credentials import (
    CredentialsStatus,
    GeneratedKey,
    RotationFinished,
    RotationPlan,
    RotationStored,
    StoredCredentials,
)
from snowsage.ops.notebook import NotebookChange, NotebookStatus, NotebookUrl
from snowsage.ops.snowflake_sql import NetworkPolicy, SetupSql
from snowsage.ops.training import (
    IntegrationSettings,
    RegisteredModel,
    RunList,
    RunStatus,
    StartedRun,
    TrainingSetupSql,
)
from snowsage.reports import CheckReport
from snowsage.setup_sql import slot_column


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if hasattr(value, "strftime") else str(value or "")


def _run_doc(r: RunStatus) -> dict[str, Any]:
    return {
        "pipeline": r.pipeline,
        "execution_id": r.execution_id,
        "execution_arn": r.execution_arn,
        "status": r.status,
        "failure_reason": r.failure_reason,
        "failed_step": r.failed_step,
        "started": r.started,
        "last_modified": r.last_modified,
        "parameters": dict(r.parameters),
        "steps": None if r.steps is None else [dataclasses.asdict(s) for s in r.steps],
        "steps_unavailable": r.steps_unavailable,
        "metric": dataclasses.asdict(r.metric) if r.metric else None,
    }


def _run_lines(r: RunStatus) -> list[str]:
    lines = [f"run {r.execution_id} of {r.pipeline}: {r.status} (started {_when(r.started)})"]
    lines.append("parameters: " + ", ".join(f"{k}={v}" for k, v in r.parameters.items()))
    if r.steps:
        rows = [("STEP", "STATUS", "ENDED", "DETAIL")]
        rows += [(s.name, s.status, _when(s.ended), s.failure_reason or s.detail) for s in r.steps]
        lines += table(rows)
    elif r.steps is not None:
        lines.append("no step has started yet")
    m = r.metric
    if m is not None:
        value = "not reported yet" if m.value is None else f"{m.value:.10g}"
        gate = (
            f" (gate: {m.comparison} {m.threshold:.10g})" if m.comparison and m.threshold is not None else ""
        )
        verdict = "" if m.passed is None else (": passes the gate" if m.passed else ": fails the gate")
        lines.append(f"metric: {m.name} = {value}{gate}{verdict}")
    if r.next_step:
        lines.append(f"what to do: {r.next_step}")
    return lines


def table(
    rows: Sequence[Sequence[str]], *, right: Collection[int] = (), min_widths: Sequence[int] = ()
) -> list[str]:
    """Columns as wide as their widest cell (or ``min_widths``), two spaces apart; the last column
    is left as it is, so a long detail never pads the others."""
    padded = range(len(rows[0]) - 1)
    minimum = [*min_widths, *[0] * len(rows[0])]
    widths = [max(minimum[i], *(len(row[i]) for row in rows)) for i in padded]

    def cell(i: int, text: str) -> str:
        return text.rjust(widths[i]) if i in right else text.ljust(widths[i])

    return ["  ".join([*(cell(i, row[i]) for i in padded), row[-1]]) for row in rows]


class Output:
    def __init__(self, *, as_json: bool) -> None:
        self.as_json = as_json

    def emit(self, text: str, data: Any) -> None:
        """The command's result on stdout: text for people or, with --json, one JSON document."""
        if self.as_json:
            click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))
        else:
            click.echo(text, nl=not text.endswith("\n"))

    def note(self, text: str) -> None:
        """Guidance for people on stderr."""
        if not self.as_json:
            click.echo(text, err=True)

    @functools.singledispatchmethod
    def show(self, result: object) -> None:
        raise TypeError(f"no rendering for {type(result).__name__}")

    # --- Snowflake SQL ---------------------------------------------------------------------------

    @show.register
    def _setup_sql(self, r: SetupSql) -> None:
        if r.policy == "no_nat":
            self.note(
                f"No network policy: {r.network_stack} has no NAT addresses (PrivateLink). "
                "`snowsage network-policy` explains how to limit logins to the VPC endpoint."
            )
        elif r.policy == "left_out":
            self.note("Left out the network policy (--no-network-policy): the user can log in from anywhere.")
        else:
            self.note(
                f"The SQL ends with a network policy: {r.user} can log in only from the NAT addresses "
                f"{', '.join(r.nat_ips)} (--no-network-policy leaves it out)."
            )
        self.emit(r.sql, {"auth": r.auth, "user": r.user, "sql": r.sql})
        if r.auth == "keypair":
            self.note(
                "Next: `snowsage keypair generate` prints the ALTER USER ... SET RSA_PUBLIC_KEY statement."
            )

    @show.register
    def _network_policy(self, r: NetworkPolicy) -> None:
        if r.sql is None:
            explanation = r.explanation or ""
            self.emit(
                explanation,
                {"mode": r.mode, "vpc_id": r.vpc_id, "sql": None, "explanation": explanation},
            )
        else:
            self.emit(r.sql, {"mode": r.mode, "values": list(r.values), "sql": r.sql})

    # --- key pairs and credentials ---------------------------------------------------------------

    @show.register
    def _generated_key(self, r: GeneratedKey) -> None:
        self.note(
            f"Stored a new {r.bits}-bit RSA private key in {r.parameter} "
            + (
                f"(encrypted with the passphrase now in {r.passphrase_parameter})"
                if r.encrypted
                else "(unencrypted; passphrase parameter cleared)"
            )
            + (f"; a copy is in {r.out} (mode 0600)" if r.out else "")
            + ".\nHave a Snowflake admin run the statement below, then run `snowsage check`:"
        )
        self.emit(
            r.sql,
            {
                "parameter": r.parameter,
                "user": r.user,
                "slot": r.slot,
                "fingerprint": r.fingerprint,
                "sql": r.sql,
                "out": str(r.out) if r.out else None,
            },
        )

    @show.register
    def _rotation_plan(self, r: RotationPlan) -> None:
        if r.slot_assumed:
            self.note(
                "The live key's slot is not recorded; assuming RSA_PUBLIC_KEY (pass --live-slot 2 if not)."
            )
        self.note(
            f"The live key ({r.live_fingerprint}) stays in {slot_column(r.live_slot)}. "
            "Have a Snowflake admin run:"
        )
        self.emit(r.sql, {"user": r.user, "slot": r.slot, "fingerprint": r.fingerprint, "sql": r.sql})

    @show.register
    def _rotation_stored(self, r: RotationStored) -> None:
        self.note(
            f"Stored the new key in {r.parameter}. Next: `snowsage check`, then `snowsage keypair rotate --finish`."
        )

    @show.register
    def _rotation_finished(self, r: RotationFinished) -> None:
        self.note("Have a Snowflake admin run this once `snowsage check` passes with the new key:")
        self.emit(r.sql, {"user": r.user, "unset_slot": r.unset_slot, "sql": r.sql})

    @show.register
    def _stored_credentials(self, r: StoredCredentials) -> None:
        self.note("Stored " + ", ".join(f"{k} in {name}" for k, name in r.parameters.items()) + ".")
        data: dict[str, Any] = {"user": r.user, "parameters": dict(r.parameters)}
        if r.fingerprint:
            data.update(fingerprint=r.fingerprint, sql=r.sql)
            self.note("If the admin has not registered this key yet, have them run:")
        self.emit(r.sql, data)

    @show.register
    def _credentials_status(self, r: CredentialsStatus) -> None:
        rows = [dataclasses.asdict(p) for p in r.parameters]
        key_facts = {
            k: v
            for k, v in (
                ("fingerprint", r.fingerprint),
                ("slot", r.slot),
                ("key_error", r.key_error),
                ("rotation_pending", r.rotation_pending),
            )
            if v is not None
        }
        lines = [f"auth: {r.auth}   region: {r.region}   env: {r.env_name}"]
        lines += table([(p.key, p.parameter, p.state, p.last_modified) for p in r.parameters])
        if r.fingerprint:
            lines.append(f"private key fingerprint {r.fingerprint} (slot {r.slot})")
        if r.key_error:
            lines.append(f"private key does not load: {r.key_error}")
        if r.rotation_pending:
            lines.append(f"rotation pending: `snowsage keypair rotate --finish` unsets {r.rotation_pending}")
        self.emit("\n".join(lines), {"auth": r.auth, "parameters": rows, "complete": r.complete, **key_facts})

    # --- check and notebook ----------------------------------------------------------------------

    @show.register
    def _check(self, r: CheckReport) -> None:
        rows = [("STEP", "RESULT", "MS", "DETAIL")]
        for step in r.steps:
            result = "ok" if step.ok is True else ("FAIL" if step.ok is False else "skip")
            ms = f"{step.ms:.0f}" if isinstance(step.ms, int | float) else ""
            rows.append((step.name, result, ms, step.detail))
        lines = table(rows, right={2}, min_widths=(0, 0, 6))  # MS as wide as it always was
        lines.append(f"status: {r.status}")
        if r.diagnosis:
            lines.append(f"diagnosis: {r.diagnosis}")
        self.emit("\n".join(lines), r.to_dict())

    @show.register
    def _notebook_url(self, r: NotebookUrl) -> None:
        self.emit(r.url, {"notebook": r.notebook, "url": r.url})
        self.note("Open it within 5 minutes; it is a login link, so do not share it.")

    def browser_unavailable(self) -> None:
        self.note("No web browser could be started; open the URL above yourself.")

    @show.register
    def _notebook_status(self, r: NotebookStatus) -> None:
        data = dataclasses.asdict(r)
        self.emit("\n".join(f"{k}: {v}" for k, v in data.items() if v), data)

    @show.register
    def _notebook_change(self, r: NotebookChange) -> None:
        data = {"notebook": r.notebook, "status": r.status, "changed": r.changed}
        if not r.changed:
            self.emit(f"notebook {r.notebook} is already {r.status}", data)
        else:
            verb = "starting" if r.action == "start" else "stopping"
            self.emit(f"{verb} notebook {r.notebook}; follow it with `snowsage notebook status`", data)

    # --- training ------------------------------------------------------------------------------

    @show.register
    def _training_setup_sql(self, r: TrainingSetupSql) -> None:
        self.note(
            f"SQL for a Snowflake admin: {r.role} reads the training source ({r.source})"
            + (
                f"; unload mode: storage integration {r.integration}, stage {r.stage}."
                if r.exporter == "unload"
                else " (client exporter: no storage integration needed)."
            )
        )
        self.emit(
            r.sql,
            {
                "exporter": r.exporter,
                "role": r.role,
                "source": r.source,
                "integration": r.integration,
                "stage": r.stage,
                "sql": r.sql,
            },
        )
        if r.exporter == "unload":
            self.note(
                "Then paste the DESC INTEGRATION output into "
                "`snowsage train setup-sql --desc-integration -` for the two config settings."
            )

    @show.register
    def _integration_settings(self, r: IntegrationSettings) -> None:
        self.note(
            "The unload role's trust takes these settings (add them to cdk.json's context, or pass them):"
        )
        self.emit(
            " ".join(r.context_args),
            {"settings": dict(r.settings), "context_args": r.context_args, "deploy": r.deploy_command},
        )
        self.note(f"Then redeploy: {r.deploy_command}")

    @show.register
    def _started_run(self, r: StartedRun) -> None:
        data = {
            "pipeline": r.pipeline,
            "execution_id": r.execution_id,
            "execution_arn": r.execution_arn,
            "parameters": dict(r.parameters),
            "run": _run_doc(r.run) if r.run else None,
        }
        given = ", ".join(f"{k}={v}" for k, v in r.parameters.items()) or "the pipeline's defaults"
        lines = [f"started run {r.execution_id} of {r.pipeline} with {given}"]
        if r.run:
            lines += _run_lines(r.run)
        self.emit("\n".join(lines), data)
        if r.run is None:
            self.note(f"Follow it with `snowsage train status {r.execution_id}` (or start with --wait).")
        elif r.run.steps_unavailable:
            self.note(r.run.steps_unavailable)

    @show.register
    def _run_status(self, r: RunStatus) -> None:
        self.emit("\n".join(_run_lines(r)), _run_doc(r))
        if r.steps_unavailable:
            self.note(r.steps_unavailable)

    @show.register
    def _run_list(self, r: RunList) -> None:
        data = {"pipeline": r.pipeline, "runs": [dataclasses.asdict(x) for x in r.runs]}
        if not r.runs:
            self.emit(f"pipeline {r.pipeline} has no run yet", data)
            self.note("Start one with `snowsage train start`.")
            return
        rows = [("EXECUTION", "STATUS", "STARTED", "FAILURE")]
        rows += [(x.execution_id, x.status, _when(x.started), x.failure_reason or "") for x in r.runs]
        self.emit("\n".join(table(rows)), data)

    @show.register
    def _registered_model(self, r: RegisteredModel) -> None:
        data = dataclasses.asdict(r)
        metric = f"{r.metric} = {r.metric_value} (threshold {r.threshold})" if r.metric else "not recorded"
        lines = [
            f"model package: {r.model_package_arn} (version {r.version} of {r.group})",
            f"approval: {r.approval_status}",
            f"metric: {metric}",
            f"registered: {_when(r.created)} by run {r.pipeline_execution_id or '?'}",
            f"model data: {r.model_data_url or '?'}",
        ]
        self.emit("\n".join(lines), data)
        if r.approval_status == "PendingManualApproval":
            self.note(
                "Approve it once you have looked at it: aws sagemaker update-model-package "
                f"--model-package-arn {r.model_package_arn} --model-approval-status Approved"
            )
