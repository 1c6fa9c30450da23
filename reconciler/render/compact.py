"""The default text view of a plan: one block per group, desktops named compactly. Pure.

A plan of thousands of desktops printed one line per desktop is not reviewed, it is scrolled.
Here each group gets a header (its image now -> desired, where it is declared, its counts), then
one bucket per (action, reason): the desktops' names, several to a line. Ordinary buckets are
cut after a few lines (``… and 380 more``); drift and failed retries, which a reviewer must see
one by one, are always listed whole. No line is wider than ``WIDTH`` so nothing wraps on a
100-column terminal. ``--full`` keeps the one-line-per-desktop view (``render.text``).
"""

from __future__ import annotations

import re
import textwrap
from collections import Counter
from dataclasses import dataclass

from reconciler.model import Action, Change, Reason
from reconciler.plan import Plan
from reconciler.render.common import (
    COLOURS,
    DRIFT_COLOUR,
    DRIFT_SYMBOL,
    SYMBOLS,
    Section,
    Style,
    group_counts,
    plural,
    short,
    where,
)

WIDTH = 100
BUCKET_LINES = 2  # lines of names an ordinary bucket may take before "… and N more"
ALWAYS_LISTED = frozenset({Reason.DRIFT, Reason.RETRY_FAILED})
INDENT = "      "


@dataclass(frozen=True)
class Bucket:
    """Desktops of one group that share what happens to them and why."""

    action: Action
    reason: Reason
    canary: bool
    pending: Reason | None  # a deferred rebuild's own reason (window, connected user)
    before: str | None  # drift only: the image the desktops were changed to
    labels: tuple[str, ...]

    @property
    def whole(self) -> bool:
        return self.reason in ALWAYS_LISTED or self.pending in ALWAYS_LISTED  # deferred drift too

    def title(self) -> str:
        """``rebuild [drift; running img-x] (3)``: the same bracket as the full view's lines."""
        extras = [self.reason.value] + (["canary"] if self.canary else [])
        extras += [f"then rebuild: {self.pending.value}"] if self.pending is not None else []
        extras += [f"running {self.before}"] if self.before is not None else []
        return f"{self.action.value} [{'; '.join(extras)}] ({len(self.labels)})"


def label(change: Change) -> str:
    """The name people know a desktop by, else its id (``--full`` shows both)."""
    return change.desktop_name or change.desktop_id


def buckets(section: Section) -> list[Bucket]:
    """The section's desktops by bucket, in the section's review order."""
    keyed: dict[tuple[Action, Reason, bool, Reason | None, str | None], list[str]] = {}
    for change in section.changes:
        before = short(change.before_image) if change.drifted else None
        key = (change.action, change.reason, change.wave == "canary", change.pending, before)
        keyed.setdefault(key, []).append(label(change))
    return [Bucket(*key, tuple(sorted(labels, key=natural))) for key, labels in keyed.items()]


def natural(text: str) -> tuple[tuple[int, int | str], ...]:
    """``pc-2`` before ``pc-10``: names are scanned by people, who count."""
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", text) if part)


def pack(items: list[str], first: str, rest: str, width: int = WIDTH) -> list[str]:
    """Items joined by ``, `` into lines no wider than ``width`` (an item longer than a line
    gets a line of its own)."""
    lines, line = [], first
    for index, item in enumerate(items):
        piece = item + ("," if index < len(items) - 1 else "")
        prefix_only = line in (first, rest)
        candidate = line + piece if prefix_only else f"{line} {piece}"
        if len(candidate) > width and not prefix_only:
            lines.append(line)
            candidate = rest + piece
        line = candidate
    lines.append(line)
    return lines


def _capped(labels: tuple[str, ...], first: str) -> list[str]:
    """At most ``BUCKET_LINES`` lines; the last ends with how many more there are."""
    lines = pack(list(labels), first, INDENT)
    if len(lines) <= BUCKET_LINES:
        return lines
    for shown in range(len(labels) - 1, 0, -1):
        more = f"… and {len(labels) - shown} more"
        lines = pack([*labels[:shown], more], first, INDENT)
        if len(lines) <= BUCKET_LINES:
            return lines
    return [f"{first}… and {len(labels)} desktops"]


def bucket_lines(bucket: Bucket, style: Style) -> list[str]:
    drifted = bucket.reason is Reason.DRIFT
    mark = DRIFT_SYMBOL if drifted else SYMBOLS[bucket.action]
    colour = DRIFT_COLOUR if drifted else COLOURS[bucket.action]
    head = f"  {mark} {bucket.title()}:"

    def names(first: str) -> list[str]:
        return pack(list(bucket.labels), first, INDENT) if bucket.whole else _capped(bucket.labels, first)

    lines = names(head + " ")
    if len(lines[0]) > WIDTH:  # a long title and a long first name: the names go below
        lines = [head, *names(INDENT)]
    # Colour only the symbol and title: names stay plain and greppable.
    lines[0] = style(head, fg=colour, bold=True) + lines[0][len(head):]
    return lines


def _images_now(section: Section) -> str:
    """``img-a`` or ``img-a (120) and 2 other images``: what the group's desktops run instead
    (``--full`` shows each desktop's)."""
    befores: Counter[str] = section.befores
    if not befores:
        return ""
    (top, count), others = befores.most_common(1)[0], len(befores) - 1
    if not others:
        return top
    return f"{top} ({count}) and {plural(others, 'other image')}"


def header_lines(section: Section, plan: Plan, style: Style) -> list[str]:
    group = section.group
    title = style(f"# group {section.name}", bold=True)
    if group is None:
        parts = ["(no longer in the manifests)"]
    else:
        now = _images_now(section)
        desired = f"{group.image.id} ({group.image.type})"
        parts = [f"{now} ->", desired] if now else [f"image {desired}"]
        parts.append(where(group, plan))
    lines = pack_parts(f"# group {section.name}", parts)
    lines[0] = title + lines[0][len(f"# group {section.name}"):]
    return lines + textwrap.wrap(group_counts(section), WIDTH, initial_indent="#   ", subsequent_indent="#     ",
                                 break_long_words=False, break_on_hyphens=False)


def pack_parts(head: str, parts: list[str]) -> list[str]:
    """``head  part  part``, continued on ``#   `` lines where a part would not fit (a part
    after an arrow joins it with one space: ``img-a -> img-b``)."""
    lines, line = [], head
    for part in parts:
        gap = " " if line.endswith("->") else "  "
        if len(line) + len(gap) + len(part) > WIDTH:
            lines.append(line)
            line = f"#   {part}"
        else:
            line = f"{line}{gap}{part}"
    return [*lines, line]


def wrap(line: str, indent: str = "  ") -> list[str]:
    """A sentence longer than ``WIDTH``, on as many lines as it takes."""
    if len(line) <= WIDTH:
        return [line]
    return textwrap.wrap(line, WIDTH, subsequent_indent=indent, break_long_words=False, break_on_hyphens=False)


def section_lines(section: Section, plan: Plan, style: Style) -> list[str]:
    lines = header_lines(section, plan, style)
    for bucket in buckets(section):
        lines += bucket_lines(bucket, style)
    return [*lines, ""]
