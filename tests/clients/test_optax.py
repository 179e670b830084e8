"""trainsound.optax.sonify in real jitted JAX training steps (Flax Linen and NNX, CPU), against the real bridge."""

from __future__ import annotations

import math

import numpy as np
import pytest

jax = pytest.importorskip("jax")
optax = pytest.importorskip("optax")
flax = pytest.importorskip("flax")
import jax.numpy as jnp  # noqa: E402
from flax import linen, nnx  # noqa: E402

import trainsound  # noqa: E402
import trainsound.optax as tso  # noqa: E402
from trainsound import ClientArgumentError  # noqa: E402

X = jax.random.normal(jax.random.PRNGKey(1), (32, 4))
Y = (X[:, 0] > 0).astype(jnp.int32)


class Mlp(linen.Module):
    @linen.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return linen.Dense(2, name="head")(linen.relu(linen.Dense(8, name="hidden")(x)))


def reference(grads: dict) -> dict[str, float]:
    """Per layer, the L2 norm over all its leaves, in float64 on the host."""
    return {layer: math.sqrt(sum(float(np.sum(np.square(np.asarray(leaf, np.float64)))) for leaf in leaves.values()))
            for layer, leaves in grads["params"].items()}


def train_linen(port: int, steps: int, opt_factory, **sonify_kw) -> tuple[list[float], list[dict]]:
    """Train the Linen MLP under ``sonify``; the losses and each micro-batch's raw gradients."""
    model = Mlp()
    params = model.init(jax.random.PRNGKey(0), X)
    opt = opt_factory(tso.sonify(run="jx", port=port, **sonify_kw))
    state = opt.init(params)

    def loss_fn(p: dict, x: jax.Array, y: jax.Array) -> jax.Array:
        return optax.softmax_cross_entropy_with_integer_labels(model.apply(p, x), y).mean()

    @jax.jit
    def step(p: dict, s: object, x: jax.Array, y: jax.Array) -> tuple:
        loss, g = jax.value_and_grad(loss_fn)(p, x, y)
        u, s = opt.update(g, s, p, value=loss)
        return optax.apply_updates(p, u), s, loss, g

    losses, norms = [], []
    for i in range(steps):
        x, y = X[8 * (i % 4) : 8 * (i % 4 + 1)], Y[8 * (i % 4) : 8 * (i % 4 + 1)]
        params, state, loss, g = step(params, state, x, y)
        trainsound.log(acc=0.25 * i)
        losses.append(float(loss))
        norms.append(g)
    tso.close()
    return losses, norms


def test_linen_norms_loss_and_metrics_arrive_clip_after_it(bridge_recording) -> None:
    out: dict = {}

    def go(port: int) -> None:
        out["losses"], out["norms"] = train_linen(
            port, 5, lambda s: optax.chain(s, optax.clip_by_global_norm(1e-3), optax.sgd(0.1)))

    msgs = bridge_recording(go)
    steps = bridge_recording.by_step(msgs, "jx")
    assert sorted(steps) == list(range(5))
    assert msgs[0] == ("/nn/jx/event", ("start",)) and msgs[-1] == ("/nn/jx/event", ("end",))
    for i, got in steps.items():
        ref = reference(out["norms"][i])
        assert ref.keys() == {"hidden", "head"}
        for layer, norm in ref.items():  # the raw gradients: the clip further down the chain does not touch them
            assert got[f"grad_norm/{layer}"][0] == pytest.approx(norm, rel=1e-4)
        assert got["metric/grad_norm"][0] == pytest.approx(math.hypot(*ref.values()), rel=1e-4)
        assert got["loss"][0] == pytest.approx(out["losses"][i], rel=1e-6)
    assert steps[3]["metric/acc"][0] == pytest.approx(0.5)  # log() after step 2 rides with step 3


def test_every_and_multisteps_accumulation(bridge_recording) -> None:
    out: dict = {}

    def go(port: int) -> None:  # 8 micro-batches, 2 per optimizer step, every 2nd optimizer step reported
        out["losses"], out["norms"] = train_linen(
            port, 8, lambda s: optax.MultiSteps(optax.chain(s, optax.sgd(0.1)), every_k_schedule=2), every=2)

    msgs = bridge_recording(go)
    steps = bridge_recording.by_step(msgs, "jx")
    assert sorted(steps) == [0, 2]  # 4 optimizer steps, reported: 0 and 2
    for k in (0, 2):  # the inner optimizer sees the mean of micro-batches 2k and 2k+1
        mean = jax.tree.map(lambda a, b: (a + b) / 2, out["norms"][2 * k], out["norms"][2 * k + 1])
        for layer, norm in reference(mean).items():
            assert steps[k][f"grad_norm/{layer}"][0] == pytest.approx(norm, rel=1e-4)


def test_nnx_layer_names_read_naturally(receiver) -> None:
    class Net(nnx.Module):
        def __init__(self, rngs: nnx.Rngs) -> None:
            self.encoder = nnx.Linear(4, 8, rngs=rngs)
            self.decoder = nnx.Linear(8, 2, rngs=rngs)

        def __call__(self, x: jax.Array) -> jax.Array:
            return self.decoder(jax.nn.relu(self.encoder(x)))

    model = Net(nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.chain(tso.sonify(run="nnx", port=receiver.port), optax.adam(1e-3)),
                              wrt=nnx.Param)

    @nnx.jit
    def step(model: Net, optimizer: nnx.Optimizer) -> jax.Array:
        _loss, grads = nnx.value_and_grad(lambda m: optax.softmax_cross_entropy_with_integer_labels(m(X), Y).mean())(
            model)
        optimizer.update(model, grads)
        return grads

    grads = step(model, optimizer)
    tso.close()
    got = {a: v for a, v in receiver.messages()}
    for layer in ("encoder", "decoder"):
        ref = math.sqrt(sum(float(np.sum(np.square(np.asarray(leaf)))) for leaf in jax.tree.leaves(grads[layer])))
        assert got[f"/nn/nnx/grad_norm/{layer}"][0] == pytest.approx(ref, rel=1e-4)


def test_layer_name_and_wrong_arguments() -> None:
    with pytest.raises(ClientArgumentError, match=r"^every must be an integer >= 1, got 0$"):
        tso.sonify(every=0)


def test_the_loss_of_every_step_nan_included_and_no_name_sent_twice(bridge_recording) -> None:
    """Issue 22: a NaN loss given as ``value=`` was taken for "no loss" and never sent; a logged ``loss`` or
    ``grad_norm`` went out beside the step's own (two messages of one address in one step)."""
    out: dict = {}

    def go(port: int) -> None:
        model = Mlp()
        params = model.init(jax.random.PRNGKey(0), X)
        schedule = optax.warmup_cosine_decay_schedule(0.0, 0.1, warmup_steps=5, decay_steps=40)
        opt = optax.chain(tso.sonify(run="jx", port=port), optax.adam(schedule))
        state = opt.init(params)

        @jax.jit
        def step(p: dict, s: object, x: jax.Array, y: jax.Array, poison: jax.Array) -> tuple:
            def loss_fn(p: dict) -> jax.Array:
                return optax.softmax_cross_entropy_with_integer_labels(model.apply(p, x), y).mean()

            loss, g = jax.value_and_grad(loss_fn)(p)
            loss = loss + poison  # the value only: the gradients stay finite
            u, s = opt.update(g, s, p, value=loss)
            return optax.apply_updates(p, u), s, loss

        losses = []
        for i in range(40):
            x, y = X[8 * (i % 4) : 8 * (i % 4 + 1)], Y[8 * (i % 4) : 8 * (i % 4 + 1)]
            params, state, loss = step(params, state, x, y, jnp.float32(jnp.nan if i == 20 else 0.0))
            trainsound.log(loss=loss, grad_norm=123.0, lr=float(schedule(i)))
            losses.append(float(loss))
        tso.close()
        out["losses"] = losses

    msgs = bridge_recording(go)
    steps = bridge_recording.by_step(msgs, "jx")
    assert sorted(steps) == list(range(40))
    got = [steps[i]["loss"][0] for i in range(40)]
    assert math.isnan(got[20]) and got[:20] + got[21:] == pytest.approx(out["losses"][:20] + out["losses"][21:])
    for name in ("loss", "metric/grad_norm"):
        assert sum(1 for a, _ in msgs if a == f"/nn/jx/{name}") == 40  # one per step: the step's own
    assert all(steps[i]["metric/grad_norm"][0] != 123.0 for i in range(40))
    assert ("/nn/jx/event", ("nan",)) in msgs
