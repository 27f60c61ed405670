#!/bin/bash
set -euo pipefail
# Usage: phoenix-backup.sh DB_FILE S3_URI [WORK_DIR]
## Takes a consistent snapshot of the live SQLite database with Python's sqlite3 online-backup API (the
## API behind the sqlite3 CLI's .backup), checks it, and uploads it gzipped to
## S3_URI/snapshots/phoenix-<UTC time>.db.gz, then copies that object to S3_URI/latest.db.gz (so "latest"
## only ever names a complete snapshot). The region and endpoint come from the usual AWS_* variables.
db="$1"
uri="${2%/}"
work_parent="${3:-/var/tmp}"
python="${PYTHON:-python3}"
helpers="${LMRUN_SCRIPT_DIR:-/usr/local/lib/lmrun}"
if [ ! -f "$db" ]; then
    echo "lmrun: $db does not exist yet; nothing to back up"
    exit 0
fi
work="$(mktemp -d "$work_parent/phoenix-backup.XXXXXX")"
trap 'rm -rf "$work"' EXIT
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
"$python" "$helpers/phoenix_sqlite.py" snapshot "$db" "$work/phoenix.db"
gzip -1 "$work/phoenix.db"
key="$uri/snapshots/phoenix-$stamp.db.gz"
aws s3 cp --only-show-errors "$work/phoenix.db.gz" "$key"
aws s3 cp --only-show-errors "$key" "$uri/latest.db.gz"
echo "lmrun: backed up $db to $key"
