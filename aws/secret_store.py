# layer: render (5)
"""SSM Parameter Store as a VM's secret store (:class:`lmrun.render.secret_store.SecretStore`).

AWS VMs (the hub's server and gateway, the Phoenix node, GPU nodes in every region) read SecureString
parameters by *name* with their instance role, through ``ssm-get.sh`` and the AWS CLI of the image. The
parameters live in the main region, also for nodes in spokes.
"""

from __future__ import annotations

from dataclasses import dataclass

from lmrun.render.cloudinit import SCRIPT_DIR, WriteFile
from lmrun.render.k3s import SSM_GET_SCRIPT, check_region, check_ssm_parameter_name

__all__ = ["SSM_GET_SCRIPT", "SsmParameterStore"]


@dataclass(frozen=True)
class SsmParameterStore:
    """SecureString parameters of ``region``, read with ``ssm-get.sh REGION PARAMETER_NAME DEST``."""

    region: str
    """Region of the parameters (the main region)."""

    def __post_init__(self) -> None:
        check_region("region", self.region)

    @property
    def label(self) -> str:
        return "SSM"

    @property
    def fetch_script(self) -> WriteFile:
        return SSM_GET_SCRIPT

    def fetch_argv(self, name: str, dest: str) -> list[str]:
        check_ssm_parameter_name("name", name)
        return [f"{SCRIPT_DIR}/ssm-get.sh", self.region, name, dest]

    def check_name(self, field_name: str, name: str) -> None:
        check_ssm_parameter_name(field_name, name)

    def client_read_argv(self, name: str) -> list[str]:
        """The AWS CLI command that prints the decrypted value of parameter ``name`` and nothing else, for a
        client outside the mesh's VMs, with its own credentials (a kubeconfig's exec plugin)."""
        check_ssm_parameter_name("name", name)
        value = ["--with-decryption", "--query", "Parameter.Value", "--output", "text"]
        return ["aws", "ssm", "get-parameter", "--region", self.region, "--name", name, *value]
