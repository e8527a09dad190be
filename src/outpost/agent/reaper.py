"""A tiny guardian between the agent and a terraform process (stdlib only; run as a script, not imported).

    python -I -S reaper.py <agent pid> <program> [args...]

It dies with the agent: the kernel sends it SIGTERM when the agent exits in any way (kill -9 included,
through PR_SET_PDEATHSIG), and it then kills its whole process group, which holds terraform, its
provider plugins and whatever local-exec started. Without it, a killed agent would leave terraform
running on, applying changes nobody can see.

A graceful cancel is a SIGINT to the whole process group, as a terminal's Ctrl-C would send it: terraform
runs as two processes (a panicwrap parent that ignores SIGINT and the real one that handles it), so a
signal to the direct child alone is lost. The reaper itself ignores SIGINT; its child gets the default
disposition back before exec.
"""

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def main() -> int:
    agent_pid = int(sys.argv[1])
    argv = sys.argv[2:]
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != agent_pid:
        return 125  # the agent died before the death signal was armed
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    child = os.fork()
    if child == 0:
        try:
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.execv(argv[0], argv)
        finally:
            os._exit(127)

    def die(_signum: int, _frame: object) -> None:
        os.killpg(os.getpgrp(), signal.SIGKILL)

    signal.signal(signal.SIGTERM, die)
    while True:
        try:
            _, status = os.waitpid(child, 0)
            break
        except ChildProcessError:
            return 1
        except InterruptedError:
            continue
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


if __name__ == "__main__":
    sys.exit(main())
