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

One process at a time: the owner holds an operating-system lock (``fcntl.flock``) on
``OUT/.jaxgd.lock``, which dies with its process, so a killed run leaves no lock to break; the
PID and host written in the file only name the owner when a second process is refused. Where
``flock`` is not honoured across hosts (some NFS, Lustre and CIFS mounts), a note says so at run
time. Files jaxgd did not write are never deleted; nothing outside ``OUT`` is written, moved or
deleted: every name a manifest lists must stay inside ``OUT``, and a symbolic link inside ``OUT``
is refused before anything is written.
"""
from __future__ import annotations

import fcntl
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
#: A stateful model's state at the end of a run (batch norm's running statistics), beside ``params.npz``.
STATE_FILE = "model_state.npz"
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
    """Every regular file below ``root``, as paths relative to it, sorted (links are not followed)."""
    out = []
    for folder, dirs, files in os.walk(root):
        out += [os.path.relpath(os.path.join(folder, f), root) for f in files
                if os.path.isfile(os.path.join(folder, f)) and not os.path.islink(os.path.join(folder, f))]
    return sorted(out)


def symlinks(root: Path) -> list[str]:
    """The symbolic links inside ``root`` (itself excluded), relative to it: jaxgd never makes one."""
    out = []
    for folder, dirs, files in os.walk(root):
        out += [os.path.relpath(os.path.join(folder, n), root) for n in dirs + files
                if os.path.islink(os.path.join(folder, n))]
    return sorted(out)


def safe_name(name) -> bool:
    """Whether a name read from a manifest stays inside its run directory: a relative, normalised path
    without ``..``, not one of jaxgd's own bookkeeping files."""
    if not isinstance(name, str) or not name or "\0" in name or os.path.isabs(name):
        return False
    parts = Path(name).parts
    return (os.path.normpath(name) == name and ".." not in parts and parts[0] not in (PENDING, LOCK, MANIFEST))


def read_manifest(path: Path) -> dict | None:
    """The manifest of a committed run in ``path``, or None if there is none; a manifest that cannot be
    read, is not a manifest, or names a file outside the directory raises :class:`RunDirError` (damaged)."""
    file = Path(path) / MANIFEST
    if not os.path.lexists(file):
        return None
    why = None
    try:
        manifest = json.loads(file.read_text())
    except (OSError, ValueError, UnicodeDecodeError) as e:
        manifest, why = None, f"it cannot be read as JSON ({type(e).__name__})"
    if why is None and not (isinstance(manifest, dict) and isinstance(manifest.get("files"), dict)
                            and all(isinstance(v, dict) for v in manifest["files"].values())):
        why = "it does not list the run's files"
    if why is None:
        bad = [n for n in manifest["files"] if not safe_name(n)]
        if bad:
            why = f"it lists {bad[0]!r}, a name outside the run directory"
    if why is not None:
        raise RunDirError(f"{file} is damaged: {why}. jaxgd will not read, replace or delete anything by it: "
                          "restore the file, or move the directory aside and start the run again.")
    return manifest


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


#: File systems on which ``flock`` may not exclude processes on other hosts.
SHARED_FILE_SYSTEMS = ("nfs", "nfs4", "lustre", "cifs", "smb3", "smbfs", "gpfs", "beegfs", "ceph", "fuse.sshfs",
                       "9p", "afs")


def file_system(path: Path) -> str | None:
    """The type of the file system holding ``path`` (``/proc/self/mountinfo``'s longest mount point), or None."""
    try:
        target = os.path.realpath(path)
        best, kind = "", None
        with open("/proc/self/mountinfo") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                mount = left.split()[4].encode().decode("unicode_escape")
                if (target == mount or target.startswith(mount.rstrip("/") + "/")) and len(mount) >= len(best):
                    best, kind = mount, right.split()[0]
        return kind
    except (OSError, IndexError, UnicodeDecodeError):
        return None


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
        self._fd = None  # the locked lock file

    # --- the lock ---------------------------------------------------------------------------
    def _lock(self) -> None:
        """Takes ``OUT/.jaxgd.lock`` with ``flock`` (released by the OS when this process ends), then writes
        the owner's record; a second process is refused, naming the owner the record gives."""
        lock = self.path / LOCK
        for _ in range(10):
            try:
                fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
            except PermissionError:
                raise RunDirError(f"{lock} cannot be opened (permission denied): if no jaxgd run uses {self.path}, "
                                  "remove it or give this user access; or choose another --out.") from None
            except OSError as e:
                if os.path.islink(lock):
                    raise RunDirError(f"{lock} is a symbolic link; jaxgd does not follow links inside a run "
                                      "directory: remove it or choose another --out.") from None
                raise
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise RunDirError(f"{self.path} is in use by {self._owner(lock)}; wait for it to finish or choose "
                                  "another --out.") from None
            try:
                same = os.fstat(fd).st_ino == os.stat(lock, follow_symlinks=False).st_ino
            except FileNotFoundError:  # the previous owner removed it as we took it: take the new one
                same = False
            if not same:
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                     "since": time.strftime("%Y-%m-%d %H:%M:%S")}).encode())
            self._fd = fd
            kind = file_system(self.path)
            if kind in SHARED_FILE_SYSTEMS:
                print(f"jaxgd: note: {self.path} is on a {kind} file system, where the lock may not exclude a "
                      "process on another host: make sure only one run uses this --out.", file=sys.stderr)
            return
        raise RunDirError(f"Could not lock {self.path}: its lock file keeps being replaced by other processes.")

    @staticmethod
    def _owner(lock: Path) -> str:
        """The owner a lock file's record names, as words (its PID and host only inform: the OS lock decides)."""
        try:
            record = json.loads(lock.read_text())
        except (OSError, ValueError, UnicodeDecodeError):
            record = None
        if isinstance(record, dict) and isinstance(record.get("pid"), int) and isinstance(record.get("host"), str):
            return f"process {record['pid']} on {record['host']} (since {record.get('since')})"
        return f"another process, whose record in {lock} cannot be read"

    def close(self) -> None:
        """Releases the lock, removing the lock file while still holding it (only if it is still ours)."""
        fd = getattr(self, "_fd", None)
        if fd is None:
            return
        try:
            lock = self.path / LOCK
            if os.fstat(fd).st_ino == os.stat(lock, follow_symlinks=False).st_ino:
                lock.unlink()
        except OSError:
            pass
        finally:
            os.close(fd)
            self._fd = None

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
        links = symlinks(self.path)
        if links:
            raise RunDirError(f"{self.path / links[0]} is a symbolic link; jaxgd never follows links inside a run "
                              "directory (it could write or delete outside it): remove the link or choose another "
                              "--out.")
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
