"""The check function's packaged asset: what Lambda would run, built the way synth builds it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from stacks.constructs.bundling import REPO_ROOT, LambdaLocalBundling
from stacks.constructs.connectivity_check import CHECK_SOURCE
from tests.conftest import make_settings, put_parameters, sandbox_values

from .conftest import Synth

ELF_MACHINES = {0xB7: "aarch64", 0x3E: "x86_64"}


def _check_asset_dir(s: Synth) -> Path:
    fn = next(
        v
        for k, v in s.resources("notebook", "AWS::Lambda::Function").items()
        if k.startswith("CheckFunction")
    )
    asset_hash = fn["Properties"]["Code"]["S3Key"].removesuffix(".zip")
    return s.outdir / f"asset.{asset_hash}"


def _elf_machine(path: Path) -> str | None:
    with path.open("rb") as f:
        head = f.read(20)
    if head[:4] != b"\x7fELF":
        return None
    return ELF_MACHINES.get(int.from_bytes(head[18:20], "little"), "other")


def test_arm64_bundle_has_only_arm64_or_pure_code(nat: Synth) -> None:
    asset = _check_asset_dir(nat)
    assert (asset / "handler.py").exists() and (asset / "snowsage" / "diagnostics.py").exists()
    assert (asset / "snowflake" / "connector").is_dir()
    binaries = [p for p in asset.rglob("*.so*") if p.is_file()]
    assert binaries, "the connector and cryptography ship compiled extensions"
    machines = {p.relative_to(asset).as_posix(): _elf_machine(p) for p in binaries}
    assert {m for m in machines.values() if m} == {"aarch64"}, machines
    assert not list(asset.rglob("*cp311*")) and not list(asset.rglob("*x86_64*.so"))


def test_bundle_leaves_out_what_the_runtime_provides(nat: Synth) -> None:
    asset = _check_asset_dir(nat)
    for provided in ("boto3", "botocore", "s3transfer"):
        assert not (asset / provided).exists(), f"{provided} is in the Lambda runtime already"
    for unneeded in ("pandas", "pyarrow", "numpy"):
        assert not (asset / unneeded).exists(), f"the check does not import {unneeded}"
    size = sum(p.stat().st_size for p in asset.rglob("*") if p.is_file())
    assert size < 60 * 1024 * 1024, f"unzipped bundle is {size / 1e6:.1f} MB"


@pytest.fixture(scope="module")
def host_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same bundling, for this machine's Python and platform, so it can run here."""
    out = tmp_path_factory.mktemp("check-bundle-host")
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    bundling = LambdaLocalBundling(
        CHECK_SOURCE, python_version=version, arch=None, packages=[REPO_ROOT / "snowsage"]
    )
    assert bundling.try_bundle(str(out), None) is True  # type: ignore[arg-type]
    return out


RUNNER = textwrap.dedent(
    """
    import json, sys, types
    sys.path.insert(0, sys.argv[1])
    import handler, snowflake.connector, snowsage
    ctx = types.SimpleNamespace(function_name="snowsage-check", memory_limit_in_mb=512,
        invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:snowsage-check", aws_request_id="r1")
    report = handler.handler({}, ctx)
    print("REPORT " + json.dumps({"report": report, "files": [handler.__file__, snowflake.connector.__file__, snowsage.__file__]}))
    """
)


def test_host_bundle_runs_the_happy_path(
    host_bundle: Path, ssm_client: Any, kms_key_id: str, fakesnow_server: Any, aws_environment: dict[str, str]
) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    settings = make_settings("bundle", "keypair")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    put_parameters(
        ssm_client,
        settings,
        sandbox_values(fakesnow_server, user="SVC", private_key=pem),
        kms_key_id=kms_key_id,
    )
    env = {
        **os.environ,
        **aws_environment,
        "SNOWSAGE_SETTINGS": settings.to_json(),
        "POWERTOOLS_SERVICE_NAME": "snowsage-bundle-check",
        "POWERTOOLS_METRICS_NAMESPACE": "SnowSageTest",
        "PYTHONPATH": "",
    }
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER, str(host_bundle)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd="/",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(line for line in proc.stdout.splitlines() if line.startswith("REPORT "))
    result = json.loads(line.removeprefix("REPORT "))
    report = result["report"]
    assert report["ok"] is True, report["diagnosis"]
    assert report["snowflake"]["version"]
    for path in result["files"]:
        assert path.startswith(str(host_bundle)), f"{path} was not imported from the bundle"
    assert "BEGIN PRIVATE KEY" not in proc.stdout + proc.stderr


def _tiny_function(root: Path) -> tuple[Path, Path]:
    source, package = root / "fn", root / "lib"
    source.mkdir()
    package.mkdir()
    (source / "requirements.txt").write_text("")
    (source / "handler.py").write_text("from lib import VALUE\n")
    (package / "__init__.py").write_text("VALUE = 1\n")
    return source, package


def test_a_changed_source_is_bundled_again_never_served_stale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Synth takes finished bundles from the cache by the hash of their inputs: an edit to the
    handler or to a bundled package must give a new hash and a bundle holding the edit."""
    from stacks.constructs import bundling

    monkeypatch.setattr(bundling, "CACHE_DIR", tmp_path / "cache")
    source, package = _tiny_function(tmp_path)

    def bundle(name: str) -> tuple[str, Path]:
        bundler = LambdaLocalBundling(source, python_version="3.14", arch="aarch64", packages=[package])
        out = tmp_path / name
        assert bundler.try_bundle(str(out), None) is True  # type: ignore[arg-type]
        return bundler.asset_hash(), out

    first_hash, first = bundle("first")
    again_hash, _ = bundle("again")
    assert again_hash == first_hash
    (package / "__pycache__").mkdir()
    (package / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")
    assert bundle("pyc")[0] == first_hash, "a bytecode cache is not an input"

    (package / "__init__.py").write_text("VALUE = 2\n")
    lib_hash, lib_out = bundle("lib-edit")
    assert lib_hash != first_hash
    assert (lib_out / "lib" / "__init__.py").read_text() == "VALUE = 2\n"
    assert (first / "lib" / "__init__.py").read_text() == "VALUE = 1\n", "an earlier bundle changed under it"

    (source / "handler.py").write_text("from lib import VALUE as V\n")
    handler_hash, handler_out = bundle("handler-edit")
    assert handler_hash not in (first_hash, lib_hash)
    assert (handler_out / "handler.py").read_text() == "from lib import VALUE as V\n"
    assert not (handler_out / "requirements.txt").exists()

    other_arch = LambdaLocalBundling(source, python_version="3.14", arch="x86_64", packages=[package])
    assert other_arch.asset_hash() != handler_hash, "the target platform is an input"


def test_wheelhouse_holds_every_pin_for_the_notebooks_python_and_platform(nat: Synth) -> None:
    """What on_start installs offline: each pin as a wheel the notebook's cp310 / x86_64 env can take,
    a snowsage wheel, uv in tools/ (not a requirement: it never enters the user's env), the helpers."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name, parse_wheel_filename

    house = next(p.parent for p in nat.outdir.glob("asset.*/install_wheels.sh"))
    lines = (house / "requirements.txt").read_text().splitlines()
    pins = {}
    for line in lines:
        if line.strip() and not line.lstrip().startswith("#"):
            req = Requirement(line)
            pins[canonicalize_name(req.name)] = str(req.specifier).removeprefix("==")
    wheels = {}
    for whl in (house / "wheels").glob("*.whl"):
        name, version, _build, tags = parse_wheel_filename(whl.name)
        wheels[name] = str(version)
        for tag in tags:
            runs_on_cp310 = tag.interpreter in ("cp310", "py3", "py2") or tag.abi in ("abi3", "none")
            assert runs_on_cp310, whl
            assert tag.platform == "any" or tag.platform.endswith("x86_64"), whl
    # ipykernel makes the env a Jupyter kernel (the `snowsage` kernel on_start.sh registers);
    # xgboost-cpu is the training image's XGBoost, which snowsage.pipeline.load_model loads with.
    assert "snowflake-connector-python" in pins and "ipykernel" in pins and "uv" not in pins
    assert pins.get("xgboost-cpu") == "3.0.5"
    missing = {name: version for name, version in pins.items() if wheels.get(name) != version}
    assert not missing, f"pins without their wheel: {missing}"
    unpinned = sorted(set(wheels) - set(pins) - {"snowsage"})
    assert not unpinned, f"wheels pip pulled in that requirements.txt does not pin: {unpinned}"
    assert "snowsage" in wheels
    tools = [parse_wheel_filename(p.name) for p in (house / "tools").glob("*.whl")]
    assert [t[0] for t in tools] == ["uv"]
    assert all(tag.platform.endswith("x86_64") for tag in tools[0][3])
    shipped_notebooks = [
        f"notebooks/{name}" for name in ("snowflake_quickstart.ipynb", "train_from_snowflake.ipynb")
    ]
    for shipped in ("install_wheels.sh", "idle_stop.py", *shipped_notebooks):
        assert (house / shipped).is_file(), shipped
