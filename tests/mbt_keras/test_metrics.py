"""mAP and top-k against values worked out by hand (see the comments)."""
import numpy as np
import pytest

from mbt_keras.metrics import average_precision, mean_average_precision, top_k_accuracy


def test_average_precision_without_ties():
    # Ranked: + (P=1, R=1/2), - (P=1/2, R stays), + (P=2/3, R=1) -> 1/2*1 + 1/2*2/3.
    assert average_precision([1, 0, 1], [0.8, 0.6, 0.4]) == pytest.approx(5 / 6)


def test_tied_scores_enter_at_one_threshold():
    # 0.9 holds one positive and one negative: P=1/2 at R=1/2; then 0.5: P=2/3, R=1.
    # 1/2*1/2 + 1/2*2/3 = 7/12, whichever order the tied pair is stored in.
    assert average_precision([1, 0, 1, 0], [0.9, 0.9, 0.5, 0.1]) == pytest.approx(7 / 12)
    assert average_precision([0, 1, 1, 0], [0.9, 0.9, 0.5, 0.1]) == pytest.approx(7 / 12)


def test_all_scores_tied_gives_the_positive_rate():
    assert average_precision([1, 0, 0, 1], [0.5] * 4) == pytest.approx(0.5)


def test_matches_sklearn_on_random_data_with_ties():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    labels = rng.random(200) < 0.3
    scores = np.round(rng.random(200), 1)  # many ties
    assert average_precision(labels, scores) == pytest.approx(
        sklearn_metrics.average_precision_score(labels, scores))


def test_map_skips_and_counts_classes_without_positives():
    labels = np.array([[1, 0, 1], [0, 0, 0], [1, 0, 0], [0, 0, 1]])
    scores = np.array([[0.9, 0.1, 0.5], [0.9, 0.2, 0.5], [0.5, 0.3, 0.5], [0.1, 0.4, 0.5]])
    m_ap, per_class, n_skipped = mean_average_precision(labels, scores)
    assert n_skipped == 1
    assert np.isnan(per_class[1])
    assert per_class[0] == pytest.approx(7 / 12)
    assert per_class[2] == pytest.approx(0.5)
    assert m_ap == pytest.approx((7 / 12 + 0.5) / 2)


def test_map_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="one shape"):
        mean_average_precision(np.zeros((3, 2)), np.zeros((3, 3)))


def test_top_k_accuracy_with_indices_and_one_hot():
    scores = np.array([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.3, 0.5]])
    labels = np.array([1, 1, 0])
    # Top-1: row 0 right, row 1 wrong (0), row 2 wrong (2). Top-2: rows 0, 1 right.
    assert top_k_accuracy(labels, scores, k=1) == pytest.approx(1 / 3)
    assert top_k_accuracy(np.eye(3)[labels], scores, k=2) == pytest.approx(2 / 3)
    assert top_k_accuracy(labels, scores, k=3) == 1.0
    with pytest.raises(ValueError, match="k=4"):
        top_k_accuracy(labels, scores, k=4)
