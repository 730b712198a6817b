#!/bin/bash
set -euo pipefail

# OVERVIEW
# snowsage on-start, as root at every start (5-minute limit; the foreground takes seconds): writes
# the RuntimeSettings to $SAGEMAKER_HOME/.snowsage/settings.json, installs root cron jobs (idle
# stop; backup sync to S3 as ec2-user), registers ec2-user's `snowsage` kernel if its env is on the
# EBS volume (ready at once if built from this wheelhouse), then under nohup copies the wheelhouse
# from S3 and runs its install_wheels.sh, which (re)builds that env. Outcome: .snowsage/
# install-status.json and /var/log/jupyter.log; output: /opt/snowsage/install.log. Nothing fails
# the start; conda_python3 is never written. RootAccess is Disabled: root keeps its files in
# /opt/snowsage, runs only the system python; what touches the home runs as ec2-user.
#
# Placeholders, each once below as @@<name>@@, filled in by the CDK construct:
#   SETTINGS_B64 WHEELHOUSE_S3_URI NETWORK_MODE IDLE_STOP_MINUTES BACKUP_MINUTES BACKUP_S3_URI AWS_REGION
# Environment overrides are for tests.

SETTINGS_B64='@@SETTINGS_B64@@'
WHEELHOUSE_S3_URI='@@WHEELHOUSE_S3_URI@@'
NETWORK_MODE='@@NETWORK_MODE@@'
IDLE_STOP_MINUTES='@@IDLE_STOP_MINUTES@@'
BACKUP_MINUTES='@@BACKUP_MINUTES@@'
BACKUP_S3_URI='@@BACKUP_S3_URI@@'
AWS_REGION='@@AWS_REGION@@'

SAGEMAKER_HOME="${SAGEMAKER_HOME:-/home/ec2-user/SageMaker}"
OPT_DIR="${SNOWSAGE_OPT_DIR:-/opt/snowsage}"
SYSTEM_PYTHON="${SNOWSAGE_SYSTEM_PYTHON:-/usr/bin/python3}"
OWNER="${SNOWSAGE_OWNER-ec2-user}"
CRONTAB_CMD="${CRONTAB_CMD:-crontab}"
JUPYTER_LOG="${JUPYTER_LOG:-/var/log/jupyter.log}"
JUPYTER_URL="${JUPYTER_URL:-https://localhost:8443}"
RESOURCE_METADATA="${RESOURCE_METADATA:-/opt/ml/metadata/resource-metadata.json}"
KERNELS_DIR="${SNOWSAGE_KERNELS_DIR:-/home/ec2-user/.local/share/jupyter/kernels}"
STATE_DIR="$SAGEMAKER_HOME/.snowsage"
KERNEL_ENV="$STATE_DIR/kernel-env"  # a link: install_wheels.sh
STATUS_FILE="$STATE_DIR/install-status.json"
INSTALL_LOG="$OPT_DIR/install.log"
export AWS_REGION AWS_DEFAULT_REGION="$AWS_REGION"

log() {
  local line
  line="$(date -u +%Y-%m-%dT%H:%M:%SZ) snowsage on-start: $*"
  echo "$line"
  if [[ -w "$JUPYTER_LOG" ]]; then echo "$line" >>"$JUPYTER_LOG" || true; fi
}

# as_owner CMD...: as the notebook user (OWNER="": as is), never root; fd 9 (lock) stays root's.
as_owner() {
  if [[ -z "$OWNER" ]]; then "$@"; else runuser -u "$OWNER" -- "$@" 9>&-; fi
}

# status STATE DETAIL: rewrite install-status.json (S_* add details) and log it.
status() {
  S_STATE="$1" S_DETAIL="$2" as_owner "$SYSTEM_PYTHON" - <<'PY' || log "could not write $STATUS_FILE"
import json, os, tempfile, time
e = os.environ
doc = {
    "state": e["S_STATE"], "detail": e["S_DETAIL"], "started_at": e.get("S_STARTED", ""),
    "updated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    "wheelhouse": e["WHEELHOUSE_S3_URI"], "wheelhouse_sha256": e.get("S_SHA", ""),
    "network_mode": e["NETWORK_MODE"], "source": e.get("S_SOURCE", ""),
    "python": e.get("S_PYVER", ""), "versions": json.loads(e.get("S_VERSIONS") or "{}"),
}
if e.get("S_MANIFEST"):  # what the env was built from
    m = json.load(open(e["S_MANIFEST"]))
    doc.update(python=m["python"], versions=m["versions"])
path = e["STATUS_FILE"]
fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".install-status.")
with os.fdopen(fd, "w") as f:
    json.dump(doc, f, indent=2, sort_keys=True)
os.chmod(tmp, 0o644)
os.replace(tmp, path)
PY
  log "install $1: $2"
}

# safe_write PATH: stdin to PATH (0644) as the notebook user, renamed in: no reader sees half.
safe_write() {
  # shellcheck disable=SC2016 # expanded by the user's shell
  as_owner bash -c 't="$(mktemp "$1.XXXXXX")" && cat >"$t" && chmod 0644 "$t" && mv -f "$t" "$1"' _ "$1"
}

# ec2-user's kernelspec (reset at each start) names the env's real path: a running kernel keeps
# its env when a rebuild switches the link.
register_kernel() {
  local py dir="$KERNELS_DIR/snowsage"
  py="$(as_owner readlink -e "$KERNEL_ENV")/bin/python" && as_owner test -x "$py" && as_owner mkdir -p "$dir" &&
    printf '{"argv":["%s","-m","ipykernel_launcher","-f","{connection_file}"],"display_name":"Python 3 (Snowflake)","language":"python"}\n' \
      "$py" | safe_write "$dir/kernel.json"
}

# Background: fetch and unpack the wheelhouse, run its install_wheels.sh.
fetch_and_install() {
  export S_STARTED S_SHA="" HOUSE="$OPT_DIR/wheelhouse"
  S_STARTED="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  exec 9>"$OPT_DIR/install.lock"
  if ! flock -n 9; then log "another install is still running; leaving it to finish"; return 0; fi
  local zip="$OPT_DIR/wheelhouse.zip" out helper
  [[ -n "$READY" ]] || status running "copying the wheelhouse from $WHEELHOUSE_S3_URI"
  if ! aws s3 cp --only-show-errors "$WHEELHOUSE_S3_URI" "$zip"; then
    status failed "cannot copy $WHEELHOUSE_S3_URI: check the notebook role may s3:GetObject it, and that the S3 gateway endpoint is in the subnet's route table"
    return 0
  fi
  S_SHA="$(sha256sum "$zip" | cut -d' ' -f1)"
  rm -rf "$HOUSE"
  if ! out="$("$SYSTEM_PYTHON" -m zipfile -e "$zip" "$HOUSE" 2>&1)"; then
    status failed "the wheelhouse $WHEELHOUSE_S3_URI (sha256 $S_SHA) is not a readable zip (${out##*$'\n'}); redeploy the stack to rebuild it"
    return 0
  fi
  chmod -R a+rX "$HOUSE"
  for helper in "$HOUSE"/*.py "$HOUSE"/*.sh; do
    if [[ -f "$helper" ]]; then install -m 0755 "$helper" "$OPT_DIR/bin/"; fi
  done
  if [[ -f "$OPT_DIR/bin/install_wheels.sh" ]]; then bash "$OPT_DIR/bin/install_wheels.sh"; else
    status failed "the wheelhouse has no install_wheels.sh; redeploy the stack"
  fi
}

cron_line() {  # cron_line MINUTES: the schedule for "every MINUTES minutes" (whole hours above 59)
  if (($1 < 60)); then echo "*/$1 * * * *"; else echo "0 */$(($1 / 60 < 24 ? $1 / 60 : 23)) * * *"; fi
}

install_cron() {
  local tag="# snowsage" lines="" env current to_log
  to_log=" >>$JUPYTER_LOG 2>&1 $tag"$'\n'
  env="PATH=$(printf %q "$PATH") AWS_DEFAULT_REGION=$AWS_REGION"
  if ((IDLE_STOP_MINUTES > 0)); then
    lines+="*/5 * * * * $env $SYSTEM_PYTHON $OPT_DIR/bin/idle_stop.py --idle-minutes $IDLE_STOP_MINUTES"
    lines+=" --state-file $OPT_DIR/idle-state.json --jupyter-url $JUPYTER_URL --metadata $RESOURCE_METADATA$to_log"
  fi
  if ((BACKUP_MINUTES > 0)) && [[ "$BACKUP_S3_URI" != s3://* ]]; then
    log "BACKUP_S3_URI is '$BACKUP_S3_URI', not an s3:// URI; backups are NOT scheduled"
  elif ((BACKUP_MINUTES > 0)); then
    lines+="$(cron_line "$BACKUP_MINUTES") $env ${OWNER:+runuser -u $OWNER -- }aws s3 sync $SAGEMAKER_HOME $BACKUP_S3_URI --no-follow-symlinks"
    lines+=" --only-show-errors --exclude '.snowsage/*' --exclude '*.ipynb_checkpoints/*' --exclude 'lost+found/*'$to_log"
  fi
  if ! command -v "$CRONTAB_CMD" >/dev/null; then
    log "no crontab command ($CRONTAB_CMD): idle stop and backups are NOT scheduled"
    return 0
  fi
  # Read the whole table before writing it: the user's own jobs stay, ours are replaced.
  current="$("$CRONTAB_CMD" -l 2>/dev/null | grep -vF "$tag" || true)"
  printf '%s%s' "${current:+$current$'\n'}" "$lines" | "$CRONTAB_CMD" -
  log "cron: idle stop after ${IDLE_STOP_MINUTES} min, backup every ${BACKUP_MINUTES} min (0 = off)"
}

whole_minutes() {  # whole_minutes NAME VALUE: the value, or 0 (off) with a message when it is not one
  if [[ "$2" =~ ^[0-9]+$ ]]; then echo "$((10#$2))"; else
    log "$1 is '$2', expected whole minutes; turned off" >&2
    echo 0
  fi
}

main() {
  cd /  # the lifecycle PATH holds a relative "bin": never resolve it in the user's home
  umask 022
  IDLE_STOP_MINUTES="$(whole_minutes IDLE_STOP_MINUTES "$IDLE_STOP_MINUTES")"
  BACKUP_MINUTES="$(whole_minutes BACKUP_MINUTES "$BACKUP_MINUTES")"
  install -d -m 0755 "$OPT_DIR" "$OPT_DIR/bin"
  as_owner install -d -m 0755 "$STATE_DIR" || log "cannot create $STATE_DIR as ${OWNER:-this user}"

  local settings
  if settings="$(printf '%s' "$SETTINGS_B64" | base64 -d 2>/dev/null)"; then
    printf '%s\n' "$settings" | safe_write "$STATE_DIR/settings.json"
    log "wrote $STATE_DIR/settings.json"
  else
    log "the settings placeholder is not valid base64; settings.json NOT written (redeploy the stack)"
  fi

  # The idle clock starts now; a stop requested before this start is forgotten.
  printf '{"started_at": "%s"}\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >"$OPT_DIR/idle-state.json"
  install_cron || log "installing the cron jobs failed; idle stop and backups are NOT scheduled"

  export SAGEMAKER_HOME OPT_DIR SYSTEM_PYTHON OWNER JUPYTER_LOG STATUS_FILE INSTALL_LOG WHEELHOUSE_S3_URI
  export NETWORK_MODE STATE_DIR KERNEL_ENV KERNELS_DIR READY=""
  export -f log as_owner status fetch_and_install register_kernel safe_write
  local m="$KERNEL_ENV/snowsage-kernel.json"
  if register_kernel && as_owner grep -qsF "\"wheelhouse\": \"$WHEELHOUSE_S3_URI\"" "$m"; then
    READY=1 && S_SOURCE=unchanged S_MANIFEST="$m" status ok "the kernel env was built from this wheelhouse"
  else
    status running "install started in the background; progress in $INSTALL_LOG"
  fi
  # shellcheck disable=SC2016 # the background shell expands it; nice: the user's kernel goes first
  nohup nice -n 10 bash -c 'fetch_and_install || status failed "unexpected error (exit $?); see $INSTALL_LOG"' \
    </dev/null >>"$INSTALL_LOG" 2>&1 &
  log "background job started (pid $!)"
}

main "$@"
