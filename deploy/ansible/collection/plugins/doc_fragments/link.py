"""How every module of edgerl.board reaches its board: the options they share (extends_documentation_fragment)."""


class ModuleDocFragment:
    """edgerl's own checked SSH link, to the host the inventory's connection variables name."""

    DOCUMENTATION = r"""
options:
  known_hosts:
    description: The known_hosts file the board's key is checked against (an unknown or changed key is refused).
    type: path
    default: ~/.ssh/known_hosts
  ssh_config:
    description: The ssh config read for aliases.
    type: path
    default: ~/.ssh/config
  silence_timeout:
    description: Seconds without an answer from the board before the step gives up.
    type: float
    default: 60
notes:
  - >-
    Runs on the controller (an action plugin), so the Python that runs Ansible must hold edgerl
    (C(pip install edgerl[deploy])), as an AWX execution environment would. The host's ansible_host, ansible_port,
    ansible_user, ansible_ssh_private_key_file and edgerl_board_dir say where the board and its folder are.
"""

    RELEASE = r"""
options:
  bundle: {description: The bundle folder on the controller (C(edgerl export) wrote it)., type: path, required: true}
  keep: {description: Releases kept on the board (current and previous always are)., type: int, default: 3}
  wheelhouse: {description: Download the venv's wheels on the controller and install them offline., type: bool,
               default: false}
"""
    """What a step that puts a release on the board takes (`release`, `service`): edgerl.board.link.release."""
