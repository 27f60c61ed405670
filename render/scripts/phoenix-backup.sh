#!/bin/bash
set -euo pipefail
# Usage: phoenix-backup.sh DB_FILE S3_URI [WORK_DIR]
# Takes a consistent snapshot of the live SQLite database with Python's sqlite3 online-backup API (the
# API behind the sqlite3 CLI's .backup), checks it, and uploads it gzipped to
# S3_URI/snapshots/phoenix-<UTC time>.db.gz, then copies that object to S3_URI/latest.db.gz (so "latest"
# only ever names a complete snapshot). The region and endpoint come from the usual AWS_* variables.
db="$1"
uri="${2%/}"
work_parent="${3:-/var/tmp}"
python="${PYTHON:-python3}"
if [ ! -f "$db" ]; then
    echo "lmrun: $db does not exist yet; nothing to back up"
    exit 0
fi
work="$(mktemp -d "$work_parent/phoenix-backup.XXXXXX")"
trap 'rm -rf "$work"' EXIT
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
"$python" - "$db" "$work/phoenix.db" <<'EOF'
import sqlite3
import sys

source, target = sys.argv[1:3]
src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=60)
dst = sqlite3.connect(target)
with dst:
    src.backup(dst)  # pages=-1: one step under one read transaction, so the copy is consistent
result = dst.execute("PRAGMA integrity_check").fetchone()[0]
dst.close()
src.close()
if result != "ok":
    sys.exit(f"lmrun: snapshot failed integrity_check: {result}")
EOF
gzip -1 "$work/phoenix.db"
key="$uri/snapshots/phoenix-$stamp.db.gz"
aws s3 cp --only-show-errors "$work/phoenix.db.gz" "$key"
aws s3 cp --only-show-errors "$key" "$uri/latest.db.gz"
echo "lmrun: backed up $db to $key"
