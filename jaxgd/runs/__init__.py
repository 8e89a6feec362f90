"""Runs on disk: run directories committed as a unit, checkpoints, loggers, finished runs read back and compared.

:mod:`~jaxgd.runs.rundir` (directories, their lock and manifest, ``run_in``), :mod:`~jaxgd.runs.checkpoint`,
:mod:`~jaxgd.runs.loggers`, :mod:`~jaxgd.runs.load` (``load_run``) and :mod:`~jaxgd.runs.compare` (what
``jaxgd rerun`` compares).
"""
