"""The pre-forked launcher ("zygote") for callable runs: ``python .../launcher.py FD``.

Starting a fresh interpreter for every callable run costs its whole start-up (the
interpreter, ``site``, ``.pth`` files) before the job's first line.  The runner
instead keeps one long-lived launcher, started with the same interpreter and
environment as a fresh run would get, that has loaded only ``childmain`` (never a
job's module: each run imports that afresh, so edits apply), and forks it per run.

Protocol, on the ``SOCK_SEQPACKET`` socket ``FD`` (one JSON object per packet):

- launcher → runner, once: ``{"ready": PID, "watch": {PATH: MTIME_NS}, "stamp": BOOL}``.
  ``watch`` holds what a fresh interpreter would read differently once it changes
  (the interpreter, these files, the ``sys.path`` entries); ``stamp`` says whether
  a run's ``CRONHUB_RUN_ID`` can be made visible in ``/proc/PID/environ``.
- runner → launcher, per run: ``{"target", "path", "args", "kwargs", "env", "cwd",
  "run_id"}`` with two descriptors (``SCM_RIGHTS``): the run's stdin and its output.
- launcher → runner: ``{"pid": PID, "start": TICKS}``, or ``{"error": TEXT}`` (nothing
  was started), with ``"errno"`` and ``"cwd": true`` when the working directory is
  the cause.

The run is a grandchild (launcher → intermediate → run): the intermediate exits at
once, so the run is re-parented to the nearest child subreaper, the daemon, which
waits for it exactly as for a process it spawned itself.  The launcher replies
only after reaping the intermediate, so by then the run is the daemon's child.

In the run, before the job: ``CRONHUB_RUN_ID`` is written into the environment
block inherited from the launcher (see :meth:`Launcher._stamp`), then ``setsid()``,
stdio onto the given descriptors, every other descriptor closed, signal state as
the launcher found it at start-up, ``os.environ`` replaced by the run's, import
caches invalidated, and ``childmain.run`` -- the same code path as a fresh child.
The run then exits by :meth:`Launcher.exit`: what shutdown does that a job can
see (threads joined, ``atexit``, files flushed, its modules finalized), without
deallocating the launcher's objects, which would copy most of its pages.  The
launcher's objects are frozen out of the collector (``gc.freeze``) for the same
reason.

The launcher is single-threaded and exits when the runner's end of the socket
closes.  It imports little besides ``os``, ``sys``, ``json`` and ``socket``: all of
it is in every run's ``sys.modules``.
"""

from __future__ import annotations

import os
import sys
from typing import Any, NoReturn

RUN_ID_VAR = "CRONHUB_RUN_ID"
RUN_ID_SLOT = 64
"""Room for a run id in the launcher's environment block (the runner fills it
with this many ``-`` at start-up; a longer run id is spawned fresh)."""
MAX_MESSAGE = 200_000
"""Largest request, in bytes (an ``AF_UNIX`` packet must fit the socket buffer)."""
EXIT_MIDDLE_FAILED = 70
"""Status of an intermediate or a run that broke before reaching the job."""

_SLOT_FILL = b"-"


def main(argv: list[str] | None = None) -> int:
    """Serve run requests on the inherited socket; in each run, run the job."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not args[0].isdigit():
        print("usage: python launcher.py FD  (started by cronhub's runner)", file=sys.stderr)
        return 2
    run = Launcher(int(args[0])).serve()
    if run is None:
        return 0
    run.start()


class _Refused(Exception):
    """A request the launcher cannot carry out; nothing was started."""


class _Run:
    """One run's request, carried from the launcher into the forked run."""

    def __init__(self, request: dict[str, Any], fds: list[int], launcher: Launcher) -> None:
        try:
            self.target: str = _text(request["target"])
            self.path: str | None = None if request["path"] is None else _text(request["path"])
            self.args: list[object] = list(request["args"])
            self.kwargs: dict[str, object] = dict(request["kwargs"])
            self.env: dict[str, str] = {_text(k): _text(v) for k, v in request["env"].items()}
            self.cwd: str = _text(request["cwd"])
            self.run_id: str = _text(request["run_id"])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise _Refused(f"malformed request: {exc!r}") from None
        if len(self.run_id.encode()) > RUN_ID_SLOT:
            raise _Refused("run id too long")
        self.stdin_fd, self.output_fd = fds
        self._launcher = launcher

    def start(self) -> NoReturn:
        """Become the run (in the forked process), run the job, exit with its status."""
        os.dup2(self.stdin_fd, 0)  # first: whatever fails next is the run's output
        os.dup2(self.output_fd, 1)
        os.dup2(self.output_fd, 2)
        self._launcher.stamp(self.run_id)  # before setsid(): see Launcher.stamp
        self._launcher.forget()
        os.setsid()
        os.closerange(3, _max_fd())
        self._launcher.restore_signals()
        self._launcher.restore_gc()
        os.environ.clear()
        os.environ.update(self.env)
        import importlib

        importlib.invalidate_caches()  # what the launcher listed may have changed
        try:
            status: int = self._launcher.childmain.run(
                self.target, self.path, self.args, self.kwargs
            )
        except SystemExit as exc:
            status = _exit_status(exc)
        self._launcher.exit(status)  # anything else takes the interpreter's own way out


class Launcher:
    """The launcher's state: its socket, ``childmain``, and what a run restores."""

    def __init__(self, fd: int) -> None:
        import json
        import signal
        import socket

        self._json = json
        self._socket = socket
        self._signal = signal
        self._sock = socket.socket(fileno=fd)
        self.childmain = _load_childmain()
        # What a fresh interpreter would have; the launcher itself ignores SIGINT
        # (a Ctrl-C at the daemon's terminal is the daemon's to handle).
        self._sigint = signal.getsignal(signal.SIGINT)
        self._mask = signal.pthread_sigmask(signal.SIG_BLOCK, ())
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        self._slot = _find_slot()
        # Keep the collector off the launcher's objects in every run: a collection
        # (or shutdown's) would otherwise touch, and so copy, each of their pages.
        import atexit
        import gc

        self._atexit = atexit
        self._gc = gc
        self._preloaded: frozenset[str] = frozenset()
        gc.disable()
        gc.freeze()

    # --- the launcher's loop -------------------------------------------------------------

    def serve(self) -> _Run | None:
        """Answer requests until the runner goes away; return a run in a forked run."""
        watch = _watched(self.childmain)
        self._send({"ready": os.getpid(), "watch": watch, "stamp": self._can_stamp()})
        while True:
            try:
                message, fds, flags, _ = self._socket.recv_fds(self._sock, MAX_MESSAGE, 2)
            except ConnectionError:
                return None
            if not message:
                _close_all(fds)
                return None
            try:
                run = self._handle(message, fds, flags)
            except ConnectionError:  # the runner went away mid-request
                return None
            if run is not None:
                return run  # we are the run now

    def _handle(self, message: bytes, fds: list[int], flags: int) -> _Run | None:
        try:
            if flags & (self._socket.MSG_TRUNC | self._socket.MSG_CTRUNC) or len(fds) != 2:
                raise _Refused("truncated request or wrong descriptors")
            try:
                request = self._json.loads(message)
            except ValueError as exc:
                raise _Refused(f"request is not JSON: {exc}") from None
            if not isinstance(request, dict):
                raise _Refused("request is not an object")
            run = _Run(request, fds, self)
        except _Refused as exc:
            _close_all(fds)
            self._send({"error": str(exc)})
            return None
        outcome = self._fork(run)
        if isinstance(outcome, _Run):
            return outcome
        _close_all(fds)
        self._send(outcome)
        return None

    def _fork(self, run: _Run) -> _Run | dict[str, Any]:
        """Start ``run`` as a grandchild; the reply for the runner, or the run itself."""
        try:
            read_end, write_end = os.pipe()
        except OSError as exc:
            return {"error": f"pipe: {exc.strerror}"}
        self._preloaded = frozenset(sys.modules)
        try:
            middle = os.fork()
        except OSError as exc:
            _close_all([read_end, write_end])
            return {"error": f"fork: {exc.strerror}"}
        if middle == 0:
            try:
                os.close(read_end)
                become = _middle(run, write_end)
            except BaseException:  # the intermediate must never return into the loop
                os._exit(EXIT_MIDDLE_FAILED)
            return become
        os.close(write_end)
        try:
            news = os.read(read_end, 64)
        finally:
            os.close(read_end)
            os.waitpid(middle, 0)
        return _reply(news, run.cwd)

    def _send(self, reply: dict[str, Any]) -> None:
        self._sock.send(self._json.dumps(reply).encode())

    # --- in a run ------------------------------------------------------------------------

    def exit(self, status: int) -> NoReturn:
        """End the run as interpreter shutdown would, but leave the launcher's objects be.

        Shutdown deallocates every object, the launcher's too: in a forked run
        that writes to, and so copies, most of the launcher's pages, which takes
        longer than the rest of a small job.  What a job can observe is kept, in
        shutdown's order: non-daemon threads joined, ``atexit`` handlers run,
        stdio flushed (status 120 if that fails), files the job left open
        flushed, and the job's own modules dropped, collected and cleared
        (newest first) so that what they hold is finalized.  Objects a job hangs
        only on the launcher's modules are not finalized, as with ``os._exit``.
        """
        threading = sys.modules.get("threading")
        if threading is not None:
            threading._shutdown()  # what shutdown calls to join non-daemon threads
        self._atexit._run_exitfuncs()
        flushed = _flush_stdio()
        self._flush_job_files()
        self._finalize_job_modules()
        flushed = _flush_stdio() and flushed
        os._exit(status if flushed else 120)

    def _flush_job_files(self) -> None:
        """Flush the files the run left open, before anything is finalized.

        Finalizers of objects in garbage cycles run in no set order: a buffered
        file whose raw file is closed first loses its buffer, silently.  Whether
        that happens in a fresh interpreter is luck; here it does not.
        """
        import io

        writers = (io.TextIOWrapper, io.BufferedWriter, io.BufferedRandom)
        for obj in self._gc.get_objects():  # the launcher's own objects are frozen: not listed
            if isinstance(obj, writers) and not obj.closed:
                try:
                    obj.flush()
                except (OSError, ValueError):  # as finalization would: silently
                    continue

    def _finalize_job_modules(self) -> None:
        """Shutdown's module teardown, for the modules the run imported."""
        weak = self._drop_job_modules()
        self._gc.collect()  # most modules go here, their globals intact for finalizers
        for module_ref in weak:
            if (survivor := module_ref()) is not None:
                _clear_module(survivor)
                del survivor
        self._gc.collect()

    def _drop_job_modules(self) -> list[Any]:
        """Take the run's modules out of ``sys.modules``; weak references to them."""
        from _weakref import ref

        modules = sys.modules
        job = [(name, module) for name, module in modules.items() if name not in self._preloaded]
        weak = []
        for name, module in reversed(job):
            del modules[name]
            if isinstance(module, type(sys)):
                weak.append(ref(module))
        return weak

    # --- what a run restores ---------------------------------------------------------------

    def forget(self) -> None:
        """Drop the launcher's socket (in a run): its number is the job's to reuse."""
        os.close(self._sock.detach())

    def restore_gc(self) -> None:
        """The collector on, as in a fresh interpreter (the launcher's objects stay frozen)."""
        self._gc.enable()

    def restore_signals(self) -> None:
        """Signal state as the launcher found it: a fresh interpreter's."""
        self._signal.signal(self._signal.SIGINT, self._sigint)
        self._signal.pthread_sigmask(self._signal.SIG_SETMASK, self._mask)

    def stamp(self, run_id: str) -> None:
        """Write ``run_id`` into this process's environment block, as ``/proc`` shows it.

        ``/proc/PID/environ`` is the block a process was exec'd with, not
        ``os.environ``: a forked run would show the launcher's.  The runner finds a
        run's escaped processes, and a dead daemon's leftovers, by the run id in
        that block, so the launcher's (``CRONHUB_RUN_ID=----...``) is overwritten in
        place.  Done before ``setsid()``: until then the run is in the daemon's
        session, where the runner does not look.
        """
        if self._slot is not None:
            value = run_id.encode()
            _poke(self._slot, value + b"\0" * (RUN_ID_SLOT - len(value)))

    def _can_stamp(self) -> bool:
        if self._slot is None:
            return False
        try:
            _poke(self._slot, _SLOT_FILL * RUN_ID_SLOT)  # what is there already
        except OSError:
            return False
        return True


def _middle(run: _Run, write_end: int) -> _Run:
    """The intermediate: enter the run's directory, fork the run, report, exit."""
    try:
        os.chdir(run.cwd)
    except OSError as exc:
        os.write(write_end, b"C%d" % exc.errno)
        os._exit(0)
    try:
        pid = os.fork()
    except OSError as exc:
        os.write(write_end, b"F%d" % exc.errno)
        os._exit(0)
    if pid == 0:
        os.close(write_end)
        return run
    os.write(write_end, b"P%d" % pid)
    os._exit(0)


def _exit_status(exc: SystemExit) -> int:
    """The status the interpreter would exit with for ``exc``, its message printed."""
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def _flush_stdio() -> bool:
    """Flush ``sys.stdout`` and ``sys.stderr``; whether both could be."""
    flushed = True
    for stream in (sys.stdout, sys.stderr):
        if stream is None or getattr(stream, "closed", False):
            continue
        try:
            stream.flush()
        except Exception:  # the interpreter's own rule at exit: any failure is status 120
            flushed = False
    return flushed


def _clear_module(module: Any) -> None:
    """Set a module's globals to None: ``_private`` ones first, ``__builtins__`` last."""
    namespace = module.__dict__
    private = [k for k in namespace if isinstance(k, str) and k[:1] == "_" and k[1:2] != "_"]
    for key in private:
        namespace[key] = None
    for key in [k for k in namespace if k != "__builtins__"]:
        namespace[key] = None


def _reply(news: bytes, cwd: str) -> dict[str, Any]:
    kind, value = news[:1], news[1:]
    if kind == b"P" and value.isdigit():
        pid = int(value)
        return {"pid": pid, "start": _start_ticks(pid)}
    if kind in (b"C", b"F") and value.isdigit():
        code = int(value)
        if kind == b"C":
            return {"error": f"cwd: {os.strerror(code)}", "errno": code, "cwd": True}
        return {"error": f"fork: {os.strerror(code)}", "errno": code}
    return {"error": "the intermediate process died"}


def _start_ticks(pid: int) -> int | None:
    """Field 22 of ``/proc/PID/stat``: the process's start, in clock ticks since boot.

    ``runner._read_proc`` parses the same file; this copy exists because the launcher
    runs by path and imports nothing from cronhub (its start-up cost is every run's).
    """
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        data = os.read(fd, 4096)
    except OSError:
        return None
    finally:
        os.close(fd)
    fields = data[data.rfind(b")") + 2 :].split()
    return int(fields[19]) if len(fields) > 19 else None


def _find_slot() -> int | None:
    """Address of the run id's value in this process's environment block, if any."""
    try:
        with open("/proc/self/stat", "rb") as file:
            stat = file.read()
        with open("/proc/self/environ", "rb") as file:
            block = file.read()
    except OSError:
        return None
    fields = stat[stat.rfind(b")") + 2 :].split()
    if len(fields) < 49:  # env_start is field 50 (Linux 3.5 and later)
        return None
    env_start = int(fields[47])
    entry = f"{RUN_ID_VAR}=".encode() + _SLOT_FILL * RUN_ID_SLOT + b"\0"
    if block.startswith(entry):
        offset = 0
    elif (found := block.find(b"\0" + entry)) >= 0:
        offset = found + 1
    else:
        return None
    return env_start + offset + len(RUN_ID_VAR) + 1


def _poke(address: int, data: bytes) -> None:
    """Write ``data`` into this process's memory at ``address``."""
    fd = os.open("/proc/self/mem", os.O_WRONLY)
    try:
        if os.pwrite(fd, data, address) != len(data):
            raise OSError("short write to /proc/self/mem")
    finally:
        os.close(fd)


def _watched(childmain: Any) -> dict[str, int]:
    """What a fresh interpreter would see differently once it changed, with its mtime."""
    here = os.path.dirname(os.path.abspath(__file__))
    entries = [entry for entry in sys.path if entry and os.path.abspath(entry) != here]
    paths = [sys.executable, os.path.abspath(__file__), childmain.__file__, *entries]
    found: dict[str, int] = {}
    for path in paths:
        try:
            found[path] = os.stat(path).st_mtime_ns
        except OSError:
            continue
    return found


def _load_childmain() -> Any:
    """``childmain.py`` from beside this file, kept out of ``sys.modules``.

    Not imported by name: a job's own module called ``childmain`` must not find
    it already loaded.
    """
    from importlib.util import module_from_spec, spec_from_file_location

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "childmain.py")
    spec = spec_from_file_location("_cronhub_childmain", path)
    assert spec is not None and spec.loader is not None
    module = module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        os.close(fd)


def _max_fd() -> int:
    try:
        return os.sysconf("SC_OPEN_MAX")
    except (OSError, ValueError):
        return 65_536


if __name__ == "__main__":
    sys.exit(main())
