"""Which installed distribution a module plugin comes from (pins, audit trail)."""

from __future__ import annotations

import pytest


def test_a_module_plugins_distribution_is_found_without_scanning_every_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A module plugin's distribution, asked for by pins and the audit trail at every
    load, is the one named like its package: found by one lookup, not by reading the
    metadata of every installed distribution (a quarter of a second in a full venv).
    The scan remains for a package whose distribution is named otherwise."""
    import importlib.metadata

    from plugbox.worker.loader import distribution_of

    def no_scan() -> dict[str, list[str]]:
        raise AssertionError("scanned every distribution")

    real_scan = importlib.metadata.packages_distributions
    monkeypatch.setattr(importlib.metadata, "packages_distributions", no_scan)
    assert distribution_of("plugbox.plugins.message_logger")[0] == "plugbox"
    assert distribution_of("msgpack")[0] == "msgpack"
    monkeypatch.setattr(importlib.metadata, "packages_distributions", real_scan)
    assert (
        distribution_of("_multiprocess")[0] == "multiprocess"
    )  # named otherwise: found by the scan
    assert distribution_of("no_such_module_at_all") == ("", "")
