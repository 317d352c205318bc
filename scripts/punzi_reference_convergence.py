"""How the Punzi-net comparison's per-mass reference converges with background MC,
networks held fixed.

The per-mass reference of the paper's comparison (``punzi.py``) is chosen on finite
background MC: chosen on the events it is scored on, it is biased low (the cut where
that sample's MC runs out); chosen on an independent sample, it is biased high (a cut
tuned to another sample's fluctuations). The ratio Punzi-net one cut / per-mass
optimum of infinite MC lies between the two. This script trains both networks once,
on the ``--samples`` training half (as the pipeline does), and scores them on
independent background MC of growing size — the held-out half of ``--samples`` (1×)
and the two halves A and B of the chunks of a background store
(``scripts/zprime_background_store.py``; each chunk is 2×: a whole sample, unsplit) —
to show the bracket narrowing with the MC alone, the networks and the one cut fixed.

    python scripts/punzi_net_reproduction.py --seed 1 --samples-cache full1.pkl
    python scripts/zprime_background_store.py --dir store --seeds 1001-1016
    python scripts/punzi_reference_convergence.py --samples full1.pkl --store store --store-seeds 1001-1016

The store's seeds must differ from ``--seed`` (else its chunks are the very events of
``--samples``; refused). Units: s_min in fb; every background pool's weights sum to the
expected events at the analysis luminosity, so a pool of samples is weighted by its
share of the MC statistics.
"""

from __future__ import annotations

import argparse
import dataclasses
import operator
import pickle
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np

import diffana  # noqa: F401  (float64)
from diffana.analyses.zprime_invisible import background_store, punzi
from diffana.analyses.zprime_invisible.config import config_from_options
from diffana.analyses.zprime_invisible.samples import AnalysisSamples, at_luminosity
from diffana.cli.zprime import add_config_options
from diffana.errors import ConfigError

SCORED_COLUMNS = ("recoil_mass_squared", "weight", "bce", "punzi")
"""What the comparison needs of an event once both networks have scored it."""

CHUNK_SIZE = 2.0
"""MC size of one store chunk in units of one 1× half: a whole sample, unsplit."""


class Pool(NamedTuple):
    """A background sample standing for the luminosity once: scored columns and MC size
    in units of one 1× half."""

    events: dict
    size: float


def pooled(pools: list[Pool]) -> Pool:
    """The union of samples, each weighted by its share of the MC statistics."""
    total = sum(p.size for p in pools)
    events = {key: np.concatenate([np.asarray(p.events[key]) for p in pools]) for key in SCORED_COLUMNS}
    events["weight"] = np.concatenate([np.asarray(p.events["weight"]) * p.size / total for p in pools])
    return Pool(events, total)


class TrainedScorer(NamedTuple):
    """Both networks as score functions (events dict → logits, shape of the columns)."""

    bce: Callable
    punzi: Callable


def scored(events: dict, scorer: TrainedScorer) -> dict:
    """``events`` reduced to :data:`SCORED_COLUMNS`: M²_rec, weight and both logits."""
    return {"recoil_mass_squared": np.asarray(events["recoil_mass_squared"]),
            "weight": np.asarray(events["weight"], np.float64),
            "bce": scorer.bce(events), "punzi": scorer.punzi(events)}


def scored_samples(samples: AnalysisSamples, scorer: TrainedScorer) -> AnalysisSamples:
    """``samples`` with every event set reduced to its scored columns."""
    return dataclasses.replace(
        samples, background_train=scored(samples.background_train, scorer),
        background_test=scored(samples.background_test, scorer),
        signal_train=scored(samples.signal_train, scorer), signal_test=scored(samples.signal_test, scorer))


def store_pools(chunks, scorer: TrainedScorer, luminosity: float) -> list[Pool]:
    """Each of the store ``chunks`` (read one at a time) scored, its weights rescaled to
    ``luminosity`` (fb⁻¹)."""
    pools = []
    for chunk in chunks:
        events = scored(chunk.events, scorer)
        events["weight"] = events["weight"] * (luminosity / chunk.settings.luminosity)
        pools.append(Pool(events, CHUNK_SIZE))
    return pools


def doubling(n: int) -> list[int]:
    """1, 2, 4, … up to ``n``, and ``n`` itself: the pool sizes (in chunks) of the table."""
    sizes = [k for k in (2**i for i in range(n.bit_length())) if k <= n]
    return sizes if sizes[-1] == n else [*sizes, n]


class NetworkScore(NamedTuple):
    """One network's score (scored events dict → logits) and its cut grid."""

    score: Callable
    cuts: np.ndarray


class NetworkScores(NamedTuple):
    """The BCE network and Punzi-net, each with its cut grid."""

    bce: NetworkScore
    punzi: NetworkScore


def network_scores(samples: AnalysisSamples, n_cuts: int) -> NetworkScores:
    """Both networks' logit columns of scored ``samples``, each with its cut grid from
    the training signal."""
    def column(name: str) -> NetworkScore:
        score = operator.itemgetter(name)
        return NetworkScore(score, punzi.network_cut_grid(samples, score, n_cuts))

    return NetworkScores(column("bce"), column("punzi"))


class Bracket(NamedTuple):
    """Geometric means over 1–6 GeV of Punzi-net one cut / BCE per-mass reference."""

    choose_size: float
    score_size: float
    in_sample: float  # per-mass cuts chosen on the scoring sample
    out_of_sample: float  # per-mass cuts chosen on the choosing sample
    no_mc_left: float  # share of in-sample optima with no background MC left
    in_sample_range_cut: float  # as in_sample, Punzi-net's one cut chosen on the 1–6 GeV masses only
    out_of_sample_range_cut: float  # as out_of_sample, same


def bracket(samples, networks: NetworkScores, choose: Pool, score: Pool, window: float,
            resolution: str) -> Bracket:
    """Both references on ``score`` (per-mass cuts chosen on it, or on ``choose``),
    against Punzi-net's one cut chosen on ``samples``' training half."""
    masses = samples.masses

    def scans(net: NetworkScores, background: dict, signal: dict) -> punzi.CutScan:
        return punzi.scan_network(samples, net.score, net.cuts, signal, background, window, resolution)

    bce_choose = scans(networks.bce, choose.events, samples.signal_train)
    bce_score = scans(networks.bce, score.events, samples.signal_test)
    pz_train = scans(networks.punzi, samples.background_train, samples.signal_train)
    pz_score = scans(networks.punzi, score.events, samples.signal_test)
    rows = np.arange(masses.size)
    inside = punzi.masses_in_range(masses, 1.0, 6.0)
    one = pz_score.s_min[:, punzi.best_single_cut(pz_train)]
    # a diagnostic, not the paper's criterion: the one cut chosen for the 1–6 GeV masses alone
    one_in_range = pz_score.s_min[:, punzi.best_single_cut(pz_train, inside)]
    best_in = punzi.best_cut_per_mass(bce_score)
    best_out = punzi.best_cut_per_mass(bce_choose)
    reference_in, reference_out = bce_score.s_min[rows, best_in], bce_score.s_min[rows, best_out]
    with np.errstate(invalid="ignore"):  # inf / inf where a cut keeps no signal of a mass (above 6.7 GeV)
        ratios = [one / reference_in, one / reference_out, one_in_range / reference_in, one_in_range / reference_out]
    in_sample, out_of_sample, in_sample_range, out_of_sample_range = (
        punzi.geometric_mean_in_range(r, masses) for r in ratios)
    return Bracket(choose.size, score.size, in_sample, out_of_sample,
                   float(np.mean(bce_score.background_mc[rows, best_in][inside] == 0)),
                   in_sample_range, out_of_sample_range)


def split_seeds(seeds: list[int]) -> tuple[list[int], list[int]]:
    """The store's chunks in two halves, A and B (A gets the extra one of an odd count)."""
    half = -(-len(seeds) // 2)
    if half == 0 or half == len(seeds):
        raise ConfigError(f"the store comparison needs at least 2 chunk seeds, got {seeds}")
    return seeds[:half], seeds[half:]


def main(argv=None) -> list[Bracket]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=Path, required=True, help="pickled samples (punzi_net_reproduction.py "
                        "--samples-cache): the networks train on its training half")
    parser.add_argument("--store", type=Path, required=True,
                        help="background store directory (scripts/zprime_background_store.py, same config)")
    parser.add_argument("--store-seeds", required=True, help="its chunk seeds, N-M; split into halves A and B")
    parser.add_argument("--seed", type=int, default=1, help="the seed --samples was made with (trains the networks)")
    add_config_options(parser, default="belle2_2019_2020")
    parser.add_argument("--n-cuts", type=int, default=400)
    parser.add_argument("--luminosity", type=float, default=None,
                        help="rescale every sample's weights to this luminosity (fb⁻¹): the same MC then stands for "
                             "less data (samples.at_luminosity)")
    args = parser.parse_args(argv)
    try:  # a bad override, config value or store: one line, not a traceback
        config = config_from_options(args)
        seeds_a, seeds_b = split_seeds(background_store.parse_seeds(args.store_seeds))
        background_store.check_independent(seeds_a + seeds_b, [args.seed])
        return run(config, args, seeds_a, seeds_b)
    except ConfigError as error:
        raise SystemExit(f"error: {error}") from None


def trained_and_scored(config, args) -> tuple[AnalysisSamples, TrainedScorer]:
    """Both networks trained on the ``--samples`` training half (at ``--luminosity``),
    and those samples reduced to their scored columns (the full features are dropped
    here, before the store is read)."""
    samples = pickle.loads(args.samples.read_bytes())
    if args.luminosity is not None:
        samples = at_luminosity(samples, args.luminosity)
    networks = punzi.train_networks(samples, config.training, args.seed, config.analysis.resolution,
                                    config.templates.window_bins)
    scorer = TrainedScorer(lambda ev: punzi.logit_scores(networks.bce, ev),
                           lambda ev: punzi.logit_scores(networks.punzi, ev))
    return scored_samples(samples, scorer), scorer


def pool_pairs(one_x: Pool, chunks_a: list[Pool], chunks_b: list[Pool]):
    """The (choose, score) pools of the table, built one pair at a time (memory): 1× → B₁;
    A and B growing together (the first k chunks of each), each choosing for the other;
    all of A → 1×."""
    yield one_x, pooled(chunks_b[:1])
    for k in doubling(min(len(chunks_a), len(chunks_b))):
        pool_a, pool_b = pooled(chunks_a[:k]), pooled(chunks_b[:k])
        yield pool_a, pool_b
        yield pool_b, pool_a
    yield pooled(chunks_a), one_x


def run(config, args, seeds_a: list[int], seeds_b: list[int]) -> list[Bracket]:
    """Train, score every pool and print the bracket table."""
    reduced, scorer = trained_and_scored(config, args)
    luminosity = reduced.luminosity
    chunks_a = store_pools(background_store.read_store(args.store, seeds_a, config), scorer, luminosity)
    chunks_b = store_pools(background_store.read_store(args.store, seeds_b, config), scorer, luminosity)
    scores = network_scores(reduced, args.n_cuts)
    settings = dict(window=config.training.punzi_window, resolution=config.analysis.resolution)
    results = [bracket(reduced, scores, choose, score, **settings)
               for choose, score in pool_pairs(Pool(reduced.background_test, 1.0), chunks_a, chunks_b)]
    print(f"Punzi-net one cut / BCE per-mass reference, geometric mean over 1–6 GeV; L = {luminosity:g} fb⁻¹; MC "
          f"sizes in units of the config's held-out half (1×); store chunks A = {seeds_a}, B = {seeds_b}; networks "
          "trained once on the --samples training half")
    print(f"{'choose on':>10} {'score on':>9} {'in-sample':>10} {'out-of-sample':>14} {'optima with no MC':>18}"
          f"   | one cut chosen on 1–6 GeV only: {'in-sample':>10} {'out-of-sample':>14}")
    for r in results:
        print(f"{r.choose_size:9.0f}× {r.score_size:8.0f}× {r.in_sample:10.3f} {r.out_of_sample:14.3f} "
              f"{r.no_mc_left:18.0%}   | {'':>31} {r.in_sample_range_cut:10.3f} {r.out_of_sample_range_cut:14.3f}")
    return results


if __name__ == "__main__":
    main()
