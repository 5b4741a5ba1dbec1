"""The `kbatch` command line: `kbatch demo`, `find-lr`, `advise`, `tune`."""

from __future__ import annotations

import argparse
import os
import sys
import time

__all__ = [
    "build_parser",
    "main",
]


def _quiet_tensorflow():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text}")
    return value


def _batch_sizes(text):
    sizes = []
    for part in text.split(","):
        try:
            sizes.append(_positive_int(part.strip()))
        except argparse.ArgumentTypeError as e:
            raise argparse.ArgumentTypeError(
                f"expected batch sizes like 16,32,64: {e}") from None
    return tuple(sizes)


def _fraction(text):
    value = _positive_float(text)
    if not value < 1:
        raise argparse.ArgumentTypeError(f"expected a fraction in (0, 1), got {text}")
    return value


def _add_model_arguments(parser, optimizer):
    """--dataset/--model/--data/--optimizer: a built-in or a saved model."""
    parser.add_argument("--dataset", choices=("mnist1d", "digits"), default=None,
                        help="built-in dataset (no download)")
    parser.add_argument("--model", default="mlp",
                        help="mlp, cnn, logistic, or a path to a saved .keras model")
    parser.add_argument("--data", default=None,
                        help=".npz file with arrays `x` and `y` (with a saved model)")
    parser.add_argument("--optimizer", default=optimizer,
                        choices=("adam", "adamw", "rmsprop", "sgd", "momentum"),
                        help=f"optimizer of a built-in model (default: {optimizer})")


def _add_sweep_arguments(parser):
    parser.add_argument("--batch-size", type=_positive_int, default=None,
                        help="batch size of the test (default: 128 on the built-in "
                             "datasets, 32 otherwise)")
    parser.add_argument("--min-lr", type=_positive_float, default=1e-7,
                        help="first learning rate (default: 1e-7)")
    parser.add_argument("--max-lr", type=_positive_float, default=10.0,
                        help="last learning rate (default: 10)")
    parser.add_argument("--num-steps", type=_positive_int, default=100,
                        help="number of learning rates tried (default: 100)")
    parser.add_argument("--mode", choices=("exponential", "linear"),
                        default="exponential", help="LR spacing (default: exponential)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--out", default="kbatch-out",
                        help="directory for lr_range_test.json and .png")


def build_parser():
    import kbatch

    parser = argparse.ArgumentParser(
        prog="kbatch",
        description="Which batch size, and which learning rate for it? "
        "Measurements for Keras 3.",
    )
    parser.add_argument("--version", action="version",
                        version=f"kbatch {kbatch.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser(
        "demo", help="LR range test of a small CNN on MNIST-1D (no download)",
        description="Runs an LR range test of a small CNN on MNIST-1D (generated "
        "locally), prints the suggestions, writes the curve as JSON and PNG, "
        "trains briefly at the suggested LR to show it works, then runs the "
        "batch-size advisor (written to OUT/advice/).",
    )
    demo.add_argument("--out", default="kbatch-demo", help="output directory")
    demo.add_argument("--epochs", type=_positive_int, default=10,
                      help="epochs of the check run at the suggested LR (default: 10)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--no-advise", dest="advise", action="store_false",
                      help="skip the batch-size advisor (the last part)")

    find = sub.add_parser(
        "find-lr", help="LR range test of a built-in or saved model",
        description="LR range test. Either a built-in dataset and model "
        "(--dataset mnist1d --model cnn) or your own saved model and data "
        "(--model model.keras --data data.npz, the .npz holding arrays `x` and "
        "`y`). The model is not modified.",
    )
    _add_model_arguments(find, optimizer="adam")
    _add_sweep_arguments(find)

    adv = sub.add_parser(
        "advise", help="advise a batch size and learning rate (memory, speed, "
        "best LR per batch size for a budget)",
        description="Measures the largest batch that fits, the throughput per "
        "batch size and the best learning rate of each batch size for --epochs "
        "epochs (short probe runs), then advises the fastest batch size that "
        "trains as well as the best, and its learning rate. Built-in "
        "(--dataset mnist1d --model cnn) or your own (--model model.keras --data "
        "data.npz). Writes advice.json, advice.md and advice.png.",
    )
    _add_model_arguments(adv, optimizer="momentum")
    adv.add_argument("--epochs", type=_positive_int, default=10,
                     help="the training budget the advice is for; the best LR "
                     "of each batch size is measured for it (default: 10)")
    adv.add_argument("--max-batch-size", type=_positive_int, default=None)
    adv.add_argument("--seed", type=int, default=0)
    adv.add_argument("--out", default="kbatch-advice", help="output directory")

    tune = sub.add_parser(
        "tune", help="search batch size and learning rate together (KerasTuner)",
        description="Searches the batch size and the learning rate together with "
        "kbatch.tuner.BatchLRHyperModel: the LR as a multiplier around the rate "
        "scaled to each batch size from LR range tests. Built-in (--dataset "
        "mnist1d --model cnn) or your own (--model model.keras --data data.npz, "
        "validated on a held-out fraction). Rerunning the same command resumes "
        "the search in OUT/search (--overwrite starts again). Writes "
        "search_summary.json and search_summary.png.",
    )
    _add_model_arguments(tune, optimizer="momentum")
    tune.add_argument("--batch-sizes", type=_batch_sizes,
                      default=(16, 32, 64, 128, 256, 512),
                      help="comma-separated (default: 16,32,64,128,256,512)")
    tune.add_argument("--trials", type=_positive_int, default=8,
                      help="number of trials (default: 8)")
    tune.add_argument("--epochs", type=_positive_int, default=10,
                      help="epochs per trial (default: 10)")
    tune.add_argument("--tuner", choices=("pattern", "random"), default="pattern",
                      help="kbatch's PatternSearch (default) or KerasTuner's "
                           "RandomSearch")
    tune.add_argument("--validation-split", type=_fraction, default=0.2,
                      help="held-out fraction with --data (default: 0.2)")
    tune.add_argument("--overwrite", action="store_true",
                      help="start the search again instead of resuming it")
    tune.add_argument("--seed", type=int, default=0)
    tune.add_argument("--out", default="kbatch-tune", help="output directory")
    return parser


def _load_npz(path):
    import numpy as np

    if not os.path.isfile(path):
        raise SystemExit(f"kbatch: error: --data {path!r}: no such file")
    try:
        with np.load(path, allow_pickle=False) as f:
            keys = set(f.files)
            for x_key, y_key in (("x", "y"), ("x_train", "y_train")):
                if x_key in keys:
                    return f[x_key], (f[y_key] if y_key in keys else None)
    except (OSError, ValueError) as e:
        raise SystemExit(f"kbatch: error: --data {path!r} is not a readable .npz "
                         f"file: {e}") from None
    raise SystemExit(f"kbatch: error: --data {path!r} has no array `x` "
                     f"(found: {sorted(keys)})")


def _load_saved_model(path):
    import keras

    if not os.path.isfile(path):
        raise SystemExit(f"kbatch: error: --model {path!r}: no such file")
    try:
        model = keras.saving.load_model(path)
    except Exception as e:
        raise SystemExit(f"kbatch: error: --model {path!r} could not be loaded: "
                         f"{e}") from None
    if not getattr(model, "compiled", False) or model.optimizer is None:
        raise SystemExit(f"kbatch: error: --model {path!r} was saved without "
                         "compile(); compile it with an optimizer and loss, then save")
    return model


def _write_result(result, out):
    os.makedirs(out, exist_ok=True)
    json_path = os.path.join(out, "lr_range_test.json")
    result.save(json_path)
    written = [json_path]
    try:
        import matplotlib

        matplotlib.use("Agg")
        png_path = os.path.join(out, "lr_range_test.png")
        ax = result.plot(path=png_path)
        import matplotlib.pyplot as plt

        plt.close(ax.figure)
        written.append(png_path)
    except ImportError:
        print('(no plot: matplotlib is missing; pip install "keras-kbatch[plot]")')
    return written


def _model_and_data(args):
    """`(build_model, x, y, default_batch)` from built-in or saved inputs."""
    import keras

    from kbatch import datasets
    from kbatch import models

    if args.dataset is not None:
        if args.data is not None:
            raise SystemExit("kbatch: error: give either --dataset or --data, not both")
        data = datasets.load(args.dataset)
        if args.model not in models.MODELS:
            raise SystemExit(f"kbatch: error: --model {args.model!r} with --dataset "
                             f"must be one of {models.MODELS}")

        def build():
            return models.build(args.model, data, optimizer=args.optimizer)

        return build, data.x_train, data.y_train, 128
    if args.data is None:
        raise SystemExit("kbatch: error: give --dataset NAME, or --model "
                         "PATH.keras with --data PATH.npz")
    if args.model in models.MODELS:
        raise SystemExit(f"kbatch: error: --model {args.model} needs --dataset; "
                         "with --data, pass a saved model path")
    x, y = _load_npz(args.data)
    _load_saved_model(args.model)  # fail early, with a clear message

    def build():
        return keras.saving.load_model(args.model)

    return build, x, y, None


def run_advise(args):
    import keras

    from kbatch import advise

    keras.utils.set_random_seed(args.seed)
    build, x, y, _ = _model_and_data(args)
    advice = advise(build, x, y, epochs=args.epochs,
                    max_batch_size=args.max_batch_size, seed=args.seed, verbose=1)
    print(advice.summary())
    for path in advice.save(args.out).values():
        print(f"wrote {path}")
    return advice


def run_tune(args):
    import keras
    import keras_tuner

    from kbatch import datasets
    from kbatch._internal import io as _io
    from kbatch.tuner import BatchLRHyperModel
    from kbatch.tuner import PatternSearch
    from kbatch.tuner import summarize

    keras.utils.set_random_seed(args.seed)
    build, x, y, _ = _model_and_data(args)
    if args.dataset is not None:
        fit = {"validation_data": datasets.load(args.dataset).val}
    else:
        fit = {"validation_split": args.validation_split}
    hypermodel = BatchLRHyperModel(lambda hp: build(), batch_sizes=args.batch_sizes,
                                   epochs=args.epochs)
    tuner_class = PatternSearch if args.tuner == "pattern" else keras_tuner.RandomSearch
    tuner = tuner_class(hypermodel, objective=_objective(build()),
                        max_trials=args.trials,
                        directory=args.out, project_name="search",
                        overwrite=args.overwrite,
                        seed=args.seed + 1)  # KerasTuner takes seed 0 as "none"
    tuner.search(x, y, verbose=1, **fit)
    if os.environ.get("KERASTUNER_ORACLE_IP") and "chief" not in os.environ.get(
            "KERASTUNER_TUNER_ID", ""):
        print("worker done; the chief writes the summary")
        return None
    summary = summarize(tuner)
    print(summary.text())
    os.makedirs(args.out, exist_ok=True)
    json_path = os.path.join(args.out, "search_summary.json")
    _io.write_json_atomic(json_path, summary.to_dict())
    print(f"wrote {json_path}")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        png_path = os.path.join(args.out, "search_summary.png")
        plt.close(summary.plot(png_path))
        print(f"wrote {png_path}")
    except ImportError:
        print('(no plot: matplotlib is missing; pip install "keras-kbatch[plot]")')
    return summary


def _objective(model):
    """`val_accuracy` when the model is compiled with an `accuracy` metric."""
    metrics = (model.get_compile_config() or {}).get("metrics") or []
    if not isinstance(metrics, (list, tuple)):
        metrics = [metrics]
    names = [m if isinstance(m, str) else (m.get("config") or {}).get("name")
             if isinstance(m, dict) else None for m in metrics]
    return "val_accuracy" if "accuracy" in names else "val_loss"


def run_find_lr(args):
    import keras

    import kbatch

    keras.utils.set_random_seed(args.seed)
    build, x, y, default_batch = _model_and_data(args)
    model = build()
    batch_size = args.batch_size or default_batch
    result = kbatch.find_lr(
        model, x, y,
        batch_size=batch_size,
        min_lr=args.min_lr,
        max_lr=args.max_lr,
        num_steps=args.num_steps,
        mode=args.mode,
        seed=args.seed,
        verbose=1,
    )
    for path in _write_result(result, args.out):
        print(f"wrote {path}")
    return result


def run_demo(args):
    import keras
    import numpy as np

    import kbatch
    from kbatch import datasets
    from kbatch import models

    started = time.perf_counter()
    print("kbatch demo: LR range test of a small CNN (SGD with momentum) on MNIST-1D")
    data = datasets.load_mnist1d()
    print(f"data: {data}")
    keras.utils.set_random_seed(args.seed)
    model = models.build("cnn", data, optimizer="momentum", learning_rate=0.01)
    weights_before = [w.copy() for w in model.get_weights()]
    result = kbatch.find_lr(model, *data.train, batch_size=128, seed=args.seed,
                            verbose=1)
    unchanged = all(np.array_equal(a, b)
                    for a, b in zip(weights_before, model.get_weights()))
    print(f"model restored after the test: {unchanged}")
    for path in _write_result(result, args.out):
        print(f"wrote {path}")

    lr = result.suggestion()
    print(f"\nchecking: {args.epochs} epochs at the suggested LR {lr:.3g} "
          "vs the common default 0.01")
    scores = {}
    for label, rate in (("suggested", lr), ("default 0.01", 0.01)):
        keras.utils.set_random_seed(args.seed)
        check = models.build("cnn", data, optimizer="momentum", learning_rate=rate)
        check.fit(*data.train, batch_size=128, epochs=args.epochs, verbose=0)
        acc = check.evaluate(*data.val, verbose=0, return_dict=True)["accuracy"]
        scores[label] = acc
        print(f"  {label:>13} LR {rate:.3g}: validation accuracy {acc:.3f}")
    if args.advise:
        from kbatch import advise

        print(f"\nadvisor: memory, throughput, and the best LR of each batch "
              f"size for {args.epochs} epochs")
        advice = advise(
            lambda: models.build("cnn", data, optimizer="momentum",
                                 learning_rate=0.01),
            *data.train, epochs=args.epochs, seed=args.seed, verbose=1)
        print(advice.summary())
        for path in advice.save(os.path.join(args.out, "advice")).values():
            print(f"wrote {path}")
    print(f"\ndone in {time.perf_counter() - started:.0f} s")
    return result, scores


def main(argv=None):
    _quiet_tensorflow()
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        if args.command == "demo":
            run_demo(args)
        elif args.command == "find-lr":
            run_find_lr(args)
        elif args.command == "advise":
            run_advise(args)
        elif args.command == "tune":
            run_tune(args)
    except (ValueError, TypeError, ImportError) as e:
        if os.environ.get("KBATCH_DEBUG"):
            raise
        print(f"kbatch: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
