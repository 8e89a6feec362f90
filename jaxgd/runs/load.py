"""Reading a finished run back: :func:`load_run` gives its config, model, parameters and history."""
from __future__ import annotations

import json
from pathlib import Path

from jaxgd.errors import RunDirError
from jaxgd.io.files import flatten_params, load_params, read_arrays, unflatten_params
from jaxgd.models import from_record
from jaxgd.runs.rundir import CONFIG, STATE_FILE, verify


class Run:
    """A finished run read back from its directory (:func:`load_run`).

    Attributes:
      path: the directory.
      config: ``config.json`` (the options, the training config, the model's record, the data's hash).
      metrics: ``metrics.json`` (final metrics, history, environment).
      history: ``metrics.json``'s history as NumPy arrays, the evaluations on the last axis.
      model: the model, rebuilt from its record (``jaxgd.MLP`` and ``jaxgd.models.CNN``; ``None`` for others).
      params: ``params.npz``, in the model's layout (a leading member axis for a population).
      model_state: batch norm's running statistics (``model_state.npz``), which evaluation uses:
        ``model.apply(params, model_state, x)``, under ``jax.vmap`` for a population (a leading member axis);
        ``None`` for a model without them (dropout alone) and for a run written before jaxgd kept them.
    """

    def __init__(self, path, config, metrics, model, params, model_state=None):
        import numpy as np

        self.path, self.config, self.metrics, self.model, self.params = Path(path), config, metrics, model, params
        self.model_state = model_state
        self.history = {k: np.asarray(v, dtype=float if k != "epoch" else int)
                        for k, v in metrics.get("history", {}).items()}

    def __repr__(self):
        return f"Run({str(self.path)!r}, model={self.model!r}, epochs={self.metrics.get('epochs')})"


def load_run(path, *, like=None, check: bool = True) -> Run:
    """Reads a finished ``jaxgd train`` run back: its config, model, parameters and history.

    Args:
      path: the run's directory.
      like: ``model.init(key)``, for models that cannot be rebuilt from their record (Flax, Equinox, your
        own): parameters of the model's structure, or a stateful model's ``(params, state)`` pair, which
        gives the structure of both; an MLP's and a CNN's are rebuilt by name.
      check: refuse a directory that does not :func:`verify` (changed files, an unfinished run).
    """
    path = Path(path)
    if check:
        problems = verify(path)
        if problems:
            raise RunDirError(f"{path} cannot be read back: {problems[0]}.")
    config = json.loads((path / CONFIG).read_text())
    metrics = json.loads((path / "metrics.json").read_text())
    model = from_record(config.get("model"))
    arrays = read_arrays(path / "params.npz")
    like_params, like_state = like, None
    if isinstance(like, tuple) and len(like) == 2 and set(flatten_params(like[0])) == set(arrays):
        like_params, like_state = like  # a stateful model's (params, state)
    params = unflatten_params(arrays, like_params)
    state = load_params(path / STATE_FILE, like_state) if (path / STATE_FILE).is_file() else None
    return Run(path, config, metrics, model, params, state)
