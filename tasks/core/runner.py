"""The one way the tasks run a program to its end: through `sh`.

Captured short programs (the engine's CLI, pip, venv, the checks' probes) go through `run`,
`stream` or `Following`; `Finished.check` turns a failed one into the caller's error. Only the
children the tasks supervise (the host service, the bench's services, pytest in the
foreground) are started with subprocess.Popen/call, where they are supervised.

Every call to docker/podman and its compose command (ps, inspect, build, images, pull, logs,
...) goes through `run`, `stream` or `Following`, as do the few other programs the local image
build needs (debootstrap, tar, pip, umount). Nothing else in tasks/stack imports subprocess or
names the engine's CLI: the Engine carries its path.

A non-zero exit is an answer, not an exception: callers read `Finished.exit_code` and word the
failure for a person themselves. Never a pseudo-terminal (sh's default for stdout): Compose
would write cursor codes into captured output.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Mapping, Sequence

import sh

from tasks.core.output_text import as_text, last_lines

# sh raises unless the exit code is listed: every exit code, signals (negative) included,
# is an answer here.
ANY_EXIT = tuple(range(-64, 256))
NOT_RUNNABLE = 127  # the shell's code for a command that cannot be run
TIMED_OUT = 124  # timeout(1)'s code


@dataclass(frozen=True)
class Finished:
    """How a program ended and what it wrote (text, undecodable bytes replaced)."""

    argv: tuple[str, ...]
    exit_code: int
    stdout: str = ""
    stderr: str = ""
    timed_out: bool = False
    timeout: float | None = None  # the limit it ran past, when timed_out

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

    def check(self, error_cls: type[Exception], what: str, streamed: bool = False) -> "Finished":
        """This result, or `error_cls` saying that `what` (the program, as a person would
        name it) did not finish in time or failed, with the last lines it wrote. streamed: its
        output went to the terminal already, so the message points there."""
        if self.timed_out:
            raise error_cls(f"{what} did not finish within {self.timeout:g} seconds")
        if self.exit_code != 0:
            detail = (last_lines(self.stderr) or last_lines(self.stdout)
                      or ("its output is above" if streamed else "it printed nothing"))
            raise error_cls(f"{what} failed (exit {self.exit_code}): {detail}")
        return self


def _command(argv: Sequence[str]) -> sh.Command:
    return sh.Command(str(argv[0]))


def run(argv: Sequence[str], *, env: Mapping[str, str] | None = None,
        timeout: float | None = None, stdin: bytes | str | None = None,
        pipe_from: Sequence[str] | None = None, merge_stderr: bool = False,
        cwd: str | None = None) -> Finished:
    """Run argv to its end and capture what it wrote.

    stdin: bytes or text fed to it; pipe_from: the argv of a program whose stdout feeds it
    (`tar -c . | docker import -`); merge_stderr: stderr into stdout, in order. A program that
    cannot be started ends with exit code 127 and the reason in stderr; one that runs past
    `timeout` seconds is killed: exit code 124, timed_out. cwd: the folder it runs in.
    """
    argv = tuple(str(a) for a in argv)
    kwargs: dict = {"_tty_out": False, "_ok_code": ANY_EXIT, "_err_to_out": merge_stderr,
                    "_return_cmd": True}
    if env is not None:
        kwargs["_env"] = dict(env)
    if timeout:
        kwargs["_timeout"] = timeout
    if cwd is not None:
        kwargs["_cwd"] = str(cwd)
    if stdin is not None:
        kwargs["_in"] = stdin
    producer = None
    try:
        command = _command(argv)
        if pipe_from is not None:
            producer = _command(pipe_from)(*pipe_from[1:], _piped=True, _bg=True,
                                           _ok_code=ANY_EXIT, _tty_out=False,
                                           **({"_env": dict(env)} if env is not None else {}))
            kwargs["_in"] = producer
        done = command(*argv[1:], **kwargs)
        if producer is not None:
            producer.wait()
            if producer.exit_code != 0:
                return Finished(argv, producer.exit_code, as_text(done.stdout),
                                f"{pipe_from[0]} exited {producer.exit_code}: "
                                f"{as_text(producer.stderr).strip()}")
    except sh.TimeoutException:
        return Finished(argv, TIMED_OUT, "", f"'{' '.join(argv)}' timed out after {timeout:g}s",
                        timed_out=True, timeout=timeout)
    except (sh.CommandNotFound, OSError) as exc:
        return Finished(argv, NOT_RUNNABLE, "", str(exc))
    return Finished(argv, done.exit_code, as_text(done.stdout), as_text(done.stderr))


def stream(argv: Sequence[str], write: Callable[[str], None], *,
           env: Mapping[str, str] | None = None, timeout: float | None = None) -> Finished:
    """Run argv with stdout and stderr handed to `write` as they come (nothing captured)."""
    argv = tuple(str(a) for a in argv)
    kwargs: dict = {"_tty_out": False, "_ok_code": ANY_EXIT, "_out": write, "_err": write,
                    "_return_cmd": True}
    if env is not None:
        kwargs["_env"] = dict(env)
    if timeout:
        kwargs["_timeout"] = timeout
    try:
        done = _command(argv)(*argv[1:], **kwargs)
    except sh.TimeoutException:
        return Finished(argv, TIMED_OUT, "", f"'{' '.join(argv)}' timed out after {timeout:g}s",
                        timed_out=True, timeout=timeout)
    except (sh.CommandNotFound, OSError) as exc:
        return Finished(argv, NOT_RUNNABLE, "", str(exc))
    return Finished(argv, done.exit_code)


class Following:
    """A long-running program read line by line (stderr merged), e.g. `compose logs --follow`.

    Iterate `lines()`; `close()` ends the program if it still runs and returns its exit code.
    Used as a context manager, it is closed however the reading ends.
    """

    def __init__(self, argv: Sequence[str], env: Mapping[str, str] | None = None):
        argv = tuple(str(a) for a in argv)
        kwargs: dict = {"_tty_out": False, "_ok_code": ANY_EXIT, "_iter": True,
                        "_err_to_out": True, "_decode_errors": "replace"}
        if env is not None:
            kwargs["_env"] = dict(env)
        self._process = _command(argv)(*argv[1:], **kwargs)

    def lines(self) -> Iterator[str]:
        return iter(self._process)

    def close(self) -> int:
        if self._process.is_alive():
            try:
                self._process.terminate()
            except OSError:
                pass  # it ended between the check and the signal
        try:
            self._process.wait()
        except sh.SignalException:
            pass
        return self._process.exit_code

    def __enter__(self) -> "Following":
        return self

    def __exit__(self, *exc) -> None:
        self.exit_code = self.close()
