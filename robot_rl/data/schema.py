"""The one transition schema used by the env, replay buffers, the zarr log and ROS transport."""

from __future__ import annotations

import math
import typing
from dataclasses import MISSING, dataclass, field, fields
from enum import IntEnum, IntFlag

import numpy as np

Observation = dict[str, np.ndarray]  # {"state": float32[D], "image/<camera>": uint8[H,W,3]}


class RewardSource(IntEnum):
    """What a step's reward came from (uint8 in the log and on the wire)."""

    TASK = 0  # the task's own reward
    CLASSIFIER = 1  # a learned success classifier (reward.classifier)
    HUMAN = 2  # a person's episode label (success / failure)
    INTERVENTION = 3  # RLIF (reward.source=interventions): -1 on the step before a take-over, else 0


class EpisodeLabel(IntEnum):
    """A person's verdict on an episode, from a device button (NONE when nobody labelled it)."""

    NONE = 0
    SUCCESS = 1
    FAILURE = 2
    DISCARD = 3  # kept in the log, marked, never given to the learner


class EpisodeSource(IntEnum):
    DEMO = 0
    ONLINE = 1
    INTERVENTION = 2
    EVAL = 3
    DEPLOY = 4  # robot-rl deploy: an exported policy on a robot


class SafetyAction(IntFlag):
    """What the safety layer (robot_rl/envs/safety.py) did on a step, one bit per action; a step's set is
    `Transition.safety` (uint16 in the log and on the wire). `StepInfo.safety_actions` lists the same by
    name: the member's lower-case name (clip_box, ..., fault_nonfinite)."""

    CLIP_BOX = 1  # the motion was cut to stay in (and be able to brake inside) the workspace box
    CLIP_SPEED = 2  # a per-axis speed limit (linear or angular)
    CLIP_ACCEL = 4  # a per-axis acceleration limit (linear or angular)
    CLIP_ORIENTATION = 8  # the orientation box around home
    GRIPPER_RATE = 16  # an open/close switch came sooner than gripper_min_switch_s: the gripper kept its command
    JOINT_MARGIN = 32  # motion driving a joint within joint_margin of its limit further in was removed
    HOLD_STALE_OBS = 64  # the observation's camera frame was older than max_obs_age: held (braked to rest)
    HOLD_LATE_COMMAND = 128  # the command came more than max_command_delay after its observation: held
    HOLD_FORCE = 256  # the force on the hand exceeded max_force: held
    FAULT_NONFINITE = 512  # a NaN or infinite action: held, the episode ends, the robot is stopped


SAFETY_ACTIONS: tuple[str, ...] = tuple(a.name.lower() for a in SafetyAction)  # the fixed vocabulary, by bit
SAFETY_MASK = int(sum(SafetyAction))  # every known bit


def safety_bits(names) -> int:
    """The SafetyAction bitmask of safety-action names (a ValueError names an unknown one)."""
    bits = 0
    for name in names:
        try:
            bits |= SafetyAction[str(name).upper()]
        except KeyError:
            raise ValueError(f"unknown safety action {name!r}: one of {', '.join(SAFETY_ACTIONS)}") from None
    return int(bits)


def safety_names(bits: int) -> list[str]:
    """The names of the safety actions set in `bits`, in bit order."""
    bits = int(bits)
    return [a.name.lower() for a in SafetyAction if bits & a]


@dataclass
class Transition:
    """One env step. `action` is what was executed (the human action when `intervention`)."""

    observation: Observation
    action: np.ndarray  # float32[A] in [-1, 1]
    reward: float
    terminated: bool
    truncated: bool
    next_observation: Observation
    policy_action: np.ndarray  # float32[A]: what the policy proposed
    intervention: bool = False
    episode_id: int = 0
    step: int = 0
    timestamp: float = 0.0
    success: bool = False
    reward_source: RewardSource = RewardSource.TASK
    grasp_penalty: float = 0.0
    success_probability: float = float("nan")  # the reward classifier's output; NaN without one
    label: EpisodeLabel = EpisodeLabel.NONE  # a person's episode label, on the step it ended the episode
    frame_age_s: float = float("nan")  # age of the camera frame the observation holds (s); NaN when unknown
    safety: int = 0  # SafetyAction bits: what the safety layer changed on this step (0: nothing, or no layer)
    extras: dict = field(default_factory=dict)
    # the episode's domain-randomisation values (PERTURBATION_FIELDS names; None: the nominal sim), one per episode
    perturbation: dict[str, float] | None = None


# ------------------------------------------------------------------------------------ typed step info
STEP_INFO_KEY = "step_info"  #: the env's `info[STEP_INFO_KEY]` on every step: a StepInfo
RESET_INFO_KEY = "reset_info"  #: the env's reset `info[RESET_INFO_KEY]`: a ResetInfo


@dataclass
class StepInfo:
    """What one env step reports besides (obs, reward, terminated, truncated): created by the base env
    (RobotEnv, GymAdapter) under `info["step_info"]` and filled in by each wrapper on the way out."""

    success: bool = False  # the verdict the episode is scored by (task, classifier or a person's label)
    reward_source: RewardSource = RewardSource.TASK
    grasp_penalty: float = 0.0  # <= 0 on a step whose gripper command switched (HIL-SERL's grasp penalty)
    success_probability: float = float("nan")  # the reward classifier's output; NaN without one
    task_success: bool | None = None  # the env's own success when a classifier decides `success`; None otherwise
    intervention: bool = False  # a person's device drove this step
    intervention_action: np.ndarray | None = None  # the executed (human) action when `intervention`
    label: EpisodeLabel = EpisodeLabel.NONE  # a person's episode label, on the step it was given
    safety_actions: list[str] = field(default_factory=list)  # what a safety layer changed (SafetyAction names)
    executed_action: np.ndarray | None = None  # float32[A]: what ran, when the safety layer changed the action
    frame_age_s: float = float("nan")  # age of the camera frame the observation holds (s); NaN when unknown
    perturbation: dict[str, float] | None = None  # the episode's randomisation values (robot_rl/envs/randomize.py)

    @staticmethod
    def of(info: dict) -> StepInfo:
        """The StepInfo in an env's step `info`, created (and stored there) when the env set none."""
        step = info.get(STEP_INFO_KEY)
        if not isinstance(step, StepInfo):
            step = info[STEP_INFO_KEY] = StepInfo()
        return step


@dataclass
class ResetInfo:
    """What an env's reset did, separately from the episode: `info["reset_info"]` of `reset()`."""

    reset_s: float = 0.0  # wall seconds of the reset procedure alone
    reset_attempts: int = 1  # 1 = no retry
    full_reset: bool = False  # a joint-home (or state) reset ran
    reset_steps: int = 0  # control steps the reset executed (not counted in the episode)
    reset_failures: list[str] = field(default_factory=list)  # why each retried attempt failed

    @staticmethod
    def of(info: dict) -> ResetInfo:
        """The ResetInfo in an env's reset `info` (defaults when the env reports none: a foreign env)."""
        reset = info.get(RESET_INFO_KEY)
        return reset if isinstance(reset, ResetInfo) else ResetInfo()


def count_takeovers(intervention: np.ndarray) -> int:
    """Take-overs in an episode's per-step intervention flags: runs of consecutive True steps."""
    flags = np.asarray(intervention, bool)
    return int(np.count_nonzero(flags & ~np.concatenate([[False], flags[:-1]])))


# ---- per-step fields, defined once ---------------------------------------------------------------------
# The Transition attributes stored per step besides observations, with the dtypes of the zarr episode log
# (`data/<name>`; action and policy_action are [A]). This is the on-disk format: never change a dtype or a
# name here; a new field is a new episode-log format version (episode_log.FORMAT_VERSION, STEP_FIELDS_SINCE).
# robot_rl/data/episode_log.py stores exactly these; robot_rl/runtime/wire.py sends these less episode_id (a
# chunk's header names its episode) plus the step's label.
STEP_FIELDS: dict[str, np.dtype] = {
    name: np.dtype(dtype)
    for name, dtype in {
        "action": np.float32,
        "policy_action": np.float32,
        "reward": np.float32,
        "terminated": np.bool_,
        "truncated": np.bool_,
        "intervention": np.bool_,
        "episode_id": np.int64,
        "step": np.int32,
        "timestamp": np.float64,
        "success": np.bool_,
        "reward_source": np.uint8,
        "grasp_penalty": np.float32,
        "success_probability": np.float32,
        "frame_age_s": np.float32,  # camera frame age (s), NaN when unknown; since episode-log format 4
        "safety": np.uint16,  # SafetyAction bits (0: the safety layer changed nothing); since format 5
    }.items()
}
LABEL_DTYPE = np.dtype(np.uint8)

# The values a simulated episode was perturbed by (robot_rl/tasks/randomization.py: Perturbation.as_dict(), whose
# keys and identity values these must equal; a test checks it), name -> the nominal sim's value. The episode log
# stores them per episode (meta/perturbation, float32[E, len], the names in its "keys" attribute; since format 6),
# the wire in a chunk's header. An episode without them (a real robot, an older log) reads as these values.
PERTURBATION_FIELDS: dict[str, float] = {
    "friction": 1.0,
    "object_mass": 1.0,
    "object_size": 1.0,
    "damping": 1.0,
    "actuator_gain": 1.0,
    "obs_noise": 0.0,
    "action_noise": 0.0,
    "latency": 0.0,
    **{f"camera_pos_{i}": 0.0 for i in range(3)},
    **{f"camera_rot_{i}": 0.0 for i in range(3)},
    "camera_fovy": 0.0,
    "light": 1.0,
    **{f"cube_rgb_{i}": 0.0 for i in range(3)},
    **{f"table_rgb_{i}": 0.0 for i in range(3)},
}


def perturbation_row(values: dict[str, float] | None) -> np.ndarray:
    """float32[len(PERTURBATION_FIELDS)]: `values` (a name -> value mapping; None: the nominal sim) in the fields'
    order, missing names at their nominal value. A ValueError names an unknown one."""
    row = np.array(list(PERTURBATION_FIELDS.values()), np.float32)
    if values:
        index = {name: i for i, name in enumerate(PERTURBATION_FIELDS)}
        for name, value in values.items():
            if name not in index:
                raise ValueError(f"unknown perturbation value {name!r}: one of {', '.join(PERTURBATION_FIELDS)}")
            row[index[name]] = value
    return row  # an EpisodeLabel: per episode in the log (meta/label), per step on the wire


# ======================================================================================= run events
# What a training run reports while it runs (robot_rl.runtime.sinks turns them into the progress line,
# TensorBoard scalars, ...). `env_step` is the run's online env step count when the event happened.


@dataclass(frozen=True)
class StepEvent:
    """One online env step, as it was logged."""

    env_step: int
    episode: int  # the episode's index in the log
    step: int
    reward: float
    intervention: bool
    success: bool


@dataclass(frozen=True)
class ResetEvent:
    """An episode began: the env was reset (`reset_s`: wall seconds the reset took)."""

    env_step: int
    episode: int
    reset_s: float


@dataclass(frozen=True)
class InterventionStart:
    """A person took over at `step` of `episode`."""

    env_step: int
    episode: int
    step: int


@dataclass(frozen=True)
class InterventionEnd:
    """A person handed back control after `steps` steps."""

    env_step: int
    episode: int
    step: int
    steps: int


@dataclass(frozen=True)
class LabelEvent:
    """A person labelled `episode` (success, failure or discard)."""

    env_step: int
    episode: int
    label: EpisodeLabel


@dataclass(frozen=True)
class EStopEvent:
    """The e-stop was engaged (or cleared)."""

    env_step: int
    engaged: bool
    reason: str = ""


@dataclass(frozen=True)
class EpisodeEnd:
    """An episode was committed to the log."""

    env_step: int
    episode: int
    source: EpisodeSource
    length: int
    episode_return: float
    success: bool
    interventions: int
    intervention_steps: int
    discarded: bool
    actor: str = ""
    safety_steps: int = 0  # steps the safety layer changed (clipped, held, ...)


@dataclass(frozen=True)
class EvalEvent:
    """An eval round finished (read back from its logged episodes)."""

    env_step: int
    success_rate: float
    mean_return: float
    episodes: int
    mean_steps_to_success: float | None = None


@dataclass(frozen=True)
class LearnerStats:
    """An update window closed (every `runtime.log_every` env steps): the learner's last losses and rates."""

    env_step: int
    total_steps: int  # the run's step budget
    episodes: int
    updates: int
    updates_per_s: float
    critic_loss: float
    q: float
    temperature: float
    success_recent: float
    recent_episodes: int
    window_episodes: int  # episodes in this window and their take-overs
    window_interventions: int
    window_intervention_steps: int
    sim_share: float
    learner_share: float
    wall_s: float
    window_safety_steps: int = 0  # online steps in this window that the safety layer changed


RunEvent = (
    StepEvent
    | ResetEvent
    | InterventionStart
    | InterventionEnd
    | LabelEvent
    | EStopEvent
    | EpisodeEnd
    | EvalEvent
    | LearnerStats
)

RUN_EVENTS: dict[str, type] = {
    cls.__name__: cls
    for cls in (
        StepEvent,
        ResetEvent,
        InterventionStart,
        InterventionEnd,
        LabelEvent,
        EStopEvent,
        EpisodeEnd,
        EvalEvent,
        LearnerStats,
    )
}
MAX_EVENT_TEXT = 256  # the longest string field a decoded event may carry (an actor id, an e-stop reason)


# ---- run events as JSON (the ROS learner's `events` topic; anything that carries events as text) -----------
# {"kind": <class name>, <field>: <value>, ...}: enums by their lower-case name ("online", "success"), a
# non-finite float as null (standard JSON has no NaN), everything else as is.


def event_to_json(event: RunEvent) -> dict:
    """A run event as a JSON-ready dict (see above)."""
    out: dict = {"kind": type(event).__name__}
    for f in fields(event):
        value = getattr(event, f.name)
        if isinstance(value, IntEnum):
            value = value.name.lower()
        elif isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, float) and not math.isfinite(value):
            value = None
        out[f.name] = value
    return out


def event_from_json(data: object) -> RunEvent:
    """The run event `event_to_json` made, checked field by field (it may come from the network): a
    ValueError names the first thing wrong (unknown kind, a missing or unexpected field, a wrong type)."""
    if not isinstance(data, dict):
        raise ValueError(f"a run event is a JSON object, not {type(data).__name__}")
    kind = data.get("kind")
    cls = RUN_EVENTS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ValueError(f"unknown run event kind {str(kind)[:40]!r}: one of {', '.join(RUN_EVENTS)}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in fields(cls)}
    unexpected = sorted(set(data) - names - {"kind"})
    if unexpected:
        raise ValueError(f"{kind}: unexpected field(s) {[u[:40] for u in unexpected[:5]]}")
    values = {}
    for f in fields(cls):
        if f.name not in data:
            if f.default is MISSING:
                raise ValueError(f"{kind}: missing field {f.name!r}")
            continue
        values[f.name] = _event_field(kind, f.name, hints[f.name], data[f.name])
    return cls(**values)


def _event_field(kind: str, name: str, hint, value):
    where = f"{kind}.{name}"
    optional = type(None) in typing.get_args(hint)
    if optional:
        if value is None:
            return None
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if isinstance(hint, type) and issubclass(hint, IntEnum):
        try:
            return hint[str(value).upper()]
        except KeyError:
            raise ValueError(f"{where}={str(value)[:40]!r}: one of {', '.join(m.name.lower() for m in hint)}") from None
    if hint is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{where} must be true or false, not {type(value).__name__}")
        return value
    if hint is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"{where} must be an integer, not {type(value).__name__}")
        return value
    if hint is float:
        if value is None:
            return float("nan")
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise ValueError(f"{where} must be a number, not {type(value).__name__}")
        return float(value)
    if hint is str:
        if not isinstance(value, str) or len(value) > MAX_EVENT_TEXT:
            raise ValueError(f"{where} must be a string of at most {MAX_EVENT_TEXT} characters")
        return value
    raise ValueError(f"{where}: no JSON form for {hint}")  # a field type this codec does not know yet
