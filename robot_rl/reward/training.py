"""Training a success classifier on a labelled store: split by episode, class-balanced minibatches
with random-shift augmentation, BCE and Adam; then the threshold for a target precision is chosen on
the validation episodes, and the metrics at it are reported."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from robot_rl.agents.augmentation import random_shift
from robot_rl.agents.encoders import EncoderConfig
from robot_rl.data.episode_log import EpisodeLog
from robot_rl.reward.dataset import (
    BalancedSampler,
    FrameIndex,
    evenly_spaced,
    every_kth,
    frame_index,
    image_shapes,
    read_images,
    split_by_episode,
)
from robot_rl.reward.metrics import binary_metrics, choose_threshold
from robot_rl.reward.model import SuccessClassifier


@dataclass
class ClassifierTrainConfig:
    """The training keys of configs/train_classifier.yaml, typed."""

    cameras: list[str] | None = None  # camera names (front, wrist) or observation keys; None: all in the store
    target_precision: float = 0.98  # the threshold is the lowest one meeting this on validation
    steps: int = 1000  # gradient steps
    batch_size: int = 64  # half success, half failure frames
    lr: float = 3e-4
    val_fraction: float = 0.2  # share of episodes held out for validation (stratified, >= 1)
    max_train_frames: int | None = 500  # evenly spaced subset of the training frames when there are more
    every: int = 1  # every k-th frame of each episode, from a random start (neighbours are near copies)
    augmentation: bool = True  # random shift (DrQ)
    eval_every: int = 250  # steps between progress lines with validation loss and metrics
    seed: int = 0
    device: str = "cpu"
    hidden: int = 256  # MLP head width
    encoder: EncoderConfig = field(default_factory=EncoderConfig)

    def __post_init__(self) -> None:
        if not 0.0 < self.target_precision <= 1.0:
            raise ValueError(f"target_precision={self.target_precision} must be in (0, 1]")
        for key in ("steps", "batch_size", "every", "eval_every", "hidden"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key}={getattr(self, key)} must be a positive integer")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction={self.val_fraction} must be in (0, 1)")
        if self.max_train_frames is not None and self.max_train_frames < 2:
            raise ValueError(f"max_train_frames={self.max_train_frames} must be >= 2 (or null for all)")


def check_classes(labels: np.ndarray, split: str, store: str) -> None:
    positives = int(np.sum(labels))
    if positives == 0 or positives == len(labels):
        missing = "success" if positives == 0 else "failure"
        raise ValueError(
            f"the {split} split of {store} has no {missing} frames ({len(labels)} frames): record "
            f"episodes of both outcomes, or change val_fraction / every / max_train_frames"
        )


def split_frames(
    log: EpisodeLog, config: ClassifierTrainConfig, rng: np.random.Generator
) -> tuple[FrameIndex, FrameIndex]:
    """(training frames, validation frames), split by episode; training capped at max_train_frames."""
    index = every_kth(frame_index(log), config.every, rng)
    episode_success = np.zeros(log.num_episodes, bool)
    episode_success[index.episodes[index.labels]] = True
    train_eps, val_eps = split_by_episode(episode_success, config.val_fraction, rng)
    train = index.subset(np.flatnonzero(np.isin(index.episodes, train_eps)))
    val = index.subset(np.flatnonzero(np.isin(index.episodes, val_eps)))
    if config.max_train_frames is not None:
        train = train.subset(evenly_spaced(len(train), config.max_train_frames))
    check_classes(train.labels, "training", log.path)
    check_classes(val.labels, "validation", log.path)
    return train, val


def train_classifier(
    log: EpisodeLog, config: ClassifierTrainConfig, progress: Callable[[str], None] = print
) -> tuple[SuccessClassifier, dict]:
    """Train on `log`'s labelled frames; returns the classifier (threshold set) and a report with the
    split sizes, the validation metrics at the chosen threshold and at 0.5, and the training time."""
    start = time.perf_counter()
    rng = np.random.default_rng(config.seed)
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    shapes = image_shapes(log, config.cameras)
    keys = list(shapes)
    train, val = split_frames(log, config, rng)
    device = torch.device(config.device)
    train_images = {k: torch.as_tensor(v, device=device) for k, v in read_images(log, train, keys).items()}
    val_images = read_images(log, val, keys)
    train_labels = torch.as_tensor(train.labels, dtype=torch.float32, device=device)
    progress(
        f"[train-classifier] {', '.join(keys)}: {len(train)} training frames "
        f"({int(train.labels.sum())} success) from {len(np.unique(train.episodes))} episodes, "
        f"{len(val)} validation frames ({int(val.labels.sum())} success) from "
        f"{len(np.unique(val.episodes))} episodes"
    )

    model = SuccessClassifier(shapes, config.encoder, hidden=config.hidden).to(device)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=config.lr)
    sampler = BalancedSampler(train.labels, rng)
    model.train()
    losses: list[float] = []
    for step in range(1, config.steps + 1):
        rows = torch.as_tensor(sampler.sample(config.batch_size), device=device)
        batch = {k: train_images[k][rows] for k in keys}
        if config.augmentation:
            batch = {k: random_shift(v, generator) for k, v in batch.items()}
        loss = F.binary_cross_entropy_with_logits(model(batch), train_labels[rows])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if step % config.eval_every == 0 or step == config.steps:
            scores = model.probabilities(val_images)
            at_half = binary_metrics(scores, val.labels, 0.5)
            progress(
                f"[train-classifier] step {step}/{config.steps}  train loss {np.mean(losses[-50:]):.4f}  "
                f"val loss {bce(scores, val.labels):.4f}  val@0.5 precision {at_half['precision']:.3f} "
                f"recall {at_half['recall']:.3f}  {time.perf_counter() - start:.0f} s"
            )

    scores = model.probabilities(val_images)
    threshold, met = choose_threshold(scores, val.labels, config.target_precision)
    model.threshold = threshold
    model.eval()
    report = {
        "cameras": keys,
        "train_frames": len(train),
        "train_positives": int(train.labels.sum()),
        "train_episodes": int(len(np.unique(train.episodes))),
        "val_frames": len(val),
        "val_positives": int(val.labels.sum()),
        "val_episodes": int(len(np.unique(val.episodes))),
        "threshold": threshold,
        "target_precision": config.target_precision,
        "target_met": met,
        "validation": binary_metrics(scores, val.labels, threshold),
        "validation_at_0.5": binary_metrics(scores, val.labels, 0.5),
        "validation_loss": bce(scores, val.labels),
        "final_train_loss": float(np.mean(losses[-50:])),
        "train_time_s": time.perf_counter() - start,
    }
    return model, report


def bce(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Mean binary cross-entropy of probabilities against labels."""
    p = np.clip(probabilities, 1e-7, 1 - 1e-7)
    return float(-np.mean(np.where(labels, np.log(p), np.log1p(-p))))


def evaluate_store(model: SuccessClassifier, log: EpisodeLog, every: int = 1, episodes_per_read: int = 16) -> dict:
    """Metrics at the model's threshold on every (every-th) labelled frame of `log` (e.g. held-out
    episodes from another seed), read a few episodes at a time."""
    index = every_kth(frame_index(log), every)
    if image_shapes(log, model.image_keys) != model.image_shapes:  # a missing camera is a one-line error too
        raise ValueError(
            f"{log.path} has images of shapes {image_shapes(log, model.image_keys)}, the classifier "
            f"reads {model.image_shapes}: record with the same task.image_size"
        )
    scores = np.empty(len(index), np.float64)
    for first in range(0, log.num_episodes, episodes_per_read):
        rows = np.flatnonzero((index.episodes >= first) & (index.episodes < first + episodes_per_read))
        scores[rows] = model.probabilities(read_images(log, index.subset(rows), model.image_keys))
    metrics = binary_metrics(scores, index.labels, model.threshold)
    metrics["episodes"] = log.num_episodes
    return metrics
