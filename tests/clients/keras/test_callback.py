"""trainsound.keras.Sonify on a small Keras 3 CNN: no re-compile, norms equal to GradientTape's."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from support import by_step  # noqa: E402

from trainsound import ClientArgumentError  # noqa: E402
from trainsound.bridge.wire.session import iter_messages  # noqa: E402
from trainsound.keras import Sonify  # noqa: E402

pytestmark = [pytest.mark.keras, pytest.mark.slow]


def small_cnn() -> keras.Model:
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Conv2D(8, 5, activation="relu", name="conv1"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(10, activation="softmax", name="fc"),
        ],
        name="seed",
    )
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def data(n: int = 32) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.random((n, 28, 28, 1), dtype=np.float32), rng.integers(0, 10, n)


def test_sonify_sends_norms_equal_to_gradient_tape_without_recompiling(bridge_proc, tmp_path) -> None:
    model = small_cnn()
    x, y = data()
    with tf.GradientTape() as tape:
        ref_loss = model.compute_loss(x=x, y=y, y_pred=model(x, training=True))
    grads = tape.gradient(ref_loss, model.trainable_variables)
    ref = {
        layer: float(
            np.sqrt(
                sum(
                    np.sum(np.square(g.numpy()))
                    for g, v in zip(grads, model.trainable_variables, strict=True)
                    if v.path.split("/")[1] == layer
                )
            )
        )
        for layer in ("conv1", "fc")
    }
    compiled_loss = model.loss
    rec = tmp_path / "keras.tsr"
    bridge = bridge_proc(["--no-midi", "--record", str(rec)])
    model.fit(x, y, batch_size=32, epochs=2, shuffle=False, verbose=0, callbacks=[Sonify(run="k", port=bridge.port)])
    bridge.status()
    bridge.stop()
    msgs = [(a, args) for _, a, args in iter_messages(rec)]
    assert model.loss is compiled_loss and "apply" not in vars(model.optimizer) and "compute_loss" not in vars(model)
    first = {a.rsplit("/", 1)[1]: args for a, args in msgs[: msgs.index(("/nn/k/step", (1, 1)))] if "/grad_norm/" in a}
    assert first["conv1"][0] == pytest.approx(ref["conv1"], rel=1e-5)
    assert first["fc"][0] == pytest.approx(ref["fc"], rel=1e-5)
    assert ("/nn/k/loss", (pytest.approx(float(ref_loss), rel=1e-5),)) in msgs
    assert [a for a, _ in msgs if "/weight/" in a] == ["/nn/k/weight/conv1", "/nn/k/weight/fc"] * 2
    assert any(a == "/nn/k/metric/accuracy" for a, _ in msgs)
    assert [args[0] for a, args in msgs if a == "/nn/k/event"] == ["start", "epoch", "epoch", "end"]


def test_nan_loss_sends_the_nan_event_once(receiver) -> None:
    model = small_cnn()
    x, y = data()
    x[0, 0, 0, 0] = np.nan
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[Sonify(run="n", port=receiver.port)])
    msgs = receiver.messages()
    assert [args for a, args in msgs if a == "/nn/n/event" and args == ("nan",)] == [("nan",)]


def test_wrong_arguments_fail_in_the_constructor() -> None:
    with pytest.raises(ClientArgumentError, match=r"^every must be an integer >= 1, got 0$"):
        Sonify(every=0)
    with pytest.raises(ClientArgumentError, match=r"^log must name some of \['grads', 'loss', 'weights'\], got 'x'$"):
        Sonify(log=("x",))


class BatchLosses(keras.callbacks.Callback):
    """Each batch's own loss, recovered from Keras' running mean of the epoch (``logs["loss"]``)."""

    def __init__(self) -> None:
        super().__init__()
        self.losses: list[float] = []
        self._mean = 0.0

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        mean = float((logs or {})["loss"])
        self.losses.append((batch + 1) * mean - batch * self._mean)
        self._mean = mean

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._mean = 0.0


def test_the_loss_and_lr_of_every_step_with_a_schedule(receiver) -> None:
    """Issue 22: every step's loss and the learning rate it used (warmup + cosine), next to a metric the user
    named ``lr`` (the callback's own ``lr`` wins, it is not sent twice)."""
    keras.utils.set_random_seed(0)
    schedule = keras.optimizers.schedules.CosineDecay(0.0, decay_steps=30, warmup_target=0.05, warmup_steps=6)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu", name="hidden"),
                              keras.layers.Dense(2, name="out")])
    model.compile(keras.optimizers.SGD(schedule), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=[keras.metrics.MeanMetricWrapper(lambda y, p: keras.ops.mean(p), name="lr")])
    rng = np.random.default_rng(0)
    x = rng.normal(size=(160, 8)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")
    batches = BatchLosses()
    model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0,
              callbacks=[batches, Sonify(run="s", port=receiver.port)])
    msgs = receiver.messages()
    steps = by_step(msgs, "s")
    assert sorted(steps) == list(range(40))
    assert [steps[i]["loss"][0] for i in range(40)] == pytest.approx(batches.losses, rel=1e-3, abs=1e-5)
    assert [steps[i]["metric/lr"][0] for i in range(40)] == pytest.approx([float(schedule(i)) for i in range(40)],
                                                                          rel=1e-5, abs=1e-9)
    assert len([a for a, _ in msgs if a == "/nn/s/metric/lr"]) == 40  # the user's "lr" is not sent over it
