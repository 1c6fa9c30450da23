"""Every bad manifest set of the corpus, through the CLI: exit 1, one `Error:` naming file and
line, no traceback, no connection to the API, and the state file untouched."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from corpus import bad_cases, expectations, materialize

from reconciler.cli import main
from reconciler.state import LocalStateStore
from reconciler.state.conformance import sample_state

CLOSED_ENDPOINT = "http://127.0.0.1:9"
# A definite answer, so a client that does get through fails at once instead of retrying.
REFUSAL = b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"


class ConnectionCounter:
    """A loopback listener that counts every connection made to it (an API call would be one)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            with conn:
                conn.settimeout(1)
                try:
                    conn.recv(65536)
                    conn.sendall(REFUSAL)
                except OSError:
                    pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture(scope="module")
def api() -> Iterator[ConnectionCounter]:
    counter = ConnectionCounter()
    yield counter
    counter.close()


def prepared(case: Path, root: Path, port: int) -> tuple[Path, bytes]:
    """The case, pointed at the counting listener, with a real state file to keep intact."""
    materialize(case, root)
    for manifest in root.glob("*.yaml"):
        if manifest.stat().st_size < 1_000_000:
            text = manifest.read_bytes().replace(CLOSED_ENDPOINT.encode(), f"http://127.0.0.1:{port}".encode())
            manifest.write_bytes(text)
    store = LocalStateStore(root / ".reconciler" / "state.json")
    store.write(sample_state())
    return store.path, store.path.read_bytes()


COMMANDS = [("validate",), ("plan",), ("plan", "--no-refresh"), ("apply", "--auto-approve")]


@pytest.mark.parametrize("case", bad_cases(), ids=lambda p: p.name)
def test_bad_manifests_are_refused_cleanly(case: Path, tmp_path: Path, api: ConnectionCounter) -> None:
    root = tmp_path / case.name
    state_file, before = prepared(case, root, api.port)
    env = {"HW_ACCESS_KEY": "AKCORPUS", "HW_SECRET_KEY": "corpus-secret", "RECONCILER_DEBUG": "0"}
    runner = CliRunner()
    connections = api.connections
    for command in COMMANDS:
        result = runner.invoke(main, [*command, str(root)], env=env)
        assert result.exit_code == 1, (command, result.output)
        assert result.stderr.startswith("Error: "), (command, result.stderr)
        assert "Traceback" not in result.stderr + result.stdout
        for expected in expectations(case):
            assert expected in result.stderr, (command, expected, result.stderr)
    assert api.connections == connections, "a bad manifest set reached the API"
    assert state_file.read_bytes() == before
    assert sorted(p.name for p in state_file.parent.iterdir()) == ["state.json"]  # no journal, lock or simulator state


def test_the_corpus_is_large_enough() -> None:
    assert len(bad_cases()) >= 30


def test_a_valid_manifest_set_does_reach_the_listener(tmp_path: Path, api: ConnectionCounter) -> None:
    """The check above can fail: the same setup with good manifests makes API calls."""
    case = next(c for c in bad_cases() if c.name == "bad-image-type")
    root = tmp_path / "good"
    prepared(case, root, api.port)
    group = root / "group.yaml"
    group.write_text(group.read_text().replace("type: golden", "type: gold"))
    before = api.connections
    result = CliRunner().invoke(main, ["plan", str(root)], env={"HW_ACCESS_KEY": "AK", "HW_SECRET_KEY": "SK"})
    assert result.exit_code == 1 and "HTTP 400" in result.stderr
    assert api.connections > before
