"""The root of the domain exception tree. No I/O.

The library raises these; only ``reconciler.cli`` turns them into messages and exit codes.
Messages must never contain secrets (SK, tokens, passwords).
"""

from __future__ import annotations


class ReconcilerError(Exception):
    """Base class of every error the CLI reports as ``Error: <message>`` with exit code 1."""

    def message_lines(self) -> list[str]:
        """The message, one entry per output line. The CLI escapes control characters inside
        each entry, so a name holding a newline cannot split a line; an error that lists several
        problems returns a header and one entry per problem."""
        return [str(self)]


class ConfigurationError(ReconcilerError):
    """Missing or contradictory configuration: credentials, endpoints, settings."""
