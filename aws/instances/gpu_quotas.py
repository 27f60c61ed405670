"""The EC2 quotas a GPU node draws on, and how much of them: pure knowledge shared by ``lmrun quotas`` (which reads
and records them) and the plan (which places replica groups within the recorded values).

EC2 limits running instances per region in **vCPUs**, per instance-family group, separately for on-demand and
spot (Amazon EC2 User Guide, "Spot Instance quotas", using-spot-limits.html: "Spot Instance quotas are managed
in terms of the number of virtual central processing units (vCPUs)"; the on-demand quotas likewise count vCPUs
since the vCPU-based limits replaced instance counts). The mesh's G instances (g4dn, g5, g6, g6e) count
against:

- ``L-DB2E81BA`` Running On-Demand G and VT instances,
- ``L-3819A6DF`` All G and VT Spot Instance Requests.

P instances (p4d, p5, ...) have quotas of their own (on-demand ``L-417A185B``; spot ones per P generation) that
lmrun neither reads nor records: their nodes draw on no quota here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from lmrun.aws.instances import catalog

ON_DEMAND_G_VT = "L-DB2E81BA"
"""Running On-Demand G and VT instances (vCPUs)."""
SPOT_G_VT = "L-3819A6DF"
"""All G and VT Spot Instance Requests (vCPUs)."""
QUOTA_NAMES: dict[str, str] = {ON_DEMAND_G_VT: "On-Demand G and VT vCPUs", SPOT_G_VT: "Spot G and VT vCPUs"}
"""The quotas lmrun reads and records (``lmrun quotas --write``), by Service Quotas code."""


def counts_against_g_vt(instance_type: catalog.InstanceType) -> bool:
    """Whether the instance type's vCPUs count against the G and VT quotas."""
    return instance_type.family.startswith(("g", "vt"))


@dataclass(frozen=True)
class QuotaDraw:
    """What one node takes from one quota of its region."""

    code: str
    """Service Quotas code (:data:`QUOTA_NAMES`)."""
    vcpus: int


def quota_draw(instance_type: str, alternatives: Iterable[str], *, spot: bool) -> QuotaDraw | None:
    """The quota a node on ``instance_type`` draws on and how many vCPUs it must be able to take: an on-demand
    node its type's vCPUs; a spot node the largest of its type and its ``alternatives`` (its group may launch any
    of them; a capacity rebalance briefly runs a second instance beside it). None for families outside the G and
    VT quotas (P instances)."""
    chosen = catalog.instance_type(instance_type)
    if not counts_against_g_vt(chosen):
        return None
    if not spot:
        return QuotaDraw(ON_DEMAND_G_VT, chosen.vcpus)
    return QuotaDraw(SPOT_G_VT, max(catalog.instance_type(t).vcpus for t in (instance_type, *alternatives)))
