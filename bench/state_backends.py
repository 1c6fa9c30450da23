"""State backends at fleet scale: read, write and journal-append times of a 100,000-desktop state on
the local file, PostgreSQL and an S3 bucket (moto's server, in this process on 127.0.0.1).

    python bench/state_backends.py [--desktops 100000] [--repeat 3] [--appends 200] [--backends local,postgres,s3]

PostgreSQL comes from RECONCILER_TEST_PG_DSN (default postgresql://postgres@127.0.0.1:5432/test);
the bench uses a schema of its own and drops it. Each figure is the median of ``--repeat`` runs
(a write replaces the state written before it, as every apply does). An append is one journal
record made durable (fsync; a committed insert; a created object), timed over ``--appends``.

Budget (issue 10): a postgres write of the 100,000-desktop state within 3x the local write.
S3 figures include moto's own work in this process: a real bucket is slower to reach, faster to
serve.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import MappingProxyType

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from reconciler.state import DesktopRecord, JobRecord, JobRef, LocalStateStore, State, StateStore

PG_DSN = os.environ.get("RECONCILER_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
AT = "2026-11-27T10:00:00+00:00"


def big_state(desktops: int) -> State:
    """``desktops`` records, a tenth with a finished job, in jobs of 100 desktops."""
    records, jobs = {}, {}
    for index in range(desktops):
        desktop_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"bench:{index}"))
        job = None
        if index % 10 == 0:
            job_id = f"job-{index // 1000:05d}"
            job = JobRef(job_id, "SUCCESS", "img-new", AT, AT, None, f"batch-{index // 1000}")
            known = jobs.get(job_id)
            ids = (*known.desktop_ids, desktop_id) if known else (desktop_id,)
            jobs[job_id] = JobRecord(job_id, f"group-{index % 1000:04d}", "img-new", ids, AT, "SUCCESS", AT)
        records[desktop_id] = DesktopRecord(f"group-{index % 1000:04d}", "img-new", f"pc-{index:06d}", job, AT)
    return State(str(uuid.uuid4()), 1, MappingProxyType(records), MappingProxyType(jobs))


@contextmanager
def local_store() -> Iterator[Callable[[], StateStore]]:
    with tempfile.TemporaryDirectory() as directory:
        yield lambda: LocalStateStore(Path(directory) / "state.json")


@contextmanager
def postgres_store() -> Iterator[Callable[[], StateStore]]:
    import psycopg

    from reconciler.state.postgres import PostgresStateStore

    schema = f"bench_{uuid.uuid4().hex[:12]}"
    try:
        yield lambda: PostgresStateStore(PG_DSN, schema, "bench")
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@contextmanager
def s3_store() -> Iterator[Callable[[], StateStore]]:
    from harness.backends import S3_ENV, S3Server, s3_settings

    from reconciler.model import S3Settings
    from reconciler.state.s3 import S3StateStore

    server = S3Server()
    try:
        settings = S3Settings(**s3_settings(f"http://{server.address[0]}:{server.address[1]}", server.new_bucket()))
        yield lambda: S3StateStore.from_settings(settings, "bench", S3_ENV)
    finally:
        server.stop()


BACKENDS = {"local": local_store, "postgres": postgres_store, "s3": s3_store}


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def measure(factory: Callable[[], StateStore], state: State, repeat: int, appends: int) -> dict[str, float]:
    store = factory()
    store.read()
    writes, reads = [], []
    for serial in range(1, repeat + 1):
        version = State(state.lineage, serial, state.desktops, state.jobs)
        writes.append(timed(lambda v=version: store.write(v)))  # type: ignore[misc]
        reads.append(timed(lambda: factory().read()))
    assert factory().read() == State(state.lineage, repeat, state.desktops, state.jobs)
    record = {"type": "intent", "at": AT, "batch_id": "b", "group": "g", "image_id": "img-new",
              "desktop_ids": [str(uuid.uuid4()) for _ in range(100)]}
    journal = factory()
    append = timed(lambda: [journal.append({**record, "n": n}) for n in range(appends)]) / appends
    journal.discard()
    return {"read": statistics.median(reads), "write": statistics.median(writes), "append": append}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--desktops", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--appends", type=int, default=200)
    parser.add_argument("--backends", default="local,postgres,s3")
    args = parser.parse_args()
    state = big_state(args.desktops)
    print(f"state: {args.desktops:,} desktops, {len(state.jobs):,} jobs; median of {args.repeat}; append = mean of {args.appends}")
    print(f"{'backend':<10} {'read s':>8} {'write s':>8} {'append ms':>10}")
    figures = {}
    for name in args.backends.split(","):
        with BACKENDS[name]() as factory:
            figures[name] = measure(factory, state, args.repeat, args.appends)
        f = figures[name]
        print(f"{name:<10} {f['read']:>8.3f} {f['write']:>8.3f} {f['append'] * 1000:>10.2f}", flush=True)
    if "local" in figures and "postgres" in figures:
        ratio = figures["postgres"]["write"] / figures["local"]["write"]
        verdict = "within" if ratio <= 3 else "OVER"
        print(f"postgres write / local write = {ratio:.2f} ({verdict} the 3x budget)")
        return 0 if ratio <= 3 else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
