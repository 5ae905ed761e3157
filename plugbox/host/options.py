"""What ``host.add`` was given for a plugin: ``PluginOptions``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..limits import Limits, Sandbox
from ..specs import OnFailure
from ..trust.pins import VersionPin


@dataclass
class PluginOptions:
    """What ``host.add`` was given for a plugin."""

    ref: str
    config: dict[str, Any] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)
    sandbox: Sandbox = field(default_factory=Sandbox)
    on_failure: OnFailure | None = None
    pins: tuple[VersionPin, ...] = ()
    sha256: str | None = None
    distribution: bool = False
    initialize: bool = True
    inline: bytes | None = None  # a class serialized by value (host.add(SomeClass))
