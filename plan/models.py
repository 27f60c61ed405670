"""Spec -> the model downloads the mesh can make: a node serving a gated or private Hugging Face model needs
``lmrun:huggingFaceToken``, or its vLLM fails at every start with a 401 from the Hub, after the VM has booted.

Whether a model is gated is a fact of the Hub, not of the config: ``lmrun models pin`` reads it (with the
revision) and records it as the node's ``modelAccess``, so this check runs offline.
"""

from __future__ import annotations

from lmrun.spec.errors import ConfigIssue, config_path
from lmrun.spec.model import MeshSpec

NEEDS_TOKEN = frozenset({"gated", "private"})
"""``modelAccess`` values whose downloads need a Hugging Face token."""


def model_access_issues(spec: MeshSpec) -> list[ConfigIssue]:
    """One issue per node whose model needs a token while ``lmrun:huggingFaceToken`` is not set."""
    if spec.hugging_face_token is not None:
        return []
    return [
        ConfigIssue(
            config_path(("nodes", index, "modelAccess")),
            f"node {node.name!r} serves {node.model}, which is {node.model_access} on the Hugging Face Hub, and "
            "lmrun:huggingFaceToken is not set: pulumi config set --secret huggingFaceToken hf_... (a token whose "
            "account may download it)",
        )
        for index, node in enumerate(spec.nodes)
        if node.model_access in NEEDS_TOKEN
    ]
