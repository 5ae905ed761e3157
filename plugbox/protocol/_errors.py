"""The protocol's one error family.

Every error names the side that broke the rules: ``LocalProtocolError`` when this side
tried to send something the protocol does not allow, ``RemoteProtocolError`` when the
peer sent it. ``peer`` says who the remote side is ("worker", "host", "zygote").
"""

from __future__ import annotations


class ProtocolError(Exception):
    """A frame or message broke the plugbox wire protocol."""

    side: str = "?"

    def __init__(self, message: str, *, side: str) -> None:
        super().__init__(f"{side} broke the protocol: {message}")
        self.side = side
        self.reason = message


class LocalProtocolError(ProtocolError):
    """This side tried to send something the protocol does not allow."""


class RemoteProtocolError(ProtocolError):
    """The peer sent bytes or a message the protocol does not allow."""
