"""``lmrun models pin``: pin every node's model to a commit of its Hugging Face repo, and record whether the
model is gated, by asking the Hub's HTTP API once, on a machine with internet.

vLLM downloads a node's model at the revision the stack pins (``modelRevision``: a 40-hex commit, because
branches and tags move). Looking the commit up by hand is toil, and whether a model is gated (its files need
a token whose account accepted the terms) is a fact the offline plan cannot know. This command reads both from
``GET {endpoint}/api/models/{model}/revision/{ref}`` (the Hub's model info at a revision: ``sha``, the commit;
``gated``, ``false``, ``"auto"`` or ``"manual"``; ``private``; see huggingface_hub's ``HfApi.model_info``) and
writes them into each node's ``modelRevision`` and ``modelAccess`` (``public``, ``gated`` or ``private``) in the
stack file, keeping its comments and key order; the plan then refuses a gated or private model without
``lmrun:huggingFaceToken`` (:mod:`lmrun.plan.models`).

Which ref a node is pinned to:

- no ``modelRevision``: ``main``;
- a branch or tag name in ``modelRevision`` (``main``, ``v1.0``): that ref's current commit;
- a commit already pinned: kept (the Hub is asked for it, which checks that it exists and refreshes
  ``modelAccess``); with ``--update``, moved to the current commit of ``main``.

One request per model and ref. ``HF_TOKEN`` (the variable huggingface_hub reads), when set, is sent as a
bearer token: private models need it, and authenticated requests get a higher rate limit. A model or revision
the Hub does not know is one line naming its config path (exit 2); a rate limit, a server error or no network
is one line with the URL (exit 1), and stops the lookups. Nothing is written unless every node resolved.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from email.message import Message
from http.client import HTTPMessage
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote, urlsplit

from rich.console import Console
from rich.table import Table

from lmrun.domain.errors import EXIT_OK, InputError, LmrunError
from lmrun.spec.config import PREFIX, namespaced
from lmrun.spec.errors import config_path
from lmrun.spec.nodes import ModelAccess, model_id
from lmrun.spec.stackfile import load_stack_config

HUB = "https://huggingface.co"
"""The Hugging Face Hub (``--endpoint`` or ``HF_ENDPOINT`` point the command at another, e.g. a mirror)."""
DEFAULT_REF = "main"
"""The branch a node without a revision (or every node, with ``--update``) is pinned to."""
TOKEN_VARIABLE = "HF_TOKEN"
ENDPOINT_VARIABLE = "HF_ENDPOINT"

MODEL_LISTS: tuple[str, ...] = ("nodes", "groups", "elasticServices")
"""Config keys whose entries serve a model with ``model``, ``modelRevision`` and ``modelAccess`` fields (a
node, every replica of a group, every replica of an elastic service)."""

REVISION_FIELD = "modelRevision"
ACCESS_FIELD = "modelAccess"
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


class _PinProblemsError(LmrunError):
    """Every node (or request) that could not be pinned, one line each: nothing was written."""

    label = "error: models not pinned"

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(self.problems))

    def lines(self) -> list[str]:
        """One line per problem, each starting with its config path or URL."""
        return [f"{self.label}: {problem}" for problem in self.problems]


class ModelPinError(_PinProblemsError, InputError):
    """The Hub does not know a model or revision the stack names (or the token cannot read it): exit 2."""


class HubUnavailableError(_PinProblemsError):
    """The Hub could not answer (rate limit, server error, no network): exit 1."""


@dataclass(frozen=True)
class HubAnswer:
    """One HTTP answer of the Hub: status, headers and body."""

    status: int
    headers: Mapping[str, str]
    body: bytes


Transport = Callable[[str, Mapping[str, str]], HubAnswer]
"""``(url, request headers) -> answer``; raises ``OSError`` (``URLError``, timeouts) when there is none."""


class _SameHostAuthorization(urllib.request.HTTPRedirectHandler):
    """Follows redirects (a renamed repo answers from its new name) but never carries the token to another
    host, as requests does: only the Hub the operator named sees it."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and urlsplit(newurl).netloc != urlsplit(req.full_url).netloc:
            new.remove_header("Authorization")
        return new


_OPENER = urllib.request.build_opener(_SameHostAuthorization)


def urllib_transport(url: str, headers: Mapping[str, str], timeout: float = 30.0) -> HubAnswer:
    """GET ``url`` with urllib (redirects followed, the token kept on the Hub's host)."""
    request = urllib.request.Request(url, headers=dict(headers))
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            return HubAnswer(response.status, _lower(response.headers), response.read())
    except urllib.error.HTTPError as exc:
        return HubAnswer(exc.code, _lower(exc.headers), exc.read())


def _lower(headers: Message) -> dict[str, str]:
    return {key.lower(): value for key, value in headers.items()}


@dataclass(frozen=True)
class ModelTarget:
    """One entry of the stack that serves a model, as the stack file has it."""

    where: tuple[str, int]
    """Its config location, e.g. ``("nodes", 2)``."""
    name: str
    model: str
    revision: str | None
    """``modelRevision`` as written: a commit, a branch or tag name, or None."""
    access: str | None
    """``modelAccess`` as written, or None."""

    def ref(self, update: bool) -> str:
        """The revision to ask the Hub for."""
        if self.revision is None or (update and _COMMIT.match(self.revision)):
            return DEFAULT_REF
        return self.revision

    def path(self, field: str) -> str:
        return config_path((*self.where, field))


@dataclass(frozen=True)
class ResolvedModel:
    """What the Hub says of a model at a ref."""

    sha: str
    access: ModelAccess


@dataclass(frozen=True)
class ModelPin:
    """One target with its pin before and after."""

    target: ModelTarget
    ref: str
    sha: str
    access: ModelAccess

    @property
    def fields(self) -> dict[str, str]:
        """The fields written into the entry, in the order they appear in it."""
        return {REVISION_FIELD: self.sha, ACCESS_FIELD: self.access}

    @property
    def changed(self) -> bool:
        return self.target.revision != self.sha or self.target.access != self.access


@dataclass(frozen=True)
class ModelPinResult:
    """What ``lmrun models pin`` resolved, the diff of the stack file, and whether it was written."""

    path: Path
    pins: tuple[ModelPin, ...]
    diff: str
    written: bool
    token_set: bool
    """Whether the stack sets ``lmrun:huggingFaceToken`` (gated and private models need it)."""

    @property
    def changed(self) -> bool:
        return bool(self.diff)


def model_targets(raw: Mapping[str, Any]) -> tuple[list[ModelTarget], list[str]]:
    """The entries that serve a model, and one problem per entry whose model id cannot be asked for.

    Entries that are not mappings, or carry no ``model`` string, are left to the plan (it names them).
    """
    targets: list[ModelTarget] = []
    problems: list[str] = []
    for key in MODEL_LISTS:
        entries = raw.get(key)
        if not isinstance(entries, list):
            continue
        for index, entry in enumerate(entries):
            if not isinstance(entry, dict) or not isinstance(entry.get("model"), str):
                continue
            revision = entry.get(REVISION_FIELD)
            access = entry.get(ACCESS_FIELD)
            target = ModelTarget(
                where=(key, index),
                name=str(entry.get("name", f"{key}[{index}]")),
                model=entry["model"],
                revision=str(revision) if revision not in (None, "") else None,
                access=str(access) if access is not None else None,
            )
            try:
                model_id(target.model)
            except ValueError as exc:
                problems.append(f"{target.path('model')}: {exc}")
                continue
            targets.append(target)
    return targets, problems


def _seconds_to_wait(headers: Mapping[str, str]) -> str | None:
    """When to retry after a 429: ``Retry-After``, else the reset time of the Hub's ``RateLimit`` header
    (``"api";r=0;t=55``, IETF draft-ietf-httpapi-ratelimit-headers, as the Hub documents in "Hub Rate limits")."""
    retry_after = headers.get("retry-after", "").strip()
    if retry_after.isdigit():
        return retry_after
    reset = re.search(r"(?:^|;)\s*t=(\d+)", headers.get("ratelimit", ""))
    return reset.group(1) if reset else None


class HubClient:
    """Reads model info from the Hub, one request per model and ref (answers are remembered)."""

    def __init__(self, endpoint: str = HUB, *, token: str | None = None, transport: Transport | None = None) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.token = token
        self.transport: Transport = transport or urllib_transport
        self.requests: list[str] = []
        self._answers: dict[str, HubAnswer] = {}

    def url(self, model: str, ref: str) -> str:
        # As huggingface_hub's model_info: the ref is one path segment ("refs/pr/1" is quoted whole).
        return f"{self.endpoint}/api/models/{quote(model, safe='/')}/revision/{quote(ref, safe='')}"

    def resolve(self, target: ModelTarget, ref: str) -> ResolvedModel:
        """The commit and access of ``target``'s model at ``ref``.

        Raises :class:`ModelPinError` (one line naming the config field) when the Hub does not know the model
        or the revision, :class:`HubUnavailableError` when it cannot answer.
        """
        url = self.url(target.model, ref)
        if url not in self._answers:
            headers = {"Accept": "application/json", "User-Agent": "lmrun-models-pin"}
            if self.token:
                headers["Authorization"] = f"Bearer {self.token}"
            self.requests.append(url)
            try:
                self._answers[url] = self.transport(url, headers)
            except OSError as exc:  # URLError, timeouts, refused connections
                reason = getattr(exc, "reason", None) or exc
                raise HubUnavailableError([f"{url}: cannot reach the Hugging Face Hub: {reason}"]) from None
        return self._read(target, ref, url, self._answers[url])

    def _read(self, target: ModelTarget, ref: str, url: str, answer: HubAnswer) -> ResolvedModel:
        code = answer.headers.get("x-error-code", "")
        if answer.status == 200:
            try:
                info = json.loads(answer.body)
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise HubUnavailableError([f"{url}: the Hub answered something that is not JSON"]) from None
            sha = info.get("sha") if isinstance(info, dict) else None
            if not isinstance(sha, str) or not _COMMIT.match(sha):
                raise HubUnavailableError([f"{url}: the Hub's answer has no 40-hex commit 'sha' (got {sha!r})"])
            gated, private = info.get("gated", False), info.get("private", False)
            access: ModelAccess = "private" if private is True else "gated" if gated not in (False, None) else "public"
            return ResolvedModel(sha, access)
        if answer.status == 404 and code == "RevisionNotFound":
            raise ModelPinError(
                [f"{target.path(REVISION_FIELD)}: {target.model} has no branch, tag or commit {ref!r} on the Hub"]
            )
        if answer.status in (401, 403, 404):
            # The Hub answers 401 (no token) or 404 for a repository it does not have and for a private one the
            # caller cannot read: it does not say which (huggingface_hub's RepositoryNotFoundError).
            how = f"{TOKEN_VARIABLE} cannot read it" if self.token else f"{TOKEN_VARIABLE} is not set"
            raise ModelPinError(
                [
                    f"{target.path('model')}: {target.model} is not on the Hugging Face Hub, or is private and "
                    f"{how} (HTTP {answer.status})"
                ]
            )
        if answer.status == 429:
            wait = _seconds_to_wait(answer.headers)
            when = f"retry in {wait} s" if wait else "retry later"
            hint = "" if self.token else f", or set {TOKEN_VARIABLE} (authenticated requests get a higher limit)"
            raise HubUnavailableError([f"{url}: the Hub rate-limited this machine (HTTP 429): {when}{hint}"])
        raise HubUnavailableError([f"{url}: the Hub answered HTTP {answer.status}"])


def resolve_pins(targets: Sequence[ModelTarget], client: HubClient, *, update: bool = False) -> list[ModelPin]:
    """Every target's pin; raises with every unknown model or revision at once, or at the first request the
    Hub could not answer (no point asking a rate-limited or unreachable Hub again)."""
    pins: list[ModelPin] = []
    problems: list[str] = []
    for target in targets:
        ref = target.ref(update)
        try:
            resolved = client.resolve(target, ref)
        except ModelPinError as exc:
            problems.extend(exc.problems)
            continue
        except HubUnavailableError as exc:
            raise HubUnavailableError([*problems, *exc.problems]) from None
        pins.append(ModelPin(target, ref, resolved.sha, resolved.access))
    if problems:
        raise ModelPinError(problems)
    return pins


def pin_stack_models(
    project_dir: Path,
    *,
    stack: str | None = None,
    config_file: Path | None = None,
    client: HubClient | None = None,
    update: bool = False,
    dry_run: bool = False,
    console: Console | None = None,
) -> ModelPinResult:
    """Pin every node's model (see the module's docstring) and write the stack file unless ``dry_run``.

    Only the nodes' ``model`` entries must be readable: the rest of the stack may still be unfinished (a new
    stack's nodes typically lack their revision, which the spec requires). ``client`` defaults to the public
    Hub (``HF_ENDPOINT``) with ``HF_TOKEN``.
    """
    from lmrun.cli.stack_edit import edited_list_entries, stack_diff, write_stack_text  # ruamel: only when pinning

    stack_config = load_stack_config(project_dir, stack=stack, config_file=config_file)
    path = stack_config.source
    raw = namespaced(stack_config.config)
    targets, problems = model_targets(raw)
    if problems:
        raise ModelPinError(problems)
    if client is None:
        client = HubClient(os.environ.get(ENDPOINT_VARIABLE) or HUB, token=os.environ.get(TOKEN_VARIABLE) or None)
    pins = resolve_pins(targets, client, update=update)

    updates: dict[str, dict[int, dict[str, str]]] = {}
    for pin in pins:
        if pin.changed:
            key, index = pin.target.where
            updates.setdefault(f"{PREFIX}{key}", {})[index] = pin.fields
    new_text = edited_list_entries(path, updates, after="model") if updates else ""
    diff = stack_diff(path, new_text) if new_text else ""
    if diff and not dry_run:
        write_stack_text(path, new_text)
    result = ModelPinResult(
        path=path,
        pins=tuple(pins),
        diff=diff,
        written=bool(diff) and not dry_run,
        token_set=bool(raw.get("huggingFaceToken")),
    )
    print_pins(result, console or Console())
    return result


def print_pins(result: ModelPinResult, console: Console) -> None:
    """Each entry's model, the ref asked, the pin before and after, its access; the diff; what was done."""
    table = Table(title=f"Model pins for {result.path.name}")
    table.add_column("entry", overflow="fold")
    for column in ("model", "ref", "pinned before", "pinned now", "access"):
        table.add_column(column, no_wrap=True)
    for pin in result.pins:
        before = pin.target.revision or "-"
        table.add_row(
            f"{pin.target.name} ({config_path(pin.target.where)})",
            pin.target.model,
            pin.ref,
            before,
            pin.sha if pin.sha != before else "(same)",
            pin.access,
        )
    console.print(table)
    needing = [f"{pin.target.name} ({pin.access})" for pin in result.pins if pin.access != "public"]
    if needing and not result.token_set:
        console.print(
            f"lmrun:huggingFaceToken is not set and {', '.join(needing)} need{'s' if len(needing) == 1 else ''} "
            "it (the plan refuses the stack until then): pulumi config set --secret huggingFaceToken hf_...",
            markup=False,
            highlight=False,
        )
    if result.diff:
        console.print(result.diff, highlight=False, markup=False, soft_wrap=True, end="")
    verb = "wrote" if result.written else ("would write (dry run)" if result.changed else "unchanged")
    console.print(f"{verb}: {result.path}")


def add_models_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    add_stack_arguments: Callable[[argparse.ArgumentParser], None],
) -> None:
    """``lmrun models pin`` on the CLI's subcommands (its one registration line in :mod:`lmrun.cli.main`, which
    passes its ``--stack``/``--config-file``/``--project-dir`` arguments)."""
    models = commands.add_parser("models", help="model commands")
    pin = models.add_subparsers(dest="models_command", required=True).add_parser(
        "pin",
        help="pin each node's model to a commit of its Hugging Face repo and record whether it is gated "
        "(the Hub's HTTP API; HF_TOKEN for private models)",
    )
    add_stack_arguments(pin)
    pin.add_argument("--dry-run", action="store_true", help="print the diff; leave the file alone")
    pin.add_argument(
        "--update", action="store_true", help=f"move nodes already pinned to the current commit of {DEFAULT_REF}"
    )
    pin.add_argument(
        "--endpoint",
        metavar="URL",
        help=f"the Hub's address (default: ${ENDPOINT_VARIABLE} or {HUB})",
    )
    pin.set_defaults(handler=_cmd_models_pin)


def _cmd_models_pin(args: argparse.Namespace) -> int:
    endpoint = args.endpoint or os.environ.get(ENDPOINT_VARIABLE) or HUB
    client = HubClient(endpoint, token=os.environ.get(TOKEN_VARIABLE) or None)
    pin_stack_models(
        args.project_dir,
        stack=args.stack,
        config_file=args.config_file,
        client=client,
        update=args.update,
        dry_run=args.dry_run,
    )
    return EXIT_OK
