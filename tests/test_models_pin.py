"""``lmrun models pin`` against a local server replaying the Hub's model-info answers (no network), and the
plan's refusal of a gated or private model without ``lmrun:huggingFaceToken``.

``tests/fixtures/hf/answers.json`` holds the answers of ``GET /api/models/{model}/revision/{ref}`` (see its
``_comment``). The server plays the Hub's error answers as huggingface_hub reads them: a repository it does not
have (or a private one the caller cannot read) is ``401 {"error": "Invalid username or password."}`` without
``X-Error-Code`` to an anonymous caller and ``404`` with ``X-Error-Code: RepoNotFound`` to a token; an unknown
revision is ``404`` with ``X-Error-Code: RevisionNotFound``; a rate limit is ``429`` with the ``RateLimit``
header of the Hub's "Hub Rate limits" page (``"api";r=0;t=55``).
"""

from __future__ import annotations

import http.server
import io
import json
import re
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
import yaml
from rich.console import Console

from lmrun.cli import main
from lmrun.cli.models import HubClient, ModelPinError, ModelPinResult, pin_stack_models
from lmrun.plan.mesh import plan_mesh
from lmrun.plan.models import model_access_issues
from lmrun.spec import parse_spec
from lmrun.spec.errors import PlanError
from tests.conftest import pinned_images

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "fixtures"
ANSWERS: dict[str, Any] = {
    k: v for k, v in json.loads((FIXTURES / "hf" / "answers.json").read_text()).items() if k != "_comment"
}
TOKEN = "hf_TestToken0123456789"

QWEN = ANSWERS["Qwen/Qwen2.5-7B-Instruct"]["main"]["sha"]
PHI_PINNED = "2fe192450127e6a83f7441aef6e3ca586c338b77"
PHI_MAIN = ANSWERS["microsoft/Phi-3.5-mini-instruct"]["main"]["sha"]
LLAMA = ANSWERS["meta-llama/Llama-3.1-8B-Instruct"]["main"]["sha"]


@dataclass
class Hub:
    """What the replaying server answers, and every request it saw."""

    url: str
    answers: dict[str, Any]
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    """(path, Authorization header) per request."""
    fail: tuple[int, dict[str, str], bytes] | None = None
    """Answer every request with this (status, headers, body) instead."""
    moved: dict[str, str] = field(default_factory=dict)
    """Model -> the URL prefix (scheme and host) and model its requests are redirected to (a renamed repo)."""

    def paths(self) -> list[str]:
        return [path for path, _ in self.requests]


_PATH = re.compile(r"^/api/models/(?P<model>[^/]+/[^/]+)/revision/(?P<ref>[^/]+)$")


def _answer(hub: Hub, path: str, authorization: str | None) -> tuple[int, dict[str, str], bytes]:
    if hub.fail is not None:
        return hub.fail
    match = _PATH.match(path)
    if match is None:
        return 404, {}, b"Not Found"
    model, ref = unquote(match["model"]), unquote(match["ref"])
    if model in hub.moved:
        return 307, {"Location": f"{hub.moved[model]}/revision/{match['ref']}"}, b""
    refs = hub.answers.get(model)
    may_read = refs is not None and (
        not any(info.get("private") for info in refs.values()) or authorization == f"Bearer {TOKEN}"
    )
    if not may_read:
        if authorization is None:
            return 401, {}, b'{"error":"Invalid username or password."}'
        return 404, {"X-Error-Code": "RepoNotFound"}, b'{"error":"Repository not found"}'
    assert refs is not None
    info = refs.get(ref) or next((i for i in refs.values() if i["sha"] == ref), None)
    if info is None:
        return 404, {"X-Error-Code": "RevisionNotFound"}, json.dumps({"error": f"Invalid rev id: {ref}"}).encode()
    return 200, {"Content-Type": "application/json"}, json.dumps(info).encode()


@pytest.fixture
def hub() -> Iterator[Hub]:
    state = Hub("", json.loads(json.dumps(ANSWERS)))

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            authorization = self.headers.get("Authorization")
            state.requests.append((self.path, authorization))
            status, headers, body = _answer(state, self.path, authorization)
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project directory with the real Pulumi.yaml and __main__.py and the fixture as stack ``sample``."""
    for name in ("Pulumi.yaml", "__main__.py"):
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / "stacks").mkdir()
    shutil.copy(FIXTURES / "models_pin_stack.yaml", tmp_path / "stacks" / "Pulumi.sample.yaml")
    return tmp_path


def stack_file(project: Path) -> Path:
    return project / "stacks" / "Pulumi.sample.yaml"


def nodes(project: Path) -> list[dict[str, Any]]:
    config: dict[str, Any] = yaml.safe_load(stack_file(project).read_text())["config"]
    return list(config["lmrun:nodes"])


def pin(project: Path, hub: Hub, *, token: str | None = None, **kwargs: Any) -> tuple[ModelPinResult, str]:
    out = io.StringIO()
    result = pin_stack_models(
        project,
        stack="sample",
        client=HubClient(hub.url, token=token),
        console=Console(file=out, width=200),
        **kwargs,
    )
    return result, out.getvalue()


def cli(project: Path, hub: Hub, *args: str) -> list[str]:
    return ["models", "pin", "--stack", "sample", "--project-dir", str(project), "--endpoint", hub.url, *args]


def test_pin_resolves_each_node_and_records_who_may_download_it(project: Path, hub: Hub) -> None:
    result, out = pin(project, hub)

    assert [(n["name"], n["modelRevision"], n["modelAccess"]) for n in nodes(project)] == [
        ("qwen-a", QWEN, "public"),  # no revision: main's commit
        ("qwen-b", QWEN, "public"),  # a branch name: its commit
        ("phi", PHI_PINNED, "public"),  # pinned: kept, not moved to main
        ("llama", LLAMA, "gated"),  # gated: "manual" on the Hub
    ]
    assert result.written and "wrote:" in out
    assert "lmrun:huggingFaceToken is not set and llama (gated) needs it (the plan refuses" in out
    # One request per model and ref: the two Qwen nodes share main; the pinned Phi is asked by its commit.
    assert hub.paths() == [
        "/api/models/Qwen/Qwen2.5-7B-Instruct/revision/main",
        f"/api/models/microsoft/Phi-3.5-mini-instruct/revision/{PHI_PINNED}",
        "/api/models/meta-llama/Llama-3.1-8B-Instruct/revision/main",
    ]
    assert all(auth is None for _, auth in hub.requests)  # no HF_TOKEN, no Authorization header


def test_comments_key_order_and_the_rest_of_the_file_survive(project: Path, hub: Hub) -> None:
    before = stack_file(project).read_text()
    pin(project, hub)
    after = stack_file(project).read_text()

    # Every line but the revisions survives, in order; each new line sits right after its related key.
    added = [line for line in after.splitlines() if line not in before.splitlines()]
    assert added == [
        f"      modelRevision: {QWEN}",
        "      modelAccess: public",
        f"      modelRevision: {QWEN} # a branch: the pin replaces it with its commit",
        "      modelAccess: public",
        "      modelAccess: public",
        f"      modelRevision: {LLAMA}",
        "      modelAccess: gated",
    ]
    removed = [line for line in before.splitlines() if line not in after.splitlines()]
    assert removed == ["      modelRevision: main  # a branch: the pin replaces it with its commit"]
    block = after.split("    - name: qwen-a\n", 1)[1].split("    - name: qwen-b\n", 1)[0]
    assert block.splitlines() == [
        "      region: us-east-1",
        "      gpu: L4",
        "      model: Qwen/Qwen2.5-7B-Instruct  # no revision yet",
        f"      modelRevision: {QWEN}",
        "      modelAccess: public",
        "      # the node port every replica shares",  # the comment that followed `model` stays above nodePort
        "      nodePort: 30080",
    ]
    assert after.endswith("    enabled: false\n# end of the stack file\n")


def test_a_pinned_stack_plans_and_a_second_pin_changes_nothing(
    project: Path, hub: Hub, capsys: pytest.CaptureFixture[str]
) -> None:
    pin(project, hub)
    first = stack_file(project).read_text()
    hub.requests.clear()
    result, out = pin(project, hub)
    assert not result.changed and not result.written and out.rstrip().endswith(f"unchanged: {stack_file(project)}")
    assert stack_file(project).read_text() == first
    # Pinned commits are asked by commit: a second run checks them and moves nothing.
    assert hub.paths() == [
        f"/api/models/Qwen/Qwen2.5-7B-Instruct/revision/{QWEN}",
        f"/api/models/microsoft/Phi-3.5-mini-instruct/revision/{PHI_PINNED}",
        f"/api/models/meta-llama/Llama-3.1-8B-Instruct/revision/{LLAMA}",
    ]


def test_update_moves_pinned_nodes_to_the_current_main(project: Path, hub: Hub) -> None:
    pin(project, hub)
    result, _ = pin(project, hub, update=True)
    assert [n["modelRevision"] for n in nodes(project)] == [QWEN, QWEN, PHI_MAIN, LLAMA]
    assert [p.target.name for p in result.pins if p.changed] == ["phi"]
    assert f"-      modelRevision: {PHI_PINNED}\n+      modelRevision: {PHI_MAIN}\n" in result.diff


def test_dry_run_prints_the_diff_and_writes_nothing(
    project: Path, hub: Hub, capsys: pytest.CaptureFixture[str]
) -> None:
    before = stack_file(project).read_text()
    assert main(cli(project, hub, "--dry-run")) == 0
    out = capsys.readouterr().out
    assert stack_file(project).read_text() == before
    assert f"+      modelRevision: {LLAMA}\n+      modelAccess: gated\n" in out
    assert "would write (dry run)" in out


def test_the_plan_refuses_a_gated_model_until_the_token_is_set(
    project: Path, hub: Hub, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 12: "a gated model without a Hugging Face token plans cleanly". Before the pin the plan cannot
    know; once the pin recorded ``modelAccess: gated``, the plan names the node and the missing token."""
    plan = ["plan", "--stack", "sample", "--project-dir", str(project), "--json"]
    document = yaml.safe_load(stack_file(project).read_text())
    for entry, revision in zip(document["config"]["lmrun:nodes"], [QWEN, QWEN, PHI_PINNED, LLAMA], strict=True):
        entry["modelRevision"] = revision  # pinned by hand, as before the command existed
    stack_file(project).write_text(yaml.safe_dump(document))
    assert main(plan) == 0, capsys.readouterr().err  # the reported behaviour: the gated model plans cleanly
    capsys.readouterr()

    assert main(cli(project, hub)) == 0
    capsys.readouterr()
    assert [entry.get("modelAccess") for entry in nodes(project)] == ["public", "public", "public", "gated"]
    assert main(plan) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        "lmrun:nodes[3].modelAccess: node 'llama' serves meta-llama/Llama-3.1-8B-Instruct, which is gated on the "
        "Hugging Face Hub, and lmrun:huggingFaceToken is not set: pulumi config set --secret huggingFaceToken "
        "hf_... (a token whose account may download it)"
    ]

    # `pulumi config set --secret huggingFaceToken ...` writes an encrypted value: the offline plan sees a secret.
    document = yaml.safe_load(stack_file(project).read_text())
    document["config"]["lmrun:huggingFaceToken"] = {"secure": "v1:AAAAAAAAAAAAAAAA"}
    stack_file(project).write_text(yaml.safe_dump(document))
    assert main(plan) == 0, capsys.readouterr().err


@pytest.mark.parametrize(
    ("access", "token", "refused"),
    [("public", None, False), ("gated", None, True), ("private", None, True), ("gated", "hf_x", False)],
)
def test_model_access_issues(access: str, token: str | None, refused: bool) -> None:
    node = {
        "name": "n1",
        "region": "us-east-1",
        "gpu": "L4",
        "model": "org/model",
        "modelRevision": QWEN,
        "modelAccess": access,
        "nodePort": 30080,
    }
    raw: dict[str, Any] = {"mainRegion": "us-east-1", "images": pinned_images("us-east-1"), "nodes": [node]}
    if token is not None:
        raw["huggingFaceToken"] = token
    spec = parse_spec(raw)
    issues = model_access_issues(spec)
    assert [issue.path for issue in issues] == (["lmrun:nodes[0].modelAccess"] if refused else [])
    if refused:
        assert f"which is {access} on the Hugging Face Hub" in issues[0].message
        with pytest.raises(PlanError):
            plan_mesh(spec, mesh="t")
    else:
        plan_mesh(spec, mesh="t")


def test_model_access_is_one_of_three_values() -> None:
    raw = {
        "mainRegion": "us-east-1",
        "nodes": [
            {"name": "n", "gpu": "L4", "model": "o/m", "modelRevision": QWEN, "modelAccess": "yes", "nodePort": 30080}
        ],
    }
    with pytest.raises(
        ValueError, match=r"lmrun:nodes\[0\]\.modelAccess: should be one of 'public', 'gated' or 'private'"
    ):
        parse_spec(raw)


def test_unknown_models_and_revisions_are_one_line_each_exit_2_and_nothing_written(
    project: Path, hub: Hub, capsys: pytest.CaptureFixture[str]
) -> None:
    text = stack_file(project).read_text()
    text = text.replace("model: microsoft/Phi-3.5-mini-instruct", "model: microsoft/Phi-9-nonexistent")
    text = text.replace("modelRevision: main  #", "modelRevision: v9.9  #")
    text = text.replace("  # no revision yet", "\n      modelRevision: v9.9")
    stack_file(project).write_text(text)

    assert main(cli(project, hub)) == 2
    out, err = capsys.readouterr()
    assert stack_file(project).read_text() == text and out == ""
    assert err.splitlines() == [
        f"error: models not pinned: lmrun:nodes[{index}].modelRevision: Qwen/Qwen2.5-7B-Instruct has no branch, tag "
        "or commit 'v9.9' on the Hub"
        for index in (0, 1)
    ] + [
        "error: models not pinned: lmrun:nodes[2].model: microsoft/Phi-9-nonexistent is not on the Hugging Face "
        "Hub, or is private and HF_TOKEN is not set (HTTP 401)",
    ]
    # Every node is reported, each question asked once (the two Qwen nodes share one answer).
    assert hub.paths() == [
        "/api/models/Qwen/Qwen2.5-7B-Instruct/revision/v9.9",
        f"/api/models/microsoft/Phi-9-nonexistent/revision/{PHI_PINNED}",
        "/api/models/meta-llama/Llama-3.1-8B-Instruct/revision/main",
    ]


def test_a_private_model_needs_hf_token_which_is_sent_as_a_bearer_token(
    project: Path, hub: Hub, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    text = stack_file(project).read_text().replace("meta-llama/Llama-3.1-8B-Instruct", "acme/private-model")
    stack_file(project).write_text(text)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    assert main(cli(project, hub)) == 2
    assert "lmrun:nodes[3].model: acme/private-model is not on the Hugging Face Hub, or is private" in (
        capsys.readouterr().err
    )

    monkeypatch.setenv("HF_TOKEN", "hf_WrongToken")
    assert main(cli(project, hub)) == 2
    assert "or is private and HF_TOKEN cannot read it (HTTP 404)" in capsys.readouterr().err

    monkeypatch.setenv("HF_TOKEN", TOKEN)
    hub.requests.clear()
    assert main(cli(project, hub)) == 0
    assert TOKEN not in capsys.readouterr().out  # the token is never printed
    assert nodes(project)[3]["modelAccess"] == "private"
    assert {auth for _, auth in hub.requests} == {f"Bearer {TOKEN}"}


@pytest.mark.parametrize(
    ("status", "headers", "body", "message"),
    [
        (
            429,
            {"RateLimit": '"api";r=0;t=55', "RateLimit-Policy": '"fixed window";"api";q=500;w=300'},
            b"",
            "the Hub rate-limited this machine (HTTP 429): retry in 55 s, or set HF_TOKEN (authenticated requests "
            "get a higher limit)",
        ),
        (429, {"Retry-After": "7"}, b"", "(HTTP 429): retry in 7 s, or set HF_TOKEN"),
        (429, {}, b"", "(HTTP 429): retry later, or set HF_TOKEN"),
        (503, {}, b"", "the Hub answered HTTP 503"),
        (200, {}, b"<html>", "the Hub answered something that is not JSON"),
        (200, {}, b'{"id": "x"}', "the Hub's answer has no 40-hex commit 'sha' (got None)"),
    ],
)
def test_a_hub_that_cannot_answer_is_one_line_exit_1_and_stops_the_lookups(
    project: Path,
    hub: Hub,
    capsys: pytest.CaptureFixture[str],
    status: int,
    headers: dict[str, str],
    body: bytes,
    message: str,
) -> None:
    before = stack_file(project).read_text()
    hub.fail = (status, headers, body)
    assert main(cli(project, hub)) == 1
    out, err = capsys.readouterr()
    assert (out, stack_file(project).read_text()) == ("", before)
    [line] = err.splitlines()
    assert line.startswith(f"error: models not pinned: {hub.url}/api/models/Qwen/Qwen2.5-7B-Instruct/revision/main: ")
    assert message in line
    assert len(hub.requests) == 1  # no point asking again


def test_no_network_is_one_line_exit_1(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = stack_file(project).read_text()
    code = main(
        ["models", "pin", "--stack", "sample", "--project-dir", str(project), "--endpoint", "http://127.0.0.1:9"]
    )
    assert code == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("error: models not pinned: http://127.0.0.1:9/api/models/Qwen/Qwen2.5-7B-Instruct/revision/")
    assert "cannot reach the Hugging Face Hub: " in line
    assert stack_file(project).read_text() == before


def test_a_malformed_model_id_is_refused_before_the_hub_is_asked(
    project: Path, hub: Hub, capsys: pytest.CaptureFixture[str]
) -> None:
    text = stack_file(project).read_text().replace("model: microsoft/Phi-3.5-mini-instruct", "model: phi")
    stack_file(project).write_text(text)
    with pytest.raises(ModelPinError, match=r"lmrun:nodes\[2\]\.model: 'phi' is not a Hugging Face model id"):
        pin(project, hub)
    assert hub.requests == []


def test_refs_are_quoted_as_one_path_segment(hub: Hub) -> None:
    client = HubClient(hub.url + "/")
    assert client.url("org/m", "refs/pr/1") == f"{hub.url}/api/models/org/m/revision/refs%2Fpr%2F1"


@pytest.mark.parametrize("same_host", [True, False], ids=["same-host", "other-host"])
def test_a_renamed_repo_is_followed_and_the_token_stays_on_the_hubs_host(
    project: Path, hub: Hub, same_host: bool
) -> None:
    text = stack_file(project).read_text().replace("meta-llama/Llama-3.1-8B-Instruct", "meta-llama/Llama-3.1-8B-Old")
    stack_file(project).write_text(text)
    # 127.0.0.1 and localhost are the same server under two host names.
    host = hub.url if same_host else hub.url.replace("127.0.0.1", "localhost")
    hub.moved["meta-llama/Llama-3.1-8B-Old"] = f"{host}/api/models/meta-llama/Llama-3.1-8B-Instruct"
    pin(project, hub, token=TOKEN)
    assert nodes(project)[3]["modelRevision"] == LLAMA
    old, new = hub.requests[-2:]
    assert old == ("/api/models/meta-llama/Llama-3.1-8B-Old/revision/main", f"Bearer {TOKEN}")
    assert new == (
        "/api/models/meta-llama/Llama-3.1-8B-Instruct/revision/main",
        f"Bearer {TOKEN}" if same_host else None,
    )


@pytest.mark.parametrize("stack", ["dev", "global", "fleet"])
def test_the_example_stacks_pins_are_what_the_hub_says(stack: str, tmp_path: Path, hub: Hub) -> None:
    """Pinning the embedded stacks (whose commits the replayed answers hold) keeps every revision and inserts
    only each node's (and each replica group's: `fleet`) access, next to its revision, in the real files'
    layout."""
    for name in ("Pulumi.yaml", "__main__.py"):
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / "stacks").mkdir()
    shutil.copy(ROOT / "stacks" / f"Pulumi.{stack}.yaml", tmp_path / "stacks" / f"Pulumi.{stack}.yaml")
    result = pin_stack_models(
        tmp_path, stack=stack, client=HubClient(hub.url), dry_run=True, console=Console(file=io.StringIO())
    )
    assert result.pins and all(pin.sha == pin.target.revision for pin in result.pins)
    changes = [line for line in result.diff.splitlines()[2:] if line[:1] in "+-"]
    assert changes == ["+      modelAccess: public"] * len(result.pins)
    if stack == "fleet":
        assert {pin.target.where[0] for pin in result.pins} == {"groups"}
