"""A stand-in for ``k3s kubectl`` on the K3s server (tests/test_k3s_server_ops.py puts it on PATH as ``k3s``).

It answers exactly the calls the server's scripts make, from files in ``$FAKE_K3S_STATE``, logs every call to
``calls``, and fails on anything else: ``get nodes -o json`` serves ``nodes.json`` (a recorded document) unless
``api-down`` exists; the elastic Services' names (``get services ... --selector lmrun.io/elastic=true``) are the lines
of ``elastic-services``; ``delete node NAME --wait=false`` appends NAME to ``deleted``; ``apply -f FILE`` fails while
``apply-failures`` counts down, then reads FILE (a JSON List), appends its kinds to ``applied`` and the document
to ``applied.jsonl``; the deployer token Secret's ``jsonpath`` reads serve ``token.b64`` (empty while
``token-delay`` counts down) and ``ca.b64``.
"""

from __future__ import annotations

import json
import os
import sys

STATE = os.environ["FAKE_K3S_STATE"]
SECRET = ["--namespace", "lmrun", "get", "secret", "lmrun-deployer-token", "-o"]


def _read(name: str, default: str = "") -> str:
    path = os.path.join(STATE, name)
    if not os.path.exists(path):
        return default
    with open(path) as f:
        return f.read()


def _write(name: str, text: str, mode: str = "w") -> None:
    with open(os.path.join(STATE, name), mode) as f:
        f.write(text)


def _counting_down(name: str) -> bool:
    left = int(_read(name, "0") or 0)
    if left > 0:
        _write(name, str(left - 1))
    return left > 0


def main(argv: list[str]) -> int:
    _write("calls", " ".join(argv) + "\n", "a")
    if argv[:1] != ["kubectl"]:
        return _fail("only `k3s kubectl` is faked")
    args = argv[1:]
    if args == ["get", "nodes", "-o", "json"]:
        if _read("api-down"):
            return _fail("The connection to the server 127.0.0.1:6443 was refused")
        sys.stdout.write(_read("nodes.json"))
    elif args[:6] == ["get", "services", "--namespace", "lmrun", "--selector", "lmrun.io/elastic=true"]:
        sys.stdout.write(_read("elastic-services"))
    elif args[:2] == ["delete", "node"] and args[3:] == ["--wait=false"]:
        _write("deleted", args[2] + "\n", "a")
        print(f'node "{args[2]}" deleted')
    elif args[:2] == ["apply", "-f"] and len(args) == 3:
        if _counting_down("apply-failures"):
            return _fail("The connection to the server 127.0.0.1:6443 was refused")
        with open(args[2]) as f:
            document = json.load(f)
        _write("applied", " ".join(item["kind"] for item in document["items"]) + "\n", "a")
        _write("applied.jsonl", json.dumps(document) + "\n", "a")
        print("namespace/lmrun unchanged")
    elif args == [*SECRET, "jsonpath={.data.token}"]:
        sys.stdout.write("" if _counting_down("token-delay") else _read("token.b64"))
    elif args == [*SECRET, "jsonpath={.data.ca\\.crt}"]:
        sys.stdout.write(_read("ca.b64"))
    else:
        return _fail("unexpected call: " + " ".join(args))
    return 0


def _fail(message: str) -> int:
    print(f"fake k3s: {message}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
