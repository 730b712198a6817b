"""Secrets as they may reach the CLI: one line of standard input, or a hidden prompt on a terminal.
Never an argument (it would show in ``ps`` and the shell history), never echoed."""

from __future__ import annotations

import sys

import click

from snowsage.ops.deployment import OperationError


def stdin_is_terminal() -> bool:
    return sys.stdin is not None and sys.stdin.isatty()


def read_secret(what: str, option: str, prompt: str | None = None) -> str:
    if sys.stdin is None:
        raise OperationError(f"{option} needs standard input, but there is none")
    terminal = stdin_is_terminal()
    try:
        if terminal:
            value = click.prompt(prompt or what[:1].upper() + what[1:], hide_input=True, err=True)
        else:
            value = sys.stdin.readline().rstrip("\r\n")
        value.encode("utf-8")  # a surrogate-escaped byte (C locale) is no more storable than a bad one
    except UnicodeError:
        source = "typed" if terminal else f"read by {option}"
        raise OperationError(
            f"the {what} {source} is not UTF-8 text; SSM stores only text, so give the {what} as "
            "UTF-8 (a key encrypted with a non-UTF-8 passphrase must be re-encrypted first, e.g. with "
            "openssl pkcs8 -topk8 -v2 aes-256-cbc)"
        ) from None
    if not value.strip():
        raise OperationError(f"{option} read an empty {what}; pipe the {what} in on one line and try again")
    return value
