"""The Start a host sends a worker (``plugbox.host.launch``): limit values in
``limits``, everything else in typed fields."""

from __future__ import annotations

import logging

import pytest

from plugbox import Limits, Sandbox, specs
from plugbox.host.launch import start_message
from plugbox.host.options import PluginOptions
from plugbox.protocol import HOST_TO_WORKER, FrameDecoder, Start, encode
from plugbox.trust.pins import VersionPin


def round_trip(start: Start) -> Start:
    decoder = FrameDecoder(peer="host", accept=HOST_TO_WORKER)
    decoder.feed(encode(start), now=0.0)
    decoded = decoder.next_message(now=0.0)
    assert isinstance(decoded, Start)
    return decoded


def test_a_plain_plugins_start_carries_its_limits_and_nothing_else_in_them() -> None:
    limits = Limits(memory_mb=128, open_files=32, address_space_cap=False)
    options = PluginOptions(ref="p.py", limits=limits, sandbox=Sandbox(user=None))
    start = round_trip(start_message(options, specs.PIPELINE, "/tmp/scratch"))
    assert start.limits == limits.to_worker()
    assert start.limits["memory_mb"] is None  # no address-space cap asked for
    assert (start.sha256, start.distribution, start.initialize, start.standby) == (
        None,
        False,
        True,
        False,
    )
    assert start.log_level == logging.getLogger("plugbox.plugin").getEffectiveLevel()
    assert start.sandbox["scratch"] == "/tmp/scratch"


@pytest.mark.parametrize("level", [logging.DEBUG, logging.ERROR])
def test_the_trust_settings_and_the_standby_travel_as_typed_fields(
    level: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(level, logger="plugbox.plugin")
    digest = "ab" * 32
    options = PluginOptions(
        ref="pkg.mod", sha256=digest, pins=(VersionPin(">=1"),), initialize=False
    )
    start = round_trip(start_message(options, specs.PIPELINE, "/tmp/s", standby=True))
    assert start.sha256 == digest
    assert start.distribution is True  # a version pin is checked on the distribution too
    assert start.initialize is False and start.standby is True
    assert start.log_level == level
    assert set(start.limits) == set(Limits().to_worker())
