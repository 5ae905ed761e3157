"""Plugins that use devices, subprocesses and multiprocessing as scripts do
(tests/scenarios/test_real_devices.py). Plain Python, written as their authors would:
nothing here imports plugbox.

``Quiet`` needs no setting (it silences output into /dev/null and reads /dev/zero);
``Workers`` is added with ``Sandbox(processes=True)``: it runs commands, the interpreter
itself, and spreads work over a multiprocessing pool, a process pool executor and
processes that share a lock, a counter and a queue.
"""

import contextlib
import multiprocessing
import os
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor


def square(x):
    return x * x


def count_up(lock, total, results, times):
    """A child's share of the work: ``times`` increments under the shared lock."""
    for _ in range(times):
        with lock:
            total.value += 1
    results.put(os.getpid())


class Quiet:
    name = "quiet"
    version = "1.0.0"

    def discard(self, text):
        """Print where nobody reads it, as a library's chatter is silenced."""
        with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
            print(text)
            written = sink.write(text)
        with open(os.devnull, "wb") as sink:
            written += sink.write(text.encode() * 1000)
        return written

    def zeros(self, size):
        """Read ``size`` zero bytes, and write them back to /dev/zero."""
        with open("/dev/zero", "rb") as source:
            data = source.read(size)
        with open("/dev/zero", "wb") as sink:
            written = sink.write(data)
        return {"read": len(data), "nonzero": len(data) - data.count(0), "written": written}


class Workers:
    name = "workers"
    version = "1.0.0"

    def commands(self):
        """What a script does with subprocess: a command, a shell line, output thrown
        away, input from nowhere."""
        echo = subprocess.run(
            ["echo", "hello"], capture_output=True, text=True, stdin=subprocess.DEVNULL
        )
        shell = subprocess.run("echo $((6 * 7))", shell=True, capture_output=True, text=True)
        quiet = subprocess.run(["ls", "/usr"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return {
            "echo": echo.stdout.strip(),
            "shell": int(shell.stdout),
            "quiet": quiet.returncode,
        }

    def interpreter(self, expression):
        """Run the interpreter itself on ``expression``."""
        done = subprocess.run(
            [sys.executable, "-c", f"print({expression})"], capture_output=True, text=True
        )
        if done.returncode:
            raise RuntimeError(done.stderr)
        return int(done.stdout)

    def pool(self, n):
        with multiprocessing.Pool(2) as pool:
            return pool.map(square, range(n))

    def executor(self, n):
        with ProcessPoolExecutor(max_workers=2) as executor:
            return list(executor.map(square, range(n)))

    def shared(self, times):
        """Two processes count up one shared counter under a lock and report on a queue."""
        lock = multiprocessing.Lock()
        total = multiprocessing.Value("i", 0, lock=False)
        results = multiprocessing.Queue()
        children = [
            multiprocessing.Process(target=count_up, args=(lock, total, results, times))
            for _ in range(2)
        ]
        for child in children:
            child.start()
        pids = sorted(results.get() for _ in children)
        for child in children:
            child.join()
        return {
            "total": total.value,
            "children": len(set(pids) - {os.getpid()}),
            "exit_codes": [child.exitcode for child in children],
        }
