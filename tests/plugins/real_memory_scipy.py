"""scipy as a plugin author uses it (tests/scenarios/test_real_memory.py): optimize,
sparse matrices, dense LAPACK. Plain Python: nothing here imports plugbox."""

import numpy as np
import scipy.linalg
import scipy.optimize
import scipy.sparse
import scipy.sparse.linalg


class ScipyPlugin:
    name = "real-scipy"
    version = "1.0"

    def compute(self, what, arg):
        if what == "minimize":
            # the Rosenbrock function's minimum is at (1, 1, ..., 1)
            start = np.array(arg, dtype=float)
            found = scipy.optimize.minimize(scipy.optimize.rosen, start, method="BFGS")
            return {"x": [float(v) for v in found.x], "success": bool(found.success)}
        if what == "sparse":
            # a tridiagonal system (the 1-D Laplacian plus 4 on the diagonal), solved;
            # its product with its transpose stays sparse
            n = int(arg)
            diagonals = [np.full(n - 1, -1.0), np.full(n, 6.0), np.full(n - 1, -1.0)]
            a = scipy.sparse.diags(diagonals, [-1, 0, 1], format="csr")
            b = np.arange(1.0, n + 1)
            x = scipy.sparse.linalg.spsolve(a.tocsc(), b)
            product = a @ a.T
            return {
                "residual": float(np.abs(a @ x - b).max()),
                "nnz": int(product.nnz),
                "trace": float(product.diagonal().sum()),
            }
        if what == "lapack":
            n = int(arg)
            rng = np.random.default_rng(n)
            a = rng.random((n, n)) + n * np.eye(n)
            lu, piv = scipy.linalg.lu_factor(a)
            x = scipy.linalg.lu_solve((lu, piv), np.ones(n))
            return {"residual": float(np.abs(a @ x - 1.0).max())}
        raise LookupError(what)
