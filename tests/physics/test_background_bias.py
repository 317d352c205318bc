"""Biased (importance-sampled) background generation: exact weights.

The sampling densities of :mod:`diffana.physics.bias` are checked on their own
(E_q[p/q · f] = E_p[f], checked on quantiles of each biased variable), then biased and
unbiased generator samples are compared after the Z'→invisible preselection
with a χ² on the total yield and on the M²_rec, recoil θ and recoil p_T
histograms — which must fail when the weight p/q is dropped.
"""

from __future__ import annotations

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


@pytest.mark.parametrize("name", ["power", "collinear", "log_uniform", "inverse_square"])
def test_biased_densities_reweight_to_the_unbiased(name):
    """Weighted biased draws reproduce the unbiased quantiles (within 4σ) and E[w] = 1."""
    key = jax.random.key(3)
    samplers = {
        "power": lambda k, use: B.power_fraction(k, 0.044, use),
        "collinear": lambda k, use: B.collinear_cos(k, 0.99, use, (1.0, 40.0)),
        "log_uniform": lambda k, use: B.log_uniform(k, 1e-6, 5.0, use, 0.02),
        "inverse_square": lambda k, use: B.inverse_square(k, 0.002, 1.0, use, 0.03),
    }
    sampler = samplers[name]
    value, weight = _mixture_draw(sampler, key)
    plain, _ = sampler(jax.random.fold_in(key, 9), jnp.zeros(N_TOY, dtype=bool))
    plain = np.asarray(plain)
    assert abs(weight.mean() - 1.0) < 5 * weight.std() / np.sqrt(N_TOY)
    for q in (0.5, 0.9, 0.99):
        cut = np.quantile(plain, q)
        above_w = weight * (value > cut)
        estimate, error = above_w.mean(), above_w.std() / np.sqrt(N_TOY)
        plain_error = np.sqrt(q * (1 - q) / N_TOY)
        assert abs(estimate - (1 - q)) < 4 * np.hypot(error, plain_error), (name, q, estimate)


def test_mixture_weight_is_bounded():
    log_ratios = jnp.array([[-jnp.inf, -jnp.inf], [0.0, 0.0], [5.0, 1.0]])
    w = np.asarray(B.mixture_weight(log_ratios, 0.9, jnp.array([0.5, 0.5])))
    assert w[0] == pytest.approx(10.0) and w[1] == pytest.approx(1.0) and w[2] < 1.0


def test_bad_bias_settings_raise():
    with pytest.raises(ValueError, match="mumu_fraction"):
        B.BackgroundBias(mumu_fraction=1.0).validate()
    with pytest.raises(ValueError, match="isr_angle_range"):
        B.BackgroundBias(isr_angle_range=(10.0, 5.0)).validate()
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
}
"""Binning (GeV², deg, GeV) of the compared distributions, wide enough to be populated."""


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
