"""How a group's rebuilds roll out: maintenance windows, canaries, batches, the in-flight cap and
the failure budget. Pure except ``apply_recheck``.

The module names say when each part runs:

- ``windows``: is a window open at a moment, when does it next open (both times);
- ``plan_shaping``: plan time, turns a group's rebuilds into waits (window closed, user
  connected) and marks the canary wave;
- ``apply_waves``: apply time, ``GroupRun`` releases batches wave by wave as results come in;
- ``apply_recheck``: apply time, just before a call, whether a user has connected since the plan.
"""

from reconciler.rollout.plan_shaping import CANARY_WAVE, MAIN_WAVE

__all__ = ["CANARY_WAVE", "MAIN_WAVE"]
