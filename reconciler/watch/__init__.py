"""``reconciler watch``: reconcile continuously, serve metrics and a status page, notify webhooks.

``policy`` and ``status`` are pure; ``cycle`` and ``loop`` drive the library (manifests, state,
client, applier); ``http``, ``notify`` and ``metrics`` are the process's outside faces.
"""
