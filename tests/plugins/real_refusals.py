"""Plugins written as their authors write them, each doing one thing the default
sandbox or limits refuse: fetching a URL, running a command, caching a file beside
itself, keeping files open, exporting a large file. ``process(input_data)`` takes
``{"catch": True, ...}`` to catch what goes wrong and return its message instead.
"""

import json
import os
import socket
import subprocess


def attempt(input_data, action):
    """Run ``action``; with ``catch``, an exception becomes {"error": type, "message"}."""
    if not input_data.get("catch"):
        return action()
    try:
        return action()
    except Exception as exc:
        return {"error": type(exc).__name__, "message": str(exc)}


class FetchPlugin:
    """Sums the numbers a JSON endpoint returns, through httpx."""

    name = "fetch"
    version = "1.0"

    def process(self, input_data):
        import httpx

        def fetch():
            response = httpx.get(input_data["url"], timeout=10)
            response.raise_for_status()
            return {"total": sum(response.json()["numbers"])}

        return attempt(input_data, fetch)


class EchoClientPlugin:
    """Talks to a line-based TCP service with the stdlib socket module."""

    name = "echo-client"
    version = "1.0"

    def process(self, input_data):
        def talk():
            with socket.create_connection(("127.0.0.1", input_data["port"]), timeout=10) as s:
                s.sendall(b"ping\n")
                return {"reply": s.makefile("rb").readline().decode().strip()}

        return attempt(input_data, talk)


class ShellPlugin:
    """Runs a command, as scripts do: subprocess.run, or os.system."""

    name = "shell"
    version = "1.0"

    def process(self, input_data):
        def run():
            if input_data.get("system"):
                return {"status": os.system("true")}
            done = subprocess.run(["echo", "hello"], capture_output=True, text=True, check=True)
            return {"stdout": done.stdout}

        return attempt(input_data, run)


class CachePlugin:
    """Keeps a JSON cache: beside its own file, in /etc, or in its working directory."""

    name = "cache"
    version = "1.0"

    def process(self, input_data):
        where = input_data.get("where", "beside")
        if where == "kernel-first":
            return kernel_first()
        if where == "in":  # a relative path, after moving to another directory
            os.chdir(input_data["dir"])
            path = "cache.json"
        elif where == "beside":
            path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cache.json")
        elif where == "etc":
            path = "/etc/plugbox-cache.json"
        else:
            path = "cache.json"  # the working directory: the scratch directory

        def save():
            with open(path, "w") as f:
                json.dump({"items": [1, 2, 3]}, f)
            with open(path) as f:
                return {"saved": json.load(f)["items"], "at": os.path.abspath(path)}

        return attempt(input_data, save)


def kernel_first():
    """What scripts rely on outside the writable paths: the errors the kernel gives
    before the sandbox is asked (a missing file, an existing directory)."""
    got = {}
    for name, action in (
        ("makedirs_existing", lambda: os.makedirs("/usr", exist_ok=True)),
        ("remove_missing", lambda: os.remove("/etc/plugbox-no-such-file")),
        ("open_in_missing_dir", lambda: open("/plugbox-no-such-dir/x", "w").close()),
        ("exclusive_existing", lambda: open("/etc/hostname", "x").close()),
        ("rename_missing", lambda: os.rename("/etc/plugbox-no-such-file", "/etc/y")),
    ):
        try:
            action()
            got[name] = "ok"
        except OSError as exc:
            got[name] = type(exc).__name__
    return got


class ManyFilesPlugin:
    """Opens ``count`` files at once (as a plugin holding many handles does)."""

    name = "many-files"
    version = "1.0"

    def process(self, input_data):
        handles = []

        def open_all():
            for i in range(input_data["count"]):
                handles.append(open(f"part-{i}.txt", "w"))  # noqa: SIM115 (held open)
            return {"open": len(handles)}

        try:
            return attempt(input_data, open_all)
        finally:
            for f in handles:
                f.close()


class ExportPlugin:
    """Writes an export of ``mb`` megabytes to its working directory."""

    name = "export"
    version = "1.0"

    def process(self, input_data):
        def export():
            chunk = b"x" * (1 << 20)
            with open("export.bin", "wb") as f:
                for _ in range(input_data["mb"]):
                    f.write(chunk)
            size = os.path.getsize("export.bin")
            os.remove("export.bin")
            return {"bytes": size}

        return attempt(input_data, export)
