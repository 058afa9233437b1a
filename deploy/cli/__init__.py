"""The `edgerl` board and fleet commands (deploy, run, status, rollback, service, sign, trust).

host/cli.py owns the one `edgerl` parser: it adds these commands' options (options.py) and dispatches to
commands.py, which paramiko's import makes the deploy extra's.
"""
