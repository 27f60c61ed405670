#!/bin/bash
set -euo pipefail
# Usage: phoenix-restore.sh DB_FILE S3_URI [OWNER]
## Runs before Phoenix starts. When DB_FILE is absent (an empty data volume), downloads S3_URI/latest.db.gz,
## checks it and puts it in place (owned by OWNER). No backup at all means a first boot: start empty. Any
## other S3 error fails, so Phoenix never starts empty over a backup it could not read.
db="$1"
uri="${2%/}"
owner="${3:-}"
python="${PYTHON:-python3}"
helpers="${LMRUN_SCRIPT_DIR:-/usr/local/lib/lmrun}"
if [ -s "$db" ]; then
    echo "lmrun: $db present; nothing to restore"
    exit 0
fi
dir="$(dirname "$db")"
mkdir -p "$dir"
rc=0
aws s3 ls "$uri/latest.db.gz" >/dev/null || rc=$?
if [ "$rc" -eq 1 ]; then
    echo "lmrun: no backup under $uri yet; starting with an empty database"
    exit 0
elif [ "$rc" -ne 0 ]; then
    echo "lmrun: cannot list $uri (exit $rc); refusing to start Phoenix empty" >&2
    exit 1
fi
work="$(mktemp -d "$dir/.restore.XXXXXX")"
trap 'rm -rf "$work"' EXIT
aws s3 cp --only-show-errors "$uri/latest.db.gz" "$work/phoenix.db.gz"
gunzip "$work/phoenix.db.gz"
"$python" "$helpers/phoenix_sqlite.py" check-restore "$work/phoenix.db"
# A WAL or shared-memory file left from another database would be replayed into this one.
rm -f "$db-wal" "$db-shm" "$db-journal"
if [ -n "$owner" ]; then
    chown "$owner:" "$work/phoenix.db" "$dir"
fi
mv -f "$work/phoenix.db" "$db"
echo "lmrun: restored $db from $uri/latest.db.gz"
