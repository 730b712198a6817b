#!/usr/bin/env python3
"""CDK entry point: read cdk.json context into one AppConfig, build the stacks, synthesize."""

import os
import sys

import aws_cdk as cdk

from stacks.app_builder import build_app
from stacks.config import ConfigError, load_config


def main() -> int:
    app = cdk.App()
    try:
        cfg = load_config(app.node.get_all_context())
    except ConfigError as exc:
        print(f"snowsage: configuration error (nothing was synthesized):\n{exc}", file=sys.stderr)
        return 2
    # The only environment the app reads: the account the CLI resolved, when cdk.json leaves it open.
    build_app(app, cfg, default_account=os.environ.get("CDK_DEFAULT_ACCOUNT"))
    app.synth()
    return 0


if __name__ == "__main__":
    sys.exit(main())
