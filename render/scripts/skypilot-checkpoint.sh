#!/bin/bash
set -euo pipefail
# Usage: checkpoint.sh restore|sync JOB DIR | checkpoint.sh every SECONDS JOB DIR
## A managed job's checkpoint folder DIR and its copy at s3://BUCKET/PREFIX/JOB/ (JOB: SkyPilot's task id,
## the same across the job's recoveries). restore: the copy into DIR (nothing on a first run); sync: DIR into
## the copy (new and changed files; nothing is deleted); every: sync each SECONDS until killed, a failed sync
## retried at the next tick. Credentials: the VM's instance profile, allowed PREFIX/ of BUCKET only.
## Header: BUCKET, PREFIX, REGION.
if [ "$1" = "every" ]; then
    seconds="$2"
    shift 2
    while sleep "$seconds"; do
        "$0" sync "$@" || echo "lmrun: checkpoint sync failed; retrying in ${seconds}s" >&2
    done
    exit 0
fi
action="$1"
job="$2"
dir="$3"
remote="s3://${BUCKET:?}/${PREFIX:?}/$job/"
mkdir -p "$dir"
case "$action" in
restore) aws s3 sync --region "${REGION:?}" --only-show-errors "$remote" "$dir" ;;
sync) aws s3 sync --region "${REGION:?}" --only-show-errors "$dir" "$remote" ;;
*)
    echo "lmrun: unknown action '$action' (restore, sync or every)" >&2
    exit 2
    ;;
esac
