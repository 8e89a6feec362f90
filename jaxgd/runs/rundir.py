"""Run directories that never lose or mix results: a run's files are committed together, as a unit.

A run works in ``OUT/.pending/`` (its ``config.json``, checkpoints, live logs) and leaves
every file already in ``OUT`` alone. When it finishes, :meth:`RunDir.commit` writes
``.pending/manifest.json`` (every file of the run, with its size and hash: the commit is
decided), moves the files into ``OUT``, removes the files of the run they replace (those
its manifest listed, nothing else), and writes ``OUT/manifest.json`` last. A kill at any
instant therefore leaves either the old run, which still verifies against its manifest,
or an unfinished new run in ``.pending`` that ``--resume`` continues (an interrupted
commit is finished first: the pending manifest says it was decided). Readers — ``jaxgd
rerun``, ``--resume``, the studies — trust a directory only through :func:`verify`.

One process at a time: ``OUT/.jaxgd.lock`` holds the owner's PID and host, created with
``O_EXCL``; a second process is refused with one line, and the lock of a dead process on
the same host is broken with a note. Files jaxgd did not write are never deleted.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import sys
import time
import uuid
from pathlib import Path

from jaxgd.errors import InvalidArgument, RunDirError
from jaxgd.io.files import atomic_write_bytes, write_json
from jaxgd.version import __version__

MANIFEST = "manifest.json"
LOCK = ".jaxgd.lock"
PENDING = ".pending"
CONFIG = "config.json"
#: What jaxgd 0.1 wrote, before manifests: recognised as jaxgd's in a directory with a config.json and no manifest.
LEGACY = ("config.json", "metrics.json", "params.npz", "learning_curve.png", "weights.png", "results.json",
          "memorization.png", "local_minima.png")


def file_hash(path: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _files(root: Path) -> list[str]:
    """Every regular file below ``root``, as paths relative to it, sorted."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def read_manifest(path: Path) -> dict | None:
    """The manifest of a committed run in ``path``, or None if there is none (or it is unreadable)."""
    try:
        manifest = json.loads((Path(path) / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) and isinstance(manifest.get("files"), dict) else None


def owned_files(path) -> dict:
    """The files of the committed run in ``path`` (its manifest's), or a jaxgd 0.1 run's by their names."""
    path = Path(path)
    manifest = read_manifest(path)
    if manifest is not None:
        return manifest["files"]
    if not (path / CONFIG).is_file():
        return {}
    names = [n for n in LEGACY if (path / n).is_file()]
    names += [str(p.relative_to(path)) for p in (path / "checkpoints").glob("*.npz")]
    return {n: {} for n in names}


def verify(path) -> list[str]:
    """What is wrong with the committed run in ``path``: ``[]`` when every file its manifest lists is there,
    unchanged. A directory without a manifest is not a committed run."""
    path = Path(path)
    if read_manifest(path / PENDING) is not None:
        return [f"{path} holds a run whose commit was interrupted; --resume finishes it"]
    manifest = read_manifest(path)
    if manifest is None:
        if (path / PENDING / CONFIG).exists():
            return [f"{path} holds an unfinished run (in {PENDING}/); continue it with --resume"]
        return [f"{path} holds no finished jaxgd run (no {MANIFEST})"]
    problems = []
    for name, entry in sorted(manifest["files"].items()):
        f = path / name
        if not f.is_file():
            problems.append(f"{name} is missing")
        elif f.stat().st_size != entry.get("bytes") or file_hash(f) != entry.get("blake2b"):
            problems.append(f"{name} changed since the run was committed")
    return problems


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunDir:
    """The output directory ``path`` of one run (see the module docstring).

    Use as a context manager: ``with RunDir(out).open(mode, config) as run: ... run.commit()``.
    ``writer=False`` (processes other than 0 of a distributed job) takes no lock and writes nothing.
    """

    def __init__(self, path, *, writer: bool = True):
        self.path = Path(path)
        self.pending = self.path / PENDING
        self.writer = writer
        self.finished = False  # --resume of a run that was already committed
        self._locked = False

    # --- the lock ---------------------------------------------------------------------------
    def _lock(self) -> None:
        lock = self.path / LOCK
        me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        for _ in range(2):
            try:
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    holder = json.loads(lock.read_text())
                except (OSError, ValueError):
                    holder = {}
                pid, host = holder.get("pid"), holder.get("host")
                if host == me["host"] and isinstance(pid, int) and not _pid_alive(pid):
                    print(f"jaxgd: note: {self.path} was locked by process {pid}, which is gone; lock broken",
                          file=sys.stderr)
                    lock.unlink(missing_ok=True)
                    continue
                raise RunDirError(f"{self.path} is in use by process {pid} on {host} (since "
                                  f"{holder.get('since')}); wait for it to finish or choose another --out.") from None
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self._locked = True
            return
        raise RunDirError(f"Could not lock {self.path}.")

    def close(self) -> None:
        if self._locked:
            (self.path / LOCK).unlink(missing_ok=True)
            self._locked = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- opening ------------------------------------------------------------------------------
    def open(self, mode: str, recorded: dict, section: str | None = None) -> "RunDir":
        """Prepares the directory for a run whose ``config.json`` holds ``recorded``; nothing is rewritten
        before every check that may refuse the run has passed.

        Args:
          mode: ``"new"`` (the directory must be empty or absent), ``"resume"`` (continue the run there
            with the same configuration: ``recorded``'s ``section``, if given, must equal the saved one)
            or ``"overwrite"`` (replace the jaxgd run there; files jaxgd did not write are refused).
        """
        if mode not in ("new", "resume", "overwrite"):
            raise InvalidArgument(f"Unknown mode {mode!r}.")
        if self.path.exists() and not self.path.is_dir():
            raise NotADirectoryError(f"--out {self.path} is a file, not a directory.")
        if not self.writer:
            return self
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock()
        try:
            self._finish_interrupted_commit()
            self._clean_temporaries()
            self._check(mode, recorded, section)
            if not self.finished:
                if mode != "resume" or not (self.pending / CONFIG).exists():
                    shutil.rmtree(self.pending, ignore_errors=True)  # an unfinished run being replaced
                self.pending.mkdir(exist_ok=True)
                write_json(self.pending / CONFIG, recorded)
        except BaseException:
            self.close()
            raise
        return self

    def _foreign(self) -> list[str]:
        """Files in the directory that are neither the committed run's nor jaxgd's own."""
        ours = set(owned_files(self.path)) | {MANIFEST, LOCK}
        return [f for f in _files(self.path) if f not in ours and not f.startswith(PENDING + os.sep)]

    def _check(self, mode: str, recorded: dict, section: str | None) -> None:
        from jaxgd.runs.checkpoint import first_difference

        foreign = self._foreign()
        committed = bool(owned_files(self.path))
        unfinished = (self.pending / CONFIG).exists()
        if mode == "new":
            if committed or unfinished or foreign:
                what = ("a finished jaxgd run" if committed else "an unfinished jaxgd run" if unfinished
                        else f"files jaxgd did not write ({', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''})")
                raise RunDirError(f"--out {self.path} is not empty: it holds {what}. Pass --resume to continue the "
                                  "run there, --overwrite to replace a jaxgd run, or choose another directory.")
            return
        if foreign:
            raise RunDirError(f"--{mode} {self.path}: it holds files jaxgd did not write ({', '.join(foreign[:3])}"
                              f"{', ...' if len(foreign) > 3 else ''}); jaxgd never deletes them: choose another --out.")
        if mode == "overwrite":
            return
        if not committed and not unfinished:
            raise RunDirError(f"--resume: {self.path} holds no jaxgd run to continue (no {CONFIG}); check the "
                              "directory, or start the run without --resume.")
        saved_file = self.pending / CONFIG if unfinished else self.path / CONFIG
        try:
            saved = json.loads(saved_file.read_text())
        except (OSError, ValueError) as e:
            raise RunDirError(f"--resume: cannot read {saved_file} ({e}).") from None
        current = recorded if section is None else recorded.get(section, {})
        diff = first_difference(saved if section is None else saved.get(section, {}), current)
        if diff is not None:
            raise RunDirError(f"--resume refused: {diff}; run with the same options or another --out.")
        if not unfinished:
            if read_manifest(self.path) is None:
                raise RunDirError(f"--resume: {self.path} holds a finished run of jaxgd 0.1 (no {MANIFEST}); "
                                  "nothing to continue.")
            problems = verify(self.path)
            if problems:
                raise RunDirError(f"--resume: the finished run in {self.path} does not verify: {problems[0]}.")
            self.finished = True

    def _clean_temporaries(self) -> None:
        """Removes the temporary files of atomic writes that a killed process left behind."""
        for tmp in list(self.path.glob(".*.tmp")) + list(self.pending.rglob(".*.tmp")):
            tmp.unlink(missing_ok=True)

    # --- committing ---------------------------------------------------------------------------
    def commit(self) -> dict:
        """Commits every file of ``.pending`` as the run of this directory (see the module docstring)."""
        if not self.writer or self.finished:
            return read_manifest(self.path) or {}
        files = {name: {"bytes": (self.pending / name).stat().st_size, "blake2b": file_hash(self.pending / name)}
                 for name in _files(self.pending) if name != MANIFEST}
        manifest = {"jaxgd": __version__, "run": uuid.uuid4().hex, "committed": time.strftime(
            "%Y-%m-%dT%H:%M:%S%z"), "files": files}
        write_json(self.pending / MANIFEST, manifest)  # the commit is decided
        self._finish_interrupted_commit()
        return manifest

    def _finish_interrupted_commit(self) -> None:
        """Moves a decided commit's files into place (again, after a kill), then its manifest, last."""
        manifest = read_manifest(self.pending)
        if manifest is None:
            return
        old = {"files": owned_files(self.path)}
        for name in manifest["files"]:
            src, dst = self.pending / name, self.path / name
            if src.exists():
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.replace(src, dst)
        for name in old["files"]:
            if name not in manifest["files"]:
                (self.path / name).unlink(missing_ok=True)
        atomic_write_bytes(self.path / MANIFEST, (self.pending / MANIFEST).read_bytes())
        shutil.rmtree(self.pending, ignore_errors=True)
        for d in sorted({(self.path / n).parent for n in old["files"]}, key=lambda p: -len(p.parts)):
            if d != self.path and d.is_dir() and not any(d.iterdir()):
                d.rmdir()


def run_in(path, mode: str, recorded: dict, work, *, section: str | None = None):
    """One run in the directory ``path``, the way every command and study makes one.

    Process 0 of a job opens the directory (locks it, checks it against ``mode`` and ``recorded``,
    see :meth:`RunDir.open`) and every process agrees on the outcome. Unless the run there is
    finished and committed already, ``work(pending)`` trains and writes the run's files into
    ``pending`` (``OUT/.pending``), which are then committed as a unit.

    Returns:
      ``(finished, value)``: whether the run was found finished (``work`` not called, ``value`` None),
      and what ``work`` returned.
    """
    from jaxgd.parallel import distributed

    run_dir = RunDir(path, writer=distributed.is_writer())
    try:
        if distributed.from_process_zero(lambda: run_dir.open(mode, recorded, section=section).finished):
            return True, None
        value = work(run_dir.pending)
        distributed.from_process_zero(lambda: bool(run_dir.commit()))
    finally:
        run_dir.close()
    distributed.barrier("jaxgd run committed")
    return False, value
