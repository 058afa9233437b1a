"""edgerl as an Ansible collection: `edgerl.board`'s plugins call the board steps in steps.py."""
