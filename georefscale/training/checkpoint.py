"""Training checkpoints that cannot execute code when they are read.

A checkpoint is one safetensors file: the tensors (network weights, optimiser moments, the torch
RNG states as uint8 tensors) in the file's data, everything else (step, wall time, validation
history, recipe, schedule and optimiser settings, the data sampler's RNG state) as plain JSON in
its header metadata. Reading it parses JSON and copies tensor bytes; nothing is unpickled. One
file, written to a temporary name and renamed (:func:`georefscale.atomic.atomic_output`), so a
crash never leaves the tensors of one step beside the state of another.

The suffix is ``.sft``, not ``.safetensors``: that suffix marks a finished model's weights (with
its card beside it) everywhere models are taken by path.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save

from georefscale.atomic import atomic_output
from georefscale.errors import InputError

#: file name of the checkpoint in a run folder
CHECKPOINT = "checkpoint.sft"
#: the pickled checkpoint of georefscale up to 2026-11-28, refused (unpickling runs code)
LEGACY_CHECKPOINT = "checkpoint.pt"
#: header metadata key holding the JSON state
_STATE_KEY = "georefscale.training.state"


def save_checkpoint(path: str | Path, tensors: dict[str, torch.Tensor], state: dict) -> Path:
    """Write ``tensors`` and the JSON-serialisable ``state`` to ``path`` atomically.

    Args:
        path: the checkpoint file.
        tensors: named tensors (any device; stored from the CPU, contiguous).
        state: everything else; must survive ``json.dumps`` (no tuples expected back).

    Returns:
        ``path``.
    """
    path = Path(path)
    data = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    with atomic_output(path, ".sft.tmp") as tmp:
        # serialised here and written into atomic_output's file (safetensors' own file writer
        # would replace it with a 0600 one)
        tmp.write_bytes(save(data, metadata={_STATE_KEY: json.dumps(state)}))
    return path


def load_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Read a checkpoint written by :func:`save_checkpoint` (tensors on the CPU).

    Args:
        path: the checkpoint file.

    Returns:
        The tensors by name and the JSON state.

    Raises:
        InputError: naming ``path``, when it is not a readable checkpoint (truncated, corrupted,
            another kind of safetensors file).
    """
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        state = json.loads(meta[_STATE_KEY])
        if not isinstance(state, dict):
            raise ValueError("its state is not a JSON object")
    except (OSError, SafetensorError, ValueError) as exc:
        raise InputError(f"{path}: not a readable training checkpoint ({exc}); move it away to "
                         "restart the run from step 0") from exc
    except KeyError as exc:
        raise InputError(f"{path}: a safetensors file without georefscale's training state; "
                         "move it away to restart the run from step 0") from exc
    return tensors, state


def refuse_legacy(run_dir: str | Path) -> None:
    """Refuse a run folder that holds a pickled checkpoint of an older georefscale.

    Args:
        run_dir: the run folder.

    Raises:
        InputError: naming the file, when ``run_dir`` holds :data:`LEGACY_CHECKPOINT`; it is
            never opened, since unpickling it could execute code planted in it.
    """
    legacy = Path(run_dir) / LEGACY_CHECKPOINT
    if legacy.exists():
        raise InputError(
            f"{legacy}: a pickled checkpoint (georefscale before 2026-11-29); it is not loaded, "
            f"since unpickling can execute code planted in the file; delete it to start this run "
            f"again from step 0 (checkpoints are now {CHECKPOINT}, which cannot run code)")
