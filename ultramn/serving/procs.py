"""Child processes that end with their parent, started without a ``preexec_fn``."""

from __future__ import annotations

import os
import sys

#: Run by the venv's Python between our fork and the child's exec, instead of a ``preexec_fn``
#: (which makes :mod:`subprocess` fork this multi-threaded process, gRPC's threads included, and run
#: Python in the child; Python documents that as unsafe). It asks Linux to SIGTERM the child when
#: the *thread* that started it ends (``PR_SET_PDEATHSIG`` survives ``execv``; it fires even on
#: SIGKILL of a test run), gives up when that parent is already gone, then becomes the child
#: (same PID). Arguments: the parent's PID, then the child's command line.
_PDEATHSIG_EXEC = """\
import ctypes, os, signal, sys
try:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
except (OSError, AttributeError):
    pass
if os.getppid() != int(sys.argv[1]):
    sys.exit(1)
os.execv(sys.argv[2], sys.argv[2:])
"""


def dying_with_parent(cmd: list[str]) -> list[str]:
    """``cmd`` wrapped so that the child gets SIGTERM when the calling thread ends, even by
    SIGKILL (Linux ``PR_SET_PDEATHSIG``; elsewhere the shim only execs). ``cmd[0]`` must be a
    path (it is exec'd without a PATH search)."""
    return [sys.executable, "-I", "-S", "-c", _PDEATHSIG_EXEC, str(os.getpid()), *cmd]
