"""Which machines serve which mesh service, read from a stack's resources the way the cluster decides it.

A service's readiness proxies are one DaemonSet (:mod:`lmrun.render.kubernetes`) whose node affinity selects
the nodes registering ``serves.lmrun.io/<service>=true`` or carrying one of its pinned ``lmrun.io/node``
names. What a machine registers is in its user data: the ``--node-label`` flags of its K3s install line
(AWS instances and launch templates, GCP instance templates). So the replicas of a service are the machines
whose registered labels satisfy one of its DaemonSet's terms; a term naming ``lmrun.io/node`` values also
stands for a machine whose user data is not readable (a preview does not know the server's).
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from collections.abc import Mapping
from typing import Any

from lmrun.render.kubernetes import proxy_terms, term_selects
from lmrun.verify import tokens
from lmrun.verify.resources import Resource, Snapshot, get, is_unknown

NODE_LABEL = "lmrun.io/node"
SERVICE_LABEL = "lmrun.io/service"
_NODE_LABEL_FLAG = re.compile(r"--node-label '?([A-Za-z0-9./_-]+)=([A-Za-z0-9._-]*)'?")


def _user_data(resource: Resource) -> str:
    if resource.type == tokens.INSTANCE:
        value = get(resource.inputs, "userData")
    elif resource.type == tokens.LAUNCH_TEMPLATE:
        encoded = get(resource.inputs, "userData")
        try:
            value = base64.b64decode(str(encoded)).decode() if isinstance(encoded, str) else None
        except (binascii.Error, UnicodeDecodeError):
            value = None
    else:
        value = get(resource.inputs, "metadata", "user-data")
    return value if isinstance(value, str) and not is_unknown(value) else ""


def registered_labels(snapshot: Snapshot) -> dict[str, dict[str, str]]:
    """``lmrun.io/node`` name -> the labels the machine registers with K3s (``--node-label`` flags in its user
    data)."""
    found: dict[str, dict[str, str]] = {}
    machines = snapshot.of_type(
        tokens.INSTANCE, tokens.LAUNCH_TEMPLATE, tokens.GCP_INSTANCE_TEMPLATE, tokens.GCP_REGION_INSTANCE_TEMPLATE
    )
    for machine in machines:
        labels = dict(_NODE_LABEL_FLAG.findall(_user_data(machine)))
        if NODE_LABEL in labels:
            found.setdefault(labels[NODE_LABEL], {}).update(labels)
    return found


class Replicas:
    """The readiness DaemonSets of a snapshot and the machines they select, indexed once."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    @functools.cached_property
    def labels(self) -> dict[str, dict[str, str]]:
        return registered_labels(self.snapshot)

    def nodes(self, pod_selector: Mapping[str, Any]) -> list[str]:
        """The machines (``lmrun.io/node`` names) where the DaemonSets whose pods ``pod_selector`` selects run a
        proxy."""
        if not pod_selector:
            return []
        found: set[str] = set()
        for daemonset in self.snapshot.of_type(tokens.K8S_DAEMONSET):
            pod_labels = get(daemonset.inputs, "spec", "template", "metadata", "labels") or {}
            if not all(pod_labels.get(k) == v for k, v in pod_selector.items()):
                continue
            for term in proxy_terms(daemonset.inputs):
                expressions = get(term, "matchExpressions")
                named = {
                    str(value)
                    for e in (expressions if isinstance(expressions, list) else [])
                    if isinstance(e, Mapping) and e.get("key") == NODE_LABEL
                    for value in e.get("values") or []
                }
                for node in set(self.labels) | named:
                    if term_selects(term, self.labels.get(node, {NODE_LABEL: node})):
                        found.add(node)
        return sorted(found)

    def by_service(self) -> dict[str, list[str]]:
        """Service name (a Service's ``lmrun.io/service`` label) -> the machines its proxies run on."""
        out: dict[str, list[str]] = {}
        for service in self.snapshot.of_type(tokens.K8S_SERVICE):
            name = get(service.inputs, "metadata", "labels", SERVICE_LABEL)
            selector = get(service.inputs, "spec", "selector")
            if isinstance(name, str):
                out[name] = self.nodes(selector if isinstance(selector, Mapping) else {})
        return out
