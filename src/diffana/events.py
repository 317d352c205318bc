"""The event container: named feature columns, a weight and a process label per event.

All samples of an analysis (signal, backgrounds, systematically shifted copies) live in
one :class:`Events` with fixed-shape arrays, so one jitted function histograms every
process at once (``diffana.soft.*_by_process``) and minibatches keep their shape.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from diffana._util import is_concrete

__all__ = ["Events"]

Array = jax.Array


class Events(eqx.Module):
    """Events of several processes: ``features`` columns, ``weight`` and ``process``.

    Attributes
    ----------
    features : dict[str, Array]
        Feature name → (N,) float column, in the feature's physical unit (GeV, GeV², …).
    weight : Array
        (N,) expected events per simulated event (σ·L/N_generated, fb × fb⁻¹ = events).
    process : Array
        (N,) integer label, an index into ``process_names``.
    process_names : tuple[str, ...]
        Process (sample) names, e.g. ``("signal", "background")``. Static.

    Construction checks (on concrete arrays; skipped while tracing): at least one
    feature and one event, equal lengths, no NaN/inf in features or weights, labels in
    range. Every error names the feature or process at fault.
    """

    features: dict[str, Array]
    weight: Array
    process: Array
    process_names: tuple[str, ...] = eqx.field(static=True)

    def __check_init__(self):
        if not isinstance(self.features, dict) or len(self.features) == 0:
            raise ValueError("Events: features must be a non-empty dict name -> column")
        n = None
        for name, column in self.features.items():
            if not isinstance(name, str):
                raise TypeError(f"Events: feature names must be strings, got {name!r}")
            shape = jnp.shape(column)
            if len(shape) != 1:
                raise ValueError(f"Events: feature {name!r} must be 1D, got shape {shape}")
            if n is None:
                n = shape[0]
            elif shape[0] != n:
                raise ValueError(
                    f"Events: feature {name!r} has {shape[0]} entries, expected {n} "
                    f"(length of {next(iter(self.features))!r})"
                )
        if n == 0:
            raise ValueError("Events: no events (all columns are empty)")
        for label, arr in (("weight", self.weight), ("process", self.process)):
            if jnp.shape(arr) != (n,):
                raise ValueError(
                    f"Events: {label} has shape {jnp.shape(arr)}, expected ({n},)"
                )
        if not jnp.issubdtype(jnp.asarray(self.process).dtype, jnp.integer):
            raise TypeError("Events: process labels must be integers")
        if len(self.process_names) == 0:
            raise ValueError("Events: process_names is empty")
        for name, column in self.features.items():
            if is_concrete(column):
                bad = ~np.isfinite(np.asarray(column))
                if bad.any():
                    raise ValueError(
                        f"Events: feature {name!r} has {int(bad.sum())} non-finite "
                        f"(NaN/inf) entries, first at event {int(np.argmax(bad))}"
                    )
        if is_concrete(self.weight):
            bad = ~np.isfinite(np.asarray(self.weight))
            if bad.any():
                raise ValueError(f"Events: weight has {int(bad.sum())} non-finite entries")
        if is_concrete(self.process):
            p = np.asarray(self.process)
            if p.min() < 0 or p.max() >= len(self.process_names):
                raise ValueError(
                    f"Events: process labels must lie in [0, {len(self.process_names)}) "
                    f"for processes {self.process_names}, got range [{p.min()}, {p.max()}]"
                )

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_samples(
        cls,
        samples: Mapping[str, Mapping[str, Array]],
        weights: Mapping[str, Array | float] | None = None,
    ) -> "Events":
        """Concatenate per-process feature dicts into one :class:`Events`.

        ``samples``: process name → {feature name → (N_p,) column}; all processes must
        carry the same feature names. ``weights``: process name → per-event weight
        (scalar or (N_p,) array, events per simulated event); default 1.
        Raises a ValueError naming an empty sample or a process with other features.
        """
        if len(samples) == 0:
            raise ValueError("Events.from_samples: no samples given")
        names = tuple(samples)
        weights = {} if weights is None else dict(weights)
        unknown = set(weights) - set(names)
        if unknown:
            raise KeyError(f"Events.from_samples: weights for unknown processes {sorted(unknown)}")
        first = names[0]
        feature_names = tuple(samples[first])
        features = {k: [] for k in feature_names}
        weight, process = [], []
        for index, name in enumerate(names):
            sample = samples[name]
            if set(sample) != set(feature_names):
                raise KeyError(
                    f"Events.from_samples: process {name!r} has features {sorted(sample)}, "
                    f"but {first!r} has {sorted(feature_names)}"
                )
            lengths = {k: len(np.asarray(v)) for k, v in sample.items()}
            n = lengths[feature_names[0]]
            if n == 0:
                raise ValueError(f"Events.from_samples: sample {name!r} is empty")
            if len(set(lengths.values())) != 1:
                raise ValueError(
                    f"Events.from_samples: sample {name!r} has columns of different "
                    f"lengths {lengths}"
                )
            for k in feature_names:
                features[k].append(np.asarray(sample[k], dtype=float))
            w = np.broadcast_to(np.asarray(weights.get(name, 1.0), dtype=float), (n,))
            weight.append(w)
            process.append(np.full(n, index, dtype=np.int32))
        return cls(
            features={k: jnp.asarray(np.concatenate(v)) for k, v in features.items()},
            weight=jnp.asarray(np.concatenate(weight)),
            process=jnp.asarray(np.concatenate(process)),
            process_names=names,
        )

    # ------------------------------------------------------------------ access
    @property
    def n_events(self) -> int:
        """Number of events (all processes)."""
        return jnp.shape(self.weight)[0]

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Feature names, in insertion order."""
        return tuple(self.features)

    @property
    def n_processes(self) -> int:
        """Number of processes."""
        return len(self.process_names)

    def process_index(self, name: str) -> int:
        """Integer label of process ``name`` (KeyError naming the known processes)."""
        try:
            return self.process_names.index(name)
        except ValueError:
            raise KeyError(
                f"unknown process {name!r}; known processes: {list(self.process_names)}"
            ) from None

    def column(self, name: str) -> Array:
        """Feature column ``name`` (KeyError naming the available features)."""
        if name not in self.features:
            raise KeyError(
                f"unknown feature {name!r}; available features: {sorted(self.features)}"
            )
        return self.features[name]

    def matrix(self, names: Sequence[str]) -> Array:
        """(N, F) matrix of the features ``names``, in that order."""
        return jnp.stack([self.column(n) for n in names], axis=-1)

    def yields(self) -> Array:
        """(n_processes,) total weight per process (expected events)."""
        return jax.ops.segment_sum(self.weight, self.process, num_segments=self.n_processes)

    # ------------------------------------------------------------------ derived sets
    def with_feature(self, name: str, values: Array) -> "Events":
        """Copy with feature ``name`` replaced (or added) — e.g. an energy-scale shift
        for a histosys template built through the same selection."""
        features = dict(self.features)
        features[name] = jnp.asarray(values)
        return Events(features, self.weight, self.process, self.process_names)

    def take(self, indices: Array) -> "Events":
        """Subset of events ``indices`` with unchanged weights."""
        indices = jnp.asarray(indices)
        return Events(
            {k: v[indices] for k, v in self.features.items()},
            self.weight[indices],
            self.process[indices],
            self.process_names,
        )

    def minibatch(self, indices: Array) -> "Events":
        """Subset ``indices`` with weights rescaled per process so that each process
        keeps its full-sample total yield (a self-normalised, unbiased-in-shape
        estimate of the full-sample histograms). Jit-able; processes absent from the
        batch contribute zero."""
        batch = self.take(indices)
        total = self.yields()
        in_batch = batch.yields()
        scale = jnp.where(in_batch != 0, total / jnp.where(in_batch != 0, in_batch, 1.0), 0.0)
        return Events(batch.features, batch.weight * scale[batch.process], batch.process,
                      self.process_names)

    def split(self, fraction: float, key: Array) -> tuple["Events", "Events"]:
        """Random split into (first, second) with ``fraction`` of each process in the
        first; each part's weights are rescaled so it predicts the full yields (use the
        second as the held-out sample)."""
        if not 0.0 < fraction < 1.0:
            raise ValueError(f"split fraction must be in (0, 1), got {fraction}")
        perm = np.asarray(jax.random.permutation(key, self.n_events))
        process = np.asarray(self.process)[perm]
        first, second = [], []
        for p in range(self.n_processes):
            idx = perm[process == p]
            n_first = int(round(fraction * len(idx)))
            if n_first == 0 or n_first == len(idx):
                raise ValueError(
                    f"split: process {self.process_names[p]!r} has {len(idx)} events, "
                    f"too few to split with fraction {fraction}"
                )
            first.append(idx[:n_first])
            second.append(idx[n_first:])
        a = self.minibatch(jnp.asarray(np.sort(np.concatenate(first))))
        b = self.minibatch(jnp.asarray(np.sort(np.concatenate(second))))
        return a, b
