"""Pushing bundles to boards and running them there, by role.

    link/    the checked SSH connection and the targets it reaches (local: folders too)
    board/   what runs ON the board: stdlib only, shipped by digest with device's contract files
    *.py     the host's operations on one board: release, lock, install, service, signing, remote_run
    fleet/   many boards: inventory, waves, the fleet's table
    cli/     the `edgerl` board commands that drive them

Arrows run one way, down this list's order reversed: cli -> fleet -> one board -> link, board
(tests/test_layout.py holds it).
"""
