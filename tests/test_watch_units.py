"""The pure and in-process parts of `reconciler watch`: what --apply narrows a plan to, when the
next cycle starts, desktop statuses, webhook formats, URL masking, retries, the Settings
`notifications` key, the status page, and the CLI's refusals."""

from __future__ import annotations

import json
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st
from watch_support import checked_status

from reconciler.cli import main
from reconciler.errors import ConfigurationError
from reconciler.manifest import ManifestError, load_manifests
from reconciler.model import Action, Change, DesktopGroup, Image, NotificationTarget, Reason, Rollout, Settings, Window
from reconciler.plan import Plan, plan_to_json
from reconciler.rollout import CANARY_WAVE, MAIN_WAVE
from reconciler.simulator import app as simulator_app
from reconciler.state import DesktopRecord, JobRef, State
from reconciler.watch import events
from reconciler.watch.metrics import API_NAMES, api_name
from reconciler.watch.notify import Notifier, Target, delivered, format_for, mask_url, message, targets
from reconciler.watch.page import render_page
from reconciler.watch.policy import DRIFT_REASONS, ApplyMode, allowed, narrow, next_cycle
from reconciler.watch.status import desktop_status, fleet_status, status_json

NOW = datetime(2027, 1, 15, 8, 0, tzinfo=UTC)  # a Friday
PROJECT = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"


def make_group(name: str, window: Window | None = None, canary: int = 0) -> DesktopGroup:
    return DesktopGroup(name, Image("img-new", "private"), Rollout(canary=canary, window=window))


# -- policy -------------------------------------------------------------------------------------

REBUILD_REASONS = [Reason.IMAGE_CHANGED, Reason.NOT_RECORDED, Reason.DRIFT, Reason.RETRY_FAILED]
changes_strategy = st.lists(
    st.tuples(st.sampled_from(["a", "b"]), st.sampled_from(REBUILD_REASONS), st.booleans()), max_size=25
)


@given(changes_strategy, st.integers(0, 4), st.sampled_from(list(ApplyMode)))
def test_narrow_keeps_what_the_mode_allows_and_remakes_the_canary_wave(spec: list[Any], canary: int, mode: ApplyMode) -> None:
    groups = (make_group("a", canary=canary), make_group("b", canary=canary))
    changes, seen = [], {"a": 0, "b": 0}
    for n, (group, reason, adopt) in enumerate(spec):
        if adopt:
            changes.append(Change(f"d{n:03d}", Action.ADOPT, Reason.ALREADY_CURRENT, group))
            continue
        wave = CANARY_WAVE if seen[group] < canary else MAIN_WAVE
        seen[group] += 1
        changes.append(Change(f"d{n:03d}", Action.REBUILD, reason, group, wave=wave))
    plan = Plan(tuple(sorted(changes, key=lambda c: (c.group or "", c.desktop_id))), groups, None, 0, True)

    narrowed = narrow(plan, mode)

    assert [c.desktop_id for c in narrowed.changes] == [c.desktop_id for c in plan.changes if allowed(c, mode)]
    if mode is ApplyMode.DRIFT:
        assert all(c.reason in DRIFT_REASONS for c in narrowed.changes if c.action is Action.REBUILD)
    for name in ("a", "b"):
        kept = [c for c in narrowed.changes if c.group == name and c.action is Action.REBUILD]
        waves = [c.wave for c in kept]
        expected = min(canary, len(kept))
        assert waves == [CANARY_WAVE] * expected + [MAIN_WAVE] * (len(kept) - expected)


def test_apply_none_applies_nothing() -> None:
    change = Change("d1", Action.REBUILD, Reason.DRIFT, "a")
    assert not allowed(change, ApplyMode.NONE)
    assert not allowed(Change("d1", Action.WAIT, Reason.IN_PROGRESS, "a"), ApplyMode.ALL)


def _deferred(group: str, pending: Reason) -> Change:
    return Change(f"{group}-1", Action.WAIT, Reason.OUTSIDE_WINDOW, group, pending=pending)


def test_the_next_cycle_comes_when_a_window_with_pending_rebuilds_opens() -> None:
    opens_soon = Window(time(8, 30), time(10, 0), "UTC")
    opens_later = Window(time(20, 0), time(22, 0), "UTC")
    groups = (make_group("soon", opens_soon), make_group("later", opens_later))
    plan = Plan((_deferred("later", Reason.DRIFT), _deferred("soon", Reason.IMAGE_CHANGED)), groups, None, 0, True,
                created_at=NOW.isoformat())
    assert next_cycle(plan, ApplyMode.ALL, NOW, 3600) == datetime(2027, 1, 15, 8, 30, tzinfo=UTC)
    # --apply drift leaves the image change to a person: only the drift's window matters, and it is later.
    assert next_cycle(plan, ApplyMode.DRIFT, NOW, 3600) == NOW + timedelta(hours=1)
    assert next_cycle(plan, ApplyMode.DRIFT, NOW, 86400) == datetime(2027, 1, 15, 20, 0, tzinfo=UTC)
    assert next_cycle(plan, ApplyMode.NONE, NOW, 60) == NOW + timedelta(minutes=1)
    # A window that opened after the plan was made (during the cycle) is due at once.
    late = next_cycle(plan, ApplyMode.ALL, NOW + timedelta(hours=1), 3600)
    assert late == datetime(2027, 1, 15, 8, 30, tzinfo=UTC) < NOW + timedelta(hours=1)


# -- status -------------------------------------------------------------------------------------

def test_each_desktop_has_one_status() -> None:
    assert desktop_status(Change("d", Action.REBUILD, Reason.IMAGE_CHANGED, "a")) == "pending"
    assert desktop_status(Change("d", Action.REBUILD, Reason.DRIFT, "a")) == "drifted"
    assert desktop_status(Change("d", Action.REBUILD, Reason.RETRY_FAILED, "a")) == "failed"
    assert desktop_status(_deferred("a", Reason.DRIFT)) == "drifted"
    assert desktop_status(_deferred("a", Reason.NOT_RECORDED)) == "waiting"
    assert desktop_status(Change("d", Action.WAIT, Reason.IN_PROGRESS, "a")) == "waiting"
    assert desktop_status(Change("d", Action.ADOPT, Reason.ALREADY_CURRENT, "a")) == "current"


def test_fleet_status_counts_every_member_once() -> None:
    failed_job = JobRef("job-1", "FAILED", "img-new", "2027-01-15T07:00:00+00:00", "2027-01-15T07:05:00+00:00", "disk error")
    state = State("L", 3, {
        "ok": DesktopRecord("a", "img-new", "ok"),
        "drift": DesktopRecord("a", "img-new", "drift"),
        "bad": DesktopRecord("a", "img-old", "bad", failed_job),
        "gone": DesktopRecord("old-group", "img-old", "gone"),
    })
    plan = Plan((Change("bad", Action.REBUILD, Reason.RETRY_FAILED, "a"), Change("drift", Action.REBUILD, Reason.DRIFT, "a"),
                 Change("new", Action.REBUILD, Reason.NOT_RECORDED, "a"),
                 Change("gone", Action.FORGET, Reason.REMOVED_FROM_MANIFESTS, "old-group")),
                (make_group("a"),), "L", 3, True)
    fleet = fleet_status(plan, state, state, NOW, submitted=frozenset({"new"}))
    assert dict(fleet.groups[0].counts) == {"current": 1, "pending": 0, "waiting": 1, "drifted": 1, "failed": 1}
    assert [(f.desktop_id, f.reason) for f in fleet.failures] == [("bad", "disk error")]
    document = status_json(fleet, None, False, 60)
    assert document["groups"][0]["total"] == 4 and document["ready"] is False
    checked_status({**document, "next_cycle": None})


# -- notifications ------------------------------------------------------------------------------

@given(st.text("abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=8, max_size=40))
def test_a_masked_url_never_shows_its_token(token: str) -> None:
    for url in (f"https://hooks.slack.com/services/{token}", f"https://oapi.dingtalk.com/robot/send?access_token={token}",
                f"https://user:{token}@example.com/x", f"http://127.0.0.1:8080/hook#{token}"):
        masked = mask_url(url)
        assert token not in masked
        assert masked.startswith(url.split("://")[0] + "://")


def test_formats_are_recognised_by_host_or_given() -> None:
    assert format_for("https://hooks.slack.com/services/T/B/X", None) == "slack"
    assert format_for("https://open.feishu.cn/open-apis/bot/v2/hook/x", None) == "feishu"
    assert format_for("https://open.larksuite.com/open-apis/bot/v2/hook/x", None) == "feishu"
    assert format_for("https://oapi.dingtalk.com/robot/send?access_token=x", None) == "dingtalk"
    assert format_for("https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=x", None) == "wecom"
    assert format_for("https://example.com/hook", None) == "json"
    assert format_for("https://example.com/hook", "slack") == "slack"


def test_message_bodies_per_format() -> None:
    notice = events.cycle_failed("boom")
    assert message("slack", notice, NOW) == {"text": "[reconciler] watch cycle failed: boom"}
    assert message("feishu", notice, NOW) == {"msg_type": "text", "content": {"text": "[reconciler] watch cycle failed: boom"}}
    assert message("dingtalk", notice, NOW) == {"msgtype": "text", "text": {"content": "[reconciler] watch cycle failed: boom"}}
    assert message("wecom", notice, NOW)["msgtype"] == "text"
    assert message("json", notice, NOW) == {"source": "reconciler", "event": "cycle_failed", "at": NOW.isoformat(),
                                            "text": "watch cycle failed: boom", "error": "boom"}


def test_robots_that_answer_200_with_an_error_code_were_not_delivered() -> None:
    request = httpx.Request("POST", "https://oapi.dingtalk.com/robot/send")
    assert delivered(httpx.Response(200, json={"errcode": 0, "errmsg": "ok"}, request=request)) is None
    assert delivered(httpx.Response(200, json={"errcode": 310000, "errmsg": "keywords not in content"}, request=request))
    assert delivered(httpx.Response(200, json={"code": 19021, "msg": "sign match fail"}, request=request))
    assert delivered(httpx.Response(500, request=request)) == "HTTP 500"


def test_the_notifier_retries_then_gives_up_and_counts() -> None:
    answers = {"flaky": [500, 200, 200], "down": [500, 500, 500]}
    sent: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        name = request.url.path.strip("/")
        sent.append(name)
        return httpx.Response(answers[name].pop(0))

    failures: list[int] = []
    notifier = Notifier([Target("http://hooks.test/flaky", "json"), Target("http://hooks.test/down", "json", frozenset({"cycle_failed"}))],
                        on_failure=lambda: failures.append(1), transport=httpx.MockTransport(handler), backoff=0.0)
    notifier.notify(events.cycle_failed("x"))
    notifier.notify(events.apply_started(1, ["a"]))  # "down" does not want it
    notifier.flush(10)
    notifier.close(5)
    assert sent == ["flaky", "flaky", "down", "down", "down", "flaky"]
    assert failures == [1]


def test_targets_from_settings_and_the_environment() -> None:
    settings = Settings(PROJECT, notifications=(NotificationTarget(url_env="HOOK", events=("cycle_failed",)),
                                                NotificationTarget(url="https://example.com/h", format="wecom")))
    found = targets(["https://hooks.slack.com/services/x"], settings, {"HOOK": "https://open.feishu.cn/hook/t"})
    assert [(t.format, sorted(t.events)) for t in found] == [("slack", []), ("feishu", ["cycle_failed"]), ("wecom", [])]
    with pytest.raises(ConfigurationError, match="environment variable HOOK is not set"):
        targets([], settings, {})
    with pytest.raises(ConfigurationError, match="--notify"):
        targets(["ftp://example.com/secret-token"], None, {})


def _settings_doc(notifications: Any) -> str:
    spec = {"project_id": PROJECT, "region": "cn-north-4", "notifications": notifications}
    group = {"apiVersion": "reconciler/v1", "kind": "DesktopGroup", "metadata": {"name": "a"},
             "spec": {"desktops": {"ids": ["d1"]}, "image": {"id": "img", "type": "private"}}}
    return yaml.safe_dump_all([{"apiVersion": "reconciler/v1", "kind": "Settings", "spec": spec}, group], sort_keys=False)


def test_settings_notifications_are_checked_and_stay_out_of_plan_files(tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text(_settings_doc([{"url_env": "HOOK", "events": ["drift_detected"], "format": "slack"}]))
    manifests = load_manifests([str(tmp_path)])
    assert manifests.settings.notifications == (NotificationTarget(None, "HOOK", ("drift_detected",), "slack"),)
    plan = Plan((), manifests.groups, None, 0, False, settings=manifests.settings)
    assert "url_env" not in json.dumps(plan_to_json(plan))

    for bad, words in (([{"url": "https://x.test/a", "url_env": "HOOK"}], "exactly one of url or url_env"),
                       ([{"url": "https://x.test/a", "events": ["rebooted"]}], "rebooted"),
                       ([{"url": "https://x.test/a", "format": "teams"}], "teams")):
        (tmp_path / "m.yaml").write_text(_settings_doc(bad))
        with pytest.raises(ManifestError) as caught:
            load_manifests([str(tmp_path)])
        assert words in str(caught.value) and "m.yaml:" in str(caught.value)


# -- metrics, page, CLI -------------------------------------------------------------------------

def test_api_names_match_the_simulator_and_the_sdk() -> None:
    assert api_name("POST", f"/v2/{PROJECT}/desktops/rebuild") == "rebuild"
    assert api_name("GET", f"/v2/{PROJECT}/desktops/detail") == "list_desktops"
    assert api_name("GET", f"/v2/{PROJECT}/desktops/d-1") == "show_desktop"
    assert api_name("GET", f"/v2/{PROJECT}/workspace-sub-jobs") == "list_sub_jobs"
    assert api_name("POST", "/v3/auth/tokens") is None
    # Every API the simulator serves (and counts in /_simulator/stats) has its name here.
    assert {name for _, _, name in API_NAMES} == {route.name for route in simulator_app._ROUTES}


def test_the_status_page_is_self_contained() -> None:
    group = make_group("finance", Window(time(22, 0), time(6, 0), "Asia/Shanghai", frozenset({5, 6})))
    plan = Plan((Change("d1", Action.WAIT, Reason.OUTSIDE_WINDOW, "finance", pending=Reason.DRIFT),), (group,), None, 0, True)
    fleet = fleet_status(plan, State(), State(), NOW, refused={"d9": "rebuild failed: <script>alert(1)</script>"})
    page = render_page(status_json(fleet, None, False, 60))
    assert 'data-group="finance"' in page and "sat,sun 22:00-06:00 Asia/Shanghai: closed, opens 2027-01-16T22:00" in page
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "src=" not in page and "http://" not in page and "https://" not in page
    assert '<meta http-equiv="refresh"' in page and 'name="viewport"' in page


def test_watch_refuses_bad_input_with_one_error_line(tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text(_settings_doc([]))
    result = CliRunner().invoke(main, ["watch", str(tmp_path), "--listen", "nowhere"])
    assert result.exit_code == 1 and result.output.startswith("Error: Invalid value for --listen")
    result = CliRunner().invoke(main, ["watch", str(tmp_path / "missing"), "--once"])
    assert result.exit_code == 1 and result.output.startswith("Error: ") and "Traceback" not in result.output
    result = CliRunner().invoke(main, ["watch", str(tmp_path), "--once", "--notify", "hooks.slack.com/x"])
    assert result.exit_code == 1 and "expected an http:// or https:// URL" in result.output
