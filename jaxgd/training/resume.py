"""Resuming: what identifies a run (its fingerprint, field by field), and its checkpoints read and written.

A checkpoint records the run's fingerprint — the model, the config (functions by value), the data's
hash, the keys, each member's hyperparameters and conditions, the metrics — so that a resumed run
is refused, naming the field, unless it is the same run (:mod:`jaxgd.runs.checkpoint`).
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import jax
import numpy as np

from jaxgd.data.dataset import Dataset
from jaxgd.errors import CheckpointError
from jaxgd.io.fingerprint import describe_or_none, digest
from jaxgd.models import describe
from jaxgd.parallel import distributed
from jaxgd.runs import checkpoint as ckpt
from jaxgd.training.config import TrainConfig
from jaxgd.training.metrics import record as metric_record
from jaxgd.training.state import TrainState


def data_fingerprint(data: Dataset, conditions) -> dict:
    """The data part of a run's fingerprint: hashed once per :func:`fit`, shared by its chunks of members."""
    fields = {"data.name": data.name, "data.n_train": data.n_train, "data.input_shape": list(data.input_shape),
              "data.digest": digest(*(a for a in (data.x_train, data.y_train, data.x_test, data.y_test,
                                                  data.x_val, data.y_val) if a is not None))}
    if conditions is not None:
        fields["conditions.arrays"] = digest(*(conditions.arrays[k] for k in sorted(conditions.arrays)))
    return fields


def _flat(prefix: str, value, out: dict) -> dict:
    if isinstance(value, dict) and value:
        for k, v in value.items():
            _flat(f"{prefix}.{k}", v, out)
    else:
        out[prefix] = value
    return out


def fingerprint(key, model, config: TrainConfig, member: dict, data_fields: dict, metric_list=(),
                record_examples: bool = False, start: TrainState | None = None) -> dict:
    """Everything that determines a run's numbers, field by field (hashes for arrays, records for functions); a
    run started from a given state (``fit(..., start=)``) by that state's hash too."""
    fields = _flat("model", describe(model), {})
    _flat("train", config.to_dict(), fields)
    fields.update(data_fields)
    fields.update({"members": None if key.ndim == 0 else int(key.shape[0]), "keys": digest(jax.random.key_data(key)),
                   "conditions.index": digest(member["condition"])})
    fields.update({f"hyperparams.{k}": digest(v) for k, v in sorted(member["hyperparams"].items())})
    fields.update({f"metrics.{name}": metric_record(m) for name, m in metric_list})
    fields["record_examples"] = bool(record_examples)
    if start is not None:
        fields["start"] = digest(*jax.tree.leaves(ckpt.keyless(start)))
    return fields


def unrecordable(model, config: TrainConfig, metric_list=()) -> list[tuple[str, str]]:
    """``(what, why)`` for every part of a run that cannot be recorded by value (so cannot be resumed)."""
    out = config.unrecordable()
    for name, m in metric_list:
        _, reason = describe_or_none(m.fn)
        if reason is not None:
            out.append((f"metric {name}", reason))
    record = describe(model)
    if isinstance(record, dict) and isinstance(record.get("make"), dict) and "unrecordable" in record["make"]:
        out.append(("model", f"its make function {record['make']['unrecordable']} cannot be recorded by value"))
    return out


def load_checkpoint(path: Path, like: TrainState, fp: dict) -> dict:
    """The checkpoint at ``path``, read and checked by process 0 and received by the others (whose output
    directory may be their own, or shared); in one process, simply :func:`jaxgd.runs.checkpoint.load`."""
    if not distributed.multiprocess():
        return ckpt.load(path, like, fingerprint=fp)
    distributed.from_process_zero(lambda: bool(ckpt.load(path, like, fingerprint=fp)))  # its refusal, everywhere
    payload = distributed.from_process_zero(path.read_bytes, raw=True)
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / "checkpoint.npz"
        local.write_bytes(payload)
        return ckpt.load(local, like, fingerprint=fp)


def restore(path: Path, like: TrainState, fp: dict, model, config: TrainConfig, metric_list,
            steps_per_epoch: int = 1) -> dict | None:
    """The checkpoint at ``path`` if there is one (see :func:`load_checkpoint`), else None. A run with a part
    that cannot be recorded by value is refused: it could not be checked against the checkpoint."""
    distributed.agree("run (its configuration, keys and data)", fp)
    if not distributed.from_process_zero(path.exists):
        return None
    problems = unrecordable(model, config, metric_list)
    if problems:
        what, why = problems[0]
        raise CheckpointError(
            f"Cannot resume from {path}: the {what} cannot be recorded by value ({why}), so this run could not be "
            "checked against the checkpoint. Name it: a function defined at module level that reads only numbers, "
            "arrays and other such functions (activations: jaxgd.register_activation), or start a new run in "
            "another directory.")
    restored = load_checkpoint(path, like, fp)
    check_progress(path, restored, config, None if like.step.ndim == 0 else int(like.step.shape[0]), steps_per_epoch)
    return restored


def check_progress(path: Path, restored: dict, config: TrainConfig, members: int | None,
                   steps_per_epoch: int = 1) -> None:
    """Refuses, naming the field, a checkpoint whose progress disagrees with the run (its checksum can match a
    forged file): epochs within the run's, flags of the members' shape, one history entry per evaluation (its
    epoch and step, and every metric per member)."""
    def bad(field, why):
        return CheckpointError(f"The checkpoint {path} is inconsistent: its {field} {why}; delete it to start the "
                               "run again.")

    shape = () if members is None else (members,)
    done, finished = restored["epochs_done"], restored["finished"]
    if not 0 <= done <= config.epochs:
        raise bad("epochs_done", f"is {done}, outside 0..{config.epochs} (the run's epochs)")
    diverged, epochs = np.asarray(restored["diverged"]), np.asarray(restored["diverged_epoch"])
    if diverged.shape != shape or diverged.dtype != bool:
        raise bad("diverged", f"is {diverged.dtype}{list(diverged.shape)}, not bool{list(shape)}")
    if epochs.shape != shape or not np.issubdtype(epochs.dtype, np.integer):
        raise bad("diverged_epoch", f"is {epochs.dtype}{list(epochs.shape)}, not int{list(shape)}")
    if np.any(diverged != (epochs >= 0)) or np.any(epochs > done):
        raise bad("diverged_epoch", "disagrees with diverged or with epochs_done")
    if finished and done < config.epochs and not (np.all(diverged) or config.target_accuracy is not None):
        raise bad("finished", f"is true at epoch {done} of {config.epochs}, with members still training")
    every = config.eval_epochs(steps_per_epoch)
    evaluated = [e for e in range(every, done + 1, every)]
    if done == config.epochs and done % every:
        evaluated.append(done)
    history = restored["history"]
    if evaluated and "epoch" not in history:
        raise bad("history", f"is empty after {done} epochs (evaluated every {every})")
    if history:
        got = np.asarray(history["epoch"])
        if got.ndim != 1 or list(got) != evaluated:
            raise bad("history.epoch", f"is {got.tolist()[:8]}, not the evaluations {evaluated[:8]} of {done} epochs")
        steps = np.asarray(history.get("step", got * steps_per_epoch))
        if steps.shape != got.shape or np.any(steps != got * steps_per_epoch):
            raise bad("history.step", f"is {steps.tolist()[:8]}, not {(got * steps_per_epoch).tolist()[:8]}")
        for name, values in history.items():
            if name not in ("epoch", "step") and np.shape(values) != shape + got.shape:
                raise bad(f"history.{name}", f"has shape {list(np.shape(values))}, not {list(shape + got.shape)}")
    for name, values in (restored["initial"] or {}).items():
        if np.shape(values) != shape:
            raise bad(f"initial.{name}", f"has shape {list(np.shape(values))}, not {list(shape)}")


def save(path: Path, host_state, fp: dict, progress) -> None:
    """Writes the checkpoint of a run at ``progress`` (:class:`jaxgd.training.progress.Progress`) on process 0;
    every process waits until it is written. ``host_state`` is the state gathered to the host."""
    if distributed.is_writer():
        ckpt.save(path, host_state, fingerprint=fp, epochs_done=progress.epochs_done, finished=progress.finished,
                  history=progress.history, initial=progress.initial, diverged=progress.diverged,
                  diverged_epoch=progress.diverged_epoch)
    distributed.barrier("jaxgd checkpoint written")
