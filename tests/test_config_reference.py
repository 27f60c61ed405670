"""docs/config-reference.md is generated from the spec and must not drift from it."""

from __future__ import annotations

import re
import subprocess
import sys
from typing import Literal

import pytest
from pydantic import BaseModel, Field

from lmrun.cli import main
from lmrun.cli.config_reference import COMMAND, config_reference
from lmrun.spec.model import MeshSpec
from lmrun.spec.model_base import SpecModel
from tests.conftest import ROOT

DOC = ROOT / "docs" / "config-reference.md"


def test_doc_matches_the_spec() -> None:
    assert DOC.read_text() == config_reference(), (
        f"docs/config-reference.md is out of date with the spec; regenerate it: {COMMAND}"
    )


def _nested_models(model: type[BaseModel]) -> list[tuple[str, type[BaseModel]]]:
    """Top-level fields whose type holds a spec model (any container), found independently of the module."""
    found = []
    models: list[type[SpecModel]] = []
    pending = list(SpecModel.__subclasses__())
    while pending:  # every subclass, at any depth (NodeSpec derives from VllmWorkload)
        models.append(pending.pop())
        pending.extend(models[-1].__subclasses__())
    for name, field in model.model_fields.items():
        text = repr(field.annotation)
        for candidate in models:
            # whole names only: ElasticServiceSpec does not nest ServiceSpec
            if candidate is not model and re.search(rf"\b{candidate.__name__}\b", text):
                found.append((field.alias or name, candidate))
    return found


def test_every_key_of_every_model_is_a_row() -> None:
    text = config_reference()
    for name, field in MeshSpec.model_fields.items():
        assert f"| `lmrun:{field.alias or name}` |" in text
    nested = _nested_models(MeshSpec)
    assert {model.__name__ for _, model in nested} >= {"NodeSpec", "ServiceSpec"}
    for key, model in nested:
        for name, field in model.model_fields.items():
            alias = field.alias or name
            paths = (f"lmrun:{key}[].{alias}`", f"lmrun:{key}.{alias}`", f"lmrun:{key}.<string>.{alias}`")
            assert any(path in text for path in paths), (key, alias)


def test_rows_carry_type_default_and_description() -> None:
    text = config_reference()
    assert "| `lmrun:mainRegion` | string | (required) | AWS region of the hub" in text
    assert "| `lmrun:maxPeerings` | integer (≥ 1, ≤ 125) | `50` |" in text
    assert '`["g6.xlarge", "g6.2xlarge", "g6.12xlarge"]`' in text
    assert "| `lmrun:nodes[].useSpot` | boolean | `true` |" in text
    assert "| `lmrun:services[].health` | one of `tcp`, `http` | `tcp` |" in text


class _Tunnel(SpecModel):
    mtu: int = Field(default=1420, ge=576, description="MTU | of the tunnel.")


class _Site(SpecModel):
    cidr: str = Field(description="Site CIDR.")
    kind: Literal["gcp", "external"] = Field(default="external", description="Where it is.")
    tunnel: _Tunnel | None = Field(default=None, description="Tunnel settings.")


class _Spec(SpecModel):
    main_region: str = Field(description="Hub.")
    sites: dict[str, _Site] = Field(default_factory=dict, description="Non-AWS sites.")
    extra: _Tunnel = Field(default_factory=_Tunnel, description="An object with defaults.")


def test_nested_models_appear_generically() -> None:
    """Maps and optional values of models, at any depth, with no change to the generator."""
    text = config_reference(_Spec)
    assert "| `lmrun:sites` | map of string to object | `{}` | Non-AWS sites. |" in text
    assert "| `lmrun:sites.<string>.cidr` | string | (required) | Site CIDR. |" in text
    assert "| `lmrun:sites.<string>.kind` | one of `gcp`, `external` | `external` |" in text
    assert "| `lmrun:sites.<string>.tunnel` | object or null | (none) |" in text
    assert "| `lmrun:sites.<string>.tunnel.mtu` | integer (≥ 576) | `1420` | MTU \\| of the tunnel. |" in text
    assert "| `lmrun:extra` | object | (see its keys) |" in text
    assert "| `lmrun:extra.mtu` |" in text


def test_cli_prints_the_reference(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config-reference"]) == 0
    assert capsys.readouterr().out == config_reference()


@pytest.mark.slow
def test_documented_command_regenerates_the_file() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "lmrun", "config-reference"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout == config_reference()
