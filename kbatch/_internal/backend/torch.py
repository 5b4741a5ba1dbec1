"""PyTorch: out-of-memory types and device facts."""

from __future__ import annotations


def oom_errors() -> tuple:
    import torch

    return (torch.OutOfMemoryError,)


def device_facts():
    import torch

    if not torch.cuda.is_available():
        return None
    return {"kind": "gpu", "name": torch.cuda.get_device_name(0),
            "compute_capability": tuple(torch.cuda.get_device_capability(0))}


def micro_batch_norms(model, x, y, sample_weight, num_micro_batches, loss_scale,
                      precondition=None):
    """Squared gradient norms of micro-batches and of their mean (see the
    TensorFlow version): `(mean_i |g_i|^2, |mean_i g_i|^2)` as floats, in
    float32 on unscaled gradients; non-trainable variables are put back."""
    import keras
    import torch

    from kbatch._internal.losses import compute_loss

    k = num_micro_batches
    variables = model.trainable_variables
    frozen = list(model.non_trainable_variables)
    saved = [keras.ops.copy(v.value) for v in frozen]
    params = [v.value for v in variables]

    def part(structure, i):
        if structure is None:
            return None
        return keras.tree.map_structure(
            lambda t: torch.chunk(keras.ops.convert_to_tensor(t), k)[i], structure)

    scales = (None if precondition is None else
              [keras.ops.convert_to_tensor(p, "float32") for p in precondition])
    small = torch.zeros((), dtype=torch.float32)
    small_p = torch.zeros((), dtype=torch.float32)
    total = total_p = None
    try:
        for i in range(k):
            xi, yi, swi = part(x, i), part(y, i), part(sample_weight, i)
            y_pred = model(xi, training=True)
            loss = compute_loss(model, xi, yi, y_pred, swi, training=True)
            loss = loss.to(torch.float32) * loss_scale
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            grads = [torch.zeros_like(p, dtype=torch.float32) if g is None
                     else g.to(torch.float32) / loss_scale
                     for g, p in zip(grads, params)]
            small = small + sum((g * g).sum() for g in grads)
            total = grads if total is None else [a + g for a, g in zip(total, grads)]
            if scales is not None:
                scaled = [g * p for g, p in zip(grads, scales)]
                small_p = small_p + sum((g * g).sum() for g in scaled)
                total_p = scaled if total_p is None else [
                    a + g for a, g in zip(total_p, scaled)]
    finally:
        for variable, value in zip(frozen, saved):
            variable.assign(value)
    big = sum(((t / k) ** 2).sum() for t in total)
    if scales is None:
        return float(small / k), float(big)
    big_p = sum(((t / k) ** 2).sum() for t in total_p)
    return float(small / k), float(big), float(small_p / k), float(big_p)


def compiled_micro_batch_norms(model, num_micro_batches):
    """`micro_batch_norms` as one function of `(x, y, sw, scale)` (eager)."""

    def run(x, y, sample_weight, loss_scale, precondition=None):
        return micro_batch_norms(model, x, y, sample_weight, num_micro_batches,
                                 loss_scale, precondition)

    return run


def executing_eagerly(value) -> bool:
    del value
    import torch

    return not torch.compiler.is_compiling()


def rng_state():
    """PyTorch's global generator (its data loaders draw a seed per pass)."""
    import torch

    return torch.get_rng_state()


def set_rng_state(state):
    import torch

    torch.set_rng_state(state)
