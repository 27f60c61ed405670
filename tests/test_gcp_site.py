"""GcpSite under the recording mock engine, plus the GCP renderers with the real validators."""

from __future__ import annotations

import base64
import dataclasses
import functools
import os
import stat
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pulumi
import pytest

from lmrun.aws.secret_store import SsmParameterStore
from lmrun.domain.secrets import HF_TOKEN_UNSET
from lmrun.gcp.secret_store import GCP_SECRET_GET_SCRIPT, SecretManagerStore
from lmrun.gcp.site import (
    ACCESSOR_ROLE,
    GATEWAY_TAG,
    TEMPLATE_PREFIX_MAX,
    GcpSite,
    account_id,
    base_instance_name,
    gcp_labels,
    template_name_prefix,
)
from lmrun.mock_engine import RecordedResource, Recording, RecordingMocks, Secret, plain_strings, run_program
from lmrun.plan.cluster import NodePlan
from lmrun.plan.sites import SitePlan
from lmrun.render import gateways as render_gateways
from lmrun.render import k3s, phoenix, vllm
from lmrun.render.cloudinit import SCRIPT_DIR, runcmd_argvs, shell_scripts, written_files
from lmrun.render.wireguard import private_key_from_bytes, public_key
from lmrun.verify.cost import estimate_cost
from tests.conftest import TEST_GCP_IMAGES
from tests.validators import assert_cloud_init_valid, assert_shellcheck_clean

NETWORK = "gcp:compute/network:Network"
SUBNET = "gcp:compute/subnetwork:Subnetwork"
FIREWALL = "gcp:compute/firewall:Firewall"
ADDRESS = "gcp:compute/address:Address"
INSTANCE = "gcp:compute/instance:Instance"
TEMPLATE = "gcp:compute/instanceTemplate:InstanceTemplate"
GROUP = "gcp:compute/instanceGroupManager:InstanceGroupManager"
ROUTE = "gcp:compute/route:Route"
ROUTER = "gcp:compute/router:Router"
NAT = "gcp:compute/routerNat:RouterNat"
ACCOUNT = "gcp:serviceaccount/account:Account"
SECRET = "gcp:secretmanager/secret:Secret"
VERSION = "gcp:secretmanager/secretVersion:SecretVersion"
SECRET_IAM = "gcp:secretmanager/secretIamMember:SecretIamMember"
PROVIDER = "pulumi:providers:gcp"

PRIVATE_KEY = private_key_from_bytes(bytes(range(1, 33)))
ROTATED_KEY = private_key_from_bytes(bytes(range(2, 34)))
HUB_PUBLIC = public_key(private_key_from_bytes(bytes([7] * 32)))
K3S_TOKEN = "K10-mock-join-token-0123456789abcdef"
HF_TOKEN = "hf_mockHuggingFaceToken0123456789"
INGEST_KEY = "eyJhbGciOiJIUzI1NiJ9.eyJtb2NrIjoicGhvZW5peCJ9.mockPhoenixIngestKeySig"
SECRETS = (PRIVATE_KEY, K3S_TOKEN, HF_TOKEN, INGEST_KEY)
HUB_EIP = "3.3.3.3"
AWS_ROUTES = ("10.0.0.0/16", "10.192.0.0/16")
EXTERNAL_IP = "34.10.20.30"

SITE = SitePlan(
    name="gcp-a",
    kind="gcp",
    cidr="10.128.0.0/20",
    tunnel_address="10.192.0.2",
    mtu=1440,
    persistent_keepalive=25,
    key_epoch=0,
    gateway_ip="10.128.0.10",
    project="lmrun-test-project",
    region="us-central1",
    zone="us-central1-a",
    gateway_machine_type="e2-small",
    gateway_image=TEST_GCP_IMAGES["gateway"],
)


def _node(name: str, *, gpu: str, machine: str, accelerator: str | None, spot: bool) -> NodePlan:
    return NodePlan(
        name=name,
        region="us-central1",
        gpu=gpu,
        gpu_count=1,
        instance_type=machine,
        vcpus=8,
        spot=spot,
        hourly_usd=0.5,
        disk_size_gb=200,
        model="Qwen/Qwen2.5-7B-Instruct",
        model_revision="a09a35458c702b33eeacc393d103063234e8bc28",
        vllm_args=("--max-model-len", "8192"),
        app_port=8000,
        service="qwen",
        image=TEST_GCP_IMAGES["gpu"],
        cloud="gcp",
        site="gcp-a",
        zone="us-central1-a",
        accelerator=accelerator,
    )


T4_SPOT = _node("t4-spot", gpu="T4", machine="n1-standard-8", accelerator="nvidia-tesla-t4", spot=True)
L4 = _node("l4-ondemand", gpu="L4", machine="g2-standard-8", accelerator=None, spot=False)


def _mocks() -> RecordingMocks:
    return RecordingMocks(
        computed={
            ADDRESS: lambda a: {"address": a.inputs.get("address", EXTERNAL_IP)},
            ACCOUNT: lambda a: {"email": f"{a.inputs['accountId']}@lmrun-test-project.iam.gserviceaccount.com"},
            INSTANCE: lambda a: {
                "name": f"{a.name}-gce",
                "selfLink": f"https://www.googleapis.com/compute/v1/projects/p/zones/z/instances/{a.name}-gce",
            },
            TEMPLATE: lambda a: {
                "name": f"{a.inputs['namePrefix']}20250101000000000000000001",
                "selfLinkUnique": f"projects/p/global/instanceTemplates/{a.inputs['namePrefix']}x?uniqueId=42",
            },
            GROUP: lambda a: {"name": f"{a.name}-mig"},
        }
    )


def _record(
    nodes: Sequence[NodePlan] = (T4_SPOT, L4),
    *,
    private_key: str = PRIVATE_KEY,
    hf: bool = True,
    tracing: bool = True,
    preview: bool = False,
    site: SitePlan = SITE,
) -> Recording:
    def program() -> None:
        site_component = GcpSite(
            "mesh-site-gcp-a",
            args={
                "site": site,
                "private_key": pulumi.Output.secret(private_key),
                "hub_public_key": HUB_PUBLIC,
                "hub_endpoint": HUB_EIP,
                "hub_port": 51820,
                "hub_tunnel_address": "10.192.0.1",
                "aws_routes": AWS_ROUTES,
                "k3s_agent_token": pulumi.Output.secret(K3S_TOKEN),
                "k3s_server_ip": "10.0.0.10",
                "k3s_version": k3s.K3S_VERSION,
                "nodes": list(nodes),
                "hugging_face_token": pulumi.Output.secret(HF_TOKEN) if hf else None,
                "labels": {"lmrun:mesh": "lmrun-mesh", "Owner": "Platform Team"},
                "phoenix_ingest_key": pulumi.Output.secret(INGEST_KEY) if tracing else None,
                "phoenix_grpc_node_port": phoenix.GRPC_NODE_PORT if tracing else None,
            },
        )
        pulumi.export("node_names", site_component.node_names)

    return run_program(program, mocks=_mocks(), preview=preview)


@functools.cache
def _default() -> Recording:
    return _record()


def _secret_strings(value: Any, inside: bool = False) -> Iterator[str]:
    """Every string that IS inside a Secret."""
    if isinstance(value, Secret):
        yield from _secret_strings(value.value, True)
    elif isinstance(value, str) and inside:
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _secret_strings(item, inside)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _secret_strings(item, inside)


def _by_name(recording: Recording, suffix: str) -> RecordedResource:
    return recording.named(f"mesh-site-gcp-a-{suffix}")


def _user_data(resource: RecordedResource) -> str:
    text = resource.inputs["metadata"]["user-data"]
    assert isinstance(text, str), f"{resource.name}: user data must be plain text, not a secret"
    return text


# --- provider, network, firewall -----------------------------------------------------------------------------


def test_every_gcp_resource_uses_the_sites_explicit_provider(preview: bool) -> None:
    recording = _record(preview=preview)
    providers = [r for r in recording.resources if r.is_provider]
    assert [p.name for p in providers] == ["mesh-site-gcp-a-gcp"]
    assert providers[0].inputs["project"] == "lmrun-test-project"
    assert providers[0].inputs["region"] == "us-central1"
    component = next(r for r in recording.resources if r.type == "lmrun:index:GcpSite")
    assert providers[0].parent == component.urn
    assert recording.custom, "no cloud resources recorded"
    for resource in recording.custom:
        assert resource.type.startswith("gcp:"), resource.type
        assert resource.provider_urn == providers[0].urn, f"{resource.name} does not use the site's provider"
        assert resource.parent == component.urn, resource.name
        assert resource.name.startswith("mesh-site-gcp-a-"), resource.name


def test_custom_mode_network_with_the_site_subnet_and_a_tunnel_sized_mtu() -> None:
    network = _default().by_type(NETWORK)[0]
    assert network.inputs["autoCreateSubnetworks"] is False
    assert network.inputs["mtu"] == 1500  # 1440 tunnel + 60 bytes of WireGuard
    [subnet] = _default().by_type(SUBNET)
    assert subnet.inputs["ipCidrRange"] == "10.128.0.0/20"
    assert subnet.inputs["region"] == "us-central1"
    assert subnet.inputs["network"] == network.inputs.get("id", f"{network.name}-id")


def test_firewall_admits_wireguard_only_from_the_hub_and_nothing_from_the_world(preview: bool) -> None:
    rules = {r.name.removeprefix("mesh-site-gcp-a-"): r.inputs for r in _record(preview=preview).by_type(FIREWALL)}
    assert set(rules) == {"allow-wireguard", "allow-mesh", "allow-internal"}
    for name, rule in rules.items():
        assert rule["direction"] == "INGRESS", name
        assert "0.0.0.0/0" not in rule["sourceRanges"], name
        assert not rule.get("denies"), name
    wireguard = rules["allow-wireguard"]
    assert wireguard["sourceRanges"] == [f"{HUB_EIP}/32"]
    assert wireguard["allows"] == [{"protocol": "udp", "ports": ["51820"]}]
    assert wireguard["targetTags"] == [GATEWAY_TAG]
    assert sorted(rules["allow-mesh"]["sourceRanges"]) == sorted(AWS_ROUTES)
    assert rules["allow-internal"]["sourceRanges"] == [SITE.cidr]
    # The only rules without a target tag are the mesh-internal ones.
    assert all(rule.get("targetTags") for name, rule in rules.items() if name == "allow-wireguard")


# --- gateway and routes ---------------------------------------------------------------------------------------


def test_gateway_forwards_from_a_fixed_address_with_a_static_external_ip() -> None:
    recording = _default()
    gateway = _by_name(recording, "gateway").inputs
    assert gateway["canIpForward"] is True
    internal = _by_name(recording, "gateway-internal-ip").inputs
    assert internal["address"] == SITE.gateway_ip
    assert internal["addressType"] == "INTERNAL"
    external = _by_name(recording, "gateway-ip").inputs
    assert external["addressType"] == "EXTERNAL"
    [nic] = gateway["networkInterfaces"]
    assert nic["networkIp"] == SITE.gateway_ip
    assert nic["accessConfigs"] == [{"natIp": EXTERNAL_IP, "networkTier": "PREMIUM"}]
    assert gateway["shieldedInstanceConfig"] == {
        "enableSecureBoot": True,
        "enableVtpm": True,
        "enableIntegrityMonitoring": True,
    }
    assert gateway["serviceAccount"]["scopes"] == ["https://www.googleapis.com/auth/cloud-platform"]
    assert gateway["serviceAccount"]["email"].startswith(account_id("mesh-site-gcp-a", "gw"))
    assert gateway["metadata"]["enable-oslogin"] == "TRUE"
    assert gateway["tags"] == [GATEWAY_TAG]
    assert gateway["zone"] == "us-central1-a"
    assert gateway["bootDisk"]["initializeParams"]["image"] == SITE.gateway_image  # the pin, never a family


def test_a_route_per_aws_cidr_through_the_gateway(preview: bool) -> None:
    recording = _record(preview=preview)
    routes = {r.inputs["destRange"]: r.inputs for r in recording.by_type(ROUTE)}
    assert set(routes) == set(AWS_ROUTES)
    gateway_link = "https://www.googleapis.com/compute/v1/projects/p/zones/z/instances/mesh-site-gcp-a-gateway-gce"
    for route in routes.values():
        if not preview:
            assert route["nextHopInstance"] == gateway_link
        assert route["nextHopInstanceZone"] == "us-central1-a"
    assert {r.name for r in recording.by_type(ROUTE)} == {
        "mesh-site-gcp-a-route-10-0-0-0-16",
        "mesh-site-gcp-a-route-10-192-0-0-16",
    }


def test_gateway_config_in_secret_manager_is_the_rendered_site_config() -> None:
    version = _by_name(_default(), "wireguard-version").inputs
    assert isinstance(version["secretData"], Secret)
    text = version["secretData"].value
    assert f"PrivateKey = {PRIVATE_KEY}" in text
    assert f"PublicKey = {HUB_PUBLIC}" in text
    assert f"Endpoint = {HUB_EIP}:51820" in text
    assert "ListenPort = 51820" in text
    assert "MTU = 1440" in text
    assert "AllowedIPs = 10.0.0.0/16, 10.192.0.0/16, 10.192.0.1/32" in text
    assert "Address = 10.192.0.2/32" in text
    assert "TCPMSS --clamp-mss-to-pmtu" in text


# --- secrets and IAM ------------------------------------------------------------------------------------------


def test_key_and_tokens_are_secret_in_every_input(preview: bool) -> None:
    recording = _record(preview=preview)
    for resource in recording.resources:
        for path, text in plain_strings(resource.inputs):
            for value in SECRETS:
                assert value not in text, f"{resource.name}{path} holds a secret in plain text"
    if not preview:
        hidden = [s for r in recording.resources for s in _secret_strings(r.inputs)]
        for value in SECRETS:
            assert any(value in s for s in hidden), "a secret never reached Secret Manager"


def test_secrets_live_in_the_sites_region_with_stable_ids() -> None:
    secrets = {r.inputs["secretId"]: r.inputs for r in _default().by_type(SECRET)}
    assert set(secrets) == {
        "mesh-site-gcp-a-wireguard",
        "mesh-site-gcp-a-k3s-agent-token",
        "mesh-site-gcp-a-hf-token",
        "mesh-site-gcp-a-phoenix-ingest-key",
    }
    for inputs in secrets.values():
        assert inputs["replication"] == {"userManaged": {"replicas": [{"location": "us-central1"}]}}
        assert inputs["labels"]["lmrun_mesh"] == "lmrun-mesh"


def test_iam_grants_are_per_secret_accessor_only() -> None:
    recording = _default()
    assert not [r for r in recording.custom if "iam" in r.type.lower() and r.type != SECRET_IAM]
    gateway_sa = f"serviceAccount:{account_id('mesh-site-gcp-a', 'gw')}@lmrun-test-project.iam.gserviceaccount.com"
    nodes_sa = f"serviceAccount:{account_id('mesh-site-gcp-a', 'nodes')}@lmrun-test-project.iam.gserviceaccount.com"
    grants = {(r.inputs["secretId"], r.inputs["member"]) for r in recording.by_type(SECRET_IAM)}
    assert {r.inputs["role"] for r in recording.by_type(SECRET_IAM)} == {ACCESSOR_ROLE}
    assert grants == {
        ("mesh-site-gcp-a-wireguard", gateway_sa),
        ("mesh-site-gcp-a-k3s-agent-token", nodes_sa),
        ("mesh-site-gcp-a-hf-token", nodes_sa),
        ("mesh-site-gcp-a-phoenix-ingest-key", nodes_sa),
    }
    # The ingest key is readable by the nodes' service account only, never by the gateway's.
    [ingest_grant] = [r for r in recording.by_type(SECRET_IAM) if r.name.startswith("mesh-site-gcp-a-phoenix-")]
    assert ingest_grant.inputs["member"] == nodes_sa
    [ingest_version] = [r for r in recording.by_type(VERSION) if r.name == "mesh-site-gcp-a-phoenix-ingest-key-version"]
    assert isinstance(ingest_version.inputs["secretData"], Secret)
    assert ingest_version.inputs["secretData"].value == INGEST_KEY


def test_without_a_token_the_secret_holds_the_unset_marker_and_the_templates_are_the_same() -> None:
    """The Hugging Face token secret always exists (nodes read it at every vLLM start): setting the token
    replaces its version only, never an instance template (which would replace the GPU VM)."""
    without, with_token = _record(hf=False), _record(hf=True)
    assert "mesh-site-gcp-a-hf-token" in {r.inputs["secretId"] for r in without.by_type(SECRET)}
    [version] = [r for r in without.by_type(VERSION) if r.name == "mesh-site-gcp-a-hf-token-version"]
    assert isinstance(version.inputs["secretData"], Secret) and version.inputs["secretData"].value == HF_TOKEN_UNSET
    templates = {r.name: r.inputs for r in without.by_type(TEMPLATE)}
    assert len(templates) == 2
    assert templates == {r.name: r.inputs for r in with_token.by_type(TEMPLATE)}


# --- user data ------------------------------------------------------------------------------------------------


def test_user_data_holds_no_secret_and_passes_cloud_init_and_shellcheck(tmp_path: Path) -> None:
    scripts: list[Path] = []
    instances = _default().by_type(INSTANCE) + _default().by_type(TEMPLATE)
    assert sorted(i.name.removeprefix("mesh-site-gcp-a-") for i in instances) == [
        "gateway",
        "node-l4-ondemand-template",
        "node-t4-spot-template",
    ]
    for instance in instances:
        text = _user_data(instance)
        for value in SECRETS:
            assert value not in text
        path = tmp_path / f"{instance.name}.yaml"
        path.write_text(text)
        assert_cloud_init_valid(path)
        for script_path, content in shell_scripts(text).items():
            script = tmp_path / f"{instance.name}-{Path(script_path).name}"
            script.write_text(content)
            scripts.append(script)
    assert_shellcheck_clean(scripts)


def test_gateway_user_data_fetches_its_config_from_secret_manager() -> None:
    files = written_files(_user_data(_by_name(_default(), "gateway")))
    refresh = files[f"{SCRIPT_DIR}/wireguard-refresh.sh"]
    assert "gcp-secret-get.sh lmrun-test-project mesh-site-gcp-a-wireguard /run/lmrun/wg0.conf" in refresh
    assert f"{SCRIPT_DIR}/gcp-secret-get.sh" in files
    assert not any("ssm" in path for path in files)


def test_nodes_join_k3s_through_the_tunnel_with_gcp_labels_and_secret_manager() -> None:
    text = _user_data(_by_name(_default(), "node-t4-spot-template"))
    files = written_files(text)
    bootstrap = files[f"{SCRIPT_DIR}/k3s-agent-bootstrap.sh"]
    assert (
        "gcp-secret-get.sh lmrun-test-project mesh-site-gcp-a-k3s-agent-token /etc/rancher/k3s/lmrun-agent-token"
        in bootstrap
    )
    assert "https://10.0.0.10:6443" in bootstrap
    for label in ("lmrun.io/node=t4-spot", "lmrun.io/gpu=T4", "lmrun.io/region=us-central1"):
        assert label in bootstrap
    token = files[f"{SCRIPT_DIR}/vllm-hf-token.sh"]
    assert "gcp-secret-get.sh lmrun-test-project mesh-site-gcp-a-hf-token /run/lmrun/hf-token" in token
    assert not any("ssm-get" in content or "aws " in content for content in files.values())
    assert any("vllm-serve.sh" in path for path in files)


@pytest.mark.parametrize("node", ["t4-spot", "l4-ondemand"])
def test_nodes_export_traces_to_phoenix_with_the_ingest_key_from_secret_manager(node: str) -> None:
    text = _user_data(_by_name(_default(), f"node-{node}-template"))
    files = written_files(text)
    serve = files[f"{SCRIPT_DIR}/vllm-serve.sh"]
    assert "--otlp-traces-endpoint http://localhost:30201" in serve
    unit = files["/etc/systemd/system/lmrun-vllm.service"]
    assert f"EnvironmentFile=-{phoenix.CLIENT_ENV_FILE}" in unit
    refresher = files[f"/etc/systemd/system/{phoenix.CLIENT_ENV_UNIT}"]
    assert (
        f"ExecStart={SCRIPT_DIR}/phoenix-client-env.sh {phoenix.CLIENT_ENV_FILE} http://localhost:30201 "
        "lmrun-vllm.service"
    ) in refresher
    script = files[f"{SCRIPT_DIR}/phoenix-client-env.sh"]
    assert (
        f"FETCH_KEY=({SCRIPT_DIR}/gcp-secret-get.sh lmrun-test-project mesh-site-gcp-a-phoenix-ingest-key "
        f"{phoenix.CLIENT_ENV_FILE}.key)"
    ) in script
    assert f"{SCRIPT_DIR}/gcp-secret-get.sh" in files
    # Never SSM: a GCP VM has neither the AWS CLI nor credentials for it.
    assert not any("ssm" in content.lower() or "aws " in content for content in files.values())
    assert not any("ssm" in path for path in files)
    runcmd = [command[-1] for command in runcmd_argvs(text)]
    assert phoenix.CLIENT_ENV_TIMER in runcmd


def test_without_phoenix_no_ingest_key_secret_and_no_tracing() -> None:
    recording = _record(tracing=False)
    assert "mesh-site-gcp-a-phoenix-ingest-key" not in {r.inputs["secretId"] for r in recording.by_type(SECRET)}
    for template in recording.by_type(TEMPLATE):
        files = written_files(_user_data(template))
        assert "--otlp-traces-endpoint" not in files[f"{SCRIPT_DIR}/vllm-serve.sh"]
        assert not any("phoenix" in path for path in files)
    # Tracing only adds the key's secret, version and grant, and changes the node templates and the nodes' SA.
    before, after = _state(recording), _state(_default())
    added = set(after) - set(before)
    assert added == {
        "mesh-site-gcp-a-phoenix-ingest-key",
        "mesh-site-gcp-a-phoenix-ingest-key-version",
        "mesh-site-gcp-a-phoenix-ingest-key-reader-nodes",
    }
    changed = {name for name in before if before[name] != after[name]}
    assert changed == {
        "mesh-site-gcp-a-nodes-sa",
        "mesh-site-gcp-a-node-t4-spot-template",
        "mesh-site-gcp-a-node-l4-ondemand-template",
    }


# --- GPU nodes ------------------------------------------------------------------------------------------------


def test_spot_node_template_has_its_accelerator_spot_scheduling_and_no_external_ip() -> None:
    template = _by_name(_default(), "node-t4-spot-template").inputs
    assert template["machineType"] == "n1-standard-8"
    assert template["guestAccelerators"] == [{"type": "nvidia-tesla-t4", "count": 1}]
    # DELETE: the group recreates the preempted VM from the template once spot capacity is back.
    assert template["scheduling"] == {
        "provisioningModel": "SPOT",
        "preemptible": True,
        "automaticRestart": False,
        "onHostMaintenance": "TERMINATE",
        "instanceTerminationAction": "DELETE",
    }
    [nic] = template["networkInterfaces"]
    assert "accessConfigs" not in nic or not nic["accessConfigs"]
    [disk] = template["disks"]
    assert (disk["boot"], disk["autoDelete"]) == (True, True)
    assert (disk["sourceImage"], disk["diskSizeGb"], disk["diskType"]) == (TEST_GCP_IMAGES["gpu"], 200, "pd-balanced")
    assert template["serviceAccount"]["email"].startswith(account_id("mesh-site-gcp-a", "nodes"))
    assert template["serviceAccount"]["scopes"] == ["https://www.googleapis.com/auth/cloud-platform"]
    assert template["labels"]["lmrun_node"] == "t4-spot"
    assert template["labels"]["lmrun_mesh"] == "lmrun-mesh"
    assert template["shieldedInstanceConfig"]["enableVtpm"] is True
    assert template["metadata"]["enable-oslogin"] == "TRUE"
    # Immutable templates: a prefix (never a fixed name) so a replacement is created before the old is deleted.
    assert template["namePrefix"] == "mesh-site-gcp-a-t4-spot-"
    assert "name" not in template


def test_on_demand_node_template_terminates_on_maintenance_and_keeps_built_in_gpus() -> None:
    template = _by_name(_default(), "node-l4-ondemand-template").inputs
    assert template["machineType"] == "g2-standard-8"
    assert not template.get("guestAccelerators")
    assert template["scheduling"] == {
        "provisioningModel": "STANDARD",
        "automaticRestart": True,
        "onHostMaintenance": "TERMINATE",
    }
    [nic] = template["networkInterfaces"]
    assert "accessConfigs" not in nic or not nic["accessConfigs"]


@pytest.mark.parametrize("node", ["t4-spot", "l4-ondemand"])
def test_each_node_is_a_zonal_group_of_one_that_runs_its_template(node: str, preview: bool) -> None:
    recording = _record(preview=preview)
    group = _by_name(recording, f"node-{node}")
    template = _by_name(recording, f"node-{node}-template")
    assert group.type == GROUP and template.type == TEMPLATE
    inputs = group.inputs
    assert inputs["zone"] == "us-central1-a"
    assert inputs["targetSize"] == 1
    assert inputs["baseInstanceName"] == node
    [version] = inputs["versions"]
    assert template.urn in group.dependencies
    if not preview:
        prefix = template_name_prefix("mesh-site-gcp-a", node)
        assert version["instanceTemplate"] == f"projects/p/global/instanceTemplates/{prefix}x?uniqueId=42"
    assert inputs["updatePolicy"] == {
        "type": "PROACTIVE",
        "minimalAction": "REPLACE",
        "maxSurgeFixed": 0,
        "maxUnavailableFixed": 1,
    }
    assert inputs["waitForInstances"] is False
    assert not inputs.get("autoHealingPolicies")
    # The group (not only the template) waits for the secrets and grants the VM reads at boot.
    secret_deps = {dep.rsplit("::", 1)[-1] for dep in group.dependencies}
    assert {"mesh-site-gcp-a-k3s-agent-token-version", "mesh-site-gcp-a-k3s-agent-token-reader-nodes"} <= secret_deps


def test_node_names_map_each_node_to_its_group_and_no_bare_instances() -> None:
    recording = _default()
    assert [i.name for i in recording.by_type(INSTANCE)] == ["mesh-site-gcp-a-gateway"]
    assert {g.name for g in recording.by_type(GROUP)} == {
        "mesh-site-gcp-a-node-t4-spot",
        "mesh-site-gcp-a-node-l4-ondemand",
    }
    assert recording.outputs["node_names"] == {
        "t4-spot": "mesh-site-gcp-a-node-t4-spot-mig",
        "l4-ondemand": "mesh-site-gcp-a-node-l4-ondemand-mig",
    }


def test_gcp_nodes_are_listed_unpriced_not_dropped() -> None:
    unpriced = estimate_cost(_default().resources, {}).unpriced
    for node in ("t4-spot", "l4-ondemand"):
        assert any(entry.startswith(f"mesh-site-gcp-a-node-{node}-template:") for entry in unpriced), unpriced


def test_template_prefixes_and_base_names_stay_within_gce_limits() -> None:
    assert template_name_prefix("mesh-site-gcp-a", "t4-spot") == "mesh-site-gcp-a-t4-spot-"
    long = template_name_prefix("a-very-long-mesh-name-with-a-long-site-name", "a-32-character-node-name-for-it")
    assert len(long) <= TEMPLATE_PREFIX_MAX and long.endswith("-") and long[0].isalpha()
    assert long == template_name_prefix(
        "a-very-long-mesh-name-with-a-long-site-name", "a-32-character-node-name-for-it"
    )
    assert long != template_name_prefix(
        "a-very-long-mesh-name-with-a-long-site-name", "a-32-character-node-name-for-iu"
    )
    assert base_instance_name("l4-ondemand") == "l4-ondemand"
    assert base_instance_name("x" * 70) != base_instance_name("x" * 71)
    assert all(len(base_instance_name(n)) <= 58 for n in ("x" * 70, "9-starts-with-a-digit"))
    assert base_instance_name("9-starts-with-a-digit")[0].isalpha()


def test_nat_only_for_a_site_with_nodes() -> None:
    assert len(_default().by_type(ROUTER)) == 1
    [nat] = _default().by_type(NAT)
    assert nat.inputs["sourceSubnetworkIpRangesToNat"] == "LIST_OF_SUBNETWORKS"
    bare = _record(nodes=())
    assert not bare.by_type(ROUTER) and not bare.by_type(NAT)
    assert [i.name for i in bare.by_type(INSTANCE)] == ["mesh-site-gcp-a-gateway"]
    assert not bare.by_type(TEMPLATE) and not bare.by_type(GROUP)
    assert {r.inputs["secretId"] for r in bare.by_type(SECRET)} == {"mesh-site-gcp-a-wireguard"}


# --- blast radius ---------------------------------------------------------------------------------------------


def _state(recording: Recording) -> dict[str, dict[str, Any]]:
    return {r.name: r.inputs for r in recording.resources}


def test_adding_a_node_only_adds_resources() -> None:
    before = _state(_record(nodes=(T4_SPOT,)))
    after = _state(_record(nodes=(T4_SPOT, L4)))
    assert set(before) < set(after)
    for name, inputs in before.items():
        assert after[name] == inputs, f"adding a node changed {name}"
    added = set(after) - set(before)
    assert all("l4-ondemand" in name for name in added), added


def test_adding_the_first_node_only_adds_resources() -> None:
    before = _state(_record(nodes=()))
    after = _state(_record(nodes=(T4_SPOT,)))
    assert set(before) < set(after)
    for name, inputs in before.items():
        assert after[name] == inputs, f"adding the first node changed {name}"


def test_reordering_nodes_changes_nothing() -> None:
    assert _state(_record(nodes=(L4, T4_SPOT))) == _state(_record(nodes=(T4_SPOT, L4)))


def test_rotating_the_key_changes_only_the_config_secret_version() -> None:
    before = _state(_default())
    after = _state(_record(private_key=ROTATED_KEY))
    assert set(before) == set(after)
    changed = {name for name in before if before[name] != after[name]}
    assert changed == {"mesh-site-gcp-a-wireguard-version"}


# --- validation and helpers -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("site", "nodes", "message"),
    [
        (dataclasses.replace(SITE, kind="external"), (), "not 'gcp'"),
        (dataclasses.replace(SITE, project=None), (), "site.project"),
        (SITE, (dataclasses.replace(T4_SPOT, site="other"),), "nodes[t4-spot].site"),
        (SITE, (dataclasses.replace(T4_SPOT, cloud="aws"),), "nodes[t4-spot].cloud"),
        (SITE, (T4_SPOT, T4_SPOT), "duplicate node names"),
        (dataclasses.replace(SITE, gateway_image=None), (), "site.gateway_image: no image pinned"),
        (
            dataclasses.replace(
                SITE, gateway_image="projects/ubuntu-os-cloud/global/images/family/ubuntu-2404-lts-amd64"
            ),
            (),
            "site.gateway_image: .* is an image family",
        ),
        (SITE, (dataclasses.replace(T4_SPOT, image="ubuntu-os-cloud/ubuntu-2404-lts-amd64"),), "nodes[t4-spot].image"),
    ],
)
def test_bad_arguments_are_refused_with_the_field(site: SitePlan, nodes: tuple[NodePlan, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        _record(nodes=nodes, site=site)


def test_ingest_key_without_its_node_port_is_refused() -> None:
    def program() -> None:
        GcpSite(
            "mesh-site-gcp-a",
            args={
                "site": SITE,
                "private_key": pulumi.Output.secret(PRIVATE_KEY),
                "hub_public_key": HUB_PUBLIC,
                "hub_endpoint": HUB_EIP,
                "hub_port": 51820,
                "hub_tunnel_address": "10.192.0.1",
                "aws_routes": AWS_ROUTES,
                "k3s_agent_token": pulumi.Output.secret(K3S_TOKEN),
                "k3s_server_ip": "10.0.0.10",
                "k3s_version": k3s.K3S_VERSION,
                "nodes": [T4_SPOT],
                "hugging_face_token": None,
                "labels": {},
                "phoenix_ingest_key": pulumi.Output.secret(INGEST_KEY),
            },
        )

    with pytest.raises(ValueError, match="phoenix_grpc_node_port"):
        run_program(program, mocks=_mocks())


def test_labels_and_account_ids_follow_gcp_rules() -> None:
    assert gcp_labels({"lmrun:mesh": "LMRun Mesh", "Name": "x", "1st": "y"}) == {
        "lmrun_mesh": "lmrun_mesh",
        "name": "x",
        "l1st": "y",
    }
    assert gcp_labels(gcp_labels({"a:b": "C D"})) == gcp_labels({"a:b": "C D"})
    short = account_id("mesh-site-gcp-a", "gw")
    assert short == "mesh-site-gcp-a-gw"
    long = account_id("a-very-long-mesh-name-with-a-long-site-name", "nodes")
    assert 6 <= len(long) <= 30 and long[0].isalpha() and long.endswith("-nodes")
    assert long == account_id("a-very-long-mesh-name-with-a-long-site-name", "nodes")
    assert long != account_id("a-very-long-mesh-name-with-a-long-site-name-2", "nodes")


# --- renderers ------------------------------------------------------------------------------------------------


def test_secret_get_script_passes_shellcheck_and_keeps_the_token_off_the_command_line(tmp_path: Path) -> None:
    script = GCP_SECRET_GET_SCRIPT
    assert script.permissions == "0755"
    path = tmp_path / "gcp-secret-get.sh"
    path.write_text(script.content)
    assert_shellcheck_clean([path])
    assert "-H @-" in script.content
    assert "Metadata-Flavor: Google" in script.content
    assert "versions/latest:access" in script.content
    assert "base64 -d" in script.content
    assert "umask 077" in script.content
    assert "gcloud" not in script.content.replace("# ", "")


def test_gateway_user_data_renderer_validates_and_passes_cloud_init(tmp_path: Path) -> None:
    store = SecretManagerStore("my-project-1")
    text = render_gateways.render_gateway_user_data(
        store=store, config_secret="site-wireguard", description="WireGuard GCP site gateway"
    )
    path = tmp_path / "gateway.yaml"
    path.write_text(text)
    assert_cloud_init_valid(path)
    assert "Description=Apply the WireGuard GCP site gateway config from Secret Manager" in text
    with pytest.raises(ValueError, match="project"):
        SecretManagerStore("Bad_Project")
    with pytest.raises(ValueError, match="config_secret"):
        render_gateways.render_gateway_user_data(store=store, config_secret="a/b", description="gateway")


def test_agent_and_vllm_secret_store_is_checked() -> None:
    base = {"server_ip": "10.0.0.10", "token_parameter": "tok", "node_name": "n", "region": "us-central1"}
    gcp = SecretManagerStore("my-project-1")
    ssm = SsmParameterStore("us-east-1")
    agent = k3s.K3sAgentConfig(store=gcp, gpu="L4", **base)
    assert k3s.agent_files(agent)[0] is GCP_SECRET_GET_SCRIPT
    with pytest.raises(ValueError, match="project"):
        SecretManagerStore("")
    with pytest.raises(ValueError, match="token_parameter"):
        k3s.K3sAgentConfig(store=gcp, gpu="L4", **{**base, "token_parameter": "/lmrun/k3s/token"})
    with pytest.raises(ValueError, match="region"):
        k3s.K3sAgentConfig(store=gcp, **{**base, "region": "US Central 1"})
    ssm_vllm = vllm.VllmConfig(
        model="facebook/opt-125m",
        revision="main",
        served_model_name="opt",
        hf_token_parameter="/hf",
        store=ssm,
    )
    with pytest.raises(ValueError, match="same secret store"):
        vllm.render_gpu_node_user_data(agent, ssm_vllm)
    # Tracing too: an SSM refresher on a GCP node (or the reverse) is refused; matching stores are accepted.
    ssm_tracing = phoenix.PhoenixClientConfig(ssm, "/lmrun/x/phoenix/ingest-key")
    gcp_tracing = phoenix.PhoenixClientConfig(gcp, "ingest", restart_units=(vllm.UNIT_NAME,))
    traced = vllm.VllmConfig(
        model="facebook/opt-125m",
        revision="main",
        served_model_name="opt",
        otlp_traces_endpoint=gcp_tracing.endpoint,
        otlp_env_file=gcp_tracing.env_file,
    )
    with pytest.raises(ValueError, match="same secret store"):
        vllm.render_gpu_node_user_data(agent, traced, ssm_tracing)
    ssm_agent = k3s.K3sAgentConfig(store=ssm, gpu="L4", **{**base, "token_parameter": "/t"})
    with pytest.raises(ValueError, match="same secret store"):
        vllm.render_gpu_node_user_data(ssm_agent, traced, gcp_tracing)
    # Stores are values: another project is another store.
    with pytest.raises(ValueError, match="same secret store"):
        vllm.render_gpu_node_user_data(
            agent, traced, dataclasses.replace(gcp_tracing, store=SecretManagerStore("other-project"))
        )
    files = written_files(vllm.render_gpu_node_user_data(agent, traced, gcp_tracing))
    assert files[f"{SCRIPT_DIR}/phoenix-client-env.sh"] == phoenix.client_env_script(gcp_tracing).content
    with pytest.raises(ValueError, match="store"):
        vllm.VllmConfig(model="facebook/opt-125m", revision="main", served_model_name="opt", hf_token_parameter="hf")


FAKE_CURL = r"""#!/bin/bash
# Stand-in for curl: the metadata server's token and Secret Manager's (pretty-printed) answer.
printf '%s\n' "$*" >>"$FAKE_LOG"
case "$*" in
*Metadata-Flavor*)
    printf '{"access_token":"ya29.mock-token","expires_in":3599,"token_type":"Bearer"}'
    ;;
*versions/latest:access*)
    grep -q '^Authorization: Bearer ya29.mock-token$' || exit 22
    printf '{\n  "name": "projects/1/secrets/s/versions/3",\n  "payload": {\n    "data": "%s",\n' "$FAKE_DATA"
    printf '    "dataCrc32c": "42"\n  }\n}\n'
    ;;
*) exit 7 ;;
esac
"""


def test_secret_get_script_fetches_with_the_metadata_token_into_a_private_file(tmp_path: Path) -> None:
    """Runs the rendered script against a fake curl: the value lands 0600, the token never on argv."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "curl").write_text(FAKE_CURL)
    (bin_dir / "curl").chmod(0o755)
    script = tmp_path / "gcp-secret-get.sh"
    script.write_text(GCP_SECRET_GET_SCRIPT.content)
    value = "line one\nPrivateKey = abc+/=\n"
    log = tmp_path / "argv.log"
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "FAKE_LOG": str(log),
        "FAKE_DATA": base64.b64encode(value.encode()).decode(),
    }
    dest = tmp_path / "out" / "secret"
    result = subprocess.run(
        ["bash", str(script), "my-project-1", "site-wireguard", str(dest)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert dest.read_text() == value
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600
    calls = log.read_text()
    assert "projects/my-project-1/secrets/site-wireguard/versions/latest:access" in calls
    assert "ya29.mock-token" not in calls
    assert not list(dest.parent.glob("secret.*")), "temp file left behind"
