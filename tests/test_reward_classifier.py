"""The learned reward classifier: record-labels and train-classifier through the CLI, the frame/label
alignment of a labelled store, the split by episode, class-balanced batches, threshold selection,
save/load, the ClassifierReward wrapper on a real pick_cube_vision env, and one-line errors.

Rendering runs in subprocesses (the CLI sets MUJOCO_GL=egl before MuJoCo loads; this pytest process
may already have imported MuJoCo with another backend).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr
from cli_proc import robot_rl as run_cli

from robot_rl.agents.encoders import EncoderConfig
from robot_rl.cli import main
from robot_rl.data.episode_log import EpisodeLogWriter
from robot_rl.data.schema import EpisodeSource, Transition
from robot_rl.reward.dataset import (
    BalancedSampler,
    every_kth,
    frame_index,
    open_labelled_store,
    read_images,
    split_by_episode,
)
from robot_rl.reward.metrics import binary_metrics, choose_threshold, precision_recall_curve
from robot_rl.reward.model import SuccessClassifier
from robot_rl.reward.training import ClassifierTrainConfig, evaluate_store, split_frames, train_classifier

REPO = Path(__file__).resolve().parents[1]
SMALL = ["task.image_size=[64,64]"]  # fast rendering and training
TINY = EncoderConfig(channels=8, strides=[2, 2], spatial_features=2, bottleneck=16)


def robot_rl(*args: str) -> subprocess.CompletedProcess:
    """robot-rl on one thread, failing the test on a non-zero exit."""
    return run_cli(*args, check=True, env={"OMP_NUM_THREADS": "1"}, timeout=600)


@pytest.fixture(scope="module")
def labels(gl, tmp_path_factory) -> Path:
    """A small labelled sim store: 4 episodes of 40 steps, 64x64 images: 2 lifts, 1 partial, 1 empty."""
    out = tmp_path_factory.mktemp("labels")
    proc = robot_rl(
        "record-labels",
        *SMALL,
        "task.max_steps=40",
        "episodes=4",
        "partial_share=0.25",
        "empty_share=0.25",
        f"out={out}",
    )
    assert "4 episodes (2 lift, 1 partial, 1 empty)" in proc.stdout
    return out


def synthetic_store(
    path: Path,
    episode_labels: list[list[bool]],
    size: int = 16,
    separable: bool = False,
    cameras: tuple[str, ...] = ("image/front",),
) -> Path:
    """A store whose frame k (the next observation of global step k-1; k = 0 is the first reset) has
    every pixel of channel 0 = k % 256 and, when `separable`, channel 1 = 200 for success frames and 40
    for failure frames (plus noise) in every camera."""
    rng = np.random.default_rng(0)
    spec = {"state": ((2,), np.float32), **{c: ((size, size, 3), np.uint8) for c in cameras}}
    frame = 0

    def observation(label: bool) -> dict[str, np.ndarray]:
        obs = {"state": np.zeros(2, np.float32)}
        for c in cameras:
            img = rng.integers(0, 30, (size, size, 3)).astype(np.uint8)
            img[..., 0] = frame % 256
            if separable:
                img[..., 1] = 200 if label else 40
            obs[c] = img
        return obs

    with EpisodeLogWriter(path, spec, 2) as writer:
        for labels in episode_labels:
            obs = observation(False)
            for step, label in enumerate(labels):
                frame += 1
                nxt = observation(label)
                writer.add(
                    Transition(
                        obs,
                        np.zeros(2, np.float32),
                        float(label),
                        False,
                        step == len(labels) - 1,
                        nxt,
                        np.zeros(2, np.float32),
                        step=step,
                        success=label,
                    )
                )
                obs = nxt
            frame += 1  # the next episode's reset frame
            writer.end_episode(EpisodeSource.EVAL)
    return path


# ------------------------------------------------------------------------------------ record-labels


def test_record_labels_writes_a_readable_store_with_both_classes(labels):
    summary = json.loads((labels / "summary.json").read_text())
    assert summary["episodes"] == 4 and summary["frames"] == 160
    kinds = summary["kinds"]
    assert kinds["lift"]["positives"] > 15 and kinds["partial"]["positives"] == kinds["empty"]["positives"] == 0
    assert summary["cameras"] == ["image/front", "image/wrist"]
    root = zarr.open_group(str(labels / "episodes.zarr"), mode="r")  # plain zarr, no robot_rl
    ends = root["meta/episode_ends"][:]
    success = root["data/success"][: ends[-1]]
    assert ends.tolist() == [40, 80, 120, 160]
    assert summary["positives"] == int(success.sum()) > 20 and summary["negatives"] == int((~success).sum()) > 20
    assert root["data/observation/image/front"].shape[1:] == (64, 64, 3)
    per_episode = [success[s:e].sum() for s, e in zip([0, *ends[:-1]], ends)]
    assert sorted(per_episode)[:2] == [0, 0] and sorted(per_episode)[2] > 15  # partial and empty never succeed
    assert (root["meta/source"][:4] == EpisodeSource.EVAL).all()  # labelled episodes are never demos


def test_frames_are_the_next_observations_of_their_steps(tmp_path):
    synthetic_store(tmp_path / "s.zarr", [[False, True, True], [False, False], [True]])
    log = open_labelled_store(tmp_path / "s.zarr")
    index = frame_index(log)
    assert index.labels.tolist() == [False, True, True, False, False, True]
    images = read_images(log, index, ["image/front"])["image/front"]
    # frames 0 and 4 and 7 are resets; step k of the store produced the frame after it
    assert images[:, 0, 0, 0].tolist() == [1, 2, 3, 5, 6, 8]
    assert every_kth(index, 2).steps.tolist() == [0, 2, 3, 5]  # from each episode's first frame
    for seed in range(5):
        kept = every_kth(index, 2, np.random.default_rng(seed)).steps.tolist()
        assert kept[-1] == 5 and kept[:-1] in ([0, 2, 3], [0, 2, 4], [1, 3], [1, 4])


def test_split_by_episode_never_shares_an_episode(tmp_path, labels):
    rng = np.random.default_rng(0)
    success = np.array([True] * 7 + [False] * 5)
    for _ in range(20):
        train, val = split_by_episode(success, 0.2, rng)
        assert len(np.intersect1d(train, val)) == 0 and len(train) + len(val) == 12
        assert success[val].any() and (~success[val]).any() and success[train].any() and (~success[train]).any()
    train, val = split_by_episode(np.array([True, False]), 0.5, rng)
    assert len(train) == 1 and len(val) == 1
    with pytest.raises(ValueError, match="at least 2"):
        split_by_episode(np.array([True]), 0.2, rng)
    log = open_labelled_store(labels)
    train, val = split_frames(log, ClassifierTrainConfig(val_fraction=0.3, max_train_frames=50), rng)
    assert len(np.intersect1d(train.episodes, val.episodes)) == 0
    assert len(train) == 50 and len(val) >= 40 and len(np.unique(val.episodes)) >= 1


def test_balanced_sampler_draws_half_of_each_class():
    labels = np.array([True] + [False] * 99)
    sampler = BalancedSampler(labels, np.random.default_rng(0))
    for size in (2, 64):
        batch = sampler.sample(size)
        assert len(batch) == size and labels[batch].sum() == size // 2
    odd = [labels[sampler.sample(7)].sum() for _ in range(50)]
    assert set(odd) == {3, 4}
    with pytest.raises(ValueError, match="both"):
        BalancedSampler(np.zeros(5, bool), np.random.default_rng(0))


# ------------------------------------------------------------------------------------- the threshold


def test_threshold_meets_the_target_precision_with_the_most_recall():
    scores = np.array([0.1, 0.2, 0.3, 0.35, 0.4, 0.6, 0.7, 0.8, 0.9])
    labels = np.array([0, 0, 1, 0, 0, 1, 0, 1, 1], bool)
    thresholds, precision, recall = precision_recall_curve(scores, labels)
    assert np.allclose(precision[thresholds == 0.4], 3 / 5) and np.allclose(recall[thresholds == 0.4], 3 / 4)
    # precision >= 0.6 first at 0.4 (recall 3/4); 0.6 keeps that recall with one false positive fewer, and
    # the threshold goes mid-way (logit space) into the gap below it: 0.4 .. 0.6 -> 0.5
    threshold, met = choose_threshold(scores, labels, 0.6)
    assert met and np.isclose(threshold, 0.5)
    threshold, met = choose_threshold(scores, labels, 0.98)  # recall 1/2 without false positives: 0.7 .. 0.8
    assert met and 0.7 < threshold < 0.8 and binary_metrics(scores, labels, threshold)["precision"] == 1.0
    threshold, met = choose_threshold(scores, labels, 0.5)  # every positive at precision 4/7: 0.2 .. 0.3
    assert met and 0.2 < threshold < 0.3 and binary_metrics(scores, labels, threshold)["recall"] == 1.0
    m = binary_metrics(scores, labels, 0.6)
    assert m["confusion_matrix"] == [[4, 1], [1, 3]]
    assert (m["precision"], m["recall"]) == (0.75, 0.75) and np.isclose(m["f1"], 0.75)
    threshold, met = choose_threshold(np.array([0.9, 0.2]), np.array([False, True]), 0.98)
    assert not met and threshold == 0.2  # unreachable: the most precise threshold, flagged
    assert binary_metrics(np.array([0.1]), np.array([True]), 0.5)["precision"] == 0.0


# -------------------------------------------------------------------------------------- the model


def test_model_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    model = SuccessClassifier({"image/front": (16, 16, 3), "image/wrist": (16, 16, 3)}, TINY, hidden=8, threshold=0.7)
    images = {k: np.random.default_rng(1).integers(0, 255, (5, 16, 16, 3), dtype=np.uint8) for k in model.image_keys}
    model.save(tmp_path / "c.pt")
    loaded = SuccessClassifier.load(tmp_path / "c.pt")
    assert loaded.threshold == 0.7 and loaded.image_shapes == model.image_shapes
    assert np.allclose(loaded.probabilities(images), model.probabilities(images))
    one = {"state": np.zeros(7), **{k: v[2] for k, v in images.items()}}
    assert np.isclose(loaded.probability(one), model.probabilities(images)[2])
    model.set_output_bias(0.8)
    assert np.allclose(model.probabilities(images), 0.8)
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable success classifier"):
        SuccessClassifier.load(tmp_path / "bad.pt")
    with pytest.raises(FileNotFoundError, match="train-classifier"):
        SuccessClassifier.load(tmp_path / "missing.pt")


def test_training_separates_a_learnable_store(tmp_path):
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    episodes = [list(rng.random(30) < 0.4) for _ in range(10)]
    train_store = synthetic_store(tmp_path / "train.zarr", episodes, separable=True)
    test_store = synthetic_store(tmp_path / "test.zarr", episodes[:3], separable=True)
    config = ClassifierTrainConfig(
        steps=60, batch_size=16, lr=1e-3, eval_every=60, hidden=16, encoder=TINY, max_train_frames=100
    )
    model, report = train_classifier(open_labelled_store(train_store), config, progress=lambda line: None)
    assert report["train_frames"] == 100 and report["target_met"]
    assert report["validation"]["precision"] >= 0.98 and report["validation"]["recall"] >= 0.9
    test = evaluate_store(model, open_labelled_store(test_store))
    assert test["frames"] == 90 and test["precision"] >= 0.98 and test["recall"] >= 0.9


# ---------------------------------------------------------------------------------- train-classifier


def test_train_classifier_cli_writes_checkpoint_and_summary(labels, tmp_path):
    run_dir = tmp_path / "run"
    proc = robot_rl(
        "train-classifier",
        f"data={labels}",
        f"run_dir={run_dir}",
        "cameras=front",
        "steps=30",
        "batch_size=16",
        "eval_every=15",
        "torch_threads=1",
        f"test_data={labels / 'episodes.zarr'}",
    )
    assert "step 30/30" in proc.stdout and "threshold" in proc.stdout.splitlines()[-1]
    summary = json.loads((run_dir / "summary.json").read_text())
    for key in ("precision", "recall", "f1", "threshold", "target_met", "train_frames", "val_frames", "train_time_s"):
        assert key in summary, key
    assert summary["cameras"] == ["image/front"] and summary["train_frames"] + summary["val_frames"] == 160
    assert np.array(summary["validation"]["confusion_matrix"]).sum() == summary["val_frames"]
    assert summary["test"]["frames"] == 160 and summary["test"]["threshold"] == summary["threshold"]
    model = SuccessClassifier.load(run_dir / "classifier.pt")
    assert model.threshold == summary["threshold"] and model.image_shapes == {"image/front": (64, 64, 3)}


# ------------------------------------------------------------------------------------- the wrapper

WRAPPER_SCRIPT = """
import json
import numpy as np
from robot_rl.envs.classifier_reward import ClassifierReward
from robot_rl.envs.robot_env import make_mujoco_env
from robot_rl.reward.model import SuccessClassifier
from robot_rl.data.schema import StepInfo
from robot_rl.tasks import make_expert

def env(reward):
    return make_mujoco_env("pick_cube_vision", seed=0, image_size=[64, 64], reward=reward, max_steps=60)

def classifier(p, threshold):
    c = SuccessClassifier({"image/front": (64, 64, 3), "image/wrist": (64, 64, 3)}, threshold=threshold)
    c.set_output_bias(p)
    return c

out = {}
for name, p, threshold, check in (("yes", 0.8, 0.5, None), ("no", 0.8, 0.9, None),
                                  ("check_false", 0.8, 0.5, lambda obs: False),
                                  ("check_truth", 0.8, 0.5, True)):
    e = ClassifierReward(env("dense"), classifier(p, threshold), state_check=check)
    obs, _ = e.reset(seed=1)
    obs, r, term, trunc, info = e.step(np.zeros(4, np.float32))
    s = StepInfo.of(info)
    out[name] = [r, term, trunc, s.success, s.success_probability, s.reward_source.name.lower(),
                 s.task_success, s.grasp_penalty == 0.0]

# a sparse task ends its episode on its own success; a classifier that says no truncates it there
inner = env("sparse")
e = ClassifierReward(inner, classifier(0.1, 0.5))
expert = make_expert(inner)
obs, _ = e.reset(seed=2)
steps = []
while True:
    obs, r, term, trunc, info = e.step(expert.act(obs))
    steps.append([r, term, trunc, StepInfo.of(info).task_success])
    if term or trunc:
        break
out["sparse"] = steps[-1] + [len(steps)]
# the state check that confirms it: ground truth, so the episode terminates with reward 1
e = ClassifierReward(env("sparse"), classifier(0.9, 0.5), state_check=True)
expert = make_expert(e.unwrapped)
obs, _ = e.reset(seed=2)
rewards = []
while True:
    obs, r, term, trunc, info = e.step(expert.act(obs))
    rewards.append(r)
    if term or trunc:
        break
out["confirmed"] = [sum(rewards), rewards[-1], term, trunc, len(rewards)]
try:
    ClassifierReward(env("dense"), SuccessClassifier({"image/front": (128, 128, 3)}))
except ValueError as err:
    out["mismatch"] = str(err)
print(json.dumps(out))
"""


def test_classifier_reward_wrapper_on_pick_cube_vision(gl):
    proc = subprocess.run(
        [sys.executable, "-c", WRAPPER_SCRIPT],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env=dict(os.environ, MUJOCO_GL=os.environ.get("MUJOCO_GL", "egl")),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    r, term, trunc, success, p, source, task_success, passthrough = out["yes"]
    assert (r, term, trunc, success, source, task_success, passthrough) == (
        1.0,
        True,
        False,
        True,
        "classifier",
        False,
        True,
    )
    assert abs(p - 0.8) < 1e-5
    assert out["no"][:4] == [0.0, False, False, False] and abs(out["no"][4] - 0.8) < 1e-5
    assert out["check_false"][:4] == [0.0, False, False, False]
    assert out["check_truth"][:4] == [0.0, False, False, False]  # the cube is on the table after one step
    r, term, trunc, task_success, length = out["sparse"]
    assert (r, term, trunc, task_success) == (0.0, False, True, True) and length < 60
    total, last, term, trunc, length = out["confirmed"]
    assert (total, last, term, trunc) == (1.0, 1.0, True, False) and length == out["sparse"][-1]
    assert "image_size" in out["mismatch"] and "(128, 128, 3)" in out["mismatch"]


# ---------------------------------------------------------------------------------------- errors


def one_line_error(capsys, *args: str) -> str:
    assert main(list(args)) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    return err


def test_errors_are_one_line(capsys, tmp_path):
    store = synthetic_store(tmp_path / "s.zarr", [[False, True]] * 3)
    assert "no labelled store at" in one_line_error(capsys, "train-classifier", f"data={tmp_path / 'nowhere'}")
    assert "data=<store> is required" in one_line_error(capsys, "train-classifier")
    assert "unknown camera top" in one_line_error(capsys, "train-classifier", f"data={store}", "cameras=[top]")
    negatives = synthetic_store(tmp_path / "n.zarr", [[False, False]] * 3)
    assert "has no success frames" in one_line_error(
        capsys, "train-classifier", f"data={negatives}", f"run_dir={tmp_path / 'r'}"
    )
    with EpisodeLogWriter(tmp_path / "state.zarr", {"state": ((2,), np.float32)}, 2) as writer:
        writer.add(
            Transition(
                {"state": np.zeros(2, np.float32)},
                np.zeros(2, np.float32),
                0.0,
                False,
                True,
                {"state": np.zeros(2, np.float32)},
                np.zeros(2, np.float32),
            )
        )
        writer.end_episode(EpisodeSource.EVAL)
    assert "no image observations" in one_line_error(capsys, "train-classifier", f"data={tmp_path / 'state.zarr'}")
    assert "target_precision" in one_line_error(capsys, "train-classifier", f"data={store}", "target_precision=2")
    small = synthetic_store(tmp_path / "small.zarr", [[False, True]] * 2, size=8)
    assert "same task.image_size" in one_line_error(capsys, "train-classifier", f"data={store}", f"test_data={small}")
    assert "partial_lift_range" in one_line_error(
        capsys, "record-labels", "task=pick_cube_vision", "partial_lift_range=[0.05,0.12]", f"out={tmp_path / 'x'}"
    )


def test_train_on_classifier_reward_logs_its_probability(gl, tmp_path, capsys):
    """`robot-rl train reward.classifier=...`: the classifier decides reward and episode end, its
    probability lands in the log for every online step; evals keep the task's own success."""
    clf = SuccessClassifier({"image/front": (32, 32, 3), "image/wrist": (32, 32, 3)}, encoder=TINY, threshold=0.5)
    clf.set_output_bias(0.3)  # never confident: no online step may be rewarded
    clf.save(tmp_path / "classifier.pt")
    run, demos = tmp_path / "run", tmp_path / "demos"
    small = ["task=pick_cube_vision", "task.image_size=[32,32]", "task.max_steps=30"]
    robot_rl("record-demos", *small, "episodes=1", f"out={demos}")  # task reward: this classifier never says yes
    robot_rl(
        "train",
        *small,
        f"run_dir={run}",
        f"demos={demos}",
        f"reward.classifier={tmp_path / 'classifier.pt'}",
        "steps=60",
        "agent.compile=false",
        "agent.batch_size=16",
        "agent.utd=1",
        "runtime.learning_starts=20",
        "runtime.eval_episodes=1",
    )
    root = zarr.open_group(run / "episodes.zarr", mode="r")
    ends = root["meta/episode_ends"][:]
    source = root["meta/source"][:]
    step_episode = np.repeat(np.arange(len(ends)), np.diff(np.concatenate([[0], ends])))
    online = source[step_episode] == EpisodeSource.ONLINE
    assert online.sum() == 60
    p = root["data/success_probability"][: ends[-1]]
    np.testing.assert_allclose(p[online], 0.3, atol=1e-4)
    assert np.all(root["data/reward"][: ends[-1]][online] == 0)
    assert np.all(root["data/reward_source"][: ends[-1]][online] == 1)  # RewardSource.CLASSIFIER
    evals = source[step_episode] == EpisodeSource.EVAL
    assert evals.any() and np.all(np.isnan(p[evals]))  # evals score the task's own success

    # the next labelling round: this policy's own rollouts, labelled by the sim's ground truth
    out = tmp_path / "round2"
    robot_rl(
        "record-labels", "task.image_size=[32,32]", "task.max_steps=30", "episodes=2", f"policy={run}", f"out={out}"
    )
    summary = json.loads((out / "summary.json").read_text())
    assert summary["kinds"]["policy"] == {"episodes": 2, "frames": 60, "positives": summary["positives"]}
    assert summary["kinds"]["lift"]["episodes"] == 0
    assert "holds no trained run" in one_line_error(capsys, "record-labels", f"policy={tmp_path}", f"out={out}")
