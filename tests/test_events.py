"""Apply events: every event an apply emits is one of ``EventKind`` with exactly the fields its
TypedDict in ``reconciler.apply.events`` names (plus ``at``), so the module that owns the kinds is the
wire format ``apply --json`` prints; and ``fan_out`` hands each event to every listener."""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_type_hints

import httpx
from test_lost_calls import ForwardedLate, World, group

from reconciler.apply import events
from reconciler.apply.events import EventKind, fan_out

# The TypedDict of each kind the applier emits (``plan`` and ``summary`` are the CLI's).
SHAPES: dict[str, type] = {
    "wave_started": events.WaveStarted, "batch_submitted": events.BatchSubmitted, "batch_failed": events.BatchFailed,
    "batch_unknown": events.BatchUnknown, "desktops_busy": events.DesktopsBusy, "job_finished": events.JobFinished,
    "group_halted": events.GroupHalted, "group_deferred": events.GroupDeferred,
    "desktops_deferred": events.DesktopsDeferred, "adopted": events.StateOnly, "forgotten": events.StateOnly,
    "wait_progress": events.WaitProgress, "poll_failed": events.PollFailed,
}


class RefusesOne(httpx.BaseTransport):
    """Forwards everything, except that the rebuild call naming ``desktop_id`` gets a 400."""

    def __init__(self, inner: httpx.BaseTransport, desktop_id: str) -> None:
        self.inner, self.desktop_id = inner, desktop_id

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/desktops/rebuild") and self.desktop_id.encode() in request.read():
            return httpx.Response(400, json={"error_code": "WKS.00010400", "error_msg": "bad image"})
        return self.inner.handle_request(request)


def check(emitted: list[dict[str, Any]]) -> set[str]:
    for event in emitted:
        shape = SHAPES[event["event"]]
        assert set(event) == set(get_type_hints(shape)), (event["event"], sorted(event))
        assert isinstance(event["at"], str) and event["event"] in set(EventKind)
    return {e["event"] for e in emitted}


def test_every_event_an_apply_emits_has_its_kind_s_fields(tmp_path: Path) -> None:
    w = World.build(tmp_path / "a", count=6)
    w.transport = ForwardedLate(w.sim.transport())
    assert w.apply(group(batch_size=3, canary=1), horizon=1.0).ok
    seen = check(w.events)
    assert {"wave_started", "batch_submitted", "batch_unknown", "job_finished", "wait_progress"} <= seen

    refused = World.build(tmp_path / "b", count=3)
    refused.transport = RefusesOne(refused.sim.transport(), sorted(refused.rebuild_counts())[0])
    assert not refused.apply(group(batch_size=1), horizon=1.0).ok
    assert {"batch_failed", "group_halted"} <= check(refused.events)


def test_fan_out_hands_each_event_to_every_listener_in_order() -> None:
    first: list[dict[str, Any]] = []
    second: list[str] = []
    emit = fan_out(first.append, lambda event: second.append(event["event"]))
    emit({"event": "adopted", "desktops": 2})
    emit({"event": "forgotten", "desktops": 1})
    assert [e["event"] for e in first] == second == ["adopted", "forgotten"]
