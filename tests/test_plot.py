"""Tests of diffana.plot: the drawn artists carry the numbers given, bad shapes raise."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest

from diffana import plot
from diffana.train import History


def test_brazil_band_draws_median_observed_and_bands(tmp_path):
    masses = np.array([1.0, 2.0, 3.0])
    expected = np.array([[1, 2, 3, 4, 5], [2, 3, 4, 5, 6], [1, 1.5, 2, 3, 4]], float)
    observed = np.array([3.5, 4.2, 1.8])
    fig, ax = plt.subplots()
    plot.brazil_band(masses, expected, observed, ax=ax)
    lines = {line.get_label(): line for line in ax.get_lines()}
    np.testing.assert_allclose(lines["expected"].get_ydata(), expected[:, 2])
    np.testing.assert_allclose(lines["observed"].get_ydata(), observed)
    two_sigma = ax.collections[0].get_paths()[0].vertices[:, 1]
    assert two_sigma.min() == pytest.approx(1.0) and two_sigma.max() == pytest.approx(6.0)
    assert ax.get_yscale() == "log"
    fig.savefig(tmp_path / "b.png")
    plt.close(fig)


def test_brazil_band_rejects_bad_shapes():
    with pytest.raises(ValueError, match="expected must have shape"):
        plot.brazil_band([1.0, 2.0], np.ones((2, 3)))
    with pytest.raises(ValueError, match="observed must have shape"):
        plot.brazil_band([1.0, 2.0], np.ones((2, 5)), observed=np.ones(3))


def test_stacked_histogram_stacks_in_order():
    edges = np.array([0.0, 1.0, 2.0])
    ax = plot.stacked_histogram(edges, {"a": [1.0, 2.0], "b": [3.0, 4.0]}, {"signal": [0.5, 0.5]})
    tops = [patch for patch in ax.patches]
    assert len(tops) == 3  # two stacks + overlay
    # the second stack's upper edge is the sum of both
    np.testing.assert_allclose(tops[1].get_data()[0], [4.0, 6.0])
    np.testing.assert_allclose(tops[1].get_data()[2], [1.0, 2.0])  # baseline = first stack
    plt.close(ax.figure)
    with pytest.raises(ValueError, match="'a' has"):
        plot.stacked_histogram(edges, {"a": [1.0, 2.0, 3.0]})


def test_training_curves_accepts_histories_and_pairs():
    history = History()
    history.step.extend([0, 1, 2])
    history.loss.extend([2.0, 1.0, 0.5])
    ax = plot.training_curves({"h": history, "pair": ([0, 1], [4.0, 2.0])}, normalise=True)
    ys = [line.get_ydata() for line in ax.get_lines()]
    np.testing.assert_allclose(ys[0], [1.0, 0.5, 0.25])
    np.testing.assert_allclose(ys[1], [1.0, 0.5])
    plt.close(ax.figure)
