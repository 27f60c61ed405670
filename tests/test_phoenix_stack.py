"""Whole-stack tests of Phoenix: data that survives, a locked-down backup bucket, traces from every node."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from lmrun.domain.access import GPU_NODE
from lmrun.mock_engine import Recording, Secret
from lmrun.render.cloudinit import STOP_AT_FIRST_FAILURE, runcmd_argvs, shell_scripts, written_files
from lmrun.render.readiness import ingest_key_gate_script
from lmrun.verify.user_data import user_data_text
from tests.config_cases import Case, assert_refused, run_plan, write_stack
from tests.conftest import pinned_images, plan, repinned, stack_config
from tests.validators import assert_cloud_init_valid, assert_shellcheck_clean

PHOENIX_INSTANCE = "mesh-cluster-phoenix-instance"
PHOENIX_VOLUME = "mesh-cluster-phoenix-data"
BUCKET = "mesh-cluster-phoenix-store-backups"
PHOENIX_PORTS = {6006, 4317, 30200, 30201}
GATE = "mesh-cluster-phoenix-ingest-key-gate"
GCP_TEMPLATE = "gcp:compute/instanceTemplate:InstanceTemplate"


def test_data_volume_is_protected_retained_and_survives_new_instance_type_or_ami() -> None:
    base = plan("global").recording
    volume = base.named(PHOENIX_VOLUME)
    assert volume.protect and volume.retain_on_delete
    assert volume.inputs["encrypted"] is True and volume.inputs["tags"]["lmrun:stateful"] == "true"
    changed = plan(
        "global",
        phoenix={"instanceType": "m7i.large"},
        images=repinned("global", "us-east-1", "server", "ami-0aaaaaaaaaaaaaaa1"),
    ).recording
    before, after = base.named(PHOENIX_INSTANCE).inputs, changed.named(PHOENIX_INSTANCE).inputs
    assert (before["ami"], before["instanceType"]) != (after["ami"], after["instanceType"])
    assert changed.named(PHOENIX_VOLUME).urn == volume.urn
    assert changed.named(PHOENIX_VOLUME).inputs == volume.inputs


def _bucket_settings(recording: Recording) -> dict[str, dict[str, object]]:
    return {
        r.type.split(":")[-1]: r.inputs
        for r in recording.resources
        if r.type.startswith("aws:s3/") and r.inputs.get("bucket") == f"{BUCKET}-id"
    }


def test_backup_bucket_blocks_public_access_is_versioned_encrypted_and_expires_snapshots() -> None:
    recording = plan("global").recording
    bucket = recording.named(BUCKET)
    assert bucket.retain_on_delete, "backups must outlive `pulumi destroy`"
    settings = _bucket_settings(recording)
    assert settings["BucketPublicAccessBlock"] == {
        "bucket": f"{BUCKET}-id",
        "blockPublicAcls": True,
        "blockPublicPolicy": True,
        "ignorePublicAcls": True,
        "restrictPublicBuckets": True,
    }
    assert settings["BucketVersioning"]["versioningConfiguration"] == {"status": "Enabled"}
    encryption = settings["BucketServerSideEncryptionConfiguration"]["rules"][0]
    assert encryption["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "aws:kms"
    snapshots, latest = settings["BucketLifecycleConfiguration"]["rules"]
    assert snapshots["filter"] == {"prefix": "phoenix/snapshots/"}
    assert snapshots["expiration"] == {"days": 7} and snapshots["noncurrentVersionExpiration"] == {"noncurrentDays": 1}
    # latest.db.gz (the restore's source) never expires; the versions each backup overwrites go after a day.
    assert latest["filter"] == {"prefix": "phoenix/latest.db.gz"}
    assert "expiration" not in latest and latest["noncurrentVersionExpiration"] == {"noncurrentDays": 1}


def test_backup_retention_days_reach_the_lifecycle_rule() -> None:
    recording = plan("global", phoenix={"backupRetentionDays": 14}).recording
    snapshots, latest = _bucket_settings(recording)["BucketLifecycleConfiguration"]["rules"]
    assert snapshots["expiration"] == {"days": 14} and "expiration" not in latest


def test_backup_defaults_keep_hundreds_of_copies_not_thousands_and_the_plan_prices_them() -> None:
    """Defect: a full snapshot every 5 minutes kept 30 days, plus every overwritten latest.db.gz kept 30 days,
    is ~17,000 copies (~17 TB, ~$390/month for a 1 GB database). Hourly for 7 days with overwritten versions
    gone after a day: 265 copies, ~$6/month per GB; the plan's cost estimate says so."""
    report = plan("global")
    schedule = report.recording.outputs["phoenixBackup"]
    assert schedule == {"backup_interval_minutes": 60, "backup_retention_days": 7, "volume_gb": 50}
    backup = report.to_json()["cost"]["phoenix_backup"]
    assert backup == {
        "interval_minutes": 60,
        "retention_days": 7,
        "copies": 265,
        "stored_gb_per_database_gb": 265,
        "monthly_usd_per_database_gb": round(265 * 0.023, 2),
        "volume_gb": 50,
        "monthly_usd_at_volume_size": round(265 * 0.023 * 50, 2),
    }
    assert plan("global", phoenix={"backupIntervalMinutes": 5, "backupRetentionDays": 30}).cost.phoenix_backup
    assert plan("dev").to_json()["cost"]["phoenix_backup"] is None


def test_the_timer_runs_at_the_planned_interval() -> None:
    files = written_files(_phoenix_user_data(plan("global").recording))
    assert "OnUnitActiveSec=60min" in files["/etc/systemd/system/lmrun-phoenix-backup.timer"]
    every_15 = written_files(_phoenix_user_data(plan("global", phoenix={"backupIntervalMinutes": 15}).recording))
    assert "OnUnitActiveSec=15min" in every_15["/etc/systemd/system/lmrun-phoenix-backup.timer"]


def test_phoenix_secrets_always_hold_a_digit_and_a_lowercase_letter() -> None:
    """Defect: RandomPassword(special=False) alone can draw a secret with no digit or no lowercase letter
    (~1 stack in 100,000), which Phoenix refuses at start (its own rule, checked here), so it never runs."""
    from phoenix.auth import REQUIREMENTS_FOR_PHOENIX_SECRET

    with pytest.raises(ValueError):
        REQUIREMENTS_FOR_PHOENIX_SECRET.validate("X" * 64, "Phoenix secret")  # a draw special=False allows
    REQUIREMENTS_FOR_PHOENIX_SECRET.validate("X" * 62 + "a1", "Phoenix secret")
    recording = plan("global").recording
    for key in ("secret", "admin-secret", "admin-password"):
        password = recording.named(f"mesh-cluster-phoenix-store-{key}")
        assert password.type == "random:index/randomPassword:RandomPassword"
        assert password.inputs["length"] >= 32 and password.inputs["special"] is False
        assert password.inputs["minNumeric"] >= 1 and password.inputs["minLower"] >= 1, password.inputs


def test_no_phoenix_port_is_reachable_beyond_the_mesh() -> None:
    recording = plan("global").recording
    for rule in recording.by_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"):
        cidr = rule.inputs.get("cidrIpv4", "")
        if rule.name == "mesh-sites-hub-sg-wireguard":  # the one world-open port: WireGuard, UDP only
            assert (rule.inputs["ipProtocol"], rule.inputs["fromPort"]) == ("udp", 51820)
            continue
        if "referencedSecurityGroupId" in rule.inputs:  # a mesh group's members (SkyPilot's group admits them)
            assert rule.inputs["referencedSecurityGroupId"] == "mesh-us-east-1-sg-id" and not cidr, rule.name
            continue
        assert cidr.startswith("10."), (rule.name, cidr)
    services = {r.name: r.inputs for r in recording.by_type("kubernetes:core/v1:Service")}
    ui = services["mesh-cluster-ports-svc-phoenix-ui"]["spec"]["ports"][0]
    grpc = services["mesh-cluster-ports-svc-phoenix-grpc"]["spec"]["ports"][0]
    assert (ui["nodePort"], ui["targetPort"]) == (30200, 6006)
    assert (grpc["nodePort"], grpc["targetPort"]) == (30201, 4317)
    assert all(s["spec"]["type"] == "NodePort" for s in services.values()), "no LoadBalancer, no public IP"


def _phoenix_user_data(recording: Recording, name: str = PHOENIX_INSTANCE) -> str:
    text = user_data_text(recording.named(name))
    assert text is not None
    return text


def test_phoenix_node_joins_k3s_mounts_its_volume_and_runs_phoenix_with_auth(tmp_path: Path) -> None:
    text = _phoenix_user_data(plan("global").recording)
    path = tmp_path / "phoenix.yaml"
    path.write_text(text)
    assert_cloud_init_valid(path)
    scripts = []
    for script_path, content in shell_scripts(text).items():
        script = tmp_path / Path(script_path).name
        script.write_text(content)
        scripts.append(script)
    assert_shellcheck_clean(scripts)
    files = written_files(text)
    unit = files["/etc/systemd/system/lmrun-phoenix.service"]
    assert "Environment=PHOENIX_ENABLE_AUTH=true" in unit
    assert "Environment=PHOENIX_DEFAULT_RETENTION_POLICY_DAYS=30" in unit
    assert "phoenix-restore.sh" in unit, "an empty volume is restored from the latest backup first"
    assert "lmrun.io/node=phoenix" in files["/usr/local/lib/lmrun/k3s-agent-bootstrap.sh"]
    assert "OnUnitActiveSec=60min" in files["/etc/systemd/system/lmrun-phoenix-backup.timer"]
    assert yaml.safe_load(text)["runcmd"][0] == STOP_AT_FIRST_FAILURE, "no step may run after a failed one"
    runcmd = [Path(command[0]).name for command in runcmd_argvs(text)]
    assert runcmd == ["mount-volume.sh", "k3s-agent-bootstrap.sh", "phoenix-install.sh"]


def _gpu_node_user_data(recording: Recording) -> dict[str, str]:
    """Every vLLM GPU node's user data: AWS launch templates and GCP instance templates (not the GPU pool's nodes,
    role ``gpu-pool``: they run no vLLM and export nothing)."""
    templates = recording.by_type("aws:ec2/launchTemplate:LaunchTemplate")
    texts = {t.name: user_data_text(t) or "" for t in templates if t.inputs["tags"]["lmrun:role"] == GPU_NODE}
    texts.update(
        {
            t.name: t.inputs["metadata"]["user-data"]
            for t in recording.by_type(GCP_TEMPLATE)
            if t.inputs["labels"]["lmrun_role"] == GPU_NODE
        }
    )
    return texts


def test_every_vllm_node_exports_traces_to_phoenix_through_the_mesh(tmp_path: Path) -> None:
    recording = plan("global").recording
    texts = _gpu_node_user_data(recording)
    nodes = json.loads(stack_config("global").config["lmrun:nodes"])
    # Every GPU node of the stack, wherever it runs: three on AWS, one in the GCP site.
    assert len(texts) == len(nodes) == 4
    assert len(recording.by_type(GCP_TEMPLATE)) == len([n for n in nodes if n.get("cloud") == "gcp"]) == 1
    for name, text in texts.items():
        files = written_files(text)
        serve = files["/usr/local/lib/lmrun/vllm-serve.sh"]
        assert "--otlp-traces-endpoint http://localhost:30201" in serve, name
        unit = files["/etc/systemd/system/lmrun-vllm.service"]
        assert "EnvironmentFile=-/etc/lmrun/phoenix-client.env" in unit, name
        refresher = files["/etc/systemd/system/lmrun-phoenix-client-env.service"]
        assert "lmrun-vllm.service" in refresher, name
        fetch_key = files["/usr/local/lib/lmrun/phoenix-client-env.sh"]  # the store's fetch is in its header
        if name.startswith("mesh-sites-"):
            # A GCP node cannot read SSM: the key comes from its site's Secret Manager copy.
            assert "gcp-secret-get.sh lmrun-mesh-demo mesh-sites-gcp-usc1-phoenix-ingest-key" in fetch_key, name
            assert not any("ssm" in content.lower() for content in files.values()), name
            path = tmp_path / f"{name}.yaml"
            path.write_text(text)
            assert_cloud_init_valid(path)
            scripts = []
            for script_path, content in shell_scripts(text).items():
                script = tmp_path / f"{name}-{Path(script_path).name}"
                script.write_text(content)
                scripts.append(script)
            assert_shellcheck_clean(scripts)
        else:
            assert "ssm-get.sh us-east-1 /lmrun/global/phoenix/ingest-key" in fetch_key, name


def test_gcp_sites_get_the_ingest_key_through_a_bounded_gate() -> None:
    recording = plan("global").recording
    gate = recording.named(GATE)
    assert gate.type == "command:local:Command"
    assert gate.inputs["create"] == ingest_key_gate_script(
        region="us-east-1", parameter="/lmrun/global/phoenix/ingest-key"
    )
    assert gate.inputs["logging"] == "none" and gate.inputs["interpreter"] == ["/bin/sh", "-c"]
    # Re-run when the key's parameter or the database's volume is replaced; after the Phoenix node exists.
    key_parameter, volume_id = gate.inputs["triggers"]
    assert key_parameter == "arn:aws:ssm:us-east-1:123456789012:parameter/lmrun/global/phoenix/ingest-key"
    assert volume_id.startswith("vol-")
    for dependency in ("mesh-cluster-phoenix-instance", "mesh-cluster-phoenix-data"):
        assert recording.named(dependency).urn in gate.dependencies
    # The key reaches the site's Secret Manager as a secret, readable by the nodes' service account alone.
    version = recording.named("mesh-sites-gcp-usc1-phoenix-ingest-key-version")
    assert version.inputs["secretData"] == Secret(f"mock stdout of {GATE}")
    holders = [
        r.name
        for r in recording.resources
        if any(isinstance(v, Secret) and v.value == f"mock stdout of {GATE}" for v in r.inputs.values())
    ]
    assert holders == [version.name]
    [grant] = [
        r
        for r in recording.by_type("gcp:secretmanager/secretIamMember:SecretIamMember")
        if r.name.startswith("mesh-sites-gcp-usc1-phoenix-ingest-key")
    ]
    assert grant.name.endswith("-reader-nodes") and grant.inputs["role"] == "roles/secretmanager.secretAccessor"
    assert recording.named("mesh-sites-gcp-usc1-nodes-sa").urn in grant.dependencies
    assert recording.named("mesh-sites-gcp-usc1-gateway-sa").urn not in grant.dependencies


def test_no_gate_without_gcp_nodes_or_without_phoenix() -> None:
    dev = plan("dev", phoenix={"enabled": True}).recording
    assert dev.named("mesh-cluster-phoenix-store") is not None
    assert not [r for r in dev.resources if "ingest-key-gate" in r.name]
    assert not [r for r in dev.resources if r.type.startswith("gcp:")]
    no_phoenix = plan("global", phoenix={"enabled": False}).recording
    assert not [r for r in no_phoenix.resources if "phoenix" in r.name]
    for name, text in _gpu_node_user_data(no_phoenix).items():
        assert "--otlp-traces-endpoint" not in written_files(text)["/usr/local/lib/lmrun/vllm-serve.sh"], name


def test_without_phoenix_nodes_do_not_export_traces() -> None:
    recording = plan("dev", phoenix={"enabled": False}).recording
    text = user_data_text(recording.by_type("aws:ec2/launchTemplate:LaunchTemplate")[0]) or ""
    assert "--otlp-traces-endpoint" not in written_files(text)["/usr/local/lib/lmrun/vllm-serve.sh"]
    assert not [r for r in recording.resources if "phoenix" in r.name]


def test_placement_on_the_server_puts_phoenix_on_the_state_volume(tmp_path: Path) -> None:
    recording = plan("global", phoenix={"placement": "server"}).recording
    assert not [
        r
        for r in recording.resources
        if r.name.startswith("mesh-cluster-phoenix-") and "store" not in r.name and r.name != GATE
    ]
    # The GCP site's gate follows the key to the server: re-run when the server's state volume is replaced.
    gate = recording.named(GATE)
    assert recording.named("mesh-cluster-k3s-instance").urn in gate.dependencies
    text = _phoenix_user_data(recording, "mesh-cluster-k3s-instance")
    path = tmp_path / "server.yaml"
    path.write_text(text)
    assert_cloud_init_valid(path)
    unit = written_files(text)["/etc/systemd/system/lmrun-phoenix.service"]
    assert "PHOENIX_WORKING_DIR=/var/lib/lmrun-state/phoenix" in unit
    proxy = recording.named("mesh-cluster-ports-proxy-phoenix-ui").inputs
    affinity = proxy["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]
    pinned = affinity["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][1]
    assert pinned == {"matchExpressions": [{"key": "lmrun.io/node", "operator": "In", "values": ["k3s-server"]}]}


def test_json_plan_describes_phoenix() -> None:
    document = plan("global").to_json()
    assert document["phoenix"] == {
        "placement": "node",
        "ui_node_port": 30200,
        "grpc_node_port": 30201,
        "storage": "sqlite",
        "backup_bucket": document["phoenix"]["backup_bucket"],
        "retention_days": 30,
    }
    assert document["phoenix"]["backup_bucket"].startswith(BUCKET[:40])
    assert plan("dev").to_json()["phoenix"] is None


MESH = {"mainRegion": "us-east-1", "regions": ["us-east-2"], "images": pinned_images("us-east-1", "us-east-2")}
NODE = {
    "name": "qwen",
    "region": "us-east-2",
    "gpu": "L4",
    "model": "Qwen/Qwen2.5-7B-Instruct",
    "modelRevision": "a09a35458c702b33eeacc393d103063234e8bc28",
    "nodePort": 30080,
}
BAD: dict[str, Case] = {
    "node-port-conflicts-with-phoenix-ui": Case(
        {**MESH, "nodes": [{**NODE, "nodePort": 30200}]},
        (("lmrun:nodes[0].nodePort", "node port 30200 is already taken by phoenix-ui (reserved by the mesh)"),),
    ),
    "service-port-conflicts-with-phoenix-grpc": Case(
        {**MESH, "nodes": [NODE], "services": [{"name": "m", "node": "qwen", "appPort": 9100, "nodePort": 30201}]},
        (("lmrun:services[0].nodePort", "node port 30201 is already taken by phoenix-grpc"),),
    ),
    "retention-below-one-day": Case(
        {**MESH, "phoenix": {"retentionDays": 0}},
        (("lmrun:phoenix.retentionDays", "should be at least 1"),),
    ),
    "backup-interval-zero": Case(
        {**MESH, "phoenix": {"backupIntervalMinutes": 0}},
        (("lmrun:phoenix.backupIntervalMinutes", "should be at least 1"),),
    ),
    "placement-unknown": Case(
        {**MESH, "phoenix": {"placement": "edge"}},
        (("lmrun:phoenix.placement", "should be one of 'node' or 'server' (got 'edge')"),),
    ),
    "ui-and-grpc-share-a-port": Case(
        {**MESH, "phoenix": {"uiNodePort": 30210, "grpcNodePort": 30210}},
        (("lmrun:phoenix.grpcNodePort", "node port 30210 is also lmrun:phoenix.uiNodePort"),),
    ),
    "phoenix-port-outside-range": Case(
        {**MESH, "phoenix": {"uiNodePort": 6006}},
        (("lmrun:phoenix.uiNodePort", "outside the Kubernetes NodePort range"),),
    ),
    "unknown-phoenix-key": Case(
        {**MESH, "phoenix": {"retention": 30}},
        (("lmrun:phoenix.retention", "unknown key; did you mean retentionDays?"),),
    ),
    "volume-too-small": Case(
        {**MESH, "phoenix": {"volumeSize": 1}},
        (("lmrun:phoenix.volumeSize", "should be at least 10"),),
    ),
    "node-named-like-the-phoenix-vm": Case(
        {**MESH, "nodes": [{**NODE, "name": "phoenix"}]},
        (("lmrun:nodes[0].name", "'phoenix' is reserved for the mesh's own VMs"),),
    ),
}


@pytest.mark.parametrize("case", BAD.values(), ids=BAD.keys())
def test_bad_phoenix_config_is_refused_with_its_config_path(
    case: Case, project_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert_refused(case, project_dir, tmp_path, capsys)


def test_disabled_phoenix_frees_its_node_ports(
    project_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = {**MESH, "nodes": [{**NODE, "nodePort": 30200}], "phoenix": {"enabled": False}}
    code, _, err = run_plan(project_dir, write_stack(tmp_path / "Pulumi.ok.yaml", config), capsys)
    assert code == 0, err
