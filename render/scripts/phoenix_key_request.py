"""Turns Phoenix's answer to ``POST /v1/system/api_keys`` into an ``aws ssm put-parameter`` request.

Usage: phoenix_key_request.py CREATED OUT NAME [KMS_KEY_ID]

Reads the new key from CREATED (Phoenix's JSON) and writes OUT, the ``--cli-input-json`` document storing it
as the SecureString NAME, so the key only ever travels through 0600 files, never argv. Runs on the Phoenix
node (phoenix-ingest-key.sh): standard library only, Python 3.9+.
"""

from __future__ import annotations

import json
import sys


def request(created: str, name: str, kms_key: str) -> dict[str, object]:
    with open(created) as f:
        key = str(json.load(f)["data"]["key"])
    put: dict[str, object] = {"Name": name, "Value": key, "Type": "SecureString", "Overwrite": True}
    if kms_key:
        put["KeyId"] = kms_key
    return put


def main(argv: list[str]) -> None:
    if len(argv) not in (3, 4):
        sys.exit(__doc__)
    created, out, name = argv[:3]
    put = request(created, name, argv[3] if len(argv) == 4 else "")
    with open(out, "w") as f:
        json.dump(put, f)


if __name__ == "__main__":
    main(sys.argv[1:])
