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
* eeμμ: K = 3 (e⁻ tagged 45%, e⁺ tagged 45%, both 10%), drawn as the preselected
  single-tag events look: the photon pair (z₁, z₂) through the γγ mass W = √(z₁z₂s)
  (``eemumu_mass``: peaked at 1.45 GeV, instead of ∝ 1/W in ln W from log-uniform z)
  and rapidity Y = ½ ln(z₁/z₂) (∝ A − |Y| on |Y| ≤ 1.2 instead of flat on |Y| ≲ 6);
  the decay angle through its rapidity y* = atanh(β cos θ*), uniform in the diamond
  |y*| ≤ T − |Y_μμ| (75%) or in |y*| ≤ 1.1 (25%) instead of in |y*| ≤ atanh β (muons
  in the barrel instead of along the beams); and the tagged e±'s Q² through its
  transverse momentum q_T (``eemumu_tag_pt``, peaked at 0.6 GeV, at most
  ``eemumu_tag_angle_max`` from its beam: inside the ECL hole) instead of log-uniform
  over ≈ 20 e-folds of Q². The untagged e± stays as unbiased.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class PeakedShape(NamedTuple):
    """A density in ln x on [``low``, ``high``] that rises like (x/peak)^rise up to ``peak``
    and falls like (peak/x)^fall above it (rise = fall = 0: log-uniform); ``low``, ``peak``,
    ``high`` in the variable's unit. Drawn by :func:`peaked_log_draw`."""

    low: float
    peak: float
    high: float
    rise: float = 0.0
    fall: float = 0.0

    def check(self, name: str, upper: float = float("inf")) -> None:
        """Raise ``ValueError`` naming the field ``name`` unless 0 < low ≤ peak ≤ high ≤ upper,
        low < high and both slopes ≥ 0."""
        ok = 0.0 < self.low <= self.peak <= self.high <= upper and self.low < self.high
        if not (ok and self.rise >= 0.0 and self.fall >= 0.0):
            raise ValueError(f"BackgroundBias.{name} must have 0 < low <= peak <= high <= {upper}, low < high "
                             f"and rise, fall >= 0, got {self!r}")


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
    eemumu_fraction: float = 0.9
    """λ for eeμμ: share of events drawn as single- or double-tag events into the acceptance."""
    eemumu_mass: PeakedShape = PeakedShape(low=0.75, peak=1.45, high=8.0, rise=3.0, fall=2.5)
    """GeV: the γγ mass W = √(z₁z₂s) of biased eeμμ events. Preselected events have W of
    0.8–4.6 GeV (1–99%): two muons with p_T > 0.4 GeV need W ≳ 1 GeV, above it
    σ(γγ→μμ) ∝ 1/W² falls."""
    eemumu_pair_rapidity_max: float = 1.2
    """Biased eeμμ events have the γγ rapidity Y = ½ ln(z₁/z₂) (CM) in [−Y_max, Y_max] ...
    (preselected: |Y| < 0.76 for 98%, but a tagged e±'s Q² shifts the pair's true rapidity)."""
    eemumu_pair_rapidity_apex: float = 1.5
    """... with density ∝ (apex − |Y|) (apex ≥ Y_max; the preselected Y falls about linearly)."""
    eemumu_rapidity_max: float = 1.0
    """T: mostly, the decay rapidity y* = atanh(β cos θ*) is uniform in |y*| ≤ T − |Y_γγ|, Y_γγ
    the μμ system's rapidity (CM): both muons, at rapidities ≈ Y_γγ ± y*, in the barrel
    (the muon θ range 37–120° lab is |η_CM| ≲ 0.82; the system's p_T blurs the edge)."""
    eemumu_wide_decay_share: float = 0.25
    """Share of the biased events whose y* is instead uniform in
    [−``eemumu_wide_decay_rapidity``, +…], so that muon pairs just outside the diamond
    |Y| + |y*| ≤ T that still pass keep moderate weights."""
    eemumu_wide_decay_rapidity: float = 1.1
    """Half-width of the wide y* range (|cos θ*| ≲ 0.8)."""
    eemumu_tag_pt: PeakedShape = PeakedShape(low=0.3, peak=0.6, high=1.6, rise=3.0, fall=1.0)
    """GeV: transverse momentum q_T of a single-tag event's tagged e± (preselected: 0.32–1.3 GeV,
    1–99%; the recoil p_T > 0.5 GeV cut needs it)."""
    eemumu_double_tag_pt: PeakedShape = PeakedShape(low=0.12, peak=0.5, high=1.5)
    """GeV: the same for each e± of a double-tag event, log-uniform and reaching lower (two
    q_T of 0.3 GeV add up to a recoil p_T above 0.5 GeV)."""
    eemumu_tag_angle_max: tuple = (19.5, 22.0)
    """deg, (e⁻, e⁺): a tagged e± is drawn at most this CM angle from its beam
    (q_T ≤ E_e·sin θ_max): it must stay inside the ECL's forward (< 12.4° lab, ≈ 16.5° CM)
    or backward (> 155.1° lab, ≈ 20.5° CM from the e⁺ beam) hole; the margins cover the
    beam crossing angle (preselected events reach 19.4° and 20.6°)."""

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
        self.eemumu_mass.check("eemumu_mass", upper=10.0)  # W < √s: both z below 1
        self.eemumu_tag_pt.check("eemumu_tag_pt")
        self.eemumu_double_tag_pt.check("eemumu_double_tag_pt")
        if not 0.0 < self.eemumu_pair_rapidity_max <= self.eemumu_pair_rapidity_apex:
            raise ValueError(f"BackgroundBias.eemumu_pair_rapidity_max must lie in (0, eemumu_pair_rapidity_apex], "
                             f"got {self.eemumu_pair_rapidity_max} (apex {self.eemumu_pair_rapidity_apex})")
        for name in ("eemumu_rapidity_max", "eemumu_wide_decay_rapidity"):
            if not getattr(self, name) > 0.0:
                raise ValueError(f"BackgroundBias.{name} must be positive, got {getattr(self, name)}")
        if not 0.0 <= self.eemumu_wide_decay_share <= 1.0:
            raise ValueError(f"BackgroundBias.eemumu_wide_decay_share must lie in [0, 1], "
                             f"got {self.eemumu_wide_decay_share}")
        angles = tuple(self.eemumu_tag_angle_max)
        if len(angles) != 2 or not all(0.0 < angle < 90.0 for angle in angles):
            raise ValueError(f"BackgroundBias.eemumu_tag_angle_max must be (e⁻, e⁺) deg, each in (0, 90), "
                             f"got {self.eemumu_tag_angle_max!r}")
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


def _within(value, low, high, tolerance=1e-9):
    """True where ``value`` lies in [low, high] up to a relative ``tolerance``
    (a value drawn at an edge and recomputed from other variables stays inside)."""
    return (value >= low * (1.0 - tolerance)) & (value <= high * (1.0 + tolerance))


def photon_pair_fractions(key, sqrt_s, low, high, use_biased, mass: PeakedShape, rapidity_max, rapidity_apex):
    """The two eeμμ photons' energy fractions z₁, z₂, each log-uniform on [``low``, ``high``],
    or, where ``use_biased``, through the γγ mass W = √(z₁z₂s) from ``mass`` (GeV) and the γγ
    rapidity Y = ½ ln(z₁/z₂) (CM) with density ∝ A − |Y| (A = ``rapidity_apex``) on
    [−Y_m, Y_m], Y_m = min(``rapidity_max``, ln(``high``·√s/W), ln(W/(``low``·√s))) keeping
    both z in [low, high]: a μμ pair heavy enough for two muons with p_T > 0.4 GeV and at
    rest enough to put them in the barrel.

    ``sqrt_s`` (n,) GeV, ``low`` (n, 1) or scalar, ``high`` scalar, ``use_biased`` (n,).
    Returns ``(z (n, 2), log_ratio (n,))`` with log_ratio = ln g/p at the drawn (z₁, z₂),
    both densities taken in (ln z₁, ln z₂) where d ln z₁ d ln z₂ = 2 d ln W dY
    (−inf where g vanishes).
    """
    n = use_biased.shape[0]
    root_s = sqrt_s[:, None]
    low = jnp.broadcast_to(low, (n, 1))
    u = jax.random.uniform(key, (n, 2))
    log_range = jnp.log(high / low)
    z_p = low * jnp.exp(log_range * u)
    mass_g = peaked_log_draw(u[:, :1], mass, mass.low, mass.high)
    limit_g = _rapidity_limit(mass_g, root_s, low, high, rapidity_max)
    rapidity_g = _truncated_triangle(2.0 * u[:, 1:] - 1.0, rapidity_apex, limit_g)
    z_g = (mass_g / root_s) * jnp.exp(jnp.concatenate([rapidity_g, -rapidity_g], axis=1))
    z = jnp.where(use_biased[:, None], z_g, z_p)

    w = jnp.sqrt(z[:, :1] * z[:, 1:]) * root_s
    rapidity = 0.5 * jnp.log(z[:, :1] / z[:, 1:])
    limit = _rapidity_limit(w, root_s, low, high, rapidity_max)
    inside = _within(w, mass.low, mass.high) & (jnp.abs(rapidity) <= limit * (1.0 + 1e-9))
    # g(ln z₁, ln z₂) = g_W(ln W)·g_Y(Y)/2 with g_Y = (A − |Y|)/(Y_m(2A − Y_m));  p = 1/ln(high/low)²
    log_g_rapidity = (jnp.log(jnp.maximum(rapidity_apex - jnp.abs(rapidity), 1e-300))
                      - jnp.log(limit * (2.0 * rapidity_apex - limit)))
    log_g = peaked_log_log_density(w, mass, mass.low, mass.high) + log_g_rapidity - jnp.log(2.0)
    log_ratio = jnp.where(inside, log_g + 2.0 * jnp.log(log_range), -jnp.inf)
    return z, log_ratio[:, 0]


def _rapidity_limit(mass, root_s, low, high, rapidity_max):
    """Y_m of :func:`photon_pair_fractions`: |Y| ≤ Y_m ≤ Y_max keeps both z = (W/√s)·e^(±Y)
    in [low, high] (positive for W in (low·√s, high·√s))."""
    return jnp.minimum(rapidity_max, jnp.minimum(jnp.log(high * root_s / mass), jnp.log(mass / (low * root_s))))


def _truncated_triangle(u, apex, limit):
    """Y with density ∝ ``apex`` − |Y| on [−``limit``, ``limit``] (limit ≤ apex) from a
    uniform ``u`` in [−1, 1] (its sign gives Y's): the inverse CDF of |Y|."""
    mass_below = jnp.abs(u) * limit * (2.0 * apex - limit)  # = 2·∫₀^|Y| (A − a) da
    return jnp.sign(u) * (apex - jnp.sqrt(jnp.maximum(apex**2 - mass_below, 0.0)))


def _slope_mass(slope, t):
    """∫₀^t e^(−slope·τ) dτ for t ≥ 0 (= t for slope 0; ``slope`` a Python float)."""
    return t if slope == 0.0 else -jnp.expm1(-slope * t) / slope


def _slope_mass_inverse(slope, mass):
    """The t ≥ 0 with :func:`_slope_mass` (slope, t) = ``mass``."""
    return mass if slope == 0.0 else -jnp.log1p(-slope * mass) / slope


def _peaked_pieces(shape: PeakedShape, low, high):
    """ln(low/peak) ≤ 0, ln(high/peak) ≥ 0 and the unnormalised masses below/above the peak
    of :func:`peaked_log_draw` on [low, high] (the peak clipped into it)."""
    peak = jnp.clip(shape.peak, low, high)
    t_low, t_high = jnp.log(low / peak), jnp.log(high / peak)
    return peak, t_low, t_high, _slope_mass(shape.rise, -t_low), _slope_mass(shape.fall, t_high)


def peaked_log_draw(u, shape: PeakedShape, low, high):
    """x with the density of ``shape`` in ln x, truncated to [``low``, ``high``] (arrays or
    floats: per-event bounds inside the shape's), at uniform draws ``u`` (inverse CDF)."""
    peak, t_low, _, below, above = _peaked_pieces(shape, low, high)
    mass = u * (below + above)
    t = jnp.where(mass < below,
                  -_slope_mass_inverse(shape.rise, jnp.maximum(below - mass, 0.0)),
                  _slope_mass_inverse(shape.fall, jnp.maximum(mass - below, 0.0)))
    return peak * jnp.exp(jnp.clip(t, t_low, None))


def peaked_log_log_density(x, shape: PeakedShape, low, high):
    """ln of :func:`peaked_log_draw`'s density in ln x at ``x`` (−inf outside [low, high])."""
    peak, _, _, below, above = _peaked_pieces(shape, low, high)
    t = jnp.log(x / peak)
    log_shape = jnp.where(t < 0.0, shape.rise * t, -shape.fall * t)
    return jnp.where(_within(x, low, high), log_shape - jnp.log(below + above), -jnp.inf)


_MIN_DECAY_HALF_WIDTH = 0.15
"""Smallest half-width D of the diamond's y* range (at |Y| → T, where D = T − |Y| → 0)."""


def central_cos(key, beta, rapidity, use_biased, bias: BackgroundBias):
    """cos θ* of a γγ → μ⁺μ⁻ decay (muon velocity ``beta`` in the γγ frame): the generator's
    proposal ∝ 1/(1 − β²cos²θ*) on [−1, 1], i.e. the decay rapidity y* = atanh(β cos θ*)
    uniform in [−atanh β, atanh β] (muons along the beams), or, where ``use_biased``, y*
    uniform in [−D, D] with D = clip(T − |Y|, 0.15, Y_w) (T = ``bias.eemumu_rapidity_max``,
    Y = the μμ system's rapidity ``rapidity``: both muons at rapidities Y ± y* in the barrel) or, a
    share ``bias.eemumu_wide_decay_share`` of the time, in [−Y_w, Y_w]
    (Y_w = min(``bias.eemumu_wide_decay_rapidity``, atanh β)).
    Returns ``(cos θ*, log_ratio = ln g/p)`` (−inf where g vanishes)."""
    k_u, k_wide = jax.random.split(key)
    u = jax.random.uniform(k_u, use_biased.shape, minval=-1.0, maxval=1.0)
    atanh_beta = jnp.arctanh(beta)
    wide = jnp.minimum(bias.eemumu_wide_decay_rapidity, atanh_beta)
    diamond = jnp.clip(bias.eemumu_rapidity_max - jnp.abs(rapidity), jnp.minimum(_MIN_DECAY_HALF_WIDTH, wide), wide)
    share = bias.eemumu_wide_decay_share
    half_width = jnp.where(jax.random.uniform(k_wide, use_biased.shape) < share, wide, diamond)
    cos = jnp.tanh(u * jnp.where(use_biased, half_width, atanh_beta)) / beta
    # every density here is flat in y* on its range: g/p = atanh β · Σ_i share_i·[|y*| ≤ D_i]/D_i
    y_star = jnp.abs(jnp.arctanh(beta * cos))
    ratio = atanh_beta * (share * _within(y_star, 0.0, wide) / wide
                          + (1.0 - share) * _within(y_star, 0.0, diamond) / diamond)
    return cos, jnp.log(ratio)


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
