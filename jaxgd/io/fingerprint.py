"""Recording what determines a run by value: arrays by hash, functions by their code and captured values.

A checkpoint stores a fingerprint of its run, and ``--resume`` compares it field by
field with the run being resumed. Numbers and names compare as they are; arrays by a
content hash (:func:`digest`); a function — a schedule, a cost, an optimizer factory, an
activation — by what it computes: a function of an installed package by its import
path (``optax.adamw``), any other by its bytecode, constants, defaults, the values its
closure captured and the globals it reads (themselves recorded the same way). Two
different lambdas therefore differ, and the same lambda, redefined in a new process,
is recognised. A function that reads something that cannot be recorded by value (an
arbitrary object) is :class:`Unrecordable`: a resumed run could not check it is the
same, so jaxgd refuses to resume it rather than risk mixing two runs.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import sys
import types
from typing import Any

import numpy as np

from jaxgd.errors import JaxgdError


class Unrecordable(JaxgdError, TypeError):
    """A value a run depends on that cannot be recorded by value."""


def digest(*arrays) -> str:
    """A short content hash of arrays (shape, dtype and bytes): tells data apart without storing it."""
    h = hashlib.blake2b(digest_size=12)
    for a in arrays:
        a = np.ascontiguousarray(np.asarray(a))
        h.update(f"{a.shape}{a.dtype.str}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _installed(module_name: str | None) -> bool:
    """Whether a module comes from an installed package (jax, optax, numpy, ...), not the user's own code."""
    if not module_name or module_name == "__main__":
        return False
    module = sys.modules.get(module_name)
    path = getattr(module, "__file__", None) or ""
    return "site-packages" in path or "dist-packages" in path or module_name.split(".")[0] in sys.stdlib_module_names


def _code_digest(code: types.CodeType) -> str:
    h = hashlib.blake2b(digest_size=12)

    def feed(c):
        h.update(c.co_code)
        h.update(repr(c.co_names).encode())
        h.update(repr((c.co_argcount, c.co_kwonlyargcount, c.co_flags)).encode())
        for const in c.co_consts:
            if isinstance(const, types.CodeType):
                feed(const)
            else:
                h.update(repr(const).encode())

    feed(code)
    return h.hexdigest()


def describe_value(value: Any, _seen=None) -> Any:
    """A JSON-able record of ``value`` that two runs can compare; :class:`Unrecordable` if there is none."""
    seen = set() if _seen is None else _seen
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (np.generic,)):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [describe_value(v, seen) for v in value]
    if isinstance(value, dict):
        return {str(k): describe_value(v, seen) for k, v in value.items()}
    if isinstance(value, types.ModuleType):
        return {"module": value.__name__}
    if isinstance(value, type):
        return {"class": f"{value.__module__}.{value.__qualname__}"}
    if hasattr(value, "__array__") and hasattr(value, "shape") and hasattr(value, "dtype"):
        try:
            return {"array": digest(value)}
        except Exception as e:  # a tracer, or an array that cannot be fetched
            raise Unrecordable(f"the array {type(value).__name__}{tuple(value.shape)} cannot be read ({e})") from None
    if hasattr(value, "describe") and callable(value.describe) and not isinstance(value, type):
        return value.describe()
    if dataclasses.is_dataclass(value):
        return {"dataclass": f"{type(value).__module__}.{type(value).__qualname__}",
                **{f.name: describe_value(getattr(value, f.name), seen) for f in dataclasses.fields(value)}}
    if callable(value):
        return describe_callable(value, seen)
    raise Unrecordable(f"{type(value).__name__} {value!r:.80} cannot be recorded by value")


def describe_callable(fn, _seen=None) -> Any:
    """A record of what ``fn`` computes (see the module docstring); :class:`Unrecordable` if there is none."""
    seen = set() if _seen is None else _seen
    if isinstance(fn, functools.partial):
        return {"partial": describe_callable(fn.func, seen), "args": describe_value(list(fn.args), seen),
                "keywords": describe_value(dict(fn.keywords), seen)}
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    path = f"{module}.{qualname}" if module and qualname else None
    if path and _installed(module) and "<" not in qualname:
        return path  # a function of an installed package: its import path names it
    if isinstance(fn, types.MethodType):
        return {"method": describe_callable(fn.__func__, seen), "self": describe_value(fn.__self__, seen)}
    rules = _custom_derivative_rules(fn)
    if rules is not None:  # jax.custom_jvp / custom_vjp: the function and its derivative rules
        return {type(fn).__name__: {name: describe_callable(rule, seen) for name, rule in rules.items()},
                "nondiff_argnums": list(getattr(fn, "nondiff_argnums", ()))}
    if not isinstance(fn, types.FunctionType):
        if dataclasses.is_dataclass(fn) or hasattr(fn, "describe"):
            return describe_value(fn, seen)
        if path and _installed(module):
            return path
        raise Unrecordable(f"{fn!r:.80} is a {type(fn).__name__}, which cannot be recorded by value")
    if id(fn) in seen:  # recursion (a function that calls itself): its name is enough
        return {"recursive": qualname}
    seen.add(id(fn))
    code = fn.__code__
    record = {"function": qualname, "code": _code_digest(code)}
    if fn.__defaults__:
        record["defaults"] = describe_value(list(fn.__defaults__), seen)
    if fn.__kwdefaults__:
        record["kwdefaults"] = describe_value(dict(fn.__kwdefaults__), seen)
    if fn.__closure__:
        cells = {}
        for name, cell in zip(code.co_freevars, fn.__closure__):
            try:
                contents = cell.cell_contents
            except ValueError:  # an empty cell
                contents = None
            try:
                cells[name] = describe_value(contents, seen)
            except Unrecordable as e:
                raise Unrecordable(f"{qualname} captures {name}: {e}") from None
        record["closure"] = cells
    reads = {}
    for name in _global_names(code):
        if name in fn.__globals__:
            try:
                reads[name] = describe_value(fn.__globals__[name], seen)
            except Unrecordable as e:
                raise Unrecordable(f"{qualname} reads the global {name}: {e}") from None
    if reads:
        record["globals"] = reads
    return record


def _custom_derivative_rules(fn) -> dict | None:
    """The functions of a ``jax.custom_jvp`` or ``jax.custom_vjp`` (``None`` for anything else)."""
    jax = sys.modules.get("jax")
    if jax is None:
        return None
    if isinstance(fn, jax.custom_jvp):
        return {"fun": fn.fun, "jvp": fn.jvp}
    if isinstance(fn, jax.custom_vjp):
        return {"fun": fn.fun, "fwd": fn.fwd, "bwd": fn.bwd}
    return None


def _global_names(code: types.CodeType) -> list[str]:
    """Names a code object (and the code nested in it) may read as globals."""
    names = set()
    stack = [code]
    while stack:
        c = stack.pop()
        names.update(c.co_names)
        stack.extend(k for k in c.co_consts if isinstance(k, types.CodeType))
    return sorted(names)


def describe_or_none(value) -> tuple[Any, str | None]:
    """``(record, None)``, or ``(a placeholder, the reason)`` when ``value`` cannot be recorded by value."""
    try:
        return describe_value(value), None
    except Unrecordable as e:
        return {"unrecordable": f"{value!r:.80}"}, str(e)
