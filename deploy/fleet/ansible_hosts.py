"""Ansible's own reading of an inventory, as JSON: run in a process of its own by `deploy.fleet.inventory`.

    python -m deploy.fleet.ansible_hosts INVENTORY [LIMIT]  ->  {"hosts": [[name, {vars}, [groups]], ...]}
                                                          or {"error": "<Ansible's first line>"}

A process of its own because importing Ansible patches the interpreter
(`sys.intern` among others), which breaks torch imported after it in the
same process. The hosts come in the inventory's order, with the variables
Ansible's precedence gives them (host_vars/ and group_vars/ included) and
`--limit` applied by Ansible's own pattern matching.
"""

from __future__ import annotations

import json
import os
import sys


def main(argv: list[str]) -> int:
    """Print the hosts of `argv[0]`, limited by `argv[1]` when given."""
    # Read when Ansible is first imported: a source it cannot parse is an error, not a warning.
    os.environ.setdefault("ANSIBLE_INVENTORY_UNPARSED_FAILED", "True")
    os.environ.setdefault("ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED", "True")
    os.environ.setdefault("ANSIBLE_LOCALHOST_WARNING", "False")
    from ansible.errors import AnsibleError
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader
    from ansible.vars.manager import VariableManager

    try:
        loader = DataLoader()
        inventory = InventoryManager(loader=loader, sources=[argv[0]])
        variables = VariableManager(loader=loader, inventory=inventory)
        if len(argv) > 1 and argv[1]:
            inventory.subset(argv[1])
        hosts = [[h.name, _plain(variables.get_vars(host=h, include_hostvars=False)),
                  [g.name for g in h.get_groups() if g.name != "all"]] for h in inventory.get_hosts("all")]
    except AnsibleError as err:
        text = str(err).strip()
        print(json.dumps({"error": text.splitlines()[0] if text else type(err).__name__}))
        return 0
    print(json.dumps({"hosts": hosts}))
    return 0


def _plain(hostvars: dict) -> dict:
    """The variables a Board is made of, as plain JSON (Ansible's own types stay here)."""
    return {k: v if isinstance(v, (str, int, float, bool)) or v is None else str(v)
            for k, v in hostvars.items() if k.startswith(("ansible_", "edgerl_"))}


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
