"""Signed bundles and the board's trust policy, checked with OpenSSH's own `ssh-keygen -Y` (stdlib only).

A signed bundle carries `SHA256SUMS` (manifest.json and every file the
manifest names, with their sha256) and `SHA256SUMS.sig`, an SSH signature
of it in the namespace `edgerl-bundle` (`edgerl sign`). A board has a trust
policy once `<board>/trust/allowed_signers` exists (`edgerl trust`): from
then on a release under that board folder runs only if its signature
verifies against a key there and every file of its bundle still matches the
signed list. A board without the file accepts unsigned releases, as before.
An unreadable policy refuses everything: failing closed is the point.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from device.in_use import hold
from device.layout import INCOMING, RELEASES, format_sums, parse_sums, sha256_file
from device.manifest import EXIT_FAILED_CHECK, EXIT_UNTRUSTED, MANIFEST, BundleError, EdgerlError, Manifest, load_bundle

NAMESPACE = "edgerl-bundle"
BUNDLE_SUMS = "SHA256SUMS"
SIGNATURE = "SHA256SUMS.sig"
POLICY = os.path.join("trust", "allowed_signers")
"""The trust policy, relative to the board folder (OpenSSH's allowed_signers format)."""

KEY_TYPES = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-rsa",
             "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com")
_PRINCIPALS = re.compile(r"^[A-Za-z0-9@._*?,+-]+$")


class TrustError(EdgerlError):
    """The board's trust policy refuses the release, or cannot be read; nothing of the release runs."""

    exit_code = EXIT_UNTRUSTED


@dataclass(frozen=True)
class Signer:
    """One line of allowed_signers."""

    principals: str
    key_type: str
    key: str
    options: str = ""

    @property
    def fingerprint(self) -> str:
        """OpenSSH's SHA256 fingerprint of the key (what `ssh-keygen -l` prints)."""
        return fingerprint(self.key)

    def line(self) -> str:
        """The allowed_signers line."""
        return " ".join(w for w in (self.principals, self.options, self.key_type, self.key) if w)


def fingerprint(key_base64: str) -> str:
    """`SHA256:...` of a base64 public key blob."""
    digest = hashlib.sha256(base64.b64decode(key_base64)).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def parse_signer(line: str) -> Signer:
    """One allowed_signers line, or ValueError naming what is wrong with it."""
    words = line.split()
    at = next((i for i, w in enumerate(words) if w in KEY_TYPES), None)
    if at is None or at == 0 or at + 1 >= len(words):
        raise ValueError("expected `principals [options] key-type base64-key`")
    if not _PRINCIPALS.match(words[0]):
        raise ValueError(f"bad principals {words[0]!r}")
    try:
        blob = base64.b64decode(words[at + 1], validate=True)
    except ValueError as err:
        raise ValueError("the key is not base64") from err
    if not blob.startswith(len(words[at]).to_bytes(4, "big") + words[at].encode()):
        raise ValueError(f"the key is not a {words[at]} key")
    return Signer(words[0], words[at], words[at + 1], " ".join(words[1:at]))


def read_policy(path: str) -> list[Signer] | None:
    """The policy's signers; None when there is no policy; TrustError when it cannot be read."""
    if not os.path.lexists(path):
        return None
    try:
        with open(path) as fh:
            lines = fh.read().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise TrustError(f"the board's trust policy {path} cannot be read ({err}); nothing runs until it is "
                         "fixed (edgerl trust --on BOARD --add KEY.pub rewrites it)") from err
    signers = []
    for number, line in enumerate(lines, 1):
        if line.strip() and not line.lstrip().startswith("#"):
            try:
                signers.append(parse_signer(line))
            except ValueError as err:
                raise TrustError(f"the board's trust policy {path} is unreadable at line {number} ({err}); "
                                 "nothing runs until it is fixed by hand or rewritten") from err
    return signers


def board_root(bundle_dir: str | os.PathLike[str]) -> str | None:
    """The board folder a bundle sits in (`<board>/releases|incoming/<id>/bundle`), or None outside one."""
    bundle = os.path.realpath(bundle_dir)
    release = os.path.dirname(bundle)
    kind = os.path.dirname(release)
    if os.path.basename(kind) in (RELEASES, INCOMING):
        return os.path.dirname(kind)
    return None


def bundle_sums(bundle: Path, files: list[str]) -> str:
    """The SHA256SUMS text a signature covers: manifest.json and the manifest's files."""
    return format_sums({name: sha256_file(bundle / name) for name in [MANIFEST, *files]})


def _keygen(args: list[str], stdin: bytes) -> subprocess.CompletedProcess:
    exe = shutil.which("ssh-keygen")
    if exe is None:
        raise TrustError("this board has a trust policy but no ssh-keygen to check signatures with; install "
                         "OpenSSH's client (apt-get install openssh-client)")
    return subprocess.run([exe, *args], input=stdin, capture_output=True, timeout=60)


def check_signed(bundle: Path, policy: str, manifest_files: list[str]) -> str:
    """Verify the bundle's signature against the policy and its files against the signed list; the signer."""
    name = bundle.parent.name
    signers = read_policy(policy)
    if signers is None:
        return "unsigned releases accepted"
    if not signers:
        raise TrustError(f"the board's trust policy {policy} allows no key; add one with edgerl trust --add")
    sig, sums = bundle / SIGNATURE, bundle / BUNDLE_SUMS
    if not sig.is_file() or not sums.is_file():
        raise TrustError(f"release {name} is unsigned and this board runs only signed releases: sign the bundle "
                         "with `edgerl sign BUNDLE --key KEY` (a key its trust policy allows) and deploy again")
    found = _keygen(["-Y", "find-principals", "-s", str(sig), "-f", policy], b"")
    principal = found.stdout.decode().strip().splitlines()[0] if found.returncode == 0 and found.stdout else None
    if principal is None:
        raise TrustError(f"release {name} is signed by a key this board does not trust; sign it with a key its "
                         "trust policy allows (edgerl trust --on BOARD lists them)")
    text = sums.read_bytes()
    verified = _keygen(["-Y", "verify", "-f", policy, "-I", principal, "-n", NAMESPACE, "-s", str(sig)], text)
    if verified.returncode != 0:
        raise TrustError(f"release {name}: its SHA256SUMS was changed after signing (the signature does not "
                         "verify); sign it again and deploy")
    listed = parse_sums(text.decode(errors="replace"))
    wanted = {MANIFEST, *manifest_files}
    if set(listed) != wanted:
        odd = sorted(set(listed) ^ wanted)
        raise TrustError(f"release {name}: the signed file list does not match the bundle ({', '.join(odd[:3])}); "
                         "sign the bundle again")
    changed = [n for n, digest in sorted(listed.items()) if not (bundle / n).is_file()
               or sha256_file(bundle / n) != digest]
    if changed:
        raise TrustError(f"release {name}: {', '.join(changed[:3])} changed after signing; nothing of it ran. "
                         "Deploy the bundle as signed, or sign it again")
    return f"signed by {principal}"


def check_release(bundle_dir: str | os.PathLike[str], manifest_files: list[str]) -> str | None:
    """For a bundle inside a board folder with a trust policy: raise TrustError unless it is signed and intact."""
    root = board_root(bundle_dir)
    if root is None:
        return None
    return check_signed(Path(bundle_dir), os.path.join(root, POLICY), manifest_files)


ALLOW_UNVERIFIED = "EDGERL_ALLOW_UNVERIFIED"
"""Set to 1 (or pass `--allow-unverified`) to run a bundle whose verification failed: for debugging it only."""


class UnverifiedBundle(BundleError):
    """The bundle's own manifest records that its exported model disagrees with the policy it came from."""

    exit_code = EXIT_FAILED_CHECK


def check_verified(bundle: Path, manifest: Manifest, allow: bool = False) -> None:
    """Refuse a bundle whose recorded parity failed (one exported without verification has none: not refused)."""
    parity = manifest.parity or {}
    if parity.get("ok") is not False or allow or os.environ.get(ALLOW_UNVERIFIED) == "1":
        return
    failed = [name for name, fig in parity.get("backends", {}).items() if not fig.get("ok", True)]
    raise UnverifiedBundle(f"{bundle}: its verification failed ({', '.join(failed) or 'a backend'} disagreed with "
                           f"the {parity.get('reference', 'reference')} policy, figures in its manifest), so it does "
                           "not act as the policy it came from; re-export it, or pass --allow-unverified to debug it")


def load_trusted(bundle: Path, allow_unverified: bool = False) -> Manifest:
    """What the board runs from: the bundle, its verification passed, its signature where the board trusts keys.

    A deployed release's bundle is held in use first (device/in_use.py): no deploy prunes it while this process runs.
    """
    hold(bundle)
    manifest = load_bundle(bundle)
    check_verified(bundle, manifest, allow_unverified)
    check_release(bundle, list(manifest.files))
    return manifest
