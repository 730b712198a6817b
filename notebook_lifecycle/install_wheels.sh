#!/bin/bash
set -uo pipefail

# OVERVIEW
# snowsage: install the wheelhouse into the notebook's python3 env. Shipped in the wheelhouse zip and
# run (as root, in the background) by on_start.sh, which exports the settings below and the `log`,
# `as_owner` and `status` functions. Every failure ends in `status failed <why>` and exit 0:
# nothing here may keep the notebook from starting. The env belongs to ec2-user, who can plant a
# .pth or sitecustomize.py in it: its python, pip and uv only ever run as_owner; root keeps its own
# files (uv, the install marker) in OPT_DIR and unpacks with the system python.
#   HOUSE: the extracted zip (wheels/*.whl, requirements.txt, tools/uv-*.whl); CONDA_ENV_DIR; EXPECTED_PYTHON;
#   PACKAGE (installed on top of the pins); VERIFY_IMPORTS; NETWORK_MODE (nat may use the index);
#   OWNER (whom as_owner runs as); S_SHA (the zip's sha256).

if ! declare -F status as_owner >/dev/null; then
  echo "install_wheels.sh is run by on_start.sh, which defines status/log; run on_start.sh instead" >&2
  exit 2
fi

PY="$CONDA_ENV_DIR/bin/python"
MARKER="$OPT_DIR/installed-wheelhouse.sha256"  # the root volume, like the env: a stop/start resets both
export S_SOURCE="" S_PYVER="" S_VERSIONS=""
UV="" INSTALLER="pip"

env_pip() {
  as_owner "$PY" -m pip install --no-cache-dir --disable-pip-version-check "$@"
}

# uv, from the wheelhouse's tools/, unpacked beside this script (never into the user's env): it
# unpacks and byte-compiles the wheels in parallel, several times faster than pip. Without it, pip.
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

main() {
  local out
  if ! as_owner test -x "$PY"; then
    status failed "no python at $PY: the conda_python3 env is missing; use platform notebook-al2023-v1"
    return 0
  fi
  S_PYVER="$(as_owner "$PY" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')"
  if [[ "${S_PYVER%.*}" != "$EXPECTED_PYTHON" ]]; then
    status failed "the python3 env runs Python $S_PYVER but the wheelhouse is built for Python $EXPECTED_PYTHON (cp${EXPECTED_PYTHON//./} wheels); use platform notebook-al2023-v1 or rebuild the wheelhouse for ${S_PYVER%.*}"
    return 0
  fi
  if [[ ! -f "$HOUSE/requirements.txt" || ! -d "$HOUSE/wheels" ]]; then
    status failed "the wheelhouse has no requirements.txt or wheels/ folder; redeploy the stack to rebuild it"
    return 0
  fi
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
  echo "$S_SHA" >"$MARKER"
  S_VERSIONS="$(installed_versions)"
  status ok "installed $PACKAGE from the $S_SOURCE with $INSTALLER"
}

main
