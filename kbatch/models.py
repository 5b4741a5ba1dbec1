"""Small reference models for the demo, the CLI, examples and benchmarks.

Each builder returns a compiled classifier whose output layer computes in
float32 (safe under mixed precision) and whose layer widths are multiples of 8.
"""

from __future__ import annotations

import keras

from kbatch._internal.validate import check_choice
from kbatch._internal.validate import check_int
from kbatch._internal.validate import check_number

__all__ = [
    "MODELS",
    "OPTIMIZERS",
    "build",
    "build_cnn",
    "build_logistic",
    "build_mlp",
    "make_optimizer",
]

OPTIMIZERS = ("adam", "sgd", "momentum", "rmsprop", "adamw")
MODELS = ("mlp", "cnn", "logistic")


def make_optimizer(name: str = "adam", learning_rate: float = 1e-3):
    """A Keras optimizer by short name: adam, adamw, rmsprop, sgd, momentum.

    `"momentum"` is SGD with Nesterov-free momentum 0.9.

    Example:

    >>> optimizer = make_optimizer("momentum", 0.05)
    >>> type(optimizer).__name__, optimizer.momentum
    ('SGD', 0.9)
    """
    check_choice("optimizer", name, OPTIMIZERS)
    learning_rate = check_number("learning_rate", learning_rate, positive=True)
    if name == "adam":
        return keras.optimizers.Adam(learning_rate)
    if name == "adamw":
        return keras.optimizers.AdamW(learning_rate)
    if name == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate)
    if name == "momentum":
        return keras.optimizers.SGD(learning_rate, momentum=0.9)
    return keras.optimizers.SGD(learning_rate)


def _head(x, num_classes):
    x = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.layers.Activation("softmax", dtype="float32", name="probs")(x)


def _compile(model, optimizer, learning_rate):
    if isinstance(optimizer, str):
        optimizer = make_optimizer(optimizer, learning_rate)
    model.compile(
        optimizer=optimizer,
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def build_logistic(input_shape, num_classes, *, optimizer="sgd", learning_rate=0.1):
    """Multinomial logistic regression (a linear layer and softmax).

    Example:

    >>> build_logistic((40,), 10).count_params()  # 40 * 10 weights + 10 biases
    410
    """
    inputs = keras.Input(tuple(input_shape))
    x = keras.layers.Flatten()(inputs)
    return _compile(keras.Model(inputs, _head(x, num_classes), name="logistic"),
                    optimizer, learning_rate)


def build_mlp(
    input_shape,
    num_classes,
    *,
    hidden=(128, 128),
    optimizer="adam",
    learning_rate=1e-3,
):
    """A ReLU multilayer perceptron.

    Example:

    >>> build_mlp((40,), 10, hidden=(64,), optimizer="momentum").count_params()
    3274
    """
    inputs = keras.Input(tuple(input_shape))
    x = keras.layers.Flatten()(inputs)
    for i, width in enumerate(hidden):
        width = check_int(f"hidden[{i}]", width, minimum=1)
        x = keras.layers.Dense(width, activation="relu")(x)
    return _compile(keras.Model(inputs, _head(x, num_classes), name="mlp"),
                    optimizer, learning_rate)


def build_cnn(
    input_shape,
    num_classes,
    *,
    image_shape=None,
    filters=32,
    optimizer="adam",
    learning_rate=1e-3,
):
    """A small convolutional network.

    1-D convolutions over a signal (MNIST-1D), or 2-D convolutions when
    `image_shape=(height, width)` says how to fold the flat input (digits).

    Example:

    >>> build_cnn((64,), 10, image_shape=(8, 8)).output_shape
    (None, 10)
    """
    inputs = keras.Input(tuple(input_shape))
    if image_shape is not None:
        x = keras.layers.Reshape((*image_shape, 1))(inputs)
        for _ in range(2):
            x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = keras.layers.MaxPooling2D()(x)
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
    else:
        length = int(inputs.shape[1])
        x = keras.layers.Reshape((length, 1))(inputs)
        x = keras.layers.Conv1D(filters, 5, strides=2, padding="same",
                                activation="relu")(x)
        x = keras.layers.Conv1D(filters, 3, strides=2, padding="same",
                                activation="relu")(x)
        x = keras.layers.Conv1D(filters, 3, strides=2, padding="same",
                                activation="relu")(x)
    x = keras.layers.Flatten()(x)
    return _compile(keras.Model(inputs, _head(x, num_classes), name="cnn"),
                    optimizer, learning_rate)


def build(name: str, data, *, optimizer="adam", learning_rate=1e-3, **kwargs):
    """Build a reference model by name (`"mlp"`, `"cnn"`, `"logistic"`) for a
    `kbatch.datasets.DataSplits`, compiled with accuracy as a metric.

    Example:

    >>> from kbatch import datasets
    >>> data = datasets.load_digits()
    >>> model = build("mlp", data, optimizer="momentum", learning_rate=0.05)
    >>> model.output_shape
    (None, 10)
    """
    check_choice("model", name, MODELS)
    shape = data.input_shape
    if name == "logistic":
        return build_logistic(shape, data.num_classes, optimizer=optimizer,
                              learning_rate=learning_rate)
    if name == "mlp":
        return build_mlp(shape, data.num_classes, optimizer=optimizer,
                         learning_rate=learning_rate, **kwargs)
    if data.name == "digits":
        kwargs.setdefault("image_shape", (8, 8))
    return build_cnn(shape, data.num_classes, optimizer=optimizer,
                     learning_rate=learning_rate, **kwargs)
