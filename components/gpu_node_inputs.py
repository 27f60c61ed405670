"""What another project needs to build a :class:`~lmrun.components.GpuNode` on its own: its user data and its
image.

``gpu_node_user_data`` renders the ``#cloud-config`` the mesh gives its own nodes (pinned CPython and vLLM,
the model at a pinned revision as a systemd service, the Hugging Face token read by name from SSM at every
vLLM start), from plain values: a VM serving vLLM on its own, or, given a :class:`JoinCluster`, a node that
also joins a deployed mesh's K3s cluster as an agent (its labels and its service's ``serves.lmrun.io`` label).

The image is pinned, never looked up by the program (a ``.../latest`` lookup would roll the node the day a
new image is published): :data:`GPU_IMAGE` names the public image the user data is written for (the Deep
Learning Base AMI: NVIDIA driver, the AWS CLI and the SSM agent preinstalled, root on ``/dev/sda1``),
:func:`gpu_image_pin_command` prints the command that reads its current id in a region, once, for the
operator to pin in config, and :func:`gpu_image_id` checks such a pin.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from lmrun.aws.images import PUBLIC_IMAGES, PublicImage, ami_id
from lmrun.aws.network.mtu import PEERING_ROUTES
from lmrun.aws.secret_store import SsmParameterStore
from lmrun.domain.names import IMAGE_GPU
from lmrun.domain.versions import K3S_VERSION
from lmrun.render.k3s import K3sAgentConfig
from lmrun.render.routes import RouteMtu
from lmrun.render.vllm import VllmConfig, render_gpu_node_user_data

GPU_IMAGE: PublicImage = PUBLIC_IMAGES[IMAGE_GPU]
"""The image GPU nodes boot: its public SSM parameter (whose value, per region, is the current AMI id)."""


@dataclass(frozen=True)
class JoinCluster:
    """A deployed mesh's K3s cluster for a node to join as an agent (the mesh's values: its stack outputs and
    ``/lmrun/<stack>/...`` parameter names)."""

    server_ip: str
    """Private IP of the mesh's K3s server (reachable from the node's VPC)."""
    token_parameter: str
    """SSM SecureString parameter holding the agent join token, e.g. ``/lmrun/global/k3s/agent-token``."""
    k3s_version: str = K3S_VERSION
    """The cluster's K3s release (the mesh's ``lmrun:k3sVersion``)."""


def gpu_node_user_data(
    *,
    name: str,
    model: str,
    revision: str,
    gpu: str,
    region: str,
    parameter_region: str | None = None,
    gpu_count: int = 1,
    app_port: int = 8000,
    vllm_args: Sequence[str] = (),
    served_model_name: str | None = None,
    hf_token_parameter: str | None = None,
    cluster: JoinCluster | None = None,
) -> str:
    """The ``#cloud-config`` of a GPU node serving ``model`` at ``revision`` with vLLM on ``app_port``.

    ``name`` is the node's name (its ``lmrun.io/node`` label in a cluster, and the served model name unless
    ``served_model_name`` is given); ``gpu`` its GPU model (``L4``), ``gpu_count`` the GPUs vLLM shards over.
    ``hf_token_parameter`` names an SSM SecureString holding a Hugging Face token (gated and private models),
    read at every vLLM start. The node reads every parameter from ``parameter_region`` (default: ``region``;
    with ``cluster``, the mesh's main region, where its join token lives); its ``parameter_arns`` must include
    the ARN of each parameter named here. Plain values only: no secret appears in the text. Raises
    ``ValueError`` naming the argument for a value the node could not use.
    """
    store = SsmParameterStore(parameter_region or region)
    agent = None
    routes: tuple[RouteMtu, ...] = ()
    service = served_model_name or name
    if cluster is not None:
        agent = K3sAgentConfig(
            server_ip=cluster.server_ip,
            store=store,
            token_parameter=cluster.token_parameter,
            node_name=name,
            region=region,
            gpu=gpu,
            serves=(service,),
            k3s_version=cluster.k3s_version,
        )
        # As the mesh's own nodes: inter-region peering carries 8,500-byte packets (lmrun.aws.network.mtu).
        routes = tuple(RouteMtu(destination, mtu) for destination, mtu in PEERING_ROUTES)
    vllm = VllmConfig(
        model=model,
        revision=revision,
        served_model_name=service,
        app_port=app_port,
        extra_args=tuple(vllm_args),
        tensor_parallel_size=gpu_count,
        hf_token_parameter=hf_token_parameter,
        store=store if hf_token_parameter is not None else None,
    )
    return render_gpu_node_user_data(agent, vllm, routes=routes)


def gpu_image_pin_command(region: str) -> str:
    """The AWS CLI command printing the current id of :data:`GPU_IMAGE` in ``region``: run it once and pin
    its output in your stack's config (an upgrade is then a reviewed config change)."""
    return shlex.join(SsmParameterStore(region).client_read_argv(GPU_IMAGE.parameter))


def gpu_image_id(value: str, *, region: str) -> str:
    """``value`` if it is a pinned AMI id; ``ValueError`` saying how to pin the current one of ``region``."""
    try:
        return ami_id(value)
    except ValueError as exc:
        raise ValueError(f"ami_id: {exc}; pin the current GPU image: {gpu_image_pin_command(region)}") from None
