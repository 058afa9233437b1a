"""A channel served by the real thing: Debian's nginx, started by the test with its own config, TLS from a test CA.

The config is the one docs/DESIGN.md recommends: the channel folder served read-only as it is, and each board
allowed to PUT only under `reports/<its login>/` (WebDAV PUT, basic auth, the login compared with the path).
Requests and bytes are counted from nginx's own access log, not guessed.
"""

from __future__ import annotations

import getpass
import os
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from tests_ssh import free_port

NGINX = "/usr/sbin/nginx"
LOG_FORMAT = "$request_method $uri $status $body_bytes_sent $request_length $remote_user $http_range"


def make_ca(folder: Path, names: tuple[str, ...] = ("127.0.0.1", "10.0.2.100")) -> tuple[Path, Path, Path]:
    """(CA certificate, server certificate, server key): a private CA, as a fleet owner would run one."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key, csr, cert = (folder / n for n in ("ca.key", "ca.pem", "server.key", "server.csr", "server.pem"))

    def openssl(*args: str) -> None:
        done = subprocess.run(["openssl", *args], capture_output=True, text=True)
        if done.returncode:
            pytest.fail(f"openssl {args[0]} failed: {done.stderr.strip()}")

    openssl("req", "-x509", "-newkey", "ed25519", "-nodes", "-keyout", str(ca_key), "-out", str(ca), "-days", "2",
            "-subj", "/CN=edgerl test CA")
    openssl("req", "-newkey", "ed25519", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", "/CN=channel")
    sans = folder / "san.cnf"
    sans.write_text("subjectAltName=" + ",".join(f"IP:{n}" for n in names) + "\n")
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial", "-out",
            str(cert), "-days", "2", "-extfile", str(sans))
    return ca, cert, key


def config(channel: Path, work: Path, port: int, cert: Path, key: Path, htpasswd: Path) -> str:
    """nginx.conf: the channel read-only; PUT only into the caller's own reports/<login>/ folder."""
    user = f"user {getpass.getuser()};\n" if os.geteuid() == 0 else ""  # workers write the reports as the owner
    temp = "".join(f"  {kind}_temp_path {work / kind};\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi",
                                                                        "scgi"))
    return f"""{user}worker_processes 1;
daemon off;
pid {work / 'nginx.pid'};
error_log {work / 'error.log'} warn;
events {{ worker_connections 512; }}
http {{
  log_format edgerl '{LOG_FORMAT}';
  access_log {work / 'access.log'} edgerl;
{temp}  types {{ application/json json; }}
  default_type application/octet-stream;
  server {{
    listen 127.0.0.1:{port} ssl;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    root {channel};
    location ~ /\\. {{ return 404; }}
    location / {{
      if (-f {work / 'fail-targets'}) {{ return 503; }}
      limit_except GET {{ deny all; }}
    }}
    location ~ ^/reports/(?<board>[A-Za-z0-9_][A-Za-z0-9._-]*)/[A-Za-z0-9._-]+$ {{
      auth_basic "edgerl boards";
      auth_basic_user_file {htpasswd};
      if ($remote_user != $board) {{ return 403; }}
      limit_except PUT {{ deny all; }}
      dav_methods PUT;
      create_full_put_path on;
      dav_access user:rw group:r all:r;
      client_max_body_size 64k;
    }}
    location ~ ^/data/(?<board>[A-Za-z0-9_][A-Za-z0-9._-]*)/[A-Za-z0-9_][A-Za-z0-9._-]*/[A-Za-z0-9._-]+$ {{
      auth_basic "edgerl boards";
      auth_basic_user_file {htpasswd};
      if ($remote_user != $board) {{ return 403; }}
      if (-f {work / 'fail-data'}) {{ return 503; }}
      limit_except GET PUT {{ deny all; }}
      dav_methods PUT;
      create_full_put_path on;
      dav_access user:rw group:r all:r;
      client_max_body_size 64m;
    }}
  }}
}}
"""


@dataclass
class Request:
    """One line of the access log."""

    method: str
    uri: str
    status: int
    body_bytes: int
    user: str
    range: str


@dataclass
class Nginx:
    """A running nginx serving one channel folder over TLS."""

    channel: Path
    work: Path
    port: int
    ca: Path
    htpasswd: Path
    proc: subprocess.Popen = None
    proxies: list = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def requests(self) -> list[Request]:
        lines = (self.work / "access.log").read_text().splitlines() if (self.work / "access.log").exists() else []
        found = []
        for line in lines:
            method, uri, status, sent, _, user, rng = line.split(" ", 6)
            found.append(Request(method, uri, int(status), int(sent), user, rng))
        return found

    def mark(self) -> int:
        """How many requests so far: pass it to `since` to see what came after."""
        return len(self.requests())

    def since(self, mark: int) -> list[Request]:
        return self.requests()[mark:]

    def failing(self, on: bool, area: str = "targets") -> None:
        """Every request to the area (targets: the channel's files; data: recordings' PUTs) answers 503 while on."""
        flag = self.work / f"fail-{area}"
        flag.touch() if on else flag.unlink(missing_ok=True)

    def stop(self) -> None:
        for proxy in self.proxies:
            proxy.close()
        self.proc.send_signal(signal.SIGQUIT)
        self.proc.wait(timeout=10)


def start_nginx(channel: Path, work: Path, port: int | None = None) -> Nginx:
    """nginx on a loopback port (a free one unless given) for `channel`; ready when it answers."""
    if not Path(NGINX).is_file():
        pytest.fail("the channel tests serve the channel with nginx: apt-get install nginx (make test does it)")
    work.mkdir(parents=True, exist_ok=True)
    ca, cert, key = make_ca(work / "tls")
    htpasswd = work / "htpasswd"
    htpasswd.touch()
    port = port or free_port()
    (work / "nginx.conf").write_text(config(channel, work, port, cert, key, htpasswd))
    check = subprocess.run([NGINX, "-t", "-q", "-c", str(work / "nginx.conf")], capture_output=True, text=True)
    if check.returncode:
        pytest.fail(f"nginx refused the test's config: {check.stderr.strip()}")
    server = Nginx(channel, work, port, ca, htpasswd)
    server.proc = subprocess.Popen([NGINX, "-c", str(work / "nginx.conf")], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return server
        except OSError:
            if server.proc.poll() is not None:
                pytest.fail(f"nginx did not start: {server.proc.stderr.read().decode()}")
            time.sleep(0.02)
    pytest.fail("nginx did not answer within 10 s")


class CuttingProxy:
    """A TCP relay to nginx that cuts the connection once `cut_after` bytes went to the board (a link dropped).

    TLS passes through untouched (the board still checks nginx's certificate); the cut is exact, not timed.
    """

    def __init__(self, port: int, cut_after: int) -> None:
        self.upstream, self.cut_after, self.relayed = port, cut_after, 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.upstream))
            threading.Thread(target=self._pipe, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, True), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, counted: bool) -> None:
        try:
            while data := src.recv(16384):
                if counted:
                    room = self.cut_after - self.relayed
                    if room <= 0:
                        break
                    data = data[:room]
                    self.relayed += len(data)
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self) -> None:
        self.listener.close()
