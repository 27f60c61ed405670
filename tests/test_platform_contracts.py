"""Platform contracts checked at plan time (issue 10: defect 1 and "Platform contracts, checked at plan time").

EC2 refuses user data over 16 KB raw; the Phoenix node's (``global``) and the K3s server's (``global`` with
``phoenix.placement: server``) rendered texts are over it, so every EC2 user data now goes gzip-compressed,
and cloud-init's own code (the system's ``cloudinit`` package) proves it reads the compressed payload back.
Each contract has a hand-built passing and failing resource; the example stacks keep every contract.
"""

from __future__ import annotations

import base64
import subprocess
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from lmrun.cli.plan_view import contract_table
from lmrun.render.cloudinit import gzip_base64_user_data, gzip_user_data, user_data_text
from lmrun.verify import contracts, tokens
from lmrun.verify.contracts import CANNOT_TELL, ContractResult
from lmrun.verify.resources import UNKNOWN_TEXT, Resource, Secret
from lmrun.verify.user_data import EC2_USER_DATA_TYPES, user_data_payload
from lmrun.verify.user_data import user_data_text as recorded_text
from tests.conftest import plan
from tests.validators import require_tool

STACKS = [("dev", {}), ("global", {}), ("global", {"phoenix": {"placement": "server"}})]
STACK_IDS = ["dev", "global", "global-phoenix-on-server"]

Contract = Callable[[Iterable[Any], Mapping[str, Any]], list[ContractResult]]

# --- gzip user data ------------------------------------------------------------------------------------------


def test_gzip_user_data_is_deterministic_and_round_trips() -> None:
    text = "#cloud-config\nruncmd:\n- [echo, é]\n" * 200
    assert gzip_user_data(text) == gzip_user_data(text), "same text, same bytes: previews stay stable"
    assert gzip_user_data(text)[4:8] == b"\0\0\0\0", "no timestamp in the gzip header (mtime=0)"
    assert user_data_text(gzip_user_data(text)) == text
    assert user_data_text(text.encode()) == text, "plain text passes through"
    assert base64.b64decode(gzip_base64_user_data(text)) == gzip_user_data(text)


@pytest.mark.parametrize(
    "payload",
    [b"\x1f\x8b" + b"not gzip at all", gzip_user_data("x")[:12], b"\xff\xfe latin-1 \xe9"],
    ids=["bad-gzip", "truncated-gzip", "not-utf8"],
)
def test_unreadable_user_data_in_a_state_file_reads_as_unknown(payload: bytes) -> None:
    """A foreign state file may carry anything: the reader says "cannot tell" instead of crashing the check."""
    vm = Resource(tokens.INSTANCE, {"userDataBase64": base64.b64encode(payload).decode()}, name="vm")
    assert user_data_payload(vm) == payload
    assert recorded_text(vm) is None


def _cloud_init_python() -> str:
    """The interpreter cloud-init itself runs with (its entry point's shebang): its own code decodes."""
    entry = Path(require_tool("cloud-init")).read_text().splitlines()[0]
    assert entry.startswith("#!"), entry
    return entry[2:].strip().split()[0]


CLOUD_INIT_DECODE = """
import sys
from cloudinit import user_data, util
payload = sys.stdin.buffer.read()
assert util.decomp_gzip(payload, quiet=False, decode=False) == user_data.convert_string(payload).get_payload(
    decode=True
)
sys.stdout.buffer.write(user_data.convert_string(payload).get_payload(decode=True))
"""


def test_cloud_init_decodes_the_recorded_ec2_user_data() -> None:
    """The Phoenix node's and the GPU launch templates' payloads, as EC2 hands them over, through cloud-init's
    own ``convert_string`` (what its user-data processor runs first) and ``decomp_gzip``: the rendered text."""
    python = _cloud_init_python()
    recording = plan("global").recording
    checked = 0
    for resource in recording.resources:
        if resource.type not in EC2_USER_DATA_TYPES:
            continue
        payload = user_data_payload(resource)
        assert payload is not None and payload[:2] == b"\x1f\x8b", f"{resource.name}: not gzip"
        decoded = subprocess.run(
            [python, "-c", CLOUD_INIT_DECODE], input=payload, capture_output=True, check=True, timeout=60
        ).stdout.decode()
        assert decoded == recorded_text(resource)
        assert decoded.startswith("#cloud-config\n")
        checked += 1
    assert checked == 7  # with the GPU pool node's launch template


def test_instances_send_user_data_base64_and_are_replaced_when_it_changes() -> None:
    recording = plan("global").recording
    instances = recording.by_type(tokens.INSTANCE)
    assert instances
    for instance in instances:
        assert "userData" not in instance.inputs, f"{instance.name}: plain user data (cannot carry gzip)"
        assert instance.inputs["userDataBase64"]
        assert instance.inputs["userDataReplaceOnChange"] is True


@pytest.mark.parametrize(("stack", "overrides"), STACKS, ids=STACK_IDS)
def test_every_contract_holds_on_the_example_stacks(stack: str, overrides: dict[str, Any]) -> None:
    report = plan(stack, **overrides)
    assert [c for c in report.contracts if not c.ok] == []
    covered = {c.contract for c in report.contracts}
    assert {contracts.EC2_USER_DATA, contracts.SSM_PARAMETER_SIZE, contracts.AWS_TAGS} <= covered
    ec2 = [c for c in report.contracts if c.contract == contracts.EC2_USER_DATA]
    recording = report.recording
    assert len(ec2) == len(recording.by_type(tokens.INSTANCE)) + len(recording.by_type(tokens.LAUNCH_TEMPLATE))
    assert max(int(c.value) for c in ec2) < contracts.EC2_USER_DATA_LIMIT


@pytest.mark.parametrize(
    ("overrides", "name"),
    [({}, "mesh-cluster-phoenix-instance"), ({"phoenix": {"placement": "server"}}, "mesh-cluster-k3s-instance")],
    ids=["phoenix-node", "k3s-server-with-phoenix"],
)
def test_the_largest_user_data_is_over_the_limit_as_text_and_under_it_compressed(
    overrides: dict[str, Any], name: str
) -> None:
    """The instances of defect 1: their text alone would break the launch."""
    resource = plan("global", **overrides).recording.named(name)
    text = recorded_text(resource)
    payload = user_data_payload(resource)
    assert text is not None and payload is not None
    assert len(text.encode()) > contracts.EC2_USER_DATA_LIMIT
    assert len(payload) < contracts.EC2_USER_DATA_LIMIT


def test_gcp_metadata_and_secret_manager_are_covered_in_global() -> None:
    report = plan("global")
    covered = {c.contract for c in report.contracts}
    assert {contracts.GCP_METADATA_VALUE, contracts.GCP_METADATA_TOTAL, contracts.SECRET_PAYLOAD} <= covered
    assert contracts.GCP_LABELS in covered


def test_the_plan_table_shows_the_largest_user_data_and_its_limit() -> None:
    console = Console(width=200, record=True)
    console.print(contract_table(plan("global")))
    out = console.export_text()
    assert "mesh-cluster-k3s-instance" in out  # the largest: the server's boot (K3s, its upkeep timers)
    assert "16384" in out
    assert "ec2-user-data-16kb" in out


# --- each contract: a passing and a failing resource, built by hand ----------------------------------------

BIG = "x" * 20_000


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


CASES: list[tuple[str, Contract, Resource, bool]] = [
    # EC2 user data: raw bytes as sent (a launch template is base64; an instance's base64 is gzip).
    (
        "lt-gzip",
        contracts.ec2_user_data_fits,
        Resource(tokens.LAUNCH_TEMPLATE, {"userData": _b64(gzip_user_data(BIG))}, name="lt"),
        True,
    ),
    (
        "lt-plain",
        contracts.ec2_user_data_fits,
        Resource(tokens.LAUNCH_TEMPLATE, {"userData": _b64(BIG.encode())}, name="lt"),
        False,
    ),
    (
        "instance-b64",
        contracts.ec2_user_data_fits,
        Resource(tokens.INSTANCE, {"userDataBase64": gzip_base64_user_data(BIG)}, name="vm"),
        True,
    ),
    ("instance-text", contracts.ec2_user_data_fits, Resource(tokens.INSTANCE, {"userData": BIG}, name="vm"), False),
    # GCP metadata: 256 KB a value, 512 KB in all.
    (
        "gcp-meta-ok",
        contracts.gcp_metadata_fits,
        Resource(tokens.GCP_INSTANCE_TEMPLATE, {"metadata": {"user-data": BIG}}, name="t"),
        True,
    ),
    (
        "gcp-meta-value",
        contracts.gcp_metadata_fits,
        Resource(tokens.GCP_INSTANCE, {"metadata": {"user-data": "y" * (256 * 1024 + 1)}}, name="i"),
        False,
    ),
    (
        "gcp-meta-total",
        contracts.gcp_metadata_fits,
        Resource(tokens.GCP_INSTANCE, {"metadata": {f"k{i}": "y" * 200_000 for i in range(3)}}, name="i"),
        False,
    ),
    # SSM: Standard 4 KB (the default), Advanced and Intelligent-Tiering 8 KB.
    (
        "ssm-standard-ok",
        contracts.ssm_parameters_fit_their_tier,
        Resource(tokens.SSM_PARAMETER, {"value": "v" * 4096}, name="p"),
        True,
    ),
    (
        "ssm-standard-over",
        contracts.ssm_parameters_fit_their_tier,
        Resource(tokens.SSM_PARAMETER, {"value": "v" * 4097}, name="p"),
        False,
    ),
    (
        "ssm-intelligent-ok",
        contracts.ssm_parameters_fit_their_tier,
        Resource(tokens.SSM_PARAMETER, {"tier": "Intelligent-Tiering", "value": Secret("v" * 8000)}, name="p"),
        True,
    ),
    (
        "ssm-advanced-over",
        contracts.ssm_parameters_fit_their_tier,
        Resource(tokens.SSM_PARAMETER, {"tier": "Advanced", "insecureValue": "v" * 8193}, name="p"),
        False,
    ),
    # Secret payloads: 64 KiB.
    (
        "secret-ok",
        contracts.secret_payloads_fit,
        Resource(tokens.GCP_SECRET_VERSION, {"secretData": Secret("s" * 65_536)}, name="s"),
        True,
    ),
    (
        "secret-over",
        contracts.secret_payloads_fit,
        Resource(tokens.GCP_SECRET_VERSION, {"secretData": _b64(b"s" * 65_537), "isSecretDataBase64": True}, name="s"),
        False,
    ),
    (
        "aws-secret-over",
        contracts.secret_payloads_fit,
        Resource(tokens.AWS_SECRET_VERSION, {"secretString": "s" * 65_537}, name="s"),
        False,
    ),
    # AWS tags.
    (
        "tags-ok",
        contracts.aws_tags_are_valid,
        Resource(
            tokens.VPC,
            {"tags": {"Name": "eu-west-1 to us-east-1", "lmrun:role": "gpu-node", "a/b+c=d@e": "x_y.z-1"}},
            name="v",
        ),
        True,
    ),
    (
        "tags-newline",
        contracts.aws_tags_are_valid,
        Resource(tokens.VPC, {"tags": {"Name": "two\nlines"}}, name="v"),
        False,
    ),
    (
        "tags-aws-prefix",
        contracts.aws_tags_are_valid,
        Resource(tokens.VPC, {"tags": {"aws:owner": "me"}}, name="v"),
        False,
    ),
    ("tags-long-key", contracts.aws_tags_are_valid, Resource(tokens.VPC, {"tags": {"k" * 129: "v"}}, name="v"), False),
    (
        "tags-long-value",
        contracts.aws_tags_are_valid,
        Resource(tokens.VPC, {"tags": {"k": "v" * 257}}, name="v"),
        False,
    ),
    (
        "tags-asg-list",
        contracts.aws_tags_are_valid,
        Resource(
            tokens.AUTOSCALING_GROUP, {"tags": [{"key": "Name", "value": "a<b", "propagateAtLaunch": True}]}, name="g"
        ),
        False,
    ),
    (
        "tags-lt-spec",
        contracts.aws_tags_are_valid,
        Resource(
            tokens.LAUNCH_TEMPLATE,
            {"tagSpecifications": [{"resourceType": "instance", "tags": {"Name": "a\tb"}}]},
            name="lt",
        ),
        False,
    ),
    (
        "tags-too-many",
        contracts.aws_tags_are_valid,
        Resource(tokens.VPC, {"tags": {f"k{i}": "v" for i in range(51)}}, name="v"),
        False,
    ),
    # GCP labels.
    (
        "labels-ok",
        contracts.gcp_labels_are_valid,
        Resource(tokens.GCP_INSTANCE_TEMPLATE, {"labels": {"lmrun-role": "gpu_node-1", "empty": ""}}, name="t"),
        True,
    ),
    (
        "labels-upper",
        contracts.gcp_labels_are_valid,
        Resource(tokens.GCP_INSTANCE_TEMPLATE, {"labels": {"role": "GPU"}}, name="t"),
        False,
    ),
    (
        "labels-key-digit",
        contracts.gcp_labels_are_valid,
        Resource(tokens.GCP_INSTANCE, {"labels": {"1role": "x"}}, name="i"),
        False,
    ),
    (
        "labels-long",
        contracts.gcp_labels_are_valid,
        Resource(tokens.GCP_INSTANCE, {"labels": {"k": "v" * 64}}, name="i"),
        False,
    ),
    (
        "labels-disk",
        contracts.gcp_labels_are_valid,
        Resource(tokens.GCP_INSTANCE_TEMPLATE, {"disks": [{"boot": True, "labels": {"a": "b:c"}}]}, name="t"),
        False,
    ),
    (
        "labels-too-many",
        contracts.gcp_labels_are_valid,
        Resource(tokens.GCP_INSTANCE, {"labels": {f"k{i}": "v" for i in range(65)}}, name="i"),
        False,
    ),
    # A role's inline policies, white space not counted (10,240 characters).
    (
        "role-policy-fits",
        contracts.iam_role_policies_fit,
        Resource(
            tokens.IAM_ROLE_POLICY, {"role": "r", "policy": '{"a": "' + "x" * 10_000 + '"}' + " " * 500}, name="p"
        ),
        True,
    ),
    (
        "role-policy-too-big",
        contracts.iam_role_policies_fit,
        Resource(tokens.IAM_ROLE_POLICY, {"role": "r", "policy": '{"a": "' + "x" * 10_240 + '"}'}, name="p"),
        False,
    ),
    # Names, where the stack sets one.
    ("role-ok", contracts.names_are_valid, Resource(tokens.IAM_ROLE, {"name": "r" * 64}, name="r"), True),
    ("role-long", contracts.names_are_valid, Resource(tokens.IAM_ROLE, {"name": "r" * 65}, name="r"), False),
    (
        "profile-long",
        contracts.names_are_valid,
        Resource(tokens.IAM_INSTANCE_PROFILE, {"name": "p" * 129}, name="p"),
        False,
    ),
    (
        "sg-ok",
        contracts.names_are_valid,
        Resource(tokens.SECURITY_GROUP, {"name": "mesh nodes (k3s)"}, name="sg"),
        True,
    ),
    ("sg-long", contracts.names_are_valid, Resource(tokens.SECURITY_GROUP, {"name": "s" * 256}, name="sg"), False),
    ("sg-prefix", contracts.names_are_valid, Resource(tokens.SECURITY_GROUP, {"name": "sg-nodes"}, name="sg"), False),
    (
        "bucket-ok",
        contracts.names_are_valid,
        Resource("aws:s3/bucket:Bucket", {"bucket": "lmrun-phoenix.backups-1"}, name="b"),
        True,
    ),
    ("bucket-upper", contracts.names_are_valid, Resource("aws:s3/bucket:Bucket", {"bucket": "Lmrun"}, name="b"), False),
    ("bucket-short", contracts.names_are_valid, Resource("aws:s3/bucket:Bucket", {"bucket": "ab"}, name="b"), False),
    (
        "lt-name-long",
        contracts.names_are_valid,
        Resource(tokens.LAUNCH_TEMPLATE, {"name": "l" * 129}, name="lt"),
        False,
    ),
    (
        "gcp-name-ok",
        contracts.names_are_valid,
        Resource(tokens.GCP_FIREWALL, {"name": "mesh-site-allow-wg"}, name="f"),
        True,
    ),
    ("gcp-name-long", contracts.names_are_valid, Resource(tokens.GCP_FIREWALL, {"name": "f" * 64}, name="f"), False),
    ("gcp-name-upper", contracts.names_are_valid, Resource(tokens.GCP_NETWORK, {"name": "Mesh"}, name="n"), False),
    ("gcp-name-dash-end", contracts.names_are_valid, Resource(tokens.GCP_NETWORK, {"name": "mesh-"}, name="n"), False),
    (
        "sa-ok",
        contracts.names_are_valid,
        Resource(tokens.GCP_SERVICE_ACCOUNT, {"accountId": "site-gw"}, name="a"),
        True,
    ),
    ("sa-short", contracts.names_are_valid, Resource(tokens.GCP_SERVICE_ACCOUNT, {"accountId": "gw"}, name="a"), False),
    (
        "sa-long",
        contracts.names_are_valid,
        Resource(tokens.GCP_SERVICE_ACCOUNT, {"accountId": "a" * 31}, name="a"),
        False,
    ),
    (
        "template-prefix-long",
        contracts.names_are_valid,
        Resource(tokens.GCP_INSTANCE_TEMPLATE, {"namePrefix": "t" * 55}, name="t"),
        False,
    ),
]


@pytest.mark.parametrize(("case", "contract", "resource", "ok"), CASES, ids=[c[0] for c in CASES])
def test_each_contract_passes_and_fails_by_hand(case: str, contract: Contract, resource: Resource, ok: bool) -> None:
    results = contract([resource], {})
    assert results, f"{case}: the contract did not cover the resource"
    assert all(r.resource == resource.name for r in results)
    assert all(r.ok for r in results) is ok, results


def test_every_contract_of_the_issue_is_registered() -> None:
    for contract in (
        contracts.ec2_user_data_fits,
        contracts.gcp_metadata_fits,
        contracts.ssm_parameters_fit_their_tier,
        contracts.secret_payloads_fit,
        contracts.iam_role_policies_fit,
        contracts.aws_tags_are_valid,
        contracts.gcp_labels_are_valid,
        contracts.names_are_valid,
    ):
        assert contract in contracts.CONTRACTS
        tested = {c[1] for c in CASES if c[3]} & {c[1] for c in CASES if not c[3]}
        assert contract in tested, f"{contract.__name__} lacks a passing or a failing case"


# --- cannot tell ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("contract", "resource"),
    [
        (
            contracts.ssm_parameters_fit_their_tier,
            Resource(tokens.SSM_PARAMETER, {"value": Secret(UNKNOWN_TEXT)}, name="p"),
        ),
        (contracts.ssm_parameters_fit_their_tier, Resource(tokens.SSM_PARAMETER, {"value": UNKNOWN_TEXT}, name="p")),
        (
            contracts.secret_payloads_fit,
            Resource(tokens.GCP_SECRET_VERSION, {"secretData": Secret(UNKNOWN_TEXT)}, name="s"),
        ),
        (contracts.ec2_user_data_fits, Resource(tokens.INSTANCE, {"userDataBase64": UNKNOWN_TEXT}, name="vm")),
        (
            contracts.gcp_metadata_fits,
            Resource(tokens.GCP_INSTANCE, {"metadata": {"user-data": UNKNOWN_TEXT}}, name="i"),
        ),
    ],
    ids=["ssm-secret", "ssm-unknown", "secret-version", "instance-user-data", "gcp-metadata"],
)
def test_a_value_the_source_does_not_hold_is_cannot_tell_not_a_failure(contract: Contract, resource: Resource) -> None:
    results = contract([resource], {})
    assert results and all(r.ok for r in results)
    assert CANNOT_TELL in [r.value for r in results]


def test_a_broken_contract_names_the_resource_and_the_limit() -> None:
    broken = contracts.ec2_user_data_fits([Resource(tokens.INSTANCE, {"userData": BIG}, name="big-vm")], {})
    (line,) = contracts.ContractError("dev", broken).lines()
    assert "big-vm" in line and "ec2-user-data-16kb" in line and "16384" in line and "20000" in line


def test_a_roles_inline_policies_count_together() -> None:
    """The quota is per role: two inline policies of 6,000 characters each break it, on two roles they do not."""
    policy = '{"a": "' + "x" * 6_000 + '"}'
    same = [Resource(tokens.IAM_ROLE_POLICY, {"role": "r", "policy": policy}, name=n) for n in ("p1", "p2")]
    [row] = contracts.iam_role_policies_fit(same, {})
    assert (row.value, row.ok) == (2 * len(policy.replace(" ", "")), False)  # white space not counted
    apart = [Resource(tokens.IAM_ROLE_POLICY, {"role": r, "policy": policy}, name=r) for r in ("r1", "r2")]
    assert all(row.ok for row in contracts.iam_role_policies_fit(apart, {}))
