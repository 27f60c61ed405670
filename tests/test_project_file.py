"""Pulumi.yaml and the stack files agree with the spec (docs that match the code)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lmrun.spec import MeshSpec, parse_spec, spec_from_config
from lmrun.spec.stackfile import load_stack_config
from tests.conftest import ROOT


def _project() -> dict:
    return yaml.safe_load((ROOT / "Pulumi.yaml").read_text())


def test_project_is_python_with_stacks_dir_and_lmrun_namespace() -> None:
    project = _project()
    assert project["name"] == "lmrun"  # un-namespaced config keys land in `lmrun:`
    assert project["runtime"]["name"] == "python"
    assert project["stackConfigDir"] == "stacks"


def test_every_spec_key_is_declared_with_a_description_and_the_same_default() -> None:
    declared = _project()["config"]
    fields = {field.alias: name for name, field in MeshSpec.model_fields.items()}
    assert set(declared) == set(fields)
    for key, name in fields.items():
        assert declared[key].get("description"), key
        if key == "mainRegion":
            continue
        # Pulumi applies the project default when a stack omits the key: it must mean the spec's default.
        spec = parse_spec({"mainRegion": "us-east-1", key: declared[key]["default"]})
        assert getattr(spec, name) == MeshSpec.model_fields[name].get_default(call_default_factory=True), key


def test_only_main_region_is_required_by_pulumi() -> None:
    """Pulumi refuses to run a stack missing any declared project key that has no default."""
    required = {key for key, declaration in _project()["config"].items() if "default" not in declaration}
    assert required == {"mainRegion"}


@pytest.mark.parametrize("path", sorted((ROOT / "stacks").glob("Pulumi.*.yaml")), ids=lambda p: p.name)
def test_every_stack_file_is_a_valid_spec(path: Path) -> None:
    stack = load_stack_config(ROOT, config_file=path)
    spec = spec_from_config(stack.config)
    assert spec.main_region
    data = yaml.safe_load(path.read_text())
    # No default provider may be used by accident: every stack disables them.
    assert data["config"]["pulumi:disable-default-providers"] == ["*"]


def test_dev_is_the_small_embedded_default() -> None:
    spec = spec_from_config(load_stack_config(ROOT, stack="dev").config)
    assert spec.regions == ()
