"""TensorFlow: gradients of micro-batches, in float32, on unscaled gradients."""

from __future__ import annotations

import contextlib

import keras
import tensorflow as tf

from kbatch._internal.losses import compute_loss


def _squared_norm(grads):
    return tf.add_n([tf.reduce_sum(tf.square(tf.cast(g, tf.float32)))
                     for g in grads if g is not None])


def micro_batch_norms(model, x, y, sample_weight, num_micro_batches, loss_scale,
                      precondition=None):
    """Squared gradient norms of micro-batches and of their mean.

    The batch `(x, y, sample_weight)` is split into `num_micro_batches` equal
    parts. Returns `(mean_i |g_i|^2, |mean_i g_i|^2)` as float32 scalars; the
    mean of the micro-batch gradients is the gradient of the whole batch.
    With `precondition` (one float32 tensor per trainable variable), also the
    same two norms of the gradients multiplied by it: a 4-tuple.
    The loss is multiplied by `loss_scale` before differentiation (for float16)
    and the gradients divided by it after; non-finite results come back as is,
    for the caller to skip. Non-trainable variables (batch-norm statistics, seed
    states) are put back after the forward passes, so measuring has no side
    effect on the model. Must run inside a `tf.function` or eagerly.
    """
    variables = model.trainable_variables
    frozen = list(model.non_trainable_variables)
    saved = [tf.identity(v.value) for v in frozen]
    k = num_micro_batches

    def stack(t):  # (B, ...) -> (k, B / k, ...), keeping the static inner shape
        inner = [d if d is not None else tf.shape(t)[j + 1]
                 for j, d in enumerate(t.shape[1:])]
        return tf.reshape(t, [k, -1, *inner])

    xs = [stack(t) for t in keras.tree.flatten(x)]
    ys = None if y is None else [stack(t) for t in keras.tree.flatten(y)]
    sws = None if sample_weight is None else stack(sample_weight)

    scales = (None if precondition is None
              else [tf.cast(p, tf.float32) for p in precondition])

    def body(i, small, total, small_p, total_p):
        # one traced forward/backward pass, looped k times (a Python loop
        # would trace k copies: k times the compile time)
        xi = keras.tree.pack_sequence_as(x, [t[i] for t in xs])
        yi = None if y is None else keras.tree.pack_sequence_as(
            y, [t[i] for t in ys])
        swi = None if sws is None else sws[i]
        with tf.GradientTape() as tape:
            y_pred = model(xi, training=True)
            loss = compute_loss(model, xi, yi, y_pred, swi, training=True)
            loss = tf.cast(loss, tf.float32) * loss_scale
        grads = tape.gradient(loss, [v.value for v in variables])
        grads = [tf.zeros_like(v.value, dtype=tf.float32) if g is None
                 else tf.cast(g, tf.float32) / loss_scale
                 for g, v in zip(grads, variables)]
        if scales is not None:
            scaled = [g * p for g, p in zip(grads, scales)]
            small_p = small_p + _squared_norm(scaled)
            total_p = [a + g for a, g in zip(total_p, scaled)]
        return (i + 1, small + _squared_norm(grads),
                [a + g for a, g in zip(total, grads)], small_p, total_p)

    zeros = [tf.zeros_like(v.value, dtype=tf.float32) for v in variables]
    zero = tf.constant(0.0, tf.float32)
    _, small, total, small_p, total_p = tf.while_loop(
        lambda i, *_: i < k, body,
        (tf.constant(0), zero, zeros, zero, list(zeros) if scales else []),
        parallel_iterations=1)
    with tf.control_dependencies([small, *total]):
        for variable, value in zip(frozen, saved):
            variable.assign(value)
    norms = (small / k, _squared_norm([t / k for t in total]))
    if scales is None:
        return norms
    return (*norms, small_p / k, _squared_norm([t / k for t in total_p]))


def compiled_micro_batch_norms(model, num_micro_batches):
    """`micro_batch_norms` as one function of `(x, y, sw, scale)`: compiled,
    or eager when the model was compiled with `run_eagerly=True` (as `fit`
    would run it)."""

    def run(x, y, sample_weight, loss_scale, precondition=None):
        return micro_batch_norms(model, x, y, sample_weight, num_micro_batches,
                                 loss_scale, precondition)

    if getattr(model, "run_eagerly", False):
        return run
    return tf.function(run, reduce_retracing=True)


def oom_errors() -> tuple:
    return (tf.errors.ResourceExhaustedError,)


def device_facts():
    if tf.config.list_logical_devices("TPU"):
        return {"kind": "tpu", "name": "TPU", "compute_capability": None}
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return None
    details = tf.config.experimental.get_device_details(gpus[0])
    capability = details.get("compute_capability")
    return {"kind": "gpu", "name": details.get("device_name", gpus[0].name),
            "compute_capability": tuple(capability) if capability else None}


def model_scope(model):
    """The scope of the `tf.distribute` strategy `model` was compiled under,
    unless the caller is already inside a strategy scope (then nothing)."""
    strategy = getattr(model, "distribute_strategy", None)
    if strategy is None or tf.distribute.has_strategy():
        return contextlib.nullcontext()
    if strategy is tf.distribute.get_strategy():  # the default strategy
        return contextlib.nullcontext()
    return strategy.scope()


def executing_eagerly(value) -> bool:
    del value
    return tf.executing_eagerly()


def replicas_in_sync() -> int:
    """Replicas of the `tf.distribute` strategy whose replica context the
    code runs in (1 outside one)."""
    if not tf.distribute.has_strategy() or tf.distribute.in_cross_replica_context():
        return 1
    return int(tf.distribute.get_replica_context().num_replicas_in_sync)


def all_reduce(op: str, values):
    """Sum (`"sum"`) or mean (`"mean"`) of `values` over the replicas."""
    reduce = tf.distribute.ReduceOp.SUM if op == "sum" else tf.distribute.ReduceOp.MEAN
    return tf.distribute.get_replica_context().all_reduce(reduce, values)
