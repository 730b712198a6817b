"""Where a synth of the real app spends its time, without the CLI: imports, building the stacks,
``app.synth()`` (nag packs and asset staging run there). ``--no-nag`` builds the same app without
the packs (build_app's own switch), so the difference is the packs' cost.

    python -m bench._synth_phases --outdir DIR [--no-nag]    # prints one JSON line
"""

from __future__ import annotations

import argparse
import json
import time

began = time.perf_counter()
import aws_cdk as cdk  # noqa: E402 - importing is one of the phases timed

from stacks.app_builder import build_app  # noqa: E402
from stacks.config import load_config  # noqa: E402

imported = time.perf_counter()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--outdir", required=True)
    parser.add_argument("--no-nag", action="store_true")
    args = parser.parse_args()
    # CDK_CONTEXT_JSON (set by the caller from cdk.json, as the CLI would) holds the context.
    app = cdk.App(outdir=args.outdir)
    cfg = load_config(app.node.get_all_context())
    t0 = time.perf_counter()
    build_app(app, cfg, nag=not args.no_nag)
    built = time.perf_counter()
    app.synth()
    done = time.perf_counter()
    print(json.dumps({"import_s": imported - began, "build_s": built - t0, "synth_s": done - built}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
