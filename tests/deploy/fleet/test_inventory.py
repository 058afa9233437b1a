"""The boards a user keeps in an Ansible inventory, read by Ansible itself; what edgerl cannot honour is refused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from deploy.fleet.inventory import InventoryError, load_boards
from deploy.link.targets import DeployError

REPO = Path(__file__).resolve().parents[3]


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_an_ini_inventory_with_groups_children_ranges_and_vars_becomes_boards_in_its_order(tmp_path):
    inv = write(tmp_path, "hosts.ini", "[canary]\npi01.lab ansible_host=10.0.0.1 ansible_port=2222\n\n"
                                       "[rest]\npi[02:04].lab\n\n[rest:vars]\nansible_user=pi\n\n"
                                       "[lab:children]\ncanary\nrest\n\n[lab:vars]\nansible_user=root\n")
    write(tmp_path, "host_vars/pi03.lab.yml", "ansible_ssh_private_key_file: ~/.ssh/lab_key\n")
    write(tmp_path, "group_vars/rest.yml", "edgerl_board_dir: /srv/edgerl\n")
    boards = load_boards([], inv)
    assert [b.name for b in boards] == ["pi01.lab", "pi02.lab", "pi03.lab", "pi04.lab"]
    # The more specific group's vars win over its parent's, as Ansible decides.
    assert [b.target for b in boards] == ["root@10.0.0.1:2222", "pi@pi02.lab", "pi@pi03.lab", "pi@pi04.lab"]
    assert boards[2].identity == Path("~/.ssh/lab_key").expanduser() and boards[1].identity is None
    assert [b.board_dir for b in boards] == [None, "/srv/edgerl", "/srv/edgerl", "/srv/edgerl"]
    assert set(boards[0].groups) == {"canary", "lab"}


def test_a_yaml_inventory_and_limit_patterns(tmp_path):
    inv = write(tmp_path, "hosts.yml", "all:\n  children:\n    canary:\n      hosts:\n        a1:\n"
                                       "          ansible_host: 127.0.0.1\n          ansible_port: 2201\n"
                                       "    rest:\n      hosts:\n        b[1:3]:\n      vars:\n"
                                       "        ansible_user: pi\n")
    assert [b.name for b in load_boards([], inv)] == ["a1", "b1", "b2", "b3"]
    assert [b.name for b in load_boards([], inv, "rest:!b2")] == ["b1", "b3"]
    assert [b.target for b in load_boards([], inv, "canary")] == ["127.0.0.1:2201"]
    with pytest.raises(InventoryError, match="has no hosts matching --limit 'nothing'"):
        load_boards([], inv, "nothing")


@pytest.mark.parametrize("line, refusal", [
    ("pi01 ansible_password=hunter2", "ansible_password gives a password, which edgerl never uses"),
    ("pi01 ansible_become_pass=x", "ansible_become_pass gives a password"),
    ("pi01 ansible_connection=winrm", "ansible_connection=winrm is not something edgerl can use"),
    ("pi01 ansible_ssh_common_args='-o ProxyJump=bastion'", "ansible_ssh_common_args gives extra ssh arguments"),
    ("pi01 ansible_host_key_checking=false", "edgerl always checks host keys"),
    ("pi01 ansible_connection=local", "ansible_connection=local needs edgerl_board_dir"),
    ("pi01 ansible_port=99999", "is not a TCP port"),
])
def test_connection_settings_edgerl_cannot_honour_are_refused_in_one_line(tmp_path, line, refusal):
    inv = write(tmp_path, "hosts.ini", f"[lab]\n{line}\n")
    with pytest.raises(DeployError, match="host pi01") as err:
        load_boards([], inv)
    assert refusal in str(err.value) and "\n" not in str(err.value)


def test_a_local_host_and_a_bare_list_of_targets(tmp_path):
    inv = write(tmp_path, "hosts.ini", f"[here]\nbench ansible_connection=local edgerl_board_dir={tmp_path}/b\n")
    assert [b.target for b in load_boards([], inv)] == [f"local:{tmp_path}/b"]
    bare = write(tmp_path, "boards.txt", "# one per line\npi@10.0.0.5\nlocal:/tmp/x\nlab-alias\n")
    assert [b.target for b in load_boards(["pi@10.0.0.9:2200"], bare)] == [
        "pi@10.0.0.9:2200", "pi@10.0.0.5", "local:/tmp/x", "lab-alias"]
    with pytest.raises(InventoryError, match="listed more than once"):
        load_boards(["lab-alias"], bare)
    with pytest.raises(InventoryError, match="--limit needs an Ansible inventory"):
        load_boards([], bare, "lab")


def test_a_file_ansible_cannot_parse_is_one_line(tmp_path):
    inv = write(tmp_path, "hosts.yml", "all: [this, is: not an inventory\n")
    with pytest.raises(InventoryError, match="Ansible cannot read inventory"):
        load_boards([], inv)


def test_without_the_fleet_extra_an_ansible_file_names_the_extra_and_a_bare_list_still_works(tmp_path):
    inv = write(tmp_path, "hosts.ini", "[lab]\npi01 ansible_host=127.0.0.1\n")
    bare = write(tmp_path, "boards", "pi@127.0.0.1:1\n")
    # ansible-core absent: its import fails, as it does where the extra was not installed.
    program = ("import sys; sys.modules['ansible'] = None; from host.cli import main; "
               "sys.exit(main(sys.argv[1:]))")
    cli = [sys.executable, "-c", program, "status", "--known-hosts", str(tmp_path / "kh"), "--silence-timeout", "2"]
    refused = subprocess.run([*cli, "--inventory", str(inv)], capture_output=True, text=True, cwd=REPO)
    assert refused.returncode == 2
    assert refused.stderr.strip() == (f"error: {inv} is an Ansible inventory, which edgerl reads with Ansible "
                                      "itself: pip install 'edgerl[fleet]' (ansible-core), or list one TARGET per "
                                      "line")
    listed = subprocess.run([*cli, "--inventory", str(bare), "--json"], capture_output=True, text=True, cwd=REPO)
    assert '"board": "pi@127.0.0.1:1"' in listed.stdout and '"answered": false' in listed.stdout
