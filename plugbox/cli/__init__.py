"""The ``plugbox`` command: ``main`` builds the parser from one module per command
family (``run``, ``lock``, ``doctor``) and maps outcomes to the exit codes in
``codes``."""

from .main import main

__all__ = ["main"]
