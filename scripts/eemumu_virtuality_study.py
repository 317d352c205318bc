"""How much would a virtuality-dependent γ*γ → μ⁺μ⁻ cross section reduce the preselected eeμμ?

The generator uses the equivalent-photon flux with σ(γγ → μμ) of real photons up to
Q² = W². The real cross section falls once a photon's Q² is comparable to W², roughly as
W²/(W² + Q²). This study reweights every generated event by S = Π_i W²/(W² + Q_i²) over
its two photons, renormalises to the same total (18.9 nb), and prints the preselected
yield ratio — the size of the effect, not a model change. It records S next to the
features by wrapping the generator (a study, not library code).

    python scripts/eemumu_virtuality_study.py [--events 5000000] [--seed 102]

The default sample is the one of ``diffana zprime-invisible --quick --seed 1``.
"""

import argparse

import jax.numpy as jnp
import numpy as np

from diffana.physics import features, generator, kinematics, processes


def _generator_recording_suppression():
    """eeμμ generator that also leaves S and max Q²/W² of its last call in ``.extra``."""

    def generate_eemumu(key, sqrt_s, bias=None):
        out = processes.generate_eemumu_cm(key, sqrt_s, bias)
        half = sqrt_s / 2
        beams = jnp.stack([jnp.stack([half, 0 * half, 0 * half, half], -1),
                           jnp.stack([half, 0 * half, 0 * half, -half], -1)], axis=1)
        q2 = -kinematics.invariant_mass_squared(beams - out["extra_charged"])
        w2 = kinematics.invariant_mass_squared(out["charged"].sum(axis=1))
        generate_eemumu.extra = {"suppression": jnp.prod(w2[:, None] / (w2[:, None] + q2), axis=1),
                                 "max_q2_over_w2": jnp.max(q2, axis=1) / w2}
        return out

    return generate_eemumu


def _install(recording):
    """Route eeμμ through ``recording`` and copy its ``.extra`` into the features."""
    generator._GENERATORS["eemumu"] = recording
    simulate_features = generator._simulate_features

    def with_extra(key, process, n_events, mass, detector, beam_energy_spread, signal_sampler, signal_isr, bias):
        out = simulate_features(key, process, n_events, mass, detector, beam_energy_spread, signal_sampler,
                                signal_isr, bias)
        out.update(recording.extra)
        return out

    generator._simulate_features = with_extra


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--seed", type=int, default=102, help="as generate_preselected: batch seeds seed·1000 + b")
    args = parser.parse_args(argv)
    from diffana.analyses.zprime_invisible.samples import GENERATION_BATCH

    _install(_generator_recording_suppression())
    generated, generated_s, kept, kept_s, ratios, weights = 0.0, 0.0, 0.0, 0.0, [], []
    for batch in range(-(-args.events // GENERATION_BATCH)):
        size = min(GENERATION_BATCH, args.events - batch * GENERATION_BATCH)
        sample = generator.generate("eemumu", 79.7, n_events=size, seed=args.seed * 1000 + batch,
                                    chunk_size=min(size, 2**16), bias=True)
        passed = np.asarray(features.preselection(sample, 90.0))
        w, s = sample["weight"], sample["suppression"]
        generated, generated_s = generated + w.sum(), generated_s + (w * s).sum()
        kept, kept_s = kept + (w * passed).sum(), kept_s + (w * s * passed).sum()
        ratios.append(sample["max_q2_over_w2"][passed])
        weights.append(w[passed])
    renormalised = kept_s / kept * generated / generated_s
    print(f"mean S: all generated {generated_s / generated:.4f}, preselected {kept_s / kept:.4f}; "
          f"preselected eeμμ yield ×{renormalised:.3f} after renormalising to the same σ")
    ratio, weight = np.concatenate(ratios), np.concatenate(weights)
    order = np.argsort(ratio)
    cumulative = np.cumsum(weight[order]) / weight.sum()
    quantiles = [float(ratio[order][np.searchsorted(cumulative, p)]) for p in (0.1, 0.5, 0.9)]
    print("preselected max Q²/W², weighted 10/50/90%:", [round(q, 3) for q in quantiles])


if __name__ == "__main__":
    main()
