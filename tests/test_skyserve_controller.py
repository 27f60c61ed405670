"""SkyServe's controller as a private VM of the mesh: its identity, the config that makes every SkyPilot address a
private one, and the boot-time join that lets its load balancer reach the GPU pool's pods — each read through the
pinned ``skypilot``'s own code where it decides (config schema, remote identity by cluster name, the proxy the
controller keeps, the cloud-init block ``post_provision_runcmd`` lands in), and the join script run for real
against a fake instance-metadata service, a moto SSM and a recording K3s installer."""

from __future__ import annotations

import base64
import fnmatch
import gzip
import http.server
import json
import re
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from lmrun.components.skyserve import controller_statements
from lmrun.domain.skypilot import SKYSERVE_CONTROLLER_PATTERN
from lmrun.render.cloudinit import SCRIPT_DIR
from lmrun.render.skypilot import SkyPilotMesh, sky_config
from lmrun.render.skyserve import (
    CONTROLLER_NODE_PREFIX,
    JOIN_SCRIPT,
    ControllerJoin,
    JoinPaths,
    join_files,
    post_provision_runcmd,
    ssm_proxy_command,
)
from tests.conftest import plan
from tests.helpers_k3s_installer import fake_k3s_curl
from tests.helpers_phoenix import aws_env, moto_server
from tests.validators import assert_shellcheck_clean

CONTROLLER = "sky-serve-controller-2ea485ea"
TOKEN = "K10agent::node:secret-join-token"


@pytest.fixture(scope="module")
def mesh() -> SkyPilotMesh:
    return SkyPilotMesh.from_json(plan("global").outputs["skypilot"])


def _join(mesh: SkyPilotMesh) -> ControllerJoin:
    assert mesh.controller_profile is not None
    return ControllerJoin(
        mesh.controller_profile, mesh.main_region, mesh.token_parameter, mesh.k3s_version, mesh.server_ip
    )


def test_config_with_a_controller_passes_skypilots_schema(mesh: SkyPilotMesh) -> None:
    from sky.utils import common_utils, schemas

    common_utils.validate_schema(sky_config(mesh), schemas.get_config_schema(), "Invalid config YAML: ")


def _identity(entries: list[dict[str, str]], cluster: str) -> str:
    """SkyPilot's choice among ``remote_identity`` entries (``sky/backends/backend_utils.py``: the first whose
    pattern ``fnmatchcase``-matches the cluster name)."""
    return next(value for entry in entries for pattern, value in entry.items() if fnmatch.fnmatchcase(cluster, pattern))


def test_the_controller_gets_its_identity_and_every_other_cluster_the_vms(mesh: SkyPilotMesh) -> None:
    config = sky_config(mesh)
    assert _identity(config["aws"]["remote_identity"], CONTROLLER) == mesh.controller_profile
    assert _identity(config["aws"]["remote_identity"], "qwen-elastic-3") == mesh.name
    assert mesh.controller_profile != mesh.name


def test_the_api_server_proxies_through_session_manager_and_the_controller_connects_directly(
    mesh: SkyPilotMesh, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What SkyPilot decides, per side: the API server keeps the Session Manager proxy of the region; on the
    controller SkyPilot's own ``_setup_proxy_command_on_controller`` drops it, and with ``use_ssm: false`` nothing
    rebuilds it (``backend_utils`` defaults to SSM only when ``use_ssm`` is unset)."""
    from sky import clouds, skypilot_config
    from sky.utils import config_utils, controller_utils

    config = sky_config(mesh)
    aws = config["aws"]
    assert aws["use_internal_ips"] is True and aws["use_ssm"] is False
    assert list(aws["ssh_proxy_command"]) == list(mesh.private_regions)
    region = mesh.main_region
    proxies = config_utils.get_cloud_config_value_from_dict(config, cloud="aws", keys=("ssh_proxy_command",))
    assert proxies == {r: ssm_proxy_command(r) for r in mesh.private_regions} and len(proxies) == 4
    assert "AWS-StartSSHSession" in ssm_proxy_command(region) and "Name=private-ip-address,Values=%h" in (
        ssm_proxy_command(region)
    )
    monkeypatch.setattr(skypilot_config, "_get_loaded_config", lambda: config_utils.Config.from_dict(config))
    on_controller = controller_utils._setup_proxy_command_on_controller(clouds.AWS(), config)
    assert on_controller.get_nested(("aws", "ssh_proxy_command"), None) == {r: None for r in mesh.private_regions}
    assert on_controller.get_nested(("aws", "use_ssm"), None) is False


def test_in_ssh_mode_the_config_says_no_session_manager_anywhere(mesh: SkyPilotMesh) -> None:
    """``useSsm: false``: SSH straight to the private addresses (the API server inside the mesh). ``use_ssm`` must
    be said false: with ``use_internal_ips`` and no proxy, SkyPilot would otherwise fall back to Session Manager."""
    aws = sky_config(replace(mesh, use_ssm=False))["aws"]
    assert aws["use_ssm"] is False and aws["use_internal_ips"] is True and "ssh_proxy_command" not in aws


def _runcmd_through_skypilots_template(runcmd: list[str]) -> list[Any]:
    """The ``runcmd`` block of SkyPilot's own AWS template (``sky/templates/aws-ray.yml.j2``), rendered with these
    commands and read as cloud-init reads its ``#cloud-config``."""
    import jinja2
    import sky

    template = (Path(sky.__file__).parent / "templates" / "aws-ray.yml.j2").read_text()
    block = re.search(r"^( *)\{%- if runcmd %\}.*?\{%- endif %\}", template, re.S | re.M)
    assert block is not None, "SkyPilot's template has no runcmd block"
    text = jinja2.Template(block.group(0)).render(runcmd=runcmd)
    indent = len(block.group(1))
    cloud_config = "#cloud-config\n" + "\n".join(line[indent:] for line in text.splitlines())
    return list(yaml.safe_load(cloud_config)["runcmd"])


def test_post_provision_runcmd_reaches_cloud_init_intact_and_writes_the_join_files(mesh: SkyPilotMesh) -> None:
    runcmd = sky_config(mesh)["aws"]["post_provision_runcmd"]
    assert runcmd == post_provision_runcmd(_join(mesh))
    assert _runcmd_through_skypilots_template(runcmd) == runcmd
    written = {}
    for command in runcmd:
        match = re.fullmatch(r"echo (\S+) \| base64 -d \| gunzip > (\S+) && chmod 0755 \S+", command)
        if match:
            written[match.group(2)] = gzip.decompress(base64.b64decode(match.group(1))).decode()
    assert written == {f"{SCRIPT_DIR}/{name}": text for name, text in join_files(_join(mesh)).items()}
    assert runcmd[-1] == f"bash {SCRIPT_DIR}/{JOIN_SCRIPT}"
    # EC2 takes 16 KB of user data with SkyPilot's own cloud-config beside these commands (about 2 KB).
    assert sum(len(c) + 8 for c in runcmd) < 6 * 1024


def test_the_join_script_passes_shellcheck(mesh: SkyPilotMesh, tmp_path: Path) -> None:
    path = tmp_path / JOIN_SCRIPT
    path.write_text(join_files(_join(mesh))[JOIN_SCRIPT])
    assert_shellcheck_clean([path])


class _Metadata(http.server.BaseHTTPRequestHandler):
    """IMDSv2 as the script uses it: a PUT for a token, then GETs carrying it."""

    profile = ""

    def do_PUT(self) -> None:
        self._answer("imds-token" if self.path == "/latest/api/token" else None)

    def do_GET(self) -> None:
        if self.headers.get("X-aws-ec2-metadata-token") != "imds-token":
            self._answer(None, 401)
            return
        answers = {
            "/latest/meta-data/iam/info": json.dumps(
                {"Code": "Success", "InstanceProfileArn": f"arn:aws:iam::123456789012:instance-profile/{self.profile}"}
            ),
            "/latest/meta-data/instance-id": "i-0123456789abcdef0",
            "/latest/meta-data/placement/region": "us-east-1",
        }
        self._answer(answers.get(self.path))

    def _answer(self, body: str | None, status: int = 200) -> None:
        self.send_response(status if body is not None else 404)
        self.end_headers()
        self.wfile.write((body or "").encode())

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def imds() -> Iterator[type[_Metadata]]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Metadata)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Metadata.url = f"http://127.0.0.1:{server.server_address[1]}"  # type: ignore[attr-defined]
    try:
        yield _Metadata
    finally:
        server.shutdown()


def _run(
    mesh: SkyPilotMesh, tmp: Path, imds: type[_Metadata], endpoint: str, *args: str
) -> subprocess.CompletedProcess[str]:
    paths = JoinPaths(imds.url, str(tmp / "bin"), str(tmp / "units"), str(tmp / "rancher" / "token"))  # type: ignore[attr-defined]
    (tmp / "bin").mkdir(exist_ok=True)
    for name, text in join_files(_join(mesh), paths).items():
        (tmp / "bin" / name).write_text(text)
        (tmp / "bin" / name).chmod(0o755)
    fake = tmp / "fakebin"
    fake.mkdir(exist_ok=True)
    (fake / "curl").write_text(fake_k3s_curl(str(tmp / "k3s-install.args"), real_curl_otherwise=True))
    (fake / "systemctl").write_text(f'#!/bin/sh\necho "$*" >>{tmp / "systemctl.calls"}\n')
    for tool in ("curl", "systemctl"):
        (fake / tool).chmod(0o755)
    env = aws_env(endpoint, tmp)
    env["PATH"] = f"{fake}:{env['PATH']}"
    return subprocess.run(
        ["bash", str(tmp / "bin" / JOIN_SCRIPT), *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_a_replica_exits_at_boot_and_joins_nothing(mesh: SkyPilotMesh, imds: type[_Metadata], tmp_path: Path) -> None:
    imds.profile = mesh.name
    with moto_server() as endpoint:
        result = _run(mesh, tmp_path, imds, endpoint)
    assert result.returncode == 0, result.stderr
    assert "not SkyServe's controller" in result.stdout
    assert not (tmp_path / "units").exists() and not (tmp_path / "systemctl.calls").exists()


def test_the_controller_installs_its_join_unit_at_boot_and_joins_with_the_agent_token(
    mesh: SkyPilotMesh, imds: type[_Metadata], tmp_path: Path
) -> None:
    import boto3

    imds.profile = str(mesh.controller_profile)
    with moto_server() as endpoint:
        boot = _run(mesh, tmp_path, imds, endpoint)
        assert boot.returncode == 0, boot.stderr
        unit = (tmp_path / "units" / "lmrun-skyserve-join.service").read_text()
        assert f"ExecStart=/bin/bash {tmp_path / 'bin' / JOIN_SCRIPT} --wait-and-join" in unit
        assert (tmp_path / "systemctl.calls").read_text().splitlines() == [
            "daemon-reload",
            "enable lmrun-skyserve-join.service",
            "start --no-block lmrun-skyserve-join.service",
        ]
        ssm = boto3.client("ssm", endpoint_url=endpoint, region_name=mesh.main_region, aws_access_key_id="testing",
                           aws_secret_access_key="testing")  # fmt: skip
        ssm.put_parameter(Name=mesh.token_parameter, Value=TOKEN, Type="SecureString")
        joined = _run(mesh, tmp_path, imds, endpoint, "--wait-and-join")
    assert joined.returncode == 0, joined.stderr
    assert (tmp_path / "rancher" / "token").read_text().strip() == TOKEN
    args = (tmp_path / "k3s-install.args").read_text().splitlines()
    assert args[:2] == [f"INSTALL_K3S_VERSION={mesh.k3s_version}", "agent"]
    assert args[args.index("--server") + 1] == f"https://{mesh.server_ip}:6443"
    labels = dict(args[i + 1].split("=", 1) for i, arg in enumerate(args) if arg == "--node-label")
    assert labels == {
        "lmrun.io/node": f"{CONTROLLER_NODE_PREFIX}i-0123456789abcdef0",
        "lmrun.io/region": "us-east-1",
        "lmrun.io/launcher": "skyserve-controller",
    }


def test_the_controller_may_launch_only_into_the_mesh_and_pass_only_the_vms_role() -> None:
    vpc = "arn:aws:ec2:us-east-1:123456789012:vpc/vpc-1"
    statements = {s["Sid"]: s for s in controller_statements("123456789012", [vpc], "lmrun-global-skypilot")}
    actions = {a for s in statements.values() for a in s["Action"]}
    assert not actions & {"ec2:CreateSecurityGroup", "ec2:AuthorizeSecurityGroupIngress", "iam:*", "ec2:*"}
    network = statements["LaunchIntoTheMesh"]
    kinds = {r.split(":")[-1].split("/")[0] for r in network["Resource"]}
    assert kinds == {"network-interface", "security-group", "subnet"}
    assert network["Condition"] == {"StringEquals": {"ec2:Vpc": [vpc]}}
    assert statements["PassTheVmsRole"]["Resource"] == ["arn:aws:iam::123456789012:role/lmrun-global-skypilot"]
    assert statements["ManageSkyPilotInstances"]["Condition"] == {"Null": {"ec2:ResourceTag/ray-cluster-name": "false"}}


def test_the_mesh_pins_skypilots_own_controller_name_and_load_balancer_ports() -> None:
    """The controller's identity matches SkyServe's controller cluster names, and the reserved node ports are the
    ports its load balancers take (the pinned skypilot's constants: a SkyPilot upgrade that moves them fails here)."""
    from sky.serve import constants
    from sky.utils import common

    from lmrun.domain.ports import SKYSERVE_LB_PORTS

    assert f"{common.SKY_SERVE_CONTROLLER_PREFIX}*" == SKYSERVE_CONTROLLER_PATTERN
    low, high = map(int, constants.LOAD_BALANCER_PORT_RANGE.split("-"))
    assert (SKYSERVE_LB_PORTS.start, SKYSERVE_LB_PORTS.stop - 1) == (low, high)
    assert low == constants.LOAD_BALANCER_PORT_START
