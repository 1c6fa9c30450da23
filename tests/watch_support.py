"""Helpers for the `reconciler watch` tests: a watch process whose log lines can be waited for,
a webhook sink, and a manifest directory managing a served simulator."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import yaml

PROJECT = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
AK, SK = "WATCHTESTAK00000001", "watch-test-secret"
CREDENTIALS = {"HW_ACCESS_KEY": AK, "HW_SECRET_KEY": SK, "NO_COLOR": "1"}
WAIT_SECONDS = 60.0


def fleet(*desktops: dict[str, Any], **behaviour: Any) -> dict[str, Any]:
    return {
        "project_id": PROJECT,
        "credentials": [{"ak": AK, "sk": SK}],
        "images": [{"id": i, "type": "private"} for i in ("img-old", "img-new", "img-rogue")],
        "desktops": list(desktops),
        "behaviour": {"seed": 7, "job_seconds": 0.2, **behaviour},
    }


def desktops(prefix: str, count: int, image: str = "img-old") -> list[dict[str, Any]]:
    return [{"id": f"{prefix}-{n:03d}", "name": f"{prefix}-{n:03d}", "image_id": image} for n in range(count)]


def group(name: str, ids: list[str], image: str = "img-new", **rollout: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"desktops": {"ids": ids}, "image": {"id": image, "type": "private"}}
    if rollout:
        spec["rollout"] = rollout
    return {"apiVersion": "reconciler/v1", "kind": "DesktopGroup", "metadata": {"name": name}, "spec": spec}


def write_manifests(directory: Path, endpoint: str, *groups: dict[str, Any], **settings: Any) -> None:
    spec = {"project_id": PROJECT, "endpoint": endpoint,
            "api": {"rate_limit_per_minute": 60000, "poll_interval_seconds": 0.1, "max_concurrent_calls": 1}, **settings}
    document = {"apiVersion": "reconciler/v1", "kind": "Settings", "spec": spec}
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "manifests.yaml").write_text(yaml.safe_dump_all([document, *groups], sort_keys=False))


class WatchProcess:
    """`reconciler watch` in a subprocess; its stderr lines are collected as they come."""

    def __init__(self, command: list[str], path: Path, *args: str, env: dict[str, str] | None = None) -> None:
        full_env = {**os.environ, **CREDENTIALS, **(env or {})}
        self.process = subprocess.Popen([*command, "watch", str(path), "--listen", "127.0.0.1:0", *args],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env)
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        serving = self.wait_for(r"^reconciler watch: serving (\S+)")
        self.url = serving.group(1)
        self.http = httpx.Client(base_url=self.url, timeout=10)

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self.lines.append("<EOF>")
            self._changed.notify_all()

    def wait_for(self, pattern: str, after: int = 0, timeout: float = WAIT_SECONDS) -> re.Match[str]:
        """The first line from index ``after`` on matching ``pattern``; fails on exit or timeout."""
        regex = re.compile(pattern)
        with self._changed:
            def found() -> re.Match[str] | None:
                for line in self.lines[after:]:
                    if line == "<EOF>":
                        raise AssertionError(f"watch exited before {pattern!r}:\n" + "\n".join(self.lines))
                    if (match := regex.search(line)) is not None:
                        return match
                return None
            if not self._changed.wait_for(lambda: found() is not None, timeout):
                raise AssertionError(f"no line matching {pattern!r} within {timeout}s:\n" + "\n".join(self.lines))
            match = found()
            assert match is not None
            return match

    def index(self, pattern: str) -> int:
        with self._changed:
            return next(i for i, line in enumerate(self.lines) if re.search(pattern, line))

    def cycle(self, number: int) -> re.Match[str]:
        return self.wait_for(rf"^cycle {number}( at \S+)?: (ok|FAILED)")

    def last_cycle(self) -> int:
        with self._changed:
            numbers = [int(m.group(1)) for line in self.lines if (m := re.match(r"^cycle (\d+)", line))]
        return max(numbers, default=0)

    def terminate(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        self.process.send_signal(sig)
        return self.process.wait(timeout=timeout)

    def close(self) -> None:
        self.http.close()
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._reader.join(5)


class Sink:
    """A webhook receiver on a free loopback port that records every POST body."""

    def __init__(self, status: int = 200) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.status = status
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length", 0))
                with sink.lock:
                    sink.bodies.append(json.loads(self.rfile.read(length)))
                    sink.paths.append(self.path)
                self.send_response(sink.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook/SECRET-TOKEN-123?key=ALSO-SECRET"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self) -> list[str]:
        with self.lock:
            return [b["event"] for b in self.bodies]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def metric_samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples



STATUS_SCHEMA = Path(__file__).resolve().parents[1] / "reconciler" / "schemas" / "watch-status.schema.json"


def checked_status(document: dict[str, Any]) -> dict[str, Any]:
    """``/api/status`` as its published schema describes it."""
    import jsonschema

    jsonschema.Draft202012Validator(json.loads(STATUS_SCHEMA.read_text())).validate(document)
    return document
