"""Where a release goes: a folder of this machine (`local:DIR`) or a board over SSH.

Both implement the same few verbs, so the release logic is written once.
Commands are argv lists; over SSH they are joined with shlex.join, so a
path with spaces, quotes or `;` is one quoted word and injects nothing.
"""

from __future__ import annotations

import os
import select
import shlex
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from device.manifest import EdgerlError


class DeployError(EdgerlError):
    """A deploy step failed; the message says what to do, the old release is still current."""

    before: str | None = None
    """The release the board ran when its deploy began, where the deploy got that far (fleet tables)."""


@dataclass
class Completed:
    """A finished remote command."""

    returncode: int
    stdout: str
    stderr: str


Progress = Callable[[int], None]


class Spawned:
    """A command left running on the board, fed through its stdin (see `Target.spawn`)."""

    def readline(self, timeout: float) -> str:
        """One line of its stdout, or '' at EOF or after `timeout` seconds."""
        raise NotImplementedError

    def write(self, data: bytes) -> None:
        """Feed its stdin; never blocks on a dead link."""
        raise NotImplementedError

    def alive(self) -> bool:
        """Whether it is still running."""
        raise NotImplementedError

    def close(self) -> None:
        """Close its stdin (it sees EOF) and let go of it."""
        raise NotImplementedError


class _LocalProcess(Spawned):
    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc

    def readline(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        return self.proc.stdout.readline().decode(errors="replace").rstrip("\n") if ready else ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def write(self, data: bytes) -> None:
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(data)
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            pass

    def close(self) -> None:
        for pipe in (self.proc.stdin, self.proc.stdout):
            try:
                if pipe is not None:
                    pipe.close()
            except OSError:
                pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class Target:
    """The verbs release logic needs from a board."""

    name: str
    root: str
    """Absolute path of the board folder."""
    silence_timeout: float = 60.0
    """Seconds of silence after which the board is given up (and its deploy lock expires)."""
    heartbeat: float = 1.0
    """Seconds between the deploy lock's heartbeats."""
    board_code_checked: str | None = None
    """The board module's folder once it has been shipped or checked on this board (deploy.board_client)."""

    def run(self, argv: list[str], timeout: float | None = None, on_line: Callable[[str], None] | None = None,
            env: dict[str, str] | None = None, what: str | None = None) -> Completed:
        """Run argv on the board; stderr lines are streamed to on_line; `what` names the step in errors."""
        raise NotImplementedError

    def spawn(self, argv: list[str], what: str) -> Spawned:
        """Start argv on the board and keep its stdin open."""
        raise NotImplementedError

    def put(self, local: Path, remote: str, progress: Progress | None = None) -> int:
        """Upload, resuming a partial `remote` file; returns the bytes sent."""
        raise NotImplementedError

    def get(self, remote: str, local: Path) -> None:
        """Download one file."""
        raise NotImplementedError

    def exists(self, remote: str) -> bool:
        """Whether a path exists on the board (no remote command: cheap)."""
        raise NotImplementedError

    def rename(self, src: str, dst: str) -> None:
        """Atomically move src over dst on the board."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the connection."""

    def lost(self, what: str) -> DeployError:
        """The error for a board that stopped answering during `what`."""
        return DeployError(f"{self.name} stopped answering during {what}")

    def check(self, argv: list[str], what: str, timeout: float | None = None, env: dict[str, str] | None = None,
              on_line: Callable[[str], None] | None = None) -> Completed:
        """Run argv and raise DeployError naming `what` if it fails."""
        done = self.run(argv, timeout=timeout, env=env, on_line=on_line, what=what)
        if done.returncode != 0:
            detail = (done.stderr.strip() or done.stdout.strip()).splitlines()
            raise DeployError(f"{what} failed on {self.name}: {detail[-1] if detail else f'exit {done.returncode}'}")
        return done

    def path(self, *parts: str) -> str:
        """A path under the board folder."""
        return str(PurePosixPath(self.root, *parts))

    def __enter__(self) -> Target:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LocalTarget(Target):
    """A board folder on this machine: the embedded default, same logic as a real board."""

    def __init__(self, directory: Path, create: bool = True) -> None:
        self.root = str(Path(directory).expanduser().resolve())
        self.name = f"local:{directory}"
        if create:
            try:
                Path(self.root).mkdir(parents=True, exist_ok=True)
            except OSError as err:  # under a file, in /proc, not ours to write
                raise DeployError(f"{self.name}: cannot make the board folder {self.root} ({err.strerror}); give "
                                  "a folder you can write") from None
        elif Path(self.root).exists() and not Path(self.root).is_dir():
            raise DeployError(f"{self.name}: {self.root} is a file, not a board folder")
        elif not Path(self.root).is_dir():
            raise DeployError(f"{self.name}: no such board folder; deploy to it first")

    def run(self, argv: list[str], timeout: float | None = None, on_line: Callable[[str], None] | None = None,
            env: dict[str, str] | None = None, what: str | None = None) -> Completed:
        """Run argv locally (never through a shell)."""
        full_env = {**os.environ, **(env or {})}
        # In a session of their own, as a remote board's commands are: the user's Ctrl-C reaches this process
        # alone, which stops the deploy at its next step; the board's step ends whole, not with a traceback
        # that would then be read as the board's own failure.
        if on_line is None:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=full_env,
                                  start_new_session=True)
            return Completed(done.returncode, done.stdout, done.stderr)
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env,
                                start_new_session=True)
        err_lines = []
        assert proc.stderr is not None
        with proc:  # its pipes closed however this ends
            try:
                for line in proc.stderr:
                    err_lines.append(line)
                    on_line(line.rstrip("\n"))
                out = proc.stdout.read() if proc.stdout else ""
                return Completed(proc.wait(timeout=timeout), out, "".join(err_lines))
            except BaseException:  # an interrupt here (or a timeout) must not leave the step running on unseen
                proc.kill()
                proc.wait()
                raise

    def spawn(self, argv: list[str], what: str) -> Spawned:
        """Start argv here with pipes for stdin and stdout."""
        return _LocalProcess(subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                              start_new_session=True))

    def put(self, local: Path, remote: str, progress: Progress | None = None) -> int:
        """Copy, appending to a partial file if one is there."""
        dest = Path(remote)
        dest.parent.mkdir(parents=True, exist_ok=True)
        offset = dest.stat().st_size if dest.exists() else 0
        with open(local, "rb") as src, open(dest, "ab") as out:
            return append_from(src, out, offset, progress)

    def get(self, remote: str, local: Path) -> None:
        """Copy one file back."""
        shutil.copyfile(remote, local)

    def exists(self, remote: str) -> bool:
        """os.path.exists."""
        return os.path.exists(remote)

    def rename(self, src: str, dst: str) -> None:
        """os.replace."""
        os.replace(src, dst)


def append_from(src: BinaryIO, out: Any, offset: int, progress: Progress | None, chunk: int = 1 << 16) -> int:
    """Copy src from `offset` to the end onto `out` (opened for append); returns the bytes written."""
    src.seek(offset)
    if progress and offset:
        progress(offset)
    sent = 0
    for block in iter(lambda: src.read(chunk), b""):
        out.write(block)
        sent += len(block)
        if progress:
            progress(len(block))
    return sent


def valid_port(text: object, where: str) -> int:
    """A TCP port 1-65535, or a DeployError naming where the bad value came from (never wrapped modulo 65536)."""
    try:
        port = int(str(text))
    except ValueError:
        port = -1
    if not 1 <= port <= 65535:
        raise DeployError(f"port {text!r} {where} is not a TCP port (1-65535); use [user@]host[:port]")
    return port


def parse_target(text: str) -> tuple[str, str | None, str, int | None]:
    """`local:DIR` -> ("local", None, DIR, None); `[ssh://][user@]host[:port]` -> ("ssh", user, host, port)."""
    if text.startswith("local:"):
        directory = text[len("local:"):]
        if not directory:
            raise DeployError("local target needs a folder: local:DIR")
        return "local", None, directory, None
    address = text[len("ssh://"):].rstrip("/") if text.startswith("ssh://") else text  # ssh's own URL form
    user, at, hostport = address.rpartition("@")
    if at and (not user or any(c in user for c in " /\\'\"`;$:@")):
        raise DeployError(f"bad user in target {text!r}; use [user@]host[:port], e.g. pi@raspberrypi.local")
    host, port = hostport, None
    if hostport.count(":") == 1:
        host, _, port_text = hostport.partition(":")
        port = valid_port(port_text, f"in target {text!r}")
    elif ":" in hostport:
        raise DeployError(f"bad target {text!r}: more than one ':' (a port is given once: [user@]host[:port])")
    if not host or any(c in host for c in " /\\'\"`;$"):
        raise DeployError(f"bad host in target {text!r}; use [user@]host[:port], an ssh config alias, or local:DIR")
    return "ssh", user or None, host, port


def quote(argv: list[str]) -> str:
    """One shell command line, every word quoted."""
    return shlex.join(argv)
