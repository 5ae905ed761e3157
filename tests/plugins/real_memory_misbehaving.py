"""What stops a plugin at its memory and stack limits (tests/scenarios/test_real_memory.py):
an 8 GiB bytearray, a list that grows, a recursion in C past the stack, LAPACK on a
small stack, OpenBLAS out of room for its threads. Plain Python: nothing here imports
plugbox."""

import mmap
import sys


class MisbehavingPlugin:
    name = "real-misbehaving"
    version = "1.0"

    def compute(self, what, arg):
        if what == "bytearray":
            return len(bytearray(int(arg) << 30))
        if what == "growing_list":
            hoard = []
            while True:
                hoard.append([len(hoard)] * 100_000)  # 800 kB a step, written
        if what == "deep_repr":
            # repr() of a list nested a million deep recurses in C, a few hundred bytes
            # of stack a level: past any stack limit once Python's own is lifted
            sys.setrecursionlimit(10**7)
            nested = []
            for _ in range(int(arg)):
                nested = [nested]
            return len(repr(nested))
        if what == "linalg":
            import numpy as np

            n = int(arg)
            a = np.random.default_rng(n).random((n, n)) + n * np.eye(n)
            return float(np.abs(np.linalg.inv(a) @ a - np.eye(n)).max())
        if what == "reserve_then_numpy":
            # private memory reserved (not written: nothing resident), then numpy loaded
            # with what is left too small for OpenBLAS's buffers and threads
            self.held = mmap.mmap(-1, int(arg) << 20, flags=mmap.MAP_PRIVATE)
            import numpy as np

            return float(np.linalg.inv(np.eye(300) * 4.0)[0, 0])
        raise LookupError(what)
