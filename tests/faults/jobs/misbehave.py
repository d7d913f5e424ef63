"""Jobs that do what production jobs should not.

Callables (``callable = "faultjobs.misbehave:NAME"``) and command-line cases
(``python -m faultjobs.misbehave CASE ARG...``).  Every case that leaves processes
behind writes their pids to a file first, so the test can look for them.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

FOREVER = 3600.0


def _append(path: str, *values: object) -> None:
    with open(path, "a") as file:
        file.write("".join(f"{v}\n" for v in values))
        file.flush()
        os.fsync(file.fileno())


# --- callables --------------------------------------------------------------------


def raises() -> None:
    """Fail with an exception."""
    raise ValueError("fault-marker: raised on purpose")


def exit3() -> None:
    """Leave through ``sys.exit(3)``."""
    print("leaving with status 3", flush=True)
    sys.exit(3)


def hang_in_c(pidfile: str) -> None:
    """Ignore SIGTERM and block forever inside a C call (a lock acquired twice)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _append(pidfile, os.getpid())
    lock = threading.Lock()
    lock.acquire()
    lock.acquire()


def record(path: str) -> None:
    """Append this run's id to ``path``."""
    _append(path, os.environ["CRONHUB_RUN_ID"])


# --- command-line cases -----------------------------------------------------------


def ignore_term(pidfile: str) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _append(pidfile, os.getpid())
    time.sleep(FOREVER)


def fork_many(count: str, pidfile: str, stay: str = "exit") -> None:
    """Fork ``count`` children that sleep forever; then exit 0 (or stay, with "stay")."""
    pids = []
    for _ in range(int(count)):
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            time.sleep(FOREVER)
            os._exit(0)
        pids.append(pid)
    _append(pidfile, *pids)
    print(f"forked {len(pids)} children", flush=True)
    if stay == "stay":
        time.sleep(FOREVER)


def double_fork(pidfile: str) -> None:
    """Double-fork a grandchild into its own session; it sleeps forever."""
    read, write = os.pipe()
    child = os.fork()
    if child == 0:
        os.setsid()
        grandchild = os.fork()
        if grandchild == 0:
            os.close(read)
            os.write(write, f"{os.getpid()}\n".encode())
            os.close(write)
            for fd in (0, 1, 2):
                os.close(fd)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            time.sleep(FOREVER)
            os._exit(0)
        os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    pid = int(os.read(read, 64).decode().strip())
    _append(pidfile, pid)
    print(f"grandchild {pid} escaped", flush=True)


def close_stdout(seconds: str, pidfile: str) -> None:
    """Close stdout and stderr, keep running ``seconds`` (or forever with "forever")."""
    _append(pidfile, os.getpid())
    print("closing my output now", flush=True)
    os.close(1)
    os.close(2)
    time.sleep(FOREVER if seconds == "forever" else float(seconds))


def main(argv: list[str]) -> None:
    case, *args = argv
    {
        "ignore_term": ignore_term,
        "fork_many": fork_many,
        "double_fork": double_fork,
        "close_stdout": close_stdout,
    }[case](*args)


if __name__ == "__main__":
    main(sys.argv[1:])
