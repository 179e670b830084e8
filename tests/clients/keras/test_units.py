"""Sonify(units=[...]) and Sonify(weight_only=True): per-unit kernel means and the Keras seed's kernel-only norms."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from trainsound import ClientArgumentError  # noqa: E402
from trainsound.keras import Sonify  # noqa: E402

pytestmark = [pytest.mark.keras, pytest.mark.slow]


def model_and_data() -> tuple[keras.Model, np.ndarray, np.ndarray]:
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((6, 6, 1)), keras.layers.Conv2D(4, 3, name="conv"), keras.layers.Flatten(),
         keras.layers.Dense(5, name="fc", bias_initializer="ones")],
        name="m",
    )
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")  # LR 0: weights stay as built
    rng = np.random.default_rng(0)
    return model, rng.random((8, 6, 6, 1), dtype=np.float32), rng.random((8, 5), dtype=np.float32)


def test_units_and_kernel_only_norms(receiver) -> None:
    model, x, y = model_and_data()
    with tf.GradientTape() as tape:
        loss = model.compute_loss(x=x, y=y, y_pred=model(x, training=True))
    kernels = [v for v in model.trainable_variables if v.name == "kernel"]
    grads = tape.gradient(loss, kernels)
    ref = {v.path.split("/")[1]: float(np.linalg.norm(g.numpy())) for v, g in zip(kernels, grads, strict=True)}
    cb = Sonify(run="k", port=receiver.port, units=["fc", "conv"], weight_only=True, weights_every=2)
    model.fit(x, y, batch_size=8, epochs=3, verbose=0, shuffle=False, callbacks=[cb])
    steps: list[dict] = []
    for address, args in receiver.messages():
        key = address.removeprefix("/nn/k/")
        if key.startswith(("grad_norm", "weight")):
            if not steps or key in steps[-1]:
                steps.append({})
            steps[-1][key] = args
    assert [("weight_units/fc" in s) for s in steps] == [True, False, True]
    for s in steps:
        assert s["grad_norm/fc"][0] == pytest.approx(ref["fc"], rel=1e-5)
        assert s["grad_norm/conv"][0] == pytest.approx(ref["conv"], rel=1e-5)
    fc = np.frombuffer(steps[0]["weight_units/fc"][0], "<f4")
    conv = np.frombuffer(steps[0]["weight_units/conv"][0], "<f4")
    np.testing.assert_allclose(fc, model.get_layer("fc").kernel.numpy().mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(conv, model.get_layer("conv").kernel.numpy().reshape(-1, 4).mean(axis=0), rtol=1e-5)
    # kernel only: the bias (all ones) is not in the weight statistics
    mean = steps[0]["weight/fc"][0]
    assert mean == pytest.approx(float(model.get_layer("fc").kernel.numpy().mean()), rel=1e-5)


def test_units_error_names_the_layer(receiver) -> None:
    model, x, y = model_and_data()
    with pytest.raises(ClientArgumentError, match="units: model has no layer named 'nope'"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[Sonify(port=receiver.port, units=["nope"])])
