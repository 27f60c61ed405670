"""Policy rules on hand-built props: every rule fires on a bad case and stays quiet on a good one; config
overrides; the CrossGuard adapters; no violation on the example stacks."""

from __future__ import annotations

import base64
import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from lmrun.aws.instances import catalog
from lmrun.policy import aws_taggable
from lmrun.policy.rules import (
    RULES,
    UNKNOWN,
    PolicyConfigError,
    Resource,
    build_policies,
    build_policy,
    enforcement_level,
    evaluate,
    rule_config,
)
from lmrun.policy.stack_settings import STACK_DECIDED
from lmrun.render.cloudinit import WriteFile, cloud_config
from lmrun.render.kubernetes import default_deny_manifest, to_json_list

ROOT = Path(__file__).resolve().parent.parent

SG = "aws:ec2/securityGroup:SecurityGroup"
SG_RULE = "aws:ec2/securityGroupRule:SecurityGroupRule"
INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
FIREWALL = "gcp:compute/firewall:Firewall"
INSTANCE = "aws:ec2/instance:Instance"
LT = "aws:ec2/launchTemplate:LaunchTemplate"
ASG = "aws:autoscaling/group:Group"
VOLUME = "aws:ebs/volume:Volume"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
IAM_POLICY = "aws:iam/policy:Policy"
GCP_INSTANCE = "gcp:compute/instance:Instance"
TAGS = {"lmrun:mesh": "dev", "lmrun:managed-by": "pulumi"}
WG_KEY = base64.b64encode(bytes(range(32))).decode()  # 44 characters, like `wg genkey`


def _policy(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _root(encrypted: Any = True) -> dict[str, Any]:
    return {"volumeSize": 30, "encrypted": encrypted}


DAEMONSET = "kubernetes:apps/v1:DaemonSet"
PINNED = "registry.k8s.io/pause:3.10@sha256:" + "ee6521f290b2168b6e0935a181d4cff9be1ac3f505666ef0e3c98fae8199917a"
SIZED = {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"cpu": "10m", "memory": "16Mi"}}


def _workload(image: Any = PINNED, resources: Any = SIZED, field: str = "containers") -> dict[str, Any]:
    container = {"name": "c", "image": image, "resources": resources}
    pod = {"containers": [{"name": "main", "image": PINNED, "resources": SIZED}]}
    pod[field] = [container, *pod.get(field, [])] if field == "containers" else [container]
    return {"metadata": {"name": "w", "namespace": "lmrun"}, "spec": {"template": {"spec": pod}}}


def _boot_user_data(*manifests: dict[str, Any]) -> str:
    """A cloud-config that writes the manifests as one JSON v1/List (as the K3s server applies its own)."""
    listed = to_json_list(list(manifests))
    return cloud_config(write_files=[WriteFile("/usr/local/lib/lmrun/boot.json", listed)], runcmd=[])


# (rule, resource type, props, fires?)
RESOURCE_CASES: list[tuple[str, str, dict[str, Any], bool]] = [
    # no-public-ingress
    (
        "no-public-ingress",
        INGRESS,
        {"ipProtocol": "tcp", "fromPort": 443, "toPort": 443, "cidrIpv4": "0.0.0.0/0"},
        True,
    ),
    ("no-public-ingress", INGRESS, {"ipProtocol": "-1", "cidrIpv6": "::/0"}, True),
    (
        "no-public-ingress",
        INGRESS,
        {"ipProtocol": "udp", "fromPort": 51820, "toPort": 51820, "cidrIpv4": "0.0.0.0/0"},
        False,
    ),
    (
        "no-public-ingress",
        INGRESS,
        {"ipProtocol": "udp", "fromPort": 51820, "toPort": 51821, "cidrIpv4": "0.0.0.0/0"},
        True,
    ),
    ("no-public-ingress", INGRESS, {"ipProtocol": "-1", "cidrIpv4": "10.64.0.0/16"}, False),
    (
        "no-public-ingress",
        SG,
        {"ingress": [{"protocol": "tcp", "fromPort": 80, "toPort": 80, "cidrBlocks": ["0.0.0.0/0"]}]},
        True,
    ),
    (
        "no-public-ingress",
        SG,
        {"ingress": [{"protocol": "17", "fromPort": 51820, "toPort": 51820, "cidrBlocks": ["0.0.0.0/0"]}]},
        False,
    ),
    ("no-public-ingress", SG, {"ingress": []}, False),
    (
        "no-public-ingress",
        SG_RULE,
        {"type": "ingress", "protocol": "tcp", "fromPort": 6443, "toPort": 6443, "cidrBlocks": ["0.0.0.0/0"]},
        True,
    ),
    (
        "no-public-ingress",
        SG_RULE,
        {"type": "egress", "protocol": "-1", "fromPort": 0, "toPort": 0, "cidrBlocks": ["0.0.0.0/0"]},
        False,
    ),
    (
        "no-public-ingress",
        FIREWALL,
        {"allows": [{"protocol": "tcp", "ports": ["443"]}], "sourceRanges": ["0.0.0.0/0"]},
        True,
    ),
    ("no-public-ingress", FIREWALL, {"allows": [{"protocol": "tcp", "ports": ["443"]}]}, True),  # no source = anywhere
    (
        "no-public-ingress",
        FIREWALL,
        {"allows": [{"protocol": "udp", "ports": ["51820"]}], "sourceRanges": ["0.0.0.0/0"]},
        False,
    ),
    (
        "no-public-ingress",
        FIREWALL,
        {"allows": [{"protocol": "all"}], "sourceRanges": ["0.0.0.0/0"], "direction": "EGRESS"},
        False,
    ),
    # no-ssh
    ("no-ssh", INGRESS, {"ipProtocol": "tcp", "fromPort": 22, "toPort": 22, "cidrIpv4": "10.64.0.0/16"}, True),
    ("no-ssh", INGRESS, {"ipProtocol": "tcp", "fromPort": 20, "toPort": 25, "cidrIpv4": "203.0.113.7/32"}, True),
    ("no-ssh", INGRESS, {"ipProtocol": "-1", "cidrIpv4": "198.51.100.0/24"}, True),
    ("no-ssh", INGRESS, {"ipProtocol": "-1", "cidrIpv4": "10.64.0.0/16"}, False),  # the mesh's own fabric rule
    # A site keeps its own network (any private range): the hub's all-traffic rule for it is the mesh's own.
    ("no-ssh", INGRESS, {"ipProtocol": "-1", "cidrIpv4": "192.168.10.0/24"}, False),
    ("no-ssh", INGRESS, {"ipProtocol": "-1", "cidrIpv4": "100.64.5.0/24"}, False),
    ("no-ssh", FIREWALL, {"allows": [{"protocol": "all"}], "sourceRanges": ["172.20.0.0/16"]}, False),
    ("no-ssh", INGRESS, {"ipProtocol": "-1", "cidrIpv4": "100.128.0.0/24"}, True),  # just past 100.64.0.0/10
    ("no-ssh", INGRESS, {"ipProtocol": "tcp", "fromPort": 22, "toPort": 22, "cidrIpv4": "192.168.10.0/24"}, True),
    ("no-ssh", INGRESS, {"ipProtocol": "tcp", "fromPort": 443, "toPort": 443, "cidrIpv4": "203.0.113.7/32"}, False),
    ("no-ssh", INGRESS, {"ipProtocol": "udp", "fromPort": 22, "toPort": 22, "cidrIpv4": "10.64.0.0/16"}, False),
    ("no-ssh", SG, {"ingress": [{"protocol": "tcp", "fromPort": 22, "toPort": 22, "securityGroups": ["sg-1"]}]}, True),
    ("no-ssh", FIREWALL, {"allows": [{"protocol": "tcp", "ports": ["22"]}], "sourceRanges": ["10.128.0.0/24"]}, True),
    (
        "no-ssh",
        FIREWALL,
        {"allows": [{"protocol": "tcp", "ports": ["30000-32767"]}], "sourceRanges": ["10.64.0.0/10"]},
        False,
    ),
    # imdsv2-required
    ("imdsv2-required", INSTANCE, {"metadataOptions": {"httpTokens": "optional"}}, True),
    ("imdsv2-required", INSTANCE, {}, True),
    ("imdsv2-required", INSTANCE, {"metadataOptions": {"httpTokens": "required", "httpEndpoint": "enabled"}}, False),
    ("imdsv2-required", LT, {"metadataOptions": {"httpEndpoint": "enabled"}}, True),
    ("imdsv2-required", LT, {"metadataOptions": {"httpTokens": "required"}}, False),
    ("imdsv2-required", LT, {"metadataOptions": {"httpEndpoint": "disabled"}}, False),
    ("imdsv2-required", LT, {"metadataOptions": UNKNOWN}, False),
    # encrypted-volumes
    ("encrypted-volumes", VOLUME, {"size": 20, "encrypted": False}, True),
    ("encrypted-volumes", VOLUME, {"size": 20}, True),
    ("encrypted-volumes", VOLUME, {"size": 20, "encrypted": True}, False),
    ("encrypted-volumes", INSTANCE, {"rootBlockDevice": _root(False)}, True),
    ("encrypted-volumes", INSTANCE, {}, True),
    (
        "encrypted-volumes",
        INSTANCE,
        {"rootBlockDevice": _root(), "ebsBlockDevices": [{"deviceName": "/dev/sdf"}]},
        True,
    ),
    ("encrypted-volumes", INSTANCE, {"rootBlockDevice": _root(), "ebsBlockDevices": [{"encrypted": True}]}, False),
    (
        "encrypted-volumes",
        LT,
        {"blockDeviceMappings": [{"deviceName": "/dev/sda1", "ebs": {"encrypted": "false"}}]},
        True,
    ),
    ("encrypted-volumes", LT, {}, True),
    (
        "encrypted-volumes",
        LT,
        {"blockDeviceMappings": [{"deviceName": "/dev/sda1", "ebs": {"encrypted": "true"}}]},
        False,
    ),
    # iam-no-wildcards
    (
        "iam-no-wildcards",
        ROLE_POLICY,
        {"policy": _policy({"Effect": "Allow", "Action": "*", "Resource": "arn:aws:s3:::b"})},
        True,
    ),
    (
        "iam-no-wildcards",
        IAM_POLICY,
        {"policy": _policy({"Effect": "Allow", "Action": ["s3:PutObject"], "Resource": "*"})},
        True,
    ),
    (
        "iam-no-wildcards",
        IAM_POLICY,
        {"policy": _policy({"Effect": "Allow", "Action": "s3:*", "Resource": ["*"]})},
        True,
    ),
    (
        "iam-no-wildcards",
        IAM_POLICY,
        {"policy": _policy({"Effect": "Allow", "NotAction": "iam:*", "Resource": "arn:x"})},
        True,
    ),
    ("iam-no-wildcards", IAM_POLICY, {"policy": "{not json"}, True),
    (
        "iam-no-wildcards",
        ROLE_POLICY,
        {"policy": _policy({"Effect": "Allow", "Action": ["ec2:Describe*", "ssm:GetParameter"], "Resource": "*"})},
        False,
    ),
    (
        "iam-no-wildcards",
        ROLE_POLICY,
        {
            "policy": _policy(
                {"Effect": "Allow", "Action": "ssm:PutParameter", "Resource": "arn:aws:ssm:us-east-1:1:parameter/x"}
            )
        },
        False,
    ),
    ("iam-no-wildcards", ROLE_POLICY, {"policy": _policy({"Effect": "Deny", "Action": "*", "Resource": "*"})}, False),
    ("iam-no-wildcards", ROLE_POLICY, {"policy": UNKNOWN}, False),
    # no-secrets-in-user-data
    ("no-secrets-in-user-data", INSTANCE, {"userData": "#!/bin/sh\nexport K3S_TOKEN=abc123secret\n"}, True),
    ("no-secrets-in-user-data", INSTANCE, {"userData": "curl -sfL get.k3s.io | sh -s - agent --token s3cr3t\n"}, True),
    ("no-secrets-in-user-data", LT, {"userData": _b64(f"[Interface]\nPrivateKey = {WG_KEY}\n")}, True),
    (
        "no-secrets-in-user-data",
        LT,
        {"userData": base64.b64encode(gzip.compress(b"PHOENIX_SECRET=hunter2")).decode()},
        True,
    ),
    ("no-secrets-in-user-data", GCP_INSTANCE, {"metadataStartupScript": "PHOENIX_ADMIN_SECRET='x9'\n"}, True),
    ("no-secrets-in-user-data", GCP_INSTANCE, {"metadata": {"startup-script": "k3s agent --token=abc"}}, True),
    (
        "no-secrets-in-user-data",
        INSTANCE,
        {"userData": "ssm-get.sh us-east-1 /lmrun/k3s/token /t\nk3s agent --token-file /t\n"},
        False,
    ),
    (
        "no-secrets-in-user-data",
        INSTANCE,
        {"userData": 'K3S_TOKEN="$(cat /etc/rancher/k3s/token)"\nPHOENIX_SECRET=$SECRET\n'},
        False,
    ),
    (
        "no-secrets-in-user-data",
        LT,
        {"userData": _b64("[Interface]\nPostUp = wg set wg0 private-key /etc/wg/key\n")},
        False,
    ),
    # required-tags
    ("required-tags", VOLUME, {"size": 1, "tags": {"lmrun:mesh": "dev"}}, True),
    ("required-tags", "aws:ec2/vpc:Vpc", {"cidrBlock": "10.64.0.0/16"}, True),
    ("required-tags", ASG, {"tags": [{"key": "lmrun:mesh", "value": "dev", "propagateAtLaunch": False}]}, True),
    (
        "required-tags",
        ASG,
        {"tags": [{"key": k, "value": v, "propagateAtLaunch": False} for k, v in TAGS.items()]},
        False,
    ),
    ("required-tags", VOLUME, {"size": 1, "tags": TAGS}, False),
    ("required-tags", "aws:ec2/route:Route", {"destinationCidrBlock": "10.65.0.0/16"}, False),  # not taggable
    ("required-tags", "kubernetes:core/v1:Service", {}, False),
    # gpu-instance-allow-list
    ("gpu-instance-allow-list", LT, {"instanceType": "p3.2xlarge"}, True),
    ("gpu-instance-allow-list", INSTANCE, {"instanceType": "g4ad.xlarge"}, True),
    (
        "gpu-instance-allow-list",
        ASG,
        {
            "mixedInstancesPolicy": {
                "launchTemplate": {"overrides": [{"instanceType": "g6.xlarge"}, {"instanceType": "p2.xlarge"}]}
            }
        },
        True,
    ),
    ("gpu-instance-allow-list", LT, {"instanceType": "g6.xlarge"}, False),
    ("gpu-instance-allow-list", INSTANCE, {"instanceType": "t3.medium"}, False),
    # spot-max-price
    (
        "spot-max-price",
        LT,
        {
            "instanceType": "g5.xlarge",
            "instanceMarketOptions": {"marketType": "spot", "spotOptions": {"maxPrice": "2.50"}},
        },
        True,
    ),
    (
        "spot-max-price",
        ASG,
        {
            "mixedInstancesPolicy": {
                "instancesDistribution": {"spotMaxPrice": "1.0"},
                "launchTemplate": {"overrides": [{"instanceType": "g6.xlarge"}]},
            }
        },
        True,
    ),
    (
        "spot-max-price",
        "aws:ec2/spotInstanceRequest:SpotInstanceRequest",
        {"instanceType": "g4dn.xlarge", "spotPrice": "0.9"},
        True,
    ),
    (
        "spot-max-price",
        LT,
        {
            "instanceType": "g5.xlarge",
            "instanceMarketOptions": {"marketType": "spot", "spotOptions": {"maxPrice": "0.80"}},
        },
        False,
    ),
    (
        "spot-max-price",
        LT,
        {"instanceType": "g5.xlarge", "instanceMarketOptions": {"marketType": "spot", "spotOptions": {"maxPrice": ""}}},
        False,
    ),
    (
        "spot-max-price",
        LT,
        {"instanceType": "m7i.large", "instanceMarketOptions": {"spotOptions": {"maxPrice": "9"}}},
        False,
    ),
    # kubernetes-images-by-digest: Pulumi's workloads and those a VM applies at boot
    ("kubernetes-images-by-digest", DAEMONSET, _workload("registry.k8s.io/pause:3.10"), True),
    ("kubernetes-images-by-digest", DAEMONSET, _workload(PINNED.replace("ee65", "EE65")), True),  # hex is lowercase
    ("kubernetes-images-by-digest", DAEMONSET, _workload(PINNED[:-1]), True),  # 63 hex digits
    ("kubernetes-images-by-digest", DAEMONSET, _workload("busybox:1", field="initContainers"), True),
    (
        "kubernetes-images-by-digest",
        INSTANCE,
        {"userData": _boot_user_data({"kind": "DaemonSet", **_workload("pause:3.10")})},
        True,
    ),
    ("kubernetes-images-by-digest", DAEMONSET, _workload(), False),
    ("kubernetes-images-by-digest", DAEMONSET, _workload(UNKNOWN), False),  # a preview cannot tell
    (
        "kubernetes-images-by-digest",
        INSTANCE,
        {"userData": _boot_user_data({"kind": "DaemonSet", **_workload()})},
        False,
    ),
    # kubernetes-container-resources
    ("kubernetes-container-resources", DAEMONSET, _workload(resources={"requests": SIZED["requests"]}), True),
    (
        "kubernetes-container-resources",
        DAEMONSET,
        _workload(resources={**SIZED, "limits": {"memory": "16Mi"}}, field="initContainers"),
        True,
    ),
    ("kubernetes-container-resources", DAEMONSET, _workload(resources=None), True),
    ("kubernetes-container-resources", DAEMONSET, _workload(), False),
    ("kubernetes-container-resources", "kubernetes:core/v1:Service", {"spec": {"type": "NodePort"}}, False),
]


@pytest.mark.parametrize(("rule_name", "resource_type", "props", "fires"), RESOURCE_CASES)
def test_resource_rule(rule_name: str, resource_type: str, props: dict[str, Any], fires: bool) -> None:
    rule = RULES[rule_name]
    messages = rule.check(resource_type, props, "res")
    assert bool(messages) is fires, messages
    for message in messages:
        assert isinstance(message, str) and message


def test_secret_messages_never_echo_the_secret() -> None:
    messages = RULES["no-secrets-in-user-data"].check(INSTANCE, {"userData": f"PrivateKey = {WG_KEY}\nK3S_TOKEN=zz9"})
    assert len(messages) == 2
    assert not any(WG_KEY in m or "zz9" in m for m in messages)


# ---- stack rules ---------------------------------------------------------------------------------------------


def _bucket(name: str = "logs") -> Resource:
    return Resource("aws:s3/bucket:Bucket", {"tags": TAGS}, urn=f"urn:b:{name}", name=name)


def _child(resource_type: str, props: dict[str, Any], bucket: str = "logs") -> Resource:
    return Resource(
        resource_type,
        {"bucket": UNKNOWN, **props},
        urn=f"urn:{resource_type}:{bucket}",
        name=f"{bucket}-x",
        property_dependencies={"bucket": (f"urn:b:{bucket}",)},
    )


PAB = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
ALL_BLOCKED = {k: True for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")}
VERSIONING = "aws:s3/bucketVersioning:BucketVersioning"
SSE = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
SSE_RULES = {"rules": [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "aws:kms"}}]}


def _service(name: str, *node_ports: int | tuple[int, str]) -> Resource:
    ports = [
        {"nodePort": float(p[0]), "protocol": p[1]}
        if isinstance(p, tuple)
        else {"nodePort": float(p), "protocol": "TCP"}
        for p in node_ports
    ]
    return Resource(
        "kubernetes:core/v1:Service",
        {"metadata": {"namespace": "lmrun", "name": name}, "spec": {"type": "NodePort", "ports": ports}},
        urn=f"urn:svc:{name}",
        name=name,
    )


def _vpc(name: str, cidr: str) -> Resource:
    return Resource("aws:ec2/vpc:Vpc", {"cidrBlock": cidr}, urn=f"urn:vpc:{name}", name=name)


def _peering(spoke: str, hub: str = "hub") -> Resource:
    return Resource(
        "aws:ec2/vpcPeeringConnection:VpcPeeringConnection",
        {"vpcId": UNKNOWN, "peerVpcId": UNKNOWN},
        urn=f"urn:peer:{spoke}",
        name=f"peer-{spoke}",
        property_dependencies={"vpcId": (f"urn:vpc:{spoke}",), "peerVpcId": (f"urn:vpc:{hub}",)},
    )


def _volume(*, stateful: bool, protect: bool, retain: bool | None) -> Resource:
    tags = {**TAGS, "lmrun:stateful": "true"} if stateful else TAGS
    return Resource(VOLUME, {"encrypted": True, "tags": tags}, urn="urn:vol", protect=protect, retain_on_delete=retain)


BUCKET_POLICY = "aws:s3/bucketPolicy:BucketPolicy"
LOGS_ARNS = ("arn:aws:s3:::logs", "arn:aws:s3:::logs/*")
DEFAULT_SG = "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup"
OPEN = {"protocol": "-1", "fromPort": 0, "toPort": 0, "self": True}


def _policy(*resources: str) -> dict[str, Any]:
    deny = {"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": list(resources)}
    return {"Statement": [{**deny, "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]}


def _in_vpc(resource_type: str, vpc: str, **props: Any) -> Resource:
    """A resource of ``vpc`` as a preview records it: the id unknown, the reference in its dependencies."""
    return Resource(
        resource_type,
        {"vpcId": UNKNOWN, **props},
        urn=f"urn:{resource_type}:{vpc}",
        name=f"{vpc}-x",
        property_dependencies={"vpcId": (f"urn:vpc:{vpc}",)},
    )


def _flow_log(vpc: str, traffic: str = "ALL") -> Resource:
    return _in_vpc("aws:ec2/flowLog:FlowLog", vpc, trafficType=traffic, logDestinationType="s3")


def _subnetwork(*, logged: bool) -> Resource:
    props: dict[str, Any] = {"ipCidrRange": "10.128.0.0/20"}
    if logged:
        props["logConfig"] = {"aggregationInterval": "INTERVAL_10_MIN", "flowSampling": 1.0}
    return Resource("gcp:compute/subnetwork:Subnetwork", props, urn="urn:subnet", name="site")


def _netpol(manifest: dict[str, Any]) -> Resource:
    return Resource("kubernetes:networking.k8s.io/v1:NetworkPolicy", manifest, urn="urn:np", name="np")


def _opened(key: str, value: Any) -> dict[str, Any]:
    """The default-deny policy with one spec field changed."""
    manifest = default_deny_manifest()
    return {**manifest, "spec": {**manifest["spec"], key: value}}


def _namespace() -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "lmrun"}}


def _vm(user_data: Any) -> Resource:
    return Resource(INSTANCE, {"userData": user_data}, urn="urn:vm:server", name="server")


STACK_CASES: list[tuple[str, list[Resource], bool]] = [
    ("s3-public-access-blocked", [_bucket()], True),
    ("s3-public-access-blocked", [_bucket(), _child(PAB, {**ALL_BLOCKED, "restrictPublicBuckets": False})], True),
    ("s3-public-access-blocked", [_bucket(), _child(PAB, ALL_BLOCKED, bucket="other")], True),
    ("s3-public-access-blocked", [_bucket(), _child(PAB, ALL_BLOCKED)], False),
    ("s3-public-access-blocked", [], False),
    ("s3-versioned", [_bucket()], True),
    ("s3-versioned", [_bucket(), _child(VERSIONING, {"versioningConfiguration": {"status": "Suspended"}})], True),
    ("s3-versioned", [_bucket(), _child(VERSIONING, {"versioningConfiguration": {"status": "Enabled"}})], False),
    (
        "s3-versioned",  # matched by the bucket's name when the child's input is known
        [
            Resource("aws:s3/bucketV2:BucketV2", {"bucket": "my-logs"}, urn="urn:b2", name="b2"),
            Resource(
                "aws:s3/bucketVersioningV2:BucketVersioningV2",
                {"bucket": "my-logs", "versioningConfiguration": {"status": "Enabled"}},
            ),
        ],
        False,
    ),
    ("s3-encrypted", [_bucket()], True),
    ("s3-encrypted", [_bucket(), _child(SSE, {"rules": [{}]})], True),
    ("s3-encrypted", [_bucket(), _child(SSE, SSE_RULES)], False),
    ("node-ports-in-range", [_service("a", 8080)], True),
    ("node-ports-in-range", [_service("a", 32768)], True),
    ("node-ports-in-range", [_service("a", 30000, 32767)], False),
    ("node-ports-unique", [_service("a", 30100), _service("b", 30100)], True),
    ("node-ports-unique", [_service("a", 30100, 30100)], True),
    ("node-ports-unique", [_service("a", (30100, "TCP"), (30100, "UDP")), _service("b", 30101)], False),
    ("cidrs-disjoint", [_vpc("a", "10.64.0.0/16"), _vpc("b", "10.64.128.0/17")], True),
    (
        "cidrs-disjoint",
        [
            _vpc("a", "10.64.0.0/16"),
            Resource("gcp:compute/subnetwork:Subnetwork", {"ipCidrRange": "10.64.10.0/24"}, name="site"),
        ],
        True,
    ),
    ("cidrs-disjoint", [_vpc("a", "10.64.0.0/16"), _vpc("b", "not-a-cidr")], True),
    (
        "cidrs-disjoint",
        [
            _vpc("a", "10.64.0.0/16"),
            _vpc("b", "10.65.0.0/16"),
            Resource("gcp:compute/subnetwork:Subnetwork", {"ipCidrRange": "10.128.0.0/20"}),
        ],
        False,
    ),
    ("peerings-within-limit", [_vpc("hub", "10.64.0.0/16")] + [_peering(f"s{i}") for i in range(51)], True),
    ("peerings-within-limit", [_vpc("hub", "10.64.0.0/16")] + [_peering(f"s{i}") for i in range(50)], False),
    ("stateful-volumes-protected", [_volume(stateful=True, protect=False, retain=True)], True),
    ("stateful-volumes-protected", [_volume(stateful=True, protect=True, retain=False)], True),
    ("stateful-volumes-protected", [_volume(stateful=True, protect=True, retain=True)], False),
    ("stateful-volumes-protected", [_volume(stateful=True, protect=True, retain=None)], False),  # CrossGuard: unknown
    ("stateful-volumes-protected", [_volume(stateful=False, protect=False, retain=False)], False),
    ("s3-tls-only", [_bucket()], True),
    ("s3-tls-only", [_bucket(), _child(BUCKET_POLICY, {"policy": json.dumps(_policy("arn:aws:s3:::logs/*"))})], True),
    ("s3-tls-only", [_bucket(), _child(BUCKET_POLICY, {"policy": json.dumps(_policy(*LOGS_ARNS))})], False),
    ("s3-tls-only", [_bucket(), _child(BUCKET_POLICY, {"policy": UNKNOWN})], False),  # a preview: not known yet
    ("default-security-group-closed", [_vpc("a", "10.64.0.0/16")], True),
    ("default-security-group-closed", [_vpc("a", "10.64.0.0/16"), _in_vpc(DEFAULT_SG, "a", ingress=[OPEN])], True),
    ("default-security-group-closed", [_vpc("a", "10.64.0.0/16"), _in_vpc(DEFAULT_SG, "a", egress=[OPEN])], True),
    (
        "default-security-group-closed",
        [_vpc("a", "10.64.0.0/16"), _in_vpc(DEFAULT_SG, "a", ingress=[], egress=[])],
        False,
    ),
    ("flow-logs-cover-every-network", [_vpc("a", "10.64.0.0/16"), _vpc("b", "10.65.0.0/16")], False),
    ("flow-logs-cover-every-network", [_vpc("a", "10.64.0.0/16"), _vpc("b", "10.65.0.0/16"), _flow_log("a")], True),
    ("flow-logs-cover-every-network", [_vpc("a", "10.64.0.0/16"), _flow_log("a", "REJECT")], True),
    ("flow-logs-cover-every-network", [_vpc("a", "10.64.0.0/16"), _flow_log("a"), _subnetwork(logged=False)], True),
    ("flow-logs-cover-every-network", [_vpc("a", "10.64.0.0/16"), _flow_log("a"), _subnetwork(logged=True)], False),
    ("namespaces-deny-by-default", [_service("a", 30100)], True),
    ("namespaces-deny-by-default", [_service("a", 30100), _netpol(default_deny_manifest())], False),
    ("namespaces-deny-by-default", [_service("a", 30100), _netpol(default_deny_manifest("other"))], True),
    ("namespaces-deny-by-default", [_service("a", 30100), _netpol(_opened("ingress", [{}]))], True),
    ("namespaces-deny-by-default", [_service("a", 30100), _netpol(_opened("policyTypes", ["Ingress"]))], True),
    (
        "namespaces-deny-by-default",
        [_service("a", 30100), _netpol(_opened("podSelector", {"matchLabels": {"a": "b"}}))],
        True,
    ),
    (
        "namespaces-deny-by-default",  # the server creates the namespace and its policy at boot
        [_service("a", 30100), _vm(_boot_user_data(_namespace(), default_deny_manifest()))],
        False,
    ),
    ("namespaces-deny-by-default", [_vm(_boot_user_data(_namespace()))], True),
    ("namespaces-deny-by-default", [_service("a", 30100), _vm(UNKNOWN)], False),  # a preview cannot tell
]


@pytest.mark.parametrize(("rule_name", "resources", "fires"), STACK_CASES)
def test_stack_rule(rule_name: str, resources: list[Resource], fires: bool) -> None:
    findings = RULES[rule_name].check(resources)
    assert bool(findings) is fires, findings
    urns = {r.urn or r.name or r.type for r in resources}
    assert all(f.resource in urns and f.message for f in findings)


def _regional_vpc(name: str, region: str, cidr: str) -> Resource:
    return Resource("aws:ec2/vpc:Vpc", {"cidrBlock": cidr, "tags": {"lmrun:region": region}}, urn=f"urn:vpc:{name}")


def _elastic(*regions: str, gpu: str = "L4", recorded: dict[str, list[str]] | None = None) -> dict[str, Any]:
    """The ``elasticServices`` setting of a stack whose controller runs in us-east-1."""
    asked = [t.name for t in catalog.instance_types_for("L4", 1)]  # the record decides for every 1x L4 type
    offerings = {"instanceTypes": asked, "regions": recorded or {}}
    service = {"name": "svc", "gpu": gpu, "gpuCount": 1, "spotRegions": list(regions), "offerings": offerings}
    return {"elasticServices": {"controllerRegion": "us-east-1", "services": [service]}}


_MESH = [
    _regional_vpc("hub", "us-east-1", "10.64.0.0/16"),
    _regional_vpc("use2", "us-east-2", "10.65.0.0/16"),
    _regional_vpc("usw2", "us-west-2", "10.66.0.0/16"),
    _peering("use2"),
]
CONFIGURED_STACK_CASES: list[tuple[str, list[Resource], dict[str, Any], bool]] = [
    ("elastic-spot-regions", _MESH, _elastic("us-east-2", "us-east-1"), False),
    ("elastic-spot-regions", _MESH, {}, False),  # no elastic service
    ("elastic-spot-regions", _MESH, _elastic("ap-east-1"), True),  # no mesh VPC there
    ("elastic-spot-regions", _MESH, _elastic("us-west-2"), True),  # a VPC, but not peered with the controller's
    ("elastic-spot-regions", _MESH, _elastic("us-east-2", gpu="B300"), True),  # a GPU the catalog does not know
    ("elastic-spot-regions", _MESH, _elastic("us-east-2", recorded={"us-east-2": []}), True),  # recorded: not offered
    ("elastic-spot-regions", _MESH, _elastic("us-east-2", recorded={"us-east-2": ["g6.xlarge"]}), False),
]


@pytest.mark.parametrize(("rule_name", "resources", "config", "fires"), CONFIGURED_STACK_CASES)
def test_configured_stack_rule(rule_name: str, resources: list[Resource], config: dict[str, Any], fires: bool) -> None:
    findings = RULES[rule_name].check(resources, config)
    assert bool(findings) is fires, findings
    assert all(f.message for f in findings)


def test_elastic_rule_says_which_service_region_and_why() -> None:
    [finding] = RULES["elastic-spot-regions"].check(_MESH, _elastic("us-west-2", "ap-east-1"))[1:] or [None]
    assert finding is not None
    assert finding.resource == "ap-east-1"
    assert finding.message.startswith("elastic service svc: spot region ap-east-1: no mesh VPC there")
    [peering] = RULES["elastic-spot-regions"].check(_MESH, _elastic("us-west-2"))
    assert "no peering with the controller's region us-east-1" in peering.message
    [offer] = RULES["elastic-spot-regions"].check(_MESH, _elastic("us-east-2", recorded={"us-east-2": []}))
    assert offer.message.endswith("1x L4 is not offered in us-east-2")


def test_every_rule_has_a_firing_and_a_quiet_case() -> None:
    covered: dict[str, set[bool]] = {name: set() for name in RULES}
    for name, *_, fires in RESOURCE_CASES:
        covered[name].add(fires)
    for name, _, fires in STACK_CASES:
        covered[name].add(fires)
    for name, _, _, fires in CONFIGURED_STACK_CASES:
        covered[name].add(fires)
    assert len(RULES) >= 12
    assert {name for name, seen in covered.items() if seen != {True, False}} == set()


def test_every_rule_documents_itself() -> None:
    for rule in RULES.values():
        assert rule.description and rule.remediation, rule.name
        assert rule.level in ("advisory", "mandatory"), rule.name
        assert set(rule.schema) == set(rule.defaults)
        # A value the stack decides has no schema default: the engine would fill it in and hide the stack's.
        assert all(rule.schema[k]["default"] == v for k, v in rule.defaults.items() if k not in STACK_DECIDED)
        assert all("default" not in rule.schema[k] for k in rule.defaults if k in STACK_DECIDED)


# ---- config --------------------------------------------------------------------------------------------------


def test_enforcement_level_overrides() -> None:
    ssh = RULES["no-ssh"]
    assert enforcement_level(ssh) == "mandatory"
    assert enforcement_level(ssh, {"all": "advisory"}) == "advisory"
    assert enforcement_level(ssh, {"all": "advisory", "no-ssh": "mandatory"}) == "mandatory"
    assert enforcement_level(ssh, {"no-ssh": {"enforcementLevel": "disabled"}}) == "disabled"
    assert enforcement_level(ssh, {"no-ssh": {"allowSsh": True}}) == "mandatory"
    assert enforcement_level(ssh, {"no-ssh": "remediate"}) == "mandatory"
    with pytest.raises(PolicyConfigError, match=r"no-ssh\.enforcementLevel"):
        enforcement_level(ssh, {"no-ssh": "blocking"})


def test_evaluate_applies_levels_and_properties() -> None:
    sg = Resource(
        INGRESS,
        {"ipProtocol": "tcp", "fromPort": 22, "toPort": 22, "cidrIpv4": "10.64.0.0/16", "tags": TAGS},
        urn="urn:r",
    )
    default = evaluate([sg])
    assert [(v.policy, v.level, v.resource) for v in default] == [("no-ssh", "mandatory", "urn:r")]
    assert default[0].to_json().keys() == {"policy", "level", "resource", "message"}
    assert [v.level for v in evaluate([sg], {"no-ssh": "advisory"})] == ["advisory"]
    assert evaluate([sg], {"no-ssh": "disabled"}) == []
    assert evaluate([sg], {"no-ssh": {"allowSsh": True}}) == []
    assert evaluate([sg], {"all": "disabled"}) == []


def test_rule_properties_override_defaults() -> None:
    gpu = RULES["gpu-instance-allow-list"]
    assert "g6" in rule_config(gpu)["allowedFamilies"]
    assert gpu.check(LT, {"instanceType": "g6.xlarge"}, config={"allowedFamilies": ["g5"]})
    assert not gpu.check(LT, {"instanceType": "p3.2xlarge"}, config={"allowedFamilies": ["p3"]})
    wg = RULES["no-public-ingress"]
    rule = {"ipProtocol": "udp", "fromPort": 51821, "toPort": 51821, "cidrIpv4": "0.0.0.0/0"}
    assert wg.check(INGRESS, rule) and not wg.check(INGRESS, rule, config={"wireguardPort": 51821})
    tags = RULES["required-tags"]
    assert not tags.check(VOLUME, {"tags": {}}, config={"requiredTags": []})
    peerings = RULES["peerings-within-limit"]
    three = [_vpc("hub", "10.64.0.0/16"), *(_peering(f"s{i}") for i in range(3))]
    assert peerings.check(three, {"maxPeerings": 2}) and not peerings.check(three)
    spot = RULES["spot-max-price"]
    lt = {"instanceType": "g5.xlarge", "instanceMarketOptions": {"spotOptions": {"maxPrice": "1.10"}}}
    assert spot.check(LT, lt) and not spot.check(LT, lt, config={"onDemandPrices": {"g5.xlarge": 1.2}})


def test_unknown_config_is_refused_with_its_path() -> None:
    with pytest.raises(PolicyConfigError, match=r"no-ssh\.allowSSH"):
        evaluate([], {"no-ssh": {"allowSSH": True}})
    with pytest.raises(PolicyConfigError, match="no-such-rule"):
        evaluate([], {"no-such-rule": "advisory"})
    assert issubclass(PolicyConfigError, ValueError)


# ---- CrossGuard adapters -------------------------------------------------------------------------------------


def test_adapters_build_real_policies_without_a_server() -> None:
    import pulumi_policy

    policies = build_policies()
    assert [p.name for p in policies] == list(RULES)
    for policy in policies:
        rule = RULES[policy.name]
        expected = (
            pulumi_policy.ResourceValidationPolicy if rule.kind == "resource" else pulumi_policy.StackValidationPolicy
        )
        assert isinstance(policy, expected)
        assert policy.enforcement_level == pulumi_policy.EnforcementLevel(rule.level)
        assert policy.remediation_steps == rule.remediation
        if rule.schema:
            assert set(policy.config_schema.properties) == set(rule.schema)


def _opts(protect: bool = False) -> Any:
    import pulumi_policy

    return pulumi_policy.PolicyResourceOptions(protect, [], None, [], pulumi_policy.PolicyCustomTimeouts(0, 0, 0), [])


def test_resource_adapter_reports_through_crossguard_and_survives_unknowns() -> None:
    import pulumi_policy
    from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, unknown_checking_proxy

    policy = build_policy(RULES["no-ssh"])
    props = unknown_checking_proxy(
        {
            "ipProtocol": "tcp",
            "fromPort": 22.0,
            "toPort": 22.0,
            "cidrIpv4": "10.64.0.0/16",
            "securityGroupId": UNKNOWN_STRING_VALUE,
        }
    )
    reported: list[tuple[str, str | None]] = []
    args = pulumi_policy.ResourceValidationArgs(INGRESS, props, "urn:x", "x", _opts(), None, {})
    policy.validate(args, lambda message, urn: reported.append((message, urn)))
    assert len(reported) == 1 and "port 22" in reported[0][0]

    reported.clear()
    allowed = pulumi_policy.ResourceValidationArgs(INGRESS, props, "urn:x", "x", _opts(), None, {"allowSsh": True})
    policy.validate(allowed, lambda message, urn: reported.append((message, urn)))
    assert reported == []


def test_stack_adapter_uses_protect_and_property_dependencies() -> None:
    import pulumi_policy
    from pulumi_policy.proxy import unknown_checking_proxy

    volume = pulumi_policy.PolicyResource(
        VOLUME,
        unknown_checking_proxy({"encrypted": True, "tags": {**TAGS, "lmrun:stateful": "true"}}),
        "urn:vol",
        "vol",
        _opts(protect=False),
        None,
        None,
        [],
        {},
    )
    reported: list[tuple[str, str | None]] = []
    args = pulumi_policy.StackValidationArgs([volume], {})
    build_policy(RULES["stateful-volumes-protected"]).validate(args, lambda m, u: reported.append((m, u)))
    assert reported == [("stateful volume lacks protect", "urn:vol")]

    hub = pulumi_policy.PolicyResource(
        "aws:ec2/vpc:Vpc", unknown_checking_proxy({}), "urn:vpc:hub", "hub", _opts(), None, None, [], {}
    )
    peerings = [
        pulumi_policy.PolicyResource(
            "aws:ec2/vpcPeeringConnection:VpcPeeringConnection",
            unknown_checking_proxy({"vpcId": f"vpc-{i}", "peerVpcId": "04da6b54-80e4-46f7-96ec-b56ff0331ba9"}),
            f"urn:peer:{i}",
            f"peer-{i}",
            _opts(),
            None,
            None,
            [hub],
            {"peerVpcId": [hub]},
        )
        for i in range(3)
    ]
    reported.clear()
    limited = pulumi_policy.StackValidationArgs([hub, *peerings], {"maxPeerings": 2})
    build_policy(RULES["peerings-within-limit"]).validate(limited, lambda m, u: reported.append((m, u)))
    assert reported == [("VPC urn:vpc:hub has 3 peering connections (limit 2)", "urn:vpc:hub")]


def test_pack_files() -> None:
    import yaml

    pack = yaml.safe_load((ROOT / "policy" / "PulumiPolicy.yaml").read_text())
    assert pack["runtime"]["name"] == "python" and pack["description"]
    main = (ROOT / "policy" / "__main__.py").read_text()
    assert "PolicyPack(" in main and "build_policies()" in main
    requirements = (ROOT / "policy" / "requirements.txt").read_text()
    assert "pulumi-policy==" in requirements


def test_taggable_types_match_the_installed_provider() -> None:
    version, scanned = aws_taggable.installed_provider()
    assert version == aws_taggable.GENERATED_FROM, "regenerate: python -m lmrun.policy.aws_taggable"
    assert scanned == aws_taggable.AWS_TAGGABLE_TYPES


# ---- the example stacks --------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("stack", ["dev", "global"])
def test_example_stacks_raise_no_mandatory_violation(stack: str) -> None:
    from lmrun.spec.stackfile import load_stack_config
    from lmrun.verify.offline import plan_stack

    report = plan_stack(ROOT, load_stack_config(ROOT, stack=stack, config_file=None), preview=False)
    resources = [Resource.from_recorded(r) for r in report.recording.resources]
    assert {r.type for r in resources} >= {"aws:ec2/vpc:Vpc", "aws:ebs/volume:Volume", "aws:ec2/instance:Instance"}
    mandatory = [v for v in evaluate(resources) if v.level == "mandatory"]
    assert mandatory == []
