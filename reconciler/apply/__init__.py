"""The apply engine: executing a plan against the cloud and the state.

- ``engine``: the ``Applier``, which drives each group's ``GroupRun`` (``rollout.apply_waves``)
  with the three parts below, on a thread pool of ``api.max_concurrent_calls`` workers;
- ``submitting``: sending one rebuild batch, bracketed by journal records;
- ``polling``: looking at the jobs under way;
- ``lost_calls``: settling calls whose outcome is unknown, after the lost-call horizon;
- ``events``: the typed progress events an apply reports (``apply --json``, ``watch``).
"""
