"""Docker-free asset bundling: pip installs pinned wheels for the target platform into the asset.

``pip install --platform ... --only-binary=:all: --target`` fetches the wheels for the runtime's
Python and architecture whatever machine synthesizes. The result is cached under ``.build/`` by
the hash of what went in, so repeated synths (and the test session) reuse it.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import aws_cdk as cdk
import jsii
from aws_cdk import aws_lambda as lambda_

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE_DIR = REPO_ROOT / ".build" / "bundles"

# manylinux tags a Lambda (Amazon Linux 2023, glibc 2.34) or a SageMaker notebook can load.
MANYLINUX_TAGS = {
    "aarch64": ("manylinux2014_aarch64", "manylinux_2_28_aarch64", "manylinux_2_34_aarch64"),
    "x86_64": ("manylinux2014_x86_64", "manylinux_2_28_x86_64", "manylinux_2_34_x86_64"),
}


# The Lambda Python runtime ships boto3 and these; bundling them again only adds megabytes.
RUNTIME_PROVIDED = (
    "boto3",
    "botocore",
    "s3transfer",
    "jmespath",
    "dateutil",
    "python_dateutil",
    "six.py",
    "six",
)


SOURCE_IGNORE = ("__pycache__", "*.pyc", ".complete", ".ipynb_checkpoints", ".mypy_cache", ".pytest_cache")


class BundlingError(RuntimeError):
    pass


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part)
        h.update(b"\0")
    return h.hexdigest()[:20]


def pip_target(
    requirements: Path,
    *,
    python_version: str,
    arch: str | None,
    extra_args: Sequence[str] = (),
    mode: str = "install",
) -> Path:
    """Install (``mode=install``: importable tree) or download (``mode=download``: wheel files) the
    pinned requirements for a platform into a cached directory and return it.

    ``arch=None`` means this machine's own platform (used by tests that import the bundle here).
    """
    platform_args: list[str] = []
    if arch is not None:
        for tag in MANYLINUX_TAGS[arch]:
            platform_args += ["--platform", tag]
        platform_args += ["--implementation", "cp", "--python-version", python_version, "--only-binary=:all:"]
    key = _digest(
        requirements.read_bytes(),
        mode.encode(),
        python_version.encode(),
        str(arch).encode(),
        *(a.encode() for a in extra_args),
    )
    if mode == "install":
        cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-compile", "--target"]
    else:
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--dest"]

    def build(tmp: Path) -> None:
        full = [*cmd, str(tmp), "--disable-pip-version-check", "--requirement", str(requirements)]
        proc = subprocess.run(
            [*full, *platform_args, *extra_args], capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            raise BundlingError(
                f"pip could not fetch {requirements} for Python {python_version} on {arch or 'this machine'}:\n"
                f"{proc.stderr.strip()[-2000:]}\nCheck the pins in {requirements} and that PyPI is reachable."
            )

    return cached_tree(f"{requirements.parent.name}-{mode}-{arch or 'host'}", key, build)


def cached_tree(name: str, key: str, build: Callable[[Path], None]) -> Path:
    """``CACHE_DIR/<name>-<key>``, made by ``build(tmp)`` the first time only.

    ``build`` fills a private temporary directory that is renamed into place when it succeeded,
    so parallel synths never see half a cache and a failed build leaves nothing behind.
    """
    out = CACHE_DIR / f"{name}-{key}"
    if (out / ".complete").exists():
        return out
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out.name + ".", dir=CACHE_DIR))
    try:
        build(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    (tmp / ".complete").write_text(key)
    try:
        tmp.rename(out)
    except OSError:  # another synth finished the same cache first
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def content_digest(*paths: Path, ignore: Sequence[str] = SOURCE_IGNORE) -> bytes:
    """A digest of files and directory trees: relative names and bytes, skipping ``ignore``."""
    h = hashlib.sha256()
    for root in paths:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in files:
            rel = path.relative_to(root.parent)
            if any(fnmatch.fnmatch(part, pattern) for part in rel.parts for pattern in ignore):
                continue
            h.update(str(rel).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.digest()


def copy_tree(
    src: Path, dest: Path, *, ignore: Sequence[str] = ("__pycache__", "*.pyc", ".complete")
) -> None:
    shutil.copytree(src, dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns(*ignore))


def link_tree(
    src: Path, dest: Path, *, ignore: Sequence[str] = ("__pycache__", "*.pyc", ".complete")
) -> None:
    """``copy_tree`` from a cache: files are hard links where the file system allows (the cache
    and cdk.out usually share one), copies otherwise. Nothing writes into a staged asset's files."""
    shutil.copytree(
        src, dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns(*ignore), copy_function=_link_or_copy
    )


def _link_or_copy(src: str, dest: str) -> None:
    try:
        os.link(src, dest)
    except OSError:
        shutil.copy2(src, dest)


def snowsage_wheel() -> Path:
    """A directory holding a wheel of the snowsage package, cached by the hash of its sources."""
    key = hashlib.sha256(content_digest(REPO_ROOT / "snowsage", REPO_ROOT / "pyproject.toml")).hexdigest()[
        :20
    ]
    return cached_tree("snowsage-wheel", key, build_snowsage_wheel)


def build_snowsage_wheel(dest: Path) -> None:
    """Build the wheel into ``dest`` from a private copy of the sources, so concurrent synths
    never share setuptools' in-tree build directory."""
    with tempfile.TemporaryDirectory(prefix="snowsage-src-") as src:
        shutil.copy2(REPO_ROOT / "pyproject.toml", Path(src) / "pyproject.toml")
        copy_tree(REPO_ROOT / "snowsage", Path(src) / "snowsage")
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--quiet",
                "--no-deps",
                "--no-build-isolation",
                "-w",
                str(dest),
                src,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
    if proc.returncode != 0:
        raise BundlingError(f"building the snowsage wheel failed:\n{proc.stderr[-2000:]}")


@jsii.implements(cdk.ILocalBundling)
class LambdaLocalBundling:
    """Handler source plus its pinned requirements, for the function's Python and architecture."""

    def __init__(
        self,
        source: Path,
        *,
        python_version: str,
        arch: str | None,
        packages: Sequence[Path] = (),
        runtime_provided: Sequence[str] = RUNTIME_PROVIDED,
    ) -> None:
        self.source = source
        self.python_version = python_version
        self.arch = arch
        self.packages = tuple(packages)
        self.runtime_provided = tuple(runtime_provided)

    def asset_hash(self) -> str:
        """Everything the bundle is made from: the pins, the sources, the target and this module's
        own rules. The asset's hash (so CDK skips bundling into a cdk.out that already holds it)
        and the key of the finished bundle in the cache."""
        return _digest(
            content_digest(self.source, *self.packages, Path(__file__)),
            self.python_version.encode(),
            str(self.arch).encode(),
            *(name.encode() for name in self.runtime_provided),
        )

    def build(self, out: Path) -> None:
        requirements = self.source / "requirements.txt"
        if requirements.exists() and requirements.read_text().strip():
            deps = pip_target(requirements, python_version=self.python_version, arch=self.arch)
            copy_tree(deps, out)
            _prune(out, self.runtime_provided)
        for package in self.packages:
            copy_tree(package, out / package.name)
        copy_tree(self.source, out, ignore=("__pycache__", "*.pyc", "requirements.txt"))

    def try_bundle(self, output_dir: str, options: cdk.BundlingOptions) -> bool:
        name = f"{self.source.name}-bundle-{self.arch or 'host'}-{self.python_version}"
        link_tree(cached_tree(name, self.asset_hash(), self.build), Path(output_dir))
        return True


def _prune(root: Path, runtime_provided: Sequence[str]) -> None:
    """Drop what the Lambda runtime already has (boto3 and its own dependencies) and what a
    function never imports: tests, type stubs, caches, console scripts."""
    for name in runtime_provided:
        for path in [*root.glob(name), *root.glob(f"{name}-*.dist-info")]:
            shutil.rmtree(path, ignore_errors=True)
    for pattern in ("**/__pycache__", "**/tests", "**/*.pyi"):
        for path in root.glob(pattern):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
    bin_dir = root / "bin"
    if bin_dir.is_dir():
        shutil.rmtree(bin_dir)


def local_bundling_options(bundler: object) -> cdk.BundlingOptions:
    return cdk.BundlingOptions(
        # Never used: local bundling always succeeds or raises, so Docker is never needed.
        image=cdk.DockerImage.from_registry("local-bundling-only"),
        # jsii calls try_bundle(output_dir, options) positionally; its stubs spell options as kwargs.
        local=bundler,  # type: ignore[arg-type]
    )


def function_code(source: Path, *, arch: str | None, python_version: str) -> lambda_.Code:
    """A function's asset: the handler in ``source``, the snowsage library and pinned wheels for the
    runtime. The hash of the inputs is known before bundling: a cdk.out that holds the asset already
    is not bundled again, and the bundle itself comes from the cache under .build/."""
    bundler = LambdaLocalBundling(
        source, python_version=python_version, arch=arch, packages=[REPO_ROOT / "snowsage"]
    )
    return lambda_.Code.from_asset(
        str(source),
        asset_hash_type=cdk.AssetHashType.CUSTOM,
        asset_hash=bundler.asset_hash(),
        bundling=local_bundling_options(bundler),
    )
