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

* μμ(γ): K = 10, one per set of one or two of the four photons (2 ISR, 2 FSR).
  A biased ISR photon has its energy fraction log-uniform in [0.02, 1] (half of them in
  [0.1, 1]: ``isr_hard_share``) instead of (β/2)·x^(β/2−1) (hard) and its angle about the
  beam half the time as unbiased (``isr_collinear_share``: most passing events' hard ISR
  photons escape along the beam at θ ≲ 1°, where p already puts them), otherwise
  log-uniform above 1° (``isr_angle_range``: into the beam pipe, yet with p_T, or the
  forward/backward ECL gaps). A biased FSR photon
  (:func:`fsr_photon`) is mostly hard (y log-uniform in [0.02, 1]) and *aimed* at where
  its muon's track enters the ECL, κ/p away from the muon in −q·φ̂ (the solenoid's bend:
  the photon's cluster merges with the track's), or uniform on the CM images of the ECL's
  dead rings (``ecl_gap_bands``), or log-uniform in ``fsr_angle_range`` about the muon;
  a share ``fsr_soft_share`` is soft (≈ 0.3–0.7 GeV) and isotropic (photons seen below the
  0.5 GeV veto). The other photons stay as unbiased. Passing μμ(γ) events need one hidden
  hard photon (M²_rec ≈ 0) or two (one along the beams, one hidden: M²_rec > 1 GeV²).
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
import numpy as np


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
    isr_angle_range: tuple = (1.0, 45.0)
    """deg: biased ISR photons have θ (CM, about their beam) log-uniform in this range."""
    fsr_angle_range: tuple = (1.5, 12.0)
    """deg: the unaimed biased FSR photons have their angle to the muon log-uniform in this range."""
    fsr_aim_share: float = 0.6
    """Share of the biased FSR photons aimed at the muon track's ECL cluster (where they merge
    with it and go unseen: :func:`fsr_direction`)."""
    fsr_gap_share: float = 0.15
    """Share of the biased FSR photons drawn uniformly on ``ecl_gap_bands``."""
    ecl_gap_bands: tuple = ((38.0, 44.5), (105.6, 106.05), (138.5, 143.3))
    """deg: CM polar-angle bands holding the images of the ECL's dead rings (lab 31.4–32.2°,
    the 89.97–90.03° crystal gap, 128.7–130.7°; the crossing angle and beam spread blur them)."""
    fsr_soft_share: float = 0.1
    """Share of the biased FSR photons drawn soft (``fsr_soft_fraction``) and isotropic."""
    fsr_soft_fraction: tuple = (0.06, 0.13)
    """Energy fraction range (of the muon's) of the soft FSR photons: 0.3–0.7 GeV for 5 GeV muons."""
    fsr_aim_width: float = 1.0
    """deg: Gaussian width (per axis, CM) about that aim point; the cluster cone is 2° (lab)."""
    fsr_aim_curl: float = 0.28
    """GeV: κ = 0.15·B·R of the default detector (1.5 T, 1.25 m): a track of transverse
    momentum p_T reaches the ECL turned by ≈ κ/p_T in φ."""
    isr_hard_share: float = 0.5
    """Share of the biased ISR photons with x log-uniform in [``isr_hard_low``, 1] instead of
    [0.02, 1]: the ISR photons of events with M²_rec ≳ 4 GeV² (≈ s·x₁x₂) have x ≳ 0.1."""
    isr_hard_low: float = 0.1
    isr_collinear_share: float = 0.5
    """Share of the biased ISR angles drawn from the unbiased collinear density: most passing
    events' hard ISR photons escape into the beam pipe at θ ≲ 1°, where p already puts them
    (so only their energy needs the bias); the rest cover the ECL gaps and edges."""
    collinear_share: float = 0.1
    """The same for the unaimed biased FSR angles, so that hard FSR photons at angles below
    ``fsr_angle_range`` keep g/p ≥ this share (no event left at the weight bound
    1/(1 − λ) for an angle no component covers)."""
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
    eemumu_tag_pt: PeakedShape = PeakedShape(low=0.3, peak=0.6, high=2.0, rise=3.0, fall=1.0)
    """GeV: transverse momentum q_T of a single-tag event's tagged e± (preselected: 0.32–1.3 GeV,
    1–99%; the recoil p_T > 0.5 GeV cut needs it). ``high`` reaches the largest q_T the angle
    window allows (E_beam·sin 22° = 1.98 GeV): with 1.6 GeV a preselected e⁺ at q_T = 1.64 GeV
    was covered by the unbiased component alone and weighed 700× the mean (quick seed 3)."""
    eemumu_double_tag_pt: PeakedShape = PeakedShape(low=0.12, peak=0.5, high=2.0)
    """GeV: the same for each e± of a double-tag event, log-uniform and reaching lower (two
    q_T of 0.3 GeV add up to a recoil p_T above 0.5 GeV); ``high`` as for the single tag."""
    eemumu_tag_angle_max: tuple = (19.5, 22.0)
    """deg, (e⁻, e⁺): a tagged e± is drawn at most this CM angle from its beam
    (q_T ≤ E_e·sin θ_max): it must stay inside the ECL's forward (< 12.4° lab, ≈ 16.5° CM)
    or backward (> 155.1° lab, ≈ 20.5° CM from the e⁺ beam) hole; the margins cover the
    beam crossing angle (preselected events reach 19.4° and 20.6°)."""

    def validate(self) -> BackgroundBias:
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
        if not self.fsr_aim_share + self.fsr_gap_share < 1.0 or self.fsr_gap_share < 0.0:
            raise ValueError(f"BackgroundBias.fsr_gap_share must lie in [0, 1 − fsr_aim_share), got {self.fsr_gap_share}")
        low, high = (tuple(self.fsr_soft_fraction) + (None, None))[:2]
        if len(self.fsr_soft_fraction) != 2 or not 0.0 < low < high <= 1.0:
            raise ValueError(f"BackgroundBias.fsr_soft_fraction must be (low, high) with 0 < low < high <= 1, "
                             f"got {self.fsr_soft_fraction!r}")
        if not 0.02 <= self.isr_hard_low < 1.0:
            raise ValueError(f"BackgroundBias.isr_hard_low must lie in [0.02, 1), got {self.isr_hard_low}")
        for name in ("fsr_aim_share", "collinear_share", "isr_collinear_share", "fsr_soft_share", "isr_hard_share"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"BackgroundBias.{name} must lie in [0, 1), got {getattr(self, name)}")
        for name in ("fsr_aim_width", "fsr_aim_curl"):
            if not getattr(self, name) > 0.0:
                raise ValueError(f"BackgroundBias.{name} must be positive, got {getattr(self, name)}")
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


def fraction_log_ratio(x, exponent, low, high):
    """ln g/p at energy fraction ``x`` of g log-uniform on [``low``, ``high``] against
    p(x) = a·x^(a−1) (``exponent`` a) on [0, 1] (−inf outside [low, high])."""
    log_p = jnp.log(exponent) + (exponent - 1.0) * jnp.log(jnp.maximum(x, 1e-300))
    log_g = jnp.where(_within(x, low, high), -jnp.log(x) - jnp.log(jnp.log(high / low)), -jnp.inf)
    return log_g - log_p


def power_fraction(key, exponent, use_biased, biased_low=0.02, hard_share=0.0, hard_low=0.1):
    """Energy fraction x ∈ [0, 1] from p(x) = a·x^(a−1) (``exponent`` a), or, where
    ``use_biased``, log-uniform on [``biased_low``, 1] (hard photons, spread evenly
    over the decades the preselection cares about: 0.1–5 GeV), a share ``hard_share``
    of the time log-uniform on [``hard_low``, 1] instead (harder still).

    Returns ``(x, log_ratio)`` with log_ratio = ln g(x)/p(x) at the drawn x
    (shapes of ``use_biased``; −inf below ``biased_low``, where g vanishes).
    """
    k_u, k_hard = jax.random.split(key)
    u = jax.random.uniform(k_u, use_biased.shape)
    hard = jax.random.uniform(k_hard, use_biased.shape) < hard_share
    low = jnp.where(hard, hard_low, biased_low)
    x = jnp.where(use_biased, low ** (1.0 - u), jnp.exp(jnp.log(u) / exponent))
    log_ratio = jnp.logaddexp(jnp.log1p(-hard_share) + fraction_log_ratio(x, exponent, biased_low, 1.0),
                              jnp.log(hard_share) + fraction_log_ratio(x, exponent, hard_low, 1.0))
    return x, log_ratio


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


def _collinear_draw(key, velocity, use_biased, angle_range, collinear_share):
    """1 − cos θ of an angle θ about an emitter of ``velocity`` v, drawn as :func:`collinear_cos`
    describes (p where not ``use_biased``, else g)."""
    shape = use_biased.shape
    velocity = jnp.broadcast_to(velocity, shape)
    low, high = jnp.radians(angle_range[0]), jnp.radians(angle_range[1])
    k_u, k_wide, k_collinear = jax.random.split(key, 3)
    u = jax.random.uniform(k_u, shape)
    top = jnp.where(jax.random.uniform(k_wide, shape) < 0.5, high, jnp.pi)
    theta_g = low * jnp.exp(u * jnp.log(top / low))
    as_unbiased = ~use_biased | (jax.random.uniform(k_collinear, shape) < collinear_share)
    # 1 − cos θ = 2 sin²(θ/2): exact at small θ, as p needs
    return jnp.where(as_unbiased, _collinear_one_minus_cos(u, velocity), 2.0 * jnp.sin(0.5 * theta_g) ** 2)


def _collinear_log_densities(one_minus, velocity, angle_range, collinear_share):
    """(ln g, ln p) in cos θ at 1 − cos θ = ``one_minus`` for :func:`collinear_cos`'s g and p
    (ln g = −inf only where ``collinear_share`` is 0 and θ < θ_a)."""
    low, high = jnp.radians(angle_range[0]), jnp.radians(angle_range[1])
    theta = 2.0 * jnp.arcsin(jnp.sqrt(jnp.clip(0.5 * one_minus, 0.0, 1.0)))
    log_wide = jnp.logaddexp(_log_log_uniform_angle_density(theta, low, high),
                             _log_log_uniform_angle_density(theta, low, jnp.pi)) - jnp.log(2.0)
    log_p = _log_collinear_density(one_minus, velocity)
    # g = c·p + (1 − c)·g_wide: hard photons at angles g_wide misses (θ < θ_a) keep g/p ≥ c
    log_g = jnp.logaddexp(jnp.log(collinear_share) + log_p, jnp.log1p(-collinear_share) + log_wide)
    return log_g, log_p


def collinear_cos(key, velocity, use_biased, angle_range, collinear_share=0.0):
    """cos θ about an emitter of ``velocity`` v (collinear QED radiation, density
    ∝ 1/(1 − v cos θ)), or, where ``use_biased``, from g: a share ``collinear_share``
    of the time from that same density, otherwise half the time θ log-uniform in
    ``angle_range`` = (θ_a, θ_b) (deg), half the time log-uniform in (θ_a, 180°) (so
    that every angle above θ_a, e.g. the ECL gaps, is covered).

    Returns ``(cos θ, log_ratio)`` with log_ratio = ln g/p at the drawn cos θ
    (−inf below θ_a for ``collinear_share`` 0, where g vanishes).
    """
    one_minus = _collinear_draw(key, velocity, use_biased, angle_range, collinear_share)
    log_g, log_p = _collinear_log_densities(one_minus, velocity, angle_range, collinear_share)
    return 1.0 - one_minus, log_g - log_p


def _tangent_basis(axis):
    """Unit vectors (n̂, e_θ, e_φ) of a direction ``axis`` (…, 3): e_φ = ẑ × n̂/|ẑ × n̂| (ŷ along
    ±z), e_θ = e_φ × n̂ — the local x̂, ŷ of :func:`diffana.physics.kinematics.rotate_to_direction`."""
    unit = axis / jnp.linalg.norm(axis, axis=-1, keepdims=True)
    transverse = jnp.sqrt(unit[..., 0] ** 2 + unit[..., 1] ** 2)
    safe = jnp.where(transverse > 0, transverse, 1.0)
    e_phi = jnp.stack([jnp.where(transverse > 0, -unit[..., 1] / safe, 0.0),
                       jnp.where(transverse > 0, unit[..., 0] / safe, 1.0), jnp.zeros_like(transverse)], axis=-1)
    return unit, jnp.cross(e_phi, unit), e_phi


def _log_gap_density(cos_theta, bands):
    """ln of the density per solid angle of a direction uniform on the CM polar-angle
    ``bands`` (deg; each band equally likely, φ uniform) at polar angle cos θ (−inf outside)."""
    density = 0.0
    for low, high in bands:
        c_high, c_low = np.cos(np.radians(low)), np.cos(np.radians(high))
        density = density + jnp.where((cos_theta >= c_low) & (cos_theta <= c_high),
                                      1.0 / (len(bands) * 2.0 * np.pi * (c_high - c_low)), 0.0)
    return jnp.log(density)


def _gap_direction(key, shape, bands):
    """Unit vectors (shape + (3,)) uniform on the CM polar-angle ``bands`` (deg), a band
    chosen with equal probability: photons into the ECL's dead rings."""
    k_band, k_cos, k_phi = jax.random.split(key, 3)
    c = jnp.asarray(np.cos(np.radians(np.array(bands))))  # (B, 2): cos of (low, high)
    band = jax.random.randint(k_band, shape, 0, len(bands))
    cos_theta = c[:, 1][band] + (c[:, 0] - c[:, 1])[band] * jax.random.uniform(k_cos, shape)
    phi = 2.0 * jnp.pi * jax.random.uniform(k_phi, shape)
    sin_theta = jnp.sqrt(1.0 - cos_theta**2)
    return jnp.stack([sin_theta * jnp.cos(phi), sin_theta * jnp.sin(phi), cos_theta], axis=-1)


class FsrDirection(NamedTuple):
    """An FSR photon's direction about its muon, in the generator's variables."""

    one_minus_cos: jax.Array
    """1 − cos α, α the angle to the muon (exact at small α)."""
    cos_psi: jax.Array
    """cos ψ, ψ the azimuth about the muon from e_θ towards e_φ (:func:`_tangent_basis`)."""
    sin_psi: jax.Array
    """sin ψ."""


def _aim_centre(muon_momentum, charge, bias: BackgroundBias):
    """(n, 2, 2): the aim point (0, −q·κ/p) (rad, in the (e_θ, e_φ) plane) of :func:`fsr_direction`."""
    momentum = jnp.linalg.norm(muon_momentum, axis=-1)
    offset = -charge * jnp.minimum(bias.fsr_aim_curl / momentum, _MAX_AIM_OFFSET)
    return jnp.stack([jnp.zeros_like(offset), offset], axis=-1)


def fsr_direction(key, velocity, muon_momentum, charge, use_biased, isotropic, bias: BackgroundBias):
    """Draw an FSR photon's direction about its muon (the generator's variables: 1 − cos α and
    the azimuth ψ about the muon).

    p: cos α ∝ 1/(1 − v cos α) (``velocity`` v), ψ uniform. Where ``isotropic``: uniform on the
    sphere. Elsewhere where ``use_biased``, from g_dir, a mixture of three pieces (densities per
    solid angle d cos α dψ; :func:`fsr_direction_log_densities` evaluates them):

    * ``bias.fsr_aim_share``: *aimed* at where the muon's track enters the ECL, so that the
      photon's cluster merges with the track's and the photon goes unseen. The solenoid turns
      a track of charge q and transverse momentum p_T by Δφ ≈ −q·κ/p_T (κ = ``bias.fsr_aim_curl``,
      GeV), i.e. by κ/p on the sky — in the CM frame as in the lab, since p_T is boost-invariant
      along z — and a photon emitted at an offset a from the muon, the muon recoiling by
      −y·a/(1 − y), lands κ/((1 − y)p) from the recoiled track for a = κ/p (p the muon's
      momentum before emission, GeV), whatever its energy share y. The offset
      u = 2 sin(α/2)·(cos ψ, sin ψ) is Gaussian about (0, −q·κ/p) (capped at 0.3 rad) with width
      ``bias.fsr_aim_width`` (deg) per axis; u is the equal-area (Lambert) projection,
      d²u = d cos α dψ, so the Gaussian is g's density per solid angle.
    * ``bias.fsr_gap_share``: uniform on the CM polar-angle bands ``bias.ecl_gap_bands``
      (images of the ECL's dead rings), whatever the muon's direction.
    * the rest: cos α from :func:`collinear_cos` (``bias.fsr_angle_range``,
      ``bias.collinear_share``), ψ uniform.

    ``velocity``, ``use_biased``, ``isotropic``: (n, 2); ``muon_momentum`` (n, 2, 3) GeV;
    ``charge`` (2,) ±1. Returns an :class:`FsrDirection`.
    """
    shape = use_biased.shape
    k_angle, k_psi, k_piece, k_offset, k_gap, k_iso = jax.random.split(key, 6)
    one_minus = _collinear_draw(k_angle, velocity, use_biased, bias.fsr_angle_range, bias.collinear_share)
    psi = 2.0 * jnp.pi * jax.random.uniform(k_psi, shape)
    cos_psi, sin_psi = jnp.cos(psi), jnp.sin(psi)
    piece = jax.random.uniform(k_piece, shape)
    aimed = use_biased & (piece < bias.fsr_aim_share)
    gap = use_biased & ~aimed & (piece < bias.fsr_aim_share + bias.fsr_gap_share)
    offset = jnp.radians(bias.fsr_aim_width) * jax.random.normal(k_offset, shape + (2,))
    offset = offset + _aim_centre(muon_momentum, charge, bias)
    # r = |u| = 2 sin(α/2) ≤ 0.3 + many widths < 2: every aimed offset is a direction
    radius = jnp.sqrt(jnp.sum(offset**2, axis=-1))
    one_minus = jnp.where(aimed, 0.5 * radius**2, one_minus)
    cos_psi = jnp.where(aimed, offset[..., 0] / jnp.maximum(radius, 1e-300), cos_psi)
    sin_psi = jnp.where(aimed, offset[..., 1] / jnp.maximum(radius, 1e-300), sin_psi)
    unit, e_theta, e_phi = _tangent_basis(muon_momentum)
    direction = _gap_direction(k_gap, shape, bias.ecl_gap_bands)
    along, x, y = (jnp.sum(direction * e, axis=-1) for e in (unit, e_theta, e_phi))
    sin_alpha = jnp.maximum(jnp.hypot(x, y), 1e-300)
    one_minus = jnp.where(gap, 1.0 - along, one_minus)
    cos_psi = jnp.where(gap, x / sin_alpha, cos_psi)
    sin_psi = jnp.where(gap, y / sin_alpha, sin_psi)
    # isotropic: 1 − cos α uniform on [0, 2], ψ uniform (the ψ drawn above)
    one_minus = jnp.where(isotropic, 2.0 * jax.random.uniform(k_iso, shape), one_minus)
    return FsrDirection(one_minus, cos_psi, sin_psi)


def fsr_direction_log_densities(direction: FsrDirection, velocity, muon_momentum, charge, bias: BackgroundBias):
    """(ln g_dir, ln p) per solid angle of :func:`fsr_direction`'s biased mixture and of the
    unbiased density at ``direction`` (whichever piece drew it)."""
    one_minus, cos_psi, sin_psi = direction
    centre = _aim_centre(muon_momentum, charge, bias)
    width = jnp.radians(bias.fsr_aim_width)
    point = jnp.sqrt(2.0 * one_minus)[..., None] * jnp.stack([cos_psi, sin_psi], axis=-1)
    log_aimed = -0.5 * jnp.sum((point - centre) ** 2, axis=-1) / width**2 - jnp.log(2.0 * jnp.pi * width**2)
    unit, e_theta, e_phi = _tangent_basis(muon_momentum)
    sin_alpha = jnp.sqrt(jnp.clip(one_minus * (2.0 - one_minus), 0.0, None))
    global_cos = (1.0 - one_minus) * unit[..., 2] + sin_alpha * (cos_psi * e_theta[..., 2] + sin_psi * e_phi[..., 2])
    log_gap = _log_gap_density(global_cos, bias.ecl_gap_bands)
    log_g_angle, log_p = _collinear_log_densities(one_minus, velocity, bias.fsr_angle_range, bias.collinear_share)
    rest = 1.0 - bias.fsr_aim_share - bias.fsr_gap_share
    log_g = jnp.logaddexp(jnp.logaddexp(jnp.log(bias.fsr_aim_share) + log_aimed, jnp.log(bias.fsr_gap_share) + log_gap),
                          jnp.log(rest) + log_g_angle - jnp.log(2.0 * jnp.pi))
    return log_g, log_p - jnp.log(2.0 * jnp.pi)


def fsr_photon(key, exponent, velocity, muon_momentum, charge, use_biased, bias: BackgroundBias):
    """An FSR photon's energy fraction y (of its muon's energy) and direction, from p
    (y from a·y^(a−1), ``exponent`` a; the direction as :func:`fsr_direction`'s p) or, where
    ``use_biased``, from g = (1 − s)·g_y·g_dir + s·g_soft·g_iso (s = ``bias.fsr_soft_share``):
    hard (y log-uniform on [0.02, 1], :func:`power_fraction`) at the angles of :func:`fsr_direction`,
    or soft and anywhere: y log-uniform on ``bias.fsr_soft_fraction`` and isotropic — photons of
    ≈ 0.5 GeV seen in the ECL below the veto's 0.5 GeV, whose recoil p_T > 0.5 GeV and ≥ 15°
    from the photon come from the muons' momentum resolution.

    Returns ``(y, FsrDirection, log_ratio = ln g/p)``, all (n, 2).
    """
    k_piece, k_y, k_dir = jax.random.split(key, 3)
    shape = use_biased.shape
    soft = use_biased & (jax.random.uniform(k_piece, shape) < bias.fsr_soft_share)
    y, _ = power_fraction(k_y, exponent, use_biased)
    soft_low, soft_high = bias.fsr_soft_fraction
    y = jnp.where(soft, soft_low * (soft_high / soft_low) ** jax.random.uniform(jax.random.fold_in(k_y, 1), shape), y)
    direction = fsr_direction(k_dir, velocity, muon_momentum, charge, use_biased & ~soft, soft, bias)
    log_g_dir, log_p_dir = fsr_direction_log_densities(direction, velocity, muon_momentum, charge, bias)
    log_ry_hard = fraction_log_ratio(y, exponent, 0.02, 1.0)
    log_ry_soft = fraction_log_ratio(y, exponent, soft_low, soft_high)
    log_iso = -jnp.log(4.0 * jnp.pi)
    share = bias.fsr_soft_share
    log_ratio = jnp.logaddexp(jnp.log1p(-share) + log_ry_hard + log_g_dir - log_p_dir,
                              jnp.log(share) + log_ry_soft + log_iso - log_p_dir)
    return y, direction, log_ratio


_MAX_AIM_OFFSET = 0.3
"""rad: cap on the aimed FSR offset κ/p (muons below ≈ 1 GeV rarely pass the preselection)."""


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
