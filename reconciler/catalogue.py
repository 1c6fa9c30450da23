"""Plan-time image checks: before any rebuild is sent, every group's image must exist in the
catalogue, be of the declared type and OS, and fit the desktops it will be put on.

``image_violations`` is pure (catalogue entries + desktops + groups in, violations out);
``read_catalogue`` and ``verify_images`` are the edge that reads the catalogue (one look-up per
distinct image) and the live desktops through a ``WorkspaceClient``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from reconciler.cloud.models import CatalogueImage, Desktop
from reconciler.errors import ReconcilerError
from reconciler.model import Action, DesktopGroup, Image
from reconciler.plan import Plan

if TYPE_CHECKING:  # the HTTP client is only needed when a command talks to the cloud
    from reconciler.cloud.client import WorkspaceClient

SHOWN_DESKTOPS = 10  # a violation names at most this many desktops, then counts the rest
MARKET_IDS_PER_CALL = 100
IDS_PER_CALL = 100  # desktop ids per desktops/detail call


class Rule(StrEnum):
    EXISTS = "exists"
    TYPE = "type"
    OS_TYPE = "os_type"
    ARCHITECTURE = "architecture"
    MIN_DISK = "min_disk"


@dataclass(frozen=True)
class Violation:
    """One broken rule of one group's image, with the desktops it concerns (if any)."""

    group: DesktopGroup
    rule: Rule
    problem: str
    desktops: tuple[str, ...] = ()

    def __str__(self) -> str:
        image = self.group.image
        where = f"group {self.group.name!r} ({self.group.source}), image {image.id} ({image.type}), rule {self.rule.value}"
        return f"{where}: {self.problem}{_listed(self.desktops)}"


def _listed(desktops: Sequence[str]) -> str:
    if not desktops:
        return ""
    shown = ", ".join(desktops[:SHOWN_DESKTOPS])
    more = len(desktops) - SHOWN_DESKTOPS
    return f": {shown}" + (f" and {more} more" if more > 0 else "")


class ImageCheckFailed(ReconcilerError):
    """The catalogue says a group's image cannot be put on its desktops; nothing was sent."""

    def __init__(self, violations: Sequence[Violation]) -> None:
        self.violations = tuple(violations)
        super().__init__("\n".join(self.message_lines()))

    def message_lines(self) -> list[str]:
        lines = [str(v) for v in self.violations]
        if len(lines) == 1:
            return [f"image check failed: {lines[0]}"]
        return [f"image check failed, {len(lines)} problems:", *(f"  {line}" for line in lines)]


def catalogue_key(image: Image) -> tuple[str, bool]:
    """Market images are looked up in ``market-images``, the others in ``images``."""
    return image.id, image.type == "market"


# Spellings of one value across the Workspace APIs: desktops say "Others" where the catalogue
# says "Other", and architectures may come as machine names.
_SYNONYMS = {"others": "other", "x86_64": "x86", "amd64": "x86", "aarch64": "arm", "arm64": "arm"}


def _same(a: str | None, b: str | None) -> bool:
    def norm(text: str | None) -> str:
        lowered = (text or "").lower()
        return _SYNONYMS.get(lowered, lowered)

    return norm(a) == norm(b)


def _desktops(count: int, verb: str, verbs: str) -> str:
    return f"1 desktop to rebuild {verb}" if count == 1 else f"{count} desktops to rebuild {verbs}"


def _image_rules(group: DesktopGroup, entry: CatalogueImage | None) -> list[Violation]:
    image = group.image
    if entry is None:
        where = "market images (GET market-images)" if image.type == "market" else "gold and private images (GET images)"
        return [Violation(group, Rule.EXISTS, f"no such image among the project's {where}")]
    found = []
    # A market image is one because market-images lists it, whatever its own image_type says.
    if image.type != "market" and entry.image_type and entry.image_type != image.type:
        found.append(Violation(group, Rule.TYPE, f"the catalogue has it as a {entry.image_type} image, the manifest says {image.type}"))
    if image.os_type and entry.os_type and not _same(entry.os_type, image.os_type):
        found.append(Violation(group, Rule.OS_TYPE, f"the catalogue has it as a {entry.os_type} image, the manifest says {image.os_type}"))
    return found


def _desktop_rules(group: DesktopGroup, entry: CatalogueImage, desktops: Sequence[Desktop]) -> list[Violation]:
    found = []
    arch = entry.architecture
    other = [d for d in desktops if arch and d.architecture and not _same(d.architecture, arch)]
    if other:
        kinds = "/".join(sorted({d.architecture or "" for d in other}))
        found.append(Violation(group, Rule.ARCHITECTURE,
                               f"an {arch} image, but {_desktops(len(other), 'is', 'are')} {kinds}", tuple(d.id for d in other)))
    need = entry.min_disk
    small = [d for d in desktops if need and d.system_disk_gb is not None and d.system_disk_gb < need]
    if small:
        found.append(Violation(group, Rule.MIN_DISK,
                               f"needs a system disk of at least {need} GB, {_desktops(len(small), 'has', 'have')} less",
                               tuple(f"{d.id} ({d.system_disk_gb} GB)" for d in small)))
    return found


def image_violations(
    groups: Iterable[DesktopGroup],
    rebuilds: Mapping[str, Sequence[Desktop]],
    catalogue: Mapping[tuple[str, bool], CatalogueImage | None],
) -> list[Violation]:
    """Every rule the groups' images break. ``rebuilds``: group name -> the live desktops it
    is about to rebuild (groups without rebuilds are not checked); ``catalogue``: what the
    catalogue answered for each image (None: not found)."""
    found: list[Violation] = []
    for group in sorted(groups, key=lambda g: g.name):
        desktops = rebuilds.get(group.name)
        if desktops is None:
            continue
        entry = catalogue.get(catalogue_key(group.image))
        found += _image_rules(group, entry)
        if entry is not None:
            found += _desktop_rules(group, entry, sorted(desktops, key=lambda d: d.id))
    return found


# -- the edge: reading the catalogue and the desktops -----------------------------------------


def read_catalogue(client: WorkspaceClient, images: Iterable[Image]) -> dict[tuple[str, bool], CatalogueImage | None]:
    """What the catalogue says about each distinct image: one ``images`` call per gold or
    private image, market images up to 100 per ``market-images`` call."""
    keys = sorted({catalogue_key(image) for image in images})
    answers: dict[tuple[str, bool], CatalogueImage | None] = {}
    for image_id, market in keys:
        if not market:
            listed = client.list_images(image_id=image_id).images
            answers[(image_id, False)] = next((i for i in listed if i.id == image_id), None)
    market_ids = [image_id for image_id, market in keys if market]
    for start in range(0, len(market_ids), MARKET_IDS_PER_CALL):
        chunk = market_ids[start:start + MARKET_IDS_PER_CALL]
        listed_market = {i.id: i for i in client.list_market_images(chunk)}
        answers.update(((image_id, True), listed_market.get(image_id)) for image_id in chunk)
    return answers


def rebuilds_by_group(plan: Plan, desktops: Mapping[str, Desktop]) -> dict[str, list[Desktop]]:
    """group name -> live desktops the plan rebuilds (desktops not seen live are left out)."""
    found: dict[str, list[Desktop]] = {}
    for change in plan.changes:
        if change.action is Action.REBUILD and change.group is not None:
            desktop = desktops.get(change.desktop_id)
            found.setdefault(change.group, []).extend([desktop] if desktop is not None else [])
    return found


def verify_images(client: WorkspaceClient, plan: Plan, desktops: Mapping[str, Desktop] | None = None) -> None:
    """ImageCheckFailed unless every group the plan rebuilds desktops of may put its image on
    them. ``desktops``: the live desktops when the caller has just read them; otherwise the
    plan's rebuilds are read again (a saved plan, just before sending)."""
    if desktops is None:
        ids = sorted({c.desktop_id for c in plan.changes if c.action is Action.REBUILD})
        desktops = {}
        for start in range(0, len(ids), IDS_PER_CALL):
            desktops.update((d.id, d) for d in client.iter_desktops(desktop_id=ids[start:start + IDS_PER_CALL]))
    rebuilds = rebuilds_by_group(plan, desktops)
    if not rebuilds:
        return
    groups = [g for g in plan.groups if g.name in rebuilds]
    violations = image_violations(groups, rebuilds, read_catalogue(client, [g.image for g in groups]))
    if violations:
        raise ImageCheckFailed(violations)
