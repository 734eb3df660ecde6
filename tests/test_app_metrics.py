"""app.metrics: the patient rules and challenge metrics against values worked out by hand."""

import math

import numpy as np
import pytest

from app.metrics import (argmax_of_mean, binary_scores, circor_scores, confusion, group_mean, icbhi_scores,
                         patient_decisions, patient_labels, priority_rule, unweighted_average_recall,
                         weighted_accuracy)
from evar.errors import EvarError

P, U, A = 0, 1, 2  # Present, Unknown, Absent


def test_weighted_accuracy_by_hand():
    # true: P P U A A A; pred: P A U A P A -> correct P 1 of 2, U 1 of 1, A 2 of 3
    # (5*1 + 3*1 + 1*2) / (5*2 + 3*1 + 1*3) = 10 / 16
    y_true, y_pred = [P, P, U, A, A, A], [P, A, U, A, P, A]
    assert weighted_accuracy(y_true, y_pred) == pytest.approx(10 / 16)
    # UAR: (1/2 + 1/1 + 2/3) / 3
    assert unweighted_average_recall(y_true, y_pred, 3) == pytest.approx((0.5 + 1 + 2 / 3) / 3)
    s = circor_scores(y_true, y_pred)
    assert (s.weighted_accuracy, s.uar) == pytest.approx((10 / 16, (0.5 + 1 + 2 / 3) / 3))


def test_weighted_accuracy_weights_matter():
    # Missing the one Present patient costs 5 of 9; missing the one Absent costs 1 of 9.
    assert weighted_accuracy([P, U, A], [A, U, A]) == pytest.approx(4 / 9)
    assert weighted_accuracy([P, U, A], [P, U, P]) == pytest.approx(8 / 9)
    assert unweighted_average_recall([P, U, A], [A, U, A], 3) == pytest.approx(2 / 3)
    assert unweighted_average_recall([P, P, A], [P, A, A], 3) == pytest.approx((0.5 + 1) / 2)  # U absent
    assert math.isnan(weighted_accuracy([], []))


def test_confusion_checks_input():
    assert confusion([0, 1, 1], [1, 1, 0], 2).tolist() == [[0, 1], [1, 1]]
    with pytest.raises(EvarError, match='class indices'):
        confusion([0, 3], [0, 1], 3)
    with pytest.raises(EvarError, match='2 items'):
        confusion([0, 1], [0], 2)


def test_priority_rule_hand_made_cases():
    rec = lambda *rows: np.array(rows, dtype=float)  # noqa: E731
    assert priority_rule(rec([.2, .1, .7], [.5, .3, .2], [.1, .1, .8])) == P  # one Present recording
    assert priority_rule(rec([.2, .5, .3], [.1, .1, .8])) == U  # no Present, one Unknown
    assert priority_rule(rec([.1, .2, .7], [.3, .3, .4])) == A  # all Absent
    # argmax of the mean differs from the rule: one confident Present among Absents
    probs = rec([.6, .0, .4], [.0, .1, .9], [.0, .1, .9])
    assert priority_rule(probs) == P
    assert argmax_of_mean(probs) == A  # mean (.2, .067, .733)
    assert argmax_of_mean(rec([.4, .4, .2])) == P  # ties go to the lower index
    with pytest.raises(EvarError, match='R >= 1'):
        priority_rule(np.zeros((0, 3)))


def test_patient_decisions_average_segments_per_recording():
    # patient 'a': recording a1 segments (.6,.3,.1) and (.0,.3,.7) -> mean (.3,.3,.4): Absent;
    # recording a2 one segment Unknown -> the rule says Unknown, the mean of recordings
    # ((.3,.3,.4) + (.1,.8,.1)) / 2 = (.2,.55,.25) says Unknown too.
    # patient 'b': one recording, two segments averaging to Present.
    probs = np.array([[.6, .3, .1], [.0, .3, .7], [.1, .8, .1], [.9, .0, .1], [.3, .3, .4]])
    recs = ['a1', 'a1', 'a2', 'b1', 'b1']
    pats = ['a', 'a', 'a', 'b', 'b']
    keys, pred = patient_decisions(probs, recs, pats, lambda r: priority_rule(r, (0, 1)))
    assert keys.tolist() == ['a', 'b'] and pred.tolist() == [U, P]
    keys, pred = patient_decisions(probs, recs, pats, argmax_of_mean)
    assert pred.tolist() == [U, P]
    k, m = group_mean(probs, recs)
    assert k.tolist() == ['a1', 'a2', 'b1']
    np.testing.assert_allclose(m[0], [.3, .3, .4])
    assert patient_labels([2, 2, 0], ['x', 'x', 'y'])[1].tolist() == [2, 0]
    with pytest.raises(EvarError, match='Patient x'):
        patient_labels([2, 1], ['x', 'x'])


def test_binary_scores_by_hand():
    # TP 3, FN 1, TN 4, FP 2 (positive = 1)
    y_true = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    y_pred = [1, 1, 1, 0, 0, 0, 0, 0, 1, 1]
    s = binary_scores(y_true, y_pred)
    assert s.accuracy == pytest.approx(7 / 10)
    assert s.sensitivity == pytest.approx(3 / 4)
    assert s.specificity == pytest.approx(4 / 6)
    assert s.f1 == pytest.approx(6 / (6 + 2 + 1))  # 2TP / (2TP + FP + FN)
    assert s.icbhi_score == pytest.approx((3 / 4 + 4 / 6) / 2)
    assert math.isnan(binary_scores([0, 0], [0, 1]).sensitivity)  # no positive: undefined, not 0


def test_bmdhs_patient_mean_of_softmax():
    # a patient's recordings (murmur probability .4, .45, .9) -> mean of softmax (.4) -> ... murmur .5833
    probs = np.array([[.6, .4], [.55, .45], [.1, .9], [.8, .2]])
    keys, pred = patient_decisions(probs, ['r1', 'r2', 'r3', 'r4'], ['p', 'p', 'p', 'q'], argmax_of_mean)
    assert pred.tolist() == [1, 0]


def test_icbhi_scores_by_hand():
    # classes normal, crackle, wheeze, both; normal: 3 of 4 right; abnormal: crackle 1 of 2 (one predicted wheeze:
    # wrong class), wheeze 1 of 1, both 0 of 1 -> Se 2/4, Sp 3/4
    y_true = [0, 0, 0, 0, 1, 1, 2, 3]
    y_pred = [0, 0, 0, 1, 1, 2, 2, 0]
    s = icbhi_scores(y_true, y_pred, 4)
    assert (s.sensitivity, s.specificity, s.score) == pytest.approx((2 / 4, 3 / 4, 5 / 8))
    assert s.accuracy == pytest.approx(5 / 8)
    # the normal class elsewhere
    assert icbhi_scores([1, 1, 0], [1, 0, 0], 2, normal=1).specificity == pytest.approx(1 / 2)
