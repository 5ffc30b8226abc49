"""Evaluation metrics of the paper (section 4.1): mAP for multi-label AudioSet,
top-1 / top-5 accuracy for single-label datasets (VGGSound, Epic-Kitchens).

Plain NumPy on the gathered scores of a whole eval set: AP is not decomposable
over batches, so it is computed once per evaluation.
"""
import numpy as np


def average_precision(labels, scores) -> float:
    """AP of one class, defined as scikit-learn's `average_precision_score`.

    AP = sum_n (R_n - R_{n-1}) P_n over the distinct score thresholds, highest
    first; examples with equal scores enter together at one threshold, so the
    result does not depend on their order. Needs at least one positive.
    """
    labels = np.asarray(labels, dtype=bool).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if labels.shape != scores.shape:
        raise ValueError(f"labels {labels.shape} and scores {scores.shape} differ in shape")
    if not labels.any():
        raise ValueError("average precision needs at least one positive example")
    order = np.argsort(-scores, kind="mergesort")
    scores, labels = scores[order], labels[order]
    # The last index of each run of equal scores is one threshold.
    last_of_group = np.r_[np.flatnonzero(np.diff(scores)), scores.size - 1]
    true_pos = np.cumsum(labels)[last_of_group]
    precision = true_pos / (last_of_group + 1)
    recall = true_pos / true_pos[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def mean_average_precision(labels, scores):
    """(mAP, per_class_ap, n_skipped) over the columns of [N, C] arrays.

    Classes with no positive example have no AP: they are left out of the mean,
    reported as NaN in `per_class_ap` and counted in `n_skipped`.
    """
    labels = np.asarray(labels)
    scores = np.asarray(scores)
    if labels.ndim != 2 or labels.shape != scores.shape:
        raise ValueError(f"expected labels and scores of one shape [N, C], got "
                         f"{labels.shape} and {scores.shape}")
    per_class = np.full(labels.shape[1], np.nan)
    for c in range(labels.shape[1]):
        if labels[:, c].any():
            per_class[c] = average_precision(labels[:, c], scores[:, c])
    n_skipped = int(np.isnan(per_class).sum())
    m_ap = float(np.nanmean(per_class)) if n_skipped < per_class.size else float("nan")
    return m_ap, per_class, n_skipped


def top_k_accuracy(labels, scores, k: int = 1) -> float:
    """Fraction of examples whose true class is among the k highest scores.

    `labels` are class indices [N] or one-hot rows [N, C] (argmax is the class).
    Equal scores rank by class index, as `np.argsort` with a stable sort does.
    """
    scores = np.asarray(scores)
    labels = np.asarray(labels)
    if labels.ndim == 2:
        labels = labels.argmax(axis=1)
    if scores.ndim != 2 or labels.shape != (scores.shape[0],):
        raise ValueError(f"expected scores [N, C] and labels [N], got {scores.shape} and {labels.shape}")
    if not 1 <= k <= scores.shape[1]:
        raise ValueError(f"k={k} must be between 1 and the number of classes {scores.shape[1]}")
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return float(np.mean(np.any(top == labels[:, None], axis=1)))
