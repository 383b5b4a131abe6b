"""Running an exported policy: `load_policy(path)` -> `ExportedPolicy` with `.metadata`, `.act(observation)`
and `.check_env(observation_space, action_space, task_name)`.

Torch-free for ONNX files (onnxruntime and numpy only); a torch.export file (`.pt2`, a zip archive) needs
torch, imported only then. The format is read from the file's contents, not its name. A file that is not
a robot_rl policy (truncated, corrupt, another model) is a one-line UserError naming it and the fix.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from robot_rl.config import UserError, one_line
from robot_rl.deploy.metadata import EXTRA_FILE, METADATA_KEY, OUTPUT, PolicyMetadata

REEXPORT = "re-export it with `robot-rl export run_dir=<the run>`"


def _reason(err: BaseException) -> str:
    text = one_line(err) or type(err).__name__
    return text if len(text) <= 160 else text[:157] + "..."


class ExportedPolicy:
    """A policy file opened for acting. `act` takes one observation (a dict of arrays without a batch
    dim) and returns float32[action_dim]; `act_batch` takes arrays with a leading batch dim."""

    def __init__(self, metadata: PolicyMetadata, where: str):
        self.metadata = metadata
        self.where = where  # the file, for messages
        # (observation key, dtype, per-observation shape), in the graph's input order
        self._inputs = [
            (key, np.dtype(spec["dtype"]), tuple(spec["shape"])) for key, spec in metadata.observation.items()
        ]

    @property
    def action_dim(self) -> int:
        return self.metadata.action_dim

    def act(self, observation: Mapping[str, np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    def act_batch(self, observations: Mapping[str, np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    def check_env(
        self, observation_space: Any, action_space: Any, task_name: str | None, task_config: Mapping | None = None
    ) -> None:
        """A one-line UserError unless the env (its spaces and task) is the one this policy was trained for."""
        self.metadata.check_env(observation_space, action_space, task_name, f"policy {self.where}", task_config)

    def _bad_input(self, observation: Mapping[str, Any], err: BaseException, batch: bool) -> ValueError:
        """What is wrong with an observation, in one line (called only after a failed run)."""
        takes = ", ".join(
            f"{key}[{','.join(map(str, ('B', *shape) if batch else shape))}] {dtype.name}"
            for key, dtype, shape in self._inputs
        )
        missing = [key for key, _, _ in self._inputs if key not in observation]
        if missing:
            problem = f"it has no {', '.join(repr(k) for k in missing)}"
        else:
            got = ", ".join(f"{key}{list(np.shape(observation[key]))}" for key, _, _ in self._inputs)
            problem = f"got {got} ({_reason(err)})"
        return ValueError(f"observation does not fit policy {self.where}, which takes {takes}: {problem}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.where}: {self.metadata.describe()})"


class OnnxPolicy(ExportedPolicy):
    """An ONNX policy in an onnxruntime session (CPU, `threads` intra-op threads, sequential execution).
    `act` reuses one input dict and only swaps its arrays: the per-call overhead is onnxruntime's own."""

    def __init__(self, session, metadata: PolicyMetadata, where: str):
        super().__init__(metadata, where)
        names = [i.name for i in session.get_inputs()]
        outputs = [o.name for o in session.get_outputs()]
        if names != list(metadata.observation) or outputs != [OUTPUT]:
            raise UserError(
                f"policy {where} has inputs {names} and outputs {outputs} but its metadata says "
                f"{list(metadata.observation)} -> [{OUTPUT!r}]: {REEXPORT}"
            )
        self.session = session
        self._run = session.run
        self._outputs = [OUTPUT]
        self._feed: dict[str, np.ndarray] = {}

    def act(self, observation: Mapping[str, np.ndarray]) -> np.ndarray:
        feed = self._feed
        try:
            for key, dtype, _ in self._inputs:
                feed[key] = np.ascontiguousarray(observation[key], dtype)[None]
            return self._run(self._outputs, feed)[0][0]
        except Exception as err:
            raise self._bad_input(observation, err, batch=False) from None

    def act_batch(self, observations: Mapping[str, np.ndarray]) -> np.ndarray:
        try:
            feed = {key: np.ascontiguousarray(observations[key], dtype) for key, dtype, _ in self._inputs}
            return self._run(self._outputs, feed)[0]
        except Exception as err:
            raise self._bad_input(observations, err, batch=True) from None


class TorchPolicy(ExportedPolicy):
    """A torch.export program (`.pt2`), run under torch.inference_mode."""

    def __init__(self, module, metadata: PolicyMetadata, where: str):
        import torch

        super().__init__(metadata, where)
        self.module = module
        self._torch = torch

    def _forward(self, arrays: list[np.ndarray]) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            return self.module(*(torch.from_numpy(a) for a in arrays)).numpy()

    def act(self, observation: Mapping[str, np.ndarray]) -> np.ndarray:
        try:
            return self._forward([np.ascontiguousarray(observation[k], d)[None] for k, d, _ in self._inputs])[0]
        except Exception as err:
            raise self._bad_input(observation, err, batch=False) from None

    def act_batch(self, observations: Mapping[str, np.ndarray]) -> np.ndarray:
        try:
            return self._forward([np.ascontiguousarray(observations[k], d) for k, d, _ in self._inputs])
        except Exception as err:
            raise self._bad_input(observations, err, batch=True) from None


# ---- opening files ----------------------------------------------------------------------------------------


def _parse_metadata(text: str | bytes, where: str) -> PolicyMetadata:
    try:
        return PolicyMetadata.from_json(text)
    except (ValueError, TypeError) as err:
        raise UserError(f"policy {where} is not a usable robot_rl policy: {_reason(err)}; {REEXPORT}") from None


def _archive_metadata(data: bytes, where: str) -> str:
    """The metadata JSON of a torch.export archive (a zip: <archive>/extra/robot_rl.json)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = [n for n in archive.namelist() if n.endswith(f"/extra/{EXTRA_FILE}")]
            if not names:
                raise UserError(
                    f"policy {where} is a zip archive without robot_rl metadata (damaged, or not written by "
                    f"`robot-rl export`): {REEXPORT}"
                )
            return archive.read(names[0]).decode()
    except (zipfile.BadZipFile, OSError, UnicodeDecodeError, EOFError) as err:
        raise UserError(f"policy {where} cannot be read ({_reason(err)}): {REEXPORT}") from None


def _onnx_session(data: bytes, where: str, threads: int):
    try:
        import onnxruntime as ort
    except ImportError:
        raise UserError(
            f"policy {where} is an ONNX model and onnxruntime is not installed: pip install onnxruntime"
        ) from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: no warnings on stderr
    try:
        return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as err:  # truncated, corrupt, not ONNX, an operator this onnxruntime lacks
        raise UserError(
            f"policy {where} cannot be read (not an ONNX model or torch.export archive, or damaged: {_reason(err)}): "
            f"{REEXPORT}"
        ) from None


def policy_from_bytes(data: bytes, where: str, threads: int = 1) -> ExportedPolicy:
    """An ExportedPolicy from a policy file's bytes; `where` names the file in messages."""
    if zipfile.is_zipfile(io.BytesIO(data)):
        metadata = _parse_metadata(_archive_metadata(data, where), where)
        try:
            import torch
        except ImportError:
            raise UserError(
                f"policy {where} is a torch.export program and needs torch: pip install torch, or export an "
                "ONNX policy (robot-rl export run_dir=<the run> format=onnx), which runs without torch"
            ) from None
        try:
            program = torch.export.load(io.BytesIO(data))
            module = program.module()
        except Exception as err:
            raise UserError(f"policy {where} cannot be read ({_reason(err)}): {REEXPORT}") from None
        return TorchPolicy(module, metadata, where)
    session = _onnx_session(data, where, threads)
    props = session.get_modelmeta().custom_metadata_map
    if METADATA_KEY not in props:
        raise UserError(
            f"policy {where} is an ONNX model without robot_rl metadata (not written by `robot-rl export`): "
            "export the run's policy with `robot-rl export run_dir=<the run>`"
        )
    return OnnxPolicy(session, _parse_metadata(props[METADATA_KEY], where), where)


def _read(path: str | Path) -> bytes:
    path = Path(path)
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "does not exist"
        raise UserError(f"policy {path} {what}: export one with `robot-rl export run_dir=<the run>` (-> policy.onnx)")
    try:
        return path.read_bytes()
    except OSError as err:
        raise UserError(f"policy {path} cannot be read ({_reason(err)}): check its permissions") from None


def load_policy(path: str | Path, threads: int = 1) -> ExportedPolicy:
    """Open a policy written by `robot-rl export` (ONNX: onnxruntime with `threads` intra-op threads;
    torch.export `.pt2`: torch). One-line UserError for a missing, damaged or foreign file."""
    return policy_from_bytes(_read(path), str(path), threads)


def read_metadata(path: str | Path) -> PolicyMetadata:
    """A policy file's metadata (torch-free for both formats: a .pt2 archive is read as a zip)."""
    data, where = _read(path), str(path)
    if zipfile.is_zipfile(io.BytesIO(data)):
        return _parse_metadata(_archive_metadata(data, where), where)
    return policy_from_bytes(data, where).metadata


__all__ = ["ExportedPolicy", "OnnxPolicy", "TorchPolicy", "load_policy", "policy_from_bytes", "read_metadata"]
