"""diffana: differentiable, end-to-end physics analysis in JAX.

One pure function from events to an expected limit: soft selections, soft
histograms, a HistFactory likelihood and asymptotic CLs limits, all jit-compiled,
vmap-able over mass hypotheses and differentiable.

Importing diffana switches JAX to 64-bit floats (``jax_enable_x64``): profile
likelihood fits and CLs values need float64 to agree with pyhf and ROOT. Arrays
created *before* the import keep their dtype; import diffana first.

Submodules (imported on first use): ``model``, ``infer``, ``soft``, ``selection``,
``objectives``, ``train``, ``events``, ``physics``, ``io``, ``plot``, ``errors``,
``shapes``, ``windows``, ``streaming``, ``sharding``.
Every error diffana raises on purpose derives from ``diffana.DiffanaError``.
"""

import importlib as _importlib

import jax as _jax

_jax.config.update("jax_enable_x64", True)

__version__ = "0.1.0"

_SUBMODULES = (
    "analyses",
    "errors",
    "events",
    "infer",
    "io",
    "model",
    "objectives",
    "physics",
    "plot",
    "selection",
    "shapes",
    "sharding",
    "soft",
    "streaming",
    "train",
    "windows",
)

# Flat names for the things every analysis uses, in the style of optax/equinox.
_EXPORTS = {
    "Model": "model",
    "CountingModel": "model",
    "DiffanaError": "errors",
    "InvalidModel": "errors",
    "WorkspaceError": "errors",
    "PatchError": "errors",
    "SampleIOError": "errors",
    "ConfigError": "errors",
    "CommandError": "errors",
    "load_workspace": "model.workspace",
    "to_workspace": "model.workspace",
    "fit": "infer",
    "fixed_poi_fit": "infer",
    "hypotest": "infer",
    "upper_limit": "infer",
    "significance": "infer",
    "asimov_data": "infer",
    "Events": "events",
    "Cuts": "selection",
    "MLP": "selection",
    "MassParametrisedMLP": "selection",
    "Standardisation": "selection",
    "hard_histogram": "soft",
    "kde_histogram": "soft",
    "sigmoid_cut": "soft",
    "expected_upper_limit": "objectives",
    "expected_cls": "objectives",
    "asimov_significance": "objectives",
    "punzi_sensitivity": "objectives",
    "binary_cross_entropy": "objectives",
    "expected_upper_limits": "infer",
    "sort_events": "windows",
    "window_histograms": "windows",
    "ChunkedSource": "streaming",
    "StreamedLoss": "streaming",
    "streamed_value_and_grad": "streaming",
    "device_mesh": "sharding",
}

__all__ = sorted(set(_SUBMODULES) | set(_EXPORTS))


def __getattr__(name):
    # Lazy imports keep `import diffana` fast (uproot, matplotlib load on demand).
    if name in _SUBMODULES:
        return _importlib.import_module(f"diffana.{name}")
    if name in _EXPORTS:
        module = _importlib.import_module(f"diffana.{_EXPORTS[name]}")
        return getattr(module, name)
    raise AttributeError(f"module 'diffana' has no attribute {name!r}")


def __dir__():
    return __all__
