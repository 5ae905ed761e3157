"""The ``plugbox`` command: ``main`` builds the parser from one module per command
family (``run``, ``demo``, ``top``, ``lock``, ``doctor``, ``bench``); every exit status
is in ``codes``."""

from .main import main

__all__ = ["main"]
