"""Shared pieces of the CLI: exit codes, error reporting, output helpers and option decorators.
Terminal I/O only.
"""

from __future__ import annotations

import functools
import importlib
import json
import logging
import os
import re
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from reconciler.errors import ReconcilerError
from reconciler.state import StateLocked, StateStore

EXIT_OK, EXIT_ERROR, EXIT_CHANGES, EXIT_LOCKED = 0, 1, 2, 3
F = TypeVar("F", bound=Callable[..., Any])


def colour_enabled() -> bool | None:
    """None lets click decide (colour on a terminal only); NO_COLOR turns it off everywhere."""
    return False if os.environ.get("NO_COLOR") else None


def style(text: str, **kwargs: Any) -> str:
    if os.environ.get("NO_COLOR"):
        return text
    return click.style(text, **kwargs)


def out(text: str = "", nl: bool = True) -> None:
    click.echo(text, nl=nl, color=colour_enabled())


def err(text: str = "", nl: bool = True) -> None:
    click.echo(text, nl=nl, err=True, color=colour_enabled())


def out_json(document: Any) -> None:
    click.echo(json.dumps(document, indent=2, ensure_ascii=False))


# Characters that would split the one-line ``Error:`` format or drive the terminal: C0 and C1
# controls, DEL, and Unicode's line and paragraph separators.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def one_line(text: str) -> str:
    """``text`` with every control character escaped (a newline as ``\\n``, ESC as ``\\x1b``):
    a file or desktop name can hold any of them."""
    return _CONTROL.sub(lambda m: _NAMED.get(m.group(), f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100 else f"\\u{ord(m.group()):04x}"), text)


def fail(message: str | list[str], code: int = EXIT_ERROR, hint: str | None = None) -> None:
    """One ``Error:`` line (control characters in ``message`` escaped; a list: one line per
    entry, each escaped), then our own ``hint``."""
    lines = [one_line(line) for line in ([message] if isinstance(message, str) else message)]
    err(style("Error: ", fg="red", bold=True) + "\n".join(lines) + (f"\n{hint}" if hint else ""))
    sys.exit(code)


def configure_logging() -> None:
    """``RECONCILER_LOG=info|debug`` shows reconciler's own log (API calls, retries) on stderr;
    libraries stay at warnings, so nothing below our own redaction rules is printed."""
    level = getattr(logging, os.environ.get("RECONCILER_LOG", "warning").upper(), logging.WARNING)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("reconciler").setLevel(level)


def _shortened(text: str, limit: int) -> str:
    """``text`` cut at a word to fit ``limit`` columns, with "..." as click cuts command help."""
    if len(text) <= limit:
        return text
    return text[: max(limit - 3, 0)].rsplit(" ", 1)[0].rstrip(" ,:;") + "..."


class ReconcilerGroup(click.Group):
    """Maps every failure to the exit-code contract (README, Commands): domain errors and bad usage
    exit 1 with one ``Error:`` line, a held lock exits 3, and nothing prints a traceback unless
    ``RECONCILER_DEBUG=1``.

    Subcommands are imported when used (``lazy``: name -> "module:attribute"), so a pre-commit
    ``validate`` does not pay for the HTTP client and the simulator.
    """

    def __init__(
        self, *args: Any, lazy: dict[str, str] | None = None, summaries: dict[str, str] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})
        self.summaries = dict(summaries or {})  # lazy commands' one-line help, for --help

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list from ``summaries``, importing no command that is not loaded yet."""
        names = [name for name in self.list_commands(ctx) if name in self.summaries or self.get_command(ctx, name)]
        if not names:
            return
        limit = formatter.width - 6 - max(map(len, names))
        rows = []
        for name in names:
            command = self.commands.get(name)
            if command is not None:
                if not command.hidden:
                    rows.append((name, command.get_short_help_str(limit)))
            else:
                rows.append((name, _shortened(self.summaries[name], limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy and cmd_name not in self.commands:
            module, _, attribute = self.lazy[cmd_name].partition(":")
            self.add_command(getattr(importlib.import_module(module), attribute), cmd_name)
        return super().get_command(ctx, cmd_name)

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None, standalone_mode: bool = True, **extra: Any) -> Any:
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except StateLocked as exc:
            lock_id = exc.info.id if exc.info else "LOCK_ID"
            fail(str(exc), EXIT_LOCKED, hint=f"If that run is gone, release the lock with: reconciler force-unlock {one_line(lock_id)}")
        except ReconcilerError as exc:
            fail(exc.message_lines())
        except click.UsageError as exc:
            fail(exc.format_message(), hint=f"Try '{exc.ctx.command_path} --help' for help." if exc.ctx else None)
        except click.ClickException as exc:
            fail(exc.format_message())
        except click.Abort:
            fail("aborted")
        except OSError as exc:  # the environment (a full disk, a read-only file system), not a bug
            where = f"{exc.filename}: " if exc.filename else ""
            fail(f"{where}{exc.strerror or exc}")
        except Exception as exc:  # noqa: BLE001 - the last line of defence against tracebacks
            if os.environ.get("RECONCILER_DEBUG") == "1":
                raise
            fail(f"internal error: {type(exc).__name__}: {exc} (set RECONCILER_DEBUG=1 for a traceback)")
        sys.exit(code if isinstance(code, int) else EXIT_OK)


def announce_lock_wait(store: StateStore, timeout: float) -> None:
    """Say who holds the lock before waiting for it, as Terraform says "Acquiring state lock":
    a silent wait looks like a hang."""
    if timeout > 0 and (info := store.lock_info()) is not None:
        err(f"Waiting up to {timeout:g}s for the state lock held by {info.describe()}")


def json_option(help_text: str = "Write JSON to stdout instead of text.") -> Callable[[F], F]:
    return click.option("--json", "as_json", is_flag=True, help=help_text)


def full_option(func: F) -> F:
    return click.option("--full", is_flag=True,
                        help="List every desktop on its own line (default: grouped, names several to a line).")(func)


def target_options(func: F) -> F:
    func = click.option("--exclude", "excludes", multiple=True, metavar="NAME", help="Leave out a group or desktop id (repeatable).")(func)
    return click.option("--target", "targets", multiple=True, metavar="NAME", help="Only act on this group or desktop id (repeatable).")(func)


def _change_directory(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value:
        os.chdir(value)
    return value


def chdir_option(func: F) -> F:
    """``-C DIR`` after the subcommand as well as before it. Eager, so the paths given with it
    are read from ``DIR``."""
    return click.option("-C", "--chdir", type=click.Path(exists=True, file_okay=False), is_eager=True, expose_value=False,
                        callback=_change_directory, metavar="DIR", help="Run as if started in DIR.")(func)


def manifests_alias(func: F) -> F:
    """``-m PATH`` (as ``state`` and ``jobs`` take it) wherever manifests are named by a
    positional PATH: both forms work in every command."""

    @functools.wraps(func)
    def merged(*args: Any, manifests_alias: tuple[str, ...] = (), **kwargs: Any) -> Any:
        kwargs["paths"] = (*kwargs.get("paths", ()), *manifests_alias)
        return func(*args, **kwargs)

    option = click.option("-m", "--manifests", "manifests_alias", multiple=True, metavar="PATH",
                          type=click.Path(), help="Manifests to read (the same as PATH).")
    return chdir_option(option(merged))  # type: ignore[return-value]


def manifest_paths(func: F) -> F:
    # Existence is checked by the loader, so a missing path is reported like any manifest
    # problem (and as JSON diagnostics under validate --json).
    return manifests_alias(click.argument("paths", nargs=-1, type=click.Path(dir_okay=True, file_okay=True))(func))
