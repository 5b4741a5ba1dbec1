"""Turn what users pass to `model.fit` into an endless stream of batches.

A range test needs a fixed number of steps whatever the size of the data, so
every input is cycled: NumPy arrays (and anything `np.asarray` accepts, in the
nested structures Keras allows), `tf.data.Dataset`, `keras.utils.PyDataset` and
Python generators. Streams are consumed by a single `fit(epochs=1,
steps_per_epoch=...)` call, so epoch boundaries never fall inside a test.

Arrays are batched here, with a local random generator: the caller's global
NumPy, Python and TensorFlow random states are never touched.
"""

from __future__ import annotations

import collections.abc
import inspect
import math
import sys
from dataclasses import dataclass

import keras
import numpy as np

from kbatch._internal.validate import check_int

DEFAULT_BATCH_SIZE = 32


def is_tf_dataset(x) -> bool:
    tf = sys.modules.get("tensorflow")
    return tf is not None and isinstance(x, tf.data.Dataset)


def is_py_dataset(x) -> bool:
    return isinstance(x, keras.utils.PyDataset)


def is_generator(x) -> bool:
    if isinstance(x, (np.ndarray, str, bytes, dict, list, tuple)):
        return False
    return inspect.isgenerator(x) or isinstance(x, collections.abc.Iterator)


def is_array_like(x) -> bool:
    """Arrays (or nested structures of them), as opposed to a data pipeline."""
    return not (is_tf_dataset(x) or is_py_dataset(x) or is_generator(x))


def _leaves(structure):
    return keras.tree.flatten(structure)


def to_numpy_structure(structure):
    def convert(value):
        if isinstance(value, np.ndarray):
            return value
        if keras.ops.is_tensor(value):
            return keras.ops.convert_to_numpy(value)
        return np.asarray(value)

    if isinstance(structure, (list, tuple)) and structure and not any(
        isinstance(v, (list, tuple, dict, np.ndarray)) or keras.ops.is_tensor(v)
        for v in structure
    ):
        # A flat list of numbers is one array, not several inputs.
        return np.asarray(structure)
    return keras.tree.map_structure(convert, structure)


def num_samples(structure, name: str) -> int:
    """The common leading dimension of the arrays in `structure`."""
    sizes = set()
    for leaf in _leaves(structure):
        if leaf.ndim == 0:
            raise ValueError(
                f"Argument `{name}` must hold arrays with a batch dimension. "
                f"Received a scalar: {name}={leaf!r}"
            )
        sizes.add(int(leaf.shape[0]))
    if len(sizes) != 1:
        raise ValueError(
            f"All arrays in `{name}` must have the same number of samples. "
            f"Received arrays with {sorted(sizes)} samples."
        )
    return sizes.pop()


def _check_finite(structure, name):
    for leaf in _leaves(structure):
        if leaf.dtype.kind not in "fc" or leaf.size == 0:
            continue
        finite = np.isfinite(leaf.reshape(leaf.shape[0], -1)).all(axis=1)
        if not finite.all():
            bad = np.flatnonzero(~finite)
            raise ValueError(
                f"Argument `{name}` holds non-finite values (NaN or inf) in "
                f"{bad.size} samples, the first at index {bad[0]}. Clean or drop "
                "them: training on them makes the loss NaN."
            )


def check_arrays(x, y=None, *, name="x"):
    """Arrays as NumPy, checked: not empty, equal lengths, finite values.

    Returns:
        `(x, y, num_samples)`.
    """
    x = to_numpy_structure(x)
    n = num_samples(x, name)
    if n == 0:
        raise ValueError(
            f"Argument `{name}` is empty (0 samples). Pass at least one batch.")
    _check_finite(x, name)
    if y is not None:
        y = to_numpy_structure(y)
        n_y = num_samples(y, "y")
        if n_y != n:
            raise ValueError(
                f"Arguments `{name}` and `y` must have the same number of samples. "
                f"Received: {name} with {n} samples, y with {n_y} samples."
            )
        _check_finite(y, "y")
    # Text inputs can be fine (a model that starts with TextVectorization);
    # text targets never are: every Keras loss needs numbers.
    for arg, structure in (("y", y),):
        for leaf in _leaves(structure) if structure is not None else ():
            if leaf.dtype.kind in "USO":
                what = "Python objects" if leaf.dtype.kind == "O" else "text"
                example = str(leaf.reshape(-1)[0]) if leaf.size else ""
                raise ValueError(
                    f"Argument `{arg}` holds {what} (e.g. {example!r}), which a "
                    "model cannot train on. Encode it as numbers first: class "
                    "labels as integers (`keras.layers.StringLookup`, or "
                    "scikit-learn's `LabelEncoder`).")
    return x, y, n


def unbatched_to_arrays(dataset, y=None):
    """`(x, y)` as NumPy arrays from an unbatched `tf.data.Dataset` of
    `(x, y)` samples (it must be finite and fit in memory)."""
    _check_no_y(y, "tf.data.Dataset")
    cardinality = int(dataset.cardinality())
    if cardinality < 0:
        raise ValueError(
            "The tf.data.Dataset must be finite (it is read into memory). "
            "Received a dataset of unknown or infinite length; `.take(n)` it.")
    spec = dataset.element_spec
    if not isinstance(spec, tuple) or len(spec) != 2:
        raise ValueError(
            "The tf.data.Dataset must yield unbatched `(x, y)` pairs. Received "
            f"elements of {spec!r}.")
    batches = list(dataset.batch(max(1, min(cardinality, 4096))))
    if not batches:
        raise ValueError("The tf.data.Dataset is empty.")
    parts = [keras.tree.map_structure(keras.ops.convert_to_numpy, b) for b in batches]
    return _concatenate([p[0] for p in parts]), _concatenate([p[1] for p in parts])


def _concatenate(batches):
    """One structure of arrays from batches of the same structure."""
    return keras.tree.map_structure(lambda *a: np.concatenate(a), *batches)


def take_samples(structure, index):
    """The samples at `index` (an integer array or a slice) of every array."""
    if structure is None:
        return None
    return keras.tree.map_structure(lambda a: a[index], structure)


def py_dataset_to_arrays(x, limit):
    """`(x, y)` as NumPy arrays from the first batches of a `PyDataset` (or a
    function `batch_size -> PyDataset`), up to about `limit` samples."""
    dataset = x if is_py_dataset(x) else x(DEFAULT_BATCH_SIZE)
    if not is_py_dataset(dataset):
        raise TypeError("When `x` is a function it must return a "
                        f"`keras.utils.PyDataset`. Received: {type(dataset).__name__}")
    parts, seen = [], 0
    for index in range(len(dataset)):
        batch = keras.tree.map_structure(keras.ops.convert_to_numpy,
                                         dataset[index])
        bx, by, _ = keras.utils.unpack_x_y_sample_weight(
            batch if isinstance(batch, tuple) else (batch,))
        parts.append((bx, by))
        seen += batch_size_of((bx,))
        if seen >= limit:
            break
    if not parts:
        raise ValueError("The PyDataset is empty.")
    x = _concatenate([p[0] for p in parts])
    return x, (None if parts[0][1] is None else _concatenate([p[1] for p in parts]))


def batch_size_of(batch) -> int:
    """Leading dimension of the first input of a batch `(x, y, sample_weight)`."""
    x, _, _ = keras.utils.unpack_x_y_sample_weight(batch)
    leaf = _leaves(x)[0]
    return int(leaf.shape[0])


class _CyclingArrays(keras.utils.PyDataset):
    """Batches of arrays, reshuffled at every pass, always full.

    The index stream is the concatenation of one permutation per pass; batch `i`
    is positions `[i*b, (i+1)*b)` of it, so any batch can be computed on its
    own (deterministically from `seed`) and no batch is ever short.
    """

    def __init__(self, x, y, sample_weight, batch_size, num_batches, shuffle, seed):
        super().__init__()
        self.x, self.y, self.sample_weight = x, y, sample_weight
        self.batch_size = batch_size
        self._num_batches = num_batches
        self.shuffle = shuffle
        self.seed = seed
        self.n = num_samples(x, "x")
        self._cache = {}

    @property
    def num_batches(self):
        return self._num_batches

    def __len__(self):
        return self._num_batches

    def _permutation(self, cycle):
        if not self.shuffle:
            return np.arange(self.n)
        perm = self._cache.get(cycle)
        if perm is None:
            perm = np.random.default_rng([self.seed, cycle]).permutation(self.n)
            self._cache = {cycle: perm, **{k: v for k, v in self._cache.items()
                                           if k >= cycle - 1}}
        return perm

    def indices(self, index):
        start = index * self.batch_size
        stop = start + self.batch_size
        parts = []
        while start < stop:
            cycle, offset = divmod(start, self.n)
            take = min(stop - start, self.n - offset)
            parts.append(self._permutation(cycle)[offset : offset + take])
            start += take
        return np.concatenate(parts)

    def __getitem__(self, index):
        return self._take(self.indices(index))

    def nbytes(self) -> int:
        """Bytes of every batch served, if materialised at once."""
        per_sample = sum(leaf[:1].nbytes for leaf in _leaves(self.x))
        if self.y is not None:
            per_sample += sum(leaf[:1].nbytes for leaf in _leaves(self.y))
        return per_sample * self._num_batches * self.batch_size

    def materialize(self):
        """All batches at once, as arrays to pass to `fit` with `shuffle=False`."""
        idx = np.concatenate([self.indices(i) for i in range(self._num_batches)])
        return self._take(idx)

    def _take(self, idx):
        x = keras.tree.map_structure(lambda a: a[idx], self.x)
        if self.y is None:
            return (x,)
        y = keras.tree.map_structure(lambda a: a[idx], self.y)
        if self.sample_weight is None:
            return x, y
        return x, y, self.sample_weight[idx]


class _CyclingPyDataset(keras.utils.PyDataset):
    """A finite `PyDataset` replayed until `num_batches` batches were served."""

    def __init__(self, inner, num_batches):
        super().__init__(
            workers=inner.workers,
            use_multiprocessing=inner.use_multiprocessing,
            max_queue_size=inner.max_queue_size,
        )
        self.inner = inner
        self.inner_batches = inner.num_batches
        self._num_batches = num_batches

    @property
    def num_batches(self):
        return self._num_batches

    def __len__(self):
        return self._num_batches

    def __getitem__(self, index):
        if self.inner_batches is None:
            return self.inner[index]
        return self.inner[index % self.inner_batches]


def _cycle(first, rest):
    """Yield `first`, then the rest of a generator, then replay what was seen."""
    seen = [first]
    yield first
    for batch in rest:
        seen.append(batch)
        yield batch
    while True:
        yield from seen


# Array inputs are gathered up front and fed through Keras' own (fastest)
# array path when the test uses no more samples than the data holds (the copy
# is then never larger than the data) and fits in this many bytes; otherwise
# batches are served one by one.
MATERIALIZE_BYTES = 256 * 2**20


@dataclass
class BatchStream:
    """Data ready for `model.fit(**stream.fit_kwargs(), epochs=1)`."""

    data: object
    batch_size: int
    first_batch: tuple
    kind: str
    num_batches: int
    equal_batches: bool = False

    def resize(self, num_batches: int) -> None:
        """Serve `num_batches` batches from now on (a longer or shorter test)."""
        self.num_batches = int(num_batches)
        if isinstance(self.data, (_CyclingArrays, _CyclingPyDataset)):
            self.data._num_batches = self.num_batches

    def fit_kwargs(self) -> dict:
        if isinstance(self.data, _CyclingArrays):
            samples = self.data.batch_size * self.data.num_batches
            if samples <= self.data.n and self.data.nbytes() <= MATERIALIZE_BYTES:
                batch = keras.utils.unpack_x_y_sample_weight(self.data.materialize())
                x, y, sample_weight = batch
                return {"x": x, "y": y, "sample_weight": sample_weight,
                        "batch_size": self.batch_size, "shuffle": False}
        return {"x": self.data, "steps_per_epoch": self.num_batches, "shuffle": False}


def iterate(stream):
    """The stream's batches as `(x, y, sample_weight)`-style tuples, in order."""
    data = stream.data
    if isinstance(data, keras.utils.PyDataset):
        batches = (data[i] for i in range(stream.num_batches))
    elif is_tf_dataset(data):
        batches = iter(data.take(stream.num_batches))
    else:
        batches = (b for _, b in zip(range(stream.num_batches), data))
    for batch in batches:
        yield batch if isinstance(batch, tuple) else (batch,)


def model_input_rank(model):
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        return None
    if not inputs:
        return None
    shape = getattr(inputs[0], "shape", None)
    return None if shape is None else len(shape)


def element_rank(dataset):
    spec = dataset.element_spec
    if isinstance(spec, (tuple, list)):
        spec = spec[0]
    leaves = _leaves(spec)
    if not leaves:
        return None
    shape = getattr(leaves[0], "shape", None)
    return None if shape is None or shape.rank is None else shape.rank


def _check_no_y(y, kind):
    if y is not None:
        raise ValueError(
            f"Argument `y` must be None when `x` is a {kind}: the {kind} must "
            f"yield `(x, y)` batches itself. Received: y of type {type(y).__name__}"
        )


def make_stream(
    x,
    y=None,
    *,
    batch_size=None,
    num_batches: int,
    shuffle: bool = True,
    seed=None,
    model=None,
    sample_weight=None,
) -> BatchStream:
    """Wrap `x`/`y` into an endless, cycling stream of `num_batches` batches."""
    batch_size = check_int("batch_size", batch_size, minimum=1, allow_none=True)
    if x is None:
        raise ValueError("Argument `x` is required. Received: x=None")

    if is_tf_dataset(x):
        _check_no_y(y, "tf.data.Dataset")
        dataset = x
        model_rank = model_input_rank(model) if model is not None else None
        element = element_rank(dataset)
        batched = True
        if model_rank is not None and element is not None:
            batched = element >= model_rank
        elif batch_size is not None:
            batched = False
        if batched and batch_size is not None:
            raise ValueError(
                "Argument `batch_size` cannot be used with a dataset that is "
                "already batched (Keras ignores `batch_size` for datasets). "
                f"Received: batch_size={batch_size}. Pass `batch_size=None`, or "
                "pass the dataset before `.batch()` together with `batch_size`."
            )
        if not batched:
            if batch_size is None:
                raise ValueError(
                    "The dataset yields single samples (it is not batched), so "
                    "Argument `batch_size` is required. Received: batch_size=None"
                )
            dataset = dataset.batch(batch_size, drop_remainder=True)
        try:
            first = next(iter(dataset.take(1)))
        except StopIteration:
            raise ValueError(
                "Argument `x` is an empty tf.data.Dataset (it yields no batches"
                + (f" of batch_size={batch_size}" if batch_size else "")
                + "). Pass a dataset with at least one batch."
            ) from None
        first = keras.tree.map_structure(keras.ops.convert_to_numpy, first)
        if not isinstance(first, tuple):
            first = (first,)
        return BatchStream(
            dataset.repeat(), batch_size_of(first), first, "tf.data", num_batches
        )

    if is_py_dataset(x):
        _check_no_y(y, "PyDataset")
        if batch_size is not None:
            raise ValueError(
                "Argument `batch_size` cannot be used with a `PyDataset`, which "
                f"makes its own batches. Received: batch_size={batch_size}. Pass "
                "`batch_size=None`."
            )
        inner_batches = x.num_batches
        if inner_batches == 0:
            raise ValueError(
                "Argument `x` is an empty PyDataset (num_batches=0). Pass a "
                "dataset with at least one batch."
            )
        first = x[0]
        if not isinstance(first, tuple):
            first = (first,)
        data = _CyclingPyDataset(x, num_batches)
        return BatchStream(data, batch_size_of(first), first, "PyDataset", num_batches)

    if is_generator(x):
        _check_no_y(y, "generator")
        if batch_size is not None:
            raise ValueError(
                "Argument `batch_size` cannot be used with a generator, which "
                f"yields its own batches. Received: batch_size={batch_size}. "
                "Pass `batch_size=None`."
            )
        try:
            first = next(x)
        except StopIteration:
            raise ValueError(
                "Argument `x` is an empty generator (it yielded no batch). Pass a "
                "generator that yields `(x, y)` batches."
            ) from None
        first_tuple = first if isinstance(first, tuple) else (first,)
        return BatchStream(
            _cycle(first, x), batch_size_of(first_tuple), first_tuple, "generator",
            num_batches,
        )

    # Arrays.
    x, y, n = check_arrays(x, y)
    if sample_weight is not None:
        sample_weight = np.asarray(sample_weight)
        if sample_weight.shape[:1] != (n,):
            raise ValueError(
                "Argument `sample_weight` must have one weight per sample. "
                f"Received: {sample_weight.shape[0] if sample_weight.ndim else 0} "
                f"weights for {n} samples."
            )
    if batch_size is None:
        batch_size = min(DEFAULT_BATCH_SIZE, n)
    if batch_size > n:
        raise ValueError(
            f"Argument `batch_size` must not exceed the number of samples ({n}). "
            f"Received: batch_size={batch_size}"
        )
    if seed is None:
        seed = int(np.random.default_rng().integers(2**31))
    data = _CyclingArrays(x, y, sample_weight, batch_size, num_batches, shuffle, seed)
    return BatchStream(data, batch_size, data[0], "arrays", num_batches,
                       equal_batches=True)


class FixedBatches(list):
    """A list of `(x, y, sample_weight)` batches, already checked."""


def fixed_batches(data, batch_size=None, name="validation_data") -> FixedBatches:
    """Materialise a few fixed batches `[(x, y, sample_weight), ...]`.

    Accepts a tuple `(x, y)` / `(x, y, sample_weight)` of arrays (split into
    batches of `batch_size`), a batched `tf.data.Dataset` or a `PyDataset`.
    """
    if isinstance(data, FixedBatches):
        return data
    if is_tf_dataset(data):
        batches = [
            keras.tree.map_structure(keras.ops.convert_to_numpy, b)
            for b in data
        ]
    elif is_py_dataset(data):
        count = data.num_batches
        if count is None:
            raise ValueError(
                f"Argument `{name}` must be finite; an infinite PyDataset was given."
            )
        batches = [data[i] for i in range(count)]
    elif isinstance(data, (tuple, list)) and len(data) in (2, 3):
        x = to_numpy_structure(data[0])
        y = to_numpy_structure(data[1])
        sw = None if len(data) == 2 else np.asarray(data[2])
        n = num_samples(x, f"{name}[0]")
        n_y = num_samples(y, f"{name}[1]")
        if n != n_y:
            raise ValueError(
                f"Argument `{name}` must have as many targets as inputs. "
                f"Received: {n} inputs and {n_y} targets."
            )
        size = batch_size or DEFAULT_BATCH_SIZE
        batches = []
        for start in range(0, n, size):
            idx = slice(start, start + size)
            xb = keras.tree.map_structure(lambda a, idx=idx: a[idx], x)
            yb = keras.tree.map_structure(lambda a, idx=idx: a[idx], y)
            batches.append((xb, yb) if sw is None else (xb, yb, sw[idx]))
    else:
        raise TypeError(
            f"Argument `{name}` must be a tuple `(x, y)` of arrays, a batched "
            "tf.data.Dataset or a PyDataset. "
            f"Received: {name} of type {type(data).__name__}"
        )
    batches = [b if isinstance(b, tuple) else (b,) for b in batches]
    if not batches:
        raise ValueError(f"Argument `{name}` is empty. Pass at least one batch.")
    return FixedBatches(keras.utils.unpack_x_y_sample_weight(b) for b in batches)


def lcm(a: int, b: int) -> int:
    return a * b // math.gcd(a, b)


def arrays_for_trials(x, y, max_batch_size):
    """Sliceable samples for probes that build batches of every size they try."""
    if is_tf_dataset(x):
        if y is not None:
            raise ValueError("Argument `y` must be None when `x` is a dataset.")
        batch = next(iter(x.batch(max_batch_size).take(1)), None)
        if batch is None:
            raise ValueError("Argument `x` is an empty tf.data.Dataset.")
        batch = keras.tree.map_structure(keras.ops.convert_to_numpy, batch)
        bx, by, _ = keras.utils.unpack_x_y_sample_weight(
            batch if isinstance(batch, tuple) else (batch,))
        return bx, by
    if not is_array_like(x):
        raise TypeError(
            "find_max_batch_size builds batches of every size it tries, so it "
            "needs samples it can slice: NumPy arrays or an unbatched "
            f"tf.data.Dataset. Received: x of type {type(x).__name__}"
        )
    x, y, _ = check_arrays(x, y)
    return x, y


def rebatched(x, y, batch_size, model, caller):
    """`fit` arguments for training at `batch_size`, whatever `x` is: arrays
    get `batch_size`, an unbatched `tf.data.Dataset` is batched, a `PyDataset`
    gets its `batch_size` attribute set, a function `batch_size -> PyDataset`
    is called. `caller` names the kbatch function in errors."""
    if is_tf_dataset(x):
        if y is not None:
            raise ValueError("Argument `y` must be None when `x` is a dataset.")
        model_rank = model_input_rank(model)
        rank = element_rank(x)
        if model_rank is not None and rank is not None and rank >= model_rank:
            raise ValueError(
                f"{caller} needs an unbatched tf.data.Dataset: it "
                "batches it anew for every phase (Keras ignores `batch_size` for "
                "datasets). Pass the dataset before `.batch()`."
            )
        return {"x": x.batch(batch_size)}
    if callable(x) and not is_py_dataset(x):
        dataset = x(batch_size)
        if not is_py_dataset(dataset):
            raise TypeError(
                "When `x` is a function it must return a `keras.utils.PyDataset` "
                f"for a batch size. Received: {type(dataset).__name__}"
            )
        return {"x": dataset}
    if is_py_dataset(x):
        if not hasattr(x, "batch_size"):
            raise ValueError(
                f"{caller} re-batches a PyDataset by setting its "
                "`batch_size` attribute, which this one does not have. Give it "
                "one (used in `__len__` and `__getitem__`), or pass a function "
                "`batch_size -> PyDataset` as `x`."
            )
        x.batch_size = batch_size
        return {"x": x}
    return {"x": x, "y": y, "batch_size": batch_size}


def count_samples(x, y):
    """Training samples in `x`, or None when they cannot be counted."""
    if is_tf_dataset(x):
        cardinality = int(x.cardinality())
        return cardinality if cardinality > 0 else None
    if callable(x) or is_py_dataset(x):
        return None
    return check_arrays(x, y)[2]
