"""The fits' LAPACK-free Newton solve against jnp.linalg's Cholesky, batched.

diffana.infer.linalg replaces jnp.linalg in the fits because jaxlib's batched CPU
LAPACK kernels can deadlock when two run at once (see that module). This measures
what the replacement costs on the shape of the Z'→invisible scan: a batch of
``--batch`` symmetric positive-definite ``--n``×``--n`` matrices (Hessians of 46
parameters, 96 fits = 16 hypotheses × 6 limit curves by default), one Newton solve
each. Only one LAPACK kernel runs at a time here, so the reference cannot deadlock.

Prints both times per batched solve (after compilation), their ratio and the
largest relative difference of the solutions.

    python benchmarks/bench_linalg.py
    python benchmarks/bench_linalg.py --n 20 --batch 500
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

from diffana.infer import linalg  # noqa: E402

from _timing import first_and_best  # noqa: E402  (benchmarks/_timing.py; run as a script: its folder is on sys.path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=46, help="matrix size (fit parameters)")
    parser.add_argument("--batch", type=int, default=96, help="number of fits solved at once")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    m = rng.normal(size=(args.batch, args.n, args.n))
    hessians = m @ np.swapaxes(m, 1, 2) + args.n * np.eye(args.n)
    gradients = rng.normal(size=(args.batch, args.n))

    ours = jax.jit(jax.vmap(lambda h, g: linalg.solve_positive_definite(h, -g)[0]))

    def lapack(h, g):
        return -jax.scipy.linalg.cho_solve((jnp.linalg.cholesky(h), True), g)

    theirs = jax.jit(jax.vmap(lapack))
    t_ours = first_and_best(lambda: ours(hessians, gradients), args.repeats).best_s  # first call compiles
    t_theirs = first_and_best(lambda: theirs(hessians, gradients), args.repeats).best_s
    x_ours, x_theirs = np.asarray(ours(hessians, gradients)), np.asarray(theirs(hessians, gradients))
    difference = np.max(np.abs(x_ours - x_theirs) / np.max(np.abs(x_theirs), axis=1, keepdims=True))

    print(f"jax {jax.__version__}, {args.batch} solves of {args.n}x{args.n}, best of {args.repeats}")
    print(f"diffana.infer.linalg.solve_positive_definite: {t_ours * 1e3:9.3f} ms")
    print(f"jnp.linalg.cholesky + cho_solve (LAPACK):     {t_theirs * 1e3:9.3f} ms")
    print(f"ratio diffana / LAPACK: {t_ours / t_theirs:.2f}   max relative difference {difference:.1e}")


if __name__ == "__main__":
    main()
