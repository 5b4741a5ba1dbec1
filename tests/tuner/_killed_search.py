"""A search that kills itself with SIGKILL in the middle of a trial, or resumes.

    python _killed_search.py PROJECT_DIR kill|resume

Prints one JSON line: the range tests run in this process and every trial.
Used by test_hypermodel.py (a subprocess, since the process really dies).
"""

import json
import os
import signal
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import keras_tuner

import kbatch
from kbatch.tuner import BatchLRHyperModel

KILL_IN_TRIAL = 3  # the third trial dies after its 4th batch
project_dir, mode = sys.argv[1], sys.argv[2]

range_tests = []
_find_lr = kbatch.lr.find.find_lr


def counting_find_lr(*args, **kwargs):
    range_tests.append(kwargs.get("batch_size"))
    return _find_lr(*args, **kwargs)


kbatch.lr.find.find_lr = counting_find_lr
trial_fits = []  # module level: KerasTuner deep-copies the callback per trial


class KillMidTrial(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        trial_fits.append(True)

    def on_train_batch_end(self, batch, logs=None):
        if mode == "kill" and len(trial_fits) == KILL_IN_TRIAL and batch == 3:
            sys.stdout.flush()
            os.kill(os.getpid(), signal.SIGKILL)


def build(hp):
    model = keras.Sequential([
        keras.Input((64,)),
        keras.layers.Dense(hp.Int("units", 16, 32, step=16), activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile(keras.optimizers.SGD(0.01, momentum=0.9),
                  "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


data = kbatch.datasets.load_digits()
hypermodel = BatchLRHyperModel(build, batch_sizes=(16, 32, 64), epochs=2)
tuner = keras_tuner.RandomSearch(
    hypermodel, objective="val_accuracy", max_trials=5, seed=3,
    directory=project_dir, project_name="p", overwrite=(mode == "kill"))
tuner.search(data.x_train, data.y_train, validation_data=data.val,
             callbacks=[KillMidTrial()], verbose=0)
print(json.dumps({
    "range_tests": range_tests,
    "trials": [{"id": t.trial_id, "status": t.status, "score": t.score,
                "values": t.hyperparameters.values}
               for t in tuner.oracle.trials.values()],
}))
