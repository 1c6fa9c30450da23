"""The status page: one self-contained HTML document (inline CSS, no scripts or external assets)
that reloads itself and reads well on a phone. Pure: ``/api/status`` JSON in, HTML out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from reconciler.watch.status import STATUSES

COLOURS = {"current": "#2e7d32", "pending": "#1565c0", "waiting": "#9e9e9e", "drifted": "#ef6c00", "failed": "#c62828"}

STYLE = """
*{box-sizing:border-box}body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
color:#1b1b1b;background:#f4f5f7}header{background:#1f2933;color:#fff;padding:12px 16px}
header h1{margin:0;font-size:18px}header p{margin:4px 0 0;font-size:13px;color:#cfd8dc}
main{padding:12px;max-width:1100px;margin:auto}.badge{display:inline-block;padding:1px 8px;border-radius:10px;
font-size:12px;font-weight:600;margin-left:6px}.ok{background:#2e7d32;color:#fff}.bad{background:#c62828;color:#fff}
.alert{background:#fdecea;border-left:4px solid #c62828;padding:8px 12px;margin:0 0 12px;word-break:break-word}
.groups{display:grid;grid-template-columns:repeat(auto-fill,minmax(300px,1fr));gap:12px}
.group{background:#fff;border-radius:8px;padding:12px;box-shadow:0 1px 2px rgba(0,0,0,.12)}
.group h2{margin:0 0 2px;font-size:16px}.image{font:12px ui-monospace,monospace;color:#555;word-break:break-all}
.bar{display:flex;height:10px;border-radius:5px;overflow:hidden;background:#e0e0e0;margin:8px 0}
.bar span{display:block;height:100%}.counts{display:flex;flex-wrap:wrap;gap:6px;margin:0;padding:0;list-style:none}
.counts li{font-size:13px}.dot{display:inline-block;width:9px;height:9px;border-radius:50%;margin-right:4px}
.window{font-size:13px;color:#444;margin-top:6px}section{margin-top:18px}section h2{font-size:16px;margin:0 0 6px}
.scroll{overflow-x:auto;background:#fff;border-radius:8px;box-shadow:0 1px 2px rgba(0,0,0,.12)}
table{border-collapse:collapse;width:100%;font-size:13px}th,td{text-align:left;padding:6px 8px;border-bottom:1px solid #eee;
white-space:nowrap}td.wrap{white-space:normal;min-width:180px}.muted{color:#777}footer{padding:16px;font-size:12px;color:#777;text-align:center}
"""


def _e(value: Any) -> str:
    return escape("" if value is None else str(value))


def _bar(counts: Mapping[str, int], total: int) -> str:
    if total == 0:
        return '<div class="bar" role="img" aria-label="no desktops"></div>'
    parts = "".join(
        f'<span style="width:{100 * counts.get(s, 0) / total:.2f}%;background:{COLOURS[s]}" title="{s}"></span>'
        for s in STATUSES if counts.get(s, 0)
    )
    label = f"{counts.get('current', 0)} of {total} current"
    return f'<div class="bar" role="img" aria-label="{_e(label)}">{parts}</div>'


def _window(group: Mapping[str, Any]) -> str:
    if not group.get("window"):
        return "no maintenance window: rebuilds at any time"
    if group.get("window_open"):
        return f"window {_e(group['window'])}: <strong>open</strong>"
    return f"window {_e(group['window'])}: closed, opens {_e(group.get('next_opening'))}"


def _group(group: Mapping[str, Any]) -> str:
    counts, total = group["counts"], group["total"]
    items = "".join(
        f'<li data-status="{s}"><span class="dot" style="background:{COLOURS[s]}"></span>{s} <b>{counts.get(s, 0)}</b></li>'
        for s in STATUSES
    )
    return (
        f'<article class="group" data-group="{_e(group["name"])}"><h2>{_e(group["name"])}</h2>'
        f'<div class="image">image {_e(group["image_id"])}</div>{_bar(counts, total)}'
        f'<ul class="counts">{items}<li class="muted">total <b>{total}</b></li></ul>'
        f'<div class="window">{_window(group)}</div></article>'
    )


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], css: str, empty: str) -> str:
    if not rows:
        return f'<p class="muted">{_e(empty)}</p>'
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join(
        f'<tr class="{css}">' + "".join(f'<td{" class=wrap" if i == len(row) - 1 else ""}>{_e(v)}</td>' for i, v in enumerate(row)) + "</tr>"
        for row in rows
    )
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _header(status: Mapping[str, Any]) -> str:
    cycle = status.get("last_cycle")
    badge = '<span class="badge ok">ready</span>' if status.get("ready") else '<span class="badge bad">not ready</span>'
    if cycle is None:
        line = "waiting for the first cycle"
    else:
        outcome = "succeeded" if cycle["ok"] else "FAILED"
        extra = " · another run held the lock: reported only" if cycle.get("lock_busy") else ""
        commit = f" · commit {_e(str(cycle['commit'])[:12])}" if cycle.get("commit") else ""
        line = (f"cycle {cycle['number']} {outcome} at {_e(cycle['finished_at'])} ({cycle['duration_seconds']:.1f}s, "
                f"--apply {_e(cycle['mode'])}){commit}{extra} · next {_e(status.get('next_cycle') or '-')}")
    return f'<header><h1>reconciler watch{badge}</h1><p id="cycle">{line}</p></header>'


def _alerts(status: Mapping[str, Any]) -> str:
    cycle = status.get("last_cycle") or {}
    if cycle.get("error"):
        return f'<div class="alert" id="error"><b>Last cycle failed:</b> {_e(cycle["error"])}</div>'
    return ""


def render_page(status: Mapping[str, Any]) -> str:
    refresh = int(max(5, min(30, float(status.get("interval_seconds") or 30))))
    groups = "".join(_group(g) for g in status.get("groups", ())) or '<p class="muted">No groups yet.</p>'
    jobs = _table(("job", "group", "status", "desktops", "submitted", "finished"),
                  [(j["id"][:12], j["group"], j["status"], j["desktops"], j["submitted_at"], j["finished_at"] or "-")
                   for j in status.get("jobs", {}).get("recent", ())], "job", "No rebuild jobs recorded.")
    failures = _table(("desktop", "name", "group", "when", "reason"),
                      [(f["desktop_id"], f["name"] or "-", f["group"], f["at"], f["reason"]) for f in status.get("failures", ())],
                      "failure", "No failed rebuilds.")
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f'<meta http-equiv="refresh" content="{refresh}"><title>reconciler watch</title>'
        f"<style>{STYLE}</style></head><body>{_header(status)}<main>{_alerts(status)}"
        f'<section class="groups" id="groups">{groups}</section>'
        f'<section><h2>Recent jobs</h2>{jobs}</section><section><h2>Failures</h2>{failures}</section></main>'
        '<footer><a href="api/status">status JSON</a> · <a href="metrics">metrics</a></footer></body></html>'
    )
