"""Peak memory of refusing hostile files, next to reading a valid file of the same kind (issue 17).

Run by hand (not collected by pytest)::

    .venv/bin/python -m tests.measure_readers [--scale 1.0]

It builds the issue's full-size cases in a temporary directory — a 2.0 MB gzip IDX file that
inflates to 2 GB, a ~3 MB checkpoint zip bomb that inflates to 3 GB, and a checkpoint whose
``.npy`` header claims shape (10**12,) — and reads each, and a valid file of the same kind, in a
fresh Python process, printing the process's peak resident memory (``VmHWM``) and the outcome.
``tests/test_readers.py`` uses the same builders at a tenth of the size.
"""
from __future__ import annotations

import argparse
import gzip
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

#: The IDX shape the bombs' headers promise: MNIST's training images.
IDX_SHAPE = (60000, 28, 28)

_PEAK = r"""
import sys
from {module} import {func} as read
try:
    read(sys.argv[1])
    outcome = "read"
except Exception as e:
    outcome = f"{{type(e).__name__}}: {{e}}"
status = open("/proc/self/status").read().splitlines()
print(next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) * 1024)
print(outcome)
"""


def peak_memory(reader: str, path) -> tuple[int, str]:
    """``(peak resident bytes, outcome)`` of ``reader`` ("module:function") on ``path`` in a fresh process."""
    module, func = reader.split(":")
    proc = subprocess.run([sys.executable, "-c", _PEAK.format(module=module, func=func), str(path)],
                          capture_output=True, text=True, timeout=600, cwd=Path(__file__).resolve().parent.parent)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr)
    peak, outcome = proc.stdout.strip().split("\n", 1)
    return int(peak), outcome


def idx_header(shape, code=0x08) -> bytes:
    return bytes([0, 0, code, len(shape)]) + b"".join(int(s).to_bytes(4, "big") for s in shape)


def write_gzip_idx(path, shape=IDX_SHAPE, inflated_extra: int = 0) -> Path:
    """A gzipped uint8 IDX file holding ``shape``'s data, then ``inflated_extra`` more zero bytes (a bomb).

    The zeros are gzip members of 16 MiB each, compressed once and repeated (a file of several
    members is one gzip stream), so a bomb of gigabytes is written in a second.
    """
    path = Path(path)
    chunk = 1 << 24
    zeros = gzip.compress(bytes(chunk), 9)
    with open(path, "wb") as f:
        f.write(gzip.compress(idx_header(shape) + bytes(int(np.prod(shape))), 9))
        for _ in range(inflated_extra // chunk):
            f.write(zeros)
        f.write(gzip.compress(bytes(inflated_extra % chunk), 9))
    return path


def npy_bytes(array_header: dict, data: bytes = b"") -> bytes:
    """A version 1.0 ``.npy`` file from a header dict (``descr``, ``fortran_order``, ``shape``; any may be
    missing or wrong) and raw data."""
    text = repr(dict(array_header)).encode("latin1")
    text += b" " * (-(10 + len(text) + 1) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text + data


def write_checkpoint(path, n_params: int = 1000) -> Path:
    """A valid checkpoint (written by :func:`jaxgd.runs.checkpoint.save`) of a state with ``n_params`` weights."""
    import jax

    from jaxgd.runs import checkpoint
    from jaxgd.training.state import TrainState

    state = TrainState(params=[{"w": np.arange(n_params, dtype=np.float32)}], opt_state=(),
                       step=np.int32(3), data_key=jax.random.key(0))
    checkpoint.save(path, state, fingerprint={"run": "measure"}, epochs_done=2, finished=False,
                    history={"epoch": np.array([1, 2])}, initial={"train_cost": np.float32(1.0)},
                    diverged=np.array(False), diverged_epoch=np.array(-1))
    return Path(path)


def rewrite_checkpoint(src, dst, *, replace: dict | None = None, raw: dict | None = None,
                       compress: str | None = None) -> Path:
    """A copy of the checkpoint ``src``, its members replaced: ``replace`` by arrays, ``raw`` by ``.npy`` bytes.

    ``compress`` names one member stored deflated (every other stays stored, as jaxgd writes them).
    """
    with np.load(src) as f:
        arrays = {k: f[k] for k in f.files}
    arrays.update(replace or {})
    members = {f"{k}.npy": npy_bytes(np.lib.format.header_data_from_array_1_0(v), v.tobytes())
               for k, v in arrays.items()}
    members.update({f"{k}.npy": v for k, v in (raw or {}).items()})
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as z:
        for name, data in members.items():
            kind = zipfile.ZIP_DEFLATED if name == f"{compress}.npy" else zipfile.ZIP_STORED
            z.writestr(zipfile.ZipInfo(name), data, compress_type=kind)
    return Path(dst)


def edit_header(src, dst, **fields) -> Path:
    """A copy of the checkpoint ``src`` with header fields changed (its checksum left as it was)."""
    with np.load(src) as f:
        meta = json.loads(f["__meta__"].tobytes())
    meta.update(fields)
    return rewrite_checkpoint(src, dst, replace={"__meta__": np.frombuffer(json.dumps(meta).encode(), np.uint8)})


def write_zip_bomb(src, dst, inflated: int, member: str = "diverged") -> Path:
    """The checkpoint ``src`` whose ``member`` is a deflated ``.npy`` of ``inflated`` bytes of zeros (float32)."""
    header = npy_bytes({"descr": "<f4", "fortran_order": False, "shape": (inflated // 4,)})
    with np.load(src) as f:
        arrays = {k: f[k] for k in f.files if k != member}
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED, allowZip64=True) as z:
        for k, v in arrays.items():
            z.writestr(f"{k}.npy", npy_bytes(np.lib.format.header_data_from_array_1_0(v), v.tobytes()))
        info = zipfile.ZipInfo(f"{member}.npy")
        info.compress_type = zipfile.ZIP_DEFLATED
        with z.open(info, "w", force_zip64=True) as out:
            out.write(header)
            chunk = bytes(1 << 24)
            for _ in range((inflated // 4 * 4) // len(chunk)):
                out.write(chunk)
            out.write(bytes((inflated // 4 * 4) % len(chunk)))
    return Path(dst)


def write_huge_header(src, dst, shape=(10 ** 12,), member: str = "diverged") -> Path:
    """The checkpoint ``src`` whose ``member``'s ``.npy`` header claims ``shape`` of float64 over 8 bytes of data."""
    return rewrite_checkpoint(src, dst, raw={member: npy_bytes({"descr": "<f8", "fortran_order": False,
                                                           "shape": shape}, bytes(8))})


def cases(tmp: Path, scale: float = 1.0) -> list[tuple[str, str, Path, Path]]:
    """``(case, reader, hostile file, valid file of the same kind)`` at ``scale`` of the issue's sizes."""
    valid_gz = write_gzip_idx(tmp / "valid-idx3-ubyte.gz")
    bomb_gz = write_gzip_idx(tmp / "bomb-idx3-ubyte.gz", inflated_extra=int(2e9 * scale))
    valid_ckpt = write_checkpoint(tmp / "valid.npz")
    zip_bomb = write_zip_bomb(valid_ckpt, tmp / "zip-bomb.npz", inflated=int(3e9 * scale))
    huge = write_huge_header(valid_ckpt, tmp / "huge-header.npz")
    return [("gzip IDX bomb", "jaxgd.data.idx:read_idx", bomb_gz, valid_gz),
            ("checkpoint zip bomb", "jaxgd.runs.checkpoint:read", zip_bomb, valid_ckpt),
            ("checkpoint .npy header (10**12,)", "jaxgd.runs.checkpoint:read", huge, valid_ckpt)]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", type=float, default=1.0, help="fraction of the issue's sizes (default 1: 2 GB, 3 GB)")
    args = p.parse_args(argv)
    mib = lambda n: f"{n / 2 ** 20:8.1f} MiB"  # noqa: E731
    with tempfile.TemporaryDirectory() as tmp:
        for case, reader, hostile, valid in cases(Path(tmp), args.scale):
            bad_peak, bad = peak_memory(reader, hostile)
            good_peak, good = peak_memory(reader, valid)
            print(f"{case}: {hostile.stat().st_size / 1e6:.2f} MB file")
            print(f"  refused: peak {mib(bad_peak)}  {bad}")
            print(f"  valid:   peak {mib(good_peak)}  {good} ({valid.stat().st_size / 1e6:.2f} MB file)")
            print(f"  difference: {mib(bad_peak - good_peak)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
