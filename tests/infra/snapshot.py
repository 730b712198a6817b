"""The synthesized templates as a refactoring guard: a structure-only change must leave them identical
apart from asset hashes.

`python -m tests.infra.snapshot` rewrites tests/infra/snapshots/ from a fresh synth of both network
modes; do that only for a change that is meant to alter what gets deployed, and read the diff.
`tests/infra/test_template_snapshot.py` fails on any other difference and names the changed paths.
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

SNAPSHOT_DIR = Path(__file__).resolve().parent / "snapshots"
# Asset hashes (S3 keys, asset parameters, the wheelhouse URI inside the lifecycle script) are 64 hex
# digits; they change with any edit of bundled code and say nothing about the deployed structure.
_ASSET_HASH = re.compile(r"\b[0-9a-f]{64}\b")


def normalize(template: Any) -> Any:
    """The template with asset hashes replaced by a marker, so two synths compare by structure."""
    if isinstance(template, dict):
        return {_ASSET_HASH.sub("<asset-hash>", k): normalize(v) for k, v in template.items()}
    if isinstance(template, list):
        return [normalize(v) for v in template]
    if isinstance(template, str):
        return _ASSET_HASH.sub("<asset-hash>", template)
    return template


def snapshot_path(mode: str, kind: str) -> Path:
    return SNAPSHOT_DIR / f"{mode}-{kind}.json"


def differences(expected: Any, actual: Any, path: str = "") -> list[str]:
    """JSON paths where two normalized templates differ (first 50)."""
    out: list[str] = []
    if isinstance(expected, dict) and isinstance(actual, dict):
        for key in sorted(set(expected) | set(actual)):
            where = f"{path}/{key}"
            if key not in actual:
                out.append(f"{where}: removed")
            elif key not in expected:
                out.append(f"{where}: added")
            else:
                out.extend(differences(expected[key], actual[key], where))
    elif isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            out.extend(differences(e, a, f"{path}[{i}]"))
    elif isinstance(expected, str) and isinstance(actual, str) and expected != actual:
        # Long strings (the lifecycle scripts) are shown around their first difference.
        at = next(
            (i for i, (e, a) in enumerate(zip(expected, actual, strict=False)) if e != a),
            min(len(expected), len(actual)),
        )
        start = max(0, at - 40)
        out.append(
            f"{path or '/'} at character {at}: {json.dumps(expected[start : at + 80])} -> "
            f"{json.dumps(actual[start : at + 80])}"
        )
    elif expected != actual:
        out.append(f"{path or '/'}: {json.dumps(expected)[:120]} -> {json.dumps(actual)[:120]}")
    return out[:50]


def main() -> int:
    from tests.infra.conftest import PRIVATELINK, synthesize

    SNAPSHOT_DIR.mkdir(exist_ok=True)
    for mode, overrides in (("nat", {}), ("privatelink", PRIVATELINK)):
        with tempfile.TemporaryDirectory() as tmp:
            synth = synthesize(Path(tmp), **overrides)
        for kind, template in synth.templates.items():
            text = json.dumps(normalize(template), indent=1, sort_keys=True) + "\n"
            snapshot_path(mode, kind).write_text(text)
            print(f"wrote {snapshot_path(mode, kind)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
