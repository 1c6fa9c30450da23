"""``state push``: replacing a backend's state with a state file, as a migration between
backends does. The rules are pure (``checked_push``); ``push_state`` does the I/O through a
``StateStore``, under its lock.
"""

from __future__ import annotations

from dataclasses import replace

from reconciler.state.state import State, StateError, state_to_json
from reconciler.state.store import StateStore


class PushRefused(StateError):
    """The pushed state would replace a state it does not descend from."""


def checked_push(current: State, pushed: State, *, force: bool, source: str, where: str) -> State:
    """The state to write in place of ``current``.

    Refused unless ``force``: another lineage, a lower serial, or the same serial with other
    content (two different states with one serial would let a saved plan of one apply to the
    other). Forced over the same lineage, the serial moves past the current one, so plans made
    against the replaced state become stale.
    """
    if pushed.lineage is None:
        raise PushRefused(f"{source} holds an empty state (no lineage): nothing to push")
    if current.lineage is None:
        return pushed
    problem = None
    if pushed.lineage != current.lineage:
        problem = f"it has lineage {pushed.lineage}, the state at {where} has lineage {current.lineage}"
    elif pushed.serial < current.serial:
        problem = f"its serial {pushed.serial} is lower than the serial {current.serial} at {where}"
    elif pushed.serial == current.serial and state_to_json(pushed) != state_to_json(current):
        problem = f"it differs from the state at {where} with the same serial {current.serial}"
    if problem is None:
        return pushed
    if not force:
        raise PushRefused(f"refusing to push {source}: {problem}. Use --force to replace the state anyway")
    if pushed.lineage == current.lineage:
        return replace(pushed, serial=max(pushed.serial, current.serial + 1))
    return pushed


def push_state(store: StateStore, pushed: State, *, force: bool, source: str, lock_timeout: float = 0.0) -> State:
    """Write ``pushed`` (as ``checked_push`` allows) under the lock; return what was written."""
    info = store.lock("state push", timeout=lock_timeout)
    try:
        current = store.read()
        if store.replay():
            raise PushRefused(
                f"the state at {store.location} has the journal of an interrupted run; fold it in first "
                "(run `reconciler jobs --refresh` or `reconciler apply`), then push again"
            )
        written = checked_push(current, pushed, force=force, source=source, where=store.location)
        store.write(written)
        return written
    finally:
        store.unlock(info.id)
