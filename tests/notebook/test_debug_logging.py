"""DEBUG logging in a notebook (``logging.basicConfig(level=logging.DEBUG)``) must not print the key.

botocore logs every response body at DEBUG, and GetParameters WithDecryption returns the private
key; a cell's output lands in the ``.ipynb`` and its S3 backup, so one such line leaks the secret.
"""

from __future__ import annotations

import base64
import contextlib
import io
import logging
from collections.abc import Iterator

import pytest

import snowsage.notebook as nb
from snowsage import keys
from tests.notebook.conftest import Deploy

SDK_LOGGERS = ("botocore", "boto3", "urllib3", "s3transfer")


@contextlib.contextmanager
def debug_logging() -> Iterator[io.StringIO]:
    """What ``logging.basicConfig(level=logging.DEBUG)`` sets up in a fresh kernel: root at DEBUG and
    a handler that prints every record (here into a buffer standing in for the cell output)."""
    root = logging.getLogger()
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter(logging.BASIC_FORMAT))
    before = root.level
    # A fresh kernel: the SDK loggers inherit DEBUG (a CLI test in this process may have quieted them).
    sdk_before = {name: logging.getLogger(name).level for name in SDK_LOGGERS}
    for name in SDK_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield out
    finally:
        root.removeHandler(handler)
        root.setLevel(before)
        for name, level in sdk_before.items():
            logging.getLogger(name).setLevel(level)


def _key_fragments(pem: str) -> list[str]:
    body = "".join(line for line in pem.splitlines() if line and not line.startswith("-----"))
    der = base64.b64encode(keys.private_key_der(keys.load_private_key(pem))).decode()
    # Any 40-character run of the PEM body or of the DER form counts as a leak (escaped or re-wrapped).
    return [s[i : i + 40] for s in (body, der) for i in range(0, len(s) - 40, 100)]


def test_debug_logging_shows_no_key_material(
    deploy: Deploy,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    private_key_pem: str,
) -> None:
    dep = deploy()  # the test's own setup writes the key to SSM: not what is being checked
    caplog.clear()
    capsys.readouterr()
    with debug_logging() as cell_output:
        levels = {name: logging.getLogger(name).level for name in SDK_LOGGERS}
        caplog.set_level(logging.DEBUG)
        conn = nb.connect(dep.settings_file)
        assert nb.query("select 1 as one")["ONE"].tolist() == [1]
        assert not conn.is_closed()
        # The user's own logging configuration is untouched once the helper's calls are done.
        assert {name: logging.getLogger(name).level for name in SDK_LOGGERS} == levels

    captured = capsys.readouterr()
    shown = cell_output.getvalue() + caplog.text + captured.out + captured.err
    assert "DEBUG" in shown  # DEBUG logging really was on (the check below could not pass vacuously)
    # Booleans only: a failing assert must not print the captured text (and the key) itself.
    pem_block_shown = "PRIVATE KEY" in shown
    fragments_shown = sum(f in shown for f in _key_fragments(private_key_pem))
    assert not pem_block_shown and not fragments_shown, "private key material was logged"


def test_quieting_covers_sdk_loggers_set_to_debug_and_restores_them() -> None:
    from snowsage.aws import sdk_loggers_quiet

    parsers = logging.getLogger("botocore.parsers")
    before = parsers.level
    parsers.setLevel(logging.DEBUG)  # what a user debugging botocore might have done
    try:
        with sdk_loggers_quiet():
            with sdk_loggers_quiet():  # nested (connect inside a helper): still quiet inside
                pass
            assert not parsers.isEnabledFor(logging.DEBUG)
            assert not logging.getLogger("urllib3.connectionpool").isEnabledFor(logging.INFO)
        assert parsers.level == logging.DEBUG
    finally:
        parsers.setLevel(before)
