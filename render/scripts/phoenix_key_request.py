"""Usage: phoenix_key_request.py CREATED OUT NAME [KMS_KEY_ID]: Phoenix's new API key (CREATED) into OUT, the
`aws ssm put-parameter --cli-input-json` request for the SecureString NAME (the key stays in 0600 files)."""

import json
import sys


def main(created: str, out: str, name: str, kms_key: str = "") -> None:
    with open(created) as f:
        key = json.load(f)["data"]["key"]
    request = {"Name": name, "Value": key, "Type": "SecureString", "Overwrite": True}
    if kms_key:
        request["KeyId"] = kms_key
    with open(out, "w") as f:
        json.dump(request, f)


if __name__ == "__main__":
    main(*sys.argv[1:5])
