"""Importance-sampled (biased) background generation with exact weights.

After the Z'→invisible preselection only ~10⁻³ of the generated μμ(γ) and eeμμ
events survive: those with a hard photon that escapes detection, or whose
scattered e± carry transverse momentum. :class:`BackgroundBias` makes the
generator draw many more of them. Each event is drawn from a *defensive mixture*

    q(x) = (1 − λ)·p(x) + (λ/K)·Σ_k g_k(x)

of the unbiased generator's density p and K biased densities g_k, each equal to
p except in a few of the generator's own random variables. Its weight is
multiplied by p(x)/q(x) = 1/((1 − λ) + (λ/K)·Σ_k g_k(x)/p(x)), evaluated at the
drawn x for *every* component (not only the one that drew it). Because
E_q[f·p/q] = E_p[f] for every f, the weighted sample reproduces the unbiased
generator's total and every distribution (within MC errors), and an event's
p/q ≤ 1/(1 − λ) keeps the weights bounded (no rare huge weights).

Components (the generator's own variables, see :mod:`diffana.physics.processes`):

* μμ(γ): K = 10, one per set of one or two of the four photons (2 ISR, 2 FSR):
  g_k draws those photons' energy fractions log-uniform in [0.02, 1] instead of
  (β/2)·x^(β/2−1) (hard photons) and their angle about the emitter log-uniform in
  ``isr_angle_range`` (ISR, about the beam: into the beam pipe, yet with p_T) or
  ``fsr_angle_range`` (FSR, about the muon: where the track's curl puts its ECL
  cluster, so the photon merges with it) instead of 1/(1 − v cos θ); the other
  photons stay as unbiased. Passing μμ(γ) events need one such photon (M²_rec ≈ 0)
  or two (one along the beams, one hidden: M²_rec > 1 GeV²).
* ττ(γ): the decay mode of each τ: q(π) = ``tau_pion_probability`` instead of
  B(πν)/(B(μνν̄) + B(πν)) = 0.384 (a π passes the muon ID 3–20% of the time);
  p/q per τ lies in [0.6, 1.9] for the default 0.2.
* eeμμ: K = 3 (e⁻ tagged, e⁺ tagged, both): both photons' energy fractions z with density ∝ 1/z² on
  [``eemumu_z_min``, 1] instead of log-uniform on [W²_min/s, 1] (a heavier μμ
  pair, muons in the barrel; 1/z² cancels the 1/W² of σ(γγ→μμ)) and both
  the tagged photons' virtualities Q² log-uniform on [``eemumu_q2_min``, Q²_max]
  instead of [Q²_min, Q²_max] (scattered e± with transverse momentum, i.e.
  recoil p_T).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class BackgroundBias(NamedTuple):
    """Settings of the biased background generation (hashable: a static jit argument).

    ``*_fraction`` is λ, the share of events drawn from the biased components
    (0 switches that process' bias off; must lie in [0, 1)).
    """

    mumu_fraction: float = 0.9
    """λ for μμ(γ): share of events with one or two photons drawn hard and wide."""
    mumu_single_share: float = 0.85
    """Share of the biased μμ(γ) events with one photon biased (the rest: two).
    g/p of one biased photon is ≈10–20, so one-photon components need ≈10× the
    probability of two-photon ones for both kinds of event to get similar weights."""
    isr_angle_range: tuple = (1.0, 40.0)
    """deg: biased ISR photons have θ (CM, about their beam) log-uniform in this range."""
    fsr_angle_range: tuple = (1.5, 12.0)
    """deg: biased FSR photons have their angle to the muon log-uniform in this range."""
    tau_pion_probability: float = 0.2
    """Probability (per τ) of generating τ→πν instead of τ→μνν̄ (unbiased: 0.384)."""
    eemumu_fraction: float = 0.8
    """λ for eeμμ: share of events with both photons drawn hard and virtual."""
    eemumu_z_min: float = 0.03
    """Lower end of the biased photon energy fraction range (density ∝ 1/z² on [z_min, 1])."""
    eemumu_q2_min: float = 0.02
    """GeV²: lower end of the biased virtuality range (log-uniform on [Q²_min,bias, Q²_max])."""

    def validate(self) -> "BackgroundBias":
        """Return ``self``; raise ``ValueError`` naming the field if a value is out of range."""
        for name in ("mumu_fraction", "eemumu_fraction", "mumu_single_share"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"BackgroundBias.{name} must lie in [0, 1), got {value}")
        for name in ("isr_angle_range", "fsr_angle_range"):
            low, high = (tuple(getattr(self, name)) + (None, None))[:2]
            if len(getattr(self, name)) != 2 or not 0.0 < low < high <= 180.0:
                raise ValueError(f"BackgroundBias.{name} must be (low, high) deg with 0 < low < high <= 180, "
                                 f"got {getattr(self, name)!r}")
        if not 0.0 < self.tau_pion_probability < 1.0:
            raise ValueError(f"BackgroundBias.tau_pion_probability must lie in (0, 1), got {self.tau_pion_probability}")
        if not 0.0 < self.eemumu_z_min < 1.0:
            raise ValueError(f"BackgroundBias.eemumu_z_min must lie in (0, 1), got {self.eemumu_z_min}")
        if not self.eemumu_q2_min > 0.0:
            raise ValueError(f"BackgroundBias.eemumu_q2_min must be positive (GeV²), got {self.eemumu_q2_min}")
        return self


def resolve_bias(bias) -> BackgroundBias | None:
    """``None``/``False`` → no bias; ``True`` → the default :class:`BackgroundBias`;
    a :class:`BackgroundBias` → itself (validated). Anything else: ``ValueError``."""
    if bias is None or bias is False:
        return None
    if bias is True:
        return BackgroundBias()
    if isinstance(bias, BackgroundBias):
        return bias.validate()
    raise ValueError(f"bias must be True, False, None or a BackgroundBias, got {bias!r}")


def choose_components(key, n, shares, fraction):
    """Mixture component of each of ``n`` events: −1 (unbiased, probability 1 − λ)
    or biased component k with probability λ·shares[k] (``shares`` (K,) sum to 1)."""
    k_pick, k_which = jax.random.split(key)
    which = jax.random.choice(k_which, shares.shape[0], (n,), p=shares)
    return jnp.where(jax.random.uniform(k_pick, (n,)) < fraction, which, -1)


def subset_components(n_slots, single_share):
    """Components that bias one slot or two slots (every subset of size 1 or 2):
    returns ``(table (K, n_slots) bool, shares (K,))`` with K = n + n(n−1)/2; the
    singles share ``single_share`` of the biased draws, the pairs the rest."""
    singles = [[i == k for i in range(n_slots)] for k in range(n_slots)]
    pairs = [[i in (a, b) for i in range(n_slots)] for a in range(n_slots) for b in range(a + 1, n_slots)]
    shares = [single_share / len(singles)] * len(singles) + [(1.0 - single_share) / len(pairs)] * len(pairs)
    return jnp.array(singles + pairs, dtype=bool), jnp.array(shares)


def component_log_ratios(table, slot_log_ratios):
    """ln(g_k/p) (n, K) of components that bias the slots in ``table`` (K, S),
    from each slot's ln(g/p) (n, S) — a product over the component's slots."""
    return jnp.sum(jnp.where(table[None, :, :], slot_log_ratios[:, None, :], 0.0), axis=-1)


def mixture_weight(log_ratios, fraction, shares):
    """p/q of an event for q = (1 − λ)·p + λ·Σ_k shares_k·g_k, from ``log_ratios``
    (n, K) = ln(g_k/p) at the drawn values. Bounded by 1/(1 − λ)."""
    log_mean_ratio = jax.scipy.special.logsumexp(log_ratios + jnp.log(shares), axis=-1)
    return jnp.exp(-jnp.logaddexp(jnp.log1p(-fraction), jnp.log(fraction) + log_mean_ratio))


def power_fraction(key, exponent, use_biased, biased_low=0.02):
    """Energy fraction x ∈ [0, 1] from p(x) = a·x^(a−1) (``exponent`` a), or, where
    ``use_biased``, log-uniform on [``biased_low``, 1] (hard photons, spread evenly
    over the decades the preselection cares about: 0.1–5 GeV).

    Returns ``(x, log_ratio)`` with log_ratio = ln g(x)/p(x) at the drawn x
    (shapes of ``use_biased``; −inf below ``biased_low``, where g vanishes).
    """
    u = jax.random.uniform(key, use_biased.shape)
    x = jnp.where(use_biased, biased_low ** (1.0 - u), jnp.exp(jnp.log(u) / exponent))
    log_p = jnp.log(exponent) + (exponent - 1.0) * jnp.log(jnp.maximum(x, 1e-300))
    log_g = jnp.where(x >= biased_low, -jnp.log(x) - jnp.log(-jnp.log(biased_low)), -jnp.inf)
    return x, log_g - log_p


def _collinear_one_minus_cos(u, velocity):
    """1 − cos θ for cos θ from the density ∝ 1/(1 − v cos θ) on [−1, 1] (inverse CDF),
    written so that it stays exact for v → 1 and θ → 0."""
    ratio = jnp.exp(u * jnp.log((1.0 - velocity) / (1.0 + velocity)))
    return ((1.0 + velocity) * ratio - (1.0 - velocity)) / velocity


def _log_collinear_density(one_minus_cos, velocity):
    """ln of the normalised density v/(ln((1+v)/(1−v))·(1 − v cos θ)) in cos θ."""
    one_minus_v_cos = (1.0 - velocity) + velocity * one_minus_cos
    norm = jnp.log(jnp.log((1.0 + velocity) / (1.0 - velocity)) / velocity)
    return -jnp.log(one_minus_v_cos) - norm


def _log_log_uniform_angle_density(theta, low, high):
    """ln of the density in cos θ of θ log-uniform on [low, high] (rad):
    1/(ln(high/low)·θ·sin θ); −inf outside."""
    inside = (theta >= low) & (theta <= high)
    safe = jnp.where(inside, theta * jnp.sin(theta), 1.0)
    return jnp.where(inside, -jnp.log(jnp.log(high / low)) - jnp.log(safe), -jnp.inf)


def collinear_cos(key, velocity, use_biased, angle_range):
    """cos θ about an emitter of ``velocity`` v (collinear QED radiation, density
    ∝ 1/(1 − v cos θ)), or, where ``use_biased``, from g: half the time θ
    log-uniform in ``angle_range`` = (θ_a, θ_b) (deg), half the time log-uniform
    in (θ_a, 180°) (so that every angle above θ_a, e.g. the ECL gaps, is covered).

    Returns ``(cos θ, log_ratio)`` with log_ratio = ln g/p at the drawn cos θ
    (−inf below θ_a, where g vanishes).
    """
    shape = use_biased.shape
    velocity = jnp.broadcast_to(velocity, shape)
    low, high = jnp.radians(angle_range[0]), jnp.radians(angle_range[1])
    k_u, k_wide = jax.random.split(key)
    u = jax.random.uniform(k_u, shape)
    top = jnp.where(jax.random.uniform(k_wide, shape) < 0.5, high, jnp.pi)
    theta_g = low * jnp.exp(u * jnp.log(top / low))
    # 1 − cos θ = 2 sin²(θ/2): exact at small θ, as p needs
    one_minus = jnp.where(use_biased, 2.0 * jnp.sin(0.5 * theta_g) ** 2, _collinear_one_minus_cos(u, velocity))
    theta = 2.0 * jnp.arcsin(jnp.sqrt(jnp.clip(0.5 * one_minus, 0.0, 1.0)))
    log_g = jnp.logaddexp(_log_log_uniform_angle_density(theta, low, high),
                          _log_log_uniform_angle_density(theta, low, jnp.pi)) - jnp.log(2.0)
    return 1.0 - one_minus, log_g - _log_collinear_density(one_minus, velocity)


def inverse_square(key, low, high, use_biased, biased_low):
    """A variable log-uniform on [``low``, ``high``] (an eeμμ photon's z), or, where
    ``use_biased``, with density ∝ 1/z² on [max(``biased_low``, low), high] (which
    cancels the 1/W² = 1/(z₁z₂s) of σ(γγ→μμ): flat weights above the cut).
    Returns ``(value, log_ratio = ln g/p)`` (−inf where g vanishes)."""
    shape = use_biased.shape
    low, high = jnp.broadcast_to(low, shape), jnp.broadcast_to(high, shape)
    low_b = jnp.minimum(jnp.maximum(biased_low, low), 0.5 * high)
    u = jax.random.uniform(key, shape)
    value_g = 1.0 / (1.0 / low_b - u * (1.0 / low_b - 1.0 / high))
    value = jnp.where(use_biased, value_g, low * jnp.exp(jnp.log(high / low) * u))
    log_p = -jnp.log(value * jnp.log(high / low))
    log_g = -2.0 * jnp.log(value) - jnp.log(1.0 / low_b - 1.0 / high)
    return value, jnp.where(value >= low_b, log_g - log_p, -jnp.inf)


def log_uniform(key, low, high, use_biased, biased_low):
    """A variable log-uniform on [``low``, ``high``] (a photon's z or Q²), or, where
    ``use_biased``, log-uniform on [max(``biased_low``, low), high] (kept below
    ``high``). Returns ``(value, log_ratio)``, log_ratio = ln g/p at the value
    (−inf where g vanishes); ``low``/``high`` broadcast to ``use_biased``'s shape."""
    shape = use_biased.shape
    low, high = jnp.broadcast_to(low, shape), jnp.broadcast_to(high, shape)
    log_range = jnp.log(high / low)
    low_b = jnp.minimum(jnp.maximum(biased_low, low), high * jnp.exp(-1e-3 - 0.1 * log_range))
    log_range_b = jnp.log(high / low_b)
    u = jax.random.uniform(key, shape)
    value = jnp.where(use_biased, low_b * jnp.exp(log_range_b * u), low * jnp.exp(log_range * u))
    # both densities are flat in ln(value) on their supports
    log_ratio = jnp.where(value >= low_b, jnp.log(log_range) - jnp.log(log_range_b), -jnp.inf)
    return value, log_ratio


def choose_with_probability(key, shape, probability, biased_probability):
    """Boolean choice of true probability ``probability`` drawn with
    ``biased_probability`` instead; returns ``(choice, log_weight = ln p/q)``."""
    choice = jax.random.uniform(key, shape) < biased_probability
    log_weight = jnp.where(
        choice,
        jnp.log(probability) - jnp.log(biased_probability),
        jnp.log1p(-probability) - jnp.log1p(-biased_probability),
    )
    return choice, log_weight
