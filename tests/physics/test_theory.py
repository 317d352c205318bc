"""Tests of the Lμ−Lτ theory: widths, e⁺e⁻ → μ⁺μ⁻Z' matrix element and cross section,
phase space, signal sampler, (g−2)_μ and coupling limits.

The matrix element is checked against three independent references: the analytic
massless FSR formula of e⁺e⁻ → μ⁺μ⁻γ, an explicit-spinor helicity implementation
written here in numpy (chiral representation, physical photon polarisations), and the
soft-emission (eikonal) factorisation with massive muons.
"""

import math

import numpy as np
import pytest
from scipy.integrate import quad

import diffana  # noqa: F401  (float64)
import jax
import jax.numpy as jnp

from diffana.physics import constants as C
from diffana.physics import kinematics as kin
from diffana.physics import phase_space as ps
from diffana.physics import theory as T

MU = C.MUON_MASS
SQRT_S = C.SQRT_S
E2 = 4.0 * math.pi * C.FINE_STRUCTURE_CONSTANT


# --- widths -----------------------------------------------------------------------


def test_widths_match_formulas_and_limits():
    mass = jnp.array([0.1, 0.5, 2.0, 5.0, 100.0])
    g = 3e-4
    neutrino = T.partial_width_neutrinos(mass, g)
    np.testing.assert_allclose(neutrino, g**2 * mass / (24 * math.pi), rtol=1e-14)
    muons = T.partial_width_muons(mass, g)
    assert muons[0] == 0.0  # below 2 m_μ
    r = MU**2 / 0.5**2
    np.testing.assert_allclose(
        muons[1], g**2 * 0.5 / (12 * math.pi) * (1 + 2 * r) * math.sqrt(1 - 4 * r), rtol=1e-14)
    # far above threshold a charged lepton pair is twice one neutrino flavour
    np.testing.assert_allclose(muons[-1] / neutrino[-1], 2.0, rtol=1e-5)
    taus = T.partial_width_taus(mass, g)
    assert np.all(np.asarray(taus[:3]) == 0.0) and taus[3] > 0
    np.testing.assert_allclose(T.total_width(mass, g), muons + taus + 2 * neutrino, rtol=1e-14)
    np.testing.assert_allclose(T.total_width(mass, 2 * g) / T.total_width(mass, g), 4.0)


def test_invisible_branching_fraction_vanilla_and_fully_invisible():
    mass = jnp.array([0.05, 0.2, 1.0, 3.0, 8.0, 10.0])
    b = np.asarray(T.branching_fraction_invisible(mass))
    assert b[0] == 1.0 and b[1] == 1.0
    assert 0.5 < b[2] < 0.52 and 0.49 < b[3] < 0.51  # ≈ 1/2 between 2m_μ and 2m_τ
    assert 0.33 < b[4] < 0.36 and 0.33 < b[5] < 0.35  # → 1/3 far above 2m_τ
    assert np.all(np.diff(b) <= 0)  # 0.05 and 0.2 GeV are both below 2m_μ: B = 1
    np.testing.assert_array_equal(T.branching_fraction_invisible(mass, "fully_invisible"), 1.0)
    with pytest.raises(ValueError, match="unknown Z' model"):
        T.branching_fraction_invisible(mass, "dark")
    with pytest.raises(ValueError, match="Z' mass must be positive"):
        T.partial_width_muons(jnp.array([1.0, -1.0]), 1.0)


# --- phase space --------------------------------------------------------------------


def _exact_phase_space_volume(sqrt_s, masses):
    """Φ₃ by 1D quadrature of dm²₁₂/(2π) Φ₂ Φ₂ (Φ₂ = p*/(4π M))."""
    m1, m2, m3 = masses

    def p_star(big, a, b):
        lam = (big**2 - (a + b) ** 2) * (big**2 - (a - b) ** 2)
        return math.sqrt(max(lam, 0.0)) / (2 * big)

    def integrand(m12s):
        m12 = math.sqrt(m12s)
        return (p_star(sqrt_s, m3, m12) / (4 * math.pi * sqrt_s)
                * p_star(m12, m1, m2) / (4 * math.pi * m12) / (2 * math.pi))

    return quad(integrand, (m1 + m2) ** 2, (sqrt_s - m3) ** 2, epsrel=1e-12, limit=200)[0]


@pytest.mark.parametrize("sampler", ["flat", "importance", "recoil"])
def test_phase_space_volume_momentum_conservation_and_mass_shell(sampler):
    masses = (MU, MU, 1.3)
    n = 1 << 17
    key = jax.random.key(11)
    if sampler == "recoil":
        momenta, weights = ps.sample_three_body_recoil(key, n, SQRT_S, masses)
    else:
        offset = None if sampler == "flat" else MU**2
        momenta, weights = ps.sample_three_body_dalitz(key, n, SQRT_S, masses, offset)
    exact = _exact_phase_space_volume(SQRT_S, masses)
    estimate = float(jnp.mean(weights))
    error = float(jnp.std(weights)) / math.sqrt(n)
    assert abs(estimate - exact) < 4 * error, (estimate, exact, error)
    total = momenta.sum(axis=1)
    np.testing.assert_allclose(total, np.tile([SQRT_S, 0, 0, 0], (n, 1)), atol=1e-9)
    np.testing.assert_allclose(kin.invariant_mass_squared(momenta),
                               np.tile(np.array(masses) ** 2, (n, 1)), atol=1e-9)


def test_boost_and_rotations():
    p = jnp.array([[5.0, 1.0, -2.0, 3.0], [1.0, 0.1, 0.2, 0.3]])
    beta = jnp.array([0.1, -0.2, 0.25])
    boosted = kin.boost(p, beta)
    np.testing.assert_allclose(kin.invariant_mass_squared(boosted),
                               kin.invariant_mass_squared(p), rtol=1e-12)
    np.testing.assert_allclose(kin.boost(boosted, -beta), p, atol=1e-12)
    at_rest = kin.boost(jnp.array([2.0, 0, 0, 0]), beta)
    np.testing.assert_allclose(at_rest[1:] / at_rest[0], beta, rtol=1e-12)
    rotations = ps.random_rotation_matrices(jax.random.key(0), 1000)
    np.testing.assert_allclose(jnp.einsum("nij,nkj->nik", rotations, rotations),
                               np.broadcast_to(np.eye(3), (1000, 3, 3)), atol=1e-12)
    np.testing.assert_allclose(jnp.linalg.det(rotations), 1.0, rtol=1e-12)
    # Haar measure: the rotated z axis is isotropic, ⟨cos θ⟩ = 0, ⟨cos² θ⟩ = 1/3
    z = rotations[:, :, 2]
    assert abs(float(z[:, 2].mean())) < 4 / math.sqrt(3 * 1000)
    assert abs(float((z[:, 2] ** 2).mean()) - 1 / 3) < 4 * 0.3 / math.sqrt(1000)
    assert float(kin.two_body_momentum(1.0, 0.6, 0.6)) == 0.0


# --- matrix element: references --------------------------------------------------------


def _points(mass, n, seed, muon_mass=MU, offset=0.01):
    momenta, _ = ps.sample_three_body_dalitz(
        jax.random.key(seed), n, SQRT_S, (muon_mass, muon_mass, mass), offset)
    return momenta[:, 0], momenta[:, 1], momenta[:, 2]


def _dot(a, b):
    return a[..., 0] * b[..., 0] - np.sum(a[..., 1:] * b[..., 1:], axis=-1)


def _massless_fsr_analytic(p1, p2, q1, q2, k, coupling):
    """(1/4)Σ|M|² of e⁺e⁻ → μ⁺μ⁻γ, FSR only, all fermions massless (Berends–Kleiss):
    e⁴g'² (t² + t'² + u² + u'²) / (s (k·q₁)(k·q₂))."""
    s = _dot(p1 + p2, p1 + p2)
    invariants = [_dot(a - b, a - b) for a in (p1, p2) for b in (q1, q2)]
    return E2**2 * coupling**2 * sum(x**2 for x in invariants) / (s * _dot(k, q1) * _dot(k, q2))


class _HelicityReference:
    """Explicit-spinor amplitudes in the chiral (Weyl) representation, numpy, one point
    at a time — independent of diffana's Dirac-representation code."""

    sigma = [np.eye(2), np.array([[0, 1], [1, 0]]), np.array([[0, -1j], [1j, 0]]),
             np.array([[1, 0], [0, -1]])]

    def __init__(self):
        zero = np.zeros((2, 2))
        sig, sigbar = self.sigma, [self.sigma[0]] + [-s for s in self.sigma[1:]]
        self.gamma = [np.block([[zero, sig[m]], [sigbar[m], zero]]).astype(complex)
                      for m in range(4)]
        self.metric = np.diag([1.0, -1, -1, -1])

    def _root(self, p, mass, bar):
        """√(p·σ) or √(p·σ̄) = (p·σ + m)/√(2(E + m))."""
        sign = 1.0 if bar else -1.0
        ps_ = p[0] * self.sigma[0] + sign * sum(p[i] * self.sigma[i] for i in (1, 2, 3))
        return (ps_ + mass * np.eye(2)) / math.sqrt(2 * (p[0] + mass))

    def u(self, p, mass, s):
        xi = np.eye(2)[s]
        return np.concatenate([self._root(p, mass, False) @ xi, self._root(p, mass, True) @ xi])

    def v(self, p, mass, s):
        eta = np.eye(2)[s]
        return np.concatenate([self._root(p, mass, False) @ eta,
                               -self._root(p, mass, True) @ eta])

    def bar(self, spinor):
        return spinor.conj() @ self.gamma[0]

    def slash(self, p):
        return sum(self.gamma[m] * (self.metric @ p)[m] for m in range(4))

    def amplitudes(self, p1, p2, q1, q2, k, polarisations, coupling, muon_mass, electron_mass):
        """All spin amplitudes for the given Z'/photon polarisation vectors (upper index)."""
        s = _dot(p1 + p2, p1 + p2)
        one = np.eye(4)
        s_minus = (self.slash(q1 + k) + muon_mass * one) / (_dot(q1 + k, q1 + k) - muon_mass**2)
        s_plus = (-self.slash(q2 + k) + muon_mass * one) / (_dot(q2 + k, q2 + k) - muon_mass**2)
        result = []
        for se1 in range(2):
            for se2 in range(2):
                current = np.array([self.bar(self.v(p2, electron_mass, se2)) @ self.gamma[m]
                                    @ self.u(p1, electron_mass, se1) for m in range(4)])
                photon = self.slash(current)  # γ^μ J_μ
                for eps in polarisations:
                    zslash = self.slash(np.conj(eps))
                    vertex = zslash @ s_minus @ photon + photon @ s_plus @ zslash
                    for s1 in range(2):
                        for s2 in range(2):
                            amp = (self.bar(self.u(q1, muon_mass, s1)) @ vertex
                                   @ self.v(q2, muon_mass, s2))
                            result.append(E2 * coupling / s * amp)  # e² (γ*) × g' (Z')
        return np.array(result)

    def photon_squared(self, p1, p2, q1, q2, k, coupling, muon_mass=MU, electron_mass=C.ELECTRON_MASS):
        """(1/4)Σ|M|² for a massless photon: two physical transverse polarisations."""
        direction = k[1:] / np.linalg.norm(k[1:])
        helper = np.array([1.0, 0, 0]) if abs(direction[0]) < 0.9 else np.array([0, 1.0, 0])
        e1 = np.cross(direction, helper)
        e1 /= np.linalg.norm(e1)
        e2 = np.cross(direction, e1)
        pols = [np.concatenate([[0.0], e]) for e in (e1, e2)]
        amps = self.amplitudes(p1, p2, q1, q2, k, pols, coupling, muon_mass, electron_mass)
        return 0.25 * np.sum(np.abs(amps) ** 2)


@pytest.fixture(scope="module")
def beams():
    return T.beam_four_momenta_cm(SQRT_S)


def test_spinor_and_trace_methods_agree(beams):
    q1, q2, k = _points(0.7, 16, seed=3)
    spinor = T.squared_matrix_element(*beams, q1, q2, k, 0.7, 1.0)
    trace = T.squared_matrix_element(*beams, q1, q2, k, 0.7, 1.0, method="trace")
    np.testing.assert_allclose(spinor, trace, rtol=1e-10)
    assert np.all(np.asarray(spinor) > 0)


def test_massless_limit_matches_analytic_fsr_formula(beams):
    """With m_μ → 0, m_e = 0 and a photon (M = 0) |M|² is the Berends–Kleiss FSR formula."""
    tiny = 1e-7
    q1, q2, k = _points(0.0, 16, seed=5, muon_mass=tiny, offset=None)
    p1, p2 = T.beam_four_momenta_cm(SQRT_S)
    p1 = p1.at[3].set(p1[0])  # exactly massless beams
    p2 = p2.at[3].set(-p2[0])
    ours = T.squared_matrix_element(p1, p2, q1, q2, k, 0.0, 0.3, include_longitudinal=False,
                                    muon_mass=tiny, electron_mass=0.0)
    reference = _massless_fsr_analytic(*(np.asarray(x) for x in (p1, p2, q1, q2, k)), 0.3)
    np.testing.assert_allclose(ours, reference, rtol=1e-6)


def test_fsr_limit_with_massive_muons_against_helicity_reference(beams):
    """|M|²(Z' of mass M) → photon FSR |M|² (g' = e_FSR) pointwise as M → 0.

    Points with k² = M² and k² = 0 come from the same random numbers, so they converge
    as M → 0; the reference sums two physical photon polarisations over explicit
    chiral-representation spinors."""
    reference = _HelicityReference()
    p1, p2 = (np.asarray(x) for x in beams)
    # flat Dalitz points (offset None): they move by O(M·m_μ) in m², not on a log scale
    photon_points = [np.asarray(x) for x in _points(0.0, 6, seed=8, offset=None)]
    photon = np.array([reference.photon_squared(p1, p2, *(x[i] for x in photon_points), 0.5)
                       for i in range(6)])
    deviations = []
    for mass in (1e-2, 1e-3, 1e-4):
        q1, q2, k = _points(mass, 6, seed=8, offset=None)
        massive = np.asarray(T.squared_matrix_element(*beams, q1, q2, k, mass, 0.5))
        deviations.append(np.max(np.abs(massive / photon - 1)))
    assert deviations[-1] < 1e-4, deviations
    assert deviations[0] > deviations[1] > deviations[2], deviations


def test_ward_identity_longitudinal_term_vanishes(beams):
    """k_ν M^ν ≈ 0 (amplitude level, reference code) and the kk/M² term of the
    polarisation sum leaves |M|² unchanged (diffana code)."""
    reference = _HelicityReference()
    p1, p2 = (np.asarray(x) for x in beams)
    q1, q2, k = (np.asarray(x) for x in _points(1.0, 3, seed=9))
    for i in range(3):
        a = np.array([0.0, 1.0, 0.3, -0.2])  # an arbitrary (unphysical) vector, for scale
        scale = np.max(np.abs(reference.amplitudes(p1, p2, q1[i], q2[i], k[i], [a], 1.0, MU,
                                                   C.ELECTRON_MASS)))
        scale *= np.abs(k[i][0])  # same units as the k-contracted amplitude
        ward = np.max(np.abs(reference.amplitudes(p1, p2, q1[i], q2[i], k[i], [k[i]], 1.0, MU,
                                                  C.ELECTRON_MASS)))
        assert ward < 1e-10 * scale, (ward, scale)
    with_kk = T.squared_matrix_element(*beams, q1, q2, k, 1.0, 1.0)
    without = T.squared_matrix_element(*beams, q1, q2, k, 1.0, 1.0, include_longitudinal=False)
    np.testing.assert_allclose(with_kk, without, rtol=1e-10)


def test_soft_emission_factorises_with_massive_muons(beams):
    """Soft Z': |M|² → |M_Born|² · g'² · [2q₁·q₂/((q₁k)(q₂k)) − m²/(q₁k)² − m²/(q₂k)²]."""
    p1, p2 = beams
    omega, mass = 1e-5, 1e-9
    energy = SQRT_S / 2
    p_mu = math.sqrt(energy**2 - MU**2)
    direction = np.array([0.3, -0.5, 0.81])
    direction /= np.linalg.norm(direction)
    born_q1 = jnp.concatenate([jnp.array([energy]), p_mu * direction])
    born_q2 = jnp.concatenate([jnp.array([energy]), -p_mu * direction])
    k_dir = np.array([-0.6, 0.2, 0.4])
    k_dir /= np.linalg.norm(k_dir)
    k = jnp.concatenate([jnp.array([math.sqrt(omega**2 + mass**2)]), omega * k_dir])
    # muon pair recoils against k: build it in its rest frame and boost
    pair = jnp.array([SQRT_S, 0, 0, 0]) - k
    pair_mass = math.sqrt(float(kin.invariant_mass_squared(pair)))
    e_rest = pair_mass / 2
    p_rest = math.sqrt(e_rest**2 - MU**2)
    beta = pair[1:] / pair[0]
    q1 = kin.boost(jnp.concatenate([jnp.array([e_rest]), p_rest * direction]), beta)
    q2 = kin.boost(jnp.concatenate([jnp.array([e_rest]), -p_rest * direction]), beta)
    full = T.squared_matrix_element(p1, p2, q1, q2, k, mass, 0.2, include_longitudinal=False)

    n1, n2 = np.asarray(p1), np.asarray(p2)
    b1, b2 = np.asarray(born_q1), np.asarray(born_q2)
    born = 8 * E2**2 / _dot(n1 + n2, n1 + n2) ** 2 * (
        _dot(n1, b2) * _dot(n2, b1) + _dot(n1, b1) * _dot(n2, b2) + MU**2 * _dot(n1, n2))
    kk = np.asarray(k)
    eikonal = 0.2**2 * (2 * _dot(b1, b2) / (_dot(b1, kk) * _dot(b2, kk))
                        - MU**2 / _dot(b1, kk) ** 2 - MU**2 / _dot(b2, kk) ** 2)
    np.testing.assert_allclose(float(full), born * eikonal, rtol=1e-4)


def test_matrix_element_is_lorentz_invariant_and_scales_as_coupling_squared(beams):
    q1, q2, k = _points(2.0, 8, seed=12)
    base = T.squared_matrix_element(*beams, q1, q2, k, 2.0, 1.0)
    beta = jnp.array([0.04, 0.0, 0.27])  # roughly the SuperKEKB boost
    boosted = [kin.boost(p, beta) for p in (*beams, q1, q2, k)]
    np.testing.assert_allclose(T.squared_matrix_element(*boosted, 2.0, 1.0), base, rtol=1e-9)
    np.testing.assert_allclose(T.squared_matrix_element(*beams, q1, q2, k, 2.0, 3e-3),
                               base * 9e-6, rtol=1e-12)
    with pytest.raises(ValueError, match="p_zprime must have a last axis of length 4"):
        T.squared_matrix_element(*beams, q1, q2, k[:, :3], 2.0)


# --- cross section ----------------------------------------------------------------------

N_FAST = 1 << 15


@pytest.fixture(scope="module")
def cross_section_mc():
    """Jitted MC σ with static settings, shared by the tests (compiled once per setting)."""
    cache = {}

    def compute(key, mass, sampler="dalitz", offset=T.DEFAULT_PROPAGATOR_OFFSET, n=N_FAST):
        signature = (sampler, offset, n)
        if signature not in cache:
            cache[signature] = jax.jit(lambda k, m: T.zprime_cross_section_mc(
                k, m, n_events=n, sampler=sampler, propagator_offset=offset))
        sigma, error = cache[signature](key, jnp.float64(mass))
        return float(sigma), float(error)

    return compute


def _pull(a, b):
    return abs(a[0] - b[0]) / math.hypot(a[1], b[1])


def test_cross_section_independent_of_importance_sampling_settings(cross_section_mc):
    """(b): two different 1/(y + a) offsets, independent random numbers, low mass."""
    a = cross_section_mc(jax.random.key(1), 0.05)
    b = cross_section_mc(jax.random.key(2), 0.05, offset=0.5)
    assert _pull(a, b) < 4, (a, b)
    assert a[1] / a[0] < 0.01 and b[1] / b[0] < 0.02


def test_cross_section_dalitz_and_recoil_samplers_agree(cross_section_mc):
    """(b): importance-sampled Dalitz route vs flat sequential two-body decays."""
    a = cross_section_mc(jax.random.key(3), 2.5)
    b = cross_section_mc(jax.random.key(4), 2.5, sampler="recoil")
    assert _pull(a, b) < 4, (a, b)


def test_cross_section_scales_as_coupling_squared():
    key = jax.random.key(5)
    one = T.zprime_cross_section_mc(key, 0.4, n_events=4096)
    small = T.zprime_cross_section_mc(key, 0.4, n_events=4096, coupling=1e-3)
    np.testing.assert_allclose(small[0], one[0] * 1e-6, rtol=1e-12)
    np.testing.assert_allclose(small[1], one[1] * 1e-6, rtol=1e-12)
    with pytest.raises(ValueError, match="above the kinematic limit"):
        T.zprime_cross_section_mc(key, 10.5, n_events=16)
    with pytest.raises(ValueError, match="unknown phase-space sampler"):
        T.zprime_cross_section_mc(key, 1.0, n_events=16, sampler="rambo")


def test_table_matches_fresh_monte_carlo(cross_section_mc):
    table = T.zprime_cross_section_table()
    index = int(np.argmin(np.abs(table["mass"] - 0.5)))
    mass = float(table["mass"][index])
    fresh = cross_section_mc(jax.random.key(77), mass)
    assert _pull(fresh, (table["sigma_fb"][index], table["sigma_error_fb"][index])) < 4


def test_table_interpolation():
    table = T.zprime_cross_section_table()
    assert table["mass"][0] <= 0.01 and table["mass"][-1] >= 10.0
    assert len(table["mass"]) >= 60
    np.testing.assert_allclose(T.zprime_cross_section(table["mass"]), table["sigma_fb"],
                               rtol=1e-12)
    assert np.all(np.diff(table["sigma_fb"]) < 0)  # σ falls with M
    assert np.all(table["sigma_error_fb"] / table["sigma_fb"] < 0.01)
    # log-log interpolation of σ/(1 − M/M_max)⁴: at the midpoint in log M the reduced σ is
    # the geometric mean of its neighbours
    endpoint = SQRT_S - 2 * MU
    for i in (3, 70):
        m0, m1 = table["mass"][i], table["mass"][i + 1]
        r0, r1 = (table["sigma_fb"][j] / (1 - table["mass"][j] / endpoint) ** 4
                  for j in (i, i + 1))
        middle = math.sqrt(m0 * m1)
        np.testing.assert_allclose(T.zprime_cross_section(middle),
                                   math.sqrt(r0 * r1) * (1 - middle / endpoint) ** 4, rtol=1e-12)
    # differentiable and vmap/jit-safe
    slope = jax.grad(lambda m: jnp.log(T.zprime_cross_section(m)))(2.0)
    assert float(slope) < 0
    jitted = jax.jit(T.zprime_cross_section)
    np.testing.assert_allclose(jitted(jnp.array([0.1, 1.0])),
                               T.zprime_cross_section(jnp.array([0.1, 1.0])))
    with pytest.raises(ValueError, match="outside the cross-section table range"):
        T.zprime_cross_section(jnp.array([0.005, 1.0]))
    with pytest.raises(Exception, match="outside the cross-section table range"):
        jitted(jnp.array([20.0])).block_until_ready()


def test_coupling_upper_limit_inverts_cross_section():
    mass = jnp.array([0.05, 1.0, 4.0])
    sigma_ul = jnp.array([20.0, 5.0, 8.0])
    branching = T.branching_fraction_invisible(mass)
    g = T.coupling_upper_limit(sigma_ul, mass, branching)
    np.testing.assert_allclose(g**2 * T.zprime_cross_section(mass) * branching, sigma_ul,
                               rtol=1e-12)
    np.testing.assert_allclose(T.coupling_upper_limit(sigma_ul, mass) / jnp.sqrt(branching),
                               g, rtol=1e-12)
    with pytest.raises(ValueError, match="sigma_upper_limit_fb must be positive"):
        T.coupling_upper_limit(-1.0, 1.0)


# --- signal sampler -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def signal_sampler():
    return jax.jit(T.sample_signal_cm, static_argnames=("n", "unweighted", "pilot_events"))


def test_signal_sampler_unweighted_matches_weighted(signal_sampler):
    mass = 1.2
    n = 2000
    events = signal_sampler(jax.random.key(0), n, mass, pilot_events=1 << 13)
    again = signal_sampler(jax.random.key(0), n, mass, pilot_events=1 << 13)
    np.testing.assert_array_equal(events["mu_plus"], again["mu_plus"])  # reproducible
    for name in ("mu_plus", "mu_minus", "zprime"):
        assert events[name].shape == (n, 4)
    total = events["mu_plus"] + events["mu_minus"] + events["zprime"]
    np.testing.assert_allclose(total, np.tile([SQRT_S, 0, 0, 0], (n, 1)), atol=1e-9)
    np.testing.assert_allclose(kin.invariant_mass_squared(events["zprime"]), mass**2, atol=1e-9)
    assert np.all(np.asarray(events["weight"]) > 0)

    weighted = signal_sampler(jax.random.key(1), 1 << 14, mass, unweighted=False)
    w = np.asarray(weighted["weight"])
    for observable in (lambda e: e["zprime"][:, 0], lambda e: e["mu_minus"][:, 3] ** 2
                       / (e["mu_minus"][:, 0] ** 2 - MU**2)):
        x_unw = np.asarray(observable(events))
        x_w = np.asarray(observable(weighted))
        mean_w = np.sum(w * x_w) / np.sum(w)
        err_w = math.sqrt(np.sum(w**2 * (x_w - mean_w) ** 2)) / np.sum(w)
        err_unw = x_unw.std() / math.sqrt(len(x_unw))
        assert abs(x_unw.mean() - mean_w) < 4 * math.hypot(err_w, err_unw)
    # the unweighted events' weight is the pilot σ/n-style mean weight
    np.testing.assert_allclose(events["weight"][0], w.mean(), rtol=0.1)


# --- (g−2)_μ ----------------------------------------------------------------------------


def test_g_minus_2_contribution_limits():
    g = 1e-3
    light = T.muon_g_minus_2_contribution(jnp.array([1e-5]), g)
    np.testing.assert_allclose(light, g**2 / (8 * math.pi**2), rtol=1e-3)  # Schwinger α'/2π
    heavy = T.muon_g_minus_2_contribution(jnp.array([50.0]), g)
    np.testing.assert_allclose(heavy, g**2 * MU**2 / (12 * math.pi**2 * 50.0**2), rtol=1e-3)
    # quadrature converged: against scipy at an intermediate mass
    m = 0.3
    exact = quad(lambda z: 2 * MU**2 * z**2 * (1 - z) / (MU**2 * z**2 + m**2 * (1 - z)), 0, 1,
                 epsrel=1e-13)[0] * g**2 / (8 * math.pi**2)
    np.testing.assert_allclose(T.muon_g_minus_2_contribution(m, g), exact, rtol=1e-10)


def test_g_minus_2_band():
    mass = jnp.array([0.01, 0.1, 1.0])
    low, high = T.g_minus_2_band(mass, n_sigma=2)
    assert np.all(np.asarray(low) < np.asarray(high))
    np.testing.assert_allclose(T.muon_g_minus_2_contribution(mass, low), (251 - 118) * 1e-11,
                               rtol=1e-12)
    np.testing.assert_allclose(T.muon_g_minus_2_contribution(mass, high), (251 + 118) * 1e-11,
                               rtol=1e-12)
    # M ≪ m_μ: Δa_μ = g'²/(8π²), the famous g' ≈ (3–5)×10⁻⁴ band
    light_low, light_high = T.g_minus_2_band(1e-5)
    np.testing.assert_allclose(light_low, math.sqrt(8 * math.pi**2 * 133e-11), rtol=1e-3)
    np.testing.assert_allclose(light_high, math.sqrt(8 * math.pi**2 * 369e-11), rtol=1e-3)
    low5, _ = T.g_minus_2_band(mass, n_sigma=5)
    np.testing.assert_array_equal(low5, 0.0)


@pytest.mark.slow
@pytest.mark.parametrize("mass", [0.2, 3.0, 8.0])
def test_long_monte_carlo_dalitz_recoil_and_table_agree(cross_section_mc, mass):
    """2²⁰ events per sampler: importance-sampled Dalitz vs flat recoil vs shipped table."""
    dalitz = cross_section_mc(jax.random.key(101), mass, n=1 << 20)
    recoil = cross_section_mc(jax.random.key(102), mass, sampler="recoil", n=1 << 20)
    assert _pull(dalitz, recoil) < 4, (dalitz, recoil)
    table = T.zprime_cross_section_table()
    tabulated = float(T.zprime_cross_section(mass))
    # interpolation error (≈ 0.1 % up to 8 GeV) on top of the statistical uncertainty
    assert abs(dalitz[0] - tabulated) < 4 * dalitz[1] + 0.003 * tabulated, (dalitz, tabulated)
    assert len(table["mass"]) == 80
