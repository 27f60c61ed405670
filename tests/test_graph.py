"""`lmrun plan --graph FILE`: the picture is written (valid SVG / PNG) and names every region and site."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from lmrun.cli import main
from lmrun.cli.graph import draw_mesh, mesh_picture
from lmrun.mock_engine import Recording
from lmrun.verify.offline import PlanReport
from tests.conftest import ROOT, plan

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SVG_NS = "{http://www.w3.org/2000/svg}"


def svg_text(path: Path) -> str:
    """Every text node of an SVG file (parsing it also proves it is well-formed XML)."""
    root = ET.parse(path).getroot()
    assert root.tag == f"{SVG_NS}svg"
    return "\n".join(t for element in root.iter() for t in (element.text, element.tail) if t and t.strip())


def expected_names(report: PlanReport) -> set[str]:
    return set(report.regions) | set(report.sites)


def with_sites() -> PlanReport:
    """A hand-made report: hub, one spoke, a GCP and an external site, nodes and node ports."""
    outputs = {
        "mainRegion": "us-east-1",
        "regions": {
            "us-east-1": {"cidr": "10.64.0.0/16", "role": "main"},
            "eu-west-1": {"cidr": "10.72.0.0/16", "role": "spoke"},
        },
        "sites": {
            "gcp-iowa": {"cidr": "10.128.0.0/20", "kind": "gcp", "mtu": 1380},
            "onprem-lab": {"cidr": "10.129.0.0/20", "kind": "external", "mtu": 1420},
        },
        "nodes": {
            "qwen-euw1": {"region": "eu-west-1", "instance_type": "g6.xlarge", "spot": True, "hourly_usd": 0.38},
            "lab-a10": {"region": "onprem-lab", "instance_type": "", "spot": False, "hourly_usd": 0.0},
            "gcp-l4": {"region": None, "site": "gcp-iowa", "instance_type": "g2-standard-4", "spot": True},
        },
        "nodePorts": {"qwen-euw1": 30080, "lab-a10": 30090},
        "phoenix": {"region": "us-east-1"},
    }
    return PlanReport("sites", Recording([], outputs))


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".svg", ".png"])
def test_global_picture_names_every_region_and_site(suffix: str, tmp_path: Path) -> None:
    report = plan("global", preview=True)
    path = tmp_path / f"global{suffix}"
    drawing = draw_mesh(report, path)
    assert path.stat().st_size > 1000
    names = expected_names(report)
    assert len(names) >= 18
    labels = "\n".join(drawing.labels)
    assert all(name in labels for name in names)
    for info in report.regions.values():
        assert info["cidr"] in labels
    if suffix == ".png":
        assert path.read_bytes()[:8] == PNG_SIGNATURE
    else:
        text = svg_text(path)
        missing = [name for name in names if name not in text]
        assert not missing
        assert "main region" in text and "VPC peering" in text


def test_sites_tunnels_nodes_and_ports(tmp_path: Path) -> None:
    report = with_sites()
    drawing = draw_mesh(report, tmp_path / "sites.svg")
    text = svg_text(drawing.path)
    for needle in ("us-east-1", "eu-west-1", "gcp-iowa", "onprem-lab", "10.128.0.0/20", "WireGuard · MTU 1380"):
        assert needle in text
    assert "qwen-euw1: g6.xlarge spot" in text and "qwen-euw1 :30080" in text
    assert "30090" in text and "lab-a10" in text
    picture = mesh_picture(report)
    lab = next(loc for loc in picture.others if loc.name == "onprem-lab")
    assert lab.kind == "site" and [m.name for m in lab.machines] == ["lab-a10"]
    iowa = next(loc for loc in picture.others if loc.name == "gcp-iowa")
    assert [m.name for m in iowa.machines] == ["gcp-l4"]
    assert picture.main is not None and "WireGuard hub" in picture.main.note and "Phoenix" in picture.main.note


def test_single_region_mesh_png(tmp_path: Path) -> None:
    report = PlanReport(
        "solo",
        Recording([], {"mainRegion": "us-east-1", "regions": {"us-east-1": {"cidr": "10.64.0.0/16", "role": "main"}}}),
    )
    drawing = draw_mesh(report, tmp_path / "nested" / "solo.png")
    assert drawing.path.read_bytes()[:8] == PNG_SIGNATURE
    assert "us-east-1  (main region)" in drawing.labels


def test_unknown_suffix_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match=r"\.svg or \.png"):
        draw_mesh(with_sites(), tmp_path / "mesh.pdf")
    with pytest.raises(SystemExit) as exit_info:
        main(["plan", "--project-dir", str(ROOT), "--stack", "dev", "--graph", str(tmp_path / "mesh.jpg")])
    assert exit_info.value.code == 2
    assert "must end in .svg or .png" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_writes_the_graph(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "dev.svg"
    assert main(["plan", "--project-dir", str(ROOT), "--stack", "dev", "--graph", str(path)]) == 0
    assert f"mesh graph written to {path}" in capsys.readouterr().out
    assert "us-east-1" in svg_text(path)


def test_machines_list_the_services_whose_proxies_they_run() -> None:
    """Which machine serves what comes from the readiness DaemonSets: the replicas that register a service's
    label and the machines a service is pinned to."""
    picture = mesh_picture(plan("global", phoenix={"placement": "node"}))
    assert picture.replicas == {
        "qwen": ["qwen-use2", "qwen-usw2"],
        "qwen-gcp": ["l4-gcp"],
        "phi-euw1": ["phi-euw1"],
        "phoenix-grpc": ["phoenix"],
        "phoenix-ui": ["phoenix"],
    }
