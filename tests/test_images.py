"""Pinned images: the spec refuses a malformed pin, the plan a missing one (by config path, with how to pin
it), every VM boots its pin, an image upgrade touches only the VMs of that image, and a plan without one is
identical to the previous plan."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from lmrun.cli import main
from lmrun.mock_engine import Recording
from lmrun.plan.images import image_needs
from lmrun.spec import parse_spec
from lmrun.verify.contracts import PINNED_IMAGES, ContractError, ContractResult, check_contracts
from lmrun.verify.offline import plan_stack
from tests.config_cases import Case, assert_refused, run_plan, write_stack
from tests.conftest import ROOT, TEST_AMI, TEST_GCP_IMAGES, pinned_images, plan, repinned, stack_config, stack_images
from tests.test_sites_stack import GCP as SITES_GCP
from tests.test_sites_stack import GCP_NODE, LAB, QWEN

MAIN = "us-east-1"
GCP = {k: v for k, v in SITES_GCP.items() if k != "images"}
MESH = {"mainRegion": MAIN, "regions": ["us-east-2"], "images": pinned_images(MAIN, "us-east-2")}
FAMILY = "projects/ubuntu-os-cloud/global/images/family/ubuntu-2404-lts-amd64"
SYNC_HINT = "run `lmrun images sync --stack bad`: it writes the current"

BAD: dict[str, Case] = {
    "ami-too-short": Case(
        {**MESH, "images": {MAIN: {"server": "ami-123"}}},
        (("lmrun:images.us-east-1.server", "'ami-123' is not an AMI id ('ami-' and 8 or 17 lowercase hex"),),
    ),
    "ami-upper-case": Case(
        {**MESH, "images": {MAIN: {"server": "ami-0123456789ABCDEF0"}}},
        (("lmrun:images.us-east-1.server", "is not an AMI id"),),
    ),
    "ami-of-nine-digits": Case(
        {**MESH, "images": {MAIN: {"server": "ami-012345678"}}},
        (("lmrun:images.us-east-1.server", "is not an AMI id"),),
    ),
    "ssm-reference-instead-of-an-id": Case(
        {**MESH, "images": {MAIN: {"server": "resolve:ssm:/aws/service/ami-amazon-linux-latest/x"}}},
        (("lmrun:images.us-east-1.server", "is not an AMI id"),),
    ),
    "unknown-role": Case(
        {**MESH, "images": {MAIN: {"sever": TEST_AMI}}},
        (("lmrun:images.us-east-1.sever", "unknown key; did you mean server? known keys: gpu, server"),),
    ),
    "unknown-region": Case(
        {**MESH, "images": {"us-east-9": {"server": TEST_AMI}}},
        (  # and, in the same run, what that leaves unpinned (issue 12: every error at once)
            ("lmrun:images.us-east-1.server", "no AMI pinned for the K3s server"),
            ("lmrun:images.us-east-9", "'us-east-9' is not an AWS region this mesh knows"),
        ),
    ),
    "gcp-image-family": Case(
        {**MESH, "sites": [{**GCP, "images": {**TEST_GCP_IMAGES, "gateway": FAMILY}}]},
        (
            (
                "lmrun:sites[0].images.gateway",
                "is an image family: it moves with every release; pin one image of it; the current one: "
                "gcloud compute images describe-from-family ubuntu-2404-lts-amd64 --project ubuntu-os-cloud",
            ),
        ),
    ),
    "gcp-image-short-form": Case(
        {**MESH, "sites": [{**GCP, "images": {**TEST_GCP_IMAGES, "gpu": "deeplearning-platform-release/x-v1"}}]},
        (("lmrun:sites[0].images.gpu", "is not a pinned image: give 'projects/<project>/global/images/<name>'"),),
    ),
    "external-site-with-images": Case(
        {**MESH, "sites": [{**LAB, "images": TEST_GCP_IMAGES}]},
        (("lmrun:sites[0].images", "only applies to GCP sites (kind: gcp)"),),
    ),
    # The plan: every missing pin at once, beside the plan's other problems, each with how to pin it.
    "nothing-pinned": Case(
        {
            **{k: v for k, v in MESH.items() if k != "images"},
            "regions": ["us-east-2", "us-west-2"],
            "sites": [GCP, LAB],
            "nodes": [QWEN, GCP_NODE],
            "paths": [{"from": "us-west-2", "to": "qwen-a"}],
        },
        (
            (
                "lmrun:images.us-east-1.server",
                "no AMI pinned for the K3s server, the Phoenix node and the WireGuard hub in us-east-1; "
                f"{SYNC_HINT} Amazon Linux 2023 (x86_64) id from /aws/service/ami-amazon-linux-latest/",
            ),
            (
                "lmrun:images.us-east-2.gpu",
                f"no AMI pinned for GPU node qwen-a in us-east-2; {SYNC_HINT} Deep Learning Base OSS",
            ),
            ("lmrun:paths[0]", "VPC peering is not transitive"),
            (
                "lmrun:sites[0].images.gateway",
                "no image pinned for the WireGuard gateway of site gcp-a; pin it by hand (`lmrun images sync` "
                "cannot read GCP): gcloud compute images describe-from-family ubuntu-2404-lts-amd64",
            ),
            (
                "lmrun:sites[0].images.gpu",
                "no image pinned for GPU node l4-gcp of site gcp-a; pin it by hand",
            ),
        ),
    ),
    "server-pinned-in-a-spoke-only": Case(
        {**MESH, "images": {"us-east-2": {"server": TEST_AMI}}, "phoenix": {"enabled": False}},
        (("lmrun:images.us-east-1.server", "no AMI pinned for the K3s server in us-east-1"),),
    ),
    "gpu-pinned-for-another-region": Case(
        {**MESH, "images": {MAIN: {"server": TEST_AMI}, "us-west-2": {"gpu": TEST_AMI}}, "nodes": [QWEN]},
        (("lmrun:images.us-east-2.gpu", "no AMI pinned for GPU node qwen-a in us-east-2"),),
    ),
    "site-with-nodes-but-no-gpu-image": Case(
        {**MESH, "sites": [{**GCP, "images": {"gateway": TEST_GCP_IMAGES["gateway"]}}], "nodes": [GCP_NODE]},
        (("lmrun:sites[0].images.gpu", "no image pinned for GPU node l4-gcp of site gcp-a"),),
    ),
}


@pytest.mark.parametrize("case", BAD.values(), ids=BAD.keys())
def test_bad_or_missing_pin_is_refused_with_its_config_path(
    case: Case, project_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert_refused(case, project_dir, tmp_path, capsys)


def test_an_eight_digit_ami_and_unused_pins_are_accepted(
    project_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Older AMI ids have 8 hex digits; a pin nothing boots (a region without nodes) is ignored."""
    images = {MAIN: {"server": "ami-0123abcd", "gpu": "ami-0123abcd"}, "eu-west-1": {"gpu": TEST_AMI}}
    config = {**MESH, "images": images, "sites": [{**GCP, "images": TEST_GCP_IMAGES}]}
    code, out, err = run_plan(project_dir, write_stack(tmp_path / "Pulumi.ok.yaml", config), capsys)
    assert code == 0, err
    assert json.loads(out)["resources"]  # planned
    assert (
        next(r for r in json.loads(out)["resources"] if r["name"] == "mesh-cluster-k3s-instance")["inputs"]["ami"]
        == "ami-0123abcd"
    )


def test_needs_follow_what_the_mesh_runs() -> None:
    spec = parse_spec({"mainRegion": MAIN, "regions": ["us-east-2"], "sites": [GCP, LAB], "nodes": [QWEN]})
    assert [(n.path, n.users, n.pinned) for n in image_needs(spec)] == [
        ("lmrun:images.us-east-1.server", "the K3s server, the Phoenix node and the WireGuard hub in us-east-1", None),
        ("lmrun:images.us-east-2.gpu", "GPU node qwen-a in us-east-2", None),
        ("lmrun:sites[0].images.gateway", "the WireGuard gateway of site gcp-a", None),
    ]  # no GPU image for a site without nodes, nothing for an external site


@pytest.mark.parametrize("stack", ["dev", "global"])
def test_the_images_output_is_exactly_the_pins_the_mesh_boots(stack: str) -> None:
    exported = plan(stack).recording.outputs["images"]
    assert exported["regions"] == stack_images(stack)
    expected_sites = {"gcp-usc1": TEST_GCP_IMAGES} if stack == "global" else {}
    assert exported["sites"] == expected_sites


# ---------------------------------------------------------------------------------------------------------
# Blast radius of an image upgrade, and determinism


def _state(recording: Recording) -> dict[str, Any]:
    return {r.name: (r.type, r.inputs) for r in recording.resources}


def _changed(before: Recording, after: Recording) -> set[str]:
    old, new = _state(before), _state(after)
    assert set(old) == set(new), "an image upgrade adds or removes nothing"
    return {name for name in old if old[name] != new[name]}


def _region_of(recording: Recording, name: str) -> str | None:
    providers = {r.urn: r.inputs.get("region") for r in recording.resources if r.type == "pulumi:providers:aws"}
    return providers.get(recording.named(name).provider_urn)


def test_a_new_gpu_image_in_one_region_rolls_only_that_regions_nodes() -> None:
    before = plan("global").recording
    after = plan("global", images=repinned("global", "us-east-2", "gpu", "ami-0bbbbbbbbbbbbbbb1")).recording

    assert _changed(before, after) == {"mesh-cluster-node-qwen-use2-lt"}
    template = after.named("mesh-cluster-node-qwen-use2-lt")
    assert template.inputs["imageId"] == "ami-0bbbbbbbbbbbbbbb1" and _region_of(after, template.name) == "us-east-2"
    # The template's group follows its latest version with a rolling refresh: that node, and only it, rolls.
    group = after.named("mesh-cluster-node-qwen-use2-asg").inputs
    spec = group["mixedInstancesPolicy"]["launchTemplate"]["launchTemplateSpecification"]
    assert spec["launchTemplateId"] == f"{template.name}-id"
    assert group["instanceRefresh"]["strategy"] == "Rolling"
    assert not any(_region_of(after, name) == MAIN for name in _changed(before, after))


def test_a_new_server_image_replaces_the_main_regions_vms_never_a_volume() -> None:
    before = plan("global").recording
    after = plan("global", images=repinned("global", MAIN, "server", "ami-0bbbbbbbbbbbbbbb2")).recording

    changed = _changed(before, after)
    assert changed == {"mesh-cluster-k3s-instance", "mesh-cluster-phoenix-instance", "mesh-sites-hub-instance"}
    assert all(after.named(name).inputs["ami"] == "ami-0bbbbbbbbbbbbbbb2" for name in changed)
    for volume in ("mesh-cluster-k3s-state", "mesh-cluster-phoenix-data"):
        assert volume not in changed and after.named(volume).protect and after.named(volume).retain_on_delete


def test_a_new_gcp_gpu_image_rolls_only_that_sites_nodes() -> None:
    sites = json.loads(stack_config("global").config["lmrun:sites"])
    sites[0]["images"] = {**sites[0]["images"], "gpu": TEST_GCP_IMAGES["gpu"].replace("v20260320", "v20261101")}
    changed = _changed(plan("global").recording, plan("global", sites=sites).recording)
    assert changed == {"mesh-sites-gcp-usc1-node-l4-gcp-template"}


def test_a_plan_without_an_image_change_is_identical_to_the_previous_plan() -> None:
    """Two fresh runs (no cache), as two `pulumi preview`s on different days: the same resources with the same
    inputs, the same outputs, verdicts and cost, to the byte (registration order aside: the engine registers
    resources concurrently, and lists follow it). With `.../latest` lookups the second could differ."""

    def canonical(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: canonical(item) for key, item in value.items()}
        if isinstance(value, list) and all(isinstance(item, dict) for item in value):
            return sorted((canonical(item) for item in value), key=lambda item: json.dumps(item, default=str))
        return value

    def document() -> str:
        planned = plan_stack(ROOT, stack_config("global"), preview=True).to_json()
        return json.dumps(canonical(planned), default=str, sort_keys=True)

    assert document() == document()


# ---------------------------------------------------------------------------------------------------------
# The contract: no image that is not pinned in config


@pytest.mark.parametrize("stack", ["dev", "global"])
def test_every_vm_and_template_is_covered_by_the_contract_and_keeps_it(stack: str) -> None:
    report = plan(stack)
    booting = {
        r.name
        for r in report.recording.resources
        if r.type
        in {
            "aws:ec2/instance:Instance",
            "aws:ec2/launchTemplate:LaunchTemplate",
            "gcp:compute/instance:Instance",
            "gcp:compute/instanceTemplate:InstanceTemplate",
        }
    }
    pinned = [c for c in report.contracts if c.contract == PINNED_IMAGES]
    assert {c.resource for c in pinned} == booting and booting
    assert all(c.ok for c in pinned)
    assert report.to_json()["contracts"] == [c.to_json() for c in report.contracts]


def test_an_image_written_into_a_component_breaks_the_contract(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A program that boots an id of its own (here: the real program plus one VM with a literal AMI) fails
    the plan with exit 1, naming the resource and the rule."""
    (tmp_path / "Pulumi.yaml").write_text((ROOT / "Pulumi.yaml").read_text())
    (tmp_path / "stacks").mkdir()
    (tmp_path / "stacks" / "Pulumi.dev.yaml").write_text((ROOT / "stacks" / "Pulumi.dev.yaml").read_text())
    (tmp_path / "__main__.py").write_text(
        textwrap.dedent(
            f"""
            import runpy

            import pulumi
            import pulumi_aws as aws

            runpy.run_path({str(ROOT / "__main__.py")!r}, run_name="__main__")
            provider = aws.Provider("rogue", region="us-east-1")
            aws.ec2.Instance(
                "rogue-vm", ami="ami-0abcdef1234567890", instance_type="t3.micro",
                opts=pulumi.ResourceOptions(provider=provider),
            )
            """
        )
    )
    with pytest.raises(ContractError) as raised:
        plan_stack(tmp_path, stack_config("dev"), preview=False)
    assert raised.value.lines() == [
        "error: contract broken: rogue-vm: image-pinned-in-config: 'ami-0abcdef1234567890' is not an image "
        "pinned in lmrun:images or lmrun:sites[].images"
    ]

    code = main(["plan", "--stack", "dev", "--project-dir", str(tmp_path)])
    assert code == 1
    assert "rogue-vm: image-pinned-in-config" in capsys.readouterr().err


def test_the_contract_reads_every_kind_of_vm() -> None:
    class Fake:
        def __init__(self, type_: str, name: str, inputs: dict[str, Any]) -> None:
            self.type, self.name, self.inputs = type_, name, inputs

    outputs = {"images": {"regions": {MAIN: {"server": TEST_AMI}}, "sites": {"s": {"gpu": TEST_GCP_IMAGES["gpu"]}}}}
    resources = [
        Fake("aws:ec2/instance:Instance", "a", {"ami": TEST_AMI}),
        Fake("aws:ec2/launchTemplate:LaunchTemplate", "b", {}),  # no image at all: not pinned either
        Fake("gcp:compute/instance:Instance", "c", {"bootDisk": {"initializeParams": {"image": FAMILY}}}),
        Fake(
            "gcp:compute/instanceTemplate:InstanceTemplate",
            "d",
            {"disks": [{"boot": True, "sourceImage": TEST_GCP_IMAGES["gpu"]}, {"boot": False}]},
        ),
        Fake("aws:ec2/vpc:Vpc", "e", {}),
    ]
    limit = "an image pinned in lmrun:images or lmrun:sites[].images"
    assert [c for c in check_contracts(resources, outputs) if c.contract == PINNED_IMAGES] == [
        ContractResult("a", PINNED_IMAGES, TEST_AMI, limit, True),
        ContractResult("b", PINNED_IMAGES, None, limit, False),
        ContractResult("c", PINNED_IMAGES, FAMILY, limit, False),
        ContractResult("d", PINNED_IMAGES, TEST_GCP_IMAGES["gpu"], limit, True),
    ]
