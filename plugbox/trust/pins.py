"""Version pins: what a plugin's version must be for ``host.add`` to accept it.

A pin is a PEP 440 specifier set (``"~=1.2"``, ``">=1,<2"``, ``"==1.4.*"``), checked
with ``packaging`` (the reference implementation of PEP 440, used by pip), or an exact
version taken from a lock file (compared as strings, so a version that is not PEP 440
can still be locked). Host side only: the worker never sees a pin.

The versions checked are those the worker reports in its handshake: the plugin class's
declared ``version`` and, for a plugin imported from an installed distribution, the
distribution's version. Every one of them that is present must satisfy the pin, and at
least one must be present. Pre-releases satisfy a range that contains them (PEP 440
accepts a pre-release that is already installed). A declared version is the plugin's
own claim: a pin catches drift and mistakes, an integrity hash (``sha256=``) catches
tampering.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from packaging.specifiers import SpecifierSet

__all__ = ["Found", "VersionPin"]


@dataclass(frozen=True, slots=True)
class Found:
    """The versions a worker reported for a plugin."""

    declared: str = ""
    dist_name: str = ""
    dist_version: str = ""

    def as_dict(self) -> dict[str, str]:
        """``{"declared": ..., "distribution": "name version"}``, the present ones only."""
        out = {}
        if self.declared:
            out["declared"] = self.declared
        if self.dist_name:
            out["distribution"] = f"{self.dist_name} {self.dist_version}"
        return out

    def describe(self) -> str:
        """'declared version 2.1.0, distribution foo 2.1.0' (or 'no version at all')."""
        parts = []
        if self.declared:
            parts.append(f"declared version {self.declared!r}")
        if self.dist_name:
            parts.append(f"distribution {self.dist_name} {self.dist_version!r}")
        return (
            ", ".join(parts)
            or "no version at all (the class declares none and it "
            "is not from an installed distribution)"
        )


class VersionPin:
    """A version requirement: ``VersionPin("~=1.2")``, or ``VersionPin.exact(...)``."""

    def __init__(self, spec: str) -> None:
        if not isinstance(spec, str) or not spec.strip():
            raise ValueError(
                f"a version pin must be a PEP 440 specifier such as '~=1.2', not {spec!r}"
            )
        from packaging.specifiers import InvalidSpecifier, SpecifierSet

        try:
            self._set: SpecifierSet | None = SpecifierSet(spec)
        except InvalidSpecifier:
            raise ValueError(
                f"invalid version pin {spec!r}: not a PEP 440 specifier "
                f"(for example '~=1.2', '>=1,<2', '==1.4.*')"
            ) from None
        self.spec = spec
        self._exact: tuple[str, str | None] | None = None
        self.source = ""

    @classmethod
    def exact(cls, declared: str, dist_version: str | None, source: str) -> VersionPin:
        """Exactly these strings (a lock file's entry): the declared version, and the
        distribution version (None: the plugin must not come from a distribution)."""
        pin = cls.__new__(cls)
        pin._set = None
        pin._exact = (declared, dist_version)
        pin.source = source
        shown = f"== {declared or '(none)'}"
        if dist_version is not None:
            shown += f", distribution == {dist_version}"
        pin.spec = f"{shown} ({source})"
        return pin

    def problem(self, found: Found) -> str | None:
        """Why ``found`` does not satisfy the pin, or None if it does."""
        if self._exact is not None:
            declared, dist_version = self._exact
            if found.declared != declared or (found.dist_version or None) != dist_version:
                return f"pinned to {self.spec} but found {found.describe()}"
            return None
        assert self._set is not None
        from packaging.version import InvalidVersion, Version

        present = [
            (what, v)
            for what, v in (
                ("declared version", found.declared),
                ("distribution version", found.dist_version),
            )
            if v
        ]
        if not present:
            return f"pinned to {self.spec!r} but found {found.describe()}"
        for what, text in present:
            try:
                version = Version(text)
            except InvalidVersion:
                return (
                    f"pinned to {self.spec!r} but the {what} {text!r} is not a PEP 440 "
                    f"version ({found.describe()})"
                )
            if not self._set.contains(version, prereleases=True):
                return f"pinned to {self.spec!r} but found {found.describe()}"
        return None

    def __repr__(self) -> str:
        return f"VersionPin({self.spec!r})"
