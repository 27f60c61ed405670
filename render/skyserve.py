"""The parts of SkyPilot's config that make SkyServe's controller a private VM of the mesh.

SkyServe's controller (elastic services) is a VM SkyPilot launches in the main region; its load balancer proxies
to every replica at the address SkyPilot reports for it. The config rendered here makes every address a private
one and the controller a member of the mesh:

- ``aws.use_internal_ips``: SkyPilot launches only into the mesh's private subnets and reports private IPs, so
  the load balancer reaches replicas through the mesh (peering), never through their public addresses.
- ``aws.use_ssm: false`` with the Session Manager proxy spelled out per region (``aws.ssh_proxy_command``):
  the API server (outside the mesh) still reaches every VM through Session Manager, exactly as SkyPilot's own
  ``use_ssm`` would (``sky/backends/backend_utils.py``), while the controller, for which SkyPilot drops every
  ``ssh_proxy_command`` (``sky/utils/controller_utils.py`` ``_setup_proxy_command_on_controller``), connects to
  its replicas directly at their private addresses. With ``use_ssm: true`` SkyPilot would rebuild the proxy on the
  controller too, which has no Session Manager plugin. The proxy's regions are also the only regions SkyPilot
  launches AWS VMs in (its keys restrict them), which are exactly the regions with private subnets.
- ``aws.remote_identity`` by cluster name: the controller (``sky-serve-controller-*``) gets its own instance
  profile, allowed to launch replicas (:mod:`lmrun.components.skyserve`); every other VM the VMs' profile.
  (Kubernetes needs no such entry: with ``kubernetes.allowed_contexts`` set, SkyPilot uploads the operator's
  kubeconfig, the scoped one of the GPU pool, to its controllers only: ``sky/backends/backend_utils.py``.)
- ``aws.post_provision_runcmd``: every AWS VM runs the controller's join script at boot (its helpers written by the
  commands before it); it joins K3s on the controller only, so the load balancer reaches the GPU pool's pods.
"""

from __future__ import annotations

import base64
import gzip
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from lmrun.domain.names import LABEL_NODE, LABEL_REGION
from lmrun.domain.ports import K3S_API_PORT
from lmrun.domain.skypilot import LABEL_LAUNCHER, SKY_NODE_PREFIX, SKYSERVE_CONTROLLER_PATTERN, SKYSERVE_CONTROLLER_ROLE
from lmrun.render.cloudinit import SCRIPT_DIR
from lmrun.render.k3s import AGENT_TOKEN_FILE, K3S_INSTALL_SCRIPT, SSM_GET_SCRIPT
from lmrun.render.script_files import render_script

JOIN_SCRIPT = "skyserve-controller-join.sh"
IMDS = "http://169.254.169.254"
UNIT_DIR = "/etc/systemd/system"
JOIN_WAIT_SECONDS = 1800
"""How long the controller waits for SkyPilot's runtime (and its AWS CLI) after boot before giving up joining."""
CONTROLLER_NODE_PREFIX = f"{SKY_NODE_PREFIX}serve-controller-"


@dataclass(frozen=True)
class ControllerJoin:
    """What the controller's join script needs (from the stack's ``skypilot`` output)."""

    controller_profile: str
    main_region: str
    token_parameter: str
    k3s_version: str
    server_ip: str


def remote_identity(controller_profile: str, vm_profile: str) -> list[dict[str, str]]:
    """``aws.remote_identity``: the controller's profile for its clusters, the VMs' for every other (first match
    wins, ``fnmatch`` on the cluster name)."""
    return [{SKYSERVE_CONTROLLER_PATTERN: controller_profile}, {"*": vm_profile}]


def ssm_proxy_command(region: str) -> str:
    """SkyPilot's own Session Manager proxy for private VMs (``sky/backends/backend_utils.py``, ``use_ssm`` with
    ``use_internal_ips``; ``%h`` is the VM's private IP, ``%p`` the SSH port), for one region; the AWS CLI reads
    ``AWS_PROFILE`` from the environment itself."""
    instance = (
        f"aws ec2 describe-instances --region {region} --filters Name=private-ip-address,Values=%h "
        '--query "Reservations[].Instances[].InstanceId" --output text'
    )
    return (
        f'aws ssm start-session --target "$({instance})" --region {region} '
        "--document-name AWS-StartSSHSession --parameters portNumber=%p"
    )


def private_access(regions: Iterable[str]) -> dict[str, Any]:
    """The ``aws`` keys that make SkyPilot's VMs private and reachable: internal IPs, no ``use_ssm``, the proxy per
    region (main region first)."""
    return {
        "use_internal_ips": True,
        "use_ssm": False,
        "ssh_proxy_command": {region: ssm_proxy_command(region) for region in regions},
    }


@dataclass(frozen=True)
class JoinPaths:
    """Where the join script looks and writes on the VM (the tests point them into a scratch folder)."""

    imds: str = IMDS
    script_dir: str = SCRIPT_DIR
    unit_dir: str = UNIT_DIR
    token_file: str = AGENT_TOKEN_FILE


def join_script(join: ControllerJoin, paths: JoinPaths = JoinPaths()) -> str:
    """The controller's join script, its header filled."""
    return render_script(
        JOIN_SCRIPT,
        {
            "IMDS": paths.imds,
            "CONTROLLER_PROFILE": join.controller_profile,
            "SCRIPT_DIR": paths.script_dir,
            "UNIT_DIR": paths.unit_dir,
            "SSM_REGION": join.main_region,
            "TOKEN_PARAMETER": join.token_parameter,
            "TOKEN_FILE": paths.token_file,
            "K3S_VERSION": join.k3s_version,
            "SERVER_URL": f"https://{join.server_ip}:{K3S_API_PORT}",
            "NODE_PREFIX": CONTROLLER_NODE_PREFIX,
            "LABEL_NODE": LABEL_NODE,
            "LABEL_REGION": LABEL_REGION,
            "LAUNCHER_LABEL": f"{LABEL_LAUNCHER}={SKYSERVE_CONTROLLER_ROLE}",
            "WAIT_SECONDS": JOIN_WAIT_SECONDS,
        },
    )


def _write_command(path: str, text: str) -> str:
    """One shell command writing ``text`` to ``path`` (mode 0755): gzip + base64, whose alphabet needs no quoting
    in cloud-init's YAML (SkyPilot inserts each command unquoted: ``- {{cmd}}``) and keeps user data small."""
    payload = base64.b64encode(gzip.compress(text.encode(), mtime=0)).decode()
    return f"echo {payload} | base64 -d | gunzip > {path} && chmod 0755 {path}"


def join_files(join: ControllerJoin, paths: JoinPaths = JoinPaths()) -> dict[str, str]:
    """File name -> text of the join script and the helpers it runs from ``paths.script_dir``."""
    return {
        JOIN_SCRIPT: join_script(join, paths),
        "ssm-get.sh": SSM_GET_SCRIPT.content,
        "k3s-install.sh": K3S_INSTALL_SCRIPT.content,
    }


def post_provision_runcmd(join: ControllerJoin) -> list[str]:
    """``aws.post_provision_runcmd``: write the join script and its helpers, then run it (a no-op off the
    controller)."""
    files = join_files(join)
    return [
        f"mkdir -p {SCRIPT_DIR}",
        *(_write_command(f"{SCRIPT_DIR}/{name}", text) for name, text in files.items()),
        f"bash {SCRIPT_DIR}/{JOIN_SCRIPT}",
    ]
