"""Imports a package that is not installed."""

import plugbox_no_such_dependency  # noqa: F401


class BrokenPlugin:
    name = "broken"
