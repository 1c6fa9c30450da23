"""The root of the domain exception tree. No I/O.

The library raises these; only ``reconciler.cli`` turns them into messages and exit codes.
Messages must never contain secrets (SK, tokens, passwords).
"""

from __future__ import annotations


class ReconcilerError(Exception):
    """Base class of every error the CLI reports as ``Error: <message>`` with exit code 1."""


class ConfigurationError(ReconcilerError):
    """Missing or contradictory configuration: credentials, endpoints, settings."""
