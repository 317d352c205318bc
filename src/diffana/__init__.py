"""diffana: differentiable, end-to-end physics analysis in JAX.

One pure function from events to an expected limit: soft selections, soft
histograms, a HistFactory likelihood and asymptotic CLs limits, all jit-compiled,
vmap-able over mass hypotheses and differentiable.

Importing diffana switches JAX to 64-bit floats (``jax_enable_x64``): profile
likelihood fits and CLs values need float64 to agree with pyhf and ROOT. Arrays
created *before* the import keep their dtype; import diffana first.
"""

import jax as _jax

_jax.config.update("jax_enable_x64", True)

__version__ = "0.1.0"
