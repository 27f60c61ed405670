"""Whole-stack tests of the K3s cluster, GPU nodes and node ports on the example stacks."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from lmrun.domain.versions import KUBERNETES_VERSION
from lmrun.mock_engine import (
    RecordedResource,
    Recording,
    Secret,
    plain_strings,
)
from lmrun.render.cloudinit import runcmd_argvs, shell_scripts, written_files
from lmrun.render.gpu_pool import DEVICE_PLUGIN, DEVICE_PLUGIN_NAMESPACE, POOL_MANIFEST
from lmrun.render.kubernetes import matching_services
from lmrun.verify.checks import PlanReport
from lmrun.verify.contracts import NEVER_WAITS, NO_BLANKET_TOLERATION, TIMEOUT_SECONDS, check_contracts
from lmrun.verify.replicas import Replicas, registered_labels
from lmrun.verify.user_data import user_data_text
from tests.conftest import ROOT, plan, repinned, stack_images
from tests.validators import assert_cloud_init_valid, assert_kubernetes_valid, assert_shellcheck_clean

INSTANCE = "aws:ec2/instance:Instance"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
VOLUME = "aws:ebs/volume:Volume"
INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
GROUP = "aws:autoscaling/group:Group"
SERVER_INSTANCE = "mesh-cluster-k3s-instance"
STATE_VOLUME = "mesh-cluster-k3s-state"


def _password(name: str) -> str:
    """The value the mocks give a RandomPassword (see lmrun.mock_engine.aws_mocks)."""
    return f"mock-{hashlib.sha256(name.encode()).hexdigest()[:32]}"


def _secret_values(recording: Recording) -> dict[str, str]:
    """Every generated secret (join token, Phoenix secrets) and what the readiness gates print (the kubeconfig;
    the Phoenix ingest key for GCP sites), by resource name."""
    gates = {r.name: f"mock stdout of {r.name}" for r in recording.resources if r.type == "command:local:Command"}
    assert "mesh-cluster-k3s-kubeconfig-gate" in gates
    passwords = {
        r.name: _password(r.name) for r in recording.resources if r.type == "random:index/randomPassword:RandomPassword"
    }
    return {**passwords, **gates}


def _user_data(resource: RecordedResource) -> str:
    text = user_data_text(resource)
    assert text is not None, f"{resource.name} carries no user data"
    return text


@pytest.mark.parametrize("stack", ["dev", "global"])
def test_token_and_kubeconfig_are_secret_in_every_input_and_output(stack: str, preview: bool) -> None:
    recording = plan(stack, preview=preview).recording
    secrets = _secret_values(recording)
    for resource in recording.resources:
        for path, text in plain_strings(resource.inputs):
            for what, value in secrets.items():
                assert value not in text, f"{what} in plain text at {resource.name}{path}"
    exported = recording.outputs
    assert isinstance(exported["kubeconfig"], Secret)
    for key, value in exported.items():
        for path, text in plain_strings(value):
            assert all(secret not in text for secret in secrets.values()), f"stack output {key}{path}"


def test_each_k3s_token_reaches_only_its_secret_stores() -> None:
    recording = plan("global").recording

    def holders(token: str) -> list[tuple[str, str]]:
        return [
            (r.type, r.name)
            for r in recording.resources
            if any(isinstance(v, Secret) and v.value == token for v in r.inputs.values())
        ]

    # The server token (cluster admin) lives in one SSM parameter, which only the server reads.
    assert holders(_password("mesh-cluster-k3s-server-token")) == [
        ("aws:ssm/parameter:Parameter", "mesh-cluster-k3s-server-token-parameter")
    ]
    # The agent token: SSM for AWS VMs, Secret Manager for the GCP site's nodes; nothing else holds the value.
    assert holders(_password("mesh-cluster-k3s-agent-token")) == [
        ("aws:ssm/parameter:Parameter", "mesh-cluster-k3s-agent-token-parameter"),
        ("gcp:secretmanager/secretVersion:SecretVersion", "mesh-sites-gcp-usc1-k3s-agent-token-version"),
    ]
    for name in ("mesh-cluster-k3s-server-token-parameter", "mesh-cluster-k3s-agent-token-parameter"):
        assert recording.named(name).inputs["type"] == "SecureString"
    # The server token keeps the old join token's value (the cluster's bootstrap data is encrypted with it).
    server_token = next(r for r in recording.resources if r.name == "mesh-cluster-k3s-server-token")
    assert server_token.type == "random:index/randomPassword:RandomPassword"
    k8s_provider = next(r for r in recording.resources if r.type == "pulumi:providers:kubernetes")
    assert isinstance(k8s_provider.inputs["kubeconfig"], Secret)


def test_no_security_group_opens_ssh_or_the_api_to_the_world() -> None:
    for stack in ("dev", "global"):
        for rule in plan(stack).recording.by_type(INGRESS):
            if "referencedSecurityGroupId" in rule.inputs:
                continue  # its source is a group's members (SkyPilot's rule admitting the mesh group)
            world = rule.inputs.get("cidrIpv4") in ("0.0.0.0/0", None) or "cidrIpv6" in rule.inputs
            low, high = rule.inputs.get("fromPort", 0), rule.inputs.get("toPort", 65535)
            opens_all = rule.inputs["ipProtocol"] == "-1"
            for port in (22, 6443):
                assert not (world and (opens_all or low <= port <= high)), (stack, rule.name)
        assert not plan(stack).recording.by_type("aws:ec2/securityGroupRule:SecurityGroupRule")


def test_operator_cidrs_open_only_6443_and_only_to_them() -> None:
    recording = plan("dev", operatorCidrs=["203.0.113.0/24"]).recording
    rules = [r for r in recording.by_type(INGRESS) if r.name.startswith("mesh-cluster-k3s-api-from")]
    assert [
        (r.inputs["cidrIpv4"], r.inputs["ipProtocol"], r.inputs["fromPort"], r.inputs["toPort"]) for r in rules
    ] == [("203.0.113.0/24", "tcp", 6443, 6443)]
    assert recording.by_type("aws:ec2/eip:Eip"), "operators reach the API on a stable public address"
    assert not [r for r in plan("dev").recording.by_type(INGRESS) if "api-from" in r.name]


def test_every_instance_requires_imdsv2_and_encrypts_its_volumes(preview: bool) -> None:
    recording = plan("global", preview=preview).recording
    instances = recording.by_type(INSTANCE)
    templates = recording.by_type(LAUNCH_TEMPLATE)
    assert len(instances) == 3 and len(templates) == 4  # K3s server, Phoenix, WireGuard hub; four GPU nodes
    for resource in instances + templates:
        assert resource.inputs["metadataOptions"]["httpTokens"] == "required", resource.name
    for instance in instances:
        assert instance.inputs["rootBlockDevice"]["encrypted"] is True
    for template in templates:
        for mapping in template.inputs["blockDeviceMappings"]:
            assert mapping["ebs"]["encrypted"] == "true", template.name
    for volume in recording.by_type(VOLUME):
        assert volume.inputs["encrypted"] is True


def test_server_state_volume_is_protected_retained_and_attached_at_a_stable_device() -> None:
    recording = plan("global").recording
    volume = recording.named(STATE_VOLUME)
    assert volume.protect and volume.retain_on_delete
    assert volume.inputs["tags"]["lmrun:stateful"] == "true"
    attachment = recording.named("mesh-cluster-k3s-state-attachment")
    assert attachment.inputs["deviceName"] == "/dev/sdf"
    assert attachment.inputs["volumeId"] == f"vol-{hashlib.sha256(STATE_VOLUME.encode()).hexdigest()[:17]}"
    server = recording.named(SERVER_INSTANCE)
    assert server.inputs["privateIp"] == "10.64.16.10"


def test_pulumi_state_holds_no_kubernetes_credential_that_can_expire() -> None:
    """What the gate reads is the kubeconfig the server publishes: the API's address and CA and an exec plugin
    that reads the lmrun-deployer token from its own parameter on every use. The admin kubeconfig (K3s's
    k3s.yaml, with a client certificate valid 365 days) stays on the server; a rotated token reaches Pulumi
    without re-running anything, and the provider keeps its cluster identity (the state volume)."""
    recording = plan("dev").recording
    files = written_files(_user_data(recording.named(SERVER_INSTANCE)))
    publish = files["/usr/local/lib/lmrun/publish-kubeconfig.sh"]
    assert "/etc/rancher/k3s/k3s.yaml" not in publish
    assert "ACCOUNT=lmrun-deployer" in publish and "TOKEN_SECRET=lmrun-deployer-token" in publish
    assert "KUBECONFIG_PARAMETER=/lmrun/dev/k3s/kubeconfig" in publish
    assert "CREDENTIAL_PARAMETER=/lmrun/dev/k3s/deployer-credential" in publish
    deployer = json.loads(files["/usr/local/lib/lmrun/lmrun-deployer.json"])["items"]
    kinds = ["Namespace", "NetworkPolicy", "ServiceAccount", "Secret", "Role", "RoleBinding"]
    assert [item["kind"] for item in deployer] == kinds
    parameters = {p.inputs["name"]: p for p in recording.by_type("aws:ssm/parameter:Parameter")}
    credential = parameters["/lmrun/dev/k3s/deployer-credential"]
    assert credential.inputs["type"] == "SecureString" and "lmrun-deployer" in credential.inputs["description"]
    server_policy = json.loads(recording.named("mesh-cluster-k3s-identity-parameters").inputs["policy"])
    arns = {
        f"arn:aws:ssm:us-east-1:123456789012:parameter/lmrun/dev/k3s/{name}"
        for name in ("kubeconfig", "deployer-credential")
    }
    for sid in ("ReadParameters", "PublishParameters"):
        statement = next(st for st in server_policy["Statement"] if st["Sid"] == sid)
        assert arns <= set(statement["Resource"]), sid
    gate = recording.named("mesh-cluster-k3s-kubeconfig-gate")
    assert gate.inputs["triggers"] == ["mesh-cluster-k3s-instance-id"]
    provider = recording.named("mesh-cluster-ports-k8s")
    assert isinstance(provider.inputs["kubeconfig"], Secret)
    assert provider.inputs["clusterIdentifier"] == f"vol-{hashlib.sha256(STATE_VOLUME.encode()).hexdigest()[:17]}"


def test_new_ami_or_instance_type_replaces_the_server_never_its_state_volume() -> None:
    base = plan("global").recording
    changed = plan(
        "global",
        serverInstanceType="m7i.large",
        images=repinned("global", "us-east-1", "server", "ami-0aaaaaaaaaaaaaaa2"),
    ).recording
    old_server, new_server = base.named(SERVER_INSTANCE), changed.named(SERVER_INSTANCE)
    assert (old_server.inputs["ami"], old_server.inputs["instanceType"]) != (
        new_server.inputs["ami"],
        new_server.inputs["instanceType"],
    )
    assert base.named(STATE_VOLUME).urn == changed.named(STATE_VOLUME).urn
    assert base.named(STATE_VOLUME).inputs == changed.named(STATE_VOLUME).inputs
    # The volume depends on nothing the instance is built from.
    assert not set(changed.named(STATE_VOLUME).dependencies) & {old_server.urn}


def test_every_vm_boots_the_image_pinned_for_its_role_and_region() -> None:
    recording = plan("global").recording
    pins = stack_images("global")
    server = pins["us-east-1"]["server"]
    booted = {r.name: r.inputs["ami"] for r in recording.by_type(INSTANCE)}
    booted |= {r.name: r.inputs["imageId"] for r in recording.by_type(LAUNCH_TEMPLATE)}
    assert booted == {
        SERVER_INSTANCE: server,
        "mesh-cluster-phoenix-instance": server,
        "mesh-sites-hub-instance": server,
        "mesh-cluster-node-qwen-use2-lt": pins["us-east-2"]["gpu"],
        "mesh-cluster-node-l4-pool-use1-0-lt": pins["us-east-1"]["gpu"],
        "mesh-cluster-node-qwen-usw2-lt": pins["us-west-2"]["gpu"],
        "mesh-cluster-node-phi-euw1-lt": pins["eu-west-1"]["gpu"],
    }


def test_gpu_nodes_are_spot_safe_groups_of_one_across_every_az() -> None:
    recording = plan("global").recording
    groups = {g.name: g for g in recording.by_type(GROUP)}
    spot = groups["mesh-cluster-node-qwen-use2-asg"].inputs
    assert (spot["minSize"], spot["maxSize"], spot["desiredCapacity"]) == (1, 1, 1)
    # Rebalancing needs somewhere to go: the L4 node may also run on g6.2xlarge (another spot pool, same GPU).
    assert spot["capacityRebalance"] is True
    overrides = spot["mixedInstancesPolicy"]["launchTemplate"]["overrides"]
    assert overrides == [{"instanceType": "g6.xlarge"}, {"instanceType": "g6.2xlarge"}]
    distribution = spot["mixedInstancesPolicy"]["instancesDistribution"]
    assert distribution["onDemandPercentageAboveBaseCapacity"] == 0
    assert distribution["spotAllocationStrategy"] == "price-capacity-optimized"
    assert len(spot["vpcZoneIdentifiers"]) == 3  # use2-az1..3
    on_demand = groups["mesh-cluster-node-phi-euw1-asg"].inputs
    assert "mixedInstancesPolicy" not in on_demand and "launchTemplate" in on_demand


def test_a_spot_node_with_one_instance_type_does_not_rebalance() -> None:
    """Defect: capacity rebalance on a spot group with one instance type has no other pool to move the node to
    (the same type in another AZ is what the allocation strategy already picks at launch): with 8x L4 only
    g6.48xlarge exists, so the group neither rebalances nor lists overrides."""
    node = {
        "name": "big",
        "region": "us-east-2",
        "gpu": "L4",
        "gpuCount": 8,
        "model": "Qwen/Qwen2.5-7B-Instruct",
        "modelRevision": "a09a35458c702b33eeacc393d103063234e8bc28",
        "nodePort": 30095,
    }
    group = plan("global", nodes=[*_global_nodes(), node]).recording.named("mesh-cluster-node-big-asg").inputs
    assert group["capacityRebalance"] is False
    assert "overrides" not in group["mixedInstancesPolicy"]["launchTemplate"]


SKYSERVE_CONTROLLER_POLICY = "mesh-skyserve-identity-parameters"


def _assert_controller_wildcards(allows: list[dict[str, Any]]) -> None:
    """SkyServe's controller launches VMs whose ARNs nobody knows beforehand: its wildcards are exactly SkyPilot's
    documented ones (ec2:Describe*, which takes no resource; new instances, volumes, images), and the network
    resources of a launch only inside the mesh's VPCs."""
    actions = {a for st in allows for a in st["Action"] if "*" in a}
    assert actions == {"ec2:Describe*"}
    wild = {(st["Sid"], r.split(":")[-1]) for st in allows for r in st["Resource"] if "*" in r}
    assert wild == {
        ("LaunchImages", "image/ami-*"),
        ("LaunchInstances", "instance/*"),
        ("LaunchInstances", "volume/*"),
        ("LaunchIntoTheMesh", "network-interface/*"),
        ("LaunchIntoTheMesh", "security-group/*"),
        ("LaunchIntoTheMesh", "subnet/*"),
        ("ManageSkyPilotInstances", "instance/*"),
        ("TagInstances", "instance/*"),
        ("TagInstances", "volume/*"),
        ("Describe", "*"),
    }
    mesh = next(st for st in allows if st["Sid"] == "LaunchIntoTheMesh")
    assert list(mesh["Condition"]) == ["StringEquals"] and len(mesh["Condition"]["StringEquals"]["ec2:Vpc"]) == 4


def test_iam_policies_name_exact_parameters_and_no_wildcard_actions() -> None:
    recording = plan("global").recording
    policies = recording.by_type("aws:iam/rolePolicy:RolePolicy")
    # server, Phoenix node, WireGuard hub, three GPU nodes, the pool node, SkyPilot, SkyServe's controller
    assert len(policies) == 9
    for policy in policies:
        document = json.loads(policy.inputs["policy"])
        *allows, deny = document["Statement"]
        if policy.name == SKYSERVE_CONTROLLER_POLICY:
            _assert_controller_wildcards(allows)
            allows = [st for st in allows if st["Sid"] == "ReadParameters"]
        for statement in allows:
            assert statement["Effect"] == "Allow"
            assert all("*" not in action for action in statement["Action"]), policy.name
            for resource in statement["Resource"]:
                # Only S3 object keys under one prefix may end in a wildcard, and the K3s server's read of the
                # elastic services' bound load balancers (`lmrun sky bind` writes them, not the stack).
                assert "*" not in resource or resource.endswith(("/phoenix/*", "/checkpoints/*", "/serve/*")), (
                    policy.name,
                    resource,
                )
        # Last, the Deny of every other parameter's value (Session Manager's managed policy allows them all).
        reads = next(st["Resource"] for st in allows if st["Sid"] == "ReadParameters")
        assert deny == {
            "Sid": "DenyOtherParameters",
            "Effect": "Deny",
            "Action": ["ssm:GetParameter*"],
            "NotResource": reads,
        }, policy.name
    node_policy = json.loads(recording.named("mesh-cluster-node-qwen-use2-identity-parameters").inputs["policy"])
    reads = [
        # The Hugging Face token parameter always exists (no token set in `global`), so setting the token later
        # changes no node's policy. The agent token, never the server token.
        "arn:aws:ssm:us-east-1:123456789012:parameter/lmrun/global/huggingface/token",
        "arn:aws:ssm:us-east-1:123456789012:parameter/lmrun/global/k3s/agent-token",
        "arn:aws:ssm:us-east-1:123456789012:parameter/lmrun/global/phoenix/ingest-key",
    ]
    assert node_policy["Statement"] == [
        {"Sid": "ReadParameters", "Effect": "Allow", "Action": ["ssm:GetParameter"], "Resource": reads},
        {"Sid": "DenyOtherParameters", "Effect": "Deny", "Action": ["ssm:GetParameter*"], "NotResource": reads},
    ]


def test_phoenix_node_may_touch_only_its_backup_prefix() -> None:
    recording = plan("global").recording
    bucket_arn = "arn:mock:aws:s3/bucket:Bucket:mesh-cluster-phoenix-store-backups"
    document = json.loads(recording.named("mesh-cluster-phoenix-identity-parameters").inputs["policy"])
    s3 = [st for st in document["Statement"] if any(a.startswith("s3:") for a in st["Action"])]
    assert s3 == [
        {
            "Sid": "PhoenixBackupObjects",
            "Effect": "Allow",
            "Action": ["s3:PutObject", "s3:GetObject"],
            "Resource": [f"{bucket_arn}/phoenix/*"],
        },
        {
            "Sid": "PhoenixBackupList",
            "Effect": "Allow",
            "Action": ["s3:ListBucket"],
            "Resource": [bucket_arn],
            "Condition": {"StringLike": {"s3:prefix": ["phoenix/*"]}},
        },
    ]


def _validate_user_data(recording: Recording, tmp_path: Path) -> int:
    scripts: list[Path] = []
    checked = 0
    for resource in recording.by_type(INSTANCE) + recording.by_type(LAUNCH_TEMPLATE):
        text = _user_data(resource)
        path = tmp_path / f"{resource.name}.yaml"
        path.write_text(text)
        assert_cloud_init_valid(path)
        for script_path, content in shell_scripts(text).items():
            script = tmp_path / f"{resource.name}-{Path(script_path).name}"
            script.write_text(content)
            scripts.append(script)
        checked += 1
    assert_shellcheck_clean(scripts)
    return checked


def test_every_user_data_of_the_stacks_passes_cloud_init_and_shellcheck(tmp_path: Path) -> None:
    assert _validate_user_data(plan("global").recording, tmp_path) == 7
    assert _validate_user_data(plan("dev").recording, tmp_path) == 2


def test_user_data_joins_k3s_with_labels_and_serves_the_pinned_model() -> None:
    template = plan("global").recording.named("mesh-cluster-node-qwen-usw2-lt")
    text = _user_data(template)
    scripts = "\n".join(shell_scripts(text).values())
    for needle in (
        "--server https://10.64.16.10:6443",
        "lmrun.io/node=qwen-usw2",
        "lmrun.io/gpu=L4",
        "lmrun.io/region=us-west-2",
        "--revision a09a35458c702b33eeacc393d103063234e8bc28",
        "--served-model-name qwen",
        "/lmrun/global/k3s/agent-token",
    ):
        assert needle in scripts, needle
    assert "Restart=on-failure" in text


def test_every_aws_gpu_node_routes_the_other_regions_at_the_peerings_mtu_before_joining() -> None:
    """The inter-region peering carries 8,500-byte packets, the instances send 9,001 with Don't Fragment: each
    AWS GPU node routes the regions' pool at 8,500 (tests/test_route_mtu_netns.py shows it working), first
    thing at boot; GCP nodes reach the mesh through the tunnel (its own MTU and MSS clamp) and set nothing."""
    recording = plan("global").recording
    templates = recording.by_type(LAUNCH_TEMPLATE)
    assert len(templates) == 4  # with the GPU pool node (no vLLM, but the same peering routes)
    for template in templates:
        text = _user_data(template)
        unit = written_files(text)["/etc/systemd/system/lmrun-route-mtu.service"]
        assert "ExecStart=/usr/local/lib/lmrun/route-mtu.sh 10.64.0.0/10 8500" in unit, template.name
        runcmd = runcmd_argvs(text)
        assert runcmd[1] == ["systemctl", "start", "lmrun-route-mtu.service"], runcmd
        assert runcmd.index(["/usr/local/lib/lmrun/k3s-agent-bootstrap.sh"]) > 1
    gcp = recording.named("mesh-sites-gcp-usc1-node-l4-gcp-template").inputs["metadata"]["user-data"]
    assert "route-mtu" not in gcp


def test_every_kubernetes_object_passes_kubernetes_validate_strict(tmp_path: Path) -> None:
    objects = [
        r.inputs for r in plan("global").recording.resources if r.type.startswith("kubernetes:") and not r.is_provider
    ]
    assert {o["kind"] for o in objects} == {"Service", "DaemonSet"}  # the namespace is the server's
    path = tmp_path / "objects.yaml"
    path.write_text(yaml.safe_dump_all(objects, sort_keys=False))
    result = assert_kubernetes_valid(path, KUBERNETES_VERSION)
    assert result.stdout.count("passed") == len(objects)


def test_two_replicas_share_one_node_port_and_only_ready_ones_get_traffic() -> None:
    recording = plan("global").recording
    service = recording.named("mesh-cluster-ports-svc-qwen").inputs
    assert service["spec"]["ports"][0]["nodePort"] == 30080
    assert service["spec"]["externalTrafficPolicy"] == "Cluster"
    proxies = [r for r in recording.by_type("kubernetes:apps/v1:DaemonSet") if r.name.endswith("-qwen")]
    assert [p.name for p in proxies] == ["mesh-cluster-ports-proxy-qwen"]  # one for every replica
    pod = proxies[0].inputs["spec"]["template"]
    assert pod["metadata"]["labels"]["app"] == service["spec"]["selector"]["app"]
    assert pod["spec"]["hostNetwork"] is True
    assert pod["spec"]["containers"][0]["readinessProbe"]["httpGet"]["path"] == "/v1/models"
    # The replicas are the VMs that register serves.lmrun.io/qwen at join: both GPU nodes of the service.
    assert Replicas(plan("global").snapshot).by_service()["qwen"] == ["qwen-use2", "qwen-usw2"]
    for node in ("qwen-use2", "qwen-usw2"):
        bootstrap = written_files(_user_data(recording.named(f"mesh-cluster-node-{node}-lt")))
        assert "--node-label serves.lmrun.io/qwen=true" in bootstrap["/usr/local/lib/lmrun/k3s-agent-bootstrap.sh"]


def _objects(report: PlanReport) -> list[RecordedResource]:
    return [r for r in report.recording.resources if r.type.startswith("kubernetes:") and not r.is_provider]


@pytest.mark.parametrize("stack", ["dev", "global"])
def test_pulumi_up_waits_for_no_kubernetes_object(stack: str) -> None:
    """A Service waits for ready endpoints and a DaemonSet for ready pods, i.e. for the model to download and
    load (far beyond the provider's 10-minute await): every object Pulumi creates carries skipAwait, and the
    plan's contract covers every one of them."""
    report = plan(stack)
    objects = _objects(report)
    assert objects
    skip = "pulumi.com/skipAwait"
    waiting = [o.name for o in objects if (o.inputs["metadata"].get("annotations") or {}).get(skip) != "true"]
    assert not waiting, f"these objects make `pulumi up` wait on a workload: {waiting}"
    verdicts = {c.resource: c for c in report.contracts if c.contract == NEVER_WAITS}
    assert set(verdicts) == {o.name for o in objects} and all(c.ok for c in verdicts.values())


@pytest.mark.parametrize("stack", ["dev", "global"])
def test_no_object_tolerates_every_taint(stack: str) -> None:
    report = plan(stack, phoenix={"placement": "node"}) if stack == "global" else plan(stack)
    workloads = [o for o in _objects(report) if "template" in (o.inputs.get("spec") or {})]
    assert workloads
    for resource in workloads:
        pod = resource.inputs["spec"]["template"]["spec"]
        assert all("key" in toleration for toleration in pod.get("tolerations") or []), resource.name
    verdicts = {c.resource: c for c in report.contracts if c.contract == NO_BLANKET_TOLERATION}
    # With lmrun:skypilot, the server's boot manifest adds the GPU pool's device plugin (checked the same way).
    boot = {f"{SERVER_INSTANCE}:{POOL_MANIFEST}:DaemonSet/{DEVICE_PLUGIN_NAMESPACE}/{DEVICE_PLUGIN}"}
    expected = {w.name for w in workloads} | (boot if stack == "global" else set())
    assert set(verdicts) == expected and all(c.ok for c in verdicts.values())


def test_the_contracts_refuse_mains_readiness_proxies() -> None:
    """What the stack declared before (a Deployment per replica tolerating every taint, a Service, neither
    annotated) breaks both contracts; an explicit timeout keeps the first."""

    @dataclasses.dataclass(frozen=True)
    class Fake:
        type: str
        name: str
        inputs: dict[str, Any]
        urn: str = ""
        dependencies: tuple[str, ...] = ()

    deployment = Fake(
        "kubernetes:apps/v1:Deployment",
        "ready-qwen-a",
        {
            "metadata": {"name": "lmrun-svc-qwen-a"},
            "spec": {"template": {"spec": {"tolerations": [{"operator": "Exists"}], "containers": []}}},
        },
    )
    service = Fake("kubernetes:core/v1:Service", "svc-qwen", {"metadata": {"name": "lmrun-svc-qwen"}, "spec": {}})
    timed = Fake("kubernetes:core/v1:Service", "svc-timed", {"metadata": {"annotations": {TIMEOUT_SECONDS: "900"}}})
    ours = (NEVER_WAITS, NO_BLANKET_TOLERATION)
    checked = check_contracts([deployment, service, timed], {})
    results = {(c.resource, c.contract): c.ok for c in checked if c.contract in ours}
    assert results == {
        ("ready-qwen-a", NEVER_WAITS): False,
        ("svc-qwen", NEVER_WAITS): False,
        ("svc-timed", NEVER_WAITS): True,
        ("ready-qwen-a", NO_BLANKET_TOLERATION): False,
    }


def test_every_replica_node_runs_the_proxies_of_its_services_and_no_others() -> None:
    """What each recorded machine registers (its rendered --node-label flags) selects exactly the DaemonSets of
    the services the plan puts on it; a machine claiming an undeclared service gets no proxy."""
    report = plan("global", phoenix={"placement": "node"})
    manifests = [r.inputs for r in _objects(report)]
    registered = registered_labels(report.snapshot)
    expected = {
        "qwen-use2": ["lmrun-svc-qwen"],
        "qwen-usw2": ["lmrun-svc-qwen"],
        "phi-euw1": ["lmrun-svc-phi-euw1"],
        "l4-gcp": ["lmrun-svc-qwen-gcp"],
        "phoenix": ["lmrun-svc-phoenix-grpc", "lmrun-svc-phoenix-ui"],
        "k3s-server": [],
        "l4-pool-use1-0": [],  # a GPU pool node serves no mesh service
    }
    assert {node: matching_services(manifests, labels) for node, labels in registered.items()} == expected
    assert matching_services(manifests, {**registered["qwen-use2"], "serves.lmrun.io/ghost": "true"}) == [
        "lmrun-svc-qwen"
    ]
    assert matching_services(manifests, {"lmrun.io/node": "sky-1", "serves.lmrun.io/ghost": "true"}) == []
    assert matching_services(manifests, {"lmrun.io/node": "sky-1", "serves.lmrun.io/qwen": "true"}) == [
        "lmrun-svc-qwen"
    ]


def test_json_plan_lists_node_ports_and_nodes_with_prices() -> None:
    document = plan("global").to_json()
    assert document["node_ports"] == {
        "qwen": 30080,
        "phi-euw1": 30081,
        "phoenix-ui": 30200,
        "phoenix-grpc": 30201,
        "qwen-gcp": 30082,
    }
    assert document["nodes"]["qwen-use2"] == {
        "region": "us-east-2",
        "instance_type": "g6.xlarge",
        "spot": True,
        "hourly_usd": pytest.approx(0.3783),
        "cloud": "aws",
        "site": None,
        "service": "qwen",
        "pool": None,
        "offerings": "recorded",
    }
    assert document["nodes"]["l4-gcp"]["site"] == "gcp-usc1"
    assert document["nodes"]["phi-euw1"]["spot"] is False
    assert document["nodes"]["phi-euw1"]["instance_type"] == "g5.xlarge"


def _state(report: PlanReport) -> dict[str, Any]:
    return {r.urn: r.inputs for r in report.recording.resources}


def _global_nodes() -> list[dict[str, Any]]:
    return yaml.safe_load((ROOT / "stacks" / "Pulumi.global.yaml").read_text())["config"]["lmrun:nodes"]


def test_adding_a_node_only_adds_resources() -> None:
    nodes = _global_nodes()
    extra = {**nodes[0], "name": "qwen-euw2", "region": "eu-west-2"}
    images = repinned("global", "eu-west-2", "gpu", "ami-0aaaaaaaaaaaaaaa3")  # a new region's GPU image
    before, after = _state(plan("global")), _state(plan("global", nodes=[*nodes, extra], images=images))
    assert set(before) < set(after)
    assert all(before[urn] == after[urn] for urn in before)
    assert all("qwen-euw2" in urn or "eu-west-2" in urn for urn in set(after) - set(before))


def test_adding_a_service_only_adds_resources() -> None:
    services = yaml.safe_load((ROOT / "stacks" / "Pulumi.global.yaml").read_text())["config"].get("lmrun:services", [])
    extra = {"name": "dcgm", "node": "phi-euw1", "appPort": 9400, "nodePort": 30301}
    before, after = _state(plan("global")), _state(plan("global", services=[*services, extra]))
    assert set(before) < set(after)
    assert all(before[urn] == after[urn] for urn in before)
    assert all("dcgm" in urn for urn in set(after) - set(before))


def test_a_new_replica_adds_its_label_and_changes_no_other_node_or_object() -> None:
    nodes = _global_nodes()
    extra = {**nodes[0], "name": "qwen-use2b", "region": "us-east-2"}
    before, after = plan("global").recording, plan("global", nodes=[*nodes, extra]).recording
    added = {r.name for r in after.resources} - {r.name for r in before.resources}
    assert added and all("qwen-use2b" in name for name in added), sorted(added)
    assert all(after.named(r.name).inputs == r.inputs for r in before.resources)
    template = written_files(_user_data(after.named("mesh-cluster-node-qwen-use2b-lt")))
    bootstrap = template["/usr/local/lib/lmrun/k3s-agent-bootstrap.sh"]
    assert "--node-label lmrun.io/node=qwen-use2b" in bootstrap
    assert "--node-label serves.lmrun.io/qwen=true" in bootstrap
    replicas = Replicas(plan("global", nodes=[*nodes, extra]).snapshot).by_service()
    assert replicas["qwen"] == ["qwen-use2", "qwen-use2b", "qwen-usw2"]


def test_removing_a_service_removes_only_its_service_and_daemonset() -> None:
    extra = {"name": "dcgm", "node": "phi-euw1", "appPort": 9400, "nodePort": 30301}
    with_it, without = plan("global", services=[extra]).recording, plan("global").recording
    removed = {r.name for r in with_it.resources} - {r.name for r in without.resources}
    assert removed == {"mesh-cluster-ports-svc-dcgm", "mesh-cluster-ports-proxy-dcgm"}
    assert all(with_it.named(r.name).inputs == r.inputs for r in without.resources)


def test_reordering_nodes_changes_nothing() -> None:
    assert _state(plan("global", nodes=list(reversed(_global_nodes())))) == _state(plan("global"))


def _k3s_installs(report: PlanReport) -> dict[str, list[str]]:
    """Resource name -> the K3s versions its user data installs (AWS instances/launch templates, GCP
    instance templates), from the rendered ``k3s-install.sh <version> server|agent`` lines."""
    found: dict[str, list[str]] = {}
    for resource in report.recording.resources:
        if resource.type in (INSTANCE, LAUNCH_TEMPLATE):
            text = _user_data(resource)
        elif resource.type == "gcp:compute/instanceTemplate:InstanceTemplate":
            text = str((resource.inputs.get("metadata") or {}).get("user-data", ""))
        else:
            continue
        versions = re.findall(r"k3s-install\.sh '?(v[\w.+-]+)'? (?:server|agent)", text)
        if versions:
            found[resource.name] = versions
    return found


def test_a_k3s_version_bump_reaches_the_server_and_every_agent() -> None:
    """Agents may never run a newer K3s than the server: every AWS GPU launch template, the Phoenix node and
    every GCP node template install the stack's version, not the library default."""
    bumped = "v1.34.2+k3s1"
    installs = _k3s_installs(plan("global", k3sVersion=bumped, phoenix={"placement": "node"}))
    assert {"mesh-cluster-k3s-instance", "mesh-cluster-phoenix-instance"} <= set(installs)
    assert sum(name.endswith("-lt") for name in installs) == 4  # global's AWS GPU nodes, the pool's included
    assert sum(name.endswith("-template") for name in installs) == 1  # its GCP GPU node
    stale = {name: versions for name, versions in installs.items() if set(versions) != {bumped}}
    assert not stale, stale
