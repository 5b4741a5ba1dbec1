"""Bad input is refused with a clear error, before anything touches the model."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import assert_same_state
from conftest import classification_data
from conftest import make_classifier
from conftest import model_state

import kbatch

X, Y = classification_data(n=64)


def _batched():
    return tf.data.Dataset.from_tensor_slices((X, Y)).batch(16)


class _Empty(keras.utils.PyDataset):
    def __init__(self):
        super().__init__()

    def __len__(self):
        return 0

    def __getitem__(self, i):
        raise IndexError(i)


def _empty_generator():
    return iter(())


CASES = [
    # (id, kwargs for find_lr (x, y default to X, Y), error type, message pattern)
    ("min_lr zero", {"min_lr": 0.0}, ValueError, r"`min_lr`.*Received: min_lr=0"),
    ("min_lr negative", {"min_lr": -1e-3}, ValueError, r"min_lr=-0.001"),
    ("min_lr string", {"min_lr": "small"}, TypeError, r"`min_lr`.*'small'"),
    ("max_lr below min_lr", {"min_lr": 0.1, "max_lr": 0.01}, ValueError,
     r"`max_lr` must be greater than `min_lr`.*min_lr=0.1, max_lr=0.01"),
    ("max_lr equal min_lr", {"min_lr": 0.1, "max_lr": 0.1}, ValueError,
     r"max_lr=0.1"),
    ("max_lr inf", {"max_lr": float("inf")}, ValueError, r"`max_lr` must be finite"),
    ("num_steps one", {"num_steps": 1}, ValueError, r"`num_steps`.*>= 2.*num_steps=1"),
    ("num_steps float", {"num_steps": 50.0}, TypeError,
     r"`num_steps` must be an integer.*50.0.*Pass 50"),
    ("num_steps bool", {"num_steps": True}, TypeError, r"num_steps=True"),
    ("unknown mode", {"mode": "cosine"}, ValueError,
     r"`mode` must be one of \('exponential', 'linear'\).*mode='cosine'"),
    ("smoothing one", {"smoothing": 1.0}, ValueError, r"`smoothing` must be < 1"),
    ("smoothing negative", {"smoothing": -0.1}, ValueError, r"smoothing=-0.1"),
    ("diverge_threshold one", {"diverge_threshold": 1.0}, ValueError,
     r"`diverge_threshold` must be > 1.*diverge_threshold=1"),
    ("verbose bad", {"verbose": 3}, ValueError, r"`verbose`.*verbose=3"),
    ("batch_size zero", {"batch_size": 0}, ValueError, r"`batch_size`.*batch_size=0"),
    ("batch_size float", {"batch_size": 32.5}, TypeError, r"batch_size=32.5"),
    ("batch_size above samples", {"batch_size": 65}, ValueError,
     r"must not exceed the number of samples \(64\).*batch_size=65"),
    ("empty arrays", {"x": X[:0], "y": Y[:0]}, ValueError, r"`x` is empty"),
    ("x/y length mismatch", {"y": Y[:50]}, ValueError,
     r"same number of samples.*x with 64 samples, y with 50"),
    ("batch_size with batched dataset", {"x": "batched", "y": None, "batch_size": 8},
     ValueError, r"already batched.*batch_size=8"),
    ("unbatched dataset without batch_size", {"x": "unbatched", "y": None},
     ValueError, r"not batched.*`batch_size` is required"),
    ("empty dataset", {"x": "empty_dataset", "y": None}, ValueError,
     r"empty tf.data.Dataset"),
    ("y with dataset", {"x": "batched"}, ValueError, r"`y` must be None"),
    ("empty PyDataset", {"x": "empty_pydataset", "y": None}, ValueError,
     r"empty PyDataset"),
    ("batch_size with PyDataset", {"x": "empty_pydataset", "y": None,
                                    "batch_size": 4}, ValueError,
     r"`batch_size` cannot be used with a `PyDataset`"),
    ("empty generator", {"x": "empty_generator", "y": None}, ValueError,
     r"empty generator"),
    ("seed negative", {"seed": -1}, ValueError, r"seed=-1"),
    ("validation_data wrong type", {"validation_data": "val"}, TypeError,
     r"`validation_data` must be a tuple"),
    ("validation_data mismatched", {"validation_data": (X, Y[:10])}, ValueError,
     r"`validation_data`.*64 inputs and 10 targets"),
]


def _resolve(kwargs):
    kwargs = dict(kwargs)
    x = kwargs.pop("x", X)
    y = kwargs.pop("y", Y)
    if isinstance(x, str):
        x = {
            "batched": _batched,
            "unbatched": lambda: tf.data.Dataset.from_tensor_slices((X, Y)),
            "empty_dataset": lambda: _batched().take(0),
            "empty_pydataset": _Empty,
            "empty_generator": _empty_generator,
        }[x]()
    return x, y, kwargs


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_refused_and_the_model_is_untouched(case):
    _, kwargs, error, pattern = case
    model = make_classifier()
    model.fit(X, Y, epochs=1, verbose=0)
    before = model_state(model)
    x, y, kwargs = _resolve(kwargs)
    with pytest.raises(error, match=pattern):
        kbatch.find_lr(model, x, y, **kwargs)
    assert_same_state(before, model_state(model))


def test_uncompiled_model_is_refused():
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(3)])
    with pytest.raises(ValueError, match=r"not compiled.*model.compile"):
        kbatch.find_lr(model, X, Y)


def test_something_that_is_not_a_model_is_refused():
    with pytest.raises(TypeError, match=r"needs a `keras.Model`.*str"):
        kbatch.find_lr("model.keras", X, Y)


def test_model_without_trainable_weights_is_refused():
    model = make_classifier()
    model.trainable = False
    model.compile("adam", "sparse_categorical_crossentropy")
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(ValueError, match=r"no trainable weights"):
        kbatch.find_lr(model, X, Y)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_callback_refuses_bad_arguments_at_construction():
    with pytest.raises(ValueError, match=r"max_lr"):
        kbatch.LRRangeTest(min_lr=1.0, max_lr=0.5)
    with pytest.raises(ValueError, match=r"mode='triangular'"):
        kbatch.LRRangeTest(mode="triangular")


def test_unknown_suggestion_method_is_refused():
    result = kbatch.LRFinderResult(np.logspace(-4, 0, 10), np.linspace(2, 1, 10))
    with pytest.raises(ValueError, match=r"`method` must be one of.*method='best'"):
        result.suggestion("best")


# ---------------------------------------------------------------------------
# Across the public API: every entry point refuses bad input with an error that
# names the argument and the value received, before it touches the model.

class NoLearningRateSGD(keras.optimizers.SGD):
    """An optimizer whose learning rate is managed elsewhere: after training
    has started it holds none that could be swept."""


class TwoOptimizerModel(keras.Model):
    """A GAN-style model: a second optimizer next to `model.optimizer`."""

    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(3, activation="softmax")
        self.critic_optimizer = keras.optimizers.Adam(1e-4)

    def call(self, x):
        return self.dense(x)


def _special_model(kind):
    if kind == "uncompiled":
        return keras.Sequential([keras.Input((8,)), keras.layers.Dense(3)])
    if kind == "no-lr":
        model = make_classifier(optimizer=NoLearningRateSGD())
    elif kind == "two-optimizers":
        model = TwoOptimizerModel()
        model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(X, Y, epochs=1, verbose=0)
    if kind == "no-lr":
        model.optimizer._learning_rate = None
    return model


def _with_nan(array, index):
    array = array.astype("float32").copy()
    array[index] = np.nan
    return array


def _inf_y():
    return _with_nan(Y.astype("float32"), 5) * -np.inf  # inf/nan targets


def _build():
    return make_classifier()


API_CASES = [
    # (id, call(model), error type, pattern naming the argument and the value)
    ("find_lr nan in x", lambda m: kbatch.find_lr(m, _with_nan(X, 3), Y),
     ValueError, r"`x` holds non-finite .*1 samples, the first at index 3"),
    ("find_lr inf in y", lambda m: kbatch.find_lr(m, X, _inf_y()),
     ValueError, r"`y` holds non-finite .*index 0"),
    ("find_lr uncompiled", "uncompiled", ValueError,
     r"`find_lr` needs a compiled model.*'sequential.*' is not compiled"),
    ("find_lr optimizer without lr", "no-lr", ValueError,
     r"needs an optimizer with a learning rate.*optimizer=NoLearningRateSGD"),
    ("find_lr two optimizers", "two-optimizers", ValueError,
     r"holds other optimizers too \(critic_optimizer\)"),
    ("find_lr x a scalar", lambda m: kbatch.find_lr(m, 42, Y), ValueError,
     r"`x` must hold arrays with a batch dimension.*x=array\(42\)"),
    ("find_lr x wrong shape", lambda m: kbatch.find_lr(m, X[:, :5], Y, num_steps=5),
     ValueError, r"`x` has samples of shape \(5,\).*expects \(8,\)"),
    ("noise x wrong shape",
     lambda m: kbatch.measure_noise_scale(m, X[:, None, :], Y, batch_size=32),
     ValueError, r"`x` has samples of shape \(1, 8\).*expects \(8,\)"),
    ("noise batch_size not divisible",
     lambda m: kbatch.measure_noise_scale(m, X, Y, batch_size=30, num_micro_batches=4),
     ValueError, r"`num_micro_batches`=4 must divide `batch_size`=30.*Try"),
    ("noise num_micro_batches one",
     lambda m: kbatch.measure_noise_scale(m, X, Y, batch_size=32, num_micro_batches=1),
     ValueError, r"`num_micro_batches`.*num_micro_batches=1"),
    ("noise batch_size missing type",
     lambda m: kbatch.measure_noise_scale(m, X, Y, batch_size="32"),
     TypeError, r"`batch_size`.*'32'"),
    ("noise nan in x",
     lambda m: kbatch.measure_noise_scale(m, _with_nan(X, 9), Y, batch_size=32),
     ValueError, r"`x` holds non-finite.*index 9"),
    ("noise x/y mismatch",
     lambda m: kbatch.measure_noise_scale(m, X, Y[:10], batch_size=32),
     ValueError, r"x with 64 samples, y with 10 samples"),
    ("max batch start zero",
     lambda m: kbatch.find_max_batch_size(m, X, Y, start=0), ValueError,
     r"`start`.*start=0"),
    ("max batch unknown mode",
     lambda m: kbatch.find_max_batch_size(m, X, Y, mode="linear"), ValueError,
     r"`mode`.*mode='linear'"),
    ("max batch margin one",
     lambda m: kbatch.find_max_batch_size(m, X, Y, margin=1.0), ValueError,
     r"`margin`.*margin=1"),
    ("max batch empty x",
     lambda m: kbatch.find_max_batch_size(m, X[:0], Y[:0]), ValueError,
     r"`x` is empty \(0 samples\)"),
    ("max batch nan in x",
     lambda m: kbatch.find_max_batch_size(m, _with_nan(X, 7), Y), ValueError,
     r"`x` holds non-finite.*index 7"),
    ("throughput not increasing",
     lambda m: kbatch.measure_throughput(m, X, Y, batch_sizes=[32, 16]),
     ValueError, r"`batch_sizes` must be strictly increasing.*\[32, 16\]"),
    ("throughput zero size",
     lambda m: kbatch.measure_throughput(m, X, Y, batch_sizes=[0, 8]),
     ValueError, r"`batch_sizes\[0\]`.*0"),
    ("throughput fraction",
     lambda m: kbatch.measure_throughput(m, X, Y, batch_sizes=[8], fraction=1.5),
     ValueError, r"`fraction`.*fraction=1.5"),
    ("throughput x/y mismatch",
     lambda m: kbatch.measure_throughput(m, X, Y[:3], batch_sizes=[8]),
     ValueError, r"x with 64 samples, y with 3 samples"),
    ("scaling law not callable",
     lambda m: kbatch.lr_scaling_law(m, X, Y, batch_sizes=[8, 16]), TypeError,
     r"`build_model` must be a function.*Received: <Sequential"),
    ("scaling law one size",
     lambda m: kbatch.lr_scaling_law(_build, X, Y, batch_sizes=[8]), ValueError,
     r"`batch_sizes` needs two or more.*\[8\]"),
    ("advise batched data",
     lambda m: kbatch.advise(_build, _batched()), TypeError,
     r"arrays.*Received: x of type _BatchDataset|x of type \w*Dataset"),
    ("advise nan in y",
     lambda m: kbatch.advise(_build, X, _with_nan(Y.astype("float32"), 11)),
     ValueError, r"`y` holds non-finite.*index 11"),
    ("scale_lr zero batch",
     lambda m: kbatch.scale_lr(0.1, 0, 64), ValueError, r"`from_batch`.*from_batch=0"),
    ("scale_lr float batch",
     lambda m: kbatch.scale_lr(0.1, 32, 64.5), TypeError, r"`to_batch`.*64.5"),
    ("scale_lr unknown rule",
     lambda m: kbatch.scale_lr(0.1, 32, 64, rule="cubic"), ValueError,
     r"`rule`.*rule='cubic'"),
    ("scale_lr noise_aware without noise",
     lambda m: kbatch.scale_lr(0.1, 32, 64, rule="noise_aware"), ValueError,
     r"`noise_scale`.*noise_scale=None"),
    ("scale_lr negative lr",
     lambda m: kbatch.scale_lr(-0.1, 32, 64), ValueError, r"`lr`.*lr=-0.1"),
    ("scale_adam beta_2 one",
     lambda m: kbatch.scale_adam(1e-3, 0.9, 1.0, 1e-7, 32, 64), ValueError,
     r"`beta_2`.*beta_2=1"),
    ("schedule negative warmup",
     lambda m: kbatch.scaling.BatchScaledSchedule(0.1, 32, 256, warmup_steps=-5),
     ValueError, r"`warmup_steps`.*warmup_steps=-5"),
    ("warmup zero steps",
     lambda m: kbatch.scaling.LinearWarmup(1e-3, 0.1, warmup_steps=-3),
     ValueError, r"`warmup_steps`.*warmup_steps=-3"),
    ("ghost bn virtual batch zero",
     lambda m: kbatch.GhostBatchNormalization(virtual_batch_size=0),
     ValueError, r"`virtual_batch_size`.*virtual_batch_size=0"),
    ("batch schedule decreasing boundaries",
     lambda m: kbatch.BatchSizeSchedule(32, boundaries=[10, 5]), ValueError,
     r"`boundaries`.*\[10, 5\]"),
    ("batch schedule factor below one",
     lambda m: kbatch.BatchSizeSchedule(32, boundaries=[10], factor=0.5),
     ValueError, r"`factor`.*factor=0.5"),
    ("scale callback bad rule",
     lambda m: kbatch.ScaleLearningRate(0.1, 32, 64, rule="quadratic"),
     ValueError, r"`rule`.*rule='quadratic'"),
    ("noise callback interval zero",
     lambda m: kbatch.GradientNoiseScale(interval=0), ValueError,
     r"`interval`.*interval=0"),
    ("noise callback beta one",
     lambda m: kbatch.GradientNoiseScale(beta=1.0), ValueError, r"`beta`.*beta=1"),
    ("range test callback max below min",
     lambda m: kbatch.LRRangeTest(min_lr=1.0, max_lr=0.1), ValueError,
     r"`max_lr` must be greater than `min_lr`.*min_lr=1, max_lr=0.1"),
    ("fit_with_batch_schedule not a schedule",
     lambda m: kbatch.fit_with_batch_schedule(m, X, Y, schedule=32, epochs=2),
     TypeError, r"`schedule`.*32"),
    ("fit_with_batch_schedule epochs zero",
     lambda m: kbatch.fit_with_batch_schedule(
         m, X, Y, schedule=kbatch.BatchSizeSchedule(8, [1]), epochs=0),
     ValueError, r"`epochs`.*epochs=0"),
    ("hypermodel empty batch sizes",
     lambda m: kbatch.tuner.BatchLRHyperModel(_build, batch_sizes=()), ValueError,
     r"`batch_sizes` is empty. Received: batch_sizes=\(\)"),
    ("hypermodel bad parametrization",
     lambda m: kbatch.tuner.BatchLRHyperModel(_build, parametrization="joint"),
     ValueError, r"`parametrization`.*'joint'"),
    ("hypermodel lr range reversed",
     lambda m: kbatch.tuner.BatchLRHyperModel(_build, learning_rate=(0.1, 0.01)),
     ValueError, r"`learning_rate`.*\(0.1, 0.01\)"),
    ("hypermodel unknown policy",
     lambda m: kbatch.tuner.BatchLRHyperModel(_build, mixed_precision="float8"),
     ValueError, r"`mixed_precision`.*'float8'"),
]


@pytest.mark.parametrize("case", API_CASES, ids=[c[0] for c in API_CASES])
def test_bad_input_across_the_api(case):
    _, call, error, pattern = case
    if isinstance(call, str):  # a model that is itself the bad input
        model = _special_model(call)
        run = lambda m: kbatch.find_lr(m, X, Y)  # noqa: E731
    else:
        model, run = make_classifier(), call
        model.fit(X, Y, epochs=1, verbose=0)
    optimizer = getattr(model, "optimizer", None)
    before = model_state(model) if optimizer is not None and optimizer.built else None
    weights = [np.array(v) for v in model.get_weights()] if model.built else None
    with pytest.raises(error, match=pattern):
        run(model)
    if before is not None:
        assert_same_state(before, model_state(model))
    if weights is not None:
        for a, b in zip(weights, model.get_weights()):
            assert a.tobytes() == b.tobytes()


def test_the_tables_cover_at_least_forty_cases():
    assert len(CASES) + len(API_CASES) >= 40 and len(API_CASES) >= 40
