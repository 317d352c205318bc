"""Learnable selections: soft rectangular cuts, an MLP and a mass-parametrised MLP.

Every selection is an ``equinox.Module`` called as ``selection(features, mass=None)``
and returns a per-event weight in (0, 1) — the soft "passes the selection"
probability — with one entry per event. ``features`` is an :class:`diffana.events.Events`
or a mapping feature name → (N,) column in physical units (GeV, GeV², …).

Input standardisation lives inside the module (:class:`Standardisation`, fitted once on
training events) as static constants: it is saved with the module, applied identically
at evaluation time, and never trained.
"""

from __future__ import annotations

from typing import Callable, Literal, Mapping, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from diffana.events import Events

__all__ = ["Standardisation", "Cuts", "MLP", "MassParametrisedMLP"]

Array = jax.Array
Features = Mapping[str, Array] | Events


def _columns(features: Features, names: Sequence[str]) -> Array:
    """(N, F) matrix of ``names`` from an Events or a dict, with clear errors."""
    if isinstance(features, Events):
        features = features.features
    if not isinstance(features, Mapping):
        raise TypeError(
            f"features must be an Events or a dict name -> column, got {type(features).__name__}"
        )
    missing = [n for n in names if n not in features]
    if missing:
        raise KeyError(
            f"selection needs features {missing} which are missing; "
            f"available features: {sorted(features)}"
        )
    columns = [jnp.asarray(features[n], dtype=float) for n in names]
    shapes = {n: c.shape for n, c in zip(names, columns)}
    if any(len(s) != 1 for s in shapes.values()) or len(set(shapes.values())) != 1:
        raise ValueError(f"selection features must be 1D columns of equal length, got {shapes}")
    return jnp.stack(columns, axis=-1)


class Standardisation(eqx.Module):
    """Affine input scaling ``(x - offset) / scale`` per named feature (static constants).

    ``offset`` and ``scale`` are in each feature's unit. Build with :meth:`fit`.
    """

    feature_names: tuple[str, ...] = eqx.field(static=True)
    offset: tuple[float, ...] = eqx.field(static=True)
    scale: tuple[float, ...] = eqx.field(static=True)

    def __check_init__(self):
        if not (len(self.feature_names) == len(self.offset) == len(self.scale)):
            raise ValueError("Standardisation: feature_names, offset, scale differ in length")
        if len(set(self.feature_names)) != len(self.feature_names):
            raise ValueError(f"Standardisation: duplicate feature names {self.feature_names}")
        for n, s in zip(self.feature_names, self.scale):
            if not (np.isfinite(s) and s > 0):
                raise ValueError(f"Standardisation: scale of feature {n!r} is {s}, must be > 0")

    @classmethod
    def identity(cls, feature_names: Sequence[str]) -> "Standardisation":
        """No scaling: offset 0, scale 1."""
        names = tuple(feature_names)
        return cls(names, (0.0,) * len(names), (1.0,) * len(names))

    @classmethod
    def fit(
        cls,
        features: Features,
        feature_names: Sequence[str],
        weights: Array | None = None,
        method: Literal["mean_std", "min_max"] = "mean_std",
    ) -> "Standardisation":
        """Fit the scaling on (training) events.

        ``method="mean_std"``: zero (weighted) mean, unit standard deviation.
        ``method="min_max"``: map [min, max] to [0, 1] (the Punzi-net recipe).
        A constant feature raises a ValueError naming it.
        """
        names = tuple(feature_names)
        x = np.asarray(_columns(features, names))
        if x.shape[0] == 0:
            raise ValueError("Standardisation.fit: no events")
        if not np.all(np.isfinite(x)):
            bad = [n for n, ok in zip(names, np.isfinite(x).all(axis=0)) if not ok]
            raise ValueError(f"Standardisation.fit: non-finite values in features {bad}")
        if method == "mean_std":
            w = np.ones(x.shape[0]) if weights is None else np.abs(np.asarray(weights))
            mean = np.average(x, axis=0, weights=w)
            std = np.sqrt(np.average((x - mean) ** 2, axis=0, weights=w))
            offset, scale = mean, std
        elif method == "min_max":
            offset, scale = x.min(axis=0), x.max(axis=0) - x.min(axis=0)
        else:
            raise ValueError(f"method must be 'mean_std' or 'min_max', got {method!r}")
        for n, s in zip(names, scale):
            if not s > 0:
                raise ValueError(f"Standardisation.fit: feature {n!r} is constant")
        return cls(names, tuple(map(float, offset)), tuple(map(float, scale)))

    def __call__(self, features: Features) -> Array:
        """(N, F) standardised matrix of ``feature_names``."""
        x = _columns(features, self.feature_names)
        return (x - jnp.asarray(self.offset)) / jnp.asarray(self.scale)


class Cuts(eqx.Module):
    """Learnable rectangular soft cuts on named features.

    The weight is the product over cuts of ``sigmoid(±(x - threshold)/temperature)``.
    Thresholds are trained in standardised units (so one learning rate suits GeV and
    GeV² alike); ``temperature`` is in standardised units too (0.1 = a tenth of the
    feature's spread). Read the thresholds in physical units with :meth:`thresholds`.
    """

    threshold: Array  # (K,) standardised units
    standardisation: Standardisation
    cut_features: tuple[str, ...] = eqx.field(static=True)
    keep: tuple[str, ...] = eqx.field(static=True)
    temperature: float = eqx.field(static=True)

    def __init__(
        self,
        cuts: Sequence[tuple[str, Literal["above", "below"], float]],
        standardisation: Standardisation | None = None,
        temperature: float = 0.1,
    ):
        """``cuts``: (feature, "above"|"below", initial threshold in the feature's unit).

        ``standardisation`` defaults to the identity on the cut features. A window on a
        feature is two cuts on it, one "above" and one "below".
        """
        if len(cuts) == 0:
            raise ValueError("Cuts: give at least one (feature, keep, threshold) cut")
        names = tuple(c[0] for c in cuts)
        for name, keep, _ in cuts:
            if keep not in ("above", "below"):
                raise ValueError(f"Cuts: keep for {name!r} must be 'above' or 'below', got {keep!r}")
        if standardisation is None:
            standardisation = Standardisation.identity(sorted(set(names)))
        missing = [n for n in names if n not in standardisation.feature_names]
        if missing:
            raise KeyError(
                f"Cuts: features {missing} are not in the standardisation's "
                f"features {list(standardisation.feature_names)}"
            )
        if not temperature > 0:
            raise ValueError(f"Cuts: temperature must be > 0, got {temperature}")
        pos = [standardisation.feature_names.index(n) for n in names]
        off = np.asarray(standardisation.offset)[pos]
        sc = np.asarray(standardisation.scale)[pos]
        self.threshold = jnp.asarray((np.asarray([c[2] for c in cuts], float) - off) / sc)
        self.standardisation = standardisation
        self.cut_features = names
        self.keep = tuple(c[1] for c in cuts)
        self.temperature = float(temperature)

    def __call__(self, features: Features, mass=None, *, temperature=None) -> Array:
        """(N,) soft pass weight in (0, 1). ``temperature`` (standardised units, may be
        traced, e.g. from an annealing schedule) overrides the stored one; ``mass`` is
        ignored (cuts are the same for every hypothesis)."""
        t = self.temperature if temperature is None else temperature
        x = self.standardisation(features)
        pos = jnp.asarray([self.standardisation.feature_names.index(n) for n in self.cut_features])
        sign = jnp.asarray([1.0 if k == "above" else -1.0 for k in self.keep])
        z = sign * (x[:, pos] - self.threshold) / t
        return jnp.prod(jax.nn.sigmoid(z), axis=-1)

    def thresholds(self) -> list[tuple[str, str, float]]:
        """Current cuts as (feature, keep, threshold in the feature's unit)."""
        names = self.standardisation.feature_names
        out = []
        for n, k, t in zip(self.cut_features, self.keep, np.asarray(self.threshold)):
            i = names.index(n)
            out.append((n, k, float(self.standardisation.offset[i] + self.standardisation.scale[i] * t)))
        return out


class MLP(eqx.Module):
    """Feed-forward network on standardised features with a sigmoid output in (0, 1).

    ``hidden``: widths of the hidden layers, e.g. (8, 4) for the Punzi-net 4-8-4-1.
    ``activation``: hidden activation (default ``jax.nn.relu``; Punzi-net uses tanh).
    """

    layers: tuple[eqx.nn.Linear, ...]
    standardisation: Standardisation
    activation: Callable = eqx.field(static=True)
    n_extra_inputs: int = eqx.field(static=True)

    def __init__(
        self,
        standardisation: Standardisation,
        hidden: Sequence[int] = (16, 16),
        activation: Callable = jax.nn.relu,
        *,
        key: Array,
        n_extra_inputs: int = 0,
    ):
        widths = [len(standardisation.feature_names) + n_extra_inputs, *hidden, 1]
        keys = jax.random.split(key, len(widths) - 1)
        self.layers = tuple(
            eqx.nn.Linear(a, b, key=k, dtype=float) for a, b, k in zip(widths[:-1], widths[1:], keys)
        )
        self.standardisation = standardisation
        self.activation = activation
        self.n_extra_inputs = n_extra_inputs

    def _forward(self, x: Array) -> Array:
        for layer in self.layers[:-1]:
            x = self.activation(x @ layer.weight.T + layer.bias)
        last = self.layers[-1]
        return (x @ last.weight.T + last.bias)[:, 0]

    def logit(self, features: Features, mass=None) -> Array:
        """(N,) network output before the sigmoid (for BCE with logits)."""
        return self._forward(self.standardisation(features))

    def __call__(self, features: Features, mass=None) -> Array:
        """(N,) network output in (0, 1); ``mass`` is ignored."""
        return jax.nn.sigmoid(self.logit(features))


class MassParametrisedMLP(eqx.Module):
    """MLP with the hypothesis mass as an extra input: one network for every mass.

    ``mass_range``: (low, high) of the hypotheses in GeV (or the unit of the masses
    used), mapped to [-1, 1] before entering the network. Call as
    ``net(features, mass)`` with a scalar mass (vmap over masses) or an (N,) array.
    """

    mlp: MLP
    mass_offset: float = eqx.field(static=True)
    mass_scale: float = eqx.field(static=True)

    def __init__(
        self,
        standardisation: Standardisation,
        mass_range: tuple[float, float],
        hidden: Sequence[int] = (16, 16),
        activation: Callable = jax.nn.relu,
        *,
        key: Array,
    ):
        low, high = map(float, mass_range)
        if not high > low:
            raise ValueError(f"MassParametrisedMLP: mass_range must be (low, high), got {mass_range}")
        self.mlp = MLP(standardisation, hidden, activation, key=key, n_extra_inputs=1)
        self.mass_offset = 0.5 * (low + high)
        self.mass_scale = 0.5 * (high - low)

    def logit(self, features: Features, mass: Array | float | None = None) -> Array:
        """(N,) output before the sigmoid at hypothesis ``mass``."""
        if mass is None:
            raise ValueError("MassParametrisedMLP needs the hypothesis mass: net(features, mass)")
        x = self.mlp.standardisation(features)
        m = (jnp.asarray(mass, dtype=float) - self.mass_offset) / self.mass_scale
        m = jnp.broadcast_to(m, x.shape[:1])
        return self.mlp._forward(jnp.concatenate([x, m[:, None]], axis=-1))

    def __call__(self, features: Features, mass: Array | float | None = None) -> Array:
        """(N,) output in (0, 1) at hypothesis ``mass``."""
        return jax.nn.sigmoid(self.logit(features, mass))
