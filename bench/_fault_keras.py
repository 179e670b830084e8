"""The fault benchmark's Keras run: an MLP on a random teacher's classes, ``model.fit`` with
``trainsound.keras.Sonify`` and a learning-rate schedule object, one fault injected at batch ``job.at``.

The data is one epoch of exactly ``job.steps`` batches in a fixed order, so a corrupted batch is
corrupted in the arrays themselves; learning-rate faults live in the schedule (a schedule that
misbehaves at one step), weight faults in a callback.
"""

from __future__ import annotations

import math
import os
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
from _faultrig import INPUT_SCALE, Job

BATCH = 32
BLOCK = "dense_1"
LAYER = "dense_2"


@keras.saving.register_keras_serializable("trainsound_bench")
class Schedule(keras.optimizers.schedules.LearningRateSchedule):
    """Warmup then cosine, step decay (×0.1 at 1/3 and 2/3) or cosine with two restarts, times the fault's factor."""

    def __init__(self, base: float, schedule: str, steps: int, fault: str, at: int) -> None:
        self.base, self.schedule, self.steps, self.fault, self.at = base, schedule, steps, fault, at

    def __call__(self, step: Any) -> Any:
        ops = keras.ops
        s = ops.cast(step, "float32")
        warm = self.steps // 10
        p = ops.maximum(s - warm, 0.0) / max(1, self.steps - warm)
        if self.schedule == "step":
            f = ops.power(0.1, ops.floor(3.0 * s / self.steps))
        elif self.schedule == "restarts":
            f = 0.5 * (1 + ops.cos(math.pi * ((3.0 * p) % 1.0)))
        else:
            f = 0.5 * (1 + ops.cos(math.pi * p))
        lr = self.base * ops.where(s < warm, (s + 1) / warm, f)
        if self.fault in ("lr_x10", "lr_x100"):
            lr = lr * ops.where(ops.equal(s, self.at), 10.0 if self.fault == "lr_x10" else 100.0, 1.0)
        elif self.fault in ("lr_x10_sustained", "lr_zero"):
            lr = lr * ops.where(s >= self.at, 10.0 if self.fault == "lr_x10_sustained" else 0.0, 1.0)
        return lr

    def get_config(self) -> dict[str, Any]:
        return {"base": self.base, "schedule": self.schedule, "steps": self.steps, "fault": self.fault, "at": self.at}


class InjectFault(keras.callbacks.Callback):
    """Weight faults at the start of batch ``at``: a NaN weight, a block zeroed and frozen, a layer's weights ×100."""

    def __init__(self, fault: str, at: int) -> None:
        super().__init__()
        self.fault, self.at = fault, at

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if batch != self.at:
            return
        if self.fault == "nan_weight":
            w = self.model.get_layer(LAYER).kernel
            v = keras.ops.convert_to_numpy(w).copy()
            v[0, 0] = np.nan
            w.assign(v)
        elif self.fault == "frozen_block":
            layer = self.model.get_layer(BLOCK)
            for w in layer.weights:
                w.assign(np.zeros(w.shape, "float32"))
            layer.trainable = False
            self.model.make_train_function(force=True)  # the compiled step still holds the old variable list
        elif self.fault == "exploding_layer":
            w = self.model.get_layer(LAYER).kernel
            w.assign(keras.ops.convert_to_numpy(w) * 100.0)


def data(job: Job) -> tuple[np.ndarray, np.ndarray]:
    """``job.steps`` batches of a random tanh teacher's 10 classes (one-hot), the fault's batch corrupted."""
    rng = np.random.default_rng(job.seed)
    n = job.steps * BATCH
    x = rng.standard_normal((n, 32)).astype("float32")
    w1, w2 = rng.standard_normal((32, 32)) / math.sqrt(32), rng.standard_normal((32, 10))
    y = np.eye(10, dtype="float32")[np.argmax(np.tanh(x @ w1) @ w2, axis=1)]
    b = slice(job.at * BATCH, (job.at + 1) * BATCH)
    if job.fault == "inputs_x1000":
        x[b] *= INPUT_SCALE
    elif job.fault == "labels_shuffled":
        y[b] = y[b][rng.permutation(BATCH)]
    elif job.fault == "nan_loss":
        y[b] = np.nan  # the batch's loss is NaN, and so is everything it touches
    return x, y


def train_keras(job: Job, port: int) -> dict[str, Any]:
    from trainsound.keras import Sonify

    keras.utils.set_random_seed(job.seed)
    model = keras.Sequential([
        keras.Input((32,)),
        keras.layers.Dense(64, activation="relu", name="dense"),
        keras.layers.Dense(64, activation="relu", name=BLOCK),
        keras.layers.Dense(64, activation="relu", name=LAYER),
        keras.layers.Dense(10, activation="softmax", name="out"),
    ])
    opt = keras.optimizers.Adam(Schedule(3e-3, job.schedule, job.steps, job.fault, job.at), clipnorm=1.0)
    model.compile(optimizer=opt, loss="categorical_crossentropy")
    x, y = data(job)
    model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0,
              callbacks=[Sonify(run=job.key, port=port), InjectFault(job.fault, job.at)])
    return {"layer": BLOCK if job.fault == "frozen_block" else LAYER}
