"""The optax training loop (diffana.train): determinism, checkpoint/resume, early stopping."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import diffana  # noqa: F401
from diffana.events import Events
from diffana.objectives import binary_cross_entropy
from diffana.selection import MLP, Standardisation
from diffana.train import History, load_checkpoint, train


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(0)
    events = Events.from_samples(
        {
            "signal": {"x": rng.normal(1.0, 1.0, 300), "y": rng.normal(0.5, 1.0, 300)},
            "background": {"x": rng.normal(-1.0, 1.0, 300), "y": rng.normal(0.0, 1.0, 300)},
        },
        weights={"signal": 0.1, "background": 1.0},
    )
    st = Standardisation.fit(events, ["x", "y"])
    net = MLP(st, hidden=(8,), key=jax.random.PRNGKey(0))
    return events, net


def bce(net, batch):
    label = (batch.process == 0).astype(float)
    return binary_cross_entropy(net.logit(batch), label, batch.weight, balanced=True,
                                from_logits=True)


OPT = optax.adam(optax.cosine_decay_schedule(3e-2, 30))


def leaves(tree):
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]


@pytest.fixture(scope="module")
def reference(problem):
    events, net = problem
    return train(bce, net, events, n_steps=30, optimizer=OPT, batch_size=64, seed=7,
                 progress=False)


def test_loss_decreases_and_history(reference):
    h = reference.history
    assert h.step == list(range(30))
    assert np.mean(h.loss[-5:]) < np.mean(h.loss[:5])
    assert reference.step == 30 and not reference.stopped_early


def test_same_seed_same_run_other_seed_differs(problem, reference):
    events, net = problem
    again = train(bce, net, events, n_steps=30, optimizer=OPT, batch_size=64, seed=7, progress=False)
    for a, b in zip(leaves(again.params), leaves(reference.params)):
        np.testing.assert_array_equal(a, b)
    other = train(bce, net, events, n_steps=30, optimizer=OPT, batch_size=64, seed=8, progress=False)
    assert any(not np.array_equal(a, b) for a, b in zip(leaves(other.params), leaves(reference.params)))


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, RuntimeError])
def test_interrupt_and_resume_is_bit_identical(problem, reference, tmp_path, interrupt):
    """KeyboardInterrupt checkpoints at the interrupted step; any other crash resumes
    from the last periodic checkpoint (step 10) and replays steps 10..13."""
    events, net = problem
    ckpt = tmp_path / "ckpt"

    def stop_at_13(step, params, loss):
        if step == 13:
            raise interrupt("simulated interruption")

    with pytest.raises(interrupt):
        train(bce, net, events, n_steps=30, optimizer=OPT, batch_size=64, seed=7,
              progress=False, checkpoint_path=ckpt, checkpoint_every=10, callback=stop_at_13)
    *_, step, meta = load_checkpoint(ckpt, *_likes(net))
    assert step == (13 if interrupt is KeyboardInterrupt else 10)
    assert len(meta["history"]["loss"]) == step
    resumed = train(bce, net, events, n_steps=30, optimizer=OPT, batch_size=64, seed=7,
                    progress=False, checkpoint_path=ckpt, checkpoint_every=10)
    assert resumed.step == 30
    for a, b in zip(leaves(resumed.params), leaves(reference.params)):
        np.testing.assert_array_equal(a, b)
    assert resumed.history.loss == reference.history.loss
    for a, b in zip(leaves(resumed.opt_state), leaves(reference.opt_state)):
        np.testing.assert_array_equal(a, b)


def _likes(net):
    import equinox as eqx

    diff, _ = eqx.partition(net, eqx.is_inexact_array)
    return diff, OPT.init(diff), jax.random.PRNGKey(0)


def test_early_stopping_and_restore_best(problem):
    events, net = problem
    # a huge learning rate makes the loss blow up after a few steps: stop and restore
    calls = []

    def validation(params):
        calls.append(1)
        return bce(params, events)

    res = train(bce, net, events, n_steps=200, optimizer=optax.sgd(5.0), seed=0,
                validation_fn=validation, patience=3, restore_best=True, progress=False)
    assert res.stopped_early and res.step < 200
    assert len(res.history.validation_loss) == res.step == len(calls)
    assert res.best_loss == min(res.history.validation_loss)
    assert float(bce(res.params, events)) == pytest.approx(res.best_loss, rel=1e-12)


def test_full_batch_and_step_argument(problem):
    events, net = problem
    seen = []

    def loss(params, batch, step):
        seen.append(batch.n_events)
        return bce(params, batch) * (1.0 + 0.0 * step)

    res = train(loss, net, events, n_steps=3, progress=False)
    assert seen[0] == events.n_events and res.step == 3


def test_nonfinite_loss_raises_named_step(problem):
    events, net = problem

    def loss(params, batch, step):
        return jnp.where(step >= 2, jnp.nan, bce(params, batch))

    with pytest.raises(FloatingPointError, match="at step 2"):
        train(loss, net, events, n_steps=5, progress=False)


def test_nonfinite_gradient_raises_named_step(problem):
    events, net = problem

    def loss(params, batch, step):
        # finite value, NaN gradient from step 1 on (sqrt at 0 with a zero factor)
        return bce(params, batch) + jnp.where(step >= 1, 0.0, 1.0) * jnp.sqrt(
            0.0 * params.layers[0].bias[0])

    with pytest.raises(FloatingPointError, match="gradient is not finite at step"):
        train(loss, net, events, n_steps=3, progress=False)


def test_bad_arguments(problem):
    events, net = problem
    with pytest.raises(ValueError, match="batch_size"):
        train(bce, net, events, n_steps=1, batch_size=10_000, progress=False)
    with pytest.raises(ValueError, match="n_steps"):
        train(bce, net, events, n_steps=-1, progress=False)


def test_progress_bar_and_history_plot(problem, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    events, net = problem
    res = train(bce, net, events, n_steps=2, progress=True,
                validation_fn=lambda p: bce(p, events))
    ax = res.history.plot(label="bce", logy=True)
    assert len(ax.lines) == 2
    back = History.from_dict(res.history.to_dict())
    assert back == res.history
