"""Who can read what, computed from the recorded resources (lmrun.verify.access) and held to the access matrix
(lmrun.domain.access): `global`'s table, Session Manager still working for every machine, one over-broad (or
missing) statement injected into the recorded resources failing the check with its name, the README's table, and
`lmrun check --from-preview/--from-state` giving the plan's table."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lmrun.aws.access_model import AwsAccess
from lmrun.aws.managed_policies import SESSION_MANAGER_ACTIONS, SSM_READ_ONLY_ACCESS
from lmrun.cli import main
from lmrun.domain.access import ACCESS_MATRIX, GPU_NODE
from lmrun.spec.stackfile import load_stack_config
from lmrun.verify.access import AccessMismatchError, AccessTable, access_table, markdown
from lmrun.verify.checks import PlanReport, run_checks
from lmrun.verify.resources import UNKNOWN_TEXT as UNKNOWN
from lmrun.verify.resources import Resource, Snapshot
from tests.conftest import ROOT, plan
from tests.pulumi_documents import preview_document, state_document

NODE = "gpu-node:qwen-use2"
NODE_POLICY = "mesh-cluster-node-qwen-use2-identity-parameters"
NODE_ROLE = "mesh-cluster-node-qwen-use2-identity-role"
CORE = "AmazonSSMManagedInstanceCore v2 (attached by mesh-cluster-node-qwen-use2-identity-session-manager)"
ROLE_POLICY_ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"


def _global() -> PlanReport:
    return plan("global", preview=True)


def _reads(table: AccessTable, principal: str) -> set[str]:
    return {row.name for row in table.rows if principal in row.allowed("read")}


def _rows(table: AccessTable) -> dict[str, dict[str, Any]]:
    return {row.name: row.to_json() for row in table.rows}


# --- global, from the computed table --------------------------------------------------------------------------


def test_global_machines_read_exactly_what_they_need() -> None:
    table = _global().access
    assert not table.disagreements
    rows = _rows(table)
    assert all("?" not in row["readers"] + row["writers"] for row in rows.values()), "a plan decides every verdict"
    gpu_nodes = [p for p in table.principals if GPU_NODE in p.roles]
    assert {p.label for p in gpu_nodes} == {f"gpu-node:{n}" for n in ("qwen-use2", "qwen-usw2", "phi-euw1", "l4-gcp")}
    for node in gpu_nodes:
        if node.site is None:  # an AWS node reads the mesh's SSM parameters
            assert _reads(table, node.label) == {"k3s/agent-token", "huggingface/token", "phoenix/ingest-key"}
        else:  # a GCP node reads its site's copies in Secret Manager
            kinds = {"k3s-agent-token", "hf-token", "phoenix-ingest-key"}
            assert _reads(table, node.label) == {f"{node.site}/{kind}" for kind in kinds}
    # The server token is read by the server alone; the server alone writes Pulumi's kubeconfig and credential.
    assert rows["k3s/server-token"]["readers"] == ["k3s-server"]
    for published in ("k3s/kubeconfig", "k3s/deployer-credential"):
        assert rows[published] == {**rows[published], "readers": ["k3s-server"], "writers": ["k3s-server"]}
    for name in ("phoenix/secret", "phoenix/admin-secret", "phoenix/admin-password"):
        assert rows[name]["readers"] == ["phoenix"], name
    assert rows["wireguard/hub"]["readers"] == ["wireguard-hub"]
    assert rows["gcp-usc1/wireguard"]["readers"] == ["gateway:gcp-usc1"]
    # The external site's bundle lives in Pulumi's state only, its private key in no resource.
    assert rows["lab-onprem/join-bundle"] == {
        "store": "Pulumi state",
        "path": "joinBundles.lab-onprem",
        "readers": ["operator"],
        "writers": ["operator"],
    }
    # Every row has its line in the matrix, and every mesh line a row (the stack has all of them).
    assert {line.key for line in ACCESS_MATRIX} == {row.key for row in table.rows}


def test_phoenix_on_the_server_makes_the_server_phoenix_too() -> None:
    """With `placement: server` the server hosts Phoenix (its `lmrun:hosts` tag): it reads Phoenix's secrets and
    publishes the ingest key, held to both lines of the matrix; no other machine does."""
    table = plan("global", preview=True, phoenix={"placement": "server"}).access
    assert not table.disagreements
    rows = _rows(table)
    assert rows["phoenix/admin-password"]["readers"] == ["k3s-server"]
    assert rows["phoenix/ingest-key"]["writers"] == ["k3s-server"]
    assert "phoenix" not in {p.label for p in table.principals}


def test_session_manager_keeps_every_action_it_needs_on_every_machine() -> None:
    """The Deny stops at parameter values: every AWS machine's role still allows what the SSM agent and Session
    Manager call (the AWS Systems Manager User Guide's list, granted by AmazonSSMManagedInstanceCore)."""
    model = AwsAccess(_global().snapshot)
    instance = "arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789abcdef0"
    # server, hub, Phoenix, three GPU nodes, the GPU pool's node, SkyPilot's profile (useSsm: Session Manager
    # attached) and SkyServe's controller's
    assert len(model.principals) == 9 and {"skypilot", "skyserve-controller"} <= {p.label for p in model.principals}
    for principal in model.principals:
        for action in SESSION_MANAGER_ACTIONS:
            verdict = model.verdict(principal.label, action, instance)
            assert verdict.allowed is True, (principal.label, action, verdict.reason)
            assert all(s.source.startswith("AmazonSSMManagedInstanceCore v2") for s in verdict.statements)
    # The same check sees a Deny that would lock Session Manager out.
    broken = AwsAccess(_edit_policy(_global().snapshot, NODE_POLICY, lambda d: _add(d, _deny_ssm())))
    assert broken.verdict(NODE, "ssm:UpdateInstanceInformation", instance).allowed is False


def _deny_ssm() -> dict[str, Any]:
    return {"Sid": "TooBroad", "Effect": "Deny", "Action": "ssm:*", "Resource": "*"}


# --- one statement injected into the recorded resources -------------------------------------------------------


def _replace(snapshot: Snapshot, name: str, change: Callable[[Resource], Resource]) -> Snapshot:
    found = [r for r in snapshot if r.name == name]
    assert len(found) == 1, name
    return Snapshot([change(r) if r.name == name else r for r in snapshot], snapshot.outputs, source=snapshot.source)


def _edit_policy(snapshot: Snapshot, name: str, edit: Callable[[dict[str, Any]], dict[str, Any]]) -> Snapshot:
    def change(resource: Resource) -> Resource:
        document = edit(json.loads(resource.inputs["policy"]))
        return dataclasses.replace(resource, inputs={**resource.inputs, "policy": json.dumps(document)})

    return _replace(snapshot, name, change)


def _add(document: dict[str, Any], statement: dict[str, Any]) -> dict[str, Any]:
    return {**document, "Statement": [*document["Statement"], statement]}


def _without_deny(document: dict[str, Any]) -> dict[str, Any]:
    return {**document, "Statement": [s for s in document["Statement"] if s.get("Sid") != "DenyOtherParameters"]}


def _added(snapshot: Snapshot, resource: Resource) -> Snapshot:
    return Snapshot([*snapshot, resource], snapshot.outputs, source=snapshot.source)


def _resource(snapshot: Snapshot, name: str) -> Resource:
    return next(r for r in snapshot if r.name == name)


def _attach(snapshot: Snapshot, policy_arn: str) -> Snapshot:
    role = _resource(snapshot, NODE_ROLE)
    attachment = Resource(
        type=ROLE_POLICY_ATTACHMENT,
        inputs={"policyArn": policy_arn, "role": UNKNOWN},
        urn=role.urn.replace("aws:iam/role:Role::", f"{ROLE_POLICY_ATTACHMENT}::").replace("-role", "-injected"),
        name="mesh-cluster-node-qwen-use2-injected",
        property_dependencies={"role": (role.urn,)},
    )
    return _added(snapshot, attachment)


def _failure(snapshot: Snapshot) -> list[str]:
    """The plan's checks over the edited resources: they fail with the access mismatch; its lines."""
    with pytest.raises(AccessMismatchError) as raised:
        run_checks("global", snapshot)
    assert raised.value.exit_code == 1
    return [str(d) for d in raised.value.disagreements]


def test_a_missing_deny_lets_the_managed_policy_read_every_secret() -> None:
    failure = _failure(_edit_policy(_global().snapshot, NODE_POLICY, _without_deny))
    assert f"k3s/server-token: {NODE} reads it: {CORE} (Statement[0])" in failure
    # Every secret the node must not read is named, and nothing about any other machine.
    assert len(failure) == len(_rows(_global().access)) - 3 - 4 - 1  # its 3 reads, the GCP site's 4, the bundle
    assert all(f": {NODE} reads it: " in line for line in failure)


def test_a_wildcard_resource_is_named_with_its_statement() -> None:
    """`*` in an Allow: the Deny still keeps the values (it wins over any allow), but a write on `*` makes the
    node a writer of every secret, the server token included."""
    snapshot = _global().snapshot
    reads = {"Sid": "ReadAll", "Effect": "Allow", "Action": "ssm:GetParameter*", "Resource": "*"}
    assert not access_table(_edit_policy(snapshot, NODE_POLICY, lambda d: _add(d, reads))).disagreements
    writes = {"Sid": "WriteAll", "Effect": "Allow", "Action": "ssm:PutParameter", "Resource": "*"}
    failure = _failure(_edit_policy(snapshot, NODE_POLICY, lambda d: _add(d, writes)))
    assert f"k3s/server-token: {NODE} writes it: {NODE_POLICY} (WriteAll)" in failure
    # A wildcard in the middle of the ARN reaches the K3s parameters of every mesh.
    middle = {
        "Sid": "K3s",
        "Effect": "Allow",
        "Action": "ssm:Put*",
        "Resource": "arn:aws:ssm:*:*:parameter/lmrun/*/k3s/*",
    }
    failure = _failure(_edit_policy(snapshot, NODE_POLICY, lambda d: _add(d, middle)))
    assert {line.split(":")[0] for line in failure} == {
        "k3s/server-token",
        "k3s/agent-token",
        "k3s/kubeconfig",
        "k3s/deployer-credential",
        "k3s/skypilot-kubeconfig",
    }


def test_an_extra_managed_policy_is_held_to_the_same_rule() -> None:
    """AmazonSSMReadOnlyAccess allows ssm:Get* on `*`: the Deny keeps every other value; without the Deny the
    check names it. A managed policy the check does not know is taken to allow everything."""
    snapshot = _global().snapshot
    assert not access_table(_attach(snapshot, SSM_READ_ONLY_ACCESS.arn)).disagreements
    exposed = _attach(_edit_policy(snapshot, NODE_POLICY, _without_deny), SSM_READ_ONLY_ACCESS.arn)
    failure = _failure(exposed)
    statement = "AmazonSSMReadOnlyAccess v1 (attached by mesh-cluster-node-qwen-use2-injected) (Statement[0])"
    assert f"wireguard/hub: {NODE} reads it: {CORE} (Statement[0]); {statement}" in failure
    unknown = "arn:aws:iam::aws:policy/AmazonSSMFullAccess"
    failure = _failure(_attach(snapshot, unknown))
    assert (
        f"k3s/kubeconfig: {NODE} writes it: {unknown} (attached by mesh-cluster-node-qwen-use2-injected) "
        "(not modelled: taken to allow everything)"
    ) in failure


def test_a_deny_too_broad_is_a_machine_that_cannot_read_its_secret() -> None:
    """The matrix is exact both ways: a Deny that also covers the node's own reads breaks its boot."""

    def everything(document: dict[str, Any]) -> dict[str, Any]:
        for statement in document["Statement"]:
            if statement.get("Sid") == "DenyOtherParameters":
                statement.pop("NotResource")
                statement["Resource"] = "*"
        return document

    failure = _failure(_edit_policy(_global().snapshot, NODE_POLICY, everything))
    assert f"k3s/agent-token: {NODE} cannot read it: {NODE_POLICY} (DenyOtherParameters)" in failure


def test_a_wrong_gcp_binding_is_named() -> None:
    snapshot = _global().snapshot
    nodes = _resource(snapshot, "mesh-sites-gcp-usc1-nodes-sa")
    email = nodes.outputs["email"]

    def to_nodes(resource: Resource) -> Resource:
        return dataclasses.replace(
            resource,
            inputs={**resource.inputs, "member": f"serviceAccount:{email}"},
            property_dependencies={**resource.property_dependencies, "member": (nodes.urn,)},
        )

    failure = _failure(_replace(snapshot, "mesh-sites-gcp-usc1-wireguard-reader-gateway", to_nodes))
    grant = "mesh-sites-gcp-usc1-wireguard-reader-gateway (roles/secretmanager.secretAccessor)"
    assert f"gcp-usc1/wireguard: gpu-node:l4-gcp reads it: {grant}" in failure
    assert "gcp-usc1/wireguard: gateway:gcp-usc1 cannot read it: no binding grants it" in failure
    # A project-level role reaches every secret of the project.
    project_grant = Resource(
        type="gcp:projects/iAMMember:IAMMember",
        inputs={"project": "lmrun-mesh-demo", "role": "roles/secretmanager.secretAccessor", "member": UNKNOWN},
        urn=nodes.urn.replace("gcp:serviceaccount/account:Account::mesh-sites-gcp-usc1-nodes-sa", "x::project-grant"),
        name="project-grant",
        property_dependencies={"member": (nodes.urn,)},
    )
    failure = _failure(_added(snapshot, project_grant))
    assert failure == [
        "gcp-usc1/wireguard: gpu-node:l4-gcp reads it: project-grant (roles/secretmanager.secretAccessor)"
    ]


def test_a_secret_the_matrix_does_not_name_fails_the_plan() -> None:
    snapshot = _global().snapshot
    hub = _resource(snapshot, "mesh-sites-hub-config")
    extra = dataclasses.replace(
        hub,
        urn=hub.urn.replace("mesh-sites-hub-config", "mesh-extra"),
        name="mesh-extra",
        inputs={**hub.inputs, "name": "/lmrun/global/extra/secret"},
        outputs={},
    )
    assert _failure(_added(snapshot, extra)) == ["extra/secret: the secret is not in the access matrix"]


# --- README, preview and state ----------------------------------------------------------------------------------


def test_the_readme_table_is_generated_from_globals_plan() -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import access_table as script
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    readme = (ROOT / "README.md").read_text()
    expected = script.with_table(readme, markdown(_global().access))
    assert readme == expected, "README.md's who-can-read-what table is out of date: run python scripts/access_table.py"
    assert "| `k3s/server-token` | K3s server token (joins servers; cluster admin) |" in readme


def _check(capsys: pytest.CaptureFixture[str], tmp_path: Path, option: str, document: Any) -> tuple[int, Any, str]:
    path = tmp_path / "document.json"
    path.write_text(json.dumps(document))
    code = main(["check", option, str(path), "--json"])
    captured = capsys.readouterr()
    return code, json.loads(captured.out) if captured.out.strip() else {}, captured.err


@pytest.mark.slow
def test_check_from_state_and_preview_give_the_plans_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = _global()
    planned = _rows(report.access)
    config = load_stack_config(ROOT, stack="global").config
    code, checked, _ = _check(capsys, tmp_path, "--from-state", state_document(report.recording))
    assert code == 0 and checked["secrets"] == planned
    document = preview_document(report.recording, config, show_secrets=True, stack_outputs=True)
    code, checked, _ = _check(capsys, tmp_path, "--from-preview", document)
    assert code == 0 and checked["secrets"] == planned

    # A first preview: the policies are built from ARNs not known yet, the values blinded, no stack outputs.
    first = preview_document(report.recording, config)
    for step in first["steps"]:
        if step["newState"].get("type") == "aws:iam/rolePolicy:RolePolicy":
            step["newState"]["inputs"]["policy"] = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
    code, checked, err = _check(capsys, tmp_path, "--from-preview", first)
    assert code == 0, err
    assert set(checked["secrets"]) == set(planned)
    for name, row in checked["secrets"].items():
        if row["store"].startswith("SSM"):
            assert row["readers"] == ["?"], name  # cannot tell, never a mismatch
    assert checked["secrets"]["lab-onprem/join-bundle"]["readers"] == ["operator", "?"]

    # The same injection through `lmrun check --from-state`: exit 1, the disagreement on stderr.
    broken = state_document(report.recording)
    for resource in broken["deployment"]["resources"]:
        if resource["urn"].endswith(f"::{NODE_POLICY}"):
            resource["inputs"]["policy"] = json.dumps(_without_deny(json.loads(resource["inputs"]["policy"])))
    code, _, err = _check(capsys, tmp_path, "--from-state", broken)
    assert code == 1
    assert err.startswith("error: secret access mismatch: stack global: ")
    assert f"k3s/server-token: {NODE} reads it: {CORE} (Statement[0])" in err


def test_an_external_sites_key_outside_pulumis_state_is_named() -> None:
    """The join bundle's private key must stay in the `joinBundles` output: in a parameter it is read by that
    parameter's readers, anywhere else by whoever reads that resource."""
    snapshot = _global().snapshot
    config = snapshot.outputs["joinBundles"].value["lab-onprem"]["config"]
    key = next(line.split("=", 1)[1].strip() for line in config.splitlines() if line.startswith("PrivateKey"))

    def leak(resource: Resource) -> Resource:
        return dataclasses.replace(resource, inputs={**resource.inputs, "description": f"backup of {key}"})

    assert _failure(_replace(snapshot, "mesh-sites-hub-config", leak)) == [
        "lab-onprem/join-bundle: wireguard-hub reads it: mesh-sites-hub-identity-parameters (ReadParameters); "
        "AmazonSSMManagedInstanceCore v2 (attached by mesh-sites-hub-identity-session-manager) (Statement[0])"
    ]
    assert _failure(_replace(snapshot, "mesh-us-east-1-vpc", leak)) == [
        "lab-onprem/join-bundle: anyone reading mesh-us-east-1-vpc reads it"
    ]
