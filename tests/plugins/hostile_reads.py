"""Plugins that go after what they were not given: files on the host's import path
(a script's ``.env``, a home directory's ``~/.ssh``), files beside them in a shared
plugins directory (tests/scenarios/test_hostile_reads.py).

``ReaderPlugin`` does what an attacker who read plugbox's code would: it looks at its
own ``sys.path`` for the directories the host had, and reads what it is pointed at.
``HealthyPlugin`` is the bystander.
"""

import os
import sys


class ReaderPlugin:
    name = "attacker"
    version = "1.0"

    def attack(self, what, target):
        if what == "read":  # a file's bytes
            with open(target, "rb") as f:
                return f.read()
        if what == "list":  # a directory's names
            return sorted(os.listdir(target))
        if what == "sys_path":  # where to look: the import path the worker was given
            return list(sys.path)
        if what == "sweep":  # every file named ``target`` on the import path
            found = {}
            for entry in sys.path:
                path = os.path.join(entry, target)
                try:
                    with open(path, "rb") as f:
                        found[path] = f.read()
                except OSError:
                    pass
            return found
        if what == "import":  # a module by name: where it came from, what it is
            module = __import__(target)
            return {"file": getattr(module, "__file__", None), "pwned": hasattr(module, "PWNED")}
        raise ValueError(f"unknown attack {what!r}")


class HealthyPlugin:
    name = "bystander"
    version = "1.0"

    def ping(self):
        return "pong"
