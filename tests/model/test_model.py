"""The binned model against pyhf: layout, expected data and logpdf; bad input."""

import jax.numpy as jnp
import numpy as np
import pyhf
import pytest

import diffana  # noqa: F401  (enables float64)
from diffana.model import InvalidModel, Model

MIXED_SPEC = {
    "channels": [
        {
            "name": "signal_region",
            "samples": [
                {
                    "name": "signal",
                    "data": [3.0, 6.0, 2.0],
                    "modifiers": [
                        {"name": "mu", "type": "normfactor", "data": None},
                        {"name": "lumi", "type": "lumi", "data": None},
                        {"name": "sig_eff", "type": "normsys", "data": {"hi": 1.1, "lo": 0.85}},
                    ],
                },
                {
                    "name": "background",
                    "data": [50.0, 40.0, 30.0],
                    "modifiers": [
                        {"name": "bkg_norm", "type": "normfactor", "data": None},
                        {"name": "bkg_shape", "type": "histosys",
                         "data": {"hi_data": [55.0, 41.0, 27.0], "lo_data": [46.0, 39.0, 32.0]}},
                        {"name": "staterror_signal_region", "type": "staterror", "data": [2.0, 1.5, 1.0]},
                        {"name": "sig_eff", "type": "normsys", "data": {"hi": 1.02, "lo": 0.97}},
                    ],
                },
                {
                    "name": "other",
                    "data": [5.0, 0.0, 4.0],
                    "modifiers": [
                        {"name": "other_unc", "type": "shapesys", "data": [1.0, 0.0, 0.5]},
                        {"name": "staterror_signal_region", "type": "staterror", "data": [0.5, 0.0, 0.4]},
                    ],
                },
            ],
        },
        {
            "name": "control_region",
            "samples": [
                {
                    "name": "background",
                    "data": [200.0, 150.0],
                    "modifiers": [
                        {"name": "bkg_norm", "type": "normfactor", "data": None},
                        {"name": "cr_shape", "type": "shapefactor", "data": None},
                    ],
                }
            ],
        },
    ],
    "parameters": [{"name": "lumi", "auxdata": [1.0], "sigmas": [0.02], "bounds": [[0.8, 1.2]], "inits": [1.0]}],
}


@pytest.mark.parametrize("normsys", ["code1", "code4"])
@pytest.mark.parametrize("histosys", ["code0", "code4p"])
def test_expected_data_and_logpdf_match_pyhf(normsys, histosys):
    reference = pyhf.Model(
        MIXED_SPEC,
        poi_name="mu",
        modifier_settings={"normsys": {"interpcode": normsys}, "histosys": {"interpcode": histosys}},
    )
    model = Model.from_spec(
        MIXED_SPEC, parameters=MIXED_SPEC["parameters"], normsys_interp=normsys, histosys_interp=histosys
    )
    assert model.config.parameters == reference.config.par_order
    assert model.config.channels == reference.config.channels
    assert model.config.samples == reference.config.samples
    np.testing.assert_allclose(model.config.auxdata, reference.config.auxdata, rtol=1e-12)
    np.testing.assert_array_equal(model.config.suggested_fixed(), reference.config.suggested_fixed())
    np.testing.assert_allclose(model.config.suggested_init(), reference.config.suggested_init())
    np.testing.assert_allclose(model.config.suggested_bounds(), np.asarray(reference.config.suggested_bounds()))

    rng = np.random.default_rng(7)
    init = np.asarray(reference.config.suggested_init())
    for _ in range(5):
        # Alphas across all interpolation regions (|alpha| < 1 and beyond).
        pars = init + rng.normal(0.0, 0.1, size=init.shape)
        for name in ("bkg_shape", "sig_eff"):  # through all interpolation regions
            pars[model.config.par_slice(name)] = rng.uniform(-1.8, 1.8)
        nominal = np.asarray(reference.expected_data(init))
        data = nominal * rng.uniform(0.8, 1.2, size=nominal.shape)
        data = np.concatenate([np.round(data[: model.config.nmaindata]), data[model.config.nmaindata :]])
        np.testing.assert_allclose(model.expected_data(pars), reference.expected_data(pars), rtol=1e-12)
        np.testing.assert_allclose(model.logpdf(pars, data), reference.logpdf(pars, data)[0], rtol=1e-12)


def test_zero_uncertainty_bins_are_fixed_like_pyhf():
    model = Model.from_spec(MIXED_SPEC, parameters=MIXED_SPEC["parameters"])
    fixed = dict(zip(model.config.par_names, np.asarray(model.config.suggested_fixed())))
    assert fixed["other_unc[1]"]  # zero nominal and zero uncertainty
    assert not fixed["other_unc[0]"]


def _spec_with(sample_update=None, modifier=None):
    spec = {
        "channels": [
            {
                "name": "sr",
                "samples": [
                    {"name": "signal", "data": [1.0, 2.0], "modifiers": [{"name": "mu", "type": "normfactor", "data": None}]},
                    {"name": "background", "data": [10.0, 12.0], "modifiers": [modifier] if modifier else []},
                ],
            }
        ]
    }
    if sample_update:
        spec["channels"][0]["samples"][1].update(sample_update)
    return spec


@pytest.mark.parametrize(
    "spec, kwargs, message",
    [
        (_spec_with(modifier={"name": "x", "type": "normsyss", "data": None}), {}, "unknown modifier type 'normsyss'"),
        (_spec_with({"data": [10.0, 12.0, 3.0]}), {}, "'background' has 3 bins, but other samples of the channel have 2"),
        (_spec_with({"data": [10.0, -1.0]}), {}, "negative yields in bins [1]"),
        (_spec_with({"data": [10.0, float("nan")]}), {}, "non-finite values (NaN or inf) in bins [1]"),
        (_spec_with(modifier={"name": "u", "type": "shapesys", "data": [1.0]}), {}, "shapesys data has 1 bins, the channel has 2"),
        (_spec_with(modifier={"name": "n", "type": "normsys", "data": {"hi": 1.1, "lo": -0.9}}), {}, "'lo' factor must be positive"),
        (_spec_with(modifier={"name": "lumi", "type": "lumi", "data": None}), {}, "needs a measurement parameter configuration"),
        (_spec_with(), {"poi_name": "xsec"}, "parameter of interest 'xsec' is not a parameter of the model"),
        ({"channels": []}, {}, "non-empty 'channels'"),
    ],
)
def test_invalid_specs_name_what_is_wrong(spec, kwargs, message):
    with pytest.raises(InvalidModel) as error:
        Model.from_spec(spec, **kwargs)
    assert message in str(error.value)


def test_data_of_wrong_length_or_with_nan_is_rejected():
    model = Model.from_spec(_spec_with(modifier={"name": "u", "type": "shapesys", "data": [1.0, 1.0]}))
    with pytest.raises(ValueError, match="the model expects 4 values: 2 main bins"):
        model.check_data(jnp.ones(3))
    with pytest.raises(ValueError, match="NaN or inf at positions \\[1\\]"):
        model.check_data(jnp.array([1.0, jnp.nan, 100.0, 144.0]))
    with pytest.raises(ValueError, match="negative in main bins \\[0\\]"):
        model.check_data(jnp.array([-1.0, 3.0, 100.0, 144.0]))
