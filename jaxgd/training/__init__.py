"""The training engine: one step, the compiled loop, evaluation, and the ``fit`` driver around them.

Read it in this order: :mod:`~jaxgd.training.step` (one optimizer step, under 100 lines),
:mod:`~jaxgd.training.loop` (epochs as a ``lax.scan``), :mod:`~jaxgd.training.evaluation`,
:mod:`~jaxgd.training.spec` (the static part of a run and the one place the kernel is chosen, with its
fast paths :mod:`~jaxgd.training.dense` and :mod:`~jaxgd.training.deferred`), then
:mod:`~jaxgd.training.fit` (the driver). :mod:`~jaxgd.training.config` and
:mod:`~jaxgd.training.optim` describe a run; :mod:`~jaxgd.training.population` the members of one.
"""
