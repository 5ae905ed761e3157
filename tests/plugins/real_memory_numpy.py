"""numpy as a plugin author uses it (tests/scenarios/test_real_memory.py): imported at
the top, linear algebra in a hook. Plain Python: nothing here imports plugbox."""

import os

import numpy as np


def _status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return None


class NumpyPlugin:
    name = "real-numpy"
    version = "1.0"

    def compute(self, what, arg):
        if what == "inverse":
            # a well-conditioned n x n system: its inverse times it is the identity,
            # and solve() gives the x with a @ x = b
            n = int(arg)
            rng = np.random.default_rng(n)
            a = rng.random((n, n)) + n * np.eye(n)
            b = rng.random(n)
            inverse = np.linalg.inv(a)
            x = np.linalg.solve(a, b)
            return {
                "identity_error": float(np.abs(inverse @ a - np.eye(n)).max()),
                "solve_error": float(np.abs(a @ x - b).max()),
                "n": n,
            }
        if what == "hold":
            # ``arg`` MiB of float64 ones, written, kept until the next call
            self.held = np.ones(int(arg) << 17)
            return float(self.held.sum()) / (1 << 17)
        if what == "threads":
            # what the libraries were told, and the threads this process has once
            # OpenBLAS has started its own
            np.linalg.inv(np.eye(200) * 2.0)
            return {
                "env": {k: v for k, v in os.environ.items() if k.endswith("_THREADS")},
                "threads": _status("Threads"),
            }
        raise LookupError(what)
