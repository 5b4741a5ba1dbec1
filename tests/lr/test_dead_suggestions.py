"""No dead suggestion: the batch-16 regression of issue 15.

On an MNIST-1D CNN with SGD + momentum at batch 16, a 100-step range test
(1,600 samples) could end before the loss visibly fell, and the suggestion was
then read off noise: ~1e-7..1e-5, an LR at which the model stays at chance.
The test is now sized in samples and refuses to suggest where the loss did
not fall. With the old behaviour (`num_steps=100, extend=False` and the rule
read without the guard) seed 2 here suggests 9e-6 and the trained model stays
near chance.
"""

import keras
import pytest

import kbatch
from kbatch import datasets
from kbatch import models


@pytest.fixture(scope="module")
def mnist1d():
    return datasets.load("mnist1d")


@pytest.mark.parametrize("seed", range(5))
def test_the_suggestion_at_batch_16_trains_the_model(mnist1d, seed):
    keras.utils.set_random_seed(seed)
    model = models.build("cnn", mnist1d, optimizer="momentum", learning_rate=0.01)
    result = kbatch.find_lr(model, mnist1d.x_train, mnist1d.y_train,
                            batch_size=16, seed=seed, verbose=0)
    lr = result.suggestion()
    assert lr >= result.fall_lr
    model.optimizer.learning_rate = lr
    model.fit(mnist1d.x_train, mnist1d.y_train, batch_size=16, epochs=1, verbose=0)
    accuracy = model.evaluate(mnist1d.x_test, mnist1d.y_test, verbose=0,
                              return_dict=True)["accuracy"]
    assert accuracy > 0.3  # chance is 0.1; a dead LR stays below 0.2
