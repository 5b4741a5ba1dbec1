"""Helpers and the autouse fixture of the Keras tests (re-exported by
`conftest.py`: tests import them as `from conftest import ...`)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KBATCH_CACHE_DIR", os.path.join(os.path.dirname(__file__),
                                                       "..", ".venv", "kbatch-cache"))

import keras
import numpy as np
import pytest


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    """Each test starts with float32 and a fixed seed, and leaves it that way."""
    keras.config.set_dtype_policy("float32")
    keras.utils.set_random_seed(1234)
    yield
    keras.config.set_dtype_policy("float32")


# The start of a script run in a fresh process with two logical CPUs and a
# MirroredStrategy over them (logical devices must be set before TensorFlow
# starts): `subprocess.run([sys.executable, "-c", TWO_CPU_STRATEGY + body])`.
TWO_CPU_STRATEGY = """\
import json, os, sys, warnings
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras, numpy as np
import kbatch
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
"""


def make_classifier(input_dim=8, num_classes=3, optimizer="adam", hidden=16,
                    dropout=0.0, **compile_kwargs):
    layers = [keras.Input((input_dim,)), keras.layers.Dense(hidden, activation="relu")]
    if dropout:
        layers.append(keras.layers.Dropout(dropout))
    layers += [keras.layers.Dense(num_classes),
               keras.layers.Activation("softmax", dtype="float32")]
    model = keras.Sequential(layers)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy",
                  **compile_kwargs)
    return model


def classification_data(n=256, input_dim=8, num_classes=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, input_dim)).astype("float32")
    w = rng.normal(size=(input_dim, num_classes))
    y = np.argmax(x @ w + 0.3 * rng.normal(size=(n, num_classes)), axis=1)
    return x, y.astype("int32")


class ScriptedLoss(keras.Model):
    """A model whose loss on a batch is known exactly: the MSE of a zero output.

    The output is `0 * w * x`, so the trainable weight gets a zero gradient and
    the loss of a batch is `mean(y**2)` whatever the learning rate.
    """

    def __init__(self):
        super().__init__()
        self.w = self.add_weight(shape=(1,), initializer="ones", name="w")

    def call(self, x):
        return 0.0 * self.w * x[:, :1]


def scripted_model(**compile_kwargs):
    model = ScriptedLoss()
    model.compile(optimizer=compile_kwargs.pop("optimizer", "sgd"), loss="mse",
                  **compile_kwargs)
    return model


def model_state(model):
    """Every model and optimizer variable as numpy, for bitwise comparison."""
    model_vals = [np.array(v.numpy()) for v in model.variables]
    opt_vals = [np.array(v.numpy())
                for v in model.optimizer.variables]
    return model_vals, opt_vals


def assert_same_state(before, after):
    for kind, a_list, b_list in (("model", before[0], after[0]),
                                 ("optimizer", before[1], after[1])):
        assert len(a_list) == len(b_list), f"{kind} variable count changed"
        for i, (a, b) in enumerate(zip(a_list, b_list)):
            assert a.dtype == b.dtype
            assert a.tobytes() == b.tobytes(), f"{kind} variable {i} changed"


class FaultAt(keras.layers.Layer):
    """Injects a fault at the `step`-th training call (1-based), counting only
    real batches. Needs `run_eagerly=True` so that Python runs at every step.

    kinds: "nan" (the output turns NaN), "error" (RuntimeError), "interrupt"
    (KeyboardInterrupt), "oom" (TensorFlow's real ResourceExhaustedError).
    """

    def __init__(self, step, kind, **kwargs):
        super().__init__(**kwargs)
        self.step, self.kind, self.calls = step, kind, 0

    def call(self, x, training=None):
        if not training or x.shape[0] is None:
            return x
        self.calls += 1
        if self.calls != self.step:
            return x
        if self.kind == "nan":
            return x * float("nan")
        if self.kind == "error":
            raise RuntimeError(f"injected fault at step {self.step}")
        if self.kind == "interrupt":
            raise KeyboardInterrupt
        if self.kind == "oom":
            import tensorflow as tf

            raise tf.errors.ResourceExhaustedError(None, None, "OOM (injected)")
        raise ValueError(self.kind)


def faulty_classifier(step, kind, input_dim=8, num_classes=3, optimizer="adam",
                      **compile_kwargs):
    model = keras.Sequential([
        keras.Input((input_dim,)),
        keras.layers.Dense(16, activation="relu"),
        FaultAt(step, kind),
        keras.layers.Dense(num_classes),
        keras.layers.Activation("softmax", dtype="float32"),
    ])
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy",
                  run_eagerly=True, **compile_kwargs)
    return model


def small_digits(train=512, val=200):
    """scikit-learn's digits, cut to `train` / `val` samples: what the tuner
    tests check (LR scaling, recorded metrics, failures, resumes) does not
    depend on the data's size, and a trial at batch 16 takes 32 steps, not 80."""
    import dataclasses

    import kbatch

    data = kbatch.datasets.load_digits()
    return dataclasses.replace(data, x_train=data.x_train[:train],
                               y_train=data.y_train[:train],
                               x_val=data.x_val[:val], y_val=data.y_val[:val])


def logistic_problem(seed):
    """A softmax regression trained one epoch, with its data (8192 samples)."""
    rng = np.random.default_rng(seed)
    n, d, c = 8192, 10, 3
    x = rng.normal(size=(n, d)).astype("float32")
    w = rng.normal(size=(d, c))
    y = np.argmax(x @ w + rng.gumbel(size=(n, c)), axis=1).astype("int32")
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((d,)),
                              keras.layers.Dense(c, activation="softmax")])
    model.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=256, epochs=1, verbose=0)
    return model, x, y


def exact_b_simple(model, x, y, scales=None):
    """tr(Sigma) / |G|^2 from per-example gradients, in float64 NumPy; with
    `scales` (kernel, bias), of the gradients multiplied by them."""
    weights, bias = (v.numpy().astype("float64") for v in model.trainable_variables)
    logits = x @ weights + bias
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    delta = p.copy()
    delta[np.arange(len(y)), y] -= 1.0  # d loss / d logits, per example
    per_example = np.concatenate(
        [(x[:, :, None] * delta[:, None, :]).reshape(len(y), -1), delta], axis=1)
    if scales is not None:
        per_example = per_example * np.concatenate(
            [np.ravel(s) for s in scales])[None, :]
    mean = per_example.mean(axis=0)
    trace = ((per_example - mean) ** 2).sum(axis=1).mean()
    return trace / (mean @ mean)


def logistic_b_simple_error(seed, measure):
    """`measure(model, x, y, seed)`'s relative error against the exact
    `B_simple` of `logistic_problem(seed)`, and what it returned."""
    model, x, y = logistic_problem(seed)
    exact = exact_b_simple(model, x, y)
    result = measure(model, x, y, seed)
    return abs(result.b_simple - exact) / exact, result


class OutOfMemoryAbove(keras.layers.Layer):
    """Raises TensorFlow's out-of-memory error for training batches above
    `limit`, after `after` such batches went through."""

    def __init__(self, limit, after=0, **kwargs):
        super().__init__(**kwargs)
        self.limit, self.after, self.seen = limit, after, 0

    def call(self, inputs, training=None):
        size = inputs.shape[0]
        if training and isinstance(size, int) and size > self.limit:
            self.seen += 1
            if self.seen > self.after:
                import tensorflow as tf

                raise tf.errors.ResourceExhaustedError(None, None, "OOM (injected)")
        return inputs


def oom_classifier(limit, after=0):
    """A small SGD classifier (run eagerly) whose training batches above
    `limit` raise TensorFlow's out-of-memory error (`OutOfMemoryAbove`)."""
    model = keras.Sequential([
        keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
        OutOfMemoryAbove(limit, after), keras.layers.Dense(3),
        keras.layers.Activation("softmax")])
    model.compile(keras.optimizers.SGD(0.05), "sparse_categorical_crossentropy",
                  run_eagerly=True)
    return model
