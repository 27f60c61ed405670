"""Pulumi.yaml and the stack files agree with the spec (docs that match the code)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lmrun.spec import MeshSpec, spec_from_config
from lmrun.stackfile import load_stack_config
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
    spec_keys = {field.alias: field for field in MeshSpec.model_fields.values()}
    assert set(declared) == set(spec_keys)
    for key, field in spec_keys.items():
        assert declared[key].get("description"), key
        if "default" in declared[key]:
            default = field.get_default(call_default_factory=True)
            assert declared[key]["default"] == (list(default) if isinstance(default, tuple) else default), key


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
