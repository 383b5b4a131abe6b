"""Episode-log integrity (formats 3 to 6): damage is detected, never read as data, never written over;
check-log reports it and salvage-log recovers every intact episode. Also formats 2 to 4, a full disk and
the two original repros (a deleted demo chunk, a damaged episode index) through the real CLI."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import zarr
from fs_faults import tmpfs
from store_damage import DAMAGE_KINDS, damage, store_digest
from test_episode_log import (
    ACTION_DIM,
    IMAGE_SHAPE,
    SPEC,
    STATE_DIM,
    TESTS_DIR,
    assert_log_matches_pattern,
    ep_length,
    ep_source,
    expected_episode,
    pattern_transition,
    write_pattern_episode,
)

from robot_rl.data import episode_log as el
from robot_rl.data.episode_log import EpisodeLog, EpisodeLogError, EpisodeLogWriter
from robot_rl.data.log_check import check_log, salvage_log
from robot_rl.data.schema import EpisodeSource

EPISODES = 10  # 59 steps
ROBOT_RL = os.path.join(os.path.dirname(sys.executable), "robot-rl")
SMALL = {"STEP_CHUNK": 8, "EPISODE_CHUNK": 4, "SHARD_TARGET_BYTES": 4 * int(np.prod(IMAGE_SHAPE))}


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks of 8 steps, meta chunks of 4 episodes, shards of 4 frames: a tiny store has many files."""
    for name, value in SMALL.items():
        monkeypatch.setattr(el, name, value)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("pristine") / "episodes.zarr")
    with pytest.MonkeyPatch.context() as mp:
        for name, value in SMALL.items():
            mp.setattr(el, name, value)
        with EpisodeLogWriter(path, SPEC, ACTION_DIM, config={"task": "pattern"}) as writer:
            for ep in range(EPISODES):
                write_pattern_episode(writer, ep)
    return path


def copy_store(src: str, tmp_path) -> str:
    dst = str(tmp_path / "episodes.zarr")
    shutil.copytree(src, dst)
    return dst


def one_line_fix(err: pytest.ExceptionInfo | Exception, path: str) -> str:
    msg = str(getattr(err, "value", err))
    assert "\n" not in msg and path in msg, msg
    assert f"robot-rl check-log {path}" in msg and "salvage-log" in msg, msg
    return msg


def assert_same_episode(
    got: dict, ep: int, new_id: int | None = None, frame_ages: bool = True, safety: bool | None = None
) -> None:
    for name, want in expected_episode(ep, frame_ages=frame_ages, safety=safety).items():
        if name == "episode_id" and new_id is not None:
            want = np.full(len(want), new_id)
        np.testing.assert_array_equal(got[name], want, err_msg=f"episode {ep} field {name}")


# ------------------------------------------------------------------------------ the format itself


def test_format_6_checksums_every_chunk_and_writes_empty_chunks(pristine):
    root = zarr.open_group(pristine, mode="r")
    assert root.attrs["format"] == {"name": "robot_rl.episode_log", "version": 6}
    ends = root["meta/episode_ends"][:]
    steps = int(ends[-1])
    for name in [
        "data/terminated",
        "data/intervention",
        "data/grasp_penalty",
        "data/frame_age_s",
        "data/safety",
        "data/observation/state",
        "meta/eval_step",
        "meta/safety_steps",
        "meta/label",
        "meta/episode_ends",
        "data/observation/image/front",
    ]:
        meta = json.load(open(os.path.join(pristine, name, "zarr.json")))
        codecs = meta["codecs"]
        if codecs[0]["name"] == "sharding_indexed":
            assert codecs[0]["configuration"]["index_codecs"][-1]["name"] == "crc32c"
            codecs = codecs[0]["configuration"]["codecs"]
        assert codecs[-1]["name"] == "crc32c", name
        arr = root[name]
        rows = len(ends) if name.startswith("meta/") else steps
        # every chunk file holding committed rows is on disk, all-zero ones (terminated, label) too
        assert el.missing_chunk_files(pristine, arr, rows) == [], name
        assert len(el.chunk_files(arr, rows)) > 1, name
    np.testing.assert_array_equal(root["meta/eval_step"][:], -1)
    assert json.load(open(os.path.join(pristine, "meta/eval_step/zarr.json")))["fill_value"] == -1
    assert json.load(open(os.path.join(pristine, "data/frame_age_s/zarr.json")))["fill_value"] == "NaN"
    # every inner chunk of every shard is present (write_empty_chunks reaches the inner chunks)
    image = root["data/observation/image/front"]
    for index, key in el.chunk_files(image, steps):
        assert el.verify_chunk_file(pristine, image, index, key, steps) == []
    report = check_log(pristine)
    assert report["ok"] and report["problems"] == [] and report["intact_episodes"] == list(range(EPISODES))
    assert (report["committed_episodes"], report["committed_steps"]) == (EPISODES, steps)


def test_eval_step_and_copy_skip(tmp_path, pristine):
    path = str(tmp_path / "run.zarr")
    with EpisodeLogWriter(path, SPEC, ACTION_DIM) as writer:
        for t in range(ep_length(0)):
            writer.add(pattern_transition(0, t))
        writer.end_episode(EpisodeSource.EVAL, eval_step=1500)
        demos = EpisodeLog(pristine)
        sources = {EpisodeSource.DEMO, EpisodeSource.INTERVENTION}
        wanted = [e for e in range(EPISODES) if ep_source(e) in sources]
        assert writer.copy_episodes(demos, sources, skip=2) == len(wanted) - 2
        assert writer.copy_episodes(demos, sources, skip=len(wanted)) == 0
    log = EpisodeLog(path)
    meta = log.episode_meta()
    np.testing.assert_array_equal(meta["eval_step"], [1500] + [-1] * (len(wanted) - 2))
    for k, ep in enumerate(wanted[2:], start=1):  # the skipped ones are the first two that match
        assert_same_episode(log.episode(k), ep, new_id=k)
        assert meta["source"][k] == ep_source(ep)


# ------------------------------------------------------------------------ every kind of damage


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("kind", DAMAGE_KINDS)
def test_damage_is_refused_reported_and_salvaged(kind, seed, pristine, tmp_path, small_chunks):
    path = copy_store(pristine, tmp_path)
    info = damage(path, kind, np.random.default_rng(seed))
    lost = info["unrecoverable"]
    intact = [e for e in range(EPISODES) if e not in lost]
    digest = store_digest(path)

    # (a) the reader refuses at open, or raises when the damaged data is read; never zeros or garbage
    try:
        log = EpisodeLog(path)
    except EpisodeLogError as err:
        one_line_fix(err, path)
    else:
        assert lost, f"{kind}: {info} must be refused at open"
        for e in range(EPISODES):
            if e in lost:
                with pytest.raises(EpisodeLogError) as err:
                    log.episode(e)
                assert info["array"] in one_line_fix(err, path)
            else:
                assert_same_episode(log.episode(e), e)
        with pytest.raises(EpisodeLogError):
            log.transitions()
    assert store_digest(path) == digest  # reading changes nothing

    # (b) the writer refuses and leaves every byte as it was (and releases its lock)
    for _ in range(2):
        with pytest.raises(EpisodeLogError) as err:
            EpisodeLogWriter(path, SPEC, ACTION_DIM)
        one_line_fix(err, path)
    assert store_digest(path) == digest

    # (c) check_log reports exactly the damaged episodes
    report = check_log(path)
    assert not report["ok"] and report["problems"], report
    assert report["damaged_episodes"] == lost, (info, report["problems"])
    assert report["intact_episodes"] == intact
    assert report["committed_episodes"] == EPISODES
    if kind == "delete_ends_chunk":
        assert report["boundaries"] == "meta/length"
    assert store_digest(path) == digest

    # (d) salvage_log recovers exactly the intact ones, values equal to the originals
    out = str(tmp_path / "salvaged.zarr")
    result = salvage_log(path, out)
    assert result["recovered"] == intact and result["lost"] == lost
    assert result["recovered_steps"] == sum(ep_length(e) for e in intact)
    assert store_digest(path) == digest
    assert check_log(out)["ok"]
    new = EpisodeLog(out)
    assert new.format_version == 6 and new.num_episodes == len(intact)
    original = EpisodeLog(pristine).episode_meta()
    meta = new.episode_meta()
    for k, ep in enumerate(intact):
        assert_same_episode(new.episode(k), ep, new_id=k)
        for field in el.META_FIELDS:
            want = k if field == "episode_id" else original[field][ep]
            np.testing.assert_array_equal(meta[field][k], want, err_msg=f"{kind}: meta/{field}[{k}]")
    assert new.config == ({} if kind == "delete_root_json" else {"task": "pattern"})
    with EpisodeLogWriter(out, SPEC, ACTION_DIM) as writer:  # the salvaged store takes appends
        assert write_pattern_episode(writer, 0) == len(intact)
    assert check_log(out)["ok"]


def test_chunk_deleted_after_open_is_not_read_as_zeros(pristine, tmp_path, small_chunks):
    path = copy_store(pristine, tmp_path)
    log = EpisodeLog(path)  # inventory passes
    os.remove(os.path.join(path, "data", "reward", "c", "1"))
    with pytest.raises(EpisodeLogError, match="data/reward chunk c/1 missing"):
        log.transitions()
    with pytest.raises(EpisodeLogError, match="missing"):
        log.array("reward")[:]  # even a raw zarr read of the lazy array
    with pytest.raises(EpisodeLogError, match="data/reward chunk c/1 missing"):
        log.refresh()


def test_chunk_deleted_while_writing_is_not_laundered(pristine, tmp_path, small_chunks):
    """An append rewrites the last partly filled chunk; if it vanished, the writer must not fill it with zeros."""
    path = copy_store(pristine, tmp_path)
    with EpisodeLogWriter(path, SPEC, ACTION_DIM) as writer:
        steps = writer.num_steps
        last_shard = os.path.join(
            path, "data", "observation", "image", "front", "c", str((steps - 1) // 4), "0", "0", "0"
        )
        os.remove(last_shard)
        with pytest.raises(EpisodeLogError, match="missing"):
            write_pattern_episode(writer, EPISODES)
        assert writer.num_episodes == EPISODES
    assert not os.path.exists(last_shard)
    assert check_log(path)["damaged_episodes"]


# ------------------------------------------------------------------------------------- format 2


def write_v2_store(path: str, episodes: int) -> None:
    """A store with the format-2 layout, written with zarr directly: no checksums, and zarr's default of
    not writing all-fill chunks (so e.g. chunks of data/terminated that are all False are absent)."""
    root = zarr.open_group(path, mode="w", zarr_format=3)
    eps = [expected_episode(e) for e in range(episodes)]
    skip = ("frame_age_s", "safety")  # formats 4 and 5
    data = {name: np.concatenate([ep[name] for ep in eps]) for name in eps[0] if not name.startswith(("next_", *skip))}
    data["episode_id"] = data["episode_id"].astype(np.int64)
    data["step"] = data["step"].astype(np.int32)
    data["reward_source"] = data["reward_source"].astype(np.uint8)
    data["success_probability"] = np.full(len(data["reward"]), np.nan, np.float32)
    lengths = np.array([ep_length(e) for e in range(episodes)])
    meta = {
        "source": np.array([int(ep_source(e)) for e in range(episodes)], np.uint8),
        "success": np.array([e % 2 == 0 for e in range(episodes)]),
        "length": lengths.astype(np.int32),
        "intervention_steps": np.array([ep["intervention"].sum() for ep in eps], np.int32),
        "episode_return": np.array([ep["reward"].astype(np.float64).sum() for ep in eps], np.float32),
        "episode_id": 100 + np.arange(episodes, dtype=np.int64),
        "interventions": np.zeros(episodes, np.int32),
        "label": np.zeros(episodes, np.uint8),
        "reset_s": np.zeros(episodes, np.float32),
        "episode_s": np.array([ep["timestamp"][-1] - ep["timestamp"][0] for ep in eps], np.float32),
        "episode_ends": np.cumsum(lengths).astype(np.int64),
    }
    for key in ("state", "image/front"):
        meta[f"last_observation/{key}"] = np.stack([ep[f"next_observation/{key}"][-1] for ep in eps])

    def create(name: str, values: np.ndarray, rows: int) -> None:
        item = values.shape[1:]
        if values[:1].nbytes >= 1024:  # images: one-frame chunks in shards of 4, blosc, no crc
            layout = {
                "chunks": (1, *item),
                "shards": (4, *item),
                "compressors": zarr.codecs.BloscCodec(cname="zstd", clevel=3, shuffle="bitshuffle"),
            }
        else:
            layout = {"chunks": (rows, *item)}
        arr = root.create_array(
            name, shape=values.shape, dtype=values.dtype, fill_value=np.zeros((), values.dtype)[()], **layout
        )
        arr[:] = values

    for name, values in data.items():
        create(f"data/{name}", values, 8)
    for name, values in meta.items():
        create(f"meta/{name}", values, 4)
    root.attrs.update(
        {
            "format": {"name": "robot_rl.episode_log", "version": 2},
            "config": {"v": 2},
            "obs_spec": {
                "state": {"shape": [STATE_DIM], "dtype": "float32"},
                "image/front": {"shape": list(IMAGE_SHAPE), "dtype": "uint8"},
            },
            "action_spec": {
                "shape": [ACTION_DIM],
                "dtype": "float32",
                "low": [-1.0] * ACTION_DIM,
                "high": [1.0] * ACTION_DIM,
            },
            "layout": "format 2",
        }
    )


def test_format_2_is_read_refused_by_the_writer_and_converted(tmp_path, small_chunks, capsys):
    from robot_rl.cli import main as cli

    path = str(tmp_path / "v2.zarr")
    write_v2_store(path, 8)
    assert not os.path.exists(os.path.join(path, "data", "terminated", "c", "1"))  # an all-False chunk: absent
    log = assert_log_matches_pattern(path, frame_ages=False)  # the reader reads it as before, frame ages NaN
    assert log.format_version == 2
    np.testing.assert_array_equal(log.episode_meta()["eval_step"], -1)
    for e in range(8):
        assert_same_episode(log.episode(e), e, frame_ages=False)

    digest = store_digest(path)
    with pytest.raises(EpisodeLogError) as err:
        EpisodeLogWriter(path, SPEC, ACTION_DIM)
    msg = str(err.value)
    assert "\n" not in msg and "format 2" in msg and f"robot-rl salvage-log {path} out=" in msg, msg
    assert store_digest(path) == digest

    report = check_log(path)
    assert report["ok"] and report["format_version"] == 2 and report["intact_episodes"] == list(range(8))
    assert cli(["check-log", path]) == 0
    assert "format 2" in capsys.readouterr().out

    out = str(tmp_path / "v3.zarr")
    result = salvage_log(path, out)
    assert result["recovered"] == list(range(8)) and result["lost"] == []
    assert any(
        "converted from format 2" in n and "frame_age_s set to NaN" in n and "safety set to 0" in n
        for n in result["notes"]
    )
    assert store_digest(path) == digest
    assert check_log(out)["ok"]
    new = EpisodeLog(out)
    assert new.format_version == 6 and new.config == {"v": 2}
    np.testing.assert_array_equal(new.episode_meta()["eval_step"], -1)
    for e in range(8):
        assert_same_episode(new.episode(e), e, new_id=e, frame_ages=False)
    with EpisodeLogWriter(out, SPEC, ACTION_DIM) as writer:
        assert write_pattern_episode(writer, 8) == 8


# ------------------------------------------------------------------------------------- format 3


def make_old_store(src: str, path: str, version: int) -> None:
    """A format-3, 4 or 5 store: a copy of the format-6 store ``src`` less the arrays later formats added, its format
    set to ``version`` (format 5 is format 6 less meta/perturbation, format 4 also less data/safety and
    meta/safety_steps, format 3 also less
    data/frame_age_s: the same checksums, chunking and other arrays)."""
    shutil.copytree(src, path)
    gone = ["meta/perturbation"] + (["data/safety", "meta/safety_steps"] if version < 5 else [])
    gone += ["data/frame_age_s"] if version < 4 else []
    for name in gone:
        shutil.rmtree(os.path.join(path, *name.split("/")))
    root = zarr.open_group(path, mode="r+")
    root.attrs["format"] = {"name": "robot_rl.episode_log", "version": version}


def make_v3_store(src: str, path: str) -> None:
    make_old_store(src, path, 3)


def test_format_3_is_read_with_nan_frame_ages_refused_by_the_writer_and_converted(
    pristine, tmp_path, small_chunks, capsys
):
    from robot_rl.cli import main as cli
    from robot_rl.reward.dataset import frame_index, read_images
    from robot_rl.runtime.run import logged_transitions

    path = str(tmp_path / "v3.zarr")
    make_v3_store(pristine, path)
    digest = store_digest(path)

    # every reader reads it, frame ages NaN
    log = assert_log_matches_pattern(path, frame_ages=False)
    assert log.format_version == 3 and "frame_age_s" in log.step_fields
    for e in range(EPISODES):
        assert_same_episode(log.episode(e), e, frame_ages=False)
    ages = log.read("frame_age_s")
    assert ages.dtype == np.float32 and ages.shape == (log.num_steps,) and np.isnan(ages).all()
    assert np.isnan(log.read("frame_age_s", 5)) and log.read("frame_age_s", [0, 7, 3]).shape == (3,)
    assert np.isnan(log.array("frame_age_s")[:]).all() and log.array("frame_age_s").shape == (log.num_steps,)
    with pytest.raises(IndexError):
        log.read("frame_age_s", log.num_steps)
    some = log.episode_rows([1, 4, 5])  # rows of scattered episodes
    assert len(some["frame_age_s"]) == sum(ep_length(e) for e in (1, 4, 5)) and np.isnan(some["frame_age_s"]).all()
    assert len(log.episode_rows([])["frame_age_s"]) == 0
    for rows in log.batches(range(EPISODES), max_rows=12):  # the learner loads its replay buffers this way
        assert np.isnan(rows["frame_age_s"]).all() and len(rows["frame_age_s"]) == len(rows["reward"])
    steps = logged_transitions(log.episode(2), sorted(SPEC))  # replay of a logged episode
    assert len(steps) == ep_length(2) and all(np.isnan(t.frame_age_s) for t in steps)
    index = frame_index(log)  # a classifier dataset
    assert len(index) == log.num_steps and read_images(log, index, ["image/front"])["image/front"].shape[0] == len(
        index
    )
    log.verify_checksums()
    demos = str(tmp_path / "run.zarr")  # demos copied into a (format 6) run log
    with EpisodeLogWriter(demos, SPEC, ACTION_DIM) as writer:
        assert writer.copy_episodes(log) == EPISODES
        assert write_pattern_episode(writer, 3) == EPISODES
    run = EpisodeLog(demos)
    assert run.format_version == 6
    for e in range(EPISODES):
        assert_same_episode(run.episode(e), e, new_id=e, frame_ages=False)
    assert_same_episode(run.episode(EPISODES), 3)  # a new episode keeps its frame ages
    assert check_log(demos)["ok"]

    # the writer refuses it (one line, the salvage command), leaving every byte as it was
    with pytest.raises(EpisodeLogError) as err:
        EpisodeLogWriter(path, SPEC, ACTION_DIM)
    msg = str(err.value)
    assert "\n" not in msg and "format 3" in msg and "frame_age_s" in msg, msg
    assert f"robot-rl salvage-log {path} out=" in msg, msg
    assert store_digest(path) == digest

    # check-log passes, and says what the format lacks
    report = check_log(path)
    assert report["ok"] and report["format_version"] == 3 and report["intact_episodes"] == list(range(EPISODES))
    assert any("data/frame_age_s" in n and "NaN" in n for n in report["notes"]), report["notes"]
    assert not any("checksums" in n for n in report["notes"]), report["notes"]  # format 3 has them
    assert cli(["check-log", path]) == 0
    assert f"{path}: format 3, {EPISODES} committed episodes" in capsys.readouterr().out

    # salvage-log converts it: format 6, frame ages NaN, appendable
    out = str(tmp_path / "v5.zarr")
    result = salvage_log(path, out)
    assert result["recovered"] == list(range(EPISODES)) and result["lost"] == [] and result["format_version"] == 3
    assert any(
        "converted from format 3 to 6 (" in n and "frame_age_s set to NaN" in n and "safety set to 0" in n
        for n in result["notes"]
    ), result
    assert store_digest(path) == digest
    assert check_log(out)["ok"] and check_log(out)["format_version"] == 6
    new = EpisodeLog(out)
    assert new.format_version == 6 and new.config == {"task": "pattern"}
    assert os.path.isdir(os.path.join(out, "data", "frame_age_s"))
    np.testing.assert_array_equal(new.episode_meta()["eval_step"], -1)
    for e in range(EPISODES):
        assert_same_episode(new.episode(e), e, new_id=e, frame_ages=False)
    with EpisodeLogWriter(out, SPEC, ACTION_DIM) as writer:
        assert write_pattern_episode(writer, 5) == EPISODES
    assert_same_episode(EpisodeLog(out).episode(EPISODES), 5)  # the new episode keeps its frame ages
    assert check_log(out)["ok"]


def test_format_3_without_its_root_json_is_still_format_3(pristine, tmp_path, small_chunks):
    """check-log tells format 3 from 4 by the data/frame_age_s array when the root zarr.json is lost."""
    path = str(tmp_path / "v3.zarr")
    make_v3_store(pristine, path)
    os.remove(os.path.join(path, "zarr.json"))
    report = check_log(path)
    assert report["format_version"] == 3 and report["intact_episodes"] == list(range(EPISODES))
    assert [p["array"] for p in report["problems"]] == ["zarr.json"], report["problems"]
    out = str(tmp_path / "v4.zarr")
    assert salvage_log(out=out, path=path)["recovered"] == list(range(EPISODES))
    new = EpisodeLog(out)
    for e in range(EPISODES):
        assert_same_episode(new.episode(e), e, new_id=e, frame_ages=False)


# ------------------------------------------------------------------------------------- format 4


def test_format_4_is_read_without_safety_actions_refused_by_the_writer_and_converted(pristine, tmp_path, small_chunks):
    from robot_rl.runtime.run import logged_transitions

    path = str(tmp_path / "v4.zarr")
    make_old_store(pristine, path, 4)
    digest = store_digest(path)

    # every reader reads it: frame ages as written, no safety action (data/safety 0, meta/safety_steps 0)
    log = assert_log_matches_pattern(path, safety=False)
    assert log.format_version == 4 and "safety" in log.step_fields
    for e in range(EPISODES):
        assert_same_episode(log.episode(e), e, safety=False)
    bits = log.read("safety")
    assert bits.dtype == np.uint16 and bits.shape == (log.num_steps,) and not bits.any()
    assert log.read("safety", 3) == 0 and log.array("safety").shape == (log.num_steps,)
    np.testing.assert_array_equal(log.episode_meta()["safety_steps"], 0)
    np.testing.assert_array_equal(log.read("meta/safety_steps", slice(0, 4)), 0)
    assert all(t.safety == 0 for t in logged_transitions(log.episode(1), sorted(SPEC)))
    assert sum(len(rows["safety"]) for rows in log.batches(range(EPISODES), max_rows=12)) == log.num_steps
    demos = str(tmp_path / "run.zarr")  # copied into a format-6 log: safety 0 there too
    with EpisodeLogWriter(demos, SPEC, ACTION_DIM) as writer:
        assert writer.copy_episodes(log) == EPISODES
    np.testing.assert_array_equal(EpisodeLog(demos).episode_meta()["safety_steps"], 0)

    with pytest.raises(EpisodeLogError) as err:
        EpisodeLogWriter(path, SPEC, ACTION_DIM)
    msg = str(err.value)
    assert "\n" not in msg and "format 4" in msg and "data/safety" in msg and "frame_age_s" not in msg, msg
    assert f"robot-rl salvage-log {path} out=" in msg, msg
    assert store_digest(path) == digest

    report = check_log(path)
    assert report["ok"] and report["format_version"] == 4 and report["intact_episodes"] == list(range(EPISODES))
    assert any("data/safety" in n for n in report["notes"]), report["notes"]
    os.rename(os.path.join(path, "zarr.json"), str(tmp_path / "root.json"))  # told from 5 without its root json
    assert check_log(path)["format_version"] == 4
    os.rename(str(tmp_path / "root.json"), os.path.join(path, "zarr.json"))

    out = str(tmp_path / "v5.zarr")
    result = salvage_log(path, out)
    assert result["recovered"] == list(range(EPISODES)) and result["format_version"] == 4
    assert any(
        "converted from format 4 to 6 (safety_steps set to 0, perturbation set to the nominal values, safety set to 0)"
        in n
        for n in result["notes"]
    )
    new = EpisodeLog(out)
    assert new.format_version == 6 and check_log(out)["ok"]
    for e in range(EPISODES):
        assert_same_episode(new.episode(e), e, new_id=e, safety=False)
    with EpisodeLogWriter(out, SPEC, ACTION_DIM) as writer:
        assert write_pattern_episode(writer, 4) == EPISODES
    assert_same_episode(EpisodeLog(out).episode(EPISODES), 4)  # the new episode keeps its safety actions
    assert EpisodeLog(out).episode_meta()["safety_steps"][EPISODES] == sum(expected_episode(4)["safety"] != 0)


# ------------------------------------------------------------------------------------ the CLI


def test_check_log_and_salvage_log_cli(pristine, tmp_path, small_chunks, capsys):
    from robot_rl.cli import main as cli

    assert cli(["check-log", pristine]) == 0
    out = capsys.readouterr().out
    assert out.strip().endswith("intact") and f"{EPISODES} committed episodes" in out

    path = copy_store(pristine, tmp_path)
    info = damage(path, "delete_state_chunk", np.random.default_rng(3))
    assert cli(["check-log", path]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("missing: data/observation/state chunk") and info["file"].split("/", 3)[3] in lines[0]
    assert lines[-1].startswith(f"{path}: format 6, {EPISODES} committed episodes")
    assert f"{EPISODES - len(info['unrecoverable'])} intact, {len(info['unrecoverable'])} damaged" in lines[-1]
    assert f"robot-rl salvage-log {path} out=<new store>" in lines[-1]

    new = str(tmp_path / "new.zarr")
    assert cli(["salvage-log", path, f"out={new}"]) == 0
    out = capsys.readouterr().out
    assert f"salvaged {path} -> {new}: recovered {EPISODES - len(info['unrecoverable'])} of {EPISODES}" in out
    assert cli(["salvage-log", path, f"out={new}"]) == 2  # never over an existing store
    assert "already exists" in capsys.readouterr().err
    assert cli(["check-log", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no episode log" in err[0]
    not_a_log = tmp_path / "plain"
    zarr.open_group(str(not_a_log), mode="w").create_array("x", shape=(3,), dtype="f4")
    assert cli(["check-log", str(not_a_log)]) == 2
    assert "not a robot_rl episode log" in capsys.readouterr().err
    assert cli(["salvage-log", path]) == 2  # out= is required
    assert "usage: robot-rl salvage-log <store> out=<new store>" in capsys.readouterr().err
    assert cli(["check-log"]) == 2

    # the installed entry point, and a run directory resolves to its episodes.zarr
    proc = subprocess.run([ROBOT_RL, "check-log", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "damaged" in proc.stdout and proc.stderr == "", proc.stderr
    proc = subprocess.run([ROBOT_RL, "check-log", new], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("intact"), proc.stdout + proc.stderr


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([ROBOT_RL, *args], capture_output=True, text=True, timeout=timeout)


def test_original_repros_through_the_cli(tmp_path):
    """Issue 10: a deleted chunk of a demo store read as zeros (and written back by record-demos); a
    damaged episode index made the writer truncate every array before reporting it."""
    demos = tmp_path / "demos"
    proc = run_cli("record-demos", f"out={demos}", "episodes=2")
    assert proc.returncode == 0, proc.stderr
    store = str(demos / "episodes.zarr")
    pristine = str(tmp_path / "pristine.zarr")
    shutil.copytree(store, pristine)

    os.remove(os.path.join(store, "data", "reward", "c", "0"))  # all rewards are 0.0 until success: zeros
    digest = store_digest(store)
    proc = run_cli("record-demos", f"out={demos}", "episodes=1")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert "data/reward chunk c/0 missing" in lines[0] and f"robot-rl check-log {store}" in lines[0]
    assert store_digest(store) == digest
    proc = run_cli("train", f"demos={store}", f"run_dir={tmp_path / 'run'}", "steps=10")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "data/reward chunk c/0 missing" in lines[0], proc.stderr
    assert store_digest(store) == digest

    shutil.rmtree(store)
    shutil.copytree(pristine, store)
    os.remove(os.path.join(store, "meta", "episode_ends", "c", "0"))  # read as 0: "0 steps committed"
    digest = store_digest(store)
    proc = run_cli("record-demos", f"out={demos}", "episodes=1")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "meta/episode_ends chunk c/0 missing" in lines[0], proc.stderr
    assert store_digest(store) == digest  # nothing truncated
    proc = run_cli("salvage-log", store, f"out={tmp_path / 'saved.zarr'}")
    assert proc.returncode == 0 and "recovered 2 of 2 episodes" in proc.stdout, proc.stdout + proc.stderr
    assert "rebuilt from meta/length" in proc.stdout
    original, saved = EpisodeLog(pristine), EpisodeLog(str(tmp_path / "saved.zarr"))
    np.testing.assert_array_equal(saved.episode_ends, original.episode_ends)
    for name in ("observation/state", "action", "reward"):
        np.testing.assert_array_equal(saved.transitions()[name], original.transitions()[name])


# ------------------------------------------------------------------------------------ disk full

DISK_FULL_SCRIPT = """
import json, os, resource, signal, sys
sys.path.insert(0, {tests_dir!r})
import numpy as np
from test_log_integrity import noisy_transition, SPEC, ACTION_DIM
from test_episode_log import ep_length, ep_source
import robot_rl.data.episode_log as el
from robot_rl.data.episode_log import EpisodeLogError, EpisodeLogWriter
el.SHARD_TARGET_BYTES = 64 * 32 * 32 * 3  # image shards of 64 frames (about 200 kB)
path, mode, filler = sys.argv[1], sys.argv[2], sys.argv[3]
out = {{}}
if mode == "fsize":
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead of killing us
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, hard))  # a shard outgrows it after ~32 frames
writer = EpisodeLogWriter(path, SPEC, ACTION_DIM)
for ep in range(1000):
    for t in range(ep_length(ep)):
        writer.add(noisy_transition(ep, t))
    try:
        writer.end_episode(ep_source(ep))
    except EpisodeLogError as err:
        out["error"] = str(err)
        break
out["failed_episode"] = ep
out["after_failure"] = [writer.num_episodes, writer.num_steps, writer.pending_steps]
out["partials"] = [f for _, _, fs in os.walk(os.path.dirname(path)) for f in fs if f.endswith(".partial")]
if mode == "fsize":  # "free space": lift the limit
    resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
else:
    os.remove(filler)
out["retry"] = writer.end_episode(ep_source(ep))  # the buffered episode commits now
writer.close()
with EpisodeLogWriter(path, SPEC, ACTION_DIM) as writer:  # rerun: resumes
    for t in range(ep_length(ep + 1)):
        writer.add(noisy_transition(ep + 1, t))
    out["resumed"] = writer.end_episode(ep_source(ep + 1))
# a full disk while creating a store: nothing is left behind
other = os.path.join(os.path.dirname(path), "other.zarr")
if mode == "fsize":
    resource.setrlimit(resource.RLIMIT_FSIZE, (100, hard))
else:
    with open(filler, "wb", buffering=0) as f:  # fill the disk up
        try:
            while True:
                f.write(b"x" * 4096)
        except OSError:
            pass
try:
    EpisodeLogWriter(other, SPEC, ACTION_DIM)
except EpisodeLogError as err:
    out["create_error"] = str(err)
out["left"] = sorted(n for n in os.listdir(os.path.dirname(path)) if n.startswith("other.zarr")
                     and not n.endswith(".lock"))
print(json.dumps(out))
"""


def noisy_transition(ep: int, t: int):
    """The pattern transition with incompressible images (so a small disk fills up quickly)."""
    tr = pattern_transition(ep, t)
    for obs, k in ((tr.observation, t), (tr.next_observation, t + 1)):
        obs["image/front"] = np.random.default_rng(1000 * ep + k).integers(0, 256, IMAGE_SHAPE, dtype=np.uint8)
    return tr


@contextlib.contextmanager
def small_disk(where, how: str):
    """A directory on a 2 MB tmpfs (``how="tmpfs"``), or a plain directory (``"fsize"``: the script limits
    the size of the files it writes with RLIMIT_FSIZE instead)."""
    if how == "fsize":
        os.makedirs(where)
        yield where
        return
    with tmpfs(where, "2m"):  # skipped where mounting is not allowed: the RLIMIT_FSIZE variant covers it
        yield where


@pytest.mark.parametrize("how", ["tmpfs", "fsize"])
def test_disk_full_keeps_committed_episodes_and_resumes(tmp_path, how):
    with small_disk(tmp_path / "disk", how) as disk:
        path, filler = str(disk / "episodes.zarr"), str(disk / "filler")
        if how == "tmpfs":
            with open(filler, "wb") as f:
                f.write(os.urandom(600_000))
        script = DISK_FULL_SCRIPT.format(tests_dir=TESTS_DIR)
        proc = subprocess.run(
            [sys.executable, "-c", script, path, how, filler], capture_output=True, text=True, timeout=300
        )
        assert proc.returncode == 0, proc.stderr
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        failed = out["failed_episode"]
        assert failed >= 2, out  # some episodes committed before the disk filled up
        msg = out["error"]
        assert "\n" not in msg and msg.startswith(f"disk full writing episode log {path} (") and " MB free on " in msg
        assert "free space and rerun to resume; committed episodes are intact" in msg
        committed_steps = sum(ep_length(e) for e in range(failed))
        assert out["after_failure"] == [failed, committed_steps, ep_length(failed)]  # counters at the last commit
        assert out["partials"] == []
        assert out["retry"] == failed and out["resumed"] == failed + 1
        assert "disk full creating episode log" in out["create_error"] and out["left"] == []

        log = EpisodeLog(path)
        assert log.num_episodes == failed + 2
        for e in range(failed + 2):
            got = log.episode(e)
            for t in range(ep_length(e)):
                want = noisy_transition(e, t)
                np.testing.assert_array_equal(got["observation/image/front"][t], want.observation["image/front"])
                np.testing.assert_array_equal(got["action"][t], want.action)
        assert check_log(path)["ok"]


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_failed_commit_leaves_the_writer_at_its_last_commit(stage, pristine, tmp_path, small_chunks, monkeypatch):
    """ENOSPC after part of commit stage 1 (chunks), 2 (shapes) or 3 (the commit record) has landed."""
    import errno

    path = copy_store(pristine, tmp_path)
    real_run = el._run
    calls = []

    def failing_run(*coros):
        calls.append(len(coros))
        if len(calls) == stage:
            real_run(*coros[: len(coros) // 2])  # half of this stage's writes land, then the disk is full
            for c in coros[len(coros) // 2 :]:
                c.close()
            raise OSError(errno.ENOSPC, "No space left on device", path)
        real_run(*coros)

    with EpisodeLogWriter(path, SPEC, ACTION_DIM) as writer:
        monkeypatch.setattr(el, "_run", failing_run)
        with pytest.raises(EpisodeLogError, match="disk full writing episode log .* MB free on") as err:
            write_pattern_episode(writer, EPISODES)
        assert "\n" not in str(err.value)
        assert (writer.num_episodes, writer.pending_steps) == (EPISODES, ep_length(EPISODES))
        assert EpisodeLog(path).num_episodes == EPISODES  # nothing new is committed
        monkeypatch.setattr(el, "_run", real_run)
        assert writer.end_episode(ep_source(EPISODES)) == EPISODES  # "free space": the retry commits
        assert write_pattern_episode(writer, EPISODES + 1) == EPISODES + 1
    assert check_log(path)["ok"]
    assert assert_log_matches_pattern(path).num_episodes == EPISODES + 2
    with EpisodeLogWriter(path, SPEC, ACTION_DIM) as writer:
        assert writer.num_episodes == EPISODES + 2


def test_every_array_metadata_can_be_rebuilt(pristine, tmp_path, small_chunks):
    """A zarr.json cut short (power loss while it was rewritten, say) loses no episode: salvage rebuilds it."""
    names = [
        "data/reward",
        "data/action",
        "data/observation/state",
        "data/observation/image/front",
        "meta/label",
        "meta/eval_step",
        "meta/last_observation/state",
        "meta/last_observation/image/front",
        "meta/episode_ends",
    ]
    for i, name in enumerate(names):  # one of each kind of array
        path = str(tmp_path / f"s{i}.zarr")
        shutil.copytree(pristine, path)
        with open(os.path.join(path, name, "zarr.json"), "r+b") as f:
            f.truncate(40)
        report = check_log(path)
        assert [p["array"] for p in report["problems"]] == [name], report["problems"]
        assert report["damaged_episodes"] == [] and report["boundaries"] == "meta/episode_ends", name
        if name in ("data/observation/image/front", "meta/episode_ends", "data/action", "meta/eval_step"):
            out = str(tmp_path / f"out{i}.zarr")
            assert salvage_log(path, out)["recovered"] == list(range(EPISODES))
            salvaged = EpisodeLog(out)
            for e in range(EPISODES):
                assert_same_episode(salvaged.episode(e), e, new_id=e)
        shutil.rmtree(path)


def rewrite_rows(path: str, name: str, rows: slice, values) -> None:
    """Change committed values with valid checksums (damage no checksum can see)."""
    arr = zarr.open_array(os.path.join(path, name), mode="r+").with_config({"write_empty_chunks": True})
    arr[rows] = values


def test_boundaries_rebuilt_from_data_step(pristine, tmp_path, small_chunks):
    path = copy_store(pristine, tmp_path)
    for name in ("meta/episode_ends", "meta/length"):  # the same four episodes in both
        os.remove(os.path.join(path, name, "c", "1"))
    report = check_log(path)
    assert report["boundaries"] == "data/step" and report["damaged_episodes"] == []
    assert sorted(p["array"] for p in report["problems"]) == ["meta/episode_ends", "meta/length"]
    out = str(tmp_path / "out.zarr")
    assert salvage_log(path, out)["recovered"] == list(range(EPISODES))
    new = EpisodeLog(out)
    np.testing.assert_array_equal(new.episode_meta()["length"], [ep_length(e) for e in range(EPISODES)])
    for e in range(EPISODES):
        assert_same_episode(new.episode(e), e, new_id=e)

    # from data/step alone, data/episode_id must not change inside an episode
    start5 = sum(ep_length(e) for e in range(5))
    rewrite_rows(path, "data/episode_id", slice(start5 + 2, start5 + 3), 7)
    report = check_log(path)
    assert report["damaged_episodes"] == [5]
    assert any(p["kind"] == "inconsistent index" and p["array"] == "data/episode_id" for p in report["problems"])


def test_length_disagreeing_with_the_index(pristine, tmp_path, small_chunks):
    path = copy_store(pristine, tmp_path)
    rewrite_rows(path, "meta/length", slice(3, 4), 99)
    digest = store_digest(path)
    log = EpisodeLog(path)  # every chunk is there and sound
    with pytest.raises(EpisodeLogError, match=r"meta/length\[3\] is 99 but meta/episode_ends says 4"):
        log.episode_meta()
    with pytest.raises(EpisodeLogError, match=r"meta/length\[3\] is 99"):
        EpisodeLogWriter(path, SPEC, ACTION_DIM)
    assert store_digest(path) == digest
    report = check_log(path)
    assert report["damaged_episodes"] == [3] and report["boundaries"] == "meta/episode_ends"
    assert salvage_log(path, str(tmp_path / "out.zarr"))["recovered"] == [e for e in range(EPISODES) if e != 3]
