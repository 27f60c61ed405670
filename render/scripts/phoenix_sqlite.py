"""Usage: phoenix_sqlite.py snapshot LIVE_DB COPY | check-restore DB   (Phoenix backups; exits non-zero unless
PRAGMA integrity_check says ok). Python's sqlite3, since stock images lack the sqlite3 CLI."""

import sqlite3
import sys


def main(args: list[str]) -> None:
    if args[:1] == ["snapshot"] and len(args) == 3:
        src = sqlite3.connect(f"file:{args[1]}?mode=ro", uri=True, timeout=60)
        con = sqlite3.connect(args[2])
        with con:
            src.backup(con)  # pages=-1: one step under one read transaction, so the copy is consistent
        src.close()
        what = "snapshot"
    elif args[:1] == ["check-restore"] and len(args) == 2:
        con = sqlite3.connect(args[1])
        what = "downloaded backup"
    else:
        sys.exit(__doc__)
    result = con.execute("PRAGMA integrity_check").fetchone()[0]
    con.close()
    if result != "ok":
        sys.exit(f"lmrun: {what} failed integrity_check: {result}")


if __name__ == "__main__":
    main(sys.argv[1:])
