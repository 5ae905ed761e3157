"""Hostile plugins for tests/scenarios/test_hostile_decode.py: plain Python, nothing
imported from plugbox, as an attacker who read plugbox's code would write them.

``HostilePlugin.attack(what, target)`` runs ``do_<what>(**target)``; each attacks the
host's memory or CPU through what the host takes from a worker: replies that decode to
far more than their bytes, log records before the Handshake, floods of output lines and
of Log frames written straight onto the channel, and text that forges log lines.
``config["early"] = [count, size]`` makes ``initialize`` log ``count`` records of
``size`` characters, before the worker's Handshake.
"""

import logging
import os
import select
import struct
import sys
import time

CHANNEL_FD = 3  # the worker's channel to the host
LOG = logging.getLogger("hostile")


def write_all(fd, data):
    """Write all of ``data`` to ``fd``, waiting while the host does not read."""
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            select.select([], [fd], [])


class HostilePlugin:
    name = "hostile"
    version = "6.6.6"

    def initialize(self, config):
        count, size = config.get("early", (0, 0))
        for i in range(count):
            LOG.warning("%d%s", i, "A" * size)

    def attack(self, what, target):
        return getattr(self, f"do_{what}")(**(target or {}))

    # -- replies that decode to far more than their bytes ----------------------------
    # Written straight onto the channel as the Result of the call being made (the id
    # read from the worker's frame that called the hook), so that the worker's own
    # checks of what a hook returns do not run; then it waits for the host's verdict.
    def do_empty_maps(self, n):
        """``n`` empty maps, in arrays of up to a million (the host's cap on one
        container's length): 1 byte each on the wire (0x80), a 64-byte dict each in
        the host."""
        per = min(n, 1_000_000)
        chunk = b"\xdd" + struct.pack(">I", per) + b"\x80" * per
        self._reply(bytes([0x90 + n // per]) + chunk * (n // per))

    def do_nested_maps(self, n):
        """``n`` times {-32: {-31: {-30: {}}}}: 7 bytes each, three dicts and three ints
        each in the host (120 bytes a byte)."""
        self._reply(b"\xdd" + struct.pack(">I", n) + b"\x81\xe0\x81\xe1\x81\xe2\x80" * n)

    def _reply(self, value):
        frame = sys._getframe(1)
        while "msg" not in frame.f_locals or not hasattr(frame.f_locals["msg"], "hook"):
            frame = frame.f_back
        call_id = frame.f_locals["msg"].id
        body = b"\x94\x03\xce" + struct.pack(">I", call_id) + value + b"\x80"
        write_all(CHANNEL_FD, struct.pack(">I", len(body)) + body)
        time.sleep(60)  # killed by the host before this ends

    # -- floods ------------------------------------------------------------------------
    def do_newlines(self, n):
        """``n`` empty lines on stdout: one log record each in the host, unbounded."""
        write_all(1, b"\n" * n)
        return "flooded"

    def do_log_frames(self, n):
        """``n`` tiny valid Log frames straight onto the channel, 10 bytes each: the
        record [5, 20, "x", ""] (INFO, logger "x", no text)."""
        body = b"\x94\x05\x14\xa1x\xa0"
        write_all(CHANNEL_FD, (struct.pack(">I", len(body)) + body) * n)
        return "flooded"

    def do_log(self, text, level=logging.WARNING):
        LOG.log(level, "%s", text)
        return "logged"

    def do_forge(self, text):
        """``text`` as a log record, a line on stdout and one on stderr."""
        LOG.warning("%s", text)
        print(text, flush=True)
        print(text, file=sys.stderr, flush=True)
        return "forged"

    def do_raise(self, message):
        raise RuntimeError(message)
