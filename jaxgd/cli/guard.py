"""How a command ends: bad input as one line and exit code 2, a bug as a bug.

jaxgd's own errors (:class:`jaxgd.errors.JaxgdError`: every refusal of an option, a value, a
file or a directory) and the operating system's (a missing file, a full disk, a read-only
file system) end as one line on stderr with exit code 2. Running out of memory is one line
too. Anything else is an internal error of jaxgd: one line saying so, with the file its full
traceback was written to and where to report it, and exit code 1.
"""
from __future__ import annotations

import datetime
import os
import sys
import tempfile
import traceback

from jaxgd.errors import JaxgdError, UsageError

#: Where internal errors are reported.
ISSUES = "https://github.com/jaxgd/jaxgd/issues"


def _out_of_memory(e: BaseException) -> str | None:
    """XLA's out-of-memory message (with the size it could not allocate), or None for any other error."""
    text = str(e)
    if "RESOURCE_EXHAUSTED" not in text and "Out of memory" not in text:
        return None
    return next((line.strip() for line in text.splitlines() if "memory" in line.lower()), text.splitlines()[0])


def write_traceback(prog: str) -> str:
    """The current exception's traceback, written to a new file in the temporary directory; its path."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    fd, path = tempfile.mkstemp(prefix=f"{prog.replace(' ', '-').replace('/', '-')}-internal-error-{stamp}-",
                                suffix=".txt")
    with os.fdopen(fd, "w") as f:
        f.write(f"{prog} {' '.join(sys.argv[1:])}\n\n")
        traceback.print_exc(file=f)
    return path


def guarded(prog: str, body) -> int:
    """Runs ``body()`` and returns its exit code; errors end as the module docstring says."""
    try:
        return body()
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except JaxgdError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a missing file, a read-only file system, no space left on the device, ...
        where = f": {e.filename}" if e.filename else ""
        print(f"{prog}: error: {e.strerror or e}{where}", file=sys.stderr)
        return 2
    except MemoryError:
        print(f"{prog}: error: out of memory; use fewer or smaller networks, or a smaller dataset", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        message = _out_of_memory(e)
        if message is not None:
            print(f"{prog}: error: out of memory: {message}", file=sys.stderr)
            return 2
        try:
            where = f"the full traceback is in {write_traceback(prog)}"
        except OSError:
            where = "its traceback could not be written to a file"
        print(f"{prog}: internal error: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''} — this is a "
              f"bug in jaxgd, not in your input; {where}; please report it with that file at {ISSUES}",
              file=sys.stderr)
        return 1
