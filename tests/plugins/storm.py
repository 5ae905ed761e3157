"""A plugin that fails the same way every time, for the restart-storm tests.

``process(input_data={"do": "crash"})`` ends the worker (exit status 3): a plugin that
crashes on every call. ``{"do": "poison", "arg": how}`` writes ``how`` to the file
``poisoned`` in the worker's working directory (its scratch directory; the tests give
every worker the same one with ``Sandbox(scratch=...)``), then ends the worker. From
then on every start of the plugin fails, ``how``:

- ``import_exit``: the module exits (status 5) as it is imported;
- ``initialize_raise``: ``initialize`` raises RuntimeError;
- ``initialize_exit``: ``initialize`` exits (status 6).

Any other input is echoed back.
"""

import os

POISON = "poisoned"


def _poisoned():
    try:
        with open(POISON) as f:
            return f.read()
    except FileNotFoundError:
        return None


if _poisoned() == "import_exit":
    os._exit(5)


class StormPlugin:
    name = "storm"
    version = "1.0"

    def initialize(self, config):
        how = _poisoned()
        if how == "initialize_raise":
            raise RuntimeError("initialize refused: poisoned")
        if how == "initialize_exit":
            os._exit(6)

    def process(self, input_data):
        do = input_data.get("do") if isinstance(input_data, dict) else None
        if do == "crash":
            os._exit(3)
        if do == "poison":
            with open(POISON, "w") as f:
                f.write(input_data["arg"])
            os._exit(3)
        return input_data
