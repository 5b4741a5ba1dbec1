"""Search batch size and learning rate together with KerasTuner.

A small CNN on MNIST-1D with SGD and momentum; `BatchLRHyperModel` searches the
batch size among 16 ... 512 and the learning rate as a multiplier around the
rate scaled to each batch size (from LR range tests, kept below the measured
edge of stability), alongside the model's own hyperparameter (the number of
filters). Prints the trials, writes the summary figure (objective over batch
size and LR, and the Pareto front of accuracy vs training time) and retrains
the best configuration.

    python examples/tune_batch_and_lr.py [--trials 8] [--epochs 10] [--out DIR]
        [--tuner pattern|random]

By default the search is kbatch's `PatternSearch` (a sweep over the batch
size, then LR and batch-size steps around the best trial); `--tuner random`
runs KerasTuner's `RandomSearch` on the same hypermodel.

The same search runs on several machines with KerasTuner's chief/worker mode:
start this script once with KERASTUNER_TUNER_ID=chief and once per worker with
KERASTUNER_TUNER_ID=tuner0, tuner1, ..., all with KERASTUNER_ORACLE_IP and
KERASTUNER_ORACLE_PORT pointing at the chief (see docs/tuner.md).
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import keras_tuner
import matplotlib

matplotlib.use("Agg")

import kbatch
from kbatch import datasets
from kbatch.tuner import BatchLRHyperModel
from kbatch.tuner import PatternSearch
from kbatch.tuner import summarize


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--out", default="kbatch-examples/tune_batch_and_lr")
    parser.add_argument("--tuner", choices=("pattern", "random"), default="pattern")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    data = datasets.load_mnist1d()

    def build_model(hp):
        model = kbatch.models.build_cnn(
            data.input_shape, data.num_classes,
            filters=hp.Choice("filters", [16, 32]), optimizer="momentum")
        return model

    hypermodel = BatchLRHyperModel(build_model, epochs=args.epochs,
                                   target=("val_accuracy", 0.85))
    if args.tuner == "pattern":
        tuner_class, project = PatternSearch, "mnist1d_cnn_pattern"
    else:
        tuner_class, project = keras_tuner.RandomSearch, "mnist1d_cnn_random"
    tuner = tuner_class(hypermodel, objective="val_accuracy", max_trials=args.trials,
                        directory=os.path.join(args.out, "search"),
                        project_name=project, seed=1)
    tuner.search(*data.train, validation_data=data.val, verbose=1)

    summary = summarize(tuner)
    print(summary.text())
    summary.plot(os.path.join(args.out, "search_summary.png"))
    best = summary.best()
    keras.utils.set_random_seed(0)
    hp = tuner.get_best_hyperparameters(1)[0]
    model = build_model(hp)
    model.optimizer.learning_rate = best["learning_rate"]
    model.fit(*data.train, batch_size=best["batch_size"], epochs=args.epochs,
              verbose=0)
    accuracy = model.evaluate(*data.test, verbose=0, return_dict=True)["accuracy"]
    print(f"best: batch {best['batch_size']}, LR {best['learning_rate']:.3g}, "
          f"filters {hp.get('filters')}; retrained test accuracy {accuracy:.3f}")
    print(f"figure in {args.out}/search_summary.png")


if __name__ == "__main__":
    main()
