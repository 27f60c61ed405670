"""lmrun-mesh: a private, global GPU mesh for AI workloads as one Pulumi stack.

Installed, every part lives under this package: ``lmrun.components`` (ComponentResources),
``lmrun.spec`` (config -> spec), ``lmrun.plan`` (spec -> plan), ``lmrun.render`` (pure renderers),
``lmrun.aws`` and ``lmrun.gcp`` (cloud knowledge), ``lmrun.mock_engine`` (offline mock harness),
``lmrun.policy`` (policy rules) and ``lmrun.verify`` (the offline checks: one resource reader under policy,
reachability and cost, and the offline plan that composes them).
"""

__version__ = "0.1.0"
