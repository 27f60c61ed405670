"""Pinned versions of what the mesh installs on its VMs (one place; the spec's defaults come from here)."""

from __future__ import annotations

K3S_VERSION = "v1.33.6+k3s1"
"""Default K3s release of the server and every agent (``lmrun:k3sVersion``)."""
KUBERNETES_VERSION = "1.33.0"
"""Kubernetes schema version the rendered objects are validated against."""
VLLM_VERSION = "0.33.0"
PHOENIX_VERSION = "20.26.1"
