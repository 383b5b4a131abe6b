"""The fault matrix (issue 10): robot_rl tried as a careless or hostile user would.

Usage:
  python bench/faults.py [--only kills,stores,disk,checkpoint,hostile] [--kills 20] [--out bench/results/faults]

Parts:
  kills       a training run (pick_cube, small settings) killed with SIGKILL again and again until it
              finishes: `--kills` kills at random moments (whatever phase they land in) plus one failpoint
              kill per phase (robot_rl/runtime/failpoints.py: demo recording, training before and after the
              first checkpoint, checkpoint write, eval, summary write). Every restart must resume; at the
              end counts, eval history and weights must equal those of the same run never killed, and
              every episode committed before any kill must be in the final log unchanged.
  stores      every kind of damage of tests/store_damage.py on a store with small chunks: the reader
              and the writer (`robot-rl record-demos` appending) refuse it, it stays byte-identical,
              `robot-rl check-log` reports it, `robot-rl salvage-log` recovers every intact episode.
  disk        training on a small tmpfs that fills up (needs root: mount): a one-line error, no temp
              file left, finished episodes readable, and the run resumes once there is room.
  checkpoint  a crafted checkpoint.pt whose unpickling would run a shell command: `eval` and `train`
              refuse it and the command never runs.
  hostile     the hostile message set of tests/hostile.py against a running bridge and learner: both
              stay alive, the TCP stays inside the workspace, memory growth under a 10 s flood.
Prints a table (case, tried, survived, episodes lost, unsafe motions); the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

from cli_proc import robot_rl  # noqa: E402

from robot_rl.data.episode_log import EpisodeLog  # noqa: E402

TRAIN = [
    "agent.compile=false",
    "agent.batch_size=64",
    "agent.utd=2",
    "runtime.learning_starts=50",
    "runtime.eval_episodes=3",
    "runtime.eval_every=300",
    "runtime.checkpoint_every=150",
    "runtime.log_every=300",
    "num_demos=3",
    "steps=5000",
]
PHASE_KILLS = ["commit:demo:2", "commit:online:1", "write:checkpoint.pt:1", "commit:online:4", "commit:eval:2"]
LAST_KILL = "write:summary.json"  # fires only at the end of a run: the last kill of the series


def cli(*args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return robot_rl(*args, env=env, timeout=timeout)


def comparable(run: Path) -> dict:
    """summary.json without its wall-clock fields, plus a hash of the final weights."""
    import torch

    summary = json.loads((run / "summary.json").read_text())
    for key in ("wall_s", "time_split", "run_dir"):
        summary.pop(key, None)
    for result in [*summary["evals"], summary["final_eval"]]:
        result.pop("wall_s", None)
    agent = torch.load(run / "checkpoint.pt", weights_only=True)["agent"]
    h = hashlib.sha256()
    for module in ("actor", "critic", "target_critic"):
        for key, value in sorted(agent[module].items()):
            h.update(key.encode())
            h.update(value.numpy().tobytes())
    summary["weights_sha256"] = h.hexdigest()
    return summary


def episode_fingerprints(store: Path) -> list[str]:
    """One hash per committed episode (its meta row and step arrays)."""
    if not store.exists():
        return []
    log = EpisodeLog(store)
    meta = log.episode_meta()
    prints = []
    for i in range(log.num_episodes):
        h = hashlib.sha256()
        for key in ("source", "length", "success", "episode_return", "label"):
            h.update(np.asarray(meta[key][i]).tobytes())
        episode = log.episode(i)
        for key in ("observation/state", "action", "reward", "terminated", "truncated"):
            h.update(np.ascontiguousarray(episode[key]).tobytes())
        prints.append(h.hexdigest())
    return prints


FAILPOINT_PHASES = {
    "commit:demo": "demo recording",
    "commit:online": "training",
    "commit:eval": "eval",
    "write:checkpoint.pt": "checkpoint write",
    "write:summary.json": "summary write",
}


def point_name(failpoint: str) -> str:
    """'commit:eval:2' -> 'commit:eval' (the failpoint without its count)."""
    name, _, count = failpoint.rpartition(":")
    return name if count.isdigit() else failpoint


def phase_of(run: Path, before: int, after: int) -> str:
    """Where a random kill landed, judged from what it left behind."""
    if (run / "summary.json.tmp").exists():
        return "summary write"
    if (run / "checkpoint.pt.tmp").exists():
        return "checkpoint write"
    if after == before:
        return "start-up or replay"
    last = int(EpisodeLog(run / "episodes.zarr").episode_meta()["source"][-1])
    return {0: "demo recording", 3: "eval"}.get(last, "training")


def wait_for_lock(run: Path, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    """Until `proc` holds the run's lock (its start-up is over) or exits."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if (run / "run.lock").read_text().strip() == str(proc.pid):
                return
        time.sleep(0.05)


def part_kills(out: Path, kills: int, rng: np.random.Generator) -> list[dict]:
    """See the module docstring."""
    whole, run = out / "whole", out / "killed"
    for path in (whole, run):
        subprocess.run(["rm", "-rf", str(path)], check=True)
    proc = cli("train", f"run_dir={whole}", *TRAIN)
    assert proc.returncode == 0, proc.stderr
    reference = comparable(whole)
    rows: dict[str, dict] = {}
    committed: list[str] = []  # fingerprints of every episode some kill found committed
    restarts = wasted = 0
    plan = [("failpoint", fp) for fp in PHASE_KILLS[1:]] + [("random", None)] * kills
    plan = [("failpoint", PHASE_KILLS[0])] + [plan[i] for i in rng.permutation(len(plan))]
    plan.append(("failpoint", LAST_KILL))
    for kind, failpoint in plan:
        env = {"ROBOT_RL_FAILPOINT": failpoint} if failpoint else {}
        proc = subprocess.Popen(
            [sys.executable, "-m", "robot_rl.cli", "train", f"run_dir={run}", *TRAIN],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env={**os.environ, **env},
        )
        if kind == "random":
            if rng.random() < 0.8:  # mostly at a random moment of its work, sometimes of its start-up
                wait_for_lock(run, proc)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=float(rng.uniform(0.5, 8.0)))
            proc.kill()
        elif failpoint != LAST_KILL:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:  # a failpoint the run has passed already: a kill by the clock
                proc.kill()
                failpoint = None
        proc.wait()
        error = proc.stderr.read()
        if proc.returncode not in (0, -signal.SIGKILL):
            raise AssertionError(f"a restart failed instead of resuming: {error}")
        restarts += 1
        if proc.returncode == 0:
            wasted += 1  # the run had finished: this kill never landed
            continue
        prints = episode_fingerprints(run / "episodes.zarr")
        phase = FAILPOINT_PHASES[point_name(failpoint)] if failpoint else phase_of(run, len(committed), len(prints))
        row = rows.setdefault(
            phase, {"case": f"kill -9: {phase}", "tried": 0, "survived": 0, "episodes_lost": 0, "unsafe_motions": 0}
        )
        lost = sum(a != b for a, b in zip(committed, prints)) + max(0, len(committed) - len(prints))
        row["tried"] += 1
        row["episodes_lost"] += lost
        row["survived"] += int(lost == 0)
        committed = prints
    proc = cli("train", f"run_dir={run}", *TRAIN)
    assert proc.returncode == 0, proc.stderr
    final = comparable(run)
    equal = final == reference
    prints = episode_fingerprints(run / "episodes.zarr")
    lost = sum(a != b for a, b in zip(committed, prints)) + max(0, len(committed) - len(prints))
    for row in rows.values():
        row["counts_equal"] = equal
        if not equal:
            row["survived"] = 0
    landed = sum(r["tried"] for r in rows.values())
    print(
        f"kills: {landed} landed in a live run ({wasted} more came after it had finished); every restart "
        f"resumed ({restarts}); final counts, evals and weights equal to the run never killed: {equal}; "
        f"episodes lost at the end: {lost}"
    )
    if not equal:
        print("  differs:", {k: (reference[k], final.get(k)) for k in reference if reference[k] != final.get(k)})
    return sorted(rows.values(), key=lambda r: r["case"])


# ---------------------------------------------------------------------------------------- damaged stores
SMALL_CHUNKS = {"STEP_CHUNK": 16, "EPISODE_CHUNK": 4, "SHARD_TARGET_BYTES": 8 * 32 * 32 * 3}


def record_store(out: Path, task: list[str], episodes: int) -> Path:
    """A demo store of `robot-rl record-demos` recorded in this process with small chunks (many files)."""
    import robot_rl.data.episode_log as el
    from robot_rl.commands.record_demos import record_demos
    from robot_rl.config import compose

    subprocess.run(["rm", "-rf", str(out)], check=True)
    saved = {name: getattr(el, name) for name in SMALL_CHUNKS}
    try:
        for name, value in SMALL_CHUNKS.items():
            setattr(el, name, value)
        record_demos(compose("record_demos", [*task, f"episodes={episodes}", f"out={out}"]))
    finally:
        for name, value in saved.items():
            setattr(el, name, value)
    return out / "episodes.zarr"


def part_stores(out: Path) -> list[dict]:
    """See the module docstring."""
    from store_damage import applicable_kinds, damage, store_digest

    from robot_rl.data.episode_log import EpisodeLogError
    from robot_rl.data.log_check import check_log

    rows = []
    sources = {
        "pick_cube": ["task=pick_cube"],
        "pick_cube_vision": ["task=pick_cube_vision", "task.image_size=[32,32]"],
    }
    for name, task in sources.items():
        pristine = record_store(out / "stores" / name / "pristine", task, 8)
        prints = episode_fingerprints(pristine)
        for kind in applicable_kinds(str(pristine)):
            case = out / "stores" / name / kind
            subprocess.run(["rm", "-rf", str(case)], check=True)
            subprocess.run(["cp", "-a", str(pristine.parent), str(case)], check=True)
            store = case / "episodes.zarr"
            lost = sorted(damage(str(store), kind, np.random.default_rng(0))["unrecoverable"])
            digest = store_digest(str(store))
            refused_reader = False
            try:
                from robot_rl.data.episode_log import EpisodeLog as Reader

                Reader(store).transitions()
            except EpisodeLogError:
                refused_reader = True
            writer = cli("record-demos", *task, "episodes=1", f"out={case}")
            trainer = cli("train", *task, f"demos={store}", f"run_dir={case / 'run'}", "steps=10")
            refused = all(p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 for p in (writer, trainer))
            unchanged = store_digest(str(store)) == digest
            checked = cli("check-log", store)
            report = check_log(str(store))
            salvaged = cli("salvage-log", store, f"out={case / 'salvaged.zarr'}")
            got = episode_fingerprints(case / "salvaged.zarr") if salvaged.returncode == 0 else []
            intact = [prints[i] for i in range(len(prints)) if i not in lost]
            recovered = [a for a, b in zip(got, intact) if a == b] if len(got) == len(intact) else []
            ok = (
                refused_reader
                and refused
                and unchanged
                and checked.returncode == 1
                and report["damaged_episodes"] == lost
                and len(recovered) == len(intact)
            )
            rows.append(
                {
                    "case": f"damaged store: {name} {kind}",
                    "tried": 1,
                    "survived": int(ok),
                    "episodes_lost": len(intact) - len(recovered),
                    "unsafe_motions": 0,
                    "unrecoverable": len(lost),
                    "salvaged": len(got),
                    "refused_and_unchanged": refused and unchanged,
                }
            )
    print(
        f"stores: {len(rows)} damaged stores; refused and byte-identical: "
        f"{sum(r['refused_and_unchanged'] for r in rows)}; every intact episode salvaged: "
        f"{sum(r['episodes_lost'] == 0 for r in rows)}"
    )
    return rows


# ---------------------------------------------------------------------------------------- full disk
def part_disk(out: Path) -> list[dict]:
    """See the module docstring: the disk fills while a run trains (a filler file), then is freed."""
    from fs_faults import remount, tmpfs

    rows = []
    for case, size, filler_at in (
        ("disk full: checkpoint bigger than the disk", "3m", None),
        ("disk full: filled up while training", "64m", 6),
    ):
        with tmpfs(out / "disk", size) as mount:
            run = mount / "run"
            args = ["train", f"run_dir={run}", *TRAIN, "agent.hidden_dims=[512,512]"]
            proc = subprocess.Popen(
                [sys.executable, "-m", "robot_rl.cli", *args],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
                cwd=REPO,
            )
            if filler_at is not None:  # once a few online episodes are in, take every free byte
                while proc.poll() is None:
                    with contextlib.suppress(Exception):
                        meta = EpisodeLog(run / "episodes.zarr").episode_meta()
                        if (meta["source"] == 1).sum() >= filler_at:
                            break
                    time.sleep(0.2)
                subprocess.run(["dd", "if=/dev/zero", f"of={mount / 'filler'}", "bs=1M"], capture_output=True)
            proc.wait(timeout=600)
            error = proc.stderr.read().strip()
            one_line = proc.returncode == 2 and len(error.splitlines()) == 1 and "disk full" in error
            leftovers = [p for p in run.rglob("*") if p.name.endswith((".tmp", ".partial")) or ".creating-" in p.name]
            before = episode_fingerprints(run / "episodes.zarr")
            (mount / "filler").unlink(missing_ok=True)
            remount(mount, "size=256m")
            resumed = cli(*args[:2], "steps=600", *[a for a in args[2:] if not a.startswith("steps=")])
            after = episode_fingerprints(run / "episodes.zarr")
            lost = sum(a != b for a, b in zip(before, after)) + max(0, len(before) - len(after))
            ok = one_line and not leftovers and resumed.returncode == 0 and lost == 0
            print(
                f"{case}: {error[:150]!r}; leftovers {leftovers}; {len(before)} episodes kept; resumed "
                f"{resumed.returncode == 0}"
            )
            rows.append({"case": case, "tried": 1, "survived": int(ok), "episodes_lost": lost, "unsafe_motions": 0})
    return rows


# ---------------------------------------------------------------------------------------- malicious checkpoint
def part_checkpoint(out: Path) -> list[dict]:
    """See the module docstring."""
    from test_run_safety import crafted_checkpoint

    run = out / "checkpoint_run"
    subprocess.run(["rm", "-rf", str(run)], check=True)
    assert cli("train", f"run_dir={run}", *TRAIN, "steps=100").returncode == 0  # the last steps= wins
    marker = out / "pwned"
    marker.unlink(missing_ok=True)
    good = run / "checkpoint.good"
    (run / "checkpoint.pt").rename(good)
    crafted_checkpoint(good, run / "checkpoint.pt", marker)
    results = [cli("eval", f"run_dir={run}", "episodes=1"), cli("train", f"run_dir={run}", *TRAIN)]
    refused = all(p.returncode == 2 and "holds more than weights" in p.stderr for p in results)
    ok = refused and not marker.exists()
    print(f"checkpoint: crafted checkpoint refused by eval and train: {refused}; its command ran: {marker.exists()}")
    return [
        {
            "case": "malicious checkpoint (eval, resume)",
            "tried": 2,
            "survived": 2 * int(ok),
            "episodes_lost": 0,
            "unsafe_motions": 0,
        }
    ]


# ---------------------------------------------------------------------------------------- hostile network input
DOMAIN = 95  # the test modules use 40-89, 100-199 and 215-232


def part_hostile(out: Path) -> list[dict]:
    """See the module docstring."""
    from hostile import (
        CommandInjector,
        episode_chunks,
        flood,
        flood_payload,
        hostile_chunks,
        hostile_grippers,
        hostile_twists,
        peak_rss,
        scripted_episode,
        send_cases,
        transitions_publisher,
    )
    from ros_processes import ros_session

    from robot_rl.robots.mujoco import DEFAULT_WORKSPACE
    from robot_rl.robots.ros import RosRobot

    rows = []
    lo, hi = DEFAULT_WORKSPACE
    (out / "ros").mkdir(exist_ok=True)
    with ros_session(DOMAIN, out / "ros") as (nodes, probe):
        # the bridge: every hostile command kind between legal ones, then legal full-speed pushes at the walls
        bridge = nodes.start("bridge", "bridge", "mode:=free", "start_armed:=true", namespace="/faults")
        cases = hostile_twists(0.0) + hostile_grippers(0.0)
        injector = CommandInjector(probe.node, "/faults", cases)
        robot = RosRobot("/faults", timeout=60.0)
        try:
            robot.reset(np.array([0.5, 0.0, 0.2]))
            deadline = time.monotonic() + 60
            while injector.index < 3 * len(cases) and time.monotonic() < deadline:
                robot.apply_action(np.zeros(3), -1.0)
            injector.active = False
            top_speed = json.loads(probe.trigger("/faults/stats").message)["max_tcp_speed"]
            push = 0.9 * robot.control_dt * top_speed / np.sqrt(3)  # per axis: 90% of the fastest legal command
            for direction in ([-1, -1, -1], [1, 1, 1]):  # the fastest legal command, into two corners
                for _ in range(40):
                    robot.apply_action(push * np.asarray(direction, float), 1.0)
            time.sleep(0.3)
            stats = json.loads(probe.trigger("/faults/stats").message)
        finally:
            robot.close()
        positions = np.array(injector.positions)
        outside = (positions < lo - 0.01).any(1) | (positions > hi + 0.01).any(1)
        unsafe = int((~np.isfinite(positions).all(1) | outside).sum())
        sent = sum(injector.sent.values())
        dropped = sum(stats["invalid"].values())
        alive = bridge.poll() is None
        print(
            f"bridge: {sent} hostile commands ({len(cases)} kinds), {dropped} dropped {stats['invalid']}; "
            f"{len(positions)} poses, {unsafe} outside the workspace; alive {alive}"
        )
        rows.append(
            {
                "case": "hostile commands -> bridge",
                "tried": sent,
                "survived": sent if alive and dropped >= sent and unsafe == 0 else 0,
                "episodes_lost": 0,
                "unsafe_motions": unsafe,
            }
        )

        # the learner: the hostile chunk set, a valid episode, a 10 s flood, another valid episode
        steps, spec = scripted_episode()
        subprocess.run(["rm", "-rf", str(out / "ros" / "run")], check=True)
        learner = nodes.start(
            "learner",
            "learner",
            f"overrides:=[run_dir={out / 'ros' / 'run'}, steps=100000, "
            "runtime.learning_starts=8, agent.compile=false, agent.utd=1, agent.batch_size=16, "
            "runtime.torch_threads=1, runtime.checkpoint_every=100000]",
        )
        probe.watch("/robot_rl/learner_status")
        probe.wait_for("/robot_rl/learner_status", lambda s: s["ready"], 120, "the learner")
        send = transitions_publisher(probe.node)
        chunks = hostile_chunks(steps, spec)
        expected = send_cases(send, chunks)
        status = probe.wait_for("/robot_rl/learner_status", lambda s: s["rejected"] == expected, 60, "every rejection")
        clean = status["episodes"] == 0
        for payload in episode_chunks(steps, spec, "robot0", 0, chunk_steps=7):
            send(payload)
        probe.wait_for("/robot_rl/learner_status", lambda s: s["episodes"] == 1 and s["updates"] > 0, 60, "training")
        alive = learner.poll() is None
        print(
            f"learner: {len(chunks)} hostile chunk cases rejected by kind {status['rejected']}; nothing committed "
            f"{clean}; then trained on a valid episode; alive {alive}"
        )
        rows.append(
            {
                "case": "hostile episode chunks -> learner",
                "tried": len(chunks),
                "survived": len(chunks) if clean and alive else 0,
                "episodes_lost": 0,
                "unsafe_motions": 0,
            }
        )

        time.sleep(1.0)
        with peak_rss(learner.pid) as rss:
            sent = flood("/robot_rl/transitions", DOMAIN, 10.0, flood_payload())
            time.sleep(2.0)
        baseline, growth = rss["baseline"], rss["peak"] - rss["baseline"]
        for payload in episode_chunks(steps, spec, "robot0", 1):
            send(payload)
        status = probe.wait_for(
            "/robot_rl/learner_status", lambda s: s["episodes"] == 2, 120, "an episode after the flood"
        )
        alive = learner.poll() is None
        print(
            f"flood: {sent['sent']} payloads of 4 MB in {sent['seconds']} s ({sent['rate_mb_s']} MB/s); learner RSS "
            f"{baseline:.0f} -> peak {rss['peak']:.0f} MB (+{growth:.0f} MB); alive {alive}; still commits"
        )
        rows.append(
            {
                "case": "10 s flood -> learner",
                "tried": 1,
                "survived": int(alive and growth < 200),
                "episodes_lost": 0,
                "unsafe_motions": 0,
                "rss_growth_mb": round(growth),
            }
        )
    return rows


PARTS = {
    "kills": part_kills,
    "stores": part_stores,
    "disk": part_disk,
    "checkpoint": part_checkpoint,
    "hostile": part_hostile,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(PARTS), help="comma-separated parts: " + ", ".join(PARTS))
    parser.add_argument("--kills", type=int, default=20, help="kills at random moments (plus one per phase)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "faults"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    rows: list[dict] = []
    for name in args.only.split(","):
        part = PARTS[name.strip()]
        kwargs = {"kills": args.kills, "rng": rng} if name == "kills" else {}
        rows += part(out, **kwargs)
    print(f"\n{'case':<52}{'tried':>7}{'survived':>10}{'episodes lost':>15}{'unsafe motions':>16}")
    for row in rows:
        print(
            f"{row['case']:<52}{row['tried']:>7}{row['survived']:>10}{row['episodes_lost']:>15}{row['unsafe_motions']:>16}"
        )
    total = {key: sum(r[key] for r in rows) for key in ("tried", "survived", "episodes_lost", "unsafe_motions")}
    print(
        json.dumps(
            {"bench": "faults", "machine": f"{platform.machine()} {os.cpu_count()} cpus", **total, "cases": rows}
        )
    )


if __name__ == "__main__":
    main()
