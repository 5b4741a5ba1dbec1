"""What other callbacks see of a range test: the LR and the batch's own loss."""

import csv
import glob
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import classification_data
from conftest import make_classifier

import kbatch


def _scalars(logdir, tag):
    """`[(step, value)]` of a scalar tag in the TensorBoard event files."""
    out = []
    for path in sorted(glob.glob(os.path.join(logdir, "**", "events.out.tfevents.*"),
                                 recursive=True)):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.tag == tag:
                    out.append((event.step, float(tf.make_ndarray(value.tensor))))
    return sorted(out)


@pytest.mark.filterwarnings("ignore::kbatch.LRFinderWarning")
def test_find_lr_hands_tensorboard_the_sweep(tmp_path):
    x, y = classification_data(n=512)
    model = make_classifier(optimizer="sgd")
    board = keras.callbacks.TensorBoard(str(tmp_path), update_freq=1)
    result = kbatch.find_lr(model, x, y, batch_size=32, num_steps=25, extend=False,
                            callbacks=[board], verbose=0)
    lrs = _scalars(str(tmp_path), "batch_learning_rate")
    losses = _scalars(str(tmp_path), "batch_range_test_loss")
    assert len(lrs) == result.lrs.size == len(losses)
    np.testing.assert_allclose([v for _, v in lrs], result.lrs, rtol=1e-6)
    # the batch's own loss, not Keras' running mean (`batch_loss`)
    np.testing.assert_allclose([v for _, v in losses], result.losses, rtol=1e-5)
    running = [v for _, v in _scalars(str(tmp_path), "batch_loss")]
    assert not np.allclose(running[5:], result.losses[5:len(running)], rtol=1e-3)


def test_csv_logger_after_the_range_test_gets_its_last_point(tmp_path):
    x, y = classification_data(n=256)
    model = make_classifier(optimizer="sgd")
    finder = kbatch.LRRangeTest(min_lr=1e-4, max_lr=1.0, num_steps=16)
    path = str(tmp_path / "log.csv")
    model.fit(x, y, batch_size=32, epochs=2, verbose=0,
              callbacks=[finder, keras.callbacks.CSVLogger(path)])
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2
    lr_at = [float(r["learning_rate"]) for r in rows]
    result = finder.result
    assert lr_at == pytest.approx([result.lrs[7], result.lrs[15]])
    assert float(rows[1]["range_test_loss"]) == pytest.approx(result.losses[15])


def test_find_lr_refuses_something_that_is_not_a_callback():
    x, y = classification_data(n=64)
    model = make_classifier()
    with pytest.raises(TypeError, match=r"callbacks\[1\] of type str"):
        kbatch.find_lr(model, x, y, callbacks=[keras.callbacks.History(), "tb"],
                       verbose=0)
