"""One process of a chief/worker search (run by tests/test_distributed.py).

KERASTUNER_TUNER_ID, KERASTUNER_ORACLE_IP and KERASTUNER_ORACLE_PORT say which
role this process plays; argv[1] is the search directory, argv[2] a directory
for "trial started" markers, argv[3] the tuner: "random" (KerasTuner's
RandomSearch) or "pattern" (kbatch's PatternSearch).
"""

import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import keras_tuner

import kbatch
from kbatch.tuner import BatchLRHyperModel
from kbatch.tuner import PatternSearch

directory, markers, kind = sys.argv[1], sys.argv[2], sys.argv[3]
tuner_id = os.environ["KERASTUNER_TUNER_ID"]
data = kbatch.datasets.load_digits()


class Marker(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        with open(os.path.join(markers, f"{tuner_id}-{time.time():.6f}"), "w"):
            pass


def build(hp):
    model = keras.Sequential([keras.Input((64,)),
                              keras.layers.Dense(32, activation="relu"),
                              keras.layers.Dense(10, activation="softmax")])
    model.compile(keras.optimizers.SGD(0.01, momentum=0.9),
                  "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


hypermodel = BatchLRHyperModel(build, batch_sizes=(16, 32, 64),
                               learning_rate=(0.01, 0.1), epochs=6)
tuner_class = PatternSearch if kind == "pattern" else keras_tuner.RandomSearch
tuner = tuner_class(hypermodel, objective="val_accuracy", max_trials=6,
                    directory=directory, project_name="dist", seed=11)
tuner.search(data.x_train, data.y_train, validation_data=data.val,
             callbacks=[Marker()], verbose=0)
