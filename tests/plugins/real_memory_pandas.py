"""pandas as a plugin author uses it (tests/scenarios/test_real_memory.py): a frame
built from the call's rows, grouped, and a least-squares fit on it. Plain Python:
nothing here imports plugbox."""

import numpy as np
import pandas as pd


class PandasPlugin:
    name = "real-pandas"
    version = "1.0"

    def compute(self, what, arg):
        if what == "groupby":
            frame = pd.DataFrame(arg, columns=["key", "value"])
            summary = frame.groupby("key")["value"].agg(["sum", "mean", "count"])
            return {
                key: {"sum": float(row["sum"]), "mean": float(row["mean"]), "n": int(row["count"])}
                for key, row in summary.iterrows()
            }
        if what == "fit":
            # y = 3 x0 - 2 x1 + 5, exactly: the fitted coefficients are those
            n = int(arg)
            rng = np.random.default_rng(n)
            frame = pd.DataFrame({"x0": rng.random(n), "x1": rng.random(n)})
            frame["y"] = 3 * frame["x0"] - 2 * frame["x1"] + 5
            design = np.column_stack([frame["x0"], frame["x1"], np.ones(n)])
            coefficients, *_ = np.linalg.lstsq(design, frame["y"].to_numpy(), rcond=None)
            normal = np.linalg.inv(design.T @ design) @ design.T @ frame["y"].to_numpy()
            return {"lstsq": [float(c) for c in coefficients], "normal": [float(c) for c in normal]}
        raise LookupError(what)
