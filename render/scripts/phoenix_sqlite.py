"""SQLite steps of the Phoenix backups, with Python's sqlite3 (stock images do not ship the sqlite3 CLI).

Usage: phoenix_sqlite.py snapshot SOURCE TARGET   consistent online copy of a live database, then checked
       phoenix_sqlite.py check-restore DB         integrity check of a downloaded backup

Exits non-zero with a message when the copy fails ``PRAGMA integrity_check``. Runs on the Phoenix node
(phoenix-backup.sh, phoenix-restore.sh): standard library only, Python 3.9+.
"""

from __future__ import annotations

import sqlite3
import sys


def _integrity(con: sqlite3.Connection) -> str:
    return str(con.execute("PRAGMA integrity_check").fetchone()[0])


def snapshot(source: str, target: str) -> str:
    """Copy ``source`` (opened read-only, the live database) to ``target``; the copy's integrity check."""
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=60)
    dst = sqlite3.connect(target)
    with dst:
        src.backup(dst)  # pages=-1: one step under one read transaction, so the copy is consistent
    result = _integrity(dst)
    dst.close()
    src.close()
    return result


def check(db: str) -> str:
    con = sqlite3.connect(db)
    result = _integrity(con)
    con.close()
    return result


def main(argv: list[str]) -> None:
    if len(argv) == 3 and argv[0] == "snapshot":
        result, what = snapshot(argv[1], argv[2]), "snapshot"
    elif len(argv) == 2 and argv[0] == "check-restore":
        result, what = check(argv[1]), "downloaded backup"
    else:
        sys.exit(__doc__)
    if result != "ok":
        sys.exit(f"lmrun: {what} failed integrity_check: {result}")


if __name__ == "__main__":
    main(sys.argv[1:])
