#!/bin/bash
set -uo pipefail

# OVERVIEW
# snowsage: install the wheelhouse into the notebook's python3 env. Shipped in the wheelhouse zip and
# run (as root, in the background) by on_start.sh, which exports the settings below and the `log`,
# `status` and `safe_write` functions. Every failure ends in `status failed <why>` and exit 0:
# nothing here may keep the notebook from starting.
#   HOUSE: the extracted zip (wheels/*.whl, requirements.txt, tools/uv-*.whl); CONDA_ENV_DIR; EXPECTED_PYTHON;
#   PACKAGE (installed on top of the pins); VERIFY_IMPORTS; NETWORK_MODE (nat may use the index);
#   OWNER (pip runs as this user when root, so the env stays theirs); S_SHA (the zip's sha256).

if ! declare -F status >/dev/null; then
  echo "install_wheels.sh is run by on_start.sh, which defines status/log; run on_start.sh instead" >&2
  exit 2
fi

PY="$CONDA_ENV_DIR/bin/python"
MARKER="$CONDA_ENV_DIR/.snowsage-wheelhouse.sha256"
export S_SOURCE="" S_PYVER="" S_VERSIONS=""
UV="" INSTALLER="pip"

as_owner() {
  if [[ "$(id -u)" == 0 && -n "$OWNER" ]] && id "$OWNER" >/dev/null 2>&1; then
    runuser -u "$OWNER" -- "$@"
  else
    "$@"
  fi
}

env_pip() {
  as_owner "$PY" -m pip install --no-cache-dir --disable-pip-version-check "$@"
}

# uv, from the wheelhouse's tools/, unpacked beside this script (never into the user's env): it
# unpacks and byte-compiles the wheels in parallel, several times faster than pip. Without it, pip.
setup_uv() {
  local whl
  whl="$(compgen -G "$HOUSE/tools/uv-*.whl" | head -n 1)" || return 0
  if "$PY" -m pip install --quiet --disable-pip-version-check --no-index --no-deps --upgrade \
      --target "$OPT_DIR/uv" "$whl" && "$OPT_DIR/uv/bin/uv" --version; then
    UV="$OPT_DIR/uv/bin/uv"
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
  "$PY" -c "$code" 2>&1 | tail -n 1
  return "${PIPESTATUS[0]}"
}

installed_versions() {  # {"name": "version"} for the pins and the package, as the env sees them
  "$PY" - "$HOUSE/requirements.txt" "$PACKAGE" <<'PY' || echo '{}'
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

main() {
  local out
  if [[ ! -x "$PY" ]]; then
    status failed "no python at $PY: the conda_python3 env is missing; use platform notebook-al2023-v1"
    return 0
  fi
  S_PYVER="$("$PY" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')"
  if [[ "${S_PYVER%.*}" != "$EXPECTED_PYTHON" ]]; then
    status failed "the python3 env runs Python $S_PYVER but the wheelhouse is built for Python $EXPECTED_PYTHON (cp${EXPECTED_PYTHON//./} wheels); use platform notebook-al2023-v1 or rebuild the wheelhouse for ${S_PYVER%.*}"
    return 0
  fi
  if [[ ! -f "$HOUSE/requirements.txt" || ! -d "$HOUSE/wheels" ]]; then
    status failed "the wheelhouse has no requirements.txt or wheels/ folder; redeploy the stack to rebuild it"
    return 0
  fi
  # The env lives on the root volume, which a stop/start resets: the marker goes with it.
  if [[ "$(cat "$MARKER" 2>/dev/null || true)" == "$S_SHA" ]] && verify_imports >/dev/null; then
    S_SOURCE="unchanged" S_VERSIONS="$(installed_versions)"
    status ok "already installed from this wheelhouse; nothing to do"
    return 0
  fi

  status running "installing $PACKAGE and $(grep -c '==' "$HOUSE/requirements.txt") pinned requirements from the wheelhouse"
  S_SOURCE="wheelhouse"
  setup_uv
  # The package alone first (pure Python, a second or two): the notebook can then import snowsage
  # at once, and its helper reads this status file to say "still installing" or why it failed.
  if ! offline_install --no-deps --force-reinstall "$PACKAGE"; then
    log "could not install $PACKAGE on its own first; it comes with the full install"
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
  echo "$S_SHA" | safe_write "$MARKER"
  S_VERSIONS="$(installed_versions)"
  status ok "installed $PACKAGE from the $S_SOURCE with $INSTALLER"
}

main
