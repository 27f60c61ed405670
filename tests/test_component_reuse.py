"""The components used from another project: ``help()`` shows each component's own documentation, and a
``GpuNode`` builds alone from public imports, with the user data and image helpers of ``lmrun.components``.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import os
import pydoc
import subprocess
import sys
import textwrap
from pathlib import Path

import pulumi
import pytest
import yaml

import lmrun.components
import lmrun.mock_engine
from lmrun.aws.secret_store import SsmParameterStore
from lmrun.components import GPU_IMAGE, JoinCluster, gpu_image_id, gpu_image_pin_command, gpu_node_user_data
from lmrun.render.cloudinit import user_data_text
from lmrun.render.phoenix import PhoenixClientConfig
from lmrun.render.vllm import VllmConfig, render_gpu_node_user_data
from lmrun.verify.user_data import user_data_text as recorded_user_data
from tests.conftest import plan, stack_config
from tests.test_architecture import MODULES

QWEN = "Qwen/Qwen2.5-7B-Instruct"
QWEN_REVISION = "a09a35458c702b33eeacc393d103063234e8bc28"
PULUMI_CONSTRUCTOR_DOC = inspect.getdoc(pulumi.ComponentResource.__init__) or ""


def _component_classes() -> dict[str, type[pulumi.ComponentResource]]:
    """Every ComponentResource subclass the product defines, found from the source (so a component in a module
    nothing imports is not missed) and imported."""
    found: dict[str, type[pulumi.ComponentResource]] = {}
    for module_name, path in MODULES.items():
        tree = ast.parse(path.read_text())
        names = [
            node.name
            for node in tree.body
            if isinstance(node, ast.ClassDef)
            and any(ast.unparse(base).endswith("ComponentResource") for base in node.bases)
        ]
        if names:
            module = importlib.import_module(module_name)
            found.update({f"{module_name}.{name}": getattr(module, name) for name in names})
    return found


COMPONENTS = _component_classes()


def test_every_component_is_found() -> None:
    names = {cls.__name__ for cls in COMPONENTS.values()}
    assert len(names) >= 13 and {"Mesh", "GpuNode", "RegionalVpc", "GcpSite"} <= names, names
    exported = {getattr(lmrun.components, name) for name in lmrun.components.__all__}
    assert {cls for cls in exported if isinstance(cls, type) and issubclass(cls, pulumi.ComponentResource)} <= set(
        COMPONENTS.values()
    )


@pytest.mark.parametrize("name", sorted(COMPONENTS))
def test_help_shows_the_components_own_documentation(name: str) -> None:
    """Issue 12: ``help(GpuNode)`` showed Pulumi's constructor docstring (``:param str t: The type of this
    resource``) for the component's constructor, inherited because ``__init__`` had none of its own."""
    cls = COMPONENTS[name]
    assert PULUMI_CONSTRUCTOR_DOC.startswith(":param str t: The type of this resource.")
    assert (cls.__dict__.get("__doc__") or "").strip(), f"{name} has no docstring of its own"
    own_init = cls.__dict__.get("__init__")
    assert own_init is not None and (own_init.__doc__ or "").strip(), f"{name}.__init__ has no docstring of its own"
    init_doc = inspect.getdoc(cls.__init__) or ""
    assert "args" in init_doc and ":param str t:" not in init_doc, init_doc
    page = pydoc.render_doc(cls, renderer=pydoc.plaintext)
    assert inspect.getdoc(cls).splitlines()[0] in page  # type: ignore[union-attr]
    assert "The type of this resource" not in page, f"help({cls.__name__}) still shows Pulumi's constructor doc"


# --- a GpuNode alone, from another project ----------------------------------------------------------------------

USER_INFRA = '''
"""Another team's program: one vLLM node of its own, no mesh."""

import pulumi
import pulumi_aws as aws

from lmrun.components import GpuNode, gpu_image_id, gpu_node_user_data

REGION = "eu-west-1"


def build() -> None:
    config = pulumi.Config("acme")
    provider = aws.Provider("euw1", region=REGION)
    node = GpuNode(
        "qwen",
        args={
            "instance_type": "g6.xlarge",
            "alternative_instance_types": ["g6.2xlarge"],
            "spot": True,
            "disk_size_gb": 256,
            "ami_id": gpu_image_id(config.require("gpuAmi"), region=REGION),
            "subnet_ids": ["subnet-0aaaaaaaaaaaaaaa1", "subnet-0aaaaaaaaaaaaaaa2"],
            "security_group_ids": ["sg-0aaaaaaaaaaaaaaa1"],
            "user_data": gpu_node_user_data(
                name="qwen",
                model="Qwen/Qwen2.5-7B-Instruct",
                revision="a09a35458c702b33eeacc393d103063234e8bc28",
                gpu="L4",
                region=REGION,
                vllm_args=["--max-model-len", "8192"],
            ),
            "parameter_arns": [],
            "tags": {"team": "acme"},
        },
        opts=pulumi.ResourceOptions(provider=provider),
    )
    pulumi.export("group", node.group_name)
'''

USER_CHECK = '''
"""The unit test the team would write: the program under lmrun's recording mock engine, printed as JSON."""

import json

import infra
from lmrun.mock_engine import redact, run_program

recording = run_program(infra.build, project="acme", stack="test", config={"acme:gpuAmi": "ami-0123456789abcdef0"})
print(json.dumps([
    {"type": r.type, "name": r.name, "parent": r.parent, "provider": r.provider_urn, "inputs": redact(r.inputs)}
    for r in recording.resources
]))
'''


def _lmrun_imports(source: str) -> set[str]:
    """``module.name`` of every name imported from lmrun by ``source``."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("lmrun"):
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names if alias.name.startswith("lmrun")}
    return names


def test_a_gpu_node_builds_alone_from_another_project(tmp_path: Path) -> None:
    # Only public names: what lmrun.components and lmrun.mock_engine export.
    public = {f"lmrun.components.{n}" for n in lmrun.components.__all__}
    public |= {f"lmrun.mock_engine.{n}" for n in lmrun.mock_engine.__all__}
    assert _lmrun_imports(USER_INFRA) | _lmrun_imports(USER_CHECK) <= public

    project = tmp_path / "acme"
    project.mkdir()
    (project / "Pulumi.yaml").write_text("name: acme\nruntime: python\n")
    (project / "infra.py").write_text(textwrap.dedent(USER_INFRA).lstrip())
    (project / "check.py").write_text(textwrap.dedent(USER_CHECK).lstrip())
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}  # nothing of the repository's path
    result = subprocess.run(
        [sys.executable, "check.py"], cwd=project, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    resources = json.loads(result.stdout)

    by_type = {r["type"]: r for r in resources}
    assert [r["name"] for r in resources if r["type"] == "lmrun:index:GpuNode"] == ["qwen"]
    template = by_type["aws:ec2/launchTemplate:LaunchTemplate"]
    group = by_type["aws:autoscaling/group:Group"]
    assert template["inputs"]["imageId"] == "ami-0123456789abcdef0"
    assert template["provider"].endswith("::euw1") and group["provider"].endswith("::euw1")
    assert (group["inputs"]["minSize"], group["inputs"]["maxSize"]) == (1, 1)
    overrides = group["inputs"]["mixedInstancesPolicy"]["launchTemplate"]["overrides"]
    assert [o["instanceType"] for o in overrides] == ["g6.xlarge", "g6.2xlarge"]

    class Recorded:
        type = template["type"]
        inputs = template["inputs"]

    text = recorded_user_data(Recorded())
    assert text is not None and text.startswith("#cloud-config")
    files = {f["path"]: f["content"] for f in yaml.safe_load(text)["write_files"]}
    serve = files["/usr/local/lib/lmrun/vllm-serve.sh"]
    assert f"serve {QWEN} --revision {QWEN_REVISION} --served-model-name qwen" in serve
    assert "--max-model-len 8192" in serve
    # Alone: no K3s agent, no token helper (no token parameter given), nothing it may not read.
    assert not any("k3s" in path or "ssm-get" in path for path in files)
    assert "aws:iam/rolePolicy:RolePolicy" not in by_type


def test_a_gpu_node_that_joins_a_mesh_gets_the_user_data_the_mesh_gives_its_own() -> None:
    """The helper is the mesh's renderer, not a copy: for the dev stack's node (Phoenix off) it renders the
    very user data the mesh's own launch template carries."""
    recording = plan("dev").recording
    [template] = [r for r in recording.resources if r.type == "aws:ec2/launchTemplate:LaunchTemplate"]
    [server] = [r for r in recording.resources if r.name == "mesh-cluster-k3s-instance"]
    [node] = json.loads(stack_config("dev").config["lmrun:nodes"])
    server_ip = server.inputs["privateIp"]
    expected = gpu_node_user_data(
        name=node["name"],
        model=node["model"],
        revision=node["modelRevision"],
        gpu=node["gpu"],
        region=node["region"],
        vllm_args=node["vllmArgs"],
        hf_token_parameter="/lmrun/dev/huggingface/token",
        cluster=JoinCluster(server_ip=server_ip, token_parameter="/lmrun/dev/k3s/agent-token"),
    )
    assert recorded_user_data(template) == expected


def test_a_node_alone_reading_a_token_installs_the_stores_helper() -> None:
    text = gpu_node_user_data(
        name="llama",
        model="meta-llama/Llama-3.1-8B-Instruct",
        revision="0e9e39f249a16976918f6564b8830bc894c89659",
        gpu="L4",
        region="eu-west-1",
        hf_token_parameter="/acme/hf-token",
    )
    files = {f["path"]: f["content"] for f in yaml.safe_load(user_data_text(text.encode()))["write_files"]}
    assert "/usr/local/lib/lmrun/ssm-get.sh" in files
    assert "eu-west-1 /acme/hf-token" in files["/usr/local/lib/lmrun/vllm-hf-token.sh"]
    with pytest.raises(ValueError, match=r"^revision: 'main;' is not a model revision"):
        gpu_node_user_data(name="n", model="o/m", revision="main;", gpu="L4", region="eu-west-1")


def test_a_node_alone_cannot_trace() -> None:
    vllm = VllmConfig(model="o/m", revision=QWEN_REVISION, served_model_name="m")
    tracing = PhoenixClientConfig(store=SsmParameterStore("us-east-1"), ingest_key_parameter="/x/ingest-key")
    with pytest.raises(ValueError, match=r"^tracing: a node that joins no cluster"):
        render_gpu_node_user_data(None, vllm, tracing)


def test_the_gpu_image_is_pinned_with_the_command_the_helper_prints() -> None:
    assert GPU_IMAGE.parameter.startswith("/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-")
    command = gpu_image_pin_command("eu-west-1")
    assert command == (
        f"aws ssm get-parameter --region eu-west-1 --name {GPU_IMAGE.parameter} --with-decryption "
        "--query Parameter.Value --output text"
    )
    assert gpu_image_id("ami-0123456789abcdef0", region="eu-west-1") == "ami-0123456789abcdef0"
    with pytest.raises(ValueError, match=r"^ami_id: 'ami-latest' is not an AMI id .*; pin the current GPU image: aws"):
        gpu_image_id("ami-latest", region="eu-west-1")
