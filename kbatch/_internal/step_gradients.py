"""The gradients `fit` already computes, summed for the gradient noise scale.

Each training step hands its gradient to the optimizer's `apply`. Wrapping
that method (on the optimizer that owns the update, so a `LossScaleOptimizer`
passes unscaled, finite gradients) gives, at no extra forward or backward
pass, `|g_t|^2` of every step and the mean of `window` consecutive step
gradients `g_t`, whose squared norm is that of a `window` times larger batch.
Under gradient accumulation the `window` micro-batches of one update share
the weights, so the pair is exactly the two-batch measurement of McCandlish
et al.; without it the weights move between the steps of a window, a small
bias (measured in docs/adaptive.md) for a free estimate on every sample.
Under a `tf.distribute` strategy each replica's gradient is the small batch
and their all-reduced sum the big one: an exact pair at every step, for one
more all-reduce of the gradients.

On JAX the sums are optimizer variables (a compiled step carries them in its
state). Compiled steps update them without branches that assign, which every
backend compiles; eager steps count the window in Python. Finished windows go
to a ring of `capacity` slots, read at each epoch's end (`lost` counts those
overwritten before).
"""

from __future__ import annotations

import keras

from kbatch._internal import backend as _backend
from kbatch._internal import optimizer as _optimizer

__all__ = ["StepGradients"]

ops = keras.ops


class StepGradients:
    """Install on a compiled, built model; `read()` the finished windows."""

    def __init__(self, model, window: int, capacity: int = 4096):
        self.model = model
        self.window = int(window)
        self.capacity = int(capacity)
        self._base = None
        self._variables = None
        self._read = 0
        self.lost = 0

    @property
    def installed(self) -> bool:
        return self._base is not None

    def install(self):
        """Create the sums and wrap `apply`. Re-create the train function
        afterwards (`model.make_train_function(force=True)`)."""
        base = _optimizer.base_optimizer(self.model.optimizer)
        trainable = list(base._trainable_variables)
        shapes = [tuple(v.shape) for v in trainable]
        with _backend.model_scope(self.model):
            sums = _optimizer.add_variables(base, shapes, "kbatch_gns_sum")
            scalars = _optimizer.add_variables(
                base, [(), (), (self.capacity,), (self.capacity,), (), ()],
                "kbatch_gns")
        small, count, ring_small, ring_big, index, window = scalars
        window.assign(float(self.window))
        self._variables = sums + scalars
        self._rings = (ring_small, ring_big, index)
        self._window = window
        original = base.apply
        capacity = self.capacity

        state = self._eager = {"count": 0}  # eager runs: the window in Python

        def measuring_apply(grads, trainable_variables=None):
            grads = list(grads)
            replicas = _backend.replicas_in_sync()
            if replicas > 1:
                _replicas_pair(grads, replicas)
                return original(grads, trainable_variables) if (
                    trainable_variables is not None) else original(grads)
            variables = trainable if trainable_variables is None else list(
                trainable_variables)
            by_id = {id(v): g for v, g in zip(variables, grads)}
            square = 0.0
            totals = []
            for variable, total in zip(trainable, sums):
                g = by_id.get(id(variable))
                if g is None:
                    totals.append(total.value)
                    continue
                g = ops.cast(g, "float32")
                square = square + ops.sum(ops.square(g))
                totals.append(total.value + g)
            if _backend.executing_eagerly(square):
                _eager_window(state, square, totals)
            else:
                _compiled_window(square, totals)
            return original(grads, trainable_variables) if (
                trainable_variables is not None) else original(grads)

        def _replicas_pair(grads, replicas):
            # data-parallel: each replica's gradient is the small batch, their
            # all-reduced sum the big one (Keras scales each replica's loss by
            # 1 / replicas): a pair per step, no extra backward pass
            present = [ops.cast(g, "float32") for g in grads if g is not None]
            local = sum(ops.sum(ops.square(g * replicas)) for g in present)
            mean_small = _backend.all_reduce("mean", local)
            total = _backend.all_reduce("sum", present)
            big = sum(ops.sum(ops.square(t)) for t in total)
            slot = ops.cast(ops.mod(index.value, capacity), "int32")
            ring_small.assign(ops.slice_update(ring_small.value, [slot],
                                               ops.reshape(mean_small, (1,))))
            ring_big.assign(ops.slice_update(ring_big.value, [slot],
                                             ops.reshape(big, (1,))))
            index.assign(index.value + 1.0)

        def _finish(square, totals, size):
            """The window's pair, into the ring at the next slot."""
            big = 0.0
            for t in totals:
                big = big + ops.sum(ops.square(t / size))
            return (small.value + square) / size, big

        def _eager_window(state, square, totals):
            state["count"] += 1
            size = float(ops.convert_to_numpy(window.value))
            if state["count"] < size:
                for total, t in zip(sums, totals):
                    total.assign(t)
                small.assign(small.value + square)
                return
            state["count"] = 0
            mean_small, big = _finish(square, totals, size)
            slot = int(ops.convert_to_numpy(index.value)) % capacity
            ring_small.assign(ops.slice_update(ring_small.value, [slot],
                                               ops.reshape(mean_small, (1,))))
            ring_big.assign(ops.slice_update(ring_big.value, [slot],
                                             ops.reshape(big, (1,))))
            index.assign(index.value + 1.0)
            for total in sums:
                total.assign(ops.zeros(total.shape, "float32"))
            small.assign(0.0)

        def _compiled_window(square, totals):
            # branch-free (every backend compiles it): only the pair of a
            # finished window is computed (`cond`), and one slot written
            size = window.value
            counted = count.value + 1.0
            done = ops.greater_equal(counted, size)
            mean_small, big = ops.cond(
                done, lambda: _finish(square, totals, size),
                lambda: (ops.zeros((), "float32"), ops.zeros((), "float32")))
            slot = ops.cast(ops.mod(index.value, capacity), "int32")
            old_small = ops.slice(ring_small.value, [slot], [1])
            old_big = ops.slice(ring_big.value, [slot], [1])
            ring_small.assign(ops.slice_update(
                ring_small.value, [slot],
                ops.where(done, ops.reshape(mean_small, (1,)), old_small)))
            ring_big.assign(ops.slice_update(
                ring_big.value, [slot],
                ops.where(done, ops.reshape(big, (1,)), old_big)))
            index.assign(index.value + ops.cast(done, "float32"))
            keep = 1.0 - ops.cast(done, "float32")
            for total, t in zip(sums, totals):
                total.assign(t * keep)
            small.assign((small.value + square) * keep)
            count.assign(counted * keep)

        base.apply = measuring_apply
        self._base = base

    def set_window(self, window: int):
        """Windows of `window` steps from now on (the current one restarts)."""
        self.window = int(window)
        if self._base is not None:
            self._window.assign(float(window))
            for variable in self._variables[:-6]:
                variable.assign(ops.zeros(variable.shape, "float32"))
            self._variables[-5].assign(0.0)  # the step count of the window
            self._eager["count"] = 0
            self._variables[-6].assign(0.0)  # its sum of squares

    def uninstall(self):
        """Put `apply` back and take the sums off the optimizer."""
        if self._base is None:
            return
        if "apply" in vars(self._base):
            del self._base.apply
        _optimizer.remove_variables(self._base, self._variables)
        self._base = None

    def read(self):
        """`(mean |g_t|^2, |mean g_t|^2)` of each window finished since the
        last read (at most `capacity`; older ones are lost)."""
        ring_small, ring_big, index = self._rings
        total = int(ops.convert_to_numpy(index.value))
        small = ops.convert_to_numpy(ring_small.value)
        big = ops.convert_to_numpy(ring_big.value)
        first = max(self._read, total - self.capacity)
        self.lost += first - self._read
        pairs = [(float(small[i % self.capacity]), float(big[i % self.capacity]))
                 for i in range(first, total)]
        self._read = total
        return pairs
