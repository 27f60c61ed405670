"""Whole-stack tests of the WireGuard hub and sites: secret keys, one world-open port, rotation, reachability."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml

from lmrun.cli import main
from lmrun.mock_engine import Recording, Secret, plain_strings
from lmrun.plan import plan_mesh
from lmrun.render.cloudinit import STOP_AT_FIRST_FAILURE, written_files
from lmrun.render.wireguard import private_key_from_bytes
from lmrun.spec import spec_from_config
from lmrun.spec.errors import PlanError
from lmrun.verify.user_data import user_data_text
from tests.config_cases import Case, assert_refused, run_plan, write_stack
from tests.conftest import ROOT, TEST_GCP_IMAGES, pinned_images, plan, stack_config

INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
KEY = "random:index/randomBytes:RandomBytes"
HUB_CONFIG = "mesh-sites-hub-config"


def _global_sites() -> list[dict[str, Any]]:
    return list(yaml.safe_load((ROOT / "stacks" / "Pulumi.global.yaml").read_text())["config"]["lmrun:sites"])


def _private_keys(recording: Recording) -> dict[str, str]:
    """The WireGuard private keys the mocks produce (lmrun.mock_engine.aws_mocks: bytes from name + keepers)."""
    keys = {}
    for resource in recording.by_type(KEY):
        seed = resource.name + repr(sorted((resource.inputs.get("keepers") or {}).items()))
        keys[resource.name] = private_key_from_bytes(hashlib.sha256(seed.encode()).digest()[:32])
    return keys


@pytest.mark.parametrize("preview", [False, True], ids=["up", "preview"])
def test_every_wireguard_private_key_is_secret_everywhere(preview: bool) -> None:
    recording = plan("global", preview=preview).recording
    keys = _private_keys(recording)
    assert set(keys) == {"mesh-sites-hub-key", "mesh-sites-gcp-usc1-key", "mesh-sites-lab-onprem-key"}
    for resource in recording.resources:
        for _, text in plain_strings(resource.inputs):
            for name, key in keys.items():
                assert key not in text, f"{name} in plain text in {resource.name}"
    for output, value in recording.outputs.items():
        for _, text in plain_strings(value):
            assert all(key not in text for key in keys.values()), output
    assert isinstance(recording.outputs["joinBundles"], Secret)


def test_the_hub_config_holds_its_key_and_one_peer_per_site() -> None:
    recording = plan("global").recording
    parameter = recording.named(HUB_CONFIG).inputs
    assert parameter["type"] == "SecureString" and isinstance(parameter["value"], Secret)
    text = parameter["value"].value
    assert f"PrivateKey = {_private_keys(recording)['mesh-sites-hub-key']}" in text
    assert "ListenPort = 51820" in text
    for site, allowed in {
        "gcp-usc1": "10.128.0.0/20, 10.192.0.2/32",
        "lab-onprem": "10.129.0.0/24, 10.192.1.2/32",
    }.items():
        assert f"# peer: {site}" in text and f"AllowedIPs = {allowed}" in text


# AWS Systems Manager User Guide, "Managing parameter tiers": a Standard parameter holds 4 KB (4,096 characters),
# an Advanced one 8 KB; Intelligent-Tiering creates a Standard parameter while the value fits, Advanced beyond.
SSM_VALUE_LIMIT = {"Standard": 4096, "Advanced": 8192, "Intelligent-Tiering": 8192}


def _many_sites(count: int) -> list[dict[str, Any]]:
    """External sites with names of the longest allowed length (32 characters): the largest peer entries."""
    return [{"name": f"site-{i:02d}-" + "x" * 24, "kind": "external", "cidr": f"10.129.{i}.0/24"} for i in range(count)]


@pytest.mark.parametrize("sites", [30, 48], ids=["30-sites", "most-the-route-table-allows"])
def test_the_hub_config_parameter_has_a_tier_that_holds_it(sites: int) -> None:
    """Defect: without a tier the parameter is Standard (4 KB), and the hub config is ~4.2 KB at 30 sites: the
    `pulumi up` that adds the 29th site or so fails. 48 sites is the most the main route table allows (50 routes)."""
    parameter = plan("dev", sites=_many_sites(sites)).recording.named(HUB_CONFIG).inputs
    size = len(parameter["value"].value)
    tier = parameter.get("tier", "Standard")
    assert size <= SSM_VALUE_LIMIT[tier], f"{size} characters in a {tier} parameter"
    if sites == 30:
        assert size > SSM_VALUE_LIMIT["Standard"], "30 long-named sites outgrow a Standard parameter"
    with pytest.raises(PlanError, match="route table"):
        plan_mesh(spec_from_config(stack_config("dev", sites=_many_sites(49)).config), mesh="dev")


def test_only_the_wireguard_port_is_open_to_the_world() -> None:
    for stack in ("dev", "global"):
        world = [
            r
            for r in plan(stack).recording.by_type(INGRESS)
            if r.inputs.get("cidrIpv4") == "0.0.0.0/0" or "cidrIpv6" in r.inputs
        ]
        expected = [("udp", 51820, 51820)] if stack == "global" else []
        assert [(r.inputs["ipProtocol"], r.inputs["fromPort"], r.inputs["toPort"]) for r in world] == expected


def test_the_hub_forwards_and_the_main_vpc_routes_every_site_to_it() -> None:
    recording = plan("global").recording
    hub = recording.named("mesh-sites-hub-instance").inputs
    assert hub["sourceDestCheck"] is False
    assert hub["privateIp"] == "10.64.16.11"
    assert hub["metadataOptions"]["httpTokens"] == "required"
    hub_user_data = user_data_text(recording.named("mesh-sites-hub-instance"))
    assert hub_user_data is not None
    files = written_files(hub_user_data)
    assert "/lmrun/global/wireguard/hub" in files["/usr/local/lib/lmrun/wireguard-refresh.sh"]
    assert "PrivateKey" not in hub_user_data
    # A failed first fetch (the secret not written yet) must not keep the timer that retries it from starting.
    runcmd = yaml.safe_load(hub_user_data)["runcmd"]
    assert runcmd[-1] == ["systemctl", "enable", "--now", "lmrun-wireguard-refresh.timer"]
    assert STOP_AT_FIRST_FAILURE not in runcmd
    routes = {
        (r.inputs["routeTableId"], r.inputs["destinationCidrBlock"]): r.inputs
        for r in recording.by_type("aws:ec2/route:Route")
        if r.name.startswith("mesh-sites-hub-route-")
    }
    # The main route table, and the private one of SkyPilot's subnets (lmrun:skypilot is on in global).
    tables = ("mesh-us-east-1-rt-id", "mesh-us-east-1-private-rt-id")
    assert set(routes) == {(t, d) for t in tables for d in ("10.128.0.0/20", "10.129.0.0/24", "10.192.0.0/16")}
    for route in routes.values():
        assert "networkInterfaceId" in route and "gatewayId" not in route and "vpcPeeringConnectionId" not in route
    assert recording.named("mesh-sites-hub-eip-association").inputs["instanceId"] == "mesh-sites-hub-instance-id"


def _state(recording: Recording) -> dict[str, Any]:
    return {r.urn: r.inputs for r in recording.resources}


def test_rotating_one_sites_key_epoch_changes_only_its_key_and_the_hubs_peer_entry() -> None:
    sites = _global_sites()
    rotated = [{**site, "keyEpoch": 1} if site["name"] == "lab-onprem" else site for site in sites]
    before, after = _state(plan("global").recording), _state(plan("global", sites=rotated).recording)
    assert set(before) == set(after), "rotation adds or removes nothing"
    changed = sorted(urn.rsplit("::", 1)[-1] for urn in before if before[urn] != after[urn])
    assert changed == ["mesh-sites-hub-config", "mesh-sites-lab-onprem-key"]
    key = "mesh-sites-lab-onprem-key"
    assert _private_keys(plan("global").recording)[key] != _private_keys(plan("global", sites=rotated).recording)[key]


def test_rotating_a_gcp_sites_key_changes_its_key_secret_version_and_the_hubs_peer_entry() -> None:
    rotated = [{**site, "keyEpoch": 3} if site["name"] == "gcp-usc1" else site for site in _global_sites()]
    before, after = _state(plan("global").recording), _state(plan("global", sites=rotated).recording)
    assert set(before) == set(after)
    changed = sorted(urn.rsplit("::", 1)[-1] for urn in before if before[urn] != after[urn])
    assert changed == ["mesh-sites-gcp-usc1-key", "mesh-sites-gcp-usc1-wireguard-version", "mesh-sites-hub-config"]


def test_the_gcp_site_is_declared_with_its_own_provider_and_joins_through_the_tunnel() -> None:
    recording = plan("global").recording
    gcp = [r for r in recording.custom if r.type.startswith("gcp:")]
    assert gcp and {r.provider_urn.rsplit("::", 1)[-1] for r in gcp} == {"mesh-sites-gcp-usc1-gcp"}
    provider = recording.named("mesh-sites-gcp-usc1-gcp").inputs
    assert (provider["project"], provider["region"]) == ("lmrun-mesh-demo", "us-central1")
    routes = sorted(r.inputs["destRange"] for r in recording.by_type("gcp:compute/route:Route"))
    assert routes == ["10.192.0.0/16", "10.64.0.0/16"]
    bundle = recording.outputs["joinBundles"].value["lab-onprem"]["config"]
    hub_ip = next(line for line in bundle.splitlines() if line.startswith("Endpoint = ")).split()[-1].split(":")[0]
    wireguard_rule = recording.named("mesh-sites-gcp-usc1-allow-wireguard").inputs
    assert wireguard_rule["sourceRanges"] == [f"{hub_ip}/32"]
    # The GCP node is a zonal managed instance group of one running the node's instance template.
    template = recording.named("mesh-sites-gcp-usc1-node-l4-gcp-template")
    assert template.inputs["machineType"] == "g2-standard-8"
    group = recording.named("mesh-sites-gcp-usc1-node-l4-gcp").inputs
    assert group["targetSize"] == 1
    assert group["zone"] == provider["zone"]
    assert template.urn in recording.named("mesh-sites-gcp-usc1-node-l4-gcp").dependencies


def test_adding_a_site_only_adds_resources_and_the_hubs_peer_entry() -> None:
    extra = {"name": "lab-two", "kind": "external", "cidr": "10.130.0.0/24"}
    before, after = _state(plan("global").recording), _state(plan("global", sites=[*_global_sites(), extra]).recording)
    assert set(before) < set(after)
    changed = sorted(urn.rsplit("::", 1)[-1] for urn in before if before[urn] != after[urn])
    assert changed == ["mesh-sites-hub-config"]
    assert all("lab-two" in urn for urn in set(after) - set(before))


def test_reachability_in_the_plan_json() -> None:
    document = plan("global").to_json()
    paths = {(p["from"], p["to"]): p for p in document["reachability"]}
    assert paths[("us-east-1", "qwen-gcp")]["ok"] is True
    assert "through the WireGuard hub" in paths[("us-east-1", "qwen-gcp")]["reason"]
    entry = paths[("gcp-usc1", "k3s-api")]
    assert {key: entry[key] for key in ("from", "to", "port", "ok", "reason")} == {
        "from": "gcp-usc1",
        "to": "k3s-api",
        "port": 6443,
        "ok": True,
        "reason": "gcp-usc1 reaches the main region through its WireGuard tunnel",
    }
    # The recorded resources (routes, peerings, rules, tunnels) carry every path the model says they do.
    assert all(p["ok"] and p["resources_ok"] for p in document["reachability"])
    assert document["sites"]["lab-onprem"] == {
        "cidr": "10.129.0.0/24",
        "kind": "external",
        "mtu": 1440,
        "tunnel_address": "10.192.1.2",
    }


def _bundles(tmp_path: Path) -> Path:
    bundles = plan("global").recording.outputs["joinBundles"].value
    path = tmp_path / "bundles.json"
    path.write_text(json.dumps(bundles))
    return path


def test_join_bundle_writes_a_private_config_and_an_executable_script(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = _bundles(tmp_path)
    out = tmp_path / "out"
    code = main(
        ["join-bundle", "--stack", "global", "--site", "lab-onprem", "--out", str(out), "--from-json", str(source)]
    )
    assert code == 0, capsys.readouterr().err
    config, script = out / "lab-onprem-wg0.conf", out / "lab-onprem-bootstrap.sh"
    assert stat.S_IMODE(os.stat(config).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(script).st_mode) == 0o755
    text = config.read_text()
    keys = _private_keys(plan("global").recording)
    assert f"PrivateKey = {keys['mesh-sites-lab-onprem-key']}" in text
    assert "Endpoint = " in text and ":51820" in text and "PersistentKeepalive = 25" in text
    assert "AllowedIPs = 10.64.0.0/16, 10.192.0.0/16, 10.192.0.1/32" in text
    assert "PrivateKey" not in script.read_text()


def test_join_bundle_for_an_unknown_or_gcp_site_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = _bundles(tmp_path)
    refusals = {
        "nowhere": "error: --site nowhere: stack global has no such site; its external sites: lab-onprem",
        # GCP sites are declared in the stack: no bundle
        "gcp-usc1": "error: --site gcp-usc1: is a GCP site: the stack deploys it and its gateway joins by itself; "
        "only external sites get a bundle (stack global's: lab-onprem)",
    }
    for site, refusal in refusals.items():
        code = main(
            ["join-bundle", "--stack", "global", "--site", site, "--out", str(tmp_path), "--from-json", str(source)]
        )
        assert code == 2
        assert capsys.readouterr().err == refusal + "\n"


MESH = {
    "mainRegion": "us-east-1",
    "regions": ["us-east-2", "us-west-2"],
    "images": pinned_images("us-east-1", "us-east-2", "us-west-2"),
}
GCP = {
    "name": "gcp-a",
    "kind": "gcp",
    "cidr": "10.128.0.0/20",
    "project": "lmrun-demo-1",
    "region": "us-central1",
    "images": TEST_GCP_IMAGES,
}
LAB = {"name": "lab", "kind": "external", "cidr": "10.129.0.0/24"}
QWEN = {
    "name": "qwen-a",
    "region": "us-east-2",
    "gpu": "L4",
    "model": "Qwen/Qwen2.5-7B-Instruct",
    "modelRevision": "a09a35458c702b33eeacc393d103063234e8bc28",
    "nodePort": 30080,
}
GCP_NODE = {
    **{k: v for k, v in QWEN.items() if k != "region"},
    "name": "l4-gcp",
    "cloud": "gcp",
    "site": "gcp-a",
    "nodePort": 30090,
}
BAD: dict[str, Case] = {
    "site-cidr-overlaps-a-region": Case(
        {**MESH, "sites": [{**LAB, "cidr": "10.64.0.0/20"}]},
        (("lmrun:sites[0].cidr", "10.64.0.0/20 overlaps 10.64.0.0/16, the VPC of us-east-1 (lmrun:mainRegion)"),),
    ),
    "site-cidrs-overlap": Case(
        {**MESH, "sites": [LAB, {**LAB, "name": "lab-b", "cidr": "10.129.0.0/16"}]},
        (("lmrun:sites[1].cidr", "10.129.0.0/16 overlaps lmrun:sites[0] (lab, 10.129.0.0/24)"),),
    ),
    "unknown-site-kind": Case(
        {**MESH, "sites": [{**LAB, "kind": "azure"}]},
        (("lmrun:sites[0].kind", "should be one of 'gcp' or 'external' (got 'azure')"),),
    ),
    "gcp-node-refers-to-a-missing-site": Case(
        {**MESH, "sites": [GCP], "nodes": [{**GCP_NODE, "site": "gcp-z"}]},
        (("lmrun:nodes[0].site", "no GCP site named 'gcp-z'; GCP sites: gcp-a"),),
    ),
    "gcp-node-in-an-external-site": Case(
        {**MESH, "sites": [LAB], "nodes": [{**GCP_NODE, "site": "lab"}]},
        (("lmrun:nodes[0].site", "'lab' is an external site"),),
    ),
    "mtu-below-1280": Case(
        {**MESH, "sites": [{**LAB, "underlayMtu": 1300}]},
        (("lmrun:sites[0].underlayMtu", "the tunnel MTU would be 1240, below the 1280"),),
    ),
    "mtu-above-the-underlay": Case(
        {**MESH, "sites": [{**LAB, "mtu": 1480}]},
        (("lmrun:sites[0].mtu", "1480 does not fit the underlay (1500) minus WireGuard's 60 bytes"),),
    ),
    "gcp-site-without-project": Case(
        {**MESH, "sites": [{k: v for k, v in GCP.items() if k != "project"}]},
        (("lmrun:sites[0].project", "is required for a GCP site"),),
    ),
    "external-site-with-gcp-fields": Case(
        {**MESH, "sites": [{**LAB, "region": "us-central1"}]},
        (("lmrun:sites[0].region", "only applies to GCP sites"),),
    ),
    "site-smaller-than-a-24": Case(
        {**MESH, "sites": [{**LAB, "cidr": "10.129.0.0/26"}]},
        (("lmrun:sites[0].cidr", "is smaller than a /24"),),
    ),
    "duplicate-site-name": Case(
        {**MESH, "sites": [LAB, {**LAB, "cidr": "10.130.0.0/24"}]},
        (("lmrun:sites[1].name", "'lab' is already lmrun:sites[0]"),),
    ),
    "wireguard-port-privileged": Case(
        {**MESH, "sites": [LAB], "wireguard": {"port": 500}},
        (("lmrun:wireguard.port", "should be at least 1024"),),
    ),
    "gcp-node-with-a-region": Case(
        {**MESH, "sites": [GCP], "nodes": [{**GCP_NODE, "region": "us-east-2"}]},
        (("lmrun:nodes[0].region", "GCP nodes take their region from their site"),),
    ),
    "path-spoke-to-site": Case(
        {**MESH, "sites": [GCP], "nodes": [GCP_NODE], "paths": [{"from": "us-west-2", "to": "l4-gcp"}]},
        (("lmrun:paths[0]", "cannot reach l4-gcp: us-west-2 -> gcp-a: the peering with the main region drops"),),
    ),
    "path-spoke-to-spoke": Case(
        {**MESH, "nodes": [QWEN], "paths": [{"from": "us-west-2", "to": "qwen-a"}]},
        (("lmrun:paths[0]", "us-west-2 -> us-east-2: VPC peering is not transitive"),),
    ),
    "path-site-to-spoke": Case(
        {**MESH, "sites": [LAB], "nodes": [QWEN], "paths": [{"from": "lab", "to": "qwen-a"}]},
        (("lmrun:paths[0]", "lab -> us-east-2: traffic from a site enters the main VPC with a site source"),),
    ),
    "path-from-nowhere": Case(
        {**MESH, "nodes": [QWEN], "paths": [{"from": "mars", "to": "qwen-a"}]},
        (("lmrun:paths[0].from", "'mars' is not a location of this mesh"),),
    ),
    "path-to-no-service": Case(
        {**MESH, "nodes": [QWEN], "paths": [{"from": "us-east-1", "to": "llama"}]},
        (("lmrun:paths[0].to", "'llama' is not a service of this mesh"),),
    ),
}


@pytest.mark.parametrize("case", BAD.values(), ids=BAD.keys())
def test_bad_site_config_is_refused_with_its_config_path(
    case: Case, project_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert_refused(case, project_dir, tmp_path, capsys)


def test_paths_the_topology_carries_are_accepted(
    project_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = {
        **MESH,
        "sites": [GCP],
        "nodes": [QWEN, GCP_NODE],
        "paths": [
            {"from": "us-east-1", "to": "l4-gcp"},
            {"from": "gcp-a", "to": "l4-gcp"},
            {"from": "us-east-2", "to": "qwen-a"},
        ],
    }
    code, out, err = run_plan(project_dir, write_stack(tmp_path / "Pulumi.ok.yaml", config), capsys)
    assert code == 0, err
    declared = [p for p in json.loads(out)["reachability"] if p["from"] != "us-east-1" or p["to"] == "l4-gcp"]
    assert all(p["ok"] for p in declared)


def test_user_data_of_the_hub_passes_cloud_init(tmp_path: Path) -> None:
    from tests.validators import assert_cloud_init_valid

    path = tmp_path / "hub.yaml"
    path.write_text(user_data_text(plan("global").recording.named("mesh-sites-hub-instance")) or "")
    assert_cloud_init_valid(path)
