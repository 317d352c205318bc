"""Random but sensible HistFactory models for tests (shared by the live-pyhf comparison
in validation/test_pyhf_random.py and the curvature tests in model/test_curvature.py).

Each model mixes normfactor / normsys / histosys / shapesys / staterror / lumi /
shapefactor modifiers over 1–3 channels and 1–30 bins in total, with a POI ``mu``
(a normfactor on a Gaussian signal peak over a falling background).
"""

from __future__ import annotations

import numpy as np

SEED = 20261121
"""numpy seed of the model generator; model ``i`` uses ``default_rng([SEED, i])``."""


def random_spec(index: int, seed: int = SEED):
    """A random but sensible pyhf model: ``(spec, observations, parameters)``.

    Yields are event counts: backgrounds fall exponentially across the bins (5–300
    events per bin), the signal (POI ``mu``) is a Gaussian peak sized so that the
    expected 95% CL limit on ``mu`` is of order one; uncertainties are modest
    (2–20%); the observations are a Poisson draw around the expectation for a
    true ``mu`` of 0 or 0.5.
    """
    rng = np.random.default_rng([seed, index])
    n_channels = int(rng.integers(1, 4))
    total_bins = int(rng.integers(n_channels, 31))
    # Split total_bins over channels, each channel at least one bin.
    cuts = np.sort(rng.choice(np.arange(1, total_bins), size=n_channels - 1, replace=False)) if n_channels > 1 else []
    bins = np.diff(np.concatenate([[0], cuts, [total_bins]])).astype(int).tolist()
    shared_shapefactor = n_channels >= 2 and rng.random() < 0.35
    if shared_shapefactor:
        # A control region with the signal region's binning constrains a shared
        # per-bin free background shape (the usual use of shapefactor).
        bins[1] = bins[0]
    use_lumi = rng.random() < 0.4
    channels, observations = [], {}
    true_mu = float(rng.choice([0.0, 0.5]))
    for c, n_bins in enumerate(bins):
        name = f"channel_{c}"
        x = (np.arange(n_bins) + 0.5) / n_bins
        samples, expected = [], np.zeros(n_bins)
        n_backgrounds = int(rng.integers(1, 4))
        for b in range(n_backgrounds):
            level = rng.uniform(20.0, 300.0) * (5.0 if (c == 1 and shared_shapefactor) else 1.0)
            shape = np.exp(-rng.uniform(0.0, 3.0) * x)
            nominal = np.maximum(level * shape, 5.0)
            modifiers = []
            kinds = rng.choice(
                ["normsys", "histosys", "shapesys", "staterror", "normfactor"],
                size=int(rng.integers(1, 4)),
                replace=False,
            )
            for kind in kinds:
                if kind == "normsys":
                    up = rng.uniform(0.02, 0.2)
                    down = up * rng.uniform(0.5, 1.5)
                    modifiers.append({"name": f"norm_{rng.integers(0, 4)}", "type": "normsys",
                                      "data": {"hi": 1.0 + up, "lo": 1.0 - down}})
                elif kind == "histosys":
                    tilt = rng.uniform(0.02, 0.15) * (2.0 * x - 1.0)
                    scale = rng.uniform(0.0, 0.05)
                    modifiers.append({"name": f"shape_{rng.integers(0, 3)}", "type": "histosys",
                                      "data": {"hi_data": (nominal * (1 + scale + tilt)).tolist(),
                                               "lo_data": (nominal * (1 - scale - tilt)).tolist()}})
                elif kind == "shapesys":
                    modifiers.append({"name": f"uncorrelated_{c}_{b}", "type": "shapesys",
                                      "data": (nominal * rng.uniform(0.03, 0.2, n_bins)).tolist()})
                elif kind == "staterror":
                    modifiers.append({"name": f"staterror_{name}", "type": "staterror",
                                      "data": (nominal * rng.uniform(0.02, 0.1, n_bins)).tolist()})
                elif kind == "normfactor" and total_bins >= 4 and n_bins >= 2:
                    # A free background normalisation, identifiable from the shape.
                    modifiers.append({"name": f"background_norm_{b}", "type": "normfactor", "data": None})
            if use_lumi:
                modifiers.append({"name": "lumi", "type": "lumi", "data": None})
            samples.append({"name": f"background_{b}", "data": nominal.tolist(), "modifiers": modifiers})
            expected += nominal
        if shared_shapefactor and c in (0, 1):
            nominal = np.maximum(rng.uniform(10.0, 50.0) * (5.0 if c == 1 else 1.0) * np.ones(n_bins), 5.0)
            samples.append({"name": "background_shapefactor", "data": nominal.tolist(),
                            "modifiers": [{"name": "shared_shape", "type": "shapefactor", "data": None}]})
            expected += nominal
        if c == 0 or rng.random() < 0.3:
            peak = rng.uniform(0.1, 0.9)
            width = rng.uniform(0.05, 0.3)
            profile = np.exp(-0.5 * ((x - peak) / width) ** 2) + 1e-3
            # Signal total ~ 3 sqrt(background): expected limits on mu of order 0.3–2.
            total = rng.uniform(2.0, 5.0) * np.sqrt(expected.sum())
            signal = total * profile / profile.sum()
            signal_modifiers = [{"name": "mu", "type": "normfactor", "data": None}]
            if rng.random() < 0.5:
                signal_modifiers.append({"name": "signal_efficiency", "type": "normsys",
                                         "data": {"hi": 1.05, "lo": 0.95}})
            if use_lumi:
                signal_modifiers.append({"name": "lumi", "type": "lumi", "data": None})
            samples.insert(0, {"name": "signal", "data": signal.tolist(), "modifiers": signal_modifiers})
            expected = expected + true_mu * signal
        channels.append({"name": name, "samples": samples})
        observations[name] = rng.poisson(expected).astype(float).tolist()
    parameters = []
    if use_lumi:
        parameters.append({"name": "lumi", "auxdata": [1.0], "sigmas": [0.02],
                           "bounds": [[0.8, 1.2]], "inits": [1.0]})
    return {"channels": channels}, observations, parameters


def random_workspace(index: int):
    """Random model ``index`` as a pyhf workspace document, and diffana's model and
    observed data (main bins then auxiliary data) built from it."""
    from diffana.model.workspace import load_workspace, to_workspace

    spec, observations, parameters = random_spec(index)
    document = to_workspace(spec, observations, parameters=parameters)
    workspace = load_workspace(document)
    model = workspace.model()
    return document, model, workspace.data(model)
