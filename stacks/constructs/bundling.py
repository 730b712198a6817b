"""Docker-free asset bundling: pip installs pinned wheels for the target platform into the asset.

``pip install --platform ... --only-binary=:all: --target`` fetches the wheels for the runtime's
Python and architecture whatever machine synthesizes. The result is cached under ``.build/`` by
the hash of what went in, so repeated synths (and the test session) reuse it.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import aws_cdk as cdk
import jsii

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
    out = CACHE_DIR / f"{requirements.parent.name}-{mode}-{arch or 'host'}-{key}"
    if (out / ".complete").exists():
        return out
    # A private temporary directory, renamed into place: parallel synths never see half a cache.
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out.name + ".", dir=CACHE_DIR))
    if mode == "install":
        cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-compile", "--target", str(tmp)]
    else:
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--dest", str(tmp)]
    cmd += ["--disable-pip-version-check", "--requirement", str(requirements), *platform_args, *extra_args]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BundlingError(
            f"pip could not fetch {requirements} for Python {python_version} on {arch or 'this machine'}:\n"
            f"{proc.stderr.strip()[-2000:]}\nCheck the pins in {requirements} and that PyPI is reachable."
        )
    (tmp / ".complete").write_text(" ".join(cmd))
    try:
        tmp.rename(out)
    except OSError:  # another synth finished the same cache first
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def copy_tree(
    src: Path, dest: Path, *, ignore: Sequence[str] = ("__pycache__", "*.pyc", ".complete")
) -> None:
    shutil.copytree(src, dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns(*ignore))


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

    def try_bundle(self, output_dir: str, options: cdk.BundlingOptions) -> bool:
        out = Path(output_dir)
        requirements = self.source / "requirements.txt"
        if requirements.exists() and requirements.read_text().strip():
            deps = pip_target(requirements, python_version=self.python_version, arch=self.arch)
            copy_tree(deps, out)
            _prune(out, self.runtime_provided)
        for package in self.packages:
            copy_tree(package, out / package.name)
        copy_tree(self.source, out, ignore=("__pycache__", "*.pyc", "requirements.txt"))
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


def bundled_code_options(
    source: Path, *, python_version: str, arch: str | None, packages: Sequence[Path] = ()
) -> cdk.BundlingOptions:
    return cdk.BundlingOptions(
        # Never used: local bundling always succeeds or raises, so Docker is never needed.
        image=cdk.DockerImage.from_registry("local-bundling-only"),
        # jsii calls try_bundle(output_dir, options) positionally; its stubs spell options as kwargs.
        local=LambdaLocalBundling(source, python_version=python_version, arch=arch, packages=packages),  # type: ignore[arg-type]
    )
