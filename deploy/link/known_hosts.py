"""known_hosts read as OpenSSH reads it, and written as OpenSSH's accept-new writes it: one appended line.

paramiko's own HostKeys keeps one key per host and type, drops lines it
cannot parse when it saves, and stumbles on `@cert-authority`/`@revoked`
markers. Users' files hold all of these, so edgerl reads the file itself:

- comments, blank lines and key types it does not know are skipped, never
  rewritten;
- host fields are OpenSSH patterns: comma lists, `*`/`?` wildcards, `!`
  negation, `[host]:port`, and hashed names (`|1|salt|hmac`);
- a host may be listed with several keys: any one of them is accepted;
- `@revoked` lines refuse their key; `@cert-authority` lines are skipped
  (edgerl does not do host certificates; plain keys still match).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from deploy.link.targets import DeployError

KNOWN, UNKNOWN, CHANGED, REVOKED = "known", "unknown", "changed", "revoked"


def host_name(hostname: str, port: int) -> str:
    """The name known_hosts files a host under: `host` on port 22, `[host]:port` otherwise."""
    return hostname if port == 22 else f"[{hostname}]:{port}"


def _hashed_match(entry: str, name: str) -> bool:
    try:
        _, _, salt, digest = entry.split("|", 3)
        mac = hmac.new(base64.b64decode(salt), name.encode(), hashlib.sha1).digest()
        return hmac.compare_digest(mac, base64.b64decode(digest))
    except (ValueError, TypeError):
        return False


def _wildcard(pattern: str) -> re.Pattern:
    """OpenSSH patterns: only `*` and `?` are special (brackets in `[host]:port` are literal)."""
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern.lower()))


def host_matches(patterns: str, name: str) -> bool:
    """Whether `name` matches a known_hosts host field (negated patterns veto)."""
    if patterns.startswith("|1|"):
        return _hashed_match(patterns, name)
    matched = False
    for pattern in patterns.split(","):
        negated = pattern.startswith("!")
        pattern = pattern[1:] if negated else pattern
        if _wildcard(pattern).fullmatch(name.lower()):
            if negated:
                return False
            matched = True
    return matched


@dataclass
class HostKeys:
    """What a known_hosts file says about one host."""

    keys: set[tuple[str, str]] = field(default_factory=set)
    """(key type, base64) pairs listed for the host."""
    revoked: set[tuple[str, str]] = field(default_factory=set)

    @property
    def types(self) -> set[str]:
        """Key types listed for the host."""
        return {t for t, _ in self.keys}

    def verdict(self, key_type: str, key_b64: str) -> str:
        """KNOWN, UNKNOWN (host not listed), CHANGED (listed, other key) or REVOKED."""
        if (key_type, key_b64) in self.revoked:
            return REVOKED
        if (key_type, key_b64) in self.keys:
            return KNOWN
        return CHANGED if self.keys else UNKNOWN


def read_host_keys(path: Path, name: str) -> HostKeys:
    """Every key a known_hosts file lists for `name` (see host_name); a missing file lists none."""
    found = HostKeys()
    try:
        text = Path(path).read_text(errors="replace")
    except FileNotFoundError:
        return found
    except OSError as err:  # a folder, unreadable: the user named the wrong thing
        raise DeployError(f"cannot read the known_hosts file {path}: {err.strerror or err}; pass --known-hosts "
                          "with the path of a file (OpenSSH's is ~/.ssh/known_hosts)") from err
    for line in text.splitlines():
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        marker = fields.pop(0) if fields[0].startswith("@") else None
        if len(fields) < 3 or marker not in (None, "@revoked"):
            continue
        hosts, key_type, key_b64 = fields[:3]
        if not host_matches(hosts, name):
            continue
        (found.revoked if marker == "@revoked" else found.keys).add((key_type, key_b64))
    return found


def append_host_key(path: Path, name: str, key_type: str, key_b64: str) -> None:
    """Add one line for the host at the end of the file; every other byte stays as it was."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _append(path, f"{name} {key_type} {key_b64}\n".encode())
    except OSError as err:
        raise DeployError(f"cannot record the host key in {path}: {err.strerror or err}; pass --known-hosts "
                          "with the path of a writable file") from err


def _append(path: Path, line: bytes) -> None:
    with open(path, "ab") as fh:
        if fh.tell() > 0:
            with open(path, "rb") as tail:
                tail.seek(-1, os.SEEK_END)
                if tail.read(1) != b"\n":
                    fh.write(b"\n")
        fh.write(line)
        fh.flush()
        os.fsync(fh.fileno())
