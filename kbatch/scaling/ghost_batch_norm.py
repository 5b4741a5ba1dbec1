"""Layers: `GhostBatchNormalization`."""

from __future__ import annotations

import keras
from keras import ops

from kbatch._internal.validate import check_int

__all__ = [
    "GhostBatchNormalization",
]


@keras.saving.register_keras_serializable(package="kbatch")
class GhostBatchNormalization(keras.layers.BatchNormalization):
    """Batch normalization over small "ghost" batches (Hoffer et al., 2017).

    During training the batch is split into consecutive ghost batches of
    `virtual_batch_size` samples, and each is normalized with its own mean and
    variance, so that a large batch keeps the regularizing noise of small-batch
    statistics ("train longer, generalize better"). The moving statistics used
    at inference are updated with the average of the ghost batches' means and
    variances; inference is exactly `BatchNormalization`'s.

    When `virtual_batch_size` does not divide the batch, the last ghost batch
    is smaller (it holds the remainder); nothing is dropped or padded. With
    `virtual_batch_size` equal to the batch size, the layer computes exactly
    what `BatchNormalization` computes.

    Reference: E. Hoffer, I. Hubara, D. Soudry, "Train longer, generalize
    better: closing the generalization gap in large batch training of neural
    networks", NeurIPS 2017, https://arxiv.org/abs/1705.08741.

    Args:
        virtual_batch_size: Integer. Samples per ghost batch. Defaults to `32`.
        **kwargs: Any argument of `keras.layers.BatchNormalization` except
            `renorm` and `synchronized`.

    Example:

    >>> import numpy as np
    >>> layer = GhostBatchNormalization(virtual_batch_size=4)
    >>> x = np.random.rand(8, 3).astype("float32")
    >>> y = keras.ops.convert_to_numpy(layer(x, training=True))
    >>> bool(np.allclose(y[:4].mean(axis=0), 0, atol=1e-5))  # per ghost batch
    True
    """

    def __init__(self, virtual_batch_size: int = 32, **kwargs):
        for unsupported in ("renorm", "synchronized"):
            if kwargs.get(unsupported):
                raise ValueError(
                    f"GhostBatchNormalization does not support `{unsupported}=True`. "
                    f"Received: {unsupported}={kwargs[unsupported]!r}"
                )
        super().__init__(**kwargs)
        self.virtual_batch_size = check_int(
            "virtual_batch_size", virtual_batch_size, minimum=1
        )

    def call(self, inputs, training=None, mask=None):
        if not (training and self.trainable) or mask is not None:
            return super().call(inputs, training=training, mask=mask)
        dtype = keras.backend.result_type(inputs.dtype, "float32")
        x = ops.cast(inputs, dtype)
        axis = self.axis if self.axis >= 0 else len(x.shape) + self.axis
        channels_last = ops.moveaxis(x, axis, -1)
        moved_shape = ops.shape(channels_last)
        batch = moved_shape[0]
        flat = ops.reshape(channels_last, (batch, -1, moved_shape[-1]))  # (n, m, C)

        ghost = ops.floor_divide(ops.arange(batch), self.virtual_batch_size)
        num_ghosts = ops.floor_divide(batch + self.virtual_batch_size - 1,
                                      self.virtual_batch_size)
        per_sample = ops.cast(ops.shape(flat)[1], dtype)
        sizes = ops.segment_sum(ops.ones((batch,), dtype), ghost,
                                num_segments=num_ghosts) * per_sample  # (G,)
        sums = ops.segment_sum(ops.sum(flat, axis=1), ghost, num_segments=num_ghosts)
        means = sums / sizes[:, None]  # (G, C)
        centered = flat - ops.take(means, ghost, axis=0)[:, None, :]
        squares = ops.segment_sum(ops.sum(ops.square(centered), axis=1), ghost,
                                  num_segments=num_ghosts)
        variances = squares / sizes[:, None]

        gamma = ops.cast(self.gamma, dtype) if self.scale else 1.0
        beta = ops.cast(self.beta, dtype) if self.center else 0.0
        inv = ops.take(ops.rsqrt(variances + self.epsilon), ghost, axis=0)
        normed = centered * inv[:, None, :] * gamma + beta
        outputs = ops.moveaxis(ops.reshape(normed, moved_shape), -1, axis)

        weights = sizes / ops.sum(sizes)
        mean = ops.sum(means * weights[:, None], axis=0)
        variance = ops.sum(variances * weights[:, None], axis=0)
        momentum = self.momentum
        self.moving_mean.assign(
            ops.cast(self.moving_mean, dtype) * momentum + mean * (1.0 - momentum)
        )
        self.moving_variance.assign(
            ops.cast(self.moving_variance, dtype) * momentum
            + variance * (1.0 - momentum)
        )
        return ops.cast(outputs, self.compute_dtype)

    def get_config(self):
        return {**super().get_config(), "virtual_batch_size": self.virtual_batch_size}
