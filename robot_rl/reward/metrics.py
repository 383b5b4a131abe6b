"""Binary classification metrics and the precision-targeted threshold of a success classifier.

A frame is predicted "success" when its probability is >= the threshold. False positives are what
break RL (the policy learns to trigger them), so the threshold is chosen for a target precision.
"""

from __future__ import annotations

import numpy as np

CONFUSION_LAYOUT = "rows: true [failure, success]; columns: predicted [failure, success]"


def binary_metrics(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict:
    """Precision, recall, F1, accuracy and the confusion matrix [[tn, fp], [fn, tp]] at `threshold`.

    Precision is 0 when nothing is predicted positive, recall is 0 when there are no positives."""
    scores, labels = np.asarray(scores, np.float64), np.asarray(labels, bool)
    predicted = scores >= threshold
    tp = int(np.sum(predicted & labels))
    fp = int(np.sum(predicted & ~labels))
    fn = int(np.sum(~predicted & labels))
    tn = int(np.sum(~predicted & ~labels))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "threshold": float(threshold),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "accuracy": (tp + tn) / max(1, len(labels)),
        "frames": int(len(labels)),
        "positives": int(labels.sum()),
        "confusion_matrix": [[tn, fp], [fn, tp]],
    }


def precision_recall_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds ascending, precision, recall) for every distinct score used as the threshold."""
    scores, labels = np.asarray(scores, np.float64), np.asarray(labels, bool)
    order = np.argsort(-scores, kind="stable")
    sorted_scores, sorted_labels = scores[order], labels[order]
    tp = np.cumsum(sorted_labels)
    predicted = np.arange(1, len(scores) + 1)
    # the last position of each run of equal scores: thresholding at that score predicts all of them
    last = np.flatnonzero(np.r_[sorted_scores[1:] != sorted_scores[:-1], True])
    precision = tp[last] / predicted[last]
    recall = tp[last] / max(1, int(labels.sum()))
    return sorted_scores[last][::-1], precision[::-1], recall[::-1]


def choose_threshold(scores: np.ndarray, labels: np.ndarray, target_precision: float) -> tuple[float, bool]:
    """The threshold with the highest recall among those whose precision is >= `target_precision`
    (the lowest such threshold reaches it), placed mid-way (in logit space) in the gap below the
    lowest-scored positive that recall needs, so the given frames are classified exactly as at the
    threshold and new frames get a margin on both sides. Returns `(threshold, True)`; when no
    threshold reaches the target, the most precise one and False."""
    if len(scores) == 0:
        raise ValueError("cannot choose a threshold without frames")
    scores = np.asarray(scores, np.float64)
    thresholds, precision, recall = precision_recall_curve(scores, labels)
    meets = np.flatnonzero(precision >= target_precision)
    if len(meets) == 0:
        return float(thresholds[int(np.argmax(precision))]), False
    best = recall[meets[0]]  # recall falls as the threshold rises
    top = thresholds[np.flatnonzero((recall == best) & (precision >= target_precision))[-1]]
    below = scores[scores < top]
    if len(below) == 0:
        return float(top), True
    return float(sigmoid((logit(top) + logit(below.max())) / 2)), True


def logit(p: float) -> float:
    p = float(np.clip(p, 1e-12, 1 - 1e-12))
    return float(np.log(p / (1 - p)))


def sigmoid(x: float) -> float:
    return float(1 / (1 + np.exp(-x)))
