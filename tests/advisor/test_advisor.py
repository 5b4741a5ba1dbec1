"""`advise`: the decision logic on stubbed measurements, the report files, the
command line end to end."""

import json

import numpy as np
import pytest
from conftest import classification_data
from conftest import make_classifier

import kbatch
from kbatch.advisor import advice as advisor
from kbatch.critical.largest_batch import MaxBatchSizeResult
from kbatch.critical.noise_scale import NoiseScaleResult
from kbatch.critical.scaling_law import ScalingLawResult
from kbatch.critical.throughput import ThroughputResult


def _stub(monkeypatch, *, largest=100, speeds=(1000, 1900, 2000), b_simple=64.0,
          lrs=(0.01, 0.012, 0.015)):
    calls = {}

    def memory(model, x, y, **kwargs):
        calls["memory"] = kwargs
        return MaxBatchSizeResult(largest, None, [], 0.05, kwargs["max_batch_size"])

    def throughput(model, x, y, *, batch_sizes, **kwargs):
        calls["throughput"] = list(batch_sizes)
        return ThroughputResult(batch_sizes, list(speeds)[: len(batch_sizes)])

    def law(build_model, x, y, *, batch_sizes, **kwargs):
        calls["law"] = list(batch_sizes)
        return ScalingLawResult(batch_sizes, list(lrs)[: len(batch_sizes)])

    def noise(model, x, y, *, batch_size, **kwargs):
        calls["noise"] = batch_size
        g = np.ones(10)
        return NoiseScaleResult(g, g * b_simple, batch_size=batch_size,
                                num_micro_batches=4)

    monkeypatch.setattr(advisor, "find_max_batch_size", memory)
    monkeypatch.setattr(advisor, "measure_throughput", throughput)
    monkeypatch.setattr(advisor, "lr_scaling_law", law)
    monkeypatch.setattr(advisor, "measure_noise_scale", noise)
    return calls


def test_advice_minimises_the_predicted_time_to_target_within_memory(monkeypatch):
    calls = _stub(monkeypatch)
    x, y = classification_data(n=1024)
    advice = kbatch.advise(make_classifier, x, y, verbose=0)
    # candidates 16..256; memory cap 100 * 0.95 = 95 leaves 16, 32, 64
    assert calls["throughput"] == [16, 32, 64]
    # (B + 64) / speed: 0.080, 0.0505, 0.064 -> 32
    assert advice.batch_size == 32
    assert advice.relative_time[32] == pytest.approx(1.0)
    assert advice.relative_time[16] == pytest.approx(0.08 / (96 / 1900))
    law = ScalingLawResult([16, 32, 64], [0.01, 0.012, 0.015])
    assert advice.learning_rate == pytest.approx(law.predict(32, "noise"))
    assert advice.warmup_steps == 0
    assert len(advice.reasons) >= 6
    assert any("B_simple = 64" in r for r in advice.reasons)


def test_a_much_larger_lr_gets_a_warmup(monkeypatch):
    _stub(monkeypatch, lrs=(0.01, 0.03, 0.06))
    x, y = classification_data(n=1024)
    advice = kbatch.advise(make_classifier, x, y, verbose=0)
    assert advice.batch_size == 32
    assert advice.learning_rate > 0.02
    assert advice.warmup_steps == 2 * 1024 // 32
    assert any("warm-up" in r and "ramp up" in r for r in advice.reasons)


def test_a_huge_noise_scale_favours_the_fastest_batch(monkeypatch):
    _stub(monkeypatch, b_simple=1e6)
    x, y = classification_data(n=1024)
    assert kbatch.advise(make_classifier, x, y, verbose=0).batch_size == 64


def test_advice_files_round_trip_and_damage_is_reported(monkeypatch, tmp_path):
    _stub(monkeypatch)
    x, y = classification_data(n=1024)
    advice = kbatch.advise(make_classifier, x, y, verbose=0)
    paths = advice.save(tmp_path / "out")
    assert set(paths) == {"json", "markdown", "png"}
    assert "# kbatch advice" in (tmp_path / "out" / "advice.md").read_text()
    loaded = kbatch.Advice.load(tmp_path / "out")
    assert (loaded.batch_size, loaded.learning_rate, loaded.warmup_steps) == (
        advice.batch_size, advice.learning_rate, advice.warmup_steps)
    assert loaded.reasons == advice.reasons
    text = (tmp_path / "out" / "advice.json").read_text()
    (tmp_path / "out" / "advice.json").write_text(text[:100])
    with pytest.raises(ValueError, match="truncated or damaged"):
        kbatch.Advice.load(tmp_path / "out")
    data = json.loads(text)
    data["batch_size"] = -3
    (tmp_path / "out" / "advice.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="out of range"):
        kbatch.Advice.load(tmp_path / "out")


@pytest.mark.parametrize("kwargs, error, pattern", [
    ({"build_model": "mlp"}, TypeError, r"`build_model` must be a function"),
    ({"batch_sizes": [64]}, ValueError, r"two or more"),
    ({"batch_sizes": [64, 32]}, ValueError, r"strictly increasing"),
    ({"max_batch_size": 0}, ValueError, r"max_batch_size=0"),
])
def test_bad_arguments(kwargs, error, pattern):
    x, y = classification_data(n=256)
    build = kwargs.pop("build_model", make_classifier)
    with pytest.raises(error, match=pattern):
        kbatch.advise(build, x, y, verbose=0, **kwargs)


def test_too_few_samples_for_default_candidates():
    x, y = classification_data(n=40)
    with pytest.raises(ValueError, match="Too few samples"):
        kbatch.advise(make_classifier, x, y, verbose=0)


@pytest.mark.slow
def test_advise_end_to_end_on_real_measurements(tmp_path):
    x, y = classification_data(n=1024)
    advice = kbatch.advise(make_classifier, x, y, batch_sizes=[16, 64],
                           train_steps=20, noise_steps=5, range_test_steps=30,
                           throughput_steps=3, verbose=0)
    # the advised batch is the one its own time-to-target table ranks first,
    # and its LR is what the fitted noise law predicts there
    ranked = {b: t for b, t in advice.relative_time.items() if t is not None}
    assert sorted(ranked) == [16, 64]
    assert advice.batch_size == min(ranked, key=ranked.get)
    assert ranked[advice.batch_size] == pytest.approx(1.0)
    assert advice.learning_rate == pytest.approx(
        advice.scaling_law.predict(advice.batch_size, "noise"))
    advice.save(tmp_path)
    assert (tmp_path / "advice.png").stat().st_size > 10_000


def test_cli_advise_end_to_end_on_a_saved_model(tmp_path, capsys):
    x, y = classification_data(n=512)
    make_classifier().save(tmp_path / "m.keras")
    np.savez(tmp_path / "d.npz", x=x, y=y)
    from kbatch import cli

    code = cli.main(["advise", "--model", str(tmp_path / "m.keras"), "--data",
                     str(tmp_path / "d.npz"), "--max-batch-size", "128",
                     "--epochs", "2", "--out", str(tmp_path / "out")])
    assert code == 0
    advice = kbatch.Advice.load(tmp_path / "out")
    assert advice.settings["epochs"] == 2
    measured = advice.lr_by_batch_size  # a dict once loaded
    sizes = measured["batch_sizes"]
    assert sizes and max(sizes) <= 128  # --max-batch-size
    # the advised LR is the one measured at the advised batch size ...
    index = sizes.index(advice.batch_size)
    assert advice.learning_rate == pytest.approx(measured["learning_rates"][index])
    # ... and that batch size's best probe is within 1% of the lowest
    best = {int(b): min(loss for _, loss in pairs)
            for b, pairs in measured["probes"].items()}
    assert best[advice.batch_size] <= 1.01 * min(best.values())
    assert "Advice: batch size" in capsys.readouterr().out


def _stub_budget(monkeypatch, losses, lrs, speeds, largest=10_000):
    """Stubbed memory and throughput, and an `lr_for_batch_sizes` that returns
    the given best probe losses and LRs."""
    from kbatch.lr import LRByBatchSize

    seen = {"calls": _stub(monkeypatch, largest=largest, speeds=speeds)}

    def measured(model, x, y, *, batch_sizes, epochs, **kwargs):
        seen.update(batch_sizes=list(batch_sizes), epochs=epochs,
                    max_micro_batch_size=kwargs.get("max_micro_batch_size"))
        probes = {b: [(lr / 3, loss + 0.5), (lr, loss), (lr * 3, loss + 0.4)]
                  for b, lr, loss in zip(batch_sizes, lrs, losses)}
        return LRByBatchSize(batch_sizes, lrs[: len(batch_sizes)], epochs=epochs,
                             probes=probes, metadata={"probe_fraction": 0.25})

    monkeypatch.setattr(advisor, "lr_for_batch_sizes", measured)
    return seen


def test_with_a_budget_the_fastest_batch_as_good_as_the_best_is_advised(
        monkeypatch):
    # losses: 64 is best; 128 within 1% of it and faster; 256 is 2% worse
    seen = _stub_budget(monkeypatch, losses=(1.05, 1.02, 1.00, 1.009, 1.02),
                        lrs=(0.01, 0.02, 0.04, 0.07, 0.1),
                        speeds=(100, 200, 400, 700, 900))
    x, y = classification_data(n=1024)
    advice = kbatch.advise(make_classifier, x, y, epochs=7, verbose=0)
    assert seen["batch_sizes"] == [16, 32, 64, 128, 256] and seen["epochs"] == 7
    assert advice.batch_size == 128
    assert advice.learning_rate == pytest.approx(0.07)  # measured at 128
    assert advice.warmup_steps == 0
    assert advice.settings["epochs"] == 7
    assert any("within 1%" in r and "[64, 128]" in r for r in advice.reasons)


def test_with_a_budget_a_clearly_better_small_batch_wins_over_speed(monkeypatch):
    _stub_budget(monkeypatch, losses=(0.90, 1.00, 1.10), lrs=(0.01, 0.02, 0.04),
                 speeds=(100, 1000, 5000))
    x, y = classification_data(n=1024)
    advice = kbatch.advise(make_classifier, x, y, epochs=3,
                           batch_sizes=[16, 32, 64], verbose=0)
    assert advice.batch_size == 16 and advice.learning_rate == pytest.approx(0.01)


def test_a_budget_advice_round_trips_with_its_measurement(monkeypatch, tmp_path):
    _stub_budget(monkeypatch, losses=(1.0, 1.1), lrs=(0.01, 0.02), speeds=(1, 2))
    x, y = classification_data(n=1024)
    advice = kbatch.advise(make_classifier, x, y, epochs=2, batch_sizes=[16, 32],
                           verbose=0)
    advice.save(tmp_path)
    again = kbatch.Advice.load(tmp_path)
    assert again.lr_by_batch_size["learning_rates"] == [0.01, 0.02]
    assert again.to_dict() == advice.to_dict()


def test_a_bad_budget_is_refused():
    x, y = classification_data(n=256)
    with pytest.raises(ValueError, match="epochs"):
        kbatch.advise(make_classifier, x, y, epochs=0, verbose=0)


def test_advice_applies_its_lr_and_warm_up_and_gives_fit_arguments():
    import keras

    x, y = classification_data(n=64)
    plain = make_classifier(optimizer=keras.optimizers.SGD(0.5))
    advice = kbatch.Advice(16, 0.05, 0, [], settings={"epochs": 3})
    assert "0.05" in advice.apply(plain)
    assert float(plain.optimizer.learning_rate) == pytest.approx(0.05)
    assert advice.fit_kwargs() == {"batch_size": 16, "epochs": 3}
    history = plain.fit(x, y, verbose=0, **advice.fit_kwargs())
    assert len(history.history["loss"]) == 3
    # a schedule-compiled model, with a warm-up from the small-batch LR
    decay = keras.optimizers.schedules.ExponentialDecay(0.5, 10, 0.5)
    scheduled = make_classifier(optimizer=keras.optimizers.SGD(decay))
    law = ScalingLawResult([16, 64], [0.01, 0.03])
    warm = kbatch.Advice(64, 0.04, 8, [], scaling_law=law)
    assert "warm-up from 0.01 to 0.04 over 8 steps" in warm.apply(scheduled)
    scheduled.fit(x, y, batch_size=16, epochs=1, verbose=0)  # 4 steps: halfway
    assert float(scheduled.optimizer.learning_rate) == pytest.approx(0.025)
    constant = make_classifier(optimizer=keras.optimizers.SGD(decay))
    kbatch.Advice(64, 0.04, 0, []).apply(constant)
    constant.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert float(constant.optimizer.learning_rate) == pytest.approx(0.04)


def test_with_a_budget_a_better_batch_past_the_memory_limit_accumulates(
        monkeypatch, tmp_path):
    # memory: 100 trains, 95 with the margin; 256 trains best, as 4 x 64
    seen = _stub_budget(monkeypatch, losses=(1.2, 1.15, 1.1, 1.05, 1.0),
                        lrs=(0.01, 0.02, 0.04, 0.07, 0.1),
                        speeds=(100, 200, 400), largest=100)
    x, y = classification_data(n=1024)
    advice = kbatch.advise(make_classifier, x, y, epochs=5, verbose=0)
    # every candidate measured, those past the cap by accumulation
    assert seen["batch_sizes"] == [16, 32, 64, 128, 256]
    assert seen["max_micro_batch_size"] == 95
    # the accumulated batch's samples/s measured at its micro-batch
    assert seen["calls"]["throughput"] == [64]
    assert advice.batch_size == 256 and advice.micro_batch_size == 64
    assert advice.gradient_accumulation_steps == 4
    assert advice.learning_rate == pytest.approx(0.1)
    assert advice.fit_kwargs() == {"batch_size": 64, "epochs": 5}
    assert any("4 micro-batches of 64" in r for r in advice.reasons)
    assert "(4 micro-batches of 64)" in advice.summary()
    advice.save(tmp_path)
    assert kbatch.Advice.load(tmp_path).micro_batch_size == 64


def test_an_accumulated_batch_is_ranked_by_its_measured_speed(monkeypatch):
    # 64 and 256 train as well; 256 by accumulation measures 100 samples/s
    # (the stub's first speed), the fitting 64 only 50
    _stub_budget(monkeypatch, losses=(1.2, 1.15, 1.0, 1.05, 1.0),
                 lrs=(0.01, 0.02, 0.04, 0.07, 0.1), speeds=(100, 200, 50),
                 largest=100)
    x, y = classification_data(n=1024)
    advice = kbatch.advise(make_classifier, x, y, epochs=5, verbose=0)
    assert advice.batch_size == 256 and advice.micro_batch_size == 64


@pytest.mark.parametrize("built", [False, True])
def test_an_accumulating_advice_trains_like_the_large_batch(built):
    import keras

    x, y = classification_data(n=128)
    keras.utils.set_random_seed(3)
    reference = make_classifier(optimizer=keras.optimizers.SGD(0.5))
    weights = reference.get_weights()
    reference.optimizer.learning_rate = 0.05
    reference.fit(x, y, batch_size=64, epochs=2, shuffle=False, verbose=0)
    model = make_classifier(optimizer=keras.optimizers.SGD(0.5))
    model.set_weights(weights)
    if built:
        model.optimizer.build(model.trainable_variables)
    advice = kbatch.Advice(64, 0.05, 0, [], micro_batch_size=16,
                           settings={"epochs": 2})
    assert "4 micro-batches of 16" in advice.apply(model)
    model.fit(x, y, shuffle=False, verbose=0, **advice.fit_kwargs())
    assert int(model.optimizer.iterations.numpy()) == 4  # updates
    for a, b in zip(reference.get_weights(), model.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_a_search_that_reached_its_own_limit_caps_nothing_below_it(monkeypatch):
    calls = _stub(monkeypatch, largest=None)  # the stub's memory: see below

    def memory(model, x, y, **kwargs):  # every size up to the search limit trains
        limit = kwargs["max_batch_size"]
        return MaxBatchSizeResult(limit, None, [], 0.05, limit)

    monkeypatch.setattr(advisor, "find_max_batch_size", memory)
    x, y = classification_data(n=1024)
    kbatch.advise(make_classifier, x, y, batch_sizes=[16, 64, 256],
                  max_batch_size=256, verbose=0)
    # no 5% margin below a limit that was never found: 256 fits
    assert calls["throughput"] == [16, 64, 256]
