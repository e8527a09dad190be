"""A tiny guardian between the agent and a terraform process (stdlib only; run as a script, not imported).

    python -I -S reaper.py <agent pid> [options] -- <program> [args...]
    python -I -S reaper.py <agent pid> <program> [args...]
    python -I -S reaper.py <agent pid> --stdin

With --stdin it is started ahead of need (outpost.agent.process.Reapers) and waits for its command on
stdin: the working directory, the number of environment entries, the entries ("NAME=value"), then the
arguments as above, separated by NUL bytes and ended by closing stdin. The command then runs in that
directory with exactly that environment and /dev/null as its stdin; a stdin closed with nothing written
ends the reaper (it was not needed after all).

It dies with the agent: the kernel sends it SIGTERM when the agent exits in any way (kill -9 included,
through PR_SET_PDEATHSIG), and it then kills its whole process group, which holds terraform, its
provider plugins and whatever local-exec started. Without it, a killed agent would leave terraform
running on, applying changes nobody can see.

A graceful cancel is a SIGINT to the whole process group, as a terminal's Ctrl-C would send it: terraform
runs as two processes (a panicwrap parent that ignores SIGINT and the real one that handles it), so a
signal to the direct child alone is lost. The reaper itself ignores SIGINT; its child gets the default
disposition back before exec, unless --keep-sigint-ignored (for bubblewrap, which would otherwise die of
the SIGINT and take the sandbox down before terraform stops gracefully).

Options, applied in the child before exec, in this order (see outpost.agent.sandbox and .limits):
  --cgroup <path to cgroup.procs>   join the run's cgroup
  --rlimit NAME=VALUE               set an rlimit (DATA, NPROC, ...), soft and hard
  --nice N                          lower the priority by N; repeated, they add up (the job's limits
                                    give one, a command run beside the apply another)
  --uid N / --gid N                 drop to this uid and gid, with no supplementary groups
  --subreaper                       (in the reaper) adopt orphaned descendants, so they stay countable
"""

# Every terraform command waits for this script's start-up, so it imports little: annotations stay strings
# (no `typing`), and `signal` is its C module, without signal.py's enums (`enum`, `re`, `functools`...).
# Together that was 27 of the 59 ms from launch to exec, measured with -X importtime and wall clocks.
from __future__ import annotations

import _signal as signal  # type: ignore[import-not-found,unused-ignore]
import ctypes
import os
import resource
import sys

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36


class Options:
    def __init__(self) -> None:
        self.rlimits: list[tuple[int, int]] = []
        self.cgroup: str | None = None
        self.nice = 0
        self.uid: int | None = None
        self.gid: int | None = None
        self.keep_int = False
        self.sub = False


def parse(args: list[str]) -> tuple[Options, list[str]]:
    options = Options()
    if "--" not in args:
        return options, args
    split = args.index("--")
    head, argv = args[:split], args[split + 1 :]
    i = 0
    while i < len(head):
        flag = head[i]
        if flag == "--keep-sigint-ignored":
            options.keep_int = True
        elif flag == "--subreaper":
            options.sub = True
        else:
            value = head[i + 1]
            i += 1
            if flag == "--rlimit":
                name, _, limit = value.partition("=")
                options.rlimits.append((getattr(resource, "RLIMIT_" + name), int(limit)))
            elif flag == "--cgroup":
                options.cgroup = value
            elif flag == "--nice":
                options.nice += int(value)
            elif flag == "--uid":
                options.uid = int(value)
            elif flag == "--gid":
                options.gid = int(value)
            else:
                raise SystemExit("reaper: unknown option " + flag)
        i += 1
    return options, argv


def prepare_child(options: Options) -> None:
    if options.cgroup:
        with open(options.cgroup, "w") as procs:
            procs.write("0")  # "0" is the writing process itself
    for which, limit in options.rlimits:
        resource.setrlimit(which, (limit, limit))
    if options.nice:
        os.nice(options.nice)
    if options.gid is not None:
        os.setgroups([])
        os.setgid(options.gid)
    if options.uid is not None:
        os.setuid(options.uid)
    if not options.keep_int:
        signal.signal(signal.SIGINT, signal.SIG_DFL)


def read_command() -> tuple[list[str], dict[str, str]] | None:
    """The command sent on stdin (--stdin), after changing to its directory: (arguments, environment)."""
    data = bytearray()
    while chunk := os.read(0, 65536):
        data += chunk
    if not data:
        return None
    fields = [os.fsdecode(field) for field in bytes(data).split(b"\0")]
    count = int(fields[1])
    env = {name: value for name, _, value in (entry.partition("=") for entry in fields[2 : 2 + count])}
    os.chdir(fields[0])
    return fields[2 + count :], env


def main() -> int:
    agent_pid = int(sys.argv[1])
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != agent_pid:
        return 125  # the agent died before the death signal was armed
    args, env = sys.argv[2:], None
    if args == ["--stdin"]:
        command = read_command()
        if command is None:
            return 0
        args, env = command
    options, argv = parse(args)
    if options.sub:
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    child = os.fork()
    if child == 0:
        try:
            prepare_child(options)
            if env is None:
                os.execv(argv[0], argv)
            else:
                os.dup2(os.open(os.devnull, os.O_RDONLY), 0)  # not the pipe the command came through
                os.execve(argv[0], argv, env)
        except BaseException as exc:  # the message reaches the run's log through the shared stdout
            sys.stderr.write("outpost: cannot start " + argv[0] + ": " + str(exc) + "\n")
            sys.stderr.flush()
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
    # os._exit: the interpreter's finalization took 6 of the 11 ms from a ready reaper receiving its
    # command to the agent seeing the end of a command that does nothing (nothing here needs flushing).
    os._exit(main())
