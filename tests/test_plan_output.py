"""The smaller output items of issue 12: the reachability table repeated a declared path and showed the app
port instead of the node port; the CIDR table omitted sites; piped output was cut at 80 columns; GCP prices were
priced in one table and "unpriced" in another; the package shipped no `py.typed` (`help()` on a component:
tests/test_component_reuse.py).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from typing import Any

from rich.console import Console

from lmrun.cli.plan_view import cidr_table, reachability_table
from tests.conftest import ROOT, plan


def _text(table: Any) -> str:
    console = Console(width=400, record=True)
    console.print(table)
    return console.export_text()


def _rows(text: str, start: str) -> list[list[str]]:
    return [
        [cell.strip() for cell in line.strip("│").split("│")]
        for line in text.splitlines()
        if line.startswith(f"│ {start}")
    ]


def test_a_declared_path_the_mesh_implies_is_listed_once_with_its_node_port() -> None:
    """Before: two `us-east-1 -> qwen` rows, each with port 8000 (the vLLM port on the VM)."""
    report = plan("global", paths=[{"from": "us-east-1", "to": "qwen"}, {"from": "us-east-1", "to": "qwen"}])
    paths = [(p["from"], p["to"]) for p in report.reachability]
    assert paths.count(("us-east-1", "qwen")) == 1
    rows = [row for row in _rows(_text(reachability_table(report)), "us-east-1") if row[1] == "qwen"]
    assert [row[:4] for row in rows] == [["us-east-1", "qwen", "30080", "8000"]]
    api = _rows(_text(reachability_table(report)), "eu-west-1")[0]
    assert api[:4] == ["eu-west-1", "k3s-api", "-", "6443"]


def test_the_cidr_table_lists_the_sites() -> None:
    """Before: the AWS regions only."""
    rows = _rows(_text(cidr_table(plan("global"))), "")
    assert ["gcp-usc1", "site (gcp)", "10.128.0.0/20"] in rows
    assert ["lab-onprem", "site (external)", "10.129.0.0/24"] in rows
    assert rows[0] == ["us-east-1", "main", "10.64.0.0/16"]


def test_piped_output_is_not_cut_at_80_columns() -> None:
    """Before: rich laid every table out in 80 columns and cut cells with an ellipsis."""
    env = {key: value for key, value in os.environ.items() if key != "COLUMNS"}
    result = subprocess.run(
        [sys.executable, "-m", "lmrun", "plan", "--stack", "global"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert not re.search(r"…\s*[│┃]", result.stdout), "a cell cut short"
    assert any(
        "aws:ec2/vpcPeeringConnectionAccepter:VpcPeeringConnectionAccepter" in line
        for line in result.stdout.splitlines()
    )
    assert any(
        "WireGuard mesh-sites-hub-instance -> gcp-usc1, local routes" in line for line in result.stdout.splitlines()
    )


def test_a_gcp_node_is_priced_in_one_table_only() -> None:
    """Before: its machine in the GPU fleet at 0.34 USD/hour, and its template under "no GCP prices"."""
    report = plan("global")
    assert report.nodes["l4-gcp"]["hourly_usd"] > 0
    [template] = [entry for entry in report.cost.unpriced if "node-l4-gcp-template" in entry]
    assert template == (
        "mesh-sites-gcp-usc1-node-l4-gcp-template: gcp:compute/instanceTemplate:InstanceTemplate disks (its "
        "g2-standard-8 machine is priced in the GPU fleet)"
    )


def test_the_package_is_typed() -> None:
    """PEP 561 (tests/test_wheel_install.py finds the marker in the built wheel)."""
    assert (ROOT / "lmrun" / "py.typed").is_file()
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "py.typed" in package_data["lmrun"]
