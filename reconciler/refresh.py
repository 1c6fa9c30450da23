"""Reading the live fleet for a plan, and observing the jobs the state says are unfinished.
Network I/O through a ``WorkspaceClient``; returns values and journal records, writes nothing.

The API budget matters on large fleets: desktops are read once per plan, either by id in chunks
or — when that would take more calls — by paging the whole project, and selectors use the
API's own filters where it has them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from reconciler.cloud.models import DESKTOP_PAGE_LIMIT, REBUILD_JOB_TYPE, Desktop, SubJob
from reconciler.model import DesktopGroup
from reconciler.planner import Inventory
from reconciler.state import State
from reconciler.state.builder import aggregate_status
from reconciler.state.records import JobStatus, JobStatusRecord, LostCallFound, ResolvedRecord, SubJobSeen

if TYPE_CHECKING:  # the HTTP client is only needed when a command talks to the cloud
    from reconciler.cloud.client import WorkspaceClient

# Ids per ``desktop_id`` filter: keeps the request line of a GET far below gateway URL limits.
IDS_PER_CALL = 100
# How far the service's clock may be behind ours when matching a lost call to its sub-job.
CLOCK_SLACK = timedelta(minutes=2)


def utc_now_text(now: datetime) -> str:
    return now.astimezone(UTC).isoformat(timespec="seconds")


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _api_only(group: DesktopGroup) -> bool:
    """A pool filter cannot be checked locally: desktops/detail does not report pools."""
    return group.selector is not None and group.selector.pool_id is not None


def _listing_is_cheaper(wanted: int, total: int, groups: Sequence[DesktopGroup]) -> bool:
    if total <= DESKTOP_PAGE_LIMIT:
        return True
    needs_full = any(g.selector is not None and not g.selector.api_filters() for g in groups)
    return needs_full or math.ceil(total / DESKTOP_PAGE_LIMIT) <= math.ceil(wanted / IDS_PER_CALL) + sum(
        1 for g in groups if g.selector is not None
    )


def _page_rest(client: WorkspaceClient, first: list[Desktop], total: int) -> dict[str, Desktop]:
    fleet = {d.id: d for d in first}
    offset = len(first)
    while offset < total:
        page = client.list_desktops(offset=offset, limit=DESKTOP_PAGE_LIMIT)
        if not page.desktops:
            break
        fleet.update((d.id, d) for d in page.desktops)
        offset += len(page.desktops)
    return fleet


def desktops_by_id(client: WorkspaceClient, ids: Sequence[str]) -> dict[str, Desktop]:
    """The live desktops among ``ids``, looked up ``IDS_PER_CALL`` at a time (in the order
    given); ids the service does not know are left out."""
    found: dict[str, Desktop] = {}
    for chunk in _chunks(ids, IDS_PER_CALL):
        found.update((d.id, d) for d in client.iter_desktops(desktop_id=list(chunk)))
    return found


def _select(client: WorkspaceClient, group: DesktopGroup, fleet: Mapping[str, Desktop] | None) -> dict[str, Desktop]:
    selector = group.selector
    assert selector is not None
    if fleet is not None and not _api_only(group):
        return {i: d for i, d in fleet.items() if selector.matches(d)}
    return {d.id: d for d in client.iter_desktops(**selector.api_filters()) if selector.matches(d)}


def read_inventory(client: WorkspaceClient, groups: Sequence[DesktopGroup], state: State) -> Inventory:
    """Every desktop the groups or the state name, and each selector's matches."""
    wanted = {i for g in groups for i in g.ids} | set(state.desktops)
    first = client.list_desktops(offset=0, limit=DESKTOP_PAGE_LIMIT)
    fleet: dict[str, Desktop] | None = None
    if _listing_is_cheaper(len(wanted), first.total_count, groups):
        fleet = _page_rest(client, list(first.desktops), first.total_count)
        desktops = {i: fleet[i] for i in wanted if i in fleet}
    else:
        desktops = desktops_by_id(client, sorted(wanted))
    matches: dict[str, frozenset[str]] = {}
    for group in groups:
        if group.selector is None:
            continue
        selected = _select(client, group, fleet)
        desktops.update(selected)
        matches[group.name] = frozenset(selected)
    return Inventory(desktops=desktops, selector_matches=matches)


# -- jobs ------------------------------------------------------------------------------------


def _parse_job_time(text: str) -> datetime | None:
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    return None


def rebuild_sub_jobs(client: WorkspaceClient, desktop_ids: Iterable[str]) -> dict[str, list[SubJob]]:
    """Every rebuild sub-job of each desktop (one listing of the project's rebuild sub-jobs)."""
    wanted = set(desktop_ids)
    found: dict[str, list[SubJob]] = {}
    for sub in client.iter_sub_jobs(job_type=REBUILD_JOB_TYPE):
        if sub.desktop_id in wanted:
            found.setdefault(sub.desktop_id, []).append(sub)
    return found


def _began(sub: SubJob) -> datetime:
    # A sub-job without a start time has not started yet: it is the newest there is.
    return _parse_job_time(sub.begin_time) or datetime.max.replace(tzinfo=UTC)


def resolve_unknown(
    client: WorkspaceClient, state: State, live: Mapping[str, Desktop], now: datetime
) -> ResolvedRecord | None:
    """Find out what happened to rebuild calls whose answer was lost: a ``resolved`` record
    naming the job each desktop got, or null for desktops the call never reached."""
    unknown = {i: r for i, r in state.desktops.items() if r.job is not None and r.job.status == JobStatus.UNKNOWN}
    if not unknown:
        return None
    subs = rebuild_sub_jobs(client, unknown)
    found: dict[str, LostCallFound] = {}
    for desktop_id, record in unknown.items():
        assert record.job is not None
        sent = datetime.fromisoformat(record.job.submitted_at)
        mine = subs.get(desktop_id, [])
        newest = max(mine, key=_began) if mine else None
        if newest is not None and _began(newest) >= sent - CLOCK_SLACK:
            found[desktop_id] = {"job_id": newest.job_id, "status": newest.status, "fail_reason": newest.fail_reason or None}
        elif desktop_id in live and not live[desktop_id].is_rebuilding and all(s.finished for s in mine):
            found[desktop_id] = {"job_id": None}
        # else: a rebuild is under way that we cannot tie to the call yet; UNKNOWN until the next look.
    return {"type": "resolved", "at": utc_now_text(now), "desktops": found} if found else None


def observe_jobs(client: WorkspaceClient, state: State, live: Mapping[str, Desktop], now: datetime) -> JobStatusRecord | None:
    """A ``job_status`` record for recorded jobs that are not finished. A desktop that is no
    longer rebuilding tells the outcome by its image; only the sub-jobs of jobs that seem to
    have failed (or whose desktops are gone) are read, for their reasons."""
    seen: dict[str, SubJobSeen] = {}
    to_read: set[str] = set()
    for desktop_id, record in state.desktops.items():
        job = record.job
        if job is None or job.id is None or not job.in_progress:
            continue
        desktop = live.get(desktop_id)
        if desktop is not None and desktop.is_rebuilding:
            seen[desktop_id] = {"job_id": job.id, "status": "RUNNING"}
        elif desktop is not None and desktop.image_id == job.image_id:
            seen[desktop_id] = {"job_id": job.id, "status": "SUCCESS"}
        else:
            to_read.add(job.id)
    for job_id in sorted(to_read):
        for sub in client.iter_sub_jobs(job_id=job_id):
            seen[sub.desktop_id] = {"job_id": job_id, "status": sub.status, "fail_reason": sub.fail_reason or None}
    if not seen:
        return None
    return {"type": "job_status", "at": utc_now_text(now), "desktops": seen, "jobs": job_totals(state, seen)}


def job_totals(state: State, seen: Mapping[str, SubJobSeen]) -> dict[str, str]:
    """Overall status of each unfinished ledger job, given the latest per-desktop statuses."""
    totals: dict[str, str] = {}
    for job_id, job in state.jobs.items():
        if job.status in ("SUCCESS", "FAILED"):
            continue
        statuses = []
        for desktop_id in job.desktop_ids:
            observed = seen.get(desktop_id)
            record = state.desktops.get(desktop_id)
            if observed is not None and observed["job_id"] == job_id:
                statuses.append(observed["status"])
            elif record is not None and record.job is not None and record.job.id == job_id:
                statuses.append(record.job.status)
        if statuses:
            totals[job_id] = aggregate_status(statuses)
    return totals
