"""Crash and fault harnesses: a served simulator, ``reconciler apply`` in subprocesses killed
with SIGKILL at aimed moments or run through injected faults, and the checks that prove nothing
was lost or done twice. Used by ``tests/test_apply_crash.py``, ``tests/test_fault_soak.py`` and
the larger runs in ``bench/``.
"""
