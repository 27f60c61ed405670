"""``lmrun pins check`` against recorded PyPI JSON responses (no network: a local server replays them).

``tests/fixtures/pypi/<name>.json`` are PyPI's ``/pypi/<name>/json`` answers for the pinned releases, trimmed
to the fields the command reads (``info``; the pinned release's files with ``requires_python``, ``digests``).
Bumping a pin means re-recording its file; ``lmrun pins check`` prints the live values.
"""

from __future__ import annotations

import copy
import http.server
import importlib.util
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from lmrun.cli import main
from lmrun.cli.pins import (
    PinsLookupError,
    check_pins,
    compare_requires_python,
    compare_uv_wheel,
    fetch_json,
    release_files,
)
from lmrun.domain.versions import PHOENIX, PYTHON_PINS, UV, VLLM, PythonPin

FIXTURES = Path(__file__).parent / "fixtures" / "pypi"
INDEX = "https://pypi.org/pypi"


def _recorded() -> dict[str, Any]:
    """``name -> project JSON`` as recorded."""
    return {path.stem: json.loads(path.read_text()) for path in sorted(FIXTURES.glob("*.json"))}


def _project_only(documents: dict[str, Any]) -> Any:
    """A fetch answering the project URLs and 404 (None) for the per-release ones (what the recorded index did)."""

    def fetch(url: str) -> Any:
        assert url.startswith(f"{INDEX}/") and url.endswith("/json"), url
        parts = url[len(INDEX) + 1 :].split("/")
        return copy.deepcopy(documents.get(parts[0])) if len(parts) == 2 else None

    return fetch


def test_the_recorded_pins_match_the_recorded_index() -> None:
    """The values in domain/versions.py are PyPI's (re-record the fixture when bumping a pin)."""
    documents = _recorded()
    assert sorted(documents) == sorted([*(pin.package for pin in PYTHON_PINS), "uv"])
    rows = check_pins(_project_only(documents))
    assert [(row.pin, row.fact, row.ok) for row in rows] == [
        (VLLM.requirement, "Requires-Python", True),
        (PHOENIX.requirement, "Requires-Python", True),
        (f"uv=={UV.version}", "wheel sha256", True),
    ]
    assert rows[0].index == "<3.15,>=3.11"


def test_the_files_decide_not_the_project_info() -> None:
    """Phoenix's project ``info`` says ``<3.16`` while its files (and the wheel's METADATA) say ``<3.15``."""
    phoenix = _recorded()["arize-phoenix"]
    assert phoenix["info"]["requires_python"] == "<3.16,>=3.11"
    assert compare_requires_python(PHOENIX, phoenix["releases"][PHOENIX.version]).ok


def test_drift_is_reported() -> None:
    documents = _recorded()
    for file in documents["vllm"]["releases"][VLLM.version]:
        file["requires_python"] = ">=3.12"
    rows = check_pins(_project_only(documents))
    assert [row.ok for row in rows] == [False, True, True]
    assert str(rows[0]).endswith("DRIFT") and "index >=3.12" in str(rows[0])
    # Specifier sets compare as sets: order and spacing are not drift.
    same = PythonPin("vllm", VLLM.version, ">=3.11, <3.15")
    assert compare_requires_python(same, _recorded()["vllm"]["releases"][VLLM.version]).ok


def test_files_that_disagree_or_are_yanked() -> None:
    files = [{"requires_python": ">=3.11"}, {"requires_python": ">=3.10"}, {"requires_python": ">=3.8", "yanked": True}]
    row = compare_requires_python(PythonPin("x", "1", ">=3.11"), files)
    assert not row.ok and row.index == ">=3.10 | >=3.11"
    assert not compare_requires_python(
        PythonPin("x", "1", ">=3.11"), [{"requires_python": ">=3.11", "yanked": True}]
    ).ok
    assert compare_requires_python(PythonPin("x", "1", ""), [{"requires_python": None}]).ok


def test_the_uv_wheel_must_be_a_file_of_the_release_with_the_recorded_sha256() -> None:
    files = _recorded()["uv"]["releases"][UV.version]
    assert compare_uv_wheel(UV, files).ok
    tampered = [{**f, "digests": {"sha256": "0" * 64}} for f in files]
    assert not compare_uv_wheel(UV, tampered).ok
    assert compare_uv_wheel(UV, [f for f in files if "x86_64.manylinux2014" not in f["filename"]]).index.startswith(
        "(no file uv-"
    )


def test_a_missing_release_is_an_error() -> None:
    with pytest.raises(PinsLookupError, match=r"vllm==9\.9\.9: no such release"):
        release_files("vllm", "9.9.9", _project_only(_recorded()), INDEX)


# --- the command, against a local server replaying the recordings ---------------------------------------------


class _Index(http.server.BaseHTTPRequestHandler):
    documents: ClassVar[dict[str, Any]] = {}
    per_release: ClassVar[bool] = False
    requests: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.requests.append(self.path)
        parts = self.path.strip("/").split("/")  # pypi/<name>[/<version>]/json
        document = self.documents.get(parts[1]) if len(parts) in (3, 4) else None
        if document is not None and len(parts) == 4:
            files = document["releases"].get(parts[2]) if self.per_release else None
            document = {"info": document["info"], "urls": files} if files else None
        if document is None:
            self.send_response(404)
            self.end_headers()
            return
        body = json.dumps(document).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def index() -> Iterator[tuple[str, type[_Index]]]:
    handler = type("Index", (_Index,), {"documents": _recorded(), "per_release": False, "requests": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/pypi", handler
    finally:
        server.shutdown()
        server.server_close()


def test_pins_check_exits_0_when_the_index_agrees(
    index: tuple[str, type[_Index]], capsys: pytest.CaptureFixture[str]
) -> None:
    url, handler = index
    assert main(["pins", "check", "--index-url", url]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 3 and all(line.endswith(" ok") for line in out), out
    # The per-release URL first, the project's when the index has none.
    assert handler.requests[:2] == [f"/pypi/vllm/{VLLM.version}/json", "/pypi/vllm/json"]
    handler.per_release = True
    handler.requests.clear()
    assert main(["pins", "check", "--index-url", url + "/"]) == 0
    assert handler.requests == [
        f"/pypi/vllm/{VLLM.version}/json",
        f"/pypi/arize-phoenix/{PHOENIX.version}/json",
        f"/pypi/uv/{UV.version}/json",
    ]


def test_pins_check_exits_1_on_drift(index: tuple[str, type[_Index]], capsys: pytest.CaptureFixture[str]) -> None:
    url, handler = index
    for file in handler.documents["arize-phoenix"]["releases"][PHOENIX.version]:
        file["requires_python"] = ">=3.12,<3.16"
    assert main(["pins", "check", "--index-url", url]) == 1
    [drift] = [line for line in capsys.readouterr().out.splitlines() if line.endswith("DRIFT")]
    assert drift.startswith(PHOENIX.requirement) and "index >=3.12,<3.16" in drift


def test_pins_check_exits_1_when_the_index_cannot_be_read(
    index: tuple[str, type[_Index]], capsys: pytest.CaptureFixture[str]
) -> None:
    url, handler = index
    del handler.documents["uv"]
    assert main(["pins", "check", "--index-url", url]) == 1
    assert f"uv=={UV.version}: no such release" in capsys.readouterr().err
    assert main(["pins", "check", "--index-url", "http://127.0.0.1:9/pypi"]) == 1
    assert fetch_json(f"{url}/nothing/json") is None


def test_the_recorder_writes_what_the_tests_read(tmp_path: Path) -> None:
    """scripts/record_pypi_fixtures.py trims a full PyPI answer to exactly the recorded shape."""
    spec = importlib.util.spec_from_file_location(
        "lmrun_record_pypi", FIXTURES.parents[2] / "scripts" / "record_pypi_fixtures.py"
    )
    assert spec is not None and spec.loader is not None
    recorder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recorder)
    for name, document in _recorded().items():
        [version] = document["releases"]
        full = copy.deepcopy(document)
        full["info"]["description"] = "long text"
        full["releases"]["0.0.1"] = []
        for file in full["releases"][version]:
            file.update({"size": 1, "digests": {**file["digests"], "md5": "x"}})
        assert recorder.trimmed(full, version) == document, name
