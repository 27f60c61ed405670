"""A kubeconfig pointed at another address of the same API server, with TLS still verified against the
certificate's name (for a port forward: ``https://localhost:6443`` to a server whose certificate names its
private IP)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import yaml


def with_api_server(kubeconfig: str, server: str) -> str:
    """``kubeconfig`` with every cluster's ``server`` set to ``server`` and its ``tls-server-name`` to the host
    it had (unless it names one already). Text that is not a kubeconfig (no ``clusters``) comes back as it is:
    the gate that delivers the kubeconfig only lets a kubeconfig through, and an offline plan's mock output is
    not one."""
    try:
        document: Any = yaml.safe_load(kubeconfig)
    except yaml.YAMLError:
        return kubeconfig
    if not isinstance(document, dict) or not isinstance(document.get("clusters"), list):
        return kubeconfig
    for entry in document["clusters"]:
        cluster = entry.get("cluster") if isinstance(entry, dict) else None
        if not isinstance(cluster, dict) or not isinstance(cluster.get("server"), str):
            continue
        host = urlsplit(cluster["server"]).hostname
        if host and "tls-server-name" not in cluster:
            cluster["tls-server-name"] = host
        cluster["server"] = server
    return str(yaml.safe_dump(document, sort_keys=False))
