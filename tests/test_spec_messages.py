"""Config errors in the project's words (issue 12: nested typos got no did-you-mean, pydantic's words leaked,
values that are wrong were accepted, and the output was unbounded).

Each table reproduces what the issue reported and asserts the new line: one per problem, starting with the
config path, never pydantic's phrasing, long values cut, pairwise conflicts summarised.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lmrun.spec import ConfigError, parse_spec
from lmrun.spec.config import check_spec
from tests.config_cases import Case, assert_refused, run_plan, write_stack
from tests.conftest import TEST_GCP_IMAGES, pinned_images

REVISION = "a09a35458c702b33eeacc393d103063234e8bc28"
MESH = {"mainRegion": "us-east-1", "regions": ["us-east-2"], "images": pinned_images("us-east-1", "us-east-2")}
NODE = {"name": "q", "region": "us-east-2", "gpu": "L4", "model": "Qwen/Qwen2.5-7B", "modelRevision": REVISION}
SITE = {"name": "g", "kind": "gcp", "cidr": "10.128.0.0/20", "project": "lmrun-demo-1", "region": "us-central1"}
LIBRARY_WORDS = ("Input should", "Field required", "Extra inputs", "Value error", "String should", "valid dictionary")


def with_node(**fields: Any) -> dict[str, Any]:
    return {**MESH, "nodes": [{**NODE, "nodePort": 30080, **fields}]}


def without(mapping: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in mapping.items() if k != key}


# Before: `lmrun:nodes[0].nodeport: Extra inputs are not permitted` and `lmrun:nodes[0].nodePort: is required`.
TYPOS: dict[str, Case] = {
    "node-key": Case(
        {**MESH, "nodes": [{**NODE, "nodeport": 30080}]},
        (
            (
                "lmrun:nodes[0].nodeport",
                "unknown key; did you mean nodePort? (lmrun:nodes[0].nodePort is required) known keys: appPort,",
            ),
        ),
    ),
    "phoenix-key": Case(
        {**MESH, "phoenix": {"retention": 30}}, (("lmrun:phoenix.retention", "did you mean retentionDays?"),)
    ),
    "site-key": Case(
        {**MESH, "sites": [{**without(SITE, "cidr"), "cdir": "10.128.0.0/20", "images": TEST_GCP_IMAGES}]},
        (("lmrun:sites[0].cdir", "did you mean cidr? (lmrun:sites[0].cidr is required)"),),
    ),
    "service-key": Case(
        {
            **with_node(),
            "services": [{"name": "s", "node": "q", "appPort": 9000, "nodePort": 30090, "healthpath": "/"}],
        },
        (("lmrun:services[0].healthpath", "did you mean healthPath?"),),
    ),
    "image-role": Case(
        {**MESH, "images": {"us-east-1": {"sever": "ami-0123456789abcdef0"}}},
        (("lmrun:images.us-east-1.sever", "unknown key; did you mean server? known keys: gpu, server"),),
    ),
    "wireguard-key": Case({**MESH, "wireguard": {"prot": 51821}}, (("lmrun:wireguard.prot", "did you mean port?"),)),
    "path-key": Case(
        {**with_node(), "paths": [{"form": "us-east-1", "to": "q"}]},
        (("lmrun:paths[0].form", "did you mean from? (lmrun:paths[0].from is required)"),),
    ),
}

# Before: pydantic's sentences ("Input should be a valid dictionary or instance of PhoenixSpec").
WORDS: dict[str, Case] = {
    "object-not-a-mapping": Case(
        {**MESH, "phoenix": "on"}, (("lmrun:phoenix", "should be a mapping (key: value) (got 'on')"),)
    ),
    "entry-not-a-mapping": Case(
        {**MESH, "nodes": ["q"]}, (("lmrun:nodes[0]", "should be a mapping (key: value) (got 'q')"),)
    ),
    "not-a-boolean": Case(
        {**MESH, "phoenix": {"enabled": "maybe"}}, (("lmrun:phoenix.enabled", "should be true or false"),)
    ),
    "not-a-whole-number": Case(
        with_node(diskSize=1.5), (("lmrun:nodes[0].diskSize", "should be a whole number (got 1.5)"),)
    ),
    "below-minimum": Case(with_node(diskSize=10), (("lmrun:nodes[0].diskSize", "should be at least 64 (got 10)"),)),
    "above-maximum": Case(with_node(gpuCount=99), (("lmrun:nodes[0].gpuCount", "should be at most 16 (got 99)"),)),
    "not-one-of": Case(
        with_node(cloud="azure"), (("lmrun:nodes[0].cloud", "should be one of 'aws' or 'gcp' (got 'azure')"),)
    ),
    "not-a-list": Case(with_node(vllmArgs="--x"), (("lmrun:nodes[0].vllmArgs", "should be a list (got '--x')"),)),
    "not-a-network": Case(
        {**MESH, "operatorCidrs": ["10.0.0.1/8"]},
        (("lmrun:operatorCidrs[0]", "should be an IPv4 network like '10.1.0.0/16'"),),
    ),
    "not-a-k3s-release": Case(
        {**MESH, "k3sVersion": "latest"}, (("lmrun:k3sVersion", "'latest' is not a K3s release like 'v1.33.6+k3s1'"),)
    ),
    "not-an-instance-type": Case(
        {**MESH, "wireguard": {"instanceType": "big"}},
        (("lmrun:wireguard.instanceType", "'big' is not an EC2 instance type like 'g6.xlarge'"),),
    ),
    "not-an-http-path": Case(
        {
            **with_node(),
            "services": [{"name": "s", "node": "q", "appPort": 9000, "nodePort": 30090, "healthPath": "ready"}],
        },
        (("lmrun:services[0].healthPath", "'ready' is not an HTTP path: it starts with '/'"),),
    ),
}

# Before: planned with exit 0.
ACCEPTED_THOUGH_WRONG: dict[str, Case] = {
    "boolean-app-port": Case(
        {**with_node(), "services": [{"name": "s", "node": "q", "appPort": True, "nodePort": 30090}]},
        (("lmrun:services[0].appPort", "should be a number, not true"),),
    ),
    "boolean-node-port": Case(
        with_node(nodePort=False), (("lmrun:nodes[0].nodePort", "should be a number, not false"),)
    ),
    "operator-cidr-inside-the-site-range": Case(
        {**MESH, "operatorCidrs": ["10.130.0.0/16"]},
        (("lmrun:operatorCidrs[0]", "10.130.0.0/16 overlaps the mesh's sites range 10.128.0.0/10"),),
    ),
    "operator-cidr-covering-the-mesh": Case(
        {**MESH, "operatorCidrs": ["10.0.0.0/8"]},
        (("lmrun:operatorCidrs[0]", "10.0.0.0/8 overlaps the mesh's k3s-pods range 10.42.0.0/16"),),
    ),
    "number-as-network": Case(  # pydantic read 5 as 0.0.0.5/32
        {**MESH, "operatorCidrs": [5]},
        (("lmrun:operatorCidrs[0]", "should be an IPv4 network written like '10.1.0.0/16' (got 5)"),),
    ),
    "300-character-model-id": Case(
        with_node(model="Qwen/" + "q" * 295),
        (("lmrun:nodes[0].model", "the Hub allows at most 96 characters on each side of the '/'"),),
    ),
    "model-id-the-hub-refuses": Case(
        with_node(model="Qwen/Qwen--7B"), (("lmrun:nodes[0].model", "the Hub refuses '--', '..'"),)
    ),
}


@pytest.mark.parametrize(
    "case",
    [*TYPOS.values(), *WORDS.values(), *ACCEPTED_THOUGH_WRONG.values()],
    ids=[*(f"typo-{k}" for k in TYPOS), *(f"words-{k}" for k in WORDS), *(f"wrong-{k}" for k in ACCEPTED_THOUGH_WRONG)],
)
def test_refused_in_the_projects_words(
    case: Case, project_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert_refused(case, project_dir, tmp_path, capsys)


def test_no_library_words_for_any_wrong_type() -> None:
    """Every field of every spec model given a value of every wrong kind: not one of pydantic's phrases."""
    wrong = [None, True, 1.5, -1, "x" * 300, [], {}, [1], {"a": 1}]
    fields = {
        "": ["mainRegion", "regions", "maxPeerings", "tags", "k3sVersion", "operatorCidrs", "huggingFaceToken"],
        "nodes": [*NODE, "cloud", "gpuCount", "useSpot", "diskSize", "vllmArgs", "appPort", "nodePort"],
        "sites": [*SITE, "zone", "underlayMtu", "mtu", "behindNat", "keyEpoch", "images"],
        "phoenix": ["enabled", "placement", "instanceType", "volumeSize", "retentionDays", "uiNodePort"],
    }
    lines: list[str] = []
    for where, keys in fields.items():
        for key in keys:
            for value in wrong:
                if not where:
                    raw = {**MESH, key: value}
                elif where == "phoenix":
                    raw = {**MESH, "phoenix": {key: value}}
                else:
                    base = {**NODE, "nodePort": 30080} if where == "nodes" else SITE
                    raw = {**MESH, where: [{**base, key: value}]}
                lines += [str(issue) for issue in check_spec(raw).issues]
    assert len(lines) > 300
    leaked = [line for line in lines if any(word in line for word in LIBRARY_WORDS)]
    assert not leaked, leaked[:5]


def test_a_ten_megabyte_value_is_cut(project_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Before: the whole value was echoed in its error line."""
    code, _, err = run_plan(
        project_dir, write_stack(tmp_path / "Pulumi.big.yaml", {**MESH, "mainRegion": "x" * 10**7}), capsys
    )
    assert code == 2
    [line] = err.splitlines()
    assert line.startswith("lmrun:mainRegion: 'xxxx") and "...'" in line and len(line) <= 1100


def test_two_thousand_sites_sharing_one_range_print_one_line_each(
    project_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: 1,999,000 lines (172 MB), one per pair; now one line per site, naming the first it overlaps."""
    sites = [{"name": f"s{i}", "kind": "external", "cidr": "10.128.0.0/24"} for i in range(2000)]
    code, _, err = run_plan(project_dir, write_stack(tmp_path / "Pulumi.sites.yaml", {**MESH, "sites": sites}), capsys)
    assert code == 2
    lines = err.splitlines()
    assert len(lines) == 1999 and len(err) < 300_000
    assert lines[0] == "lmrun:sites[1].cidr: 10.128.0.0/24 overlaps lmrun:sites[0] (s0, 10.128.0.0/24)"
    assert lines[-1] == (
        "lmrun:sites[1999].cidr: 10.128.0.0/24 overlaps lmrun:sites[0] (s0, 10.128.0.0/24) and 1998 other earlier "
        "site(s)"
    )


def test_a_site_inside_another_names_the_first_it_overlaps() -> None:
    sites = [
        {"name": "a", "kind": "external", "cidr": "10.128.0.0/16"},
        {"name": "b", "kind": "external", "cidr": "10.129.0.0/24"},
        {"name": "c", "kind": "external", "cidr": "10.128.4.0/24"},
    ]
    with pytest.raises(ConfigError) as caught:
        parse_spec({**MESH, "sites": sites})
    assert caught.value.lines() == ["lmrun:sites[2].cidr: 10.128.4.0/24 overlaps lmrun:sites[0] (a, 10.128.0.0/16)"]
