"""`summarize`: the trials of a batch size + LR search as a table and a figure."""

from __future__ import annotations

import math

import numpy as np

from kbatch._internal.results import Result

__all__ = ["SearchSummary", "summarize"]


class SearchSummary(Result):
    """The trials of a search as rows, a text table and a three-panel figure.

    Attributes:
        rows: One dict per trial: `trial_id`, `status`, `batch_size`,
            `learning_rate`, `objective`, `train_seconds`,
            `samples_per_second`, `updates`.
        objective: The objective's name; `direction`: `"min"` or `"max"`.

    Example: `summarize(tuner)` makes one from a finished search (see
    `BatchLRHyperModel`); `.text()` is the table, `.plot(path)` the figure.

    >>> callable(SearchSummary.text) and callable(SearchSummary.pareto_front)
    True
    """

    COLUMNS = ("trial_id", "status", "batch_size", "learning_rate", "objective",
               "train_seconds", "samples_per_second", "updates")

    def __init__(self, rows, objective, direction):
        self.rows = list(rows)
        self.objective = objective
        self.direction = direction

    def completed(self):
        return [r for r in self.rows if r["status"] == "COMPLETED"
                and r["objective"] is not None and math.isfinite(r["objective"])]

    def best(self):
        rows = self.completed()
        if not rows:
            return None
        pick = max if self.direction == "max" else min
        return pick(rows, key=lambda r: r["objective"])

    def pareto_front(self):
        """Completed trials no other trial beats on both objective and time."""
        rows = [r for r in self.completed() if r["train_seconds"] is not None]
        sign = 1.0 if self.direction == "max" else -1.0
        front = []
        for r in rows:
            dominated = any(
                o is not r and o["train_seconds"] <= r["train_seconds"]
                and sign * o["objective"] >= sign * r["objective"]
                and (o["train_seconds"] < r["train_seconds"]
                     or sign * o["objective"] > sign * r["objective"])
                for o in rows)
            if not dominated:
                front.append(r)
        return sorted(front, key=lambda r: r["train_seconds"])

    def text(self) -> str:
        header = (f"{'trial':>6} {'status':>10} {'batch':>6} {'lr':>10} "
                  f"{self.objective[:14]:>14} {'seconds':>8} {'samples/s':>10} "
                  f"{'updates':>8}")
        lines = [header, "-" * len(header)]
        best = self.best()

        def fmt(value, spec):
            return "-" if value is None else format(value, spec)

        for r in self.rows:
            mark = " *" if best is r else ""
            lines.append(
                f"{r['trial_id']:>6} {r['status']:>10} {fmt(r['batch_size'], '6d')} "
                f"{fmt(r['learning_rate'], '10.3g')} {fmt(r['objective'], '14.4f')} "
                f"{fmt(r['train_seconds'], '8.1f')} "
                f"{fmt(r['samples_per_second'], '10.0f')} "
                f"{fmt(r['updates'], '8.0f')}{mark}")
        if best is not None:
            lines.append(f"* best: batch {best['batch_size']}, learning rate "
                         f"{best['learning_rate']:.3g}, {self.objective} "
                         f"{best['objective']:.4f}")
        return "\n".join(lines)

    def _fields(self):
        return {"objective": self.objective, "direction": self.direction,
                "rows": self.rows}

    @classmethod
    def _from_fields(cls, data):
        return cls(data["rows"], str(data["objective"]), str(data["direction"]))

    def __repr__(self):
        return (f"<SearchSummary {len(self.rows)} trials, objective "
                f"{self.objective!r} ({self.direction})>")

    def plot(self, path=None):
        """Objective over (batch size, LR); Pareto front of objective vs time."""
        from kbatch import plotting

        plt = plotting.require_matplotlib()
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
        rows = [r for r in self.completed() if r["learning_rate"]]
        if rows:
            sizes = [r["batch_size"] for r in rows]
            lrs = [r["learning_rate"] for r in rows]
            values = [r["objective"] for r in rows]
            cmap = "viridis" if self.direction == "max" else "viridis_r"
            points = ax1.scatter(sizes, lrs, c=values, cmap=cmap, s=80,
                                 edgecolors="black")
            fig.colorbar(points, ax=ax1, label=self.objective)
            best = self.best()
            ax1.scatter([best["batch_size"]], [best["learning_rate"]], marker="*",
                        s=300, color="red", label="best")
            ax1.legend(fontsize="small")
        failed = [r for r in self.rows if r["status"] in ("FAILED", "INVALID")
                  and r["batch_size"]]
        if failed:
            ax1.scatter([r["batch_size"] for r in failed],
                        [r["learning_rate"] or np.nan for r in failed], marker="x",
                        color="grey", label="failed / skipped")
        ax1.set_xscale("log", base=2)
        ax1.set_yscale("log")
        ax1.set_xlabel("batch size")
        ax1.set_ylabel("learning rate")
        ax1.set_title(f"{self.objective} over batch size and LR")
        timed = [r for r in self.completed() if r["train_seconds"] is not None]
        if timed:
            ax2.scatter([r["train_seconds"] for r in timed],
                        [r["objective"] for r in timed], color="tab:blue",
                        label="trials")
            front = self.pareto_front()
            ax2.plot([r["train_seconds"] for r in front],
                     [r["objective"] for r in front], color="tab:red", marker="o",
                     label="Pareto front")
            for r in front:
                ax2.annotate(f"B={r['batch_size']}", (r["train_seconds"],
                                                      r["objective"]),
                             fontsize="x-small", xytext=(3, 3),
                             textcoords="offset points")
            ax2.legend(fontsize="small")
        ax2.set_xlabel("training seconds")
        ax2.set_ylabel(self.objective)
        ax2.set_title("Quality vs time")
        ax2.grid(alpha=0.3)
        fig.tight_layout()
        if path is not None:
            fig.savefig(path, dpi=100)
            plt.close(fig)
        return fig


def summarize(tuner) -> SearchSummary:
    """Summarise a KerasTuner search that used `BatchLRHyperModel`.

    Example:

    >>> import keras, keras_tuner, numpy as np, tempfile
    >>> x = np.random.default_rng(1).random((256, 4)).astype("float32")
    >>> y = (x[:, 0] > 0.5).astype("int32")
    >>> def build_model(hp):
    ...     model = keras.Sequential([keras.Input((4,)),
    ...                               keras.layers.Dense(2, activation="softmax")])
    ...     model.compile("sgd", "sparse_categorical_crossentropy",
    ...                   metrics=["accuracy"])
    ...     return model
    >>> from kbatch.tuner import BatchLRHyperModel
    >>> tuner = keras_tuner.RandomSearch(
    ...     BatchLRHyperModel(build_model, batch_sizes=(32,),
    ...                       learning_rate=(0.05, 0.5), epochs=1),
    ...     objective="val_accuracy", max_trials=2, seed=1,
    ...     directory=tempfile.mkdtemp())
    >>> tuner.search(x, y, validation_split=0.25, verbose=0)
    >>> summary = summarize(tuner)
    >>> len(summary.rows), summary.objective, summary.direction
    (2, 'val_accuracy', 'max')
    >>> text = summary.text()  # the table; summary.plot("search.png") the figure

    Returns:
        A `SearchSummary`: `.text()` (a table, best trial marked), `.plot()`
        (objective over batch size and LR, and the Pareto front of objective
        vs training time), `.best()`, `.pareto_front()`, `.rows`.
    """
    oracle = getattr(tuner, "oracle", None)
    if oracle is None:
        raise TypeError(f"Argument `tuner` must be a KerasTuner tuner. Received: "
                        f"{tuner!r}")
    objective = oracle.objective
    if isinstance(objective, list):
        objective = objective[0]
    name = getattr(objective, "name", "score")
    direction = getattr(objective, "direction", "min")
    rows = []
    for trial_id, trial in sorted(oracle.trials.items()):
        values = trial.hyperparameters.values

        def metric(key, trial=trial):
            if trial.metrics.exists(key):
                value = trial.metrics.get_last_value(key)
                return None if value is None else float(value)
            return None

        batch = values.get("batch_size")
        rows.append({
            "trial_id": str(trial_id),
            "status": str(trial.status),
            "batch_size": None if batch is None else int(batch),
            "learning_rate": metric("learning_rate") or values.get("learning_rate"),
            "objective": None if trial.score is None else float(trial.score),
            "train_seconds": metric("train_seconds"),
            "samples_per_second": metric("samples_per_second"),
            "updates": metric("updates"),
            "hyperparameters": dict(values),
        })
    return SearchSummary(rows, name, direction)
