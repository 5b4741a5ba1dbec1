"""The claims experiments (examples/claims/) and the page they generate."""

import importlib
import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
CLAIMS_DIR = ROOT / "examples" / "claims"
sys.path.insert(0, str(CLAIMS_DIR))

import _common as c  # noqa: E402
import run_all  # noqa: E402


def _module(name):
    return importlib.import_module(name)


def _stats(*values):
    return c.stats(values)


def test_at_least_twelve_distinct_claims_each_with_sources_and_literature():
    claims = [claim for name in run_all.SCRIPTS for claim in _module(name).CLAIMS]
    assert len(claims) >= 12
    assert len({claim["id"] for claim in claims}) == len(claims)
    for claim in claims:
        assert claim["sources"] and set(claim["sources"]) <= set(c.SOURCES)
        assert len(claim["literature"]) > 40 and len(claim["claim"]) > 20


@pytest.mark.parametrize("name", run_all.SCRIPTS)
def test_reference_results_exist_with_three_seeds_and_a_figure(name):
    results = c.load_results(name)
    assert results is not None, f"run python examples/claims/{name}.py"
    assert results["_meta"]["seeds"] >= 3 and not results["_meta"]["quick"]
    assert (ROOT / "docs" / "images" / "claims" / f"{name}.png").stat().st_size > 1000
    verdicts = _module(name).verdicts(results)
    for claim in _module(name).CLAIMS:
        verdict, measured = verdicts[claim["id"]]
        assert verdict in c.VERDICTS and measured


def test_the_claims_page_is_generated_from_the_results():
    page = (ROOT / "docs" / "claims.md").read_text(encoding="utf-8")
    assert page == run_all.render(), (
        "docs/claims.md is out of date: python examples/claims/run_all.py --render")
    assert page.count("**holds") + page.count("**does not hold") >= 12
    # the verdict table sits between its markers, once, and the README links to it
    assert page.count(run_all.START) == page.count(run_all.END) == 1
    assert run_all.table_block() in page
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "docs/claims.md" in readme and run_all.START not in readme


# --- the verdicts follow the numbers (synthetic results, both ways) ----------

def _scaling(accuracies):
    rules = {rule: {str(b): _stats(a, a + 0.002, a - 0.002)
                    for b, a in accuracies.items()} for rule in ("none", "linear",
                                                                  "sqrt")}
    return {"batch_sizes": list(accuracies), "base": _stats(0.80, 0.802, 0.798),
            "rules": rules}


def test_scaling_verdict_follows_where_accuracy_drops():
    module = _module("scaling_rules")
    kept = _scaling({128: 0.80, 512: 0.799})
    assert module.verdicts(kept)["linear-scaling"][0] == c.HOLDS
    dropped = _scaling({128: 0.80, 512: 0.70})
    dropped["rules"]["none"]["128"] = _stats(0.7, 0.7, 0.7)
    assert module.verdicts(dropped)["linear-scaling"][0] == c.CONDITIONS
    dropped["rules"]["linear"]["128"] = _stats(0.7, 0.7, 0.7)
    assert module.verdicts(dropped)["linear-scaling"][0] == c.DOES_NOT_HOLD


def _memory(intercept, slope, noise):
    sizes = [256, 1024, 4096, 16384]
    growth = {}
    for b in sizes:
        mean = intercept + slope * b
        growth[str(b)] = _stats(mean + noise, mean - noise, mean)
    return {"batch_sizes": sizes, "growth_mib": growth,
            "fit": _module("memory").fit_affine(sizes, growth),
            "activations_mib_per_sample": slope}


def test_memory_verdict_separates_proportional_affine_and_noise():
    module = _module("memory")
    assert module.verdicts(_memory(1, 0.02, 0.5))["memory-linear"][0] == c.HOLDS
    assert module.verdicts(_memory(400, 0.02, 0.5))["memory-linear"][0] == c.CONDITIONS
    assert module.verdicts(_memory(10, 0.0001, 40))["memory-linear"][0] == (
        c.DOES_NOT_HOLD)


def _gradient(norms, exponent):
    rows = {str(b): {"norm": _stats(n, n, n), "norm_sq": _stats(n * n, n * n, n * n),
                     "relative_error": _stats(1, 1, 1)}
            for b, n in zip((4, 64, 1024), norms)}
    stage = {"by_batch": rows, "error_exponent": exponent,
             "full_gradient_norm": _stats(0.5, 0.5, 0.5)}
    return {"batch_sizes": [4, 64, 1024], "stages": {"initial": stage}}


def test_gradient_verdicts_follow_the_norms_and_the_error_exponent():
    module = _module("gradient_noise")
    falling = module.verdicts(_gradient((4.0, 1.0, 0.6), -0.5))
    assert falling["exploding-vanishing-gradients"][0] == c.DOES_NOT_HOLD
    assert falling["larger-batch-accurate-gradient"][0] == c.HOLDS
    rising = module.verdicts(_gradient((0.6, 1.0, 4.0), -0.1))
    assert rising["exploding-vanishing-gradients"][0] == c.HOLDS
    assert rising["larger-batch-accurate-gradient"][0] == c.DOES_NOT_HOLD


def _accumulation(plain, batch_norm, twin=0.04):
    def side(distance):
        return {"relative_distance": _stats(distance, distance, distance),
                "twin_distance": _stats(twin, twin, twin),
                "large_accuracy": _stats(0.8, 0.8, 0.8),
                "accumulated_accuracy": _stats(0.8, 0.8, 0.8)}

    return {"large": 128, "micro": 32, "plain": side(plain),
            "batch_norm": side(batch_norm)}


def test_accumulation_verdict_compares_with_the_perturbed_twin():
    module = _module("accumulation")
    key = "accumulation-equals-large-batch"
    # as far from the large batch as a 1e-6-perturbed twin: equal
    assert module.verdicts(_accumulation(0.04, 0.05))[key][0] == c.HOLDS
    assert module.verdicts(_accumulation(1e-7, 1e-7, twin=1e-6))[key][0] == c.HOLDS
    assert module.verdicts(_accumulation(0.04, 0.5))[key][0] == c.CONDITIONS
    assert module.verdicts(_accumulation(0.3, 0.3))[key][0] == c.DOES_NOT_HOLD


def test_increase_batch_verdict_needs_matching_accuracy_with_fewer_updates():
    module = _module("increase_batch")

    def results(decay, increase, updates):
        return {"kinds": {
            "constant": {"test_accuracy": _stats(0.6, 0.6, 0.6), "updates": 3000},
            "LR decay": {"test_accuracy": _stats(decay, decay + 0.005, decay - 0.005),
                         "updates": 3000},
            "batch increase": {"test_accuracy": _stats(increase, increase + 0.005,
                                                       increase - 0.005),
                               "updates": updates}}}

    key = "increase-batch-not-decay-lr"
    assert module.verdicts(results(0.68, 0.679, 1600))[key][0] == c.HOLDS
    assert module.verdicts(results(0.68, 0.60, 1600))[key][0] == c.CONDITIONS
    assert module.verdicts(results(0.68, 0.60, 4000))[key][0] == c.DOES_NOT_HOLD


@pytest.mark.slow  # `make test-all`: kept out of the 10-minute `make test`
def test_a_claim_script_runs_end_to_end(tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "MPLBACKEND": "Agg"}
    out = subprocess.run(
        [sys.executable, str(CLAIMS_DIR / "gradient_noise.py"), "--quick",
         "--seeds", "2", "--out", str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    results = json.loads((tmp_path / "gradient_noise.json").read_text())
    assert results["_meta"]["quick"] and results["_meta"]["seeds"] == 2
    assert (tmp_path / "gradient_noise.png").stat().st_size > 1000
    # every batch size measured, errors positive, and the verdicts printed
    stage = results["stages"]["initial"]
    assert set(stage["by_batch"]) == {"4", "64", "1024"}
    assert all(row["relative_error"]["mean"] > 0 for row in stage["by_batch"].values())
    assert out.stdout.count("[") >= 2


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in run_all.SCRIPTS if n != "gradient_noise"])
def test_every_claim_script_runs_quick(name, tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "MPLBACKEND": "Agg"}
    out = subprocess.run(
        [sys.executable, str(CLAIMS_DIR / f"{name}.py"), "--quick", "--out",
         str(tmp_path)], capture_output=True, text=True, env=env, timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]
    results = json.loads((tmp_path / f"{name}.json").read_text())
    verdicts = _module(name).verdicts(results)
    assert all(v[0] in c.VERDICTS for v in verdicts.values())
    assert (tmp_path / f"{name}.png").exists()


def test_distance_verdict_discounts_a_diverged_run():
    module = _module("distance")

    def results(same, scaled, accuracy_large):
        def rows(distances, accuracies):
            return {str(b): {"distance": _stats(d, d, d), "test_accuracy":
                             _stats(a, a, a)}
                    for b, d, a in zip((16, 256, 1024), distances, accuracies)}

        return {"batch_sizes": [16, 256, 1024], "epochs": 10,
                "same_lr": rows(same, (0.6, 0.6, 0.6)),
                "scaled_lr": rows(scaled, (0.6, 0.6, accuracy_large))}

    key = "larger-batches-move-farther"
    assert module.verdicts(results((1, 2, 3), (1, 2, 3), 0.6))[key][0] == c.HOLDS
    assert module.verdicts(results((3, 2, 1), (1, 2, 3), 0.6))[key][0] == (
        c.CONDITIONS)
    diverged = module.verdicts(results((3, 2, 1), (1, 1, 3), 0.1))[key]
    assert diverged[0] == c.DOES_NOT_HOLD and "breaks training" in diverged[1]
    assert module.verdicts(results((3, 2, 1), (1, 1, 1), 0.6))[key][0] == (
        c.DOES_NOT_HOLD)


def test_generalization_verdicts_separate_equal_epochs_from_more_epochs():
    module = _module("generalization")

    def results(epochs_acc, updates_acc):
        def row(acc, epochs):
            return {"test": _stats(acc, acc + 0.004, acc - 0.004),
                    "gap": _stats(0.2, 0.2, 0.2), "epochs": epochs}

        return {"batch_sizes": [16, 1024], "epochs": 20,
                "same_epochs": {"16": row(epochs_acc[0], 20),
                                "1024": row(epochs_acc[1], 20)},
                "same_updates": {"16": row(updates_acc[0], 20),
                                 "1024": row(updates_acc[1], 320)}}

    def verdicts(*args):
        v = module.verdicts(results(*args))
        return v["small-batches-generalize"][0], v["large-batches-generalize"][0]

    assert verdicts((0.70, 0.60), (0.70, 0.62)) == (c.HOLDS, c.DOES_NOT_HOLD)
    assert verdicts((0.70, 0.60), (0.70, 0.70)) == (c.CONDITIONS, c.DOES_NOT_HOLD)
    assert verdicts((0.62, 0.62), (0.62, 0.65)) == (c.DOES_NOT_HOLD, c.CONDITIONS)
    assert verdicts((0.60, 0.70), (0.60, 0.70)) == (c.DOES_NOT_HOLD, c.HOLDS)
