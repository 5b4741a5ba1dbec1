"""`GhostBatchNormalization`."""

import keras
import numpy as np
import pytest

from kbatch.scaling import GhostBatchNormalization


def _x(n=12, seed=0, shape=(5, 3)):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, *shape)) * 3 + 1).astype("float32")


def _np(t):
    return keras.ops.convert_to_numpy(t)


@pytest.mark.parametrize("axis", [-1, 1])
def test_equals_batch_normalization_when_the_ghost_is_the_whole_batch(axis):
    x = _x()
    bn = keras.layers.BatchNormalization(axis=axis, momentum=0.9)
    gbn = GhostBatchNormalization(virtual_batch_size=12, axis=axis, momentum=0.9)
    for _ in range(3):
        np.testing.assert_allclose(_np(gbn(x, training=True)),
                                   _np(bn(x, training=True)), atol=2e-6)
    np.testing.assert_allclose(gbn.moving_mean.numpy(), bn.moving_mean.numpy(),
                               atol=1e-6)
    np.testing.assert_allclose(gbn.moving_variance.numpy(),
                               bn.moving_variance.numpy(), rtol=1e-5)
    np.testing.assert_allclose(_np(gbn(x, training=False)),
                               _np(bn(x, training=False)), atol=2e-6)


def test_each_ghost_batch_is_normalized_with_its_own_statistics():
    x = _x(n=12)
    x[4:8] += 100.0  # the second ghost batch is far off
    gbn = GhostBatchNormalization(virtual_batch_size=4, center=False, scale=False,
                                  epsilon=0.0)
    y = _np(gbn(x, training=True))
    for g in range(3):
        part = x[4 * g : 4 * (g + 1)]
        expected = (part - part.mean(axis=(0, 1))) / part.std(axis=(0, 1))
        np.testing.assert_allclose(y[4 * g : 4 * (g + 1)], expected, atol=1e-4)
    # moving mean moved towards the mean of the ghost means (= the batch mean)
    np.testing.assert_allclose(gbn.moving_mean.numpy(),
                               0.01 * x.mean(axis=(0, 1)), rtol=1e-5)
    # moving variance towards the mean of the ghost variances, not the batch's
    ghost_vars = np.mean([x[4 * g : 4 * (g + 1)].var(axis=(0, 1)) for g in range(3)],
                         axis=0)
    np.testing.assert_allclose(gbn.moving_variance.numpy(),
                               0.99 + 0.01 * ghost_vars, rtol=1e-5)


def test_a_remainder_forms_a_smaller_last_ghost_batch():
    x = _x(n=10)
    gbn = GhostBatchNormalization(virtual_batch_size=4, center=False, scale=False,
                                  epsilon=0.0)
    y = _np(gbn(x, training=True))
    last = x[8:]
    np.testing.assert_allclose(y[8:], (last - last.mean(axis=(0, 1)))
                               / last.std(axis=(0, 1)), atol=1e-4)


def test_inference_uses_the_moving_statistics():
    x = _x()
    gbn = GhostBatchNormalization(virtual_batch_size=4)
    gbn(x, training=True)
    mean, var = gbn.moving_mean.numpy(), gbn.moving_variance.numpy()
    expected = (x - mean) / np.sqrt(var + gbn.epsilon)
    np.testing.assert_allclose(_np(gbn(x, training=False)), expected, rtol=1e-5,
                               atol=1e-5)


def test_trains_in_fit_and_round_trips_through_a_saved_model(tmp_path):
    x = _x(n=50).reshape(50, -1)
    y = x.sum(axis=1, keepdims=True)
    model = keras.Sequential([keras.Input((15,)),
                              GhostBatchNormalization(virtual_batch_size=8),
                              keras.layers.Dense(1)])
    model.compile("adam", "mse")
    model.fit(x, y, batch_size=20, epochs=2, verbose=0)  # 20, 20, 10: remainders
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.layers[0].virtual_batch_size == 8
    np.testing.assert_allclose(loaded.predict(x, verbose=0),
                               model.predict(x, verbose=0), rtol=1e-6)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_computes_statistics_in_float32(policy):
    keras.config.set_dtype_policy(policy)
    gbn = GhostBatchNormalization(virtual_batch_size=4)
    y = gbn(_x(n=8), training=True)
    assert keras.backend.standardize_dtype(y.dtype) == policy.split("_")[1]
    assert gbn.moving_mean.dtype == "float32"
    assert np.isfinite(_np(keras.ops.cast(y, "float32"))).all()


@pytest.mark.parametrize("kwargs, error, pattern", [
    ({"virtual_batch_size": 0}, ValueError, r"virtual_batch_size=0"),
    ({"virtual_batch_size": 8.0}, TypeError, r"virtual_batch_size=8.0"),
    ({"renorm": True}, ValueError, r"does not support `renorm=True`"),
])
def test_bad_arguments(kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        GhostBatchNormalization(**kwargs)
