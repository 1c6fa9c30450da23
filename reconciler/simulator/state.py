"""The whole mutable simulated cloud in one object, behind one lock, and its JSON form.

No I/O. Everything random comes from generators seeded with ``behaviour.seed`` and every id
from a counter, so the same requests at the same (fake) times give the same answers; the
generators' states and the counters are part of ``to_dict`` so a restored cloud carries on
exactly where it stopped.
"""

from __future__ import annotations

import random
import threading
import uuid
from collections import Counter
from collections.abc import Mapping
from typing import Any

from reconciler.simulator import spec
from reconciler.simulator.fleet import BASE_CREATED, DesktopRecord, Fleet
from reconciler.simulator.jobs import JOB_TYPE_REBUILD, WAITING_SHARE, Job, JobBook, SubJob
from reconciler.simulator.limits import TokenBucket
from reconciler.simulator.security import Authenticator
from reconciler.simulator.validation import BAD_REQUEST, RebuildRequest
from reconciler.simulator.wsgi import ApiError

STATE_FORMAT = "reconciler-simulator-state/1"
NOT_FOUND = "WKS.00010404"
BUSY = "WKS.00010032"


def _rng_state(rng: random.Random) -> list[Any]:
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def _rng_from(state: list[Any]) -> random.Random:
    rng = random.Random()
    rng.setstate((state[0], tuple(state[1]), state[2]))
    return rng


class SimState:
    """Desktops, jobs, auth, rate limit, random generators and counters of one simulated project."""

    def __init__(self, fleet_spec: spec.FleetSpec, now: float) -> None:
        self.lock = threading.RLock()
        self.project_id = fleet_spec.project_id
        self.credentials = fleet_spec.credentials
        self.users = fleet_spec.users
        self.images = {image.id: image for image in fleet_spec.images}
        self.behaviour = fleet_spec.behaviour
        self.fleet = Fleet(self.images)
        for ordinal, desktop in enumerate(fleet_spec.desktops):
            self.fleet.add_spec(desktop, BASE_CREATED + ordinal)
        self.jobs = JobBook()
        self.auth = Authenticator(self.project_id, self.credentials, self.users)
        self.bucket = TokenBucket(self.behaviour.rate_limit_per_minute, self.behaviour.burst, now)
        seed = self.behaviour.seed
        self.rng_faults = random.Random(f"{seed}:faults")
        self.rng_jobs = random.Random(f"{seed}:jobs")
        self.counters = {"jobs": 0, "requests": 0}
        # (API name, outcome) -> calls; what benchmarks and "no API call" tests read back.
        self.stats: Counter[tuple[str, str]] = Counter()

    def count(self, api: str, outcome: str) -> None:
        with self.lock:
            self.stats[(api, outcome)] += 1

    # --- ids -----------------------------------------------------------------------------------

    def _uuid(self, kind: str, number: int) -> str:
        name = f"reconciler-simulator:{self.project_id}:{self.behaviour.seed}:{kind}:{number}"
        return uuid.uuid5(uuid.NAMESPACE_URL, name).hex

    def next_request_id(self) -> str:
        with self.lock:
            self.counters["requests"] += 1
            return self._uuid("request", self.counters["requests"])

    # --- time ----------------------------------------------------------------------------------

    def settle(self, now: float) -> None:
        """Apply the effects of every sub-job that finished by `now`."""
        for sub in self.jobs.due(now):
            self._finish(sub)

    def _finish(self, sub: SubJob) -> None:
        record = self.fleet.by_id.get(sub.desktop_id)
        if record is None:
            return
        changes: dict[str, Any] = {}
        # Only the job that owns the desktop's rebuild clears it (an admin may have started another).
        if record.rebuild is not None and record.rebuild[0] == sub.job_id:
            changes.update(task_status="", rebuild=None)
        if not sub.will_fail:
            changes["image_id"] = self.jobs.jobs[sub.job_id].request["image_id"]
            if record.status == "ERROR":
                changes["status"] = "ACTIVE"
        self.fleet.update(record, **changes)

    def set_behaviour(self, behaviour: spec.Behaviour, now: float) -> None:
        old, self.behaviour = self.behaviour, behaviour
        if (old.rate_limit_per_minute, old.burst) != (behaviour.rate_limit_per_minute, behaviour.burst):
            self.bucket = TokenBucket(behaviour.rate_limit_per_minute, behaviour.burst, now)

    # --- rebuild -------------------------------------------------------------------------------

    def accept_rebuild(self, request: RebuildRequest, now: float) -> Job:
        """Check a rebuild against the fleet and start its job; ApiError 400/404/409 otherwise."""
        self._check_image(request)
        unknown = [i for i in request.desktop_ids if i not in self.fleet.by_id]
        if unknown:
            raise ApiError(404, NOT_FOUND, f"desktops not found: {', '.join(unknown)}")
        records = [self.fleet.by_id[i] for i in request.desktop_ids]
        busy = [self._busy_reason(r) for r in records if self._busy_reason(r)]
        if busy:
            raise ApiError(409, BUSY, f"the state of these desktops does not allow a rebuild: {', '.join(busy)}")
        self.counters["jobs"] += 1
        job_id = self._uuid("job", self.counters["jobs"])
        delay = 60.0 * (request.delay_time or 0) if self.behaviour.honour_delay_time else 0.0
        seconds = float(self.behaviour.job_seconds)
        subs = [self._sub_job(job_id, index, r, now, delay, seconds) for index, r in enumerate(records)]
        job = Job(job_id, JOB_TYPE_REBUILD, now, request.to_dict(), subs)
        self.jobs.add(job)
        for record, sub in zip(records, subs, strict=False):
            self.fleet.update(record, rebuild_count=record.rebuild_count + 1, task_status="rebuilding",
                              rebuild=(job_id, sub.starts_at, sub.ends_at))
        return job

    def _check_image(self, request: RebuildRequest) -> None:
        image = self.images.get(request.image_id)
        if image is None:
            raise ApiError(400, BAD_REQUEST, f"image_id: image {request.image_id} does not exist in this project")
        if image.type != request.image_type:
            raise ApiError(
                400, BAD_REQUEST, f"image_type: image {image.id} is a {image.type} image, not {request.image_type}"
            )

    @staticmethod
    def _busy_reason(record: DesktopRecord) -> str:
        if record.frozen:
            return f"{record.id} (frozen)"
        if record.in_maintenance_mode:
            return f"{record.id} (in maintenance mode)"
        if record.task_status:
            return f"{record.id} (task_status {record.task_status})"
        if record.status not in spec.REBUILDABLE_STATUSES:
            return f"{record.id} (status {record.status})"
        return ""

    def _sub_job(self, job_id: str, index: int, record: DesktopRecord, now: float, delay: float, seconds: float) -> SubJob:
        # Draw for every desktop, forced failure or not, so one desktop's flag does not shift
        # the outcomes of the others.
        roll = self.rng_jobs.random()
        return SubJob(
            id=uuid.uuid5(uuid.NAMESPACE_URL, f"{job_id}:{index}").hex,
            job_id=job_id, desktop_id=record.id, desktop_name=record.name, user_name=record.user_name,
            product_id=record.product_id, ip_address=record.ip_address,
            will_fail=record.fail_rebuilds or roll < self.behaviour.failure_rate,
            accepted_at=now, starts_at=now + delay + WAITING_SHARE * seconds, ends_at=now + delay + seconds,
        )

    # --- persistence ---------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        with self.lock:
            return {
                "format": STATE_FORMAT,
                "project_id": self.project_id,
                "credentials": [{"ak": c.ak, "sk": c.sk} for c in self.credentials],
                "users": [{"name": u.name, "password": u.password, "domain": u.domain} for u in self.users],
                "images": [vars(image).copy() for image in self.images.values()],
                "behaviour": self.behaviour.to_dict(),
                "desktops": [record.to_dict() for record in self.fleet],
                "jobs": self.jobs.to_list(),
                "auth": self.auth.to_dict(),
                "bucket": self.bucket.to_dict(),
                "rng": {"faults": _rng_state(self.rng_faults), "jobs": _rng_state(self.rng_jobs)},
                "counters": dict(self.counters),
                # Kept across commands, so the embedded simulator's stats count a whole session.
                "stats": [[api, outcome, count] for (api, outcome), count in sorted(self.stats.items())],
            }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], now: float) -> SimState:
        if data.get("format") != STATE_FORMAT:
            raise ValueError(f"not a simulator state (format {data.get('format')!r}, expected {STATE_FORMAT!r})")
        fleet_spec = spec.FleetSpec(
            project_id=data["project_id"],
            credentials=tuple(spec.Credential(**c) for c in data["credentials"]),
            users=tuple(spec.User(**u) for u in data["users"]),
            images=tuple(spec.Image(**image) for image in data["images"]),
            desktops=(),
            behaviour=spec.behaviour_from_dict(data["behaviour"]),
            source="<state>",
        )
        state = cls(fleet_spec, now)
        for ordinal, desktop in enumerate(data["desktops"]):
            state.fleet.add(DesktopRecord.from_dict(ordinal, desktop))
        state.jobs = JobBook.from_list(data["jobs"])
        state.auth.restore(data["auth"])
        state.bucket = TokenBucket.from_dict(data["bucket"])
        state.rng_faults = _rng_from(data["rng"]["faults"])
        state.rng_jobs = _rng_from(data["rng"]["jobs"])
        state.counters = dict(data["counters"])
        state.stats.update({(api, outcome): count for api, outcome, count in data.get("stats", ())})
        return state
