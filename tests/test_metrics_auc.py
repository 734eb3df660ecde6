"""The single-label ROC AUC (`roc_auc_ovr`, HEAR's `aucroc` of its Beehive tasks) against scikit-learn's
roc_auc_score: binary tasks with two softmax outputs, multi-class one-vs-rest, ties, and bad input."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from evar.errors import EvarError
from evar.metrics import METRICS, roc_auc_ovr, score


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_binary_two_outputs_is_the_positive_class_auc(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 60)
    probs = softmax(rng.normal(size=(60, 2)) + 0.8 * np.eye(2)[y])
    probs = np.round(probs, 1)  # coarse values: many ties
    value = score('roc_auc_ovr', y, probs)
    # HEAR's aucroc: macro over the one-hot columns; and, for outputs summing to one, the binary AUC of class 1.
    assert value == pytest.approx(roc_auc_score(np.eye(2)[y], probs, average='macro'), rel=1e-12)
    assert value == pytest.approx(roc_auc_score(y, probs[:, 1]), rel=1e-12)


def test_multiclass_one_vs_rest_and_an_absent_class():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 4, 50)
    probs = softmax(rng.normal(size=(50, 4)))
    assert roc_auc_ovr(y, probs) == pytest.approx(roc_auc_score(y, probs, multi_class='ovr', average='macro'),
                                                  rel=1e-12)
    five = np.concatenate([probs, np.zeros((50, 1))], axis=1)  # class 4 never occurs: left out of the mean
    assert roc_auc_ovr(y, five) == pytest.approx(roc_auc_score(np.eye(5)[y][:, :4], five[:, :4], average='macro'),
                                                 rel=1e-12)


def test_hand_worked_and_errors():
    # Class 1's score orders 3 of its 4 (positive, negative) pairs correctly: 0.75; class 0's column is the
    # complement, so it also gives 0.75.
    y, p1 = np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])
    assert roc_auc_ovr(y, np.stack([1 - p1, p1], 1)) == pytest.approx(0.75)
    assert METRICS['roc_auc_ovr'].higher_is_better and not METRICS['roc_auc_ovr'].multi_label
    with pytest.raises(EvarError, match='one class only'):
        roc_auc_ovr(np.array([1, 1]), np.array([[0.2, 0.8], [0.4, 0.6]]))
    with pytest.raises(EvarError, match='class indices'):
        roc_auc_ovr(np.array([0, 2]), np.array([[0.2, 0.8], [0.4, 0.6]]))
    with pytest.raises(EvarError, match='at least 2'):
        roc_auc_ovr(np.array([0, 0]), np.array([[1.0], [1.0]]))
