"""Long-running load in one process: 50 `find_lr` calls on one model, then a
30-trial search. Prints one JSON line with the resident memory (MiB) and the
number of live Python objects after each call / trial. Used by test_load.py.

    python _load_run.py PROJECT_DIR kbatch|plain

`plain` runs the same 30-trial search with a plain KerasTuner hypermodel (and
no `find_lr` calls): the baseline of KerasTuner's own growth per trial.
"""

import gc
import json
import os
import sys
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(__file__))

import keras
import keras_tuner
from conftest import classification_data
from conftest import make_classifier

import kbatch
from kbatch.tuner import BatchLRHyperModel


def rss_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def sample():
    gc.collect()
    return {"rss": rss_mib(), "objects": len(gc.get_objects())}


warnings.simplefilter("ignore")
keras.utils.set_random_seed(0)
x, y = classification_data(n=512)
model = make_classifier(hidden=64)
model.fit(x, y, batch_size=32, epochs=1, verbose=0)
mode = sys.argv[2]
finder = []
for _ in range(50 if mode == "kbatch" else 0):
    kbatch.find_lr(model, x, y, batch_size=32, num_steps=30, verbose=0)
    finder.append(sample())


class Sampler(keras.callbacks.Callback):
    def on_train_end(self, logs=None):
        search.append(sample())


def build(hp):
    net = keras.Sequential([
        keras.Input((8,)),
        keras.layers.Dense(hp.Int("units", 16, 64, step=16), activation="relu"),
        keras.layers.Dense(3, activation="softmax"),
        keras.layers.Dropout(hp.Float("dropout", 0.0, 0.1)),  # 30 distinct trials
    ])
    net.compile(keras.optimizers.SGD(0.01, momentum=0.9),
                "sparse_categorical_crossentropy", metrics=["accuracy"])
    return net


search = []
tuner = keras_tuner.RandomSearch(
    BatchLRHyperModel(build, batch_sizes=(16, 32, 64), epochs=1)
    if mode == "kbatch" else build,
    objective="val_accuracy", max_trials=30, seed=0, overwrite=True,
    directory=sys.argv[1], max_consecutive_failed_trials=30)
tuner.search(x[:384], y[:384], validation_data=(x[384:], y[384:]),
             callbacks=[Sampler()], verbose=0,
             **({} if mode == "kbatch" else {"batch_size": 32, "epochs": 1}))
completed = sum(t.status == "COMPLETED" for t in tuner.oracle.trials.values())
print(json.dumps({"find_lr": finder, "search": search, "completed": completed}))
