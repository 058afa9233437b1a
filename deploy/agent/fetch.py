"""The board's HTTP: TUF's metadata through python-tuf's fetcher interface, targets resumed by Range, reports PUT.

One urllib3 pool with the channel's CA (or the system's), a timeout on every call and no retries of its own:
a poll that fails stops, and the next poll (the timer's) is the retry. Nothing here listens on a port.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import urllib3
from tuf.api import exceptions
from tuf.api.metadata import TargetFile
from tuf.ngclient.fetcher import FetcherInterface

CHUNK = 64 * 1024
"""Bytes written to the partial file at a time: what a cut can cost beyond what had arrived."""


@dataclass(frozen=True)
class Link:
    """How this board reaches its channel."""

    url: str
    """The channel's base URL (https://server/path), no trailing slash."""
    ca: str | None = None
    """A CA bundle to check the server with (a private CA); None: the system's."""
    timeout: float = 30.0
    """Seconds for the connection and between bytes."""


@dataclass
class Traffic:
    """What a poll asked of the server: requests and body bytes, for the poll's outcome line."""

    requests: int = 0
    received: int = 0
    sent: int = 0


class ChannelHttp(FetcherInterface):
    """python-tuf's fetcher over our pool (its own Urllib3Fetcher takes no CA), and our Range and PUT."""

    def __init__(self, link: Link) -> None:
        self.link = link
        self.traffic = Traffic()
        self.pool = urllib3.PoolManager(
            cert_reqs="CERT_REQUIRED", ca_certs=link.ca, retries=False,
            timeout=urllib3.Timeout(connect=link.timeout, read=link.timeout),
            headers={"User-Agent": "edgerl-agent"})

    def url(self, *parts: str) -> str:
        """An address under the channel."""
        return "/".join([self.link.url, *(quote(p) for p in parts)])

    def _request(self, method: str, url: str, **kw: Any) -> urllib3.BaseHTTPResponse:
        self.traffic.requests += 1
        try:
            return self.pool.request(method, url, preload_content=False, **kw)
        except urllib3.exceptions.HTTPError as err:
            raise exceptions.DownloadError(f"{url}: {_reason(err)}") from err

    def _fetch(self, url: str) -> Iterator[bytes]:
        response = self._request("GET", url)
        if response.status >= 400:
            response.release_conn()
            raise exceptions.DownloadHTTPError(f"{url}: HTTP {response.status}", response.status)
        return self._chunks(response)

    def _chunks(self, response: urllib3.BaseHTTPResponse) -> Iterator[bytes]:
        try:
            for chunk in response.stream(CHUNK):
                self.traffic.received += len(chunk)
                yield chunk
        except urllib3.exceptions.HTTPError as err:
            raise exceptions.SlowRetrievalError(_reason(err)) from err
        finally:
            response.release_conn()

    def resume(self, info: TargetFile, part: str) -> int:
        """Fetch a target into `part`, from where an earlier poll stopped; returns the bytes this call received.

        The whole file is then checked against the target's signed length and sha256 (python-tuf's own check);
        a mismatch removes the partial file, so the next poll starts it afresh.
        """
        offset = os.path.getsize(part) if os.path.exists(part) else 0
        got = 0
        if offset < info.length:
            url = self.url("targets", info.get_prefixed_paths()[0])
            response = self._request("GET", url, headers={"Range": f"bytes={offset}-"} if offset else None)
            if response.status not in (200, 206):
                response.release_conn()
                raise exceptions.DownloadHTTPError(f"{url}: HTTP {response.status}", response.status)
            mode = "ab" if response.status == 206 else "wb"  # 200: the server sent the whole file
            with open(part, mode) as fh:
                for chunk in self._chunks(response):
                    got += len(chunk)
                    if fh.tell() + len(chunk) > info.length:
                        raise exceptions.DownloadLengthMismatchError(f"{info.path} is longer than its signed length")
                    fh.write(chunk)
        try:
            with open(part, "rb") as fh:
                info.verify_length_and_hashes(fh)
        except exceptions.LengthOrHashMismatchError:
            os.remove(part)
            raise
        return got

    def put_json(self, path: str, body: dict[str, Any], user: str, password: str) -> int:
        """PUT a JSON document under the channel with this board's credentials; returns the HTTP status."""
        return self.put_bytes(path, json.dumps(body, sort_keys=True).encode(), user, password)

    def put_bytes(self, path: str, data: bytes, user: str, password: str) -> int:
        """PUT bytes under the channel with this board's credentials; returns the HTTP status."""
        response = self._request("PUT", self.url(path), body=data, headers=_auth(user, password))
        response.drain_conn()
        response.release_conn()
        self.traffic.sent += len(data)
        return response.status

    def length(self, path: str, user: str, password: str) -> int | None:
        """The length of what the server holds at `path` (HEAD, as this board), or None."""
        response = self._request("HEAD", self.url(path), headers=_auth(user, password))
        response.release_conn()
        size = response.headers.get("Content-Length")
        return int(size) if response.status == 200 and size is not None else None


def _auth(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def _reason(err: Exception) -> str:
    """urllib3's innermost reason, short: 'Connection refused', 'certificate verify failed ...'."""
    while getattr(err, "reason", None) is not None and err.reason is not err:
        err = err.reason
    return str(err).split(": ", 1)[-1] if isinstance(err, Exception) else str(err)
