"""Refactoring guard: the templates equal the recorded snapshots apart from asset hashes.

A deliberate change to what gets deployed updates the snapshots (`python -m tests.infra.snapshot`)
in the same commit, so the diff shows a reviewer exactly what changed in the templates.
"""

from __future__ import annotations

import json

import pytest

from .conftest import Synth
from .snapshot import differences, normalize, snapshot_path


@pytest.mark.infra  # the synth fixtures, by name
@pytest.mark.parametrize("mode", ["nat", "privatelink"])
def test_templates_match_the_recorded_snapshots(mode: str, request: pytest.FixtureRequest) -> None:
    synth: Synth = request.getfixturevalue(mode)
    for kind, template in synth.templates.items():
        recorded = json.loads(snapshot_path(mode, kind).read_text())
        diff = differences(recorded, normalize(template))
        assert not diff, (
            f"{mode} {kind} template differs from {snapshot_path(mode, kind).name} at:\n  "
            + "\n  ".join(diff)
            + "\nIf the change is meant to alter the deployment, run `python -m tests.infra.snapshot` "
            "and commit the snapshots with it."
        )


def test_normalize_keeps_everything_but_asset_hashes() -> None:
    h1, h2 = "a" * 64, "b" * 64
    left = {"S3Key": f"{h1}.zip", "Size": 20, "Name": "deadbeef"}
    right = {"S3Key": f"{h2}.zip", "Size": 20, "Name": "deadbeef"}
    assert normalize(left) == normalize(right)
    assert differences(normalize(left), normalize({**right, "Size": 30})) == ["/Size: 20 -> 30"]
    script = "#!/bin/bash\n" + "x=1\n" * 100
    (where,) = differences({"S": script}, {"S": script.replace("x=1\nx=1\nx=1\n", "x=1\nnice x=1\n", 1)})
    assert where.startswith("/S at character 16: ") and "nice" in where
