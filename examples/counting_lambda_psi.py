"""90% CL upper limits on B(B⁰ → Λψ_DS) from a Poisson on/off counting likelihood
with log-normal constraints, in the style of Belle's search (PRD 105, L051101).

ILLUSTRATIVE INPUTS. The per-mass signal efficiency, simulated background count and
observed count are in the paper's Table II, which is not in the texts this project
holds; the values below are invented to be of a plausible size. What is real (from
the paper's text): the number of BB̄ pairs (772 × 10⁶), B(Υ(4S) → B⁰B̄⁰) = 0.486,
B(Λ → pπ⁻) = 0.639, τ = 6 (background simulation / data luminosity), the 1.8%
uncertainty on N(B⁰B̄⁰), the 0.8% on B(Λ → pπ⁻), and the Table I ranges of the
efficiency and background uncertainties, of which the midpoints are added in
quadrature below. So the limits printed are what THIS likelihood gives for THESE
inputs; they are not a reproduction of the published 2.1–3.8 × 10⁻⁵.

Run: python examples/counting_lambda_psi.py   (about 15 s on two CPU cores, mostly
compiling the fits).
"""

from __future__ import annotations

import math

import diffana  # noqa: F401  (turns on float64 before any array is made)
from diffana import infer
from diffana.model import CountingModel

# --- real numbers from the paper's text --------------------------------------------
N_BB_PAIRS = 772e6  # BB̄ pairs in the Belle Υ(4S) data set
B0_SHARE = 0.486  # B(Υ(4S) → B⁰B̄⁰)
B_LAMBDA = 0.639  # B(Λ → pπ⁻)
TAU = 6.0  # luminosity of the background simulation / that of the data
N_B0B0_UNCERTAINTY = 0.018  # 1.4% on N_BB and 1.2% on B(Υ(4S) → B⁰B̄⁰), combined
B_LAMBDA_UNCERTAINTY = 0.008

# Table I midpoints (relative, %): B_tag correction, proton PID, tracking, charged
# track veto, Λ selection, signal MC statistics — on the efficiency; the same plus
# rare-B correction and branching fractions (50%) — on the simulated background.
EFFICIENCY_SOURCES = [8.6, 1.65, 1.3, 5.9, 3.05, 1.6]
BACKGROUND_SOURCES = [8.6, 5.0, 1.5, 5.9, 4.55, 12.0, 50.0]

# --- illustrative numbers for one ψ_DS mass (not the paper's) -----------------------
EFFICIENCY = 5.0e-4  # signal efficiency, hadronic B_tag included
N_BKG_MC = 18.0  # simulated background events in the signal region (τ × data luminosity)
N_SR = 3.0  # events observed in the signal region

POI_UNIT = 1e-5  # the POI is B(B⁰ → Λψ_DS) in units of 1e-5 (fits like POIs of order 1)
PUBLISHED_RANGE = (2.1e-5, 3.8e-5)  # observed limits over the eight ψ_DS masses


def in_quadrature(percentages) -> float:
    """Relative uncertainty (a fraction) from independent sources in percent."""
    return math.sqrt(sum(p * p for p in percentages)) / 100.0


def signal_events_per_poi_unit() -> float:
    """Expected signal events for B(B⁰ → Λψ_DS) = 1e-5: s = 2·N(B⁰B̄⁰)·ε·B·B(Λ → pπ⁻)
    (two B⁰ per pair, either may decay to the signal)."""
    n_b0b0 = N_BB_PAIRS * B0_SHARE
    return 2.0 * n_b0b0 * EFFICIENCY * POI_UNIT * B_LAMBDA


def build_model() -> CountingModel:
    return CountingModel.on_off(
        signal_per_poi=signal_events_per_poi_unit(),
        background_mc_count=N_BKG_MC,
        mc_to_data_ratio=TAU,
        signal_uncertainties={
            "efficiency": in_quadrature(EFFICIENCY_SOURCES),
            "n_b0b0": N_B0B0_UNCERTAINTY,
            "b_lambda": B_LAMBDA_UNCERTAINTY,
        },
        background_uncertainty=in_quadrature(BACKGROUND_SOURCES),
        poi_name="branching_fraction",
        poi_bounds=(0.0, 20.0),  # B ≤ 2e-4
    )


def main() -> None:
    model = build_model()
    data = model.observed_data(n_sr=N_SR, n_off=N_BKG_MC)
    print(f"signal events per B = 1e-5: {signal_events_per_poi_unit():.3f}; background expected in the "
          f"signal region: {N_BKG_MC / TAU:.2f} (from {N_BKG_MC:g} simulated / tau = {TAU:g})")
    print(f"efficiency uncertainty {in_quadrature(EFFICIENCY_SOURCES):.1%}, "
          f"background uncertainty {in_quadrature(BACKGROUND_SOURCES):.1%}; observed n_sr = {N_SR:g}")
    limits = infer.upper_limit(data, model, cl=0.90)
    for line in limits.warnings():
        print("warning:", line)
    observed = float(limits.observed) * POI_UNIT
    expected = [float(v) * POI_UNIT for v in limits.expected]
    print(f"90% CL upper limit on B(B0 -> Lambda psi_DS): observed {observed:.3g}")
    print("  expected: median {:.3g}, 1 sigma [{:.3g}, {:.3g}], 2 sigma [{:.3g}, {:.3g}]".format(
        expected[2], expected[1], expected[3], expected[0], expected[4]))
    low, high = PUBLISHED_RANGE
    inside = low <= observed <= high
    print(f"published observed limits over m(psi_DS): {low:.2g}-{high:.2g}. This limit is "
          f"{'inside' if inside else 'outside'} that range, but its inputs are illustrative "
          "(Table II is not in our sources), so the comparison checks only the order of magnitude.")


if __name__ == "__main__":
    main()
