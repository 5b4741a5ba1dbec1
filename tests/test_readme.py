"""The README's quickstart snippets run as written (on small data), also on a
model compiled with a learning-rate schedule."""

import pathlib
import re

import keras
import matplotlib
import numpy as np
import pytest
from conftest import classification_data

from kbatch._internal.optimizer import learning_rate_object

matplotlib.use("Agg")

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def _snippet(heading):
    """The first ```python block after a `### heading` of the README."""
    text = README.read_text(encoding="utf-8")
    start = text.index(f"### {heading}")
    match = re.compile(r"```python\n(.*?)```", re.S).search(text, start)
    return match.group(1)


def _namespace():
    x, y = classification_data(n=1024, input_dim=8, num_classes=3)
    model = keras.Sequential([keras.Input((8,)),
                              keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(3, activation="softmax")])
    return {"model": model, "x_train": x, "y_train": y}


@pytest.mark.parametrize("compiled", ["as written", "with a schedule"])
def test_range_test_quickstart(compiled, capsys):
    code = _snippet("The LR range test")
    assert "result.apply(model)" in code
    if compiled == "with a schedule":
        schedule = ("keras.optimizers.Adam(keras.optimizers.schedules."
                    "CosineDecay(1e-3, decay_steps=200))")
        code, count = re.subn(r'optimizer="adam"', f"optimizer={schedule}", code)
        assert count == 1
    space = _namespace()
    space["keras"] = keras
    exec(compile(code, "README.md", "exec"), space)
    model, result = space["model"], space["result"]
    lr = result.suggestion()
    optimizer_lr = learning_rate_object(model.optimizer)  # what apply() left there
    if compiled == "with a schedule":
        # the schedule keeps its shape, rescaled to start at the suggestion
        assert isinstance(optimizer_lr, keras.optimizers.schedules.LearningRateSchedule)
        assert float(optimizer_lr(0)) == pytest.approx(lr, rel=1e-5)
    else:
        assert float(np.asarray(optimizer_lr)) == pytest.approx(lr, rel=1e-5)
    assert "steepest" in capsys.readouterr().out  # print(result.suggestions())


def test_lr_per_batch_size_quickstart():
    code = _snippet("The best learning rate at every batch size")
    space = _namespace()
    space["model"].compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    code = code.replace("epochs=20", "epochs=2")  # small data, small budget
    exec("import kbatch\n" + code, space)
    best, scale, model = space["best"], space["scale"], space["model"]
    assert best.batch_sizes == [32, 128, 512]
    model.fit(space["x_train"], space["y_train"], batch_size=256, epochs=1,
              callbacks=[scale], verbose=0)
    lr = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
    assert lr == pytest.approx(best.predict(256), rel=1e-5)


@pytest.mark.slow
def test_advice_quickstart_on_a_schedule_compiled_model():
    code = _snippet("Which batch size?")
    assert "advice.apply(model)" in code

    def build_model():
        model = keras.Sequential([keras.Input((8,)),
                                  keras.layers.Dense(16, activation="relu"),
                                  keras.layers.Dense(3, activation="softmax")])
        model.compile(keras.optimizers.SGD(keras.optimizers.schedules.CosineDecay(
            0.01, decay_steps=500)), "sparse_categorical_crossentropy")
        return model

    space = _namespace()
    space.update(build_model=build_model, kbatch=__import__("kbatch"))
    exec(code.replace("epochs=30", "epochs=1"), space)
    model, advice = space["model"], space["advice"]
    schedule = learning_rate_object(model.optimizer)
    assert float(schedule(0)) == pytest.approx(advice.learning_rate, rel=1e-5)
