"""Biased (importance-sampled) background generation: exact weights.

The sampling densities of :mod:`diffana.physics.bias` are checked on their own
(E_q[p/q · f] = E_p[f], checked on quantiles of each biased variable), then biased and
unbiased generator samples are compared after the Z'→invisible preselection
with a χ² on the total yield and on the M²_rec, recoil θ, recoil p_T and dimuon mass
histograms — which must fail when the weight p/q is dropped. The biased eeμμ and μμ(γ)
variables are also compared at generator level, where they act (fast).
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import diffana  # noqa: F401  (float64)
from conftest import zprime_config_error
from diffana.physics import bias as B
from diffana.physics import features as F
from diffana.physics.generator import generate

# ------------------------------------------------------------------ the densities alone

N_TOY = 400_000


def _weights(log_ratio, fraction=0.5):
    """p/q of a two-component defensive mixture from ln g/p (toy: one slot)."""
    return B.mixture_weight(log_ratio[:, None], fraction, jnp.ones(1))


def _mixture_draw(sampler, key, fraction=0.5):
    use = jax.random.uniform(jax.random.fold_in(key, 1), (N_TOY,)) < fraction
    value, log_ratio = sampler(jax.random.fold_in(key, 2), use)
    return np.asarray(value), np.asarray(_weights(log_ratio, fraction))


TAG_PT_SHAPE = B.PeakedShape(0.3, 0.6, 1.6, rise=3.0, fall=1.0)
"""GeV: a peaked density like the tagged e±'s q_T."""


def _peaked_against_log_uniform(key, use, low=0.05, high=3.0):
    """Toy: p log-uniform on [low, high] (GeV), g = :data:`TAG_PT_SHAPE`."""
    shape = TAG_PT_SHAPE
    u = jax.random.uniform(key, use.shape)
    value = jnp.where(use, B.peaked_log_draw(u, shape, shape.low, shape.high), low * (high / low) ** u)
    log_ratio = B.peaked_log_log_density(value, shape, shape.low, shape.high) + jnp.log(jnp.log(high / low))
    return value, log_ratio


def _decay_cos(key, use, beta=0.97):
    """Toy: cos θ* for γγ rapidities spread over ±1.2 (the diamond's width varies per event)."""
    rapidity = jax.random.uniform(jax.random.fold_in(key, 5), use.shape, minval=-1.2, maxval=1.2)
    return B.central_cos(key, jnp.full(use.shape, beta), rapidity, use, B.BackgroundBias())


def _photon_pair(key, use, part):
    """Toy: the eeμμ photon pair at the nominal √s; ``part`` z₁ or W² = z₁z₂s."""
    sqrt_s = jnp.full(use.shape, 10.58)
    bias = B.BackgroundBias()
    z, log_ratio = B.photon_pair_fractions(key, sqrt_s, 0.25 / sqrt_s[:, None] ** 2, 1.0 - 1e-6, use,
                                           bias.eemumu_mass, bias.eemumu_pair_rapidity_max,
                                           bias.eemumu_pair_rapidity_apex)
    return (z[:, 0] if part == "z1" else z[:, 0] * z[:, 1] * sqrt_s**2), log_ratio


def _fsr_toy(key, use, part):
    """Toy: FSR photons of 2–6 GeV muons in random directions (two per event, as the generator:
    [μ⁺, μ⁻]); ``part``: y, or, for photons with y > 0.05 (where g acts), −(distance to the aim
    point) (rad), −|θ − 41.3°| (deg: the forward ECL gap's image), ln α (angle to the muon) or
    cos α in the soft range y ∈ [0.06, 0.13] (the isotropic piece); other photons get
    −1000 + ln y, below every such value and without ties (y reaches 10⁻¹⁶ and less): the
    upper quantiles probe the biased region."""
    n = use.shape[0] // 2
    k_dir, k_p = jax.random.split(jax.random.fold_in(key, 11))
    direction = jax.random.normal(k_dir, (n, 2, 3))
    direction = direction / jnp.linalg.norm(direction, axis=-1, keepdims=True)
    momentum = jax.random.uniform(k_p, (n, 2, 1), minval=2.0, maxval=6.0) * direction
    bias = B.BackgroundBias()
    charge = jnp.array([1.0, -1.0])
    velocity = jnp.full((n, 2), 0.9998)
    y, fsr, log_ratio = B.fsr_photon(key, 0.019, velocity, momentum, charge, use.reshape(n, 2), bias)
    if part == "y":
        value = y
    elif part == "aim":
        point = jnp.sqrt(2.0 * fsr.one_minus_cos)[..., None] * jnp.stack([fsr.cos_psi, fsr.sin_psi], axis=-1)
        value = -jnp.linalg.norm(point - B._aim_centre(momentum, charge, bias), axis=-1)
    else:
        unit, e_theta, e_phi = B._tangent_basis(momentum)
        sin_alpha = jnp.sqrt(fsr.one_minus_cos * (2.0 - fsr.one_minus_cos))
        cos_theta = ((1.0 - fsr.one_minus_cos) * unit[..., 2]
                     + sin_alpha * (fsr.cos_psi * e_theta[..., 2] + fsr.sin_psi * e_phi[..., 2]))
        value = (-jnp.abs(jnp.degrees(jnp.arccos(jnp.clip(cos_theta, -1.0, 1.0))) - 41.3) if part == "gap"
                 else jnp.log(fsr.one_minus_cos) if part == "angle" else 1.0 - fsr.one_minus_cos)
    if part != "y":
        selected = (y > 0.06) & (y < 0.13) if part == "soft" else y > 0.05
        value = jnp.where(selected, value, -1e3 + jnp.log(y))
    return value.reshape(-1), log_ratio.reshape(-1)


@pytest.mark.parametrize("name", ["power", "power_hard", "collinear", "collinear_share", "peaked", "decay_cos", "pair_z1",
                                  "pair_mass", "fsr_y", "fsr_aim", "fsr_gap", "fsr_angle", "fsr_soft"])
def test_biased_densities_reweight_to_the_unbiased(name):
    """Weighted biased draws reproduce the unbiased quantiles (within 4σ) and E[w] = 1."""
    key = jax.random.key(3)
    samplers = {
        "power": lambda k, use: B.power_fraction(k, 0.044, use),
        "power_hard": lambda k, use: B.power_fraction(k, 0.022, use, hard_share=0.5, hard_low=0.1),
        "collinear": lambda k, use: B.collinear_cos(k, 0.99, use, (1.0, 40.0)),
        "collinear_share": lambda k, use: B.collinear_cos(k, 1.0 - 1e-9, use, (1.0, 45.0), 0.5),
        "fsr_y": lambda k, use: _fsr_toy(k, use, "y"),
        "fsr_aim": lambda k, use: _fsr_toy(k, use, "aim"),
        "fsr_gap": lambda k, use: _fsr_toy(k, use, "gap"),
        "fsr_angle": lambda k, use: _fsr_toy(k, use, "angle"),
        "fsr_soft": lambda k, use: _fsr_toy(k, use, "soft"),
        "peaked": _peaked_against_log_uniform,
        "decay_cos": _decay_cos,
        "pair_z1": lambda k, use: _photon_pair(k, use, "z1"),
        "pair_mass": lambda k, use: _photon_pair(k, use, "mass"),
    }
    sampler = samplers[name]
    value, weight = _mixture_draw(sampler, key)
    plain, _ = sampler(jax.random.fold_in(key, 9), jnp.zeros(N_TOY, dtype=bool))
    plain = np.asarray(plain)
    assert abs(weight.mean() - 1.0) < 5 * weight.std() / np.sqrt(N_TOY)
    for q in (0.5, 0.9, 0.99, 0.999):
        cut = np.quantile(plain, q)
        above_w = weight * (value > cut)
        estimate, error = above_w.mean(), above_w.std() / np.sqrt(N_TOY)
        plain_error = np.sqrt(q * (1 - q) / N_TOY)
        assert abs(estimate - (1 - q)) < 4 * np.hypot(error, plain_error), (name, q, estimate)


def test_peaked_shape_draws_its_density():
    """peaked_log_draw follows peaked_log_log_density (truncated per event): a χ² on ln x."""
    shape = TAG_PT_SHAPE
    high = jnp.where(jnp.arange(N_TOY) % 2 == 0, 1.6, 0.5)  # half the events: peak clipped to 0.5
    x = np.asarray(B.peaked_log_draw(jax.random.uniform(jax.random.key(4), (N_TOY,)), shape, shape.low, high))
    for h in (1.6, 0.5):
        sel = np.asarray(high) == h
        edges = np.linspace(np.log(0.3), np.log(h), 21)
        counts = np.histogram(np.log(x[sel]), edges)[0]
        grid = np.linspace(edges[0], edges[-1], 20001)
        density = np.exp(np.asarray(B.peaked_log_log_density(jnp.exp(grid), shape, shape.low, h)))
        expected = np.array([np.trapezoid(density[(grid >= a) & (grid <= b)], grid[(grid >= a) & (grid <= b)])
                             for a, b in itertools.pairwise(edges)]) * sel.sum()
        chi2 = np.sum((counts - expected) ** 2 / expected)
        assert stats.chi2.sf(chi2, 20) > 1e-3, (h, chi2)
        assert x[sel].min() >= 0.3 * (1 - 1e-12) and x[sel].max() <= h * (1 + 1e-12)


def test_mixture_weight_is_bounded():
    log_ratios = jnp.array([[-jnp.inf, -jnp.inf], [0.0, 0.0], [5.0, 1.0]])
    w = np.asarray(B.mixture_weight(log_ratios, 0.9, jnp.array([0.5, 0.5])))
    assert w[0] == pytest.approx(10.0) and w[1] == pytest.approx(1.0) and w[2] < 1.0


def test_bad_bias_settings_raise():
    with pytest.raises(ValueError, match="mumu_fraction"):
        B.BackgroundBias(mumu_fraction=1.0).validate()
    with pytest.raises(ValueError, match="isr_angle_range"):
        B.BackgroundBias(isr_angle_range=(10.0, 5.0)).validate()
    with pytest.raises(ValueError, match="fsr_gap_share"):
        B.BackgroundBias(fsr_aim_share=0.7, fsr_gap_share=0.3).validate()
    with pytest.raises(ValueError, match="fsr_soft_fraction"):
        B.BackgroundBias(fsr_soft_fraction=(0.2, 0.1)).validate()
    with pytest.raises(ValueError, match="fsr_aim_width"):
        B.BackgroundBias(fsr_aim_width=0.0).validate()
    with pytest.raises(ValueError, match="isr_collinear_share"):
        B.BackgroundBias(isr_collinear_share=1.0).validate()
    with pytest.raises(ValueError, match="eemumu_mass"):
        B.BackgroundBias(eemumu_mass=B.PeakedShape(2.0, 1.0, 8.0)).validate()
    with pytest.raises(ValueError, match="eemumu_tag_pt"):
        B.BackgroundBias(eemumu_tag_pt=B.PeakedShape(0.3, 0.6, 1.6, rise=-1.0)).validate()
    with pytest.raises(ValueError, match="eemumu_pair_rapidity_max"):
        B.BackgroundBias(eemumu_pair_rapidity_max=2.0).validate()
    with pytest.raises(ValueError, match="eemumu_tag_angle_max"):
        B.BackgroundBias(eemumu_tag_angle_max=(19.5,)).validate()
    with pytest.raises(ValueError, match="bias must be"):
        B.resolve_bias("yes")
    with pytest.raises(ValueError, match="not to the signal"):
        generate("signal", 1.0, n_events=10, mass=1.0, bias=True)
    with pytest.raises(ValueError, match="unweighted"):
        generate("tautau", 1.0, n_events=10, bias=True, unweighted=True)


# ------------------------------------------------------------------ biased vs unbiased generator

HISTOGRAMS = {
    "recoil_mass_squared": np.array([-2.0, 1.0, 10.0, 25.0, 40.0, 55.0, 70.0, 90.0]),
    "recoil_theta_cm": np.array([0.0, 40.0, 60.0, 80.0, 100.0, 120.0, 180.0]),
    "recoil_pt_cm": np.array([0.5, 0.8, 1.2, 1.8, 2.6, 6.0]),
    "dimuon_mass": np.array([0.0, 1.5, 2.5, 4.0, 7.0, 11.0]),
}
"""Binning (GeV², deg, GeV, GeV) of the compared distributions, wide enough to be populated
(the dimuon mass is eeμμ's biased W)."""


class Comparison(NamedTuple):
    """χ² of biased vs unbiased preselected yields (total + histogram bins) and its p-value."""

    chi2: float
    ndof: int
    p_value: float
    yield_biased: float
    yield_unbiased: float


def _preselected(sample):
    keep = np.asarray(F.preselection(sample, 90.0))
    return {k: v[keep] for k, v in sample.items()}


def _sums(sample, feature, edges):
    w = sample["weight"]
    return (np.histogram(sample[feature], edges, weights=w)[0], np.histogram(sample[feature], edges, weights=w**2)[0])


def compare(biased, unbiased) -> Comparison:
    """χ² = Σ (S_b − S_u)²/(V_b + V_u) over the total yield and every histogram bin with
    content (S = Σw, V = Σw²; independent samples). Distributions share the total, so
    the bins of each histogram are compared as they are: a global mis-weighting shows
    in every bin, a local one in a few."""
    terms = []
    totals = [(s["weight"].sum(), (s["weight"] ** 2).sum()) for s in (biased, unbiased)]
    terms.append((totals[0][0] - totals[1][0], totals[0][1] + totals[1][1]))
    for feature, edges in HISTOGRAMS.items():
        (sb, vb), (su, vu) = _sums(biased, feature, edges), _sums(unbiased, feature, edges)
        for i in range(edges.size - 1):
            if vb[i] + vu[i] > 0:
                terms.append((sb[i] - su[i], vb[i] + vu[i]))
    chi2 = float(sum(d**2 / v for d, v in terms))
    return Comparison(chi2, len(terms), float(stats.chi2.sf(chi2, len(terms))), totals[0][0], totals[1][0])


def _break_weights(sample, n_generated, sigma_l):
    """The deliberate bug: drop p/q (every biased event weighs σ·L/N)."""
    broken = dict(sample)
    broken["weight"] = np.full(sample["weight"].size, sigma_l / n_generated)
    return broken


def _check_process(process, n_events, seed):
    lum = 10.0
    unbiased = _preselected(generate(process, lum, n_events=n_events, seed=seed, chunk_size=n_events))
    biased_all = generate(process, lum, n_events=n_events, seed=seed + 1, chunk_size=n_events, bias=True)
    sigma_l = biased_all["weight"].sum()
    biased = _preselected(biased_all)
    good = compare(biased, unbiased)
    broken = compare(_break_weights(biased, n_events, sigma_l), unbiased)
    return good, broken


class _EemumuTruth(NamedTuple):
    """Generator-level eeμμ quantities the biased components change, per event."""

    weight: np.ndarray
    """relative weight normalised to mean 1 over the generated events (as ``generate`` does)."""
    dimuon_mass: np.ndarray
    """GeV: W."""
    tag_pt: np.ndarray
    """GeV: the larger q_T of the two scattered e±."""
    tag_angle: np.ndarray
    """deg: that e±'s CM angle to its beam."""
    other_pt: np.ndarray
    """GeV: the other e±'s q_T."""
    pair_rapidity: np.ndarray
    """CM rapidity of the μμ system."""
    muon_cos: np.ndarray
    """(n, 2) CM cos θ of both muons."""


def _eemumu_truth(n, seed, bias, drop_weights=False):
    from diffana.physics import kinematics as kin
    from diffana.physics.processes import generate_eemumu_cm

    sqrt_s = jnp.full(n, 10.58)
    truth = jax.jit(generate_eemumu_cm, static_argnums=2)(jax.random.key(seed), sqrt_s, bias)
    weight = np.asarray(truth["relative_weight"])
    weight = (weight > 0) * 1.0 if drop_weights else weight
    muons, electrons = truth["charged"], truth["extra_charged"]
    system = muons.sum(axis=1)
    momentum = kin.momentum_magnitude(muons)
    q_t = np.asarray(kin.transverse_momentum(electrons))
    angle = np.degrees(np.arctan2(q_t, np.abs(np.asarray(electrons[..., 3]))))
    tagged = np.argmax(q_t, axis=1)[:, None]
    return _EemumuTruth(
        weight / weight.mean(),
        np.asarray(jnp.sqrt(kin.invariant_mass_squared(system))),
        np.take_along_axis(q_t, tagged, axis=1)[:, 0],
        np.take_along_axis(angle, tagged, axis=1)[:, 0],
        np.take_along_axis(q_t, 1 - tagged, axis=1)[:, 0],
        np.asarray(0.5 * jnp.log((system[:, 0] + system[:, 3]) / (system[:, 0] - system[:, 3]))),
        np.asarray(muons[..., 3] / momentum),
    )


EEMUMU_TRUTH_HISTOGRAMS = {
    "dimuon_mass": np.array([1.0, 1.3, 1.6, 2.0, 2.5, 3.5, 6.0]),
    "tag_pt": np.array([0.3, 0.45, 0.6, 0.8, 1.1, 1.6, 2.0]),
    "pair_rapidity": np.array([-1.5, -0.6, -0.2, 0.2, 0.6, 1.5]),
}
"""Binning (GeV, GeV, 1) of the generator-level comparison in the tagged, central region."""


def _truth_comparison(biased, unbiased, region, histograms) -> Comparison:
    """χ² of Σw (Σw² errors) of biased vs unbiased generator-level samples in ``region``
    (a function of a sample), in total and per bin of each of ``histograms``."""
    terms, totals, masks = [], [], [region(t) for t in (biased, unbiased)]
    for t, r in zip((biased, unbiased), masks):
        totals.append(((t.weight * r).sum(), (t.weight**2 * r).sum()))
    terms.append((totals[0][0] - totals[1][0], totals[0][1] + totals[1][1]))
    for name, edges in histograms.items():
        sums = [(np.histogram(getattr(t, name)[r], edges, weights=t.weight[r])[0],
                 np.histogram(getattr(t, name)[r], edges, weights=t.weight[r] ** 2)[0])
                for t, r in zip((biased, unbiased), masks)]
        for (sb, vb), (su, vu) in zip(zip(*sums[0]), zip(*sums[1])):
            if vb + vu > 0:
                terms.append((sb - su, vb + vu))
    chi2 = float(sum(d**2 / v for d, v in terms))
    return Comparison(chi2, len(terms), float(stats.chi2.sf(chi2, len(terms))), totals[0][0], totals[1][0])


def _eemumu_single_tag_region(t: _EemumuTruth):
    """The region a single-tag preselected event lies in: W > 1 GeV, one e± tagged (q_T > 0.3 GeV,
    < 16° from its beam: in the ECL hole), the other not (q_T < 0.1 GeV), both muons central
    (|cos θ_CM| < 0.75)."""
    return ((t.dimuon_mass > 1.0) & (t.tag_pt > 0.3) & (t.tag_angle < 16.0) & (t.other_pt < 0.1)
            & np.all(np.abs(t.muon_cos) < 0.75, axis=1))


def test_biased_eemumu_truth_matches_unbiased_where_the_bias_acts():
    """Generator level (no detector, fast): the weighted biased eeμμ sample reproduces the
    unbiased one in the tagged, central region — its yield and its W, q_T and rapidity
    distributions, i.e. every biased variable (z₁, z₂, Q², cos θ*) — and dropping p/q fails."""
    n = 2**18
    unbiased = _eemumu_truth(n, 31, None)
    region, histograms = _eemumu_single_tag_region, EEMUMU_TRUTH_HISTOGRAMS
    good = _truth_comparison(_eemumu_truth(n, 32, B.BackgroundBias()), unbiased, region, histograms)
    broken = _truth_comparison(_eemumu_truth(n, 32, B.BackgroundBias(), drop_weights=True), unbiased, region,
                               histograms)
    assert good.p_value > 1e-3, good
    assert broken.p_value < 1e-6, broken


def _photon_virtualities_and_pair_mass2(virtuality_below_pair_mass):
    """Q² of both photons (n, 2) and W² (n,) of the weighted events of an unbiased eeμμ draw."""
    from diffana.physics import kinematics as kin
    from diffana.physics.processes import generate_eemumu_cm

    sqrt_s = jnp.full(2**15, 10.58)
    truth = generate_eemumu_cm(jax.random.key(5), sqrt_s, None,
                               virtuality_below_pair_mass=virtuality_below_pair_mass)
    beams = jnp.array([[5.29, 0.0, 0.0, 5.29], [5.29, 0.0, 0.0, -5.29]])
    q2 = -np.asarray(kin.invariant_mass_squared(beams - truth["extra_charged"]))
    w2 = np.asarray(kin.invariant_mass_squared(truth["charged"].sum(axis=1)))
    weighted = np.asarray(truth["relative_weight"]) > 0
    return q2[weighted], w2[weighted]


def test_eemumu_photons_stay_below_the_pair_mass():
    """The EPA holds for Q² < W²: every weighted event has both photon virtualities below the
    actual μμ mass², while the proposal alone (cap z₁z₂s, the nominal W²) puts ≈ 3% of them beyond it."""
    q2, w2 = _photon_virtualities_and_pair_mass2(True)
    assert np.all(q2 <= w2[:, None] * (1.0 + 1e-9))
    q2_old, w2_old = _photon_virtualities_and_pair_mass2(False)
    assert np.mean(np.any(q2_old > w2_old[:, None], axis=1)) > 0.01


class _MumuTruth(NamedTuple):
    """Generator-level μμ(γ) quantities of each event's hardest FSR photon (where the FSR bias acts)."""

    weight: np.ndarray
    """relative weight normalised to mean 1 over the generated events."""
    fsr_fraction: np.ndarray
    """y = E_γ/(E_γ + E_μ) of the hardest FSR photon."""
    aim_distance: np.ndarray
    """deg: its angle to where its muon's track enters the ECL (φ turned by −q·κ/p_T, CM)."""
    polar_angle: np.ndarray
    """deg: its CM polar angle (the ECL gap bands)."""
    isr_fraction: np.ndarray
    """x = 2E/√s of the hardest ISR photon."""


def _mumu_truth(n, seed, bias, drop_weights=False):
    from diffana.physics.processes import generate_mumu_cm

    truth = jax.jit(generate_mumu_cm, static_argnums=2)(jax.random.key(seed), jnp.full(n, 10.58), bias)
    weight = np.asarray(truth["relative_weight"])
    weight = np.ones_like(weight) if drop_weights else weight
    photons, muons = np.asarray(truth["photons"]), np.asarray(truth["charged"])
    hardest = np.argmax(photons[:, 2:, 0], axis=1)
    photon = photons[np.arange(n), 2 + hardest]
    muon = muons[np.arange(n), hardest]
    charge = np.where(hardest == 0, 1.0, -1.0)
    pt = np.hypot(muon[:, 1], muon[:, 2])
    phi = np.arctan2(muon[:, 2], muon[:, 1]) - charge * np.arcsin(np.minimum(B.BackgroundBias().fsr_aim_curl / pt, 1.0))
    theta = np.arctan2(pt, muon[:, 3])
    track = np.stack([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)], axis=1)
    cos_aim = np.sum(photon[:, 1:] * track, axis=1) / np.maximum(photon[:, 0], 1e-300)
    return _MumuTruth(
        weight / weight.mean(),
        photon[:, 0] / (photon[:, 0] + muon[:, 0]),
        np.degrees(np.arccos(np.clip(cos_aim, -1.0, 1.0))),
        np.degrees(np.arccos(np.clip(photon[:, 3] / np.maximum(photon[:, 0], 1e-300), -1.0, 1.0))),
        2.0 * photons[:, :2, 0].max(axis=1) / 10.58,
    )


MUMU_TRUTH_HISTOGRAMS = {
    "fsr_fraction": np.array([0.05, 0.08, 0.13, 0.2, 0.35, 0.6, 1.0]),
    "aim_distance": np.array([0.0, 1.0, 2.0, 3.5, 6.0, 15.0, 60.0, 180.0]),
    "polar_angle": np.array([0.0, 38.0, 44.5, 90.0, 105.6, 106.05, 138.5, 143.3, 180.0]),
    "isr_fraction": np.array([0.0, 0.02, 0.1, 0.3, 0.6]),
}
"""Binning (1, deg, deg, 1) of the generator-level μμ(γ) comparison (the aimed cone, the gap bands)."""


def test_biased_mumu_truth_matches_unbiased_where_the_bias_acts():
    """Generator level (fast): with a hard FSR photon (y > 0.05), the weighted biased μμ(γ) sample
    reproduces the unbiased one — its yield and the photon's y, distance to the muon track's ECL
    entry (the aimed piece), polar angle (the gap bands) and the hardest ISR photon's x — and
    dropping p/q fails."""
    n = 2**18
    unbiased = _mumu_truth(n, 41, None)
    region = lambda t: t.fsr_fraction > 0.05
    good = _truth_comparison(_mumu_truth(n, 42, B.BackgroundBias()), unbiased, region, MUMU_TRUTH_HISTOGRAMS)
    broken = _truth_comparison(_mumu_truth(n, 42, B.BackgroundBias(), drop_weights=True), unbiased, region,
                               MUMU_TRUTH_HISTOGRAMS)
    assert good.p_value > 1e-3, good
    assert broken.p_value < 1e-6, broken


def test_biased_tautau_matches_unbiased_after_preselection():
    good, broken = _check_process("tautau", 2**15, 11)
    assert good.p_value > 1e-3, good
    assert broken.p_value < 1e-6, broken


@pytest.mark.slow
@pytest.mark.parametrize("process", ["mumu", "eemumu"])
def test_biased_generation_matches_unbiased_after_preselection(process):
    # 2^19 unbiased events leave ~300 preselected μμ(γ)/eeμμ events: enough to
    # see a broken weight (×10–100 in yield), and the χ² has ~20 terms
    good, broken = _check_process(process, 2**19, 21)
    assert good.p_value > 1e-3, good
    assert broken.p_value < 1e-6, broken


# ------------------------------------------------------------------ config keys and MC statistics


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("[samples]\nprocess_events = { qq = 1000 }\n", "process_events: unknown process(es) ['qq']"),
        ("[samples]\nprocess_events = { mumu = 10 }\n", "process_events.mumu must be >= 100"),
        ("[samples]\nprocess_events = { mumu = \"many\" }\n", "must be a table of integers"),
        ("[samples]\nbias = \"yes\"\n", "[samples] bias must be true or false"),
    ],
)
def test_bad_sample_keys_name_the_problem(tmp_path, text, fragment):
    assert fragment in zprime_config_error(tmp_path, text)


def test_shipped_configs_use_the_biased_generator():
    from diffana.analyses.zprime_invisible import config as cfg
    from diffana.analyses.zprime_invisible.samples import background_event_count

    for name in ("belle2_2019_2020", "belle2_2018_pilot"):
        for quick in (False, True):
            config = cfg.load_config(name, quick=quick)
            assert config.samples.bias
            assert all(background_event_count(config, p) >= 100 for p in ("mumu", "tautau", "eemumu"))


class _Samples(NamedTuple):
    background_train: dict
    background_test: dict
    generated: dict


def test_mc_statistics_kish_and_effective_luminosity(tmp_path):
    from diffana.analyses.zprime_invisible import mc_statistics as mc

    # window at M = 2 GeV (M² = 4), σ = 0.25 GeV², 8 bins: [3, 5) GeV²
    train = {"recoil_mass_squared": np.array([4.1, 4.2, 4.3, 4.4]), "process": np.array([2, 2, 3, 1]),
             "weight": np.array([2.0, 2.0, 8.0, 0.2])}          # halves scaled ×2 (fraction 0.5)
    test = {"recoil_mass_squared": np.array([4.1, 9.0]), "process": np.array([2, 2]), "weight": np.array([2.0, 2.0])}
    stats_ = mc.mc_statistics(_Samples(train, test, {}), [2.0], [0.25], 8, 79.7, 0.5)
    rows = {r["process"]: r for r in stats_["windows"]}
    tau = rows["tautau"]                                     # three events of weight 1 in the window
    assert tau["n_eff"] == pytest.approx(3.0) and tau["l_eff_ratio"] == pytest.approx(1.0)
    assert tau["expected"] == pytest.approx(3.0) and tau["share"] == pytest.approx(3.0 / 7.1)
    assert rows["eemumu"]["l_eff_ratio"] == pytest.approx(0.25)   # one event of weight 4
    assert rows["mumu"]["relevant"] is False                   # 0.1 of 7.1 events
    assert stats_["totals"]["tautau"]["n_mc"] == 4
    path = mc.write_mc_statistics(stats_, tmp_path, console=None)
    assert path.name == "mc_statistics.json" and "tautau" in path.read_text()
    with pytest.raises(ValueError, match="equal-length"):
        mc.window_statistics(mc.full_background(_Samples(train, test, {}), 0.5), [1.0, 2.0], [0.1], 8)
    with pytest.raises(ValueError, match="train_fraction"):
        mc.full_background(_Samples(train, test, {}), 1.5)
