"""The `kbatch` command line: `kbatch demo`, `find-lr`, `advise`, `tune`.

The parser is built with the standard library only, and `import kbatch` does
not load Keras, so `kbatch --help` answers at once; Keras, TensorFlow and
KerasTuner are imported inside the commands, after the arguments and the data
file were checked.

Exit status: `0` success; `1` an error while running, reported as one line
`kbatch: error: ...` on standard error (`--debug`, or `KBATCH_DEBUG=1`, adds
the traceback); `2` a usage error (argparse's message and usage line); `130`
interrupted (Ctrl-C; the library has already put the model back).

Output: results (suggestions, summaries, files written) go to standard output;
progress too, unless `-q`; warnings and errors go to standard error through the
`kbatch` logger, whose level `-q` (errors only) and `-v` (debug) set.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import time
import traceback
import warnings

import kbatch  # light: its subpackages are imported on first use

__all__ = [
    "build_parser",
    "main",
]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

QUIET, NORMAL, VERBOSE = 0, 1, 2

# `kbatch.datasets` and `kbatch.models` name these too; they are repeated here
# so that checking the arguments imports no Keras (tests/test_cli.py compares).
BUILTIN_DATASETS = ("mnist1d", "digits")
BUILTIN_MODELS = ("mlp", "cnn", "logistic")

LOGGER = logging.getLogger("kbatch.cli")


class CommandError(Exception):
    """A failure the command explains in one line (exit status 1)."""


# ----------------------------------------------------------------- arguments


def _int_at_least(minimum):
    """An argparse type: an integer >= `minimum`."""

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(
                f"expected an integer >= {minimum}, got {value}")
        return value

    return parse


_positive_int = _int_at_least(1)
_seed = _int_at_least(0)


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text}")
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


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: ...)" where a default says something: not to flags,
    nor to options whose default is "none" or that explain it themselves."""

    def _get_help_string(self, action):
        text = action.help or ""
        if (action.nargs == 0 or action.default in (None, argparse.SUPPRESS)
                or "default" in text):
            return text
        return super()._get_help_string(action)


def _output_options(top_level):
    """-q / -v / --debug, accepted before and after the command name."""
    options = argparse.ArgumentParser(add_help=False)
    exclusive = options.add_mutually_exclusive_group()
    # After the command name, an option not given must not reset one given
    # before it: only the top-level parser has defaults.
    unset = {} if top_level else {"default": argparse.SUPPRESS}
    exclusive.add_argument(
        "-q", "--quiet", dest="verbosity", action="store_const", const=QUIET,
        help="print only the results and errors (no progress, no warnings)",
        **({"default": NORMAL} if top_level else unset))
    exclusive.add_argument(
        "-v", "--verbose", dest="verbosity", action="store_const", const=VERBOSE,
        help="also print debug messages of the kbatch logger (and TensorFlow's "
        "start-up lines)", **unset)
    options.add_argument(
        "--debug", action="store_true",
        help="on an error, print the full traceback (also: KBATCH_DEBUG=1)",
        **({"default": False} if top_level else unset))
    return options


def _add_model_arguments(parser, optimizer):
    """--dataset/--model/--data/--optimizer: a built-in or a saved model."""
    parser.add_argument("--dataset", choices=BUILTIN_DATASETS, default=None,
                        help="built-in dataset (no download)")
    parser.add_argument("--model", default="mlp",
                        help=f"{', '.join(BUILTIN_MODELS)} (with --dataset), or a "
                        "path to a compiled, saved .keras model (with --data)")
    parser.add_argument("--data", default=None, metavar="PATH.npz",
                        help=".npz file with arrays `x` and `y` (with a saved model)")
    parser.add_argument("--optimizer", default=optimizer,
                        choices=("adam", "adamw", "rmsprop", "sgd", "momentum"),
                        help="optimizer of a built-in model")


def _add_sweep_arguments(parser):
    parser.add_argument("--batch-size", type=_positive_int, default=None,
                        help="batch size of the test (default: 128 on the built-in "
                             "datasets, 32 otherwise)")
    parser.add_argument("--min-lr", type=_positive_float, default=1e-7,
                        help="first learning rate")
    parser.add_argument("--max-lr", type=_positive_float, default=10.0,
                        help="last learning rate")
    sizing = parser.add_mutually_exclusive_group()
    sizing.add_argument("--num-samples", type=_positive_int, default=None,
                        help="samples the test trains on (default: 6400, and "
                             "at least 100 steps)")
    sizing.add_argument("--num-steps", type=_positive_int, default=None,
                        help="number of learning rates tried, instead of "
                             "--num-samples")
    parser.add_argument("--mode", choices=("exponential", "linear"),
                        default="exponential", help="LR spacing")
    parser.add_argument("--seed", type=_seed, default=0, help="random seed")
    parser.add_argument("--out", default="kbatch-out",
                        help="output directory (lr_range_test.json and .png)")


def build_parser():
    """The `kbatch` argument parser (standard library only: fast to build)."""
    parser = argparse.ArgumentParser(
        prog="kbatch",
        description="Which batch size, and which learning rate for it? "
        "Measurements for Keras 3.",
        epilog="Exit status: 0 success, 1 error, 2 usage error, 130 interrupted. "
        "'kbatch COMMAND --help' describes each command.",
        formatter_class=_HelpFormatter,
        parents=[_output_options(top_level=True)],
    )
    parser.add_argument("--version", action="version",
                        version=f"kbatch {kbatch.__version__}")
    parser.set_defaults(command=None)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name, run, **kwargs):
        command_parser = sub.add_parser(
            name, formatter_class=_HelpFormatter,
            parents=[_output_options(top_level=False)], **kwargs)
        command_parser.set_defaults(run=run, command_parser=command_parser)
        return command_parser

    demo = command(
        "demo", run_demo,
        help="LR range test of a small CNN on MNIST-1D (no download)",
        description="Runs an LR range test of a small CNN on MNIST-1D (generated "
        "locally), prints the suggestions, writes the curve as JSON and PNG, "
        "trains briefly at the suggested LR to show it works, then runs the "
        "batch-size advisor (written to OUT/advice/).",
    )
    demo.add_argument("--out", default="kbatch-demo", help="output directory")
    demo.add_argument("--epochs", type=_positive_int, default=10,
                      help="epochs of the check run at the suggested LR")
    demo.add_argument("--seed", type=_seed, default=0, help="random seed")
    demo.add_argument("--no-advise", dest="advise", action="store_false",
                      help="skip the batch-size advisor (the last part)")

    find = command(
        "find-lr", run_find_lr,
        help="LR range test of a built-in or saved model",
        description="LR range test. Either a built-in dataset and model "
        "(--dataset mnist1d --model cnn) or your own saved model and data "
        "(--model model.keras --data data.npz, the .npz holding arrays `x` and "
        "`y`). The model is not modified.",
    )
    _add_model_arguments(find, optimizer="adam")
    _add_sweep_arguments(find)

    adv = command(
        "advise", run_advise,
        help="advise a batch size and learning rate (memory, speed, "
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
                     "of each batch size is measured for it")
    adv.add_argument("--max-batch-size", type=_positive_int, default=None,
                     help="largest batch size tried (default: the largest that "
                     "fits in memory)")
    adv.add_argument("--seed", type=_seed, default=0, help="random seed")
    adv.add_argument("--out", default="kbatch-advice", help="output directory")

    tune = command(
        "tune", run_tune,
        help="search batch size and learning rate together (KerasTuner)",
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
                      default="16,32,64,128,256,512", help="comma-separated")
    tune.add_argument("--trials", type=_positive_int, default=8,
                      help="number of trials")
    tune.add_argument("--epochs", type=_positive_int, default=10,
                      help="epochs per trial")
    tune.add_argument("--tuner", choices=("pattern", "random"), default="pattern",
                      help="kbatch's PatternSearch or KerasTuner's RandomSearch")
    tune.add_argument("--validation-split", type=_fraction, default=0.2,
                      help="held-out fraction with --data")
    tune.add_argument("--overwrite", action="store_true",
                      help="start the search again instead of resuming it")
    tune.add_argument("--seed", type=_seed, default=0, help="random seed")
    tune.add_argument("--out", default="kbatch-tune",
                      help="output directory (the search state in OUT/search)")
    return parser


def _usage_problem(args):
    """What is wrong with the arguments as a whole (checked before any work),
    or None."""
    if getattr(args, "min_lr", None) is not None and not args.min_lr < args.max_lr:
        return (f"--max-lr must be greater than --min-lr (got --min-lr "
                f"{args.min_lr:g}, --max-lr {args.max_lr:g})")
    if not hasattr(args, "dataset"):
        return None
    if args.dataset is not None:
        if args.data is not None:
            return "give either --dataset or --data, not both"
        if args.model not in BUILTIN_MODELS:
            return (f"--model {args.model!r} with --dataset must be one of "
                    f"{', '.join(BUILTIN_MODELS)}")
        return None
    if args.data is None:
        return "give --dataset NAME, or --model PATH.keras with --data PATH.npz"
    if args.model in BUILTIN_MODELS:
        return (f"--model {args.model} needs --dataset; with --data, pass the "
                "path of a saved .keras model")
    return None


# -------------------------------------------------------------------- output


def _say(args, text):
    """A progress line: standard output, unless `-q`."""
    if args.verbosity >= NORMAL:
        print(text, flush=True)


def _result(text):
    """A result line: always on standard output."""
    print(text, flush=True)


def _library_verbose(args):
    return 0 if args.verbosity == QUIET else 1


class _Formatter(logging.Formatter):
    def format(self, record):
        text = record.getMessage()
        if record.exc_info:
            text = f"{text}\n{self.formatException(record.exc_info)}"
        if record.levelno == logging.INFO:
            return text
        if record.levelno < logging.INFO:
            return f"kbatch: debug: {record.name}: {text}"
        return f"kbatch: {record.levelname.lower()}: {text}"


@contextlib.contextmanager
def _output(verbosity):
    """For the run of one command: the `kbatch` logger on standard error at the
    level `-q`/`-v` ask for, warnings as one line each (none with `-q`), and,
    with `-q`, other libraries' log records below ERROR dropped. Undone after."""
    logger = logging.getLogger("kbatch")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    level = {QUIET: logging.ERROR, NORMAL: logging.INFO,
             VERBOSE: logging.DEBUG}[verbosity]
    old_level, old_disable = logger.level, logging.root.manager.disable
    logger.addHandler(handler)
    logger.setLevel(level)
    if verbosity == QUIET:
        logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            if verbosity == QUIET:
                warnings.simplefilter("ignore")
            else:
                warnings.showwarning = _show_warning
            yield
    finally:
        logging.disable(old_disable)
        logger.setLevel(old_level)
        logger.removeHandler(handler)


def _show_warning(message, category, filename, lineno, file=None, line=None):
    LOGGER.warning("%s: %s", category.__name__, message)


def _one_line(error):
    text = " ".join(str(error).split())
    if isinstance(error, CommandError):
        return text
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


@contextlib.contextmanager
def _stderr_silenced():
    """Standard error (the file descriptor) sent to /dev/null meanwhile.

    TensorFlow 2.21 writes its start-up lines (oneDNN, CUDA drivers) before its
    logging is set up, so `TF_CPP_MIN_LOG_LEVEL` does not hide them."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real descriptor 2
        yield
        return
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 2)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(devnull)
    finally:
        os.close(saved)


def _quiet_tensorflow():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # the user's value wins


def _import_keras(args):
    """Import Keras (and its backend) once, without TensorFlow's start-up
    lines unless `-v`."""
    if "keras" not in sys.modules:
        LOGGER.debug("importing Keras (backend %s)",
                     os.environ.get("KERAS_BACKEND", "from keras.json"))
        started = time.perf_counter()
        silence = args.verbosity < VERBOSE and not args.debug
        with _stderr_silenced() if silence else contextlib.nullcontext():
            import keras

            if keras.config.backend() == "tensorflow":
                import tensorflow as tf

                # finds the devices now: a machine without a GPU logs a
                # failed cuInit here rather than at the first operation
                tf.config.list_physical_devices()
        LOGGER.debug("Keras %s on %s imported in %.1f s", keras.__version__,
                     keras.config.backend(), time.perf_counter() - started)
    import keras

    return keras


# ---------------------------------------------------------------------- data


def _load_npz(path):
    """`(x, y)` from an .npz file, or a `CommandError` naming the file."""
    import zipfile
    import zlib

    import numpy as np

    hint = "save it with numpy.savez(path, x=x, y=y)"
    if not os.path.exists(path):
        raise CommandError(f"--data {path}: no such file")
    if os.path.isdir(path):
        raise CommandError(f"--data {path}: is a directory, not an .npz file")
    unreadable = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
    except OSError as e:
        raise CommandError(f"--data {path}: cannot be read ({_one_line(e)})") from e
    if magic == b"\x93NUMPY":
        raise CommandError(f"--data {path}: holds a single array (.npy), not the "
                           f"arrays `x` and `y`; {hint}")
    if not magic.startswith(b"PK"):
        raise CommandError(f"--data {path}: is not an .npz file (not a zip "
                           f"archive); {hint}")
    try:
        loaded = np.load(path, allow_pickle=False)
    except unreadable as e:
        raise CommandError(f"--data {path}: is truncated or corrupt, not a readable "
                           f".npz file ({_one_line(e)})") from e
    with loaded:
        names = list(loaded.files)
        for x_name, y_name in (("x", "y"), ("x_train", "y_train")):
            if x_name in names and y_name in names:
                break
        else:
            raise CommandError(f"--data {path}: needs arrays `x` and `y` (found: "
                               f"{', '.join(names) or 'no arrays'}); {hint}")
        arrays = []
        for name in (x_name, y_name):
            try:
                arrays.append(loaded[name])
            except unreadable as e:
                raise CommandError(
                    f"--data {path}: array `{name}` could not be read, the file "
                    f"is truncated or corrupt ({_one_line(e)})") from e
    x, y = arrays
    if x.ndim == 0 or y.ndim == 0 or len(x) != len(y):
        raise CommandError(f"--data {path}: `{x_name}` (shape {x.shape}) and "
                           f"`{y_name}` (shape {y.shape}) must have one sample "
                           "per row, as many of each")
    LOGGER.debug("loaded %s: %s %s %s, %s %s %s", path, x_name, x.shape, x.dtype,
                 y_name, y.shape, y.dtype)
    return x, y


def _load_saved_model(keras, path):
    try:
        model = keras.saving.load_model(path)
    except Exception as e:
        raise CommandError(f"--model {path}: could not be loaded "
                           f"({_one_line(e)})") from e
    if not getattr(model, "compiled", False) or model.optimizer is None:
        raise CommandError(f"--model {path}: was saved without compile(); "
                           "compile it with an optimizer and loss, then save it")
    return model


def _model_and_data(args):
    """`(build_model, x, y, default_batch)` from built-in or saved inputs (the
    combination of arguments was checked by `_usage_problem`)."""
    if args.dataset is not None:
        from kbatch import datasets

        data = datasets.load(args.dataset)
        LOGGER.debug("dataset %s: %s", args.dataset, data)
        _import_keras(args)
        from kbatch import models

        def build():
            return models.build(args.model, data, optimizer=args.optimizer)

        return build, data.x_train, data.y_train, 128
    x, y = _load_npz(args.data)
    if not os.path.isfile(args.model):
        raise CommandError(f"--model {args.model}: no such file")
    keras = _import_keras(args)
    _load_saved_model(keras, args.model)  # fail early, with a clear message

    def build():
        return keras.saving.load_model(args.model)

    return build, x, y, None


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
        LOGGER.warning('no plot: matplotlib is missing; pip install '
                       '"keras-kbatch[plot]"')
    return written


# ------------------------------------------------------------------ commands


def run_advise(args):
    build, x, y, _ = _model_and_data(args)
    keras = _import_keras(args)
    from kbatch import advise

    keras.utils.set_random_seed(args.seed)
    advice = advise(build, x, y, epochs=args.epochs,
                    max_batch_size=args.max_batch_size, seed=args.seed,
                    verbose=_library_verbose(args))
    _result(advice.summary())
    for path in advice.save(args.out).values():
        _result(f"wrote {path}")
    return advice


def run_tune(args):
    build, x, y, _ = _model_and_data(args)
    keras = _import_keras(args)
    import keras_tuner

    from kbatch import datasets
    from kbatch._internal import io as _io
    from kbatch.tuner import BatchLRHyperModel
    from kbatch.tuner import PatternSearch
    from kbatch.tuner import summarize

    keras.utils.set_random_seed(args.seed)
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
    tuner.search(x, y, verbose=_library_verbose(args), **fit)
    if os.environ.get("KERASTUNER_ORACLE_IP") and "chief" not in os.environ.get(
            "KERASTUNER_TUNER_ID", ""):
        _say(args, "worker done; the chief writes the summary")
        return None
    summary = summarize(tuner)
    _result(summary.text())
    os.makedirs(args.out, exist_ok=True)
    json_path = os.path.join(args.out, "search_summary.json")
    _io.write_json_atomic(json_path, summary.to_dict())
    _result(f"wrote {json_path}")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        png_path = os.path.join(args.out, "search_summary.png")
        plt.close(summary.plot(png_path))
        _result(f"wrote {png_path}")
    except ImportError:
        LOGGER.warning('no plot: matplotlib is missing; pip install '
                       '"keras-kbatch[plot]"')
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
    build, x, y, default_batch = _model_and_data(args)
    keras = _import_keras(args)
    from kbatch import find_lr

    keras.utils.set_random_seed(args.seed)
    model = build()
    batch_size = args.batch_size or default_batch
    verbose = _library_verbose(args)
    result = find_lr(
        model, x, y,
        batch_size=batch_size,
        min_lr=args.min_lr,
        max_lr=args.max_lr,
        num_steps=args.num_steps,
        num_samples=args.num_samples,
        mode=args.mode,
        seed=args.seed,
        verbose=verbose,
    )
    if not verbose:  # with verbose=1, find_lr has reported its summary
        _result(result.summary())
    for path in _write_result(result, args.out):
        _result(f"wrote {path}")
    return result


def run_demo(args):
    import numpy as np

    from kbatch import datasets

    started = time.perf_counter()
    _say(args, "kbatch demo: LR range test of a small CNN (SGD with momentum) "
         "on MNIST-1D")
    data = datasets.load_mnist1d()
    _say(args, f"data: {data}")
    keras = _import_keras(args)
    from kbatch import find_lr
    from kbatch import models

    keras.utils.set_random_seed(args.seed)
    model = models.build("cnn", data, optimizer="momentum", learning_rate=0.01)
    weights_before = [w.copy() for w in model.get_weights()]
    verbose = _library_verbose(args)
    result = find_lr(model, *data.train, batch_size=128, seed=args.seed,
                     verbose=verbose)
    if not verbose:
        _result(result.summary())
    unchanged = all(np.array_equal(a, b)
                    for a, b in zip(weights_before, model.get_weights()))
    _say(args, f"model restored after the test: {unchanged}")
    for path in _write_result(result, args.out):
        _result(f"wrote {path}")

    lr = result.suggestion()
    _say(args, f"\nchecking: {args.epochs} epochs at the suggested LR {lr:.3g} "
         "vs the common default 0.01")
    scores = {}
    for label, rate in (("suggested", lr), ("default 0.01", 0.01)):
        keras.utils.set_random_seed(args.seed)
        check = models.build("cnn", data, optimizer="momentum", learning_rate=rate)
        check.fit(*data.train, batch_size=128, epochs=args.epochs, verbose=0)
        acc = check.evaluate(*data.val, verbose=0, return_dict=True)["accuracy"]
        scores[label] = acc
        _result(f"  {label:>13} LR {rate:.3g}: validation accuracy {acc:.3f}")
    if args.advise:
        from kbatch import advise

        _say(args, f"\nadvisor: memory, throughput, and the best LR of each batch "
             f"size for {args.epochs} epochs")
        advice = advise(
            lambda: models.build("cnn", data, optimizer="momentum",
                                 learning_rate=0.01),
            *data.train, epochs=args.epochs, seed=args.seed, verbose=verbose)
        _result(advice.summary())
        for path in advice.save(os.path.join(args.out, "advice")).values():
            _result(f"wrote {path}")
    _say(args, f"\ndone in {time.perf_counter() - started:.0f} s")
    return result, scores


# ---------------------------------------------------------------------- main


def main(argv=None):
    """Run `kbatch` with `argv` (default: `sys.argv[1:]`); returns the exit
    status (argparse's `SystemExit` for `--help`, `--version` and usage errors)."""
    _quiet_tensorflow()
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_OK
    problem = _usage_problem(args)
    if problem:
        args.command_parser.error(problem)  # exits with EXIT_USAGE
    args.debug = debug = (args.debug
                          or os.environ.get("KBATCH_DEBUG", "") not in ("", "0"))
    with _output(args.verbosity):
        LOGGER.debug("kbatch %s, Python %s, command %s: %s", kbatch.__version__,
                     sys.version.split()[0], args.command,
                     {k: v for k, v in vars(args).items()
                      if k not in ("run", "command_parser")})
        started = time.perf_counter()
        try:
            args.run(args)
        except KeyboardInterrupt:
            sys.stdout.flush()
            if debug:
                traceback.print_exc()
            print("kbatch: interrupted", file=sys.stderr, flush=True)
            return EXIT_INTERRUPTED
        except Exception as e:
            sys.stdout.flush()
            if debug:
                traceback.print_exc()
            print(f"kbatch: error: {_one_line(e)}", file=sys.stderr, flush=True)
            return EXIT_ERROR
        LOGGER.debug("%s done in %.1f s", args.command, time.perf_counter() - started)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
