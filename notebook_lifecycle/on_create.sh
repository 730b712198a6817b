#!/bin/bash
set -euo pipefail

# OVERVIEW
# snowsage on-create. Runs once, as root, when the notebook instance is created (5-minute limit),
# before on_start.sh:
#   1. if $SAGEMAKER_HOME is empty (lost+found aside), restores the latest backup from S3, i.e. the
#      mirror on_start.sh's cron job keeps (a re-created notebook gets its work back). A restore
#      that outlasts the time budget carries on in the background; a failed one is logged and the
#      backup is left untouched (the backup sync never deletes).
#   2. copies the example notebooks from the wheelhouse zip into $SAGEMAKER_HOME, each only when no
#      file of that name exists: user edits are never overwritten.
# Nothing here makes the creation fail: every problem is logged (CloudWatch stream
# <notebook>/LifecycleConfigOnCreate) with what to do. Every step that reads or writes the home runs as
# ec2-user (runuser), so what it creates is theirs and root never writes through a link they made.
#
# Placeholders, each written once below as @@<name>@@ and replaced by the CDK construct:
#   WHEELHOUSE_S3_URI BACKUP_S3_URI AWS_REGION
# Environment overrides exist for tests; the defaults are the real notebook instance.

WHEELHOUSE_S3_URI='@@WHEELHOUSE_S3_URI@@'
BACKUP_S3_URI='@@BACKUP_S3_URI@@'
AWS_REGION='@@AWS_REGION@@'

SAGEMAKER_HOME="${SAGEMAKER_HOME:-/home/ec2-user/SageMaker}"
SYSTEM_PYTHON="${SNOWSAGE_SYSTEM_PYTHON:-/usr/bin/python3}"
OWNER="${SNOWSAGE_OWNER-ec2-user}"
RESTORE_SECONDS="${SNOWSAGE_RESTORE_SECONDS:-200}"
export AWS_REGION AWS_DEFAULT_REGION="$AWS_REGION"

log() {
  echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) snowsage on-create: $*"
}

as_owner() {  # as_owner CMD...: as the notebook user (SNOWSAGE_OWNER="" for tests), never root's fallback
  if [[ -z "$OWNER" ]]; then "$@"; else runuser -u "$OWNER" -- "$@"; fi
}

restore() {
  local first rc=0
  first="$(as_owner find "$SAGEMAKER_HOME" -mindepth 1 -maxdepth 1 ! -name lost+found ! -name .snowsage -print -quit)"
  if [[ -n "$first" ]]; then
    log "$SAGEMAKER_HOME is not empty ($first); no restore"
    return 0
  fi
  if [[ -z "$BACKUP_S3_URI" ]]; then return 0; fi
  log "$SAGEMAKER_HOME is empty; restoring from $BACKUP_S3_URI"
  as_owner timeout "$RESTORE_SECONDS" aws s3 sync "$BACKUP_S3_URI" "$SAGEMAKER_HOME" --only-show-errors || rc=$?
  if ((rc == 124)); then
    log "restore still running after ${RESTORE_SECONDS}s; continuing in the background (files keep appearing)"
    as_owner nohup aws s3 sync "$BACKUP_S3_URI" "$SAGEMAKER_HOME" --only-show-errors </dev/null >/dev/null 2>&1 &
  elif ((rc != 0)); then
    log "restore from $BACKUP_S3_URI failed (exit $rc); the backup is untouched. Check the notebook role" \
      "may s3:ListBucket/GetObject there, then restore by hand: aws s3 sync $BACKUP_S3_URI $SAGEMAKER_HOME"
  else
    log "restored $(as_owner find "$SAGEMAKER_HOME" -path "$SAGEMAKER_HOME/lost+found" -prune -o -type f -print | wc -l)" \
      "files from $BACKUP_S3_URI"
  fi
}

copy_examples() {
  local work rc=0
  work="$(as_owner mktemp -d)" || { log "cannot make a temporary folder as $OWNER; no example notebook"; return 0; }
  if ! as_owner aws s3 cp --only-show-errors "$WHEELHOUSE_S3_URI" "$work/wheelhouse.zip"; then
    log "cannot copy $WHEELHOUSE_S3_URI, so no example notebook; check the notebook role may read it"
    as_owner rm -rf "$work"
    return 0
  fi
  # Prints each notebook copied; skips names that exist so a user's edits survive.
  as_owner "$SYSTEM_PYTHON" - "$work/wheelhouse.zip" "$SAGEMAKER_HOME" <<'PY' | sed 's/^/  /' || rc=$?
import os, sys, zipfile
zip_path, home = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(zip_path) as z:
    for member in z.namelist():
        name = os.path.basename(member)
        if not (member.startswith("notebooks/") and name.endswith(".ipynb")):
            continue
        target = os.path.join(home, name)
        if os.path.lexists(target):
            print(f"{name} exists; left as it is")
            continue
        with z.open(member) as src, open(target, "xb") as dst:
            dst.write(src.read())
        os.chmod(target, 0o644)
        print(f"copied {name}")
PY
  if ((rc != 0)); then log "could not copy the example notebooks from the wheelhouse (exit $rc)"; fi
  as_owner rm -rf "$work"
}

main() {
  cd /  # the documented lifecycle PATH holds a relative "bin": never resolve it in the user's home
  as_owner mkdir -p "$SAGEMAKER_HOME" || log "cannot create $SAGEMAKER_HOME as $OWNER"
  restore || log "restore step failed unexpectedly; continuing"
  copy_examples || log "example notebook step failed unexpectedly; continuing"
}

main "$@"
