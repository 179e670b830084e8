"""trainsound.keras.Sonify on each Keras 3 backend (tensorflow, jax, torch), one process per backend.

The same MLP, weights, data and SGD on every backend; the norms, loss and weights the real bridge
recorded are checked against a NumPy computation of the same two steps.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("keras")

pytestmark = [pytest.mark.keras, pytest.mark.slow]

LR = 0.1
SCRIPT = f"""
import json, sys, numpy as np, keras
from trainsound.keras import Sonify
w = {{k: np.asarray(v, np.float32) for k, v in json.loads(sys.argv[2]).items()}}
x, y = np.asarray(w.pop("x")), np.asarray(w.pop("y")).astype("int32")
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu", name="hidden"),
                          keras.layers.Dense(2, name="out")], name="mlp")
model.set_weights([w["W1"], w["b1"], w["W2"], w["b2"]])
model.compile(keras.optimizers.SGD({LR!r}), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0,
          callbacks=[Sonify(run="k", port=int(sys.argv[1]), update_ratio=False)])
print(keras.config.backend())
"""


def reference(p: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray) -> list[tuple[float, dict[str, float]]]:
    """Plain NumPy (float64): per batch of 8, the loss and the per-layer gradient norms; then the SGD step."""
    p = {k: v.astype(np.float64) for k, v in p.items()}
    out = []
    for i in range(0, len(x), 8):
        xb, yb = x[i : i + 8].astype(np.float64), y[i : i + 8]
        h_pre = xb @ p["W1"] + p["b1"]
        h = np.maximum(h_pre, 0)
        z = h @ p["W2"] + p["b2"]
        e = np.exp(z - z.max(1, keepdims=True))
        sm = e / e.sum(1, keepdims=True)
        loss = float(-np.log(sm[np.arange(len(yb)), yb]).mean())
        dz = sm.copy()
        dz[np.arange(len(yb)), yb] -= 1
        dz /= len(yb)
        g = {"W2": h.T @ dz, "b2": dz.sum(0)}
        dh = (dz @ p["W2"].T) * (h_pre > 0)
        g.update(W1=xb.T @ dh, b1=dh.sum(0))
        norms = {"hidden": float(np.sqrt((g["W1"] ** 2).sum() + (g["b1"] ** 2).sum())),
                 "out": float(np.sqrt((g["W2"] ** 2).sum() + (g["b2"] ** 2).sum()))}
        out.append((loss, norms))
        p = {k: v - LR * g[k] for k, v in p.items()}
    return out


@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
def test_same_messages_on_every_backend(backend, bridge_recording) -> None:
    pytest.importorskip({"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}[backend])
    rng = np.random.default_rng(0)
    params = {"W1": rng.normal(0, 0.5, (4, 8)), "b1": rng.normal(0, 0.1, 8), "W2": rng.normal(0, 0.5, (8, 2)),
              "b2": rng.normal(0, 0.1, 2)}
    x = rng.normal(size=(16, 4))
    y = (x[:, 0] > 0).astype(int)
    arg = json.dumps({**{k: v.tolist() for k, v in params.items()}, "x": x.tolist(), "y": y.tolist()})
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    out: dict[str, str] = {}

    def go(port: int) -> None:
        done = subprocess.run([sys.executable, "-c", SCRIPT, str(port), arg], env=env, capture_output=True,
                              text=True, timeout=180)
        assert done.returncode == 0, done.stderr[-3000:]
        out["backend"] = done.stdout.split()[-1]

    msgs = bridge_recording(go)
    assert out["backend"] == backend
    steps = bridge_recording.by_step(msgs, "k")
    ref = reference(params, x, y)
    assert sorted(steps) == [0, 1]
    for i, (loss, norms) in enumerate(ref):
        got = steps[i]
        assert got["loss"][0] == pytest.approx(loss, rel=1e-4)
        assert got["metric/lr"][0] == pytest.approx(LR)
        for layer, norm in norms.items():
            assert got[f"grad_norm/{layer}"][0] == pytest.approx(norm, rel=1e-4)
    # the weight statistics after step 0: the initial weights moved by one SGD step
    w0 = np.concatenate([params["W1"].ravel(), params["b1"]])
    assert steps[0]["weight/hidden"][3] == pytest.approx(np.linalg.norm(w0), rel=1e-2)
    assert msgs[0] == ("/nn/k/event", ("start",)) and msgs[-1] == ("/nn/k/event", ("end",))
