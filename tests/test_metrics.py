"""evar.metrics against scikit-learn's reference implementations, on random data with tied scores and classes
missing from the test set, plus small cases worked by hand.

Both sides compute in float64 from the same inputs and differ only in summation order, so they agree to ~1e-15
relative; rel=1e-12 leaves a wide margin on any CPU.
"""

import warnings

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, average_precision_score, balanced_accuracy_score, roc_auc_score

from evar.errors import EvarError
from evar.metrics import (
    METRICS,
    Metric,
    accuracy,
    average_precision,
    balanced_accuracy,
    classwise_accuracy,
    get_metric,
    mean_average_precision,
    roc_auc,
    score,
)

REL = 1e-12  # float64 on both sides, different summation order (see the module docstring)


def tied_scores(rng, shape, levels=5):
    """Scores on a coarse grid, so many clips tie within a class and across classes."""
    return rng.integers(0, levels, shape) / (levels - 1)


def single_label_case(seed, n=80, n_classes=7):
    """Targets that never use the last two classes; scores with many ties."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, n_classes - 2, n), tied_scores(rng, (n, n_classes))


def multi_label_case(seed, n=60, n_classes=8):
    """0/1 targets with one class never positive and one class always positive; scores with many ties."""
    rng = np.random.default_rng(seed)
    Y = (rng.random((n, n_classes)) < 0.3).astype(np.float32)
    Y[:, 2] = 0  # missing from the test set: no positive clip
    Y[:, 5] = 1  # no negative clip: AP defined, ROC AUC not
    return Y, tied_scores(rng, (n, n_classes))


@pytest.mark.parametrize('seed', range(5))
def test_accuracy_matches_sklearn(seed):
    y, S = single_label_case(seed)
    assert accuracy(y, S) == pytest.approx(accuracy_score(y, S.argmax(1)), rel=REL)


@pytest.mark.parametrize('seed', range(5))
def test_balanced_accuracy_matches_sklearn(seed):
    y, S = single_label_case(seed)
    pred = S.argmax(1)
    assert set(pred) - set(y), 'the case should predict classes absent from the targets'
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', 'y_pred contains classes not in y_true')
        expected = balanced_accuracy_score(y, pred)
    assert balanced_accuracy(y, S) == pytest.approx(expected, rel=REL)


@pytest.mark.parametrize('seed', range(5))
def test_average_precision_matches_sklearn_per_class(seed):
    Y, S = multi_label_case(seed)
    for c in np.flatnonzero(Y.any(0)):
        assert average_precision(Y[:, c], S[:, c]) == pytest.approx(average_precision_score(Y[:, c], S[:, c]), rel=REL)
    assert np.isnan(average_precision(Y[:, 2], S[:, 2]))


@pytest.mark.parametrize('seed', range(5))
def test_map_matches_sklearn_over_classes_with_a_positive(seed):
    Y, S = multi_label_case(seed)
    keep = Y.any(0)
    assert not keep.all()
    assert mean_average_precision(Y, S) == pytest.approx(average_precision_score(Y[:, keep], S[:, keep]), rel=REL)
    # The deliberate difference: scikit-learn's macro average over every class counts the class with no positive
    # as AP 0 (and warns), so it is lower by exactly that class's share.
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', 'No positive class found in y_true')
        sklearn_all = average_precision_score(Y, S, average='macro')
    assert sklearn_all == pytest.approx(mean_average_precision(Y, S) * keep.sum() / Y.shape[1], rel=REL)


@pytest.mark.parametrize('seed', range(5))
def test_roc_auc_matches_sklearn_over_classes_with_both(seed):
    Y, S = multi_label_case(seed)
    n_pos = Y.sum(0)
    defined = (n_pos > 0) & (n_pos < len(Y))
    assert not defined.all()
    assert roc_auc(Y, S) == pytest.approx(roc_auc_score(Y[:, defined], S[:, defined], average='macro'), rel=REL)
    for c in np.flatnonzero(defined):
        assert roc_auc(Y[:, [c]], S[:, [c]]) == pytest.approx(roc_auc_score(Y[:, c], S[:, c]), rel=REL)


def test_hand_worked_cases():
    # AP: positives at ranks 1 and 3 -> (1/1 + 2/3) / 2.
    assert average_precision(np.array([1, 0, 1, 0]), np.array([0.9, 0.8, 0.7, 0.1])) == pytest.approx(5 / 6)
    # AP with a tie at the top: the tied pair passes one threshold together (precision 1/2), then 2/3.
    assert average_precision(np.array([1, 0, 1]), np.array([0.5, 0.5, 0.2])) == pytest.approx((1 / 2 + 2 / 3) / 2)
    # mAP leaves out class 2 (no positive): 1.0, where scikit-learn's macro over all three classes gives 2/3.
    Y = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0]])
    assert mean_average_precision(Y, Y.astype(float)) == 1.0
    # ROC AUC: 3 of the 4 positive-negative pairs are ordered correctly; a tie counts half.
    assert roc_auc(np.array([[0], [0], [1], [1]]), np.array([[0.1], [0.4], [0.35], [0.8]])) == pytest.approx(0.75)
    assert roc_auc(np.array([[0], [1]]), np.array([[0.5], [0.5]])) == 0.5
    # Accuracy: a tie for the top score goes to the lower class index.
    assert accuracy(np.array([0, 1]), np.array([[0.9, 0.1], [0.8, 0.2]])) == 0.5
    assert accuracy(np.array([0, 1]), np.array([[0.5, 0.5], [0.5, 0.5]])) == 0.5
    # Balanced accuracy: always predicting the majority class recalls class 0 fully and class 1 not at all.
    y, S = np.array([0, 0, 0, 1]), np.array([[1.0, 0.0]] * 4)
    assert accuracy(y, S) == 0.75 and balanced_accuracy(y, S) == 0.5
    assert classwise_accuracy(np.array([0, 0, 2]), np.array([0, 1, 2]), ['a', 'b', 'c']) == [('a', 0.5, 2), ('c', 1.0, 1)]


def brute_force_ap(y, s):
    """AP by its definition for untied scores: the mean over positives of the precision at their rank."""
    order = np.argsort(-s, kind='stable')
    hits, precisions = 0, []
    for rank, i in enumerate(order, 1):
        if y[i]:
            hits += 1
            precisions.append(hits / rank)
    return np.mean(precisions)


def test_average_precision_matches_definition():
    rng = np.random.default_rng(0)
    for _ in range(20):
        y, s = rng.random(30) > 0.6, rng.random(30)
        if y.any():
            assert average_precision(y, s) == pytest.approx(brute_force_ap(y, s))


def test_registry():
    assert set(METRICS) >= {'accuracy', 'mAP', 'roc_auc', 'balanced_accuracy'}
    assert all(isinstance(m, Metric) and m.name == name and m.description for name, m in METRICS.items())
    assert get_metric('mAP').multi_label and not get_metric('accuracy').multi_label
    with pytest.raises(TypeError):
        METRICS['accuracy'] = METRICS['mAP']
    with pytest.raises(EvarError, match=r'Unknown metric .map.*accuracy.*mAP'):
        get_metric('map')
    with pytest.raises(EvarError, match='Unknown metric'):
        score('f1', np.array([0]), np.array([[1.0, 0.0]]))


@pytest.mark.parametrize('name', sorted(METRICS))
def test_each_metric_takes_the_targets_it_declares(name):
    """A metric takes the target shape its `multi_label` flag names, refuses the other one, and orders a perfect
    ranking above a reversed one as its `higher_is_better` flag says."""
    metric = get_metric(name)
    Y = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 1, 0]])
    labels = Y.argmax(1)
    good, bad = Y + 0.1, 1.0 - Y
    right, wrong = (Y, labels) if metric.multi_label else (labels, Y)
    expected_kind = 'multi-label' if metric.multi_label else 'single-label'
    with pytest.raises(EvarError, match=f'{name} is a {expected_kind} metric'):
        score(name, wrong, good)
    assert (score(name, right, good) > score(name, right, bad)) == metric.higher_is_better


def test_bad_input_is_one_clear_error():
    S = np.array([[0.2, 0.8], [0.6, 0.4]])
    with pytest.raises(EvarError, match=r'accuracy is a single-label metric.*shape \(2, 2\)'):
        accuracy(np.eye(2), S)
    with pytest.raises(EvarError, match=r'class indices in \[0, 2\)'):
        accuracy(np.array([0, 2]), S)
    with pytest.raises(EvarError, match='must be numbers'):
        accuracy(np.array(['a', 'b']), S)
    with pytest.raises(EvarError, match='2 targets for 1 rows'):
        accuracy(np.array([0, 1]), S[:1])
    with pytest.raises(EvarError, match='NaN'):
        balanced_accuracy(np.array([0, 1]), np.array([[np.nan, 0.0], [0.0, 1.0]]))
    with pytest.raises(EvarError, match='empty'):
        accuracy(np.zeros(0, dtype=int), np.zeros((0, 2)))
    with pytest.raises(EvarError, match='0 or 1'):
        mean_average_precision(np.array([[2, 0], [0, 1]]), S)
    with pytest.raises(EvarError, match='no class has a positive'):
        mean_average_precision(np.zeros((2, 2)), S)
    with pytest.raises(EvarError, match='no class has both'):
        roc_auc(np.array([[1, 0], [1, 0]]), S)
