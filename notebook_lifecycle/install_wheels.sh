#!/bin/bash
set -uo pipefail

# OVERVIEW
# snowsage: build (or keep) the `snowsage` kernel's virtual environment on the EBS volume from the
# wheelhouse. Shipped in the wheelhouse zip and run (as root, in the background) by on_start.sh,
# which exports its settings and the `log`, `as_owner`, `status` and `register_kernel` functions.
# Every failure ends in `status failed <why>` and exit 0: nothing here may keep the notebook from
# starting.
# The env is ec2-user's, so every step in or on it runs as_owner (its python, uv, pip); root only
# unpacks uv into OPT_DIR and hashes the wheelhouse it unpacked itself. It is made with
# `python -m venv` from the conda_python3 env's interpreter, run with -I -S -B so nothing of that
# env's site-packages is loaded or written: the SageMaker envs stay as they are.
# Layout in STATE_DIR (on the volume, so it survives a stop; the backup sync excludes it):
#   envs/<key>/                    one env; key = sha256 of the base Python version, requirements.txt
#                                  and every wheel, so a new deployment gets a new env
#   envs/<key>/snowsage-kernel.json  what it was built from, written last: without it the env is
#                                  half-built and is built again
#   kernel-env -> envs/<key>       the env the kernel runs; switched only to a complete env, so a
#                                  failed rebuild leaves the previous kernel working
# A first build links the env as soon as ipykernel and the package are in: the notebook opens in
# the kernel and the package's connect() says "still installing", or why the rest failed.
# Settings (exported by on_start.sh or the environment): HOUSE (the unpacked zip: wheels/*.whl,
# requirements.txt, tools/uv-*.whl), STATE_DIR, KERNEL_ENV, NETWORK_MODE (nat may use the index),
# OWNER, S_SHA (the zip's sha256), WHEELHOUSE_S3_URI.

if ! declare -F status as_owner register_kernel >/dev/null; then
  echo "install_wheels.sh is run by on_start.sh, which defines status/log; run on_start.sh instead" >&2
  exit 2
fi

CONDA_ENV_DIR="${CONDA_ENV_DIR:-/home/ec2-user/anaconda3/envs/python3}"
EXPECTED_PYTHON="${SNOWSAGE_EXPECTED_PYTHON:-3.10}"
VERIFY_IMPORTS="${SNOWSAGE_VERIFY_IMPORTS:-snowflake.connector snowsage ipykernel}"
PACKAGE="${SNOWSAGE_PACKAGE:-snowsage}"
BASE_PY="$CONDA_ENV_DIR/bin/python"
BASE=("$BASE_PY" -I -S -B)  # the conda env's interpreter without its site-packages, writing nothing
MANIFEST="snowsage-kernel.json"
ENVS="$STATE_DIR/envs"
export S_SOURCE="" S_PYVER="" S_VERSIONS="" INSTALLER="pip"
UV="" KEY="" ENV_DIR="" PY=""

# pip is not in the env (uv needs none); ensurepip brings the copy bundled with Python, offline.
env_pip() {
  as_owner "$PY" -m pip --version >/dev/null 2>&1 || as_owner "$PY" -m ensurepip --default-pip >/dev/null ||
    return 1
  as_owner "$PY" -m pip install --no-cache-dir --disable-pip-version-check "$@"
}

# uv, from the wheelhouse's tools/, unpacked beside this script (never into an env): it unpacks and
# byte-compiles the wheels in parallel, several times faster than pip. Without it, pip.
# A wheel is a zip whose binary sits in uv-<version>.data/scripts/.
setup_uv() {
  local whl bin
  whl="$(compgen -G "$HOUSE/tools/uv-*.whl" | head -n 1)" || return 0
  rm -rf "$OPT_DIR/uv"
  if "$SYSTEM_PYTHON" -m zipfile -e "$whl" "$OPT_DIR/uv" \
      && bin="$(compgen -G "$OPT_DIR/uv/uv-*.data/scripts/uv" | head -n 1)" \
      && chmod 0755 "$bin" && "$bin" --version; then
    UV="$bin"
  else
    log "could not unpack $whl; installing with pip instead"
  fi
}

# The wheelhouse only (the index fallback stays with pip, which honours pip.conf). If uv fails on
# an env it does not expect, pip gets the same offline install; INSTALLER says which one did it.
offline_install() {
  if [[ -n "$UV" ]]; then
    INSTALLER="uv"
    as_owner "$UV" pip install --python "$PY" --no-config --no-cache --compile-bytecode \
      --no-index --find-links "$HOUSE/wheels" "$@" && return 0
    log "uv could not install $* from the wheelhouse; trying pip"
  fi
  INSTALLER="pip"
  env_pip --no-index --find-links "$HOUSE/wheels" "$@"
}

verify_imports() {  # prints the last line of the error when an import fails
  local code="" module
  for module in $VERIFY_IMPORTS; do code+="import $module; "; done
  as_owner "$PY" -c "$code" 2>&1 | tail -n 1
  return "${PIPESTATUS[0]}"
}

installed_versions() {  # {"name": "version"} for the pins and the package, as the env sees them
  as_owner "$PY" - "$HOUSE/requirements.txt" "$PACKAGE" <<'PY' || echo '{}'
import json, re, sys
from importlib import metadata
names = [re.split(r"[=<>~!\[; ]", line.strip())[0] for line in open(sys.argv[1]) if line.strip()[:1].isalnum()]
found = {}
for name in [*names, sys.argv[2]]:
    try:
        found[name] = metadata.version(name)
    except metadata.PackageNotFoundError:
        pass
print(json.dumps(found))
PY
}

# write_manifest [keep]: as the owner, by a rename: the file means "this env is complete". With
# "keep", only the wheelhouse it now stands for changes (same env under a new URI).
write_manifest() {
  M_KEEP="${1:-}" M_KEY="$KEY" M_PATH="$ENV_DIR/$MANIFEST" as_owner "$SYSTEM_PYTHON" - <<'PY'
import json, os, tempfile, time
e = os.environ
doc = {"wheelhouse": e["WHEELHOUSE_S3_URI"], "wheelhouse_sha256": e.get("S_SHA", "")}
if e["M_KEEP"]:
    with open(e["M_PATH"]) as f:
        doc = {**json.load(f), **doc}
else:
    doc.update(key=e["M_KEY"], python=e["S_PYVER"], installer=e["INSTALLER"],
               versions=json.loads(e["S_VERSIONS"] or "{}"),
               built_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
fd, tmp = tempfile.mkstemp(dir=os.path.dirname(e["M_PATH"]), prefix=".manifest.")
with os.fdopen(fd, "w") as f:
    json.dump(doc, f, indent=2, sort_keys=True)
os.chmod(tmp, 0o644)
os.replace(tmp, e["M_PATH"])
PY
}

link_env() {  # point kernel-env at this env (a rename: never missing) and register the kernel
  as_owner ln -sfn "envs/$KEY" "$KERNEL_ENV.new" && as_owner mv -Tf "$KERNEL_ENV.new" "$KERNEL_ENV" &&
    register_kernel
}

# Envs that a previous start replaced: no kernel of this start runs in them (the kernel was
# registered for the current one), so they can go. The current and this key's env stay.
prune() {
  local dir
  while IFS= read -r dir; do
    if [[ "$dir" != "$1" && "$dir" != "$KEY" ]]; then
      log "removing the superseded kernel env $ENVS/$dir"
      as_owner rm -rf "${ENVS:?}/$dir"
    fi
  done < <(as_owner find "$ENVS" -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null)
}

build() {
  local out early=""
  status running "building the snowsage kernel env in $ENV_DIR: $PACKAGE and $(grep -c '==' "$HOUSE/requirements.txt") pinned requirements from the wheelhouse"
  S_SOURCE="wheelhouse"
  if ! out="$(as_owner rm -rf "$ENV_DIR" 2>&1 && as_owner mkdir -p "$ENVS" 2>&1 &&
      as_owner "${BASE[@]}" -m venv --without-pip "$ENV_DIR" 2>&1)"; then
    status failed "could not create the kernel env $ENV_DIR with $BASE_PY -m venv: ${out##*$'\n'}"
    return 0
  fi
  setup_uv
  if ! as_owner test -f "$KERNEL_ENV/$MANIFEST"; then
    # No complete env to keep: the kernel starts on this one as soon as it can.
    if offline_install -c "$HOUSE/requirements.txt" ipykernel && offline_install --no-deps "$PACKAGE" &&
        link_env; then
      early=1
      log "the snowsage kernel is registered; its packages follow"
    else
      log "could not install ipykernel and $PACKAGE ahead; they come with the full install"
    fi
  fi
  if ! offline_install -r "$HOUSE/requirements.txt" "$PACKAGE"; then
    if [[ "$NETWORK_MODE" != "nat" ]]; then
      status failed "$INSTALLER could not install from the wheelhouse, and $NETWORK_MODE mode has no package index to fall back to; see $INSTALL_LOG"
      return 0
    fi
    log "the wheelhouse install failed; falling back to the package index (nat mode)"
    S_SOURCE="index" INSTALLER="pip"
    if ! env_pip --find-links "$HOUSE/wheels" -r "$HOUSE/requirements.txt" "$PACKAGE"; then
      status failed "pip could not install from the wheelhouse nor from the package index; see $INSTALL_LOG"
      return 0
    fi
  fi
  if ! out="$(verify_imports)"; then
    status failed "installed, but 'import ${VERIFY_IMPORTS// /, }' fails in $PY: $out"
    return 0
  fi
  S_VERSIONS="$(installed_versions)"
  if ! write_manifest || { [[ -z "$early" ]] && ! link_env; }; then
    status failed "the kernel env $ENV_DIR is built but could not be recorded or linked as $KERNEL_ENV; see $INSTALL_LOG"
    return 0
  fi
  status ok "installed $PACKAGE into the snowsage kernel env from the $S_SOURCE with $INSTALLER"
}

main() {
  local current
  if [[ "$NETWORK_MODE" != nat && "$NETWORK_MODE" != privatelink ]]; then
    log "NETWORK_MODE is '$NETWORK_MODE', expected nat or privatelink; no package index fallback"
  fi
  if ! as_owner test -x "$BASE_PY"; then
    status failed "no python at $BASE_PY: the conda_python3 env is missing; use platform notebook-al2023-v1"
    return 0
  fi
  S_PYVER="$(as_owner "${BASE[@]}" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')"
  if [[ "${S_PYVER%.*}" != "$EXPECTED_PYTHON" ]]; then
    status failed "the conda_python3 env runs Python $S_PYVER but the wheelhouse is built for Python $EXPECTED_PYTHON (cp${EXPECTED_PYTHON//./} wheels); use platform notebook-al2023-v1 or rebuild the wheelhouse for ${S_PYVER%.*}"
    return 0
  fi
  if [[ ! -f "$HOUSE/requirements.txt" || ! -d "$HOUSE/wheels" ]]; then
    status failed "the wheelhouse has no requirements.txt or wheels/ folder; redeploy the stack to rebuild it"
    return 0
  fi
  # Root hashes its own unpacked copy: what the env is built from, not the zip (whose helper scripts
  # and notebooks change without touching the env).
  KEY="$({ echo "python $S_PYVER"; cd "$HOUSE" && sha256sum requirements.txt wheels/*; } | sha256sum | cut -c1-16)"
  ENV_DIR="$ENVS/$KEY" PY="$ENVS/$KEY/bin/python"
  current="$(as_owner readlink "$KERNEL_ENV" 2>/dev/null)"
  prune "${current#envs/}"
  if [[ "$current" == "envs/$KEY" ]] && as_owner test -f "$ENV_DIR/$MANIFEST" && verify_imports >/dev/null; then
    S_SOURCE="unchanged" S_VERSIONS="$(installed_versions)"
    # The same env under a new wheelhouse URI (only helpers changed): the next start is ready at once.
    as_owner grep -qsF "\"wheelhouse\": \"$WHEELHOUSE_S3_URI\"" "$ENV_DIR/$MANIFEST" || write_manifest keep
    register_kernel || log "could not register the snowsage kernel for $KERNEL_ENV"
    status ok "the snowsage kernel env is unchanged (built from this wheelhouse); nothing to do"
    return 0
  fi
  if [[ "$current" == "envs/$KEY" ]]; then
    log "the kernel env $ENV_DIR is half-built or broken; building it again"
  fi
  build
}

main
