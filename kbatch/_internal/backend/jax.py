"""JAX: out-of-memory types and device facts.

(During `fit` the JAX trainer keeps variable values in its own state; Keras'
`Callback.model` puts them back into the variables when a callback reads it,
and the next step then reads assigned values such as a learning rate. kbatch's
callbacks rely on that, so nothing JAX-specific is needed here for it.)
"""

from __future__ import annotations


def oom_errors() -> tuple:
    return ()  # XLA's out-of-memory is a runtime error: see `is_oom`


def device_facts():
    import jax

    device = jax.devices()[0]
    if device.platform not in ("gpu", "tpu"):
        return None
    capability = getattr(device, "compute_capability", None)
    if isinstance(capability, str):
        capability = tuple(int(p) for p in capability.split("."))
    return {"kind": device.platform, "name": str(device.device_kind),
            "compute_capability": capability}


def micro_batch_norms(model, x, y, sample_weight, num_micro_batches, loss_scale,
                      precondition=None):
    """Squared gradient norms of micro-batches and of their mean (see the
    TensorFlow version), once; `compiled_micro_batch_norms` compiles it."""
    return compiled_micro_batch_norms(model, num_micro_batches)(
        x, y, sample_weight, loss_scale, precondition)


def compiled_micro_batch_norms(model, num_micro_batches):
    """`micro_batch_norms` as one function of `(x, y, sw, scale)`: a pure
    function of the variables' values, differentiated with `jax.grad` and
    compiled with `jax.jit` (eagerly when the model runs eagerly). The model
    runs in a `keras.StatelessScope`: what it assigns (batch-norm statistics,
    seed states, loss trackers) is dropped, so the model does not change."""
    import jax
    import jax.numpy as jnp
    import keras

    from kbatch._internal.losses import compute_loss

    k = num_micro_batches
    trainable = model.trainable_variables
    non_trainable = model.non_trainable_variables

    def loss_of(values, frozen, xi, yi, swi, loss_scale):
        mapping = list(zip(trainable, values)) + list(zip(non_trainable, frozen))
        with keras.StatelessScope(state_mapping=mapping):
            y_pred = model(xi, training=True)
            loss = compute_loss(model, xi, yi, y_pred, swi, training=True)
        return jnp.asarray(loss, jnp.float32) * loss_scale

    grad_of = jax.grad(loss_of)

    def norms(values, frozen, x, y, sample_weight, loss_scale, scales):
        def part(structure, i):
            if structure is None:
                return None
            return jax.tree_util.tree_map(
                lambda t: jnp.stack(jnp.split(jnp.asarray(t), k))[i], structure)

        sums = {}
        for i in range(k):
            grads = grad_of(values, frozen, part(x, i), part(y, i),
                            part(sample_weight, i), loss_scale)
            grads = [jnp.asarray(g, jnp.float32) / loss_scale for g in grads]
            variants = {"raw": grads}
            if scales is not None:
                variants["preconditioned"] = [g * p for g, p in zip(grads, scales)]
            for name, gs in variants.items():
                small, total = sums.get(name, (0.0, None))
                small = small + sum(jnp.sum(g * g) for g in gs)
                total = gs if total is None else [a + g for a, g in zip(total, gs)]
                sums[name] = (small, total)
        out = []
        for small, total in sums.values():
            out += [small / k, sum(jnp.sum((t / k) ** 2) for t in total)]
        return tuple(out)

    compiled = norms if getattr(model, "run_eagerly", False) else jax.jit(norms)

    def run(x, y, sample_weight, loss_scale, precondition=None):
        values = [v.value for v in trainable]
        frozen = [v.value for v in non_trainable]
        scales = (None if precondition is None
                  else [jnp.asarray(p, jnp.float32) for p in precondition])
        return tuple(float(v) for v in compiled(
            values, frozen, x, y, sample_weight, jnp.float32(loss_scale), scales))

    return run


def executing_eagerly(value) -> bool:
    import jax

    return not isinstance(value, jax.core.Tracer)
