"""A fake ``curl`` for tests that run the mesh's K3s install step: there is no K3s server to join and GitHub is
unreachable, so the download of K3s's installer gets an installer that records how it was run."""

from __future__ import annotations

K3S_INSTALLER_URL = "https://raw.githubusercontent.com/k3s-io/k3s/*/install.sh"
"""The pattern (a shell ``case`` glob) of the pinned installer's URL the mesh's scripts download."""

_SCRIPT = r"""#!/bin/sh
# Test stand-in for curl: the pinned K3s installer's download gets an installer that records how it was run
# (INSTALL_K3S_VERSION and its arguments, one per line, in ARGS_FILE).
out="" prev="" k3s=""
for arg in "$@"; do
    if [ "$prev" = "-o" ]; then out="$arg"; fi
    case "$arg" in URL_GLOB) k3s=1 ;; esac
    prev="$arg"
done
if [ -n "$k3s" ] && [ -n "$out" ]; then
    cat >"$out" <<'INSTALLER'
#!/bin/sh
mkdir -p "$(dirname ARGS_FILE)"
{ echo "INSTALL_K3S_VERSION=$INSTALL_K3S_VERSION"; printf '%s\n' "$@"; } >ARGS_FILE
INSTALLER
    exit 0
fi
OTHERWISE
"""


def fake_k3s_curl(args_file: str, *, real_curl_otherwise: bool) -> str:
    """The fake curl's script: the installer it hands out writes ``args_file``; any other call goes to the real
    curl (``real_curl_otherwise``) or fails with exit 7 (a test that expects no other download)."""
    otherwise = 'exec /usr/bin/curl "$@"' if real_curl_otherwise else 'echo "fake curl: unexpected call $*" >&2; exit 7'
    return (
        _SCRIPT.replace("URL_GLOB", K3S_INSTALLER_URL).replace("ARGS_FILE", args_file).replace("OTHERWISE", otherwise)
    )
