"""Node reaper helper (node-reaper.sh, on the K3s server). Usage: node_reaper.py LABEL MAX_NOT_READY_SECONDS
< `kubectl get nodes -o json`. Prints NAME<TAB>REASON per NotReady node with LABEL that a newer Ready node with
the same LABEL value replaced, or NotReady longer than MAX_NOT_READY_SECONDS; never the server's node."""

from __future__ import annotations

import calendar
import json
import sys
import time
from typing import Any


def _time(text: str) -> int:
    return calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ"))


def doomed(document: dict[str, Any], label: str, limit: int, now: float) -> list[tuple[str, str]]:
    rows = []
    for item in document.get("items") or []:
        meta, labels = item["metadata"], item["metadata"].get("labels") or {}
        if label in labels and "node-role.kubernetes.io/control-plane" not in labels:
            ready = [c for c in item.get("status", {}).get("conditions") or [] if c["type"] == "Ready"] or [{}]
            since = _time(ready[0].get("lastTransitionTime") or meta["creationTimestamp"])
            rows.append(
                (meta["name"], labels[label], ready[0].get("status") == "True", meta["creationTimestamp"], since)
            )
    out = []
    for name, key, ready, created, since in sorted(rows):
        newer = [r[0] for r in rows if r[1] == key and r[2] and r[3] > created]
        if not ready and newer:
            out.append((name, f"{label}={key} rejoined as {newer[0]}"))
        elif not ready and now - since > limit:
            out.append((name, f"NotReady for {int(now - since)}s, over {limit}s"))
    return out


if __name__ == "__main__":
    for node, reason in doomed(json.load(sys.stdin), sys.argv[1], int(sys.argv[2]), time.time()):
        print(f"{node}\t{reason}")
