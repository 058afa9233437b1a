"""The board's trust policy ops: list, add and remove the keys whose signed bundles this board runs.

    python3 .board/<digest>/trust.py OP ARG...   ->  one JSON line (runner's contract)

Stdlib only, shipped with side.py. The policy is OpenSSH's
allowed_signers file at `<board>/trust/allowed_signers` (device/trust.py
reads it); every edit replaces it whole, fsynced, so a power cut leaves the
old policy or the new one. An unreadable policy is never rewritten by an
edit: it is refused, and the board keeps refusing releases until a person
fixes it.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from typing import Any

# Side by side on the board, top-level modules there; here the deploy.board package (a bare name could be anyone's).
if __package__:
    from deploy.board.durable import write_durably
    from deploy.board.runner import Refused, run_op
else:
    from durable import write_durably
    from runner import Refused, run_op

from device import trust

_SAFE = re.compile(r"[^A-Za-z0-9@._-]+")


def _policy(root: str) -> str:
    return os.path.join(root, trust.POLICY)


def _listing(root: str, signers: list[trust.Signer] | None) -> dict[str, Any]:
    if signers is None:
        return {"policy": None, "keys": [], "summary": "no trust policy: unsigned releases accepted"}
    keys = [{"principal": s.principals, "type": s.key_type, "fingerprint": s.fingerprint} for s in signers]
    return {"policy": _policy(root), "keys": keys,
            "summary": f"signed releases only ({len(keys)} key{'s' * (len(keys) != 1)} allowed)"}


def op_trust_list(root: str) -> dict[str, Any]:
    """The keys the board trusts; a policy that cannot be read is said so (and refuses every release)."""
    try:
        return _listing(root, trust.read_policy(_policy(root)))
    except trust.TrustError as err:
        return {"policy": _policy(root), "keys": [], "summary": "trust policy unreadable: nothing runs",
                "problem": str(err)}


def _write(root: str, signers: list[trust.Signer]) -> None:
    os.makedirs(os.path.dirname(_policy(root)), exist_ok=True)
    write_durably(_policy(root), "".join(s.line() + "\n" for s in signers))


def _readable(root: str) -> list[trust.Signer]:
    try:
        return trust.read_policy(_policy(root)) or []
    except trust.TrustError as err:
        raise Refused(f"{err}; edgerl does not edit a policy it cannot read") from err


def op_trust_add(root: str, public_key: str) -> dict[str, Any]:
    """Allow one more key (an OpenSSH public key line: type, base64, comment)."""
    words = public_key.split()
    if len(words) < 2 or words[0] not in trust.KEY_TYPES:
        raise Refused("that is not an OpenSSH public key (expected a KEY.pub line: type base64 [comment])")
    principal = _SAFE.sub("-", words[2] if len(words) > 2 else "").strip("-") or "edgerl-signer"
    try:
        signer = trust.parse_signer(f'{principal} namespaces="{trust.NAMESPACE}" {words[0]} {words[1]}')
    except ValueError as err:
        raise Refused(f"that public key is damaged: {err}") from err
    signers = _readable(root)
    if any(s.key == signer.key for s in signers):
        return {**_listing(root, signers), "added": None}
    _write(root, [*signers, signer])
    return {**_listing(root, [*signers, signer]), "added": signer.fingerprint}


def op_trust_remove(root: str, fingerprint: str) -> dict[str, Any]:
    """Stop trusting one key, by its SHA256 fingerprint; the last key cannot go (nothing would run)."""
    signers = _readable(root)
    kept = [s for s in signers if s.fingerprint != fingerprint]
    if len(kept) == len(signers):
        raise Refused(f"no trusted key has the fingerprint {fingerprint} (`edgerl trust --on BOARD` lists them)")
    if not kept:
        raise Refused("that is the board's last trusted key: add the new key first (a board with a trust policy "
                      "and no key would run nothing)")
    _write(root, kept)
    return {**_listing(root, kept), "removed": fingerprint}


OPS: dict[str, Callable[..., dict[str, Any] | None]] = {
    "trust-list": op_trust_list, "trust-add": op_trust_add, "trust-remove": op_trust_remove,
}


if __name__ == "__main__":
    sys.exit(run_op(OPS, sys.argv[1:]))
