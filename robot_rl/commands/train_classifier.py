"""`robot-rl train-classifier`: train a success classifier: robot-rl train-classifier data=<store> run_dir=<dir>."""

from __future__ import annotations

import json

import torch
from omegaconf import DictConfig, OmegaConf

from robot_rl.config import check_device, log, typed
from robot_rl.data.files import write_atomic
from robot_rl.reward.dataset import image_shapes, open_labelled_store
from robot_rl.reward.metrics import CONFUSION_LAYOUT
from robot_rl.reward.model import SuccessClassifier
from robot_rl.reward.training import ClassifierTrainConfig, evaluate_store
from robot_rl.reward.training import train_classifier as train
from robot_rl.runtime.run_dir import open_run_dir

CONFIG = "train_classifier"
CLASSIFIER = "classifier.pt"
TRAIN_KEYS = [f.name for f in ClassifierTrainConfig.__dataclass_fields__.values()]


def train_classifier(cfg: DictConfig) -> dict:
    """Train a success classifier on `data`; writes `<run_dir>/classifier.pt` and `summary.json`."""
    if not cfg.data:
        raise ValueError(
            "data=<store> is required: a store from `robot-rl record-labels` (its out dir or the episodes.zarr in it)"
        )
    keys = OmegaConf.masked_copy(cfg, TRAIN_KEYS)
    if isinstance(keys.cameras, str):  # cameras=front
        keys.cameras = [keys.cameras]
    try:
        config = typed(keys, ClassifierTrainConfig, "train-classifier")
    except ValueError as err:  # EncoderConfig names its keys as the agent's
        raise ValueError(str(err).replace("agent.encoder.", "encoder.")) from None
    torch.set_num_threads(int(cfg.torch_threads))
    store = open_labelled_store(cfg.data)
    shapes = image_shapes(store, config.cameras)
    test_store = open_labelled_store(cfg.test_data) if cfg.test_data else None
    if test_store is not None and image_shapes(test_store, list(shapes)) != shapes:
        raise ValueError(
            f"test_data={cfg.test_data} has images of shapes {image_shapes(test_store, list(shapes))}, "
            f"data={cfg.data} {shapes}: record both with the same task.image_size"
        )
    check_device(config.device)
    run_dir = open_run_dir(cfg.run_dir)
    write_atomic(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))

    model, report = train(store, config, progress=log)
    path = run_dir / CLASSIFIER
    model.save(path, data=store.path, validation=report["validation"])
    test = None
    if test_store is not None:
        test = evaluate_store(SuccessClassifier.load(path, config.device), test_store)  # the saved file
        test["store"] = test_store.path
    val = report["validation"]
    summary = {
        "command": "train-classifier",
        "data": store.path,
        "classifier": str(path),
        "precision": val["precision"],
        "recall": val["recall"],
        "f1": val["f1"],
        **report,
        "test": test,
        "confusion_matrix_layout": CONFUSION_LAYOUT,
    }
    write_atomic(run_dir / "summary.json", json.dumps(summary, indent=2))
    met = "met" if report["target_met"] else "NOT met: record more or harder labelled episodes"
    held_out = (
        ""
        if test is None
        else (
            f"; held-out {test['frames']} frames: precision {test['precision']:.3f} "
            f"recall {test['recall']:.3f} F1 {test['f1']:.3f}"
        )
    )
    log(
        f"[train-classifier] threshold {report['threshold']:.3f} (target precision {config.target_precision} "
        f"{met}): validation precision {val['precision']:.3f} recall {val['recall']:.3f} F1 {val['f1']:.3f}"
        f"{held_out}; {report['train_time_s']:.0f} s -> {path}"
    )
    return summary


run = train_classifier
