"""Every result object shares one base: `to_dict` / `from_dict` / `save` /
`load`, with a format name and version that are checked when reading."""

import json
import math

import numpy as np
import pytest

import kbatch
from kbatch._internal.results import Result
from kbatch.tuner import SearchSummary


def _results():
    lrs = np.geomspace(1e-4, 1.0, 40)
    finder = kbatch.LRFinderResult(lrs, 2.0 - np.tanh(np.log10(lrs) + 2)
                                   + 30 * lrs ** 2, batch_size=32)
    noise = kbatch.NoiseScaleResult([1.0, 1.2, 0.8], [50.0, 70.0, 30.0],
                                    batch_size=64, num_micro_batches=4)
    memory = kbatch.MaxBatchSizeResult(
        1000, 4000, [{"phase": "train", "batch_size": 1000, "outcome": "ok"}],
        margin=0.05, max_batch_size=8192)
    throughput = kbatch.ThroughputResult([16, 64, 256], [1000.0, 3700.0, math.nan],
                                         out_of_memory=[256])
    law = kbatch.ScalingLawResult([16, 64, 256], [0.01, 0.02, 0.04],
                                  left_out={512: "out of memory"})
    advice = kbatch.Advice(64, 0.05, 10, ["the knee"], memory=memory.to_dict(),
                           relative_time={16: 1.5, 64: 1.0})
    summary = SearchSummary([{"trial_id": "00", "status": "COMPLETED",
                              "batch_size": 64, "learning_rate": 0.05,
                              "objective": 0.9, "train_seconds": 1.0,
                              "samples_per_second": 100.0, "updates": 10.0}],
                            "val_accuracy", "max")
    return [finder, noise, memory, throughput, law, advice, summary]


RESULTS = _results()


def test_the_seven_result_classes_share_the_base():
    assert len({type(r) for r in RESULTS}) == 7
    assert all(isinstance(r, Result) for r in RESULTS)


@pytest.mark.parametrize("result", RESULTS, ids=lambda r: type(r).__name__)
def test_round_trip_through_a_dict_and_a_file(result, tmp_path):
    data = result.to_dict()
    assert data["format"] == f"kbatch.{type(result).__name__}"
    assert data["format_version"] == 1
    json.dumps(data, allow_nan=False)  # plain JSON: no NaN, no objects
    again = type(result).from_dict(json.loads(json.dumps(data)))
    assert again.to_dict() == data
    path = tmp_path / "result.json"
    result.save(path)
    assert type(result).load(path).to_dict() == data


@pytest.mark.parametrize("result", RESULTS, ids=lambda r: type(r).__name__)
def test_foreign_or_future_files_are_refused(result):
    data = result.to_dict()
    name = type(result).__name__
    with pytest.raises(ValueError, match=f"Not a kbatch {name}"):
        type(result).from_dict({**data, "format": "kbatch.Other"})
    with pytest.raises(ValueError, match=f"Unsupported {name} format_version 2"):
        type(result).from_dict({**data, "format_version": 2})
    with pytest.raises(ValueError, match=f"Not a kbatch {name}"):
        type(result).from_dict([data])


# a field each class cannot be rebuilt without
REQUIRED = {"LRFinderResult": "lrs", "NoiseScaleResult": "g_sq",
            "MaxBatchSizeResult": "largest_train", "ThroughputResult": "batch_sizes",
            "ScalingLawResult": "learning_rates", "Advice": "batch_size",
            "SearchSummary": "rows"}


@pytest.mark.parametrize("result", RESULTS, ids=lambda r: type(r).__name__)
def test_a_damaged_file_is_a_value_error_naming_the_class(result):
    name = type(result).__name__
    data = result.to_dict()
    del data[REQUIRED[name]]
    with pytest.raises(ValueError, match=name):
        type(result).from_dict(data)
