"""The simulated desktops: mutable records, their indexes and filtered, paged queries.

No I/O and no HTTP. Every filter of ``desktops/detail`` is answered from an index (value ->
set of creation ordinals); the sorted result of a query is cached until a desktop changes an
indexed field, so paging through N desktops costs O(N) overall, not O(N) per page.
"""

from __future__ import annotations

from collections import OrderedDict, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from reconciler.simulator.spec import DesktopSpec, Image

PRODUCT_ID = "workspace.x86.ultimate.large2"
# Fleet desktops get creation times one second apart from this instant (2023-11-14T22:13:20Z),
# so `created` agrees with creation order and stays the same every run.
BASE_CREATED = 1_700_000_000.0
_INDEXED = (
    "name", "status", "image_id", "pool_id", "enterprise_project_id", "user_name", "desktop_type", "in_maintenance_mode",
)
_QUERY_CACHE_SIZE = 64


@dataclass(slots=True)
class DesktopRecord:
    """One desktop as the simulated service stores it."""

    ordinal: int
    id: str
    name: str
    image_id: str
    tags: dict[str, str]
    pool_id: str | None
    status: str
    login_status: str
    task_status: str
    enterprise_project_id: str
    user_name: str | None
    fail_rebuilds: bool
    created: float
    rebuild_count: int = 0
    # The sub-job rebuilding this desktop now: (job id, start of RUNNING, end), else None.
    rebuild: tuple[str, float, float] | None = None
    architecture: str = "x86"
    system_disk_size: int = 80  # GB
    frozen: bool = False
    in_maintenance_mode: bool = False

    @property
    def desktop_type(self) -> str:
        return "POOLED" if self.pool_id else "DEDICATED"

    @property
    def ip_address(self) -> str:
        n = self.ordinal + 10
        return f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"

    @property
    def product_id(self) -> str:
        return PRODUCT_ID

    def index_keys(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _INDEXED}

    def to_dict(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in self.__slots__ if name != "ordinal"}
        data["tags"] = dict(self.tags)
        data["rebuild"] = list(self.rebuild) if self.rebuild else None
        return data

    @classmethod
    def from_dict(cls, ordinal: int, data: Mapping[str, Any]) -> DesktopRecord:
        fields = dict(data)
        fields["rebuild"] = tuple(fields["rebuild"]) if fields.get("rebuild") else None
        return cls(ordinal=ordinal, **fields)


@dataclass(frozen=True)
class DesktopQuery:
    """Filters of desktops/detail: every constraint must hold; within one, any value may match.

    A constraint is ``(field, values)``; field is an indexed attribute, ``id``, ``tag`` (values
    are ``(key, value)`` pairs) or ``none`` (matches nothing).
    """

    constraints: tuple[tuple[str, frozenset[Any]], ...] = ()

    @classmethod
    def of(cls, constraints: Iterable[tuple[str, Iterable[Any]]]) -> DesktopQuery:
        normal = {(name, frozenset(values)) for name, values in constraints}
        return cls(tuple(sorted(normal, key=lambda c: (c[0], sorted(map(repr, c[1]))))))


@dataclass
class Fleet:
    """All desktops, in creation order, with the indexes queries use."""

    images: Mapping[str, Image]
    desktops: list[DesktopRecord] = field(default_factory=list)
    by_id: dict[str, DesktopRecord] = field(default_factory=dict)
    by_name: dict[str, DesktopRecord] = field(default_factory=dict)
    _index: dict[str, dict[Any, set[int]]] = field(default_factory=lambda: {n: defaultdict(set) for n in _INDEXED})
    _tags: dict[tuple[str, str], set[int]] = field(default_factory=lambda: defaultdict(set))
    _version: int = 0
    _cache: OrderedDict[DesktopQuery, tuple[int, list[int]]] = field(default_factory=OrderedDict)

    # --- building and changing -----------------------------------------------------------------

    def add_spec(self, desktop: DesktopSpec, created: float) -> DesktopRecord:
        record = DesktopRecord(
            ordinal=len(self.desktops), id=desktop.id, name=desktop.name, image_id=desktop.image_id,
            tags=dict(desktop.tags), pool_id=desktop.pool_id, status=desktop.status,
            login_status=desktop.login_status, task_status=desktop.task_status,
            enterprise_project_id=desktop.enterprise_project_id, user_name=desktop.user_name,
            fail_rebuilds=desktop.fail_rebuilds, created=created, architecture=desktop.architecture,
            system_disk_size=desktop.system_disk_size, frozen=desktop.frozen,
            in_maintenance_mode=desktop.in_maintenance_mode,
        )
        return self.add(record)

    def add(self, record: DesktopRecord) -> DesktopRecord:
        if record.id in self.by_id or record.name in self.by_name:
            raise ValueError(f"desktop {record.id} / {record.name} already exists")
        record.ordinal = len(self.desktops)
        self.desktops.append(record)
        self.by_id[record.id] = record
        self.by_name[record.name] = record
        self._link(record)
        self._version += 1
        return record

    def update(self, record: DesktopRecord, **changes: Any) -> None:
        """Change attributes of a desktop, keeping the indexes in step."""
        indexed = any(name in _INDEXED or name in ("tags", "pool_id") for name in changes)
        if indexed:
            self._unlink(record)
        for name, value in changes.items():
            setattr(record, name, value)
        if indexed:
            self._link(record)
            self._version += 1

    def _link(self, record: DesktopRecord) -> None:
        for name, value in record.index_keys().items():
            self._index[name][value].add(record.ordinal)
        for pair in record.tags.items():
            self._tags[pair].add(record.ordinal)

    def _unlink(self, record: DesktopRecord) -> None:
        for name, value in record.index_keys().items():
            self._index[name][value].discard(record.ordinal)
        for pair in record.tags.items():
            self._tags[pair].discard(record.ordinal)

    # --- queries -------------------------------------------------------------------------------

    def query(self, query: DesktopQuery) -> Sequence[int]:
        """Ordinals of the matching desktops, in creation order."""
        if not query.constraints:
            return range(len(self.desktops))
        cached = self._cache.get(query)
        if cached is not None and cached[0] == self._version:
            self._cache.move_to_end(query)
            return cached[1]
        result = self._evaluate(query)
        self._cache[query] = (self._version, result)
        self._cache.move_to_end(query)
        while len(self._cache) > _QUERY_CACHE_SIZE:
            self._cache.popitem(last=False)
        return result

    def _evaluate(self, query: DesktopQuery) -> list[int]:
        candidates = sorted((self._candidates(name, values) for name, values in query.constraints), key=len)
        result = set(candidates[0])
        for other in candidates[1:]:
            if not result:
                break
            result &= other
        return sorted(result)

    def _candidates(self, name: str, values: frozenset[Any]) -> set[int]:
        if name == "none":
            return set()
        if name == "id":
            return {self.by_id[v].ordinal for v in values if v in self.by_id}
        index = self._tags if name == "tag" else self._index[name]
        sets = [index[v] for v in values if v in index]
        if len(sets) == 1:
            return sets[0]
        return set().union(*sets)

    def page(self, query: DesktopQuery, offset: int, limit: int) -> tuple[list[DesktopRecord], int]:
        ordinals = self.query(query)
        return [self.desktops[i] for i in ordinals[offset:offset + limit]], len(ordinals)

    def __iter__(self) -> Iterator[DesktopRecord]:
        return iter(self.desktops)

    def __len__(self) -> int:
        return len(self.desktops)

    def next_created(self, now: float) -> float:
        """Creation time for a desktop added now: never before the last one, to keep the order."""
        last = self.desktops[-1].created if self.desktops else BASE_CREATED
        return max(now, last + 0.001)
