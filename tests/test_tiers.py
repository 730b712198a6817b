"""The tier each test lands in (tests/conftest.py), which decides what `make unit` runs."""

from __future__ import annotations

import pytest

TESTS = """
import pytest

class Synth: ...

@pytest.fixture
def moto_server(): ...

@pytest.fixture
def fakesnow_server(): ...

@pytest.fixture
def nat(): ...

@pytest.fixture
def moto_endpoint(moto_server): ...

@pytest.fixture
def custom_synth() -> Synth: ...

def test_plain(tmp_path): ...

def test_through_a_fixture_that_needs_moto(moto_endpoint): ...

def test_synth_fixture(nat): ...

def test_a_fixture_returning_a_synth(custom_synth): ...

def test_synth_and_server(nat, fakesnow_server): ...

@pytest.mark.infra
def test_marked_infra(): ...

@pytest.mark.e2e
def test_e2e(fakesnow_server): ...
"""


def _selected(pytester: pytest.Pytester, tier: str) -> set[str]:
    result = pytester.runpytest_inprocess("--collect-only", "-q", "-m", tier, "-p", "no:randomly")
    return {line.split("::")[-1] for line in result.outlines if "::" in line}


def test_each_test_gets_the_heaviest_tier_its_fixtures_or_markers_need(pytester: pytest.Pytester) -> None:
    pytester.makeconftest("from tests.conftest import pytest_collection_modifyitems  # noqa: F401\n")
    pytester.makepyfile(test_sample=TESTS)
    assert _selected(pytester, "unit") == {"test_plain"}
    assert _selected(pytester, "integration") == {"test_through_a_fixture_that_needs_moto"}
    assert _selected(pytester, "infra") == {
        "test_synth_fixture",
        "test_a_fixture_returning_a_synth",
        "test_synth_and_server",
        "test_marked_infra",
    }
    assert _selected(pytester, "e2e") == {"test_e2e"}
