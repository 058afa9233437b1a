"""Ann signs her bundles with her SSH key; her boards run only what she (or whoever she trusts) signed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from device.layout import sha256_file
from device.manifest import EXIT_OK, EXIT_UNTRUSTED, load_bundle, write_manifest


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    folder = tmp_path_factory.mktemp("keys")
    for who in ("ann", "bob"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{who}@laptop", "-f",
                        str(folder / who)], check=True)
    return folder


def fingerprint(pub) -> str:
    out = subprocess.run(["ssh-keygen", "-l", "-f", str(pub)], capture_output=True, text=True, check=True).stdout
    return out.split()[1]


@pytest.fixture
def board(ssh_world, board_dir):
    folder = board_dir()
    target = ssh_world.target(ssh_world.servers[0])

    def edgerl(*args):
        return ssh_world.cli(*args, *ssh_world.ssh_flags(), "--board-dir", folder)

    def deploy(bundle):
        return edgerl("deploy", bundle, "--to", target)

    def current():
        link = folder / "current"
        return link.resolve().name if link.is_symlink() else None

    return type("Board", (), {"folder": folder, "target": target, "edgerl": staticmethod(edgerl),
                              "deploy": staticmethod(deploy), "current": staticmethod(current)})


def signed(bundles, tmp_path, ssh_world, key, kind="stacked", name=None):
    copy = tmp_path / (name or f"{kind}-{key.name}")
    shutil.copytree(bundles[kind], copy)
    done = ssh_world.cli("sign", copy, "--key", key)
    assert done.returncode == EXIT_OK, done.stderr
    assert (copy / "SHA256SUMS").is_file() and (copy / "SHA256SUMS.sig").is_file()
    probe = tmp_path / "probe"  # a file made as the user makes one: the sums are readable as it is (not 0600)
    probe.write_text("")
    assert (copy / "SHA256SUMS").stat().st_mode & 0o777 == probe.stat().st_mode & 0o777
    return copy


def test_a_board_without_a_trust_policy_runs_unsigned_releases_and_says_so(board, bundles):
    assert board.deploy(bundles["dqn"]).returncode == EXIT_OK
    status = json.loads(board.edgerl("status", "--on", board.target).stdout)
    assert status["trust"] == "no trust policy: unsigned releases accepted"


def test_once_ann_trusts_her_key_only_her_signed_releases_run(board, bundles, keys, ssh_world, tmp_path):
    assert board.deploy(bundles["dqn"]).returncode == EXIT_OK
    before = board.current()
    added = board.edgerl("trust", "--on", board.target, "--add", keys / "ann.pub")
    assert added.returncode == EXIT_OK, added.stderr
    assert fingerprint(keys / "ann.pub") in added.stdout and "signed releases only (1 key allowed)" in added.stdout

    unsigned = board.deploy(bundles["stacked"])
    assert unsigned.returncode == EXIT_UNTRUSTED, unsigned.stdout + unsigned.stderr
    assert "is unsigned and this board runs only signed releases" in unsigned.stderr
    assert board.current() == before

    by_bob = board.deploy(signed(bundles, tmp_path, ssh_world, keys / "bob"))
    assert by_bob.returncode == EXIT_UNTRUSTED and "signed by a key this board does not trust" in by_bob.stderr
    assert board.current() == before
    # The unsigned release that ran before the policy is not played either.
    played = board.edgerl("run", "--on", board.target, "--max-steps", "5", "--reports", tmp_path / "r")
    assert played.returncode == EXIT_UNTRUSTED and "refused by the board's trust policy" in played.stderr

    by_ann = board.deploy(signed(bundles, tmp_path, ssh_world, keys / "ann"))
    assert by_ann.returncode == EXIT_OK, by_ann.stdout + by_ann.stderr
    assert board.current() != before
    # Going back to the unsigned release is refused too: nothing unsigned runs once a policy is there.
    back = board.edgerl("rollback", "--on", board.target)
    assert back.returncode == EXIT_UNTRUSTED and "refused by the board's trust policy" in back.stderr
    assert "unsigned" in back.stderr and len(back.stderr.strip().splitlines()) == 1


def test_a_file_changed_after_signing_is_refused_however_well_its_checksums_were_redone(board, bundles, keys,
                                                                                           ssh_world, tmp_path):
    assert board.edgerl("trust", "--on", board.target, "--add", keys / "ann.pub").returncode == EXIT_OK
    bundle = signed(bundles, tmp_path, ssh_world, keys / "ann")
    manifest = load_bundle(bundle)
    golden = bundle / manifest.golden_file
    golden.write_bytes(golden.read_bytes() + b"\0")
    manifest.files[manifest.golden_file] = sha256_file(golden)  # the manifest is made to agree: only the signature
    write_manifest(bundle, manifest)                             # can tell
    changed = board.deploy(bundle)
    assert changed.returncode == EXIT_UNTRUSTED and "changed after signing" in changed.stderr
    # Editing the signed list as well breaks the signature itself.
    sums = bundle / "SHA256SUMS"
    lines = [line for line in sums.read_text().splitlines() if not line.endswith(manifest.golden_file)
             and not line.endswith("manifest.json")]
    lines += [f"{sha256_file(golden)}  {manifest.golden_file}", f"{sha256_file(bundle / 'manifest.json')}  "
              "manifest.json"]
    sums.write_text("\n".join(sorted(lines, key=lambda line: line.split()[1])) + "\n")
    resigned_list = board.deploy(bundle)
    assert resigned_list.returncode == EXIT_UNTRUSTED and "the signature does not verify" in resigned_list.stderr
    assert board.current() is None


def test_keys_rotate_new_added_first_then_the_old_removed(board, bundles, keys, ssh_world, tmp_path):
    trust = ("trust", "--on", board.target)
    assert board.edgerl(*trust, "--add", keys / "ann.pub").returncode == EXIT_OK
    both = board.edgerl(*trust, "--add", keys / "bob.pub")
    assert both.returncode == EXIT_OK and "2 keys allowed" in both.stdout
    assert board.deploy(signed(bundles, tmp_path, ssh_world, keys / "ann", "dqn")).returncode == EXIT_OK
    assert board.deploy(signed(bundles, tmp_path, ssh_world, keys / "bob")).returncode == EXIT_OK
    removed = board.edgerl(*trust, "--remove", fingerprint(keys / "ann.pub"))
    assert removed.returncode == EXIT_OK and "1 key allowed" in removed.stdout
    old_key = board.deploy(signed(bundles, tmp_path, ssh_world, keys / "ann", "lstm"))
    assert old_key.returncode == EXIT_UNTRUSTED and "does not trust" in old_key.stderr
    last = board.edgerl(*trust, "--remove", fingerprint(keys / "bob.pub"))
    assert last.returncode != EXIT_OK and "last trusted key" in last.stderr
    listed = board.edgerl(*trust)
    assert fingerprint(keys / "bob.pub") in listed.stdout and fingerprint(keys / "ann.pub") not in listed.stdout


def test_a_trust_file_edited_into_nonsense_refuses_everything_and_changes_nothing(board, bundles, keys, ssh_world,
                                                                                  tmp_path):
    assert board.edgerl("trust", "--on", board.target, "--add", keys / "ann.pub").returncode == EXIT_OK
    assert board.deploy(signed(bundles, tmp_path, ssh_world, keys / "ann", "dqn")).returncode == EXIT_OK
    before = board.current()
    policy = board.folder / "trust" / "allowed_signers"
    policy.write_text("ann@laptop this is not a key\n")
    refused = board.deploy(signed(bundles, tmp_path, ssh_world, keys / "ann"))
    assert refused.returncode == EXIT_UNTRUSTED and "unreadable at line 1" in refused.stderr
    assert board.current() == before
    edit = board.edgerl("trust", "--on", board.target, "--add", keys / "bob.pub")
    assert edit.returncode != EXIT_OK and "does not edit a policy it cannot read" in edit.stderr
    assert policy.read_text() == "ann@laptop this is not a key\n"
    status = json.loads(board.edgerl("status", "--on", board.target).stdout)
    assert status["trust"] == "trust policy unreadable: nothing runs"


def test_the_board_itself_refuses_an_unsigned_release_whatever_starts_it(board, bundles, keys):
    assert board.deploy(bundles["dqn"]).returncode == EXIT_OK
    release = board.folder / "current"
    (board.folder / "trust").mkdir()
    shutil.copy(keys / "ann.pub", board.folder / "trust" / "ann.pub")
    line = (keys / "ann.pub").read_text().split()
    (board.folder / "trust" / "allowed_signers").write_text(f'ann namespaces="edgerl-bundle" {line[0]} {line[1]}\n')
    selftest = subprocess.run([sys.executable, "-m", "device", "selftest", str(release / "bundle")],
                              capture_output=True, text=True)
    assert selftest.returncode == EXIT_UNTRUSTED and "is unsigned" in selftest.stderr
    serve = subprocess.run([sys.executable, "-m", "device", "serve", str(release), "--seconds", "1"],
                           capture_output=True, text=True)
    assert serve.returncode == EXIT_UNTRUSTED and "is unsigned" in serve.stderr


def test_a_signing_that_fails_leaves_the_bundle_signed_as_it_was(bundles, keys, ssh_world, tmp_path):
    # Ann re-signs with her passphrase key, on a machine with no agent and no terminal to ask it on.
    copy = signed(bundles, tmp_path, ssh_world, keys / "ann")
    before = {name: (copy / name).read_bytes() for name in ("SHA256SUMS", "SHA256SUMS.sig")}
    locked = tmp_path / "locked"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "a long passphrase", "-f", str(locked)], check=True)
    env = {k: v for k, v in os.environ.items() if k not in ("SSH_AUTH_SOCK", "SSH_ASKPASS", "DISPLAY")}
    done = subprocess.run([sys.executable, "-m", "host.cli", "sign", str(copy), "--key", str(locked)],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env, timeout=120,
                          start_new_session=True)  # no controlling terminal: ssh-keygen cannot ask
    assert done.returncode != EXIT_OK
    assert {name: (copy / name).read_bytes() for name in before} == before  # still signed by Ann
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "the bundle is unchanged" in lines[0], done.stderr
    assert not [p.name for p in copy.iterdir() if p.name.startswith(".sums-")]
