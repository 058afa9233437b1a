"""The user's ~/.ssh files: read as OpenSSH reads them, known_hosts only ever appended to, proxies honoured."""

import base64
import hashlib
import hmac
import os
import stat
import sys

import pytest

from deploy.link.ssh import SshOptions, SshTarget
from deploy.link.targets import DeployError
from deploy.release import status

RELAY = """
import socket, sys, threading
# ProxyCommand stand-in for `nc`: stdin/stdout <-> a TCP connection.
s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
def pump():
    while True:
        data = s.recv(65536)
        if not data:
            break
        sys.stdout.buffer.write(data); sys.stdout.buffer.flush()
threading.Thread(target=pump, daemon=True).start()
while True:
    data = sys.stdin.buffer.read1(65536)
    if not data:
        break
    s.sendall(data)
"""


def _hashed(name: str) -> str:
    salt = os.urandom(20)
    mac = hmac.new(salt, name.encode(), hashlib.sha1).digest()
    return f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(mac).decode()}"


def _rich_known_hosts(ssh_world):
    # What users' files hold: comments, blank lines, security-key and certificate-authority lines, revocations.
    other = ssh_world.servers[1].host_pub
    return (
        "# work machines\n\n"
        "gitlab.example.com sk-ssh-ed25519@openssh.com AAAAGnNrLXNzaC1lZDI1NTE5QG9wZW5zc2guY29tAAAAIExample\n"
        f"@cert-authority *.example.com {other}\n"
        f"@revoked old.example.com {other}\n"
        "weird line that is not a key\n"
        f"{_hashed('somewhere.example.com')} {other}"  # no newline at the end, as some editors leave it
    )


def test_accept_new_appends_one_line_and_leaves_every_other_byte(ssh_world, board_dir, tmp_path):
    board = board_dir()
    server = ssh_world.servers[0]
    known = tmp_path / "known_hosts"
    original = _rich_known_hosts(ssh_world)
    known.write_text(original)
    flags = ["--known-hosts", known, "--ssh-config", ssh_world.ssh_config, "-i", ssh_world.key]
    run = ssh_world.cli("status", "--on", ssh_world.target(server), "--board-dir", board, "--accept-new", *flags)
    assert run.returncode == 0, run.stderr
    after = known.read_text()
    assert after.startswith(original + "\n")
    added = after[len(original) + 1:]
    assert added == f"[127.0.0.1]:{server.port} {server.host_pub}\n"
    # Now known: checked without --accept-new, and the file is not touched again.
    assert ssh_world.cli("status", "--on", ssh_world.target(server), "--board-dir", board, *flags).returncode == 0
    assert known.read_text() == after


def test_cert_authority_and_revoked_lines_for_other_hosts_do_not_get_in_the_way(ssh_world, board_dir, tmp_path):
    board = board_dir()
    server = ssh_world.servers[0]
    known = tmp_path / "known_hosts"
    known.write_text(_rich_known_hosts(ssh_world) + "\n" + ssh_world.known_line(server))
    flags = ["--known-hosts", known, "--ssh-config", ssh_world.ssh_config, "-i", ssh_world.key]
    for command in (["status"], ["rollback"], ["run", "--max-steps", "5"]):
        run = ssh_world.cli(*command, "--on", ssh_world.target(server), "--board-dir", board, *flags)
        assert "Traceback" not in run.stderr, run.stderr
        assert "known_hosts" not in run.stderr and "host key" not in run.stderr, run.stderr


def test_a_host_listed_with_its_old_and_current_keys_is_accepted_and_a_revoked_key_refused(ssh_world, board_dir,
                                                                                         tmp_path):
    board = board_dir()
    server, other = ssh_world.servers
    known = tmp_path / "known_hosts"
    name = f"[127.0.0.1]:{server.port}"
    known.write_text(f"{name} {other.host_pub}\n{_hashed(name)} {server.host_pub}\n")
    opts = SshOptions(known_hosts=known, ssh_config=ssh_world.ssh_config, identity=ssh_world.key,
                      board_dir=str(board))
    with SshTarget(ssh_world.user, "127.0.0.1", server.port, opts) as target:
        assert status(target)["locked"] is False
    known.write_text(known.read_text() + f"@revoked * {server.host_pub}\n")
    with pytest.raises(DeployError, match="@revoked"):
        SshTarget(ssh_world.user, "127.0.0.1", server.port, opts)


def test_an_alias_from_an_included_config_file_is_honoured(ssh_world, board_dir, tmp_path):
    board = board_dir()
    server = ssh_world.servers[0]
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "boards.conf").write_text(
        f"Host included-board\n  HostName 127.0.0.1\n  Port {server.port}\n  User {ssh_world.user}\n")
    config = tmp_path / "config"
    config.write_text(f"Include {tmp_path}/conf.d/*.conf\n")
    run = ssh_world.cli("status", "--on", "included-board", "--board-dir", board, "--known-hosts",
                        ssh_world.known_hosts, "--ssh-config", config, "-i", ssh_world.key)
    assert run.returncode == 0, run.stderr


def _ns_config(tmp_path, ssh_world, nb, body):
    config = tmp_path / "ns_config"
    config.write_text(body)
    known = tmp_path / "known_ns"
    # Through a proxy the board is reached at its address inside the namespace: 127.0.0.1 port 22 there.
    known.write_text(nb.known_hosts.read_text() + f"127.0.0.1 {nb.sshd.host_pub}\n")
    return ["--known-hosts", known, "--ssh-config", config, "-i", ssh_world.key, "--board-dir", nb.board]


def test_proxy_jump_goes_through_the_bastion(ssh_world, netns_board, tmp_path):
    # The board listens on 127.0.0.1 *inside* the namespace: only a hop into the namespace can reach it.
    nb = netns_board
    flags = _ns_config(tmp_path, ssh_world, nb, f"Host bastion\n  HostName {nb.address}\n  User {ssh_world.user}\n"
                                                f"Host inner\n  HostName 127.0.0.1\n  User {ssh_world.user}\n"
                                                "  ProxyJump bastion\n")
    run = ssh_world.cli("status", "--on", "inner", *flags)
    assert run.returncode == 0, run.stderr
    # Direct, the same name is this machine's loopback, where no sshd listens on port 22.
    direct = ssh_world.cli("status", "--on", f"{ssh_world.user}@127.0.0.1", *flags[:2], "--ssh-config",
                           tmp_path / "none", *flags[4:])
    assert direct.returncode == 2 and "cannot reach" in direct.stderr


def test_proxy_command_carries_the_connection(ssh_world, netns_board, tmp_path):
    nb = netns_board
    relay = tmp_path / "relay.py"
    relay.write_text(RELAY)
    relay.chmod(relay.stat().st_mode | stat.S_IXUSR)
    flags = _ns_config(tmp_path, ssh_world, nb,
                       f"Host inner\n  HostName 127.0.0.1\n  User {ssh_world.user}\n"
                       f"  ProxyCommand ip netns exec {nb.netns} {sys.executable} {relay} %h %p\n")
    run = ssh_world.cli("status", "--on", "inner", *flags)
    assert run.returncode == 0, run.stderr


@pytest.mark.parametrize("where", ["target", "config"])
def test_a_port_out_of_range_is_refused_not_wrapped(ssh_world, tmp_path, where):
    config = tmp_path / "config"
    config.write_text("Host far\n  HostName 127.0.0.1\n  Port 123013\n")
    on = "far" if where == "config" else "root@127.0.0.1:123013"
    run = ssh_world.cli("status", "--on", on, "--ssh-config", config, "--known-hosts", ssh_world.known_hosts)
    assert run.returncode == 2 and "123013" in run.stderr and "1-65535" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1


def test_known_hosts_patterns_as_openssh_reads_them():
    from deploy.link.known_hosts import host_matches

    assert host_matches("[10.0.0.5]:2222", "[10.0.0.5]:2222")
    assert not host_matches("[10.0.0.5]:2222", "[10.0.0.5]:22")
    assert host_matches("pi-*.lan,!pi-bad.lan", "pi-kitchen.lan")
    assert not host_matches("pi-*.lan,!pi-bad.lan", "pi-bad.lan")
    assert host_matches("10.0.0.?", "10.0.0.7") and not host_matches("10.0.0.?", "10.0.0.17")
    assert host_matches(_hashed("board.lan"), "board.lan") and not host_matches(_hashed("board.lan"), "other.lan")


def test_a_known_hosts_path_that_is_a_folder_is_one_line(ssh_world, tmp_path):
    folder = tmp_path / "known_hosts.d"
    folder.mkdir()
    run = ssh_world.cli("status", "--on", ssh_world.target(ssh_world.servers[0]), "--known-hosts", folder,
                        "--ssh-config", ssh_world.ssh_config, "-i", ssh_world.key)
    assert run.returncode == 2, run.stderr
    assert run.stderr.startswith("error: cannot read the known_hosts file") and "Is a directory" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1 and "Traceback" not in run.stderr
