"""fakesnow's HTTP server for the sandbox and tests: ``python -m sandbox.fakesnow_server -p PORT``.

fakesnow 0.12.1 speaks Snowflake's HTTP protocol to the real connector (connect with
``host=127.0.0.1, port=PORT, protocol="http"``, any account, any credentials: it ignores
authentication). It lacks CURRENT_ACCOUNT() and CURRENT_REGION(), which the connectivity check's
identity query uses, so this wrapper rewrites them to fixed literals before starting the server.
"""

from __future__ import annotations

import argparse
import signal
import threading

import fakesnow
import fakesnow.transforms as transforms
from sqlglot import exp

SANDBOX_ACCOUNT = "SANDBOX"
SANDBOX_REGION = "SANDBOX_LOCAL"

_current_version = transforms.current_version


def _identity_functions(expression: exp.Expr) -> exp.Expr:
    if isinstance(expression, exp.CurrentAccount):
        return exp.Literal.string(SANDBOX_ACCOUNT)
    if isinstance(expression, exp.CurrentRegion):
        return exp.Literal.string(SANDBOX_REGION)
    return _current_version(expression)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-p", "--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()

    # fakesnow's cursor looks the transform up on the module at every statement.
    transforms.current_version = _identity_functions

    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with fakesnow.server(port=args.port, host=args.host):
        stop.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
