"""Stack config -> spec: valid configs, Pulumi's string encoding, and how ConfigError reads."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from lmrun.spec import ConfigError, ConfigIssue, MeshSpec, PlanError, parse_spec, spec_from_config
from lmrun.spec.config import decode_value, known_keys, namespaced
from lmrun.spec.errors import config_path
from lmrun.spec.model import DEFAULT_GPU_INSTANCE_TYPES, DEFAULT_MAX_PEERINGS
from lmrun.spec.stackfile import load_stack_config

REPO = Path(__file__).resolve().parents[1]


def issues_of(raw: Mapping[str, object]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_spec(raw)
    return [str(issue) for issue in caught.value.issues]


# --- valid configs -------------------------------------------------------------------------------------


def test_defaults_apply_when_only_the_main_region_is_given() -> None:
    spec = spec_from_config({"lmrun:mainRegion": "us-east-1"})

    assert spec == MeshSpec(
        main_region="us-east-1",
        regions=(),
        gpu_instance_types=("g6.xlarge", "g6.2xlarge", "g6.12xlarge"),
        max_peerings=50,
        availability_zones={},
        tags={},
    )
    assert DEFAULT_GPU_INSTANCE_TYPES == ("g6.xlarge", "g6.2xlarge", "g6.12xlarge")
    assert DEFAULT_MAX_PEERINGS == 50


def test_json_encoded_values_from_pulumi_are_decoded() -> None:
    """Pulumi hands every value over as a string: lists and objects as JSON, numbers as digits."""
    spec = spec_from_config(
        {
            "lmrun:mainRegion": "eu-west-1",
            "lmrun:regions": '["us-west-2", "ap-southeast-7", "mx-central-1"]',
            "lmrun:gpuInstanceTypes": '["g5.xlarge"]',
            "lmrun:maxPeerings": "60",
            "lmrun:availabilityZones": '{"eu-west-1": ["euw1-az3", "euw1-az1"], "us-west-2": ["usw2-az4"]}',
            "lmrun:tags": '{"team": "ml", "cost-center": "gpu"}',
        }
    )

    assert spec.main_region == "eu-west-1"
    assert spec.regions == ("us-west-2", "ap-southeast-7", "mx-central-1")
    assert spec.gpu_instance_types == ("g5.xlarge",)
    assert spec.max_peerings == 60
    assert spec.availability_zones == {"eu-west-1": ("euw1-az3", "euw1-az1"), "us-west-2": ("usw2-az4",)}
    assert spec.tags == {"team": "ml", "cost-center": "gpu"}


def test_keys_of_the_providers_and_the_engine_are_not_the_specs() -> None:
    config = {
        "lmrun:mainRegion": "us-east-1",
        "aws:region": "eu-west-1",
        "pulumi:disable-default-providers": '["*"]',
    }
    assert namespaced(config) == {"mainRegion": "us-east-1"}
    assert spec_from_config(config).main_region == "us-east-1"


def test_keys_of_a_namespace_nothing_reads_are_refused() -> None:
    """A namespace no part of the stack reads is a typo, not somebody else's config (issue 12)."""
    with pytest.raises(ConfigError) as caught:
        spec_from_config({"lmrun:mainRegion": "us-east-1", "other:regions": "not ours"})
    [line] = caught.value.lines()
    assert line.startswith("other:regions: unknown namespace 'other': no part of this stack reads it;")


def test_decode_value_only_decodes_json_lists_and_objects() -> None:
    assert decode_value('["a", 1]') == ["a", 1]
    assert decode_value('{"k": "v"}') == {"k": "v"}
    assert decode_value("50") == "50"
    assert decode_value("us-east-1") == "us-east-1"
    assert decode_value("[not json") == "[not json"
    assert decode_value(["already", "a", "list"]) == ["already", "a", "list"]


def test_broken_json_list_is_reported_as_not_a_list() -> None:
    assert issues_of({"mainRegion": "us-east-1", "regions": "[us-west-2"}) == [
        "lmrun:regions: should be a list (got '[us-west-2')"
    ]


def test_camel_case_keys_are_the_config_keys() -> None:
    assert known_keys() == [
        "availabilityZones",
        "elasticServices",
        "flowLogs",
        "gpuInstanceTypes",
        "gpuPool",
        "groups",
        "huggingFaceToken",
        "images",
        "k3sVersion",
        "labels",
        "mainRegion",
        "maxPeerings",
        "nodes",
        "offerings",
        "operatorCidrs",
        "paths",
        "phoenix",
        "quotas",
        "regions",
        "serverInstanceType",
        "services",
        "sites",
        "skypilot",
        "tags",
        "wireguard",
    ]
    spec = parse_spec({"mainRegion": "us-east-1", "maxPeerings": 3, "gpuInstanceTypes": ["g6.xlarge"]})
    assert (spec.max_peerings, spec.gpu_instance_types) == (3, ("g6.xlarge",))


def test_snake_case_keys_are_typos_not_aliases() -> None:
    """``main_region`` must not slip past the rules that read ``mainRegion`` (main listed as a spoke here)."""
    assert issues_of({"main_region": "us-east-1", "regions": ["us-east-1"]}) == [
        "lmrun:main_region: unknown key; did you mean lmrun:mainRegion? (lmrun:mainRegion is required) known keys: "
        "availabilityZones, elasticServices, flowLogs, gpuInstanceTypes, gpuPool, groups, huggingFaceToken, images, "
        "k3sVersion, labels, mainRegion, maxPeerings, nodes, offerings, operatorCidrs, paths, phoenix, quotas, "
        "regions, serverInstanceType, services, sites, skypilot, tags, wireguard",
    ]


def test_python_callers_may_still_use_field_names() -> None:
    assert MeshSpec(main_region="us-east-1", max_peerings=2).max_peerings == 2


def test_spec_is_immutable() -> None:
    spec = parse_spec({"mainRegion": "us-east-1"})
    with pytest.raises(ValueError, match="frozen"):
        spec.main_region = "us-west-2"  # type: ignore[misc]


def test_max_peerings_given_as_a_string_still_limits_spokes() -> None:
    """Regression: the spokes-vs-maxPeerings rule used to skip "2" (how Pulumi delivers integers)."""
    raw = {"mainRegion": "us-east-1", "regions": ["us-west-2", "eu-west-1", "ap-south-1"], "maxPeerings": "2"}
    assert issues_of(raw) == [
        "lmrun:regions: 3 spoke regions need 3 peerings with the main VPC, more than lmrun:maxPeerings=2 "
        "(AWS default 50; raise the quota, up to 125, and lmrun:maxPeerings with it)"
    ]
    assert parse_spec({**raw, "maxPeerings": "3"}).max_peerings == 3


def test_spoke_count_at_the_limit_is_allowed() -> None:
    spokes = ("us-west-2", "eu-west-1")
    assert parse_spec({"mainRegion": "us-east-1", "regions": list(spokes), "maxPeerings": 2}).regions == spokes


@pytest.mark.parametrize("stack", ["dev", "global"])
def test_shipped_stacks_are_valid(stack: str) -> None:
    config = load_stack_config(REPO, stack=stack).config
    spec = spec_from_config(config)
    assert spec.main_region == "us-east-1"
    assert spec.gpu_instance_types == DEFAULT_GPU_INSTANCE_TYPES
    assert "us-east-1" not in spec.regions


def test_global_stack_declares_at_least_15_spokes() -> None:
    spec = spec_from_config(load_stack_config(REPO, stack="global").config)
    assert len(spec.regions) >= 15
    assert len(set(spec.regions)) == len(spec.regions)


def test_every_error_is_reported_at_once() -> None:
    raw = {
        "mainRegion": "us-east-1",
        "regions": ["us-east-1", "us-west-2", "us-west-2"],
        "maxPeerings": 126,
        "gpuInstanceTypes": ["p5", "g6.xlarge"],
        "availabilityZones": {"us-west-2": ["use1-az1", "usw2-az99"]},
        "tag": {"a": "b"},
    }
    assert [issue.split(": ", 1)[0] for issue in issues_of(raw)] == [
        "lmrun:availabilityZones.us-west-2[0]",
        "lmrun:availabilityZones.us-west-2[1]",
        "lmrun:gpuInstanceTypes[0]",
        "lmrun:maxPeerings",
        "lmrun:regions[0]",
        "lmrun:regions[2]",
        "lmrun:tag",
    ]


# --- ConfigError and config paths ----------------------------------------------------------------------


def test_config_error_sorts_deduplicates_and_prints_one_line_per_issue() -> None:
    error = ConfigError(
        [
            ConfigIssue("lmrun:regions[1]", "b"),
            ConfigIssue("lmrun:mainRegion", "a"),
            ConfigIssue("lmrun:regions[1]", "b"),
            ConfigIssue("lmrun:maxPeerings", "c"),
        ]
    )

    assert error.issues == (
        ConfigIssue("lmrun:mainRegion", "a"),
        ConfigIssue("lmrun:maxPeerings", "c"),
        ConfigIssue("lmrun:regions[1]", "b"),
    )
    assert str(error) == ("invalid stack config:\n  lmrun:mainRegion: a\n  lmrun:maxPeerings: c\n  lmrun:regions[1]: b")
    assert str(ConfigIssue("lmrun:tags", "x")) == "lmrun:tags: x"


def test_config_errors_are_value_errors() -> None:
    assert issubclass(ConfigError, ValueError)
    assert issubclass(PlanError, ConfigError)
    with pytest.raises(ValueError, match=r"lmrun:mainRegion: is required"):
        parse_spec({})


@pytest.mark.parametrize(
    ("loc", "path"),
    [
        ((), "lmrun:"),
        (("mainRegion",), "lmrun:mainRegion"),
        (("regions", 2), "lmrun:regions[2]"),
        (("nodes", 0, "gpu"), "lmrun:nodes[0].gpu"),
        (("availabilityZones", "us-east-1", 1), "lmrun:availabilityZones.us-east-1[1]"),
        (("tags", "aws:owner", "[key]"), 'lmrun:tags["aws:owner"]'),
        (("tags", "cost center"), 'lmrun:tags["cost center"]'),
        (("availabilityZones", "eu-west-9", "[key]"), "lmrun:availabilityZones.eu-west-9"),
    ],
)
def test_config_path(loc: tuple[str | int, ...], path: str) -> None:
    assert config_path(loc) == path


def test_long_inputs_are_shortened_in_messages() -> None:
    [issue] = issues_of({"mainRegion": "us-east-1", "tags": {"team": "x" * 300}})
    assert issue == f"lmrun:tags.team: should have at most 256 characters (got '{'x' * 54}...')"
