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

import math

import keras
import numpy as np

from kbatch._internal import backend as _backend
from kbatch._internal import optimizer as _optimizer

__all__ = ["StepGradients"]

ops = keras.ops


class StepGradients:
    """Install on a compiled, built model; `read()` the finished windows."""

    def __init__(self, model, window: int, interval: int = 1,
                 capacity: int = 4096, switched: bool = False):
        self.model = model
        # switched: the caller runs Keras' own train function, or one of two
        # measuring ones, traced (and, eagerly, run) with `armed` set to
        # "accumulate" (a window's first steps) or "finish" (its last step)
        self.switched = bool(switched)
        self.armed = None
        self.window = int(window)
        self.interval = int(interval)
        self._period = self.window
        self.capacity = int(capacity)
        self._base = None
        self._variables = None
        self._read = 0
        self.lost = 0

    @property
    def period(self) -> int:
        """Steps from the start of one window to the next."""
        return self._period

    @property
    def installed(self) -> bool:
        return self._base is not None

    def install(self):
        """Create the sums and wrap `apply`. Re-create the train function
        afterwards (`model.make_train_function(force=True)`)."""
        base = _optimizer.base_optimizer(self.model.optimizer)
        trainable = list(base._trainable_variables)
        # one flat sum of every variable's gradient: a handful of operations
        # per measured step, whatever the number of variables
        sizes = [max(1, math.prod(v.shape)) for v in trainable]
        with _backend.model_scope(self.model):
            sums = _optimizer.add_variables(base, [(sum(sizes),)],
                                            "kbatch_gns_sum")
            scalars = _optimizer.add_variables(
                base, [(), (), (self.capacity,), (self.capacity,), (), (), (), ()],
                "kbatch_gns")
        small, count, ring_small, ring_big, index, window, period, phase = scalars
        (total,) = sums
        self._variables = sums + scalars
        self._rings = (ring_small, ring_big, index)
        self._controls = (window, period, phase, count, small)
        self._sums = sums
        self._eager = {"count": 0, "phase": 0}
        self.set_window(self.window)
        original = base.apply
        capacity = self.capacity
        jax_backend = keras.config.backend() == "jax"

        def flat(gs):
            parts = [ops.reshape(ops.cast(g, "float32"), (-1,)) if g is not None
                     else ops.zeros((size,), "float32") for g, size in zip(gs, sizes)]
            return parts[0] if len(parts) == 1 else ops.concatenate(parts)

        def current():
            return (total.value, small.value, count.value, ring_small.value,
                    ring_big.value, index.value)

        def assign_all(values):
            for variable, value in zip((total, small, count, ring_small, ring_big,
                                        index), values):
                variable.assign(value)

        def record(ring_s, ring_b, index_v, mean_small, big, done=None):
            """The rings with a window's pair written at its slot (when done)."""
            slot = ops.cast(ops.mod(index_v, capacity), "int32")
            mean_small, big = ops.reshape(mean_small, (1,)), ops.reshape(big, (1,))
            if done is not None:
                mean_small = ops.where(done, mean_small, ops.slice(ring_s, [slot], [1]))
                big = ops.where(done, big, ops.slice(ring_b, [slot], [1]))
            return (ops.slice_update(ring_s, [slot], mean_small),
                    ops.slice_update(ring_b, [slot], big))

        def advanced(gs, state):
            """The state after one more step of the window (pure)."""
            total_v, small_v, count_v, ring_s, ring_b, index_v = state
            g = flat(gs)
            square = ops.sum(ops.square(g))
            new_total = total_v + g
            size = window.value
            counted = count_v + 1.0
            done = ops.greater_equal(counted, size)
            mean_small = (small_v + square) / size
            big = ops.sum(ops.square(new_total)) / (size * size)
            ring_s, ring_b = record(ring_s, ring_b, index_v, mean_small, big, done)
            keep = 1.0 - ops.cast(done, "float32")
            return (new_total * keep, (small_v + square) * keep, counted * keep,
                    ring_s, ring_b, index_v + ops.cast(done, "float32"))

        def measuring_apply(grads, trainable_variables=None):
            grads = list(grads)
            replicas = _backend.replicas_in_sync()
            if replicas > 1:
                _replicas_pair(grads, replicas)
            elif self.switched and not self.armed:
                pass  # Keras' own step: nothing measured, nothing added
            else:
                variables = trainable if trainable_variables is None else list(
                    trainable_variables)
                by_id = {id(v): g for v, g in zip(variables, grads)}
                if self.switched:  # this function's every step: a known part
                    _switched_step([by_id.get(id(v)) for v in trainable],
                                   finish=self.armed == "finish")
                else:
                    _measure([by_id.get(id(v)) for v in trainable])
            return original(grads, trainable_variables) if (
                trainable_variables is not None) else original(grads)

        def _switched_step(gs, finish):
            # the caller knows where in the window the step is: no branches
            g = flat(gs)
            square = ops.sum(ops.square(g))
            new_total = total.value + g
            if not finish:
                total.assign(new_total)
                small.assign(small.value + square)
                return
            size = window.value
            ring_s, ring_b = record(
                ring_small.value, ring_big.value, index.value,
                (small.value + square) / size,
                ops.sum(ops.square(new_total)) / (size * size))
            ring_small.assign(ring_s)
            ring_big.assign(ring_b)
            index.assign(index.value + 1.0)
            total.assign(ops.zeros(total.shape, "float32"))
            small.assign(ops.zeros((), "float32"))

        def _measure(gs):
            # a window of `window` steps at the start of every `period` steps
            probe = next((g for g in gs if g is not None), None)
            if probe is None:
                return
            if _backend.executing_eagerly(probe):
                eager = self._eager
                active = eager["phase"] < self.window
                eager["phase"] = (eager["phase"] + 1) % self._period
                if active:
                    assign_all(advanced(gs, current()))
                return
            phase_v = phase.value
            active = ops.less(phase_v, window.value)
            phase.assign(ops.mod(phase_v + 1.0, period.value))
            if jax_backend:  # a compiled JAX step only returns values
                # (fresh branch functions: JAX caches a branch by its function,
                # with the values it closes over, across traces)
                assign_all(ops.cond(active, lambda: advanced(gs, current()),
                                    lambda: current()))
            else:  # a TensorFlow graph runs the branch's assignments if taken
                def measure():
                    assign_all(advanced(gs, current()))
                    return ops.zeros((), "float32")

                ops.cond(active, measure, lambda: ops.zeros((), "float32"))

        def _replicas_pair(grads, replicas):
            # data-parallel: each replica's gradient is the small batch, their
            # all-reduced sum the big one (Keras scales each replica's loss by
            # 1 / replicas): a pair per step, no extra backward pass
            present = [ops.cast(g, "float32") for g in grads if g is not None]
            local = sum(ops.sum(ops.square(g * replicas)) for g in present)
            mean_small = _backend.all_reduce("mean", local)
            reduced = _backend.all_reduce("sum", present)
            big = sum(ops.sum(ops.square(t)) for t in reduced)
            ring_s, ring_b = record(ring_small.value, ring_big.value, index.value,
                                    mean_small, big)
            ring_small.assign(ring_s)
            ring_big.assign(ring_b)
            index.assign(index.value + 1.0)

        base.apply = measuring_apply
        self._base = base

    def set_window(self, window: int):
        """Windows of `window` steps, one at the start of every `interval`
        steps (rounded up to a multiple of `window`, so that windows keep in
        step with an accumulation of `window` micro-batches), from now on."""
        self.window = int(window)
        self._period = max(1, math.ceil(self.interval / self.window)) * self.window
        if self._variables is None:
            return
        window_v, period, phase, count, small = self._controls
        window_v.assign(float(self.window))
        period.assign(float(self._period))
        for variable in (phase, count, small):
            variable.assign(0.0)
        for variable in self._sums:
            variable.assign(ops.zeros(variable.shape, "float32"))
        self._eager.update(count=0, phase=0)

    def uninstall(self):
        """Put `apply` back and take the sums off the optimizer."""
        if self._base is None:
            return
        if "apply" in vars(self._base):
            del self._base.apply
        _optimizer.remove_variables(self._base, self._variables)
        self._base = None

    def state(self):
        """A copy of the sums and counters (to undo steps that must not count,
        such as a trial branch's)."""
        values = [np.array(ops.convert_to_numpy(v.value), copy=True)
                  for v in self._variables]
        return values, dict(self._eager), self._read, self.lost

    def set_state(self, state):
        values, eager, read, lost = state
        for variable, value in zip(self._variables, values):
            variable.assign(value)
        self._eager.update(eager)
        self._read, self.lost = read, lost

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
