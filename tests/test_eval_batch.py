"""`robot-rl eval-batch`: a real (tiny) training run scored over the smoke grid in the batched MJX sim, as a person
runs the command; the JSON holds every cell and the heat map PNG decodes to a non-blank image of the figure's size;
a missing run, an unknown grid and bad values are refused in one line.

The run uses task.max_steps=50 and the eval batch 6, the shapes tests/test_sim_batch.py compiles, so whichever of
the two runs second loads the compiled step from the JAX compilation cache."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("jax")
pytest.importorskip("mujoco.mjx")

from cli_proc import FAST_TRAIN, robot_rl  # noqa: E402

from robot_rl.config import compose  # noqa: E402

FAST = [*FAST_TRAIN, "num_demos=2", "steps=200", "task.max_steps=50"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from robot_rl.runtime.embedded import train

    path = tmp_path_factory.mktemp("pick")
    train(compose("train", [f"run_dir={path}", *FAST]))
    return path


def one_line_error(*args) -> str:
    proc = robot_rl("eval-batch", *args, timeout=300)
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_eval_batch_writes_every_cell_and_a_heat_map(run_dir, tmp_path):
    out = tmp_path / "grid"
    proc = robot_rl(
        "eval-batch", f"run_dir={run_dir}", "grid=smoke", "episodes=3", "batch=6", f"out={out}", check=True, timeout=900
    )
    assert "[eval-batch]" in proc.stdout
    result = json.loads((out / "eval_batch.json").read_text())
    assert result["families"] == ["dynamics", "latency"] and result["strengths"] == [0.0, 2.0]
    cells = {(c["family"], c["strength"]): c for c in result["cells"]}
    assert set(cells) == {(f, s) for f in ("dynamics", "latency") for s in (0.0, 2.0)}
    for c in cells.values():
        assert c["episodes"] == 3 and 0 <= c["successes"] <= 3
        assert c["success_rate"] == pytest.approx(c["successes"] / 3)
        assert c["mean_return"] == pytest.approx(c["success_rate"])  # sparse: 1 on success only
        assert 1 <= c["mean_length"] <= 50
    # strength 0 is the nominal sim in every row: the same start states give the same episodes
    nominal = [{k: v for k, v in cells[(f, 0.0)].items() if k != "family"} for f in ("dynamics", "latency")]
    assert nominal[0] == nominal[1]

    import matplotlib.image

    image = matplotlib.image.imread(out / "heatmap.png")
    assert image.shape[:2] == (320, 510)  # figsize (5.1, 3.2) in at 100 dpi for a 2 x 2 grid
    rgb = image[..., :3].reshape(-1, 3)
    assert rgb.std() > 0.1 and len(np.unique(np.round(rgb, 2), axis=0)) > 20  # drawn, not blank


def test_bad_arguments_are_refused_in_one_line(run_dir, tmp_path, monkeypatch):
    assert "holds no trained run" in one_line_error(f"run_dir={tmp_path / 'none'}", "grid=smoke")
    assert "choose one of default" in one_line_error(f"run_dir={run_dir}", "grid=nosuchgrid")
    assert "episodes=0" in one_line_error(f"run_dir={run_dir}", "grid=smoke", "episodes=0")
    from robot_rl.config import UserError
    from robot_rl.deploy.eval_batch import load_grid

    (tmp_path / "grid").mkdir()
    monkeypatch.setenv("ROBOT_RL_CONFIG_DIR", str(tmp_path))
    for text, named in [
        ("families: [camera]\nstrengths: [0, 1]\n", "camera"),
        ("families: [latency]\nstrengths: [0, 9]\n", "0..5"),
        ("families: [latency]\nstrengths: [a]\n", "numbers"),
    ]:
        (tmp_path / "grid" / "wrong.yaml").write_text(text)
        with pytest.raises(UserError, match=named) as err:
            load_grid("wrong")
        assert "\n" not in str(err.value)
