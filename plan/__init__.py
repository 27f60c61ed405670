"""Spec -> plan: pure decisions (CIDRs, subnets, names, limits) made before any resource exists."""

from lmrun.plan.mesh import MeshPlan, RegionPlan, SubnetPlan, plan_mesh

__all__ = ["MeshPlan", "RegionPlan", "SubnetPlan", "plan_mesh"]
