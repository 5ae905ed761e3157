"""Finding installed plugins by entry point, from metadata only.

A distribution advertises plugins in an entry point group (``plugbox.plugins`` by
default)::

    [project.entry-points."plugbox.plugins"]
    redactor = "acme_redactor.plugin:RedactorPlugin"

``discover`` reads the installed distributions' metadata (``entry_points.txt``) and
imports nothing: the plugin's code runs only in a worker, when the entry point's value
is handed to ``host.add``.
"""

from __future__ import annotations

import importlib.metadata as metadata
from dataclasses import dataclass

__all__ = ["DiscoveredPlugin", "discover"]


@dataclass(frozen=True, slots=True)
class DiscoveredPlugin:
    """One entry point of the group: ``ref`` is what ``host.add`` takes."""

    name: str
    ref: str
    group: str
    dist_name: str | None
    dist_version: str | None


def discover(group: str = "plugbox.plugins") -> list[DiscoveredPlugin]:
    """The installed plugins advertised in entry point ``group``, sorted by name (then
    distribution). Reads metadata only; imports no plugin code.

    An entry point's value ``module:attr`` (extras in brackets dropped) is the
    reference to pass to ``host.add``.
    """
    found = []
    for ep in metadata.entry_points(group=group):
        dist = ep.dist
        ref = ep.value.split("[", 1)[0].strip().replace(" ", "")
        found.append(
            DiscoveredPlugin(
                name=ep.name,
                ref=ref,
                group=group,
                dist_name=dist.metadata["Name"] if dist is not None else None,
                dist_version=dist.version if dist is not None else None,
            )
        )
    found.sort(key=lambda d: (d.name, d.dist_name or ""))
    return found
