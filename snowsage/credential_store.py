"""Writes SSM parameters that only work together (a private key and its passphrase, a user and its
key or password) and the key's slot tags, so that a failure at any call leaves the previous set in
place.

SSM has no transaction across parameters, so: values that do not change are not rewritten (the
usual unencrypted key is then one PutParameter call, which is atomic); the private key goes first,
being the value a size limit or a policy is likeliest to refuse, when nothing needs undoing yet; and
whatever was written before a failure is put back to the value read just before, ahead of the error.
Messages name parameters and AWS's reason, never a value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from snowsage.aws import aws_error_message
from snowsage.stack_outputs import Deployment


class CredentialWriteError(Exception):
    """A write failed; the message says what holds which value now and what to do."""


@dataclass(frozen=True)
class TagChange:
    parameter: str
    add: Mapping[str, str]
    remove: Sequence[str] = ()


def store_together(
    dep: Deployment, values: Mapping[str, str], *, what: str, tags: TagChange | None = None
) -> None:
    """Write ``values`` (parameter name -> value, in this order), then ``tags``; all or none.

    ``what`` names the set for messages, e.g. "private key and passphrase".
    """
    names = list(values)
    before = {n: p.value for n, p in dep.require_parameters({n: n for n in names}).items()}
    tags_before = dep.tags(tags.parameter) if tags else {}
    dep.output("Data", "KeyArn")  # resolved now, so nothing but the writes can fail between them
    written: list[str] = []
    step = ""
    try:
        for name in names:
            if values[name] == before[name]:
                continue
            step = name
            dep.put_secure(name, values[name])
            written.append(name)
        if tags:
            step = f"the tags on {tags.parameter}"
            dep.set_tags(tags.parameter, tags.add, remove=tags.remove)
    except BaseException as exc:
        undo_failed = _undo(dep, before, written, tags, tags_before if step.startswith("the tags") else None)
        if not isinstance(exc, Exception):  # Ctrl-C: put things back, then stop as asked
            raise
        raise CredentialWriteError(
            _message(what, step, aws_error_message(exc), written, undo_failed, names)
        ) from None


def _undo(
    dep: Deployment,
    before: Mapping[str, str],
    written: Sequence[str],
    tags: TagChange | None,
    tags_before: Mapping[str, str] | None,
) -> dict[str, str]:
    """Put back what was written, last first; returns {what could not be put back: why}."""
    failed: dict[str, str] = {}
    if tags and tags_before is not None:
        touched = [*tags.add, *tags.remove]
        try:
            dep.set_tags(
                tags.parameter,
                {k: tags_before[k] for k in touched if k in tags_before},
                remove=[k for k in touched if k not in tags_before],
            )
        except Exception as exc:  # noqa: BLE001 - reported in the message, next to the cause
            failed[f"the tags on {tags.parameter}"] = aws_error_message(exc)
    for name in reversed(written):
        try:
            dep.put_secure(name, before[name])
        except Exception as exc:  # noqa: BLE001 - reported in the message, next to the cause
            failed[name] = aws_error_message(exc)
    return failed


def _message(
    what: str,
    step: str,
    cause: str,
    written: Sequence[str],
    undo_failed: Mapping[str, str],
    names: Sequence[str],
) -> str:
    head = f"storing the new {what} failed at {step}: {cause}."
    if not undo_failed:
        done = f"Put back what was already written ({_join(written)})" if written else "Nothing was written"
        return (
            f"{head} {done}: the previous {what} stay in place in {_join(names)}; run the command "
            "again once the cause is fixed"
        )
    stuck = [n for n in undo_failed if n in names]
    reasons = "; ".join(f"{n}: {why}" for n, why in undo_failed.items())
    if not stuck:  # only the tags: the parameters hold the previous set again
        return (
            f"{head} The previous {what} stay in place, but restoring {_join(undo_failed)} failed too "
            f"({reasons}): the key's slot tags may be wrong; check them with `snowsage credentials status` "
            "before the next `snowsage keypair rotate`"
        )
    rest = [n for n in names if n not in stuck]
    return (
        f"{head} Putting the previous values back failed too ({reasons}): {_join(stuck)} "
        f"{'holds' if len(stuck) == 1 else 'hold'} the new value"
        + (f" while {_join(rest)} {'holds' if len(rest) == 1 else 'hold'} the previous one" if rest else "")
        + f", so the stored {what} do not match and logins fail: run the command again as soon as AWS "
        "accepts the calls"
    )


def _join(items: Sequence[str] | Mapping[str, str]) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
