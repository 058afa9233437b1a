"""Small board-side operations: constant Python code, run as `python3 -c CODE ARG...`.

The code never changes with user input; paths travel as argv words, so no
path can inject anything. Only the board's stdlib is needed.
"""

from __future__ import annotations

VERIFY = r"""
import hashlib, os, sys
root = sys.argv[1]
bad = []
for line in open(os.path.join(root, "SHA256SUMS")):
    digest, name = line.rstrip("\n").split("  ", 1)
    path = os.path.join(root, name)
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    except OSError:
        bad.append(name); continue
    if h.hexdigest() != digest:
        bad.append(name)
for name in bad:
    try: os.remove(os.path.join(root, name))
    except OSError: pass
print("\n".join(bad))
sys.exit(1 if bad else 0)
"""

ROLLBACK = r"""
import os, sys
root = sys.argv[1]
current, previous = os.path.join(root, "current"), os.path.join(root, "previous")
if not os.path.islink(previous) or not os.path.isdir(os.path.join(root, os.readlink(previous))):
    print("no previous release to roll back to"); sys.exit(1)
old_cur, old_prev = os.readlink(current), os.readlink(previous)
for link, target in ((current, old_prev), (previous, old_cur)):
    tmp = link + ".tmp-%d" % os.getpid()
    os.symlink(target, tmp)
    os.replace(tmp, link)
print(old_prev)
"""

STATUS = r"""
import json, os, platform, sys
root = sys.argv[1]
def link(name):
    p = os.path.join(root, name)
    return os.path.basename(os.readlink(p)) if os.path.islink(p) else None
def ls(name):
    p = os.path.join(root, name)
    return sorted(os.listdir(p)) if os.path.isdir(p) else []
print(json.dumps({"current": link("current"), "previous": link("previous"), "releases": ls("releases"),
                  "venvs": ls("venvs"), "machine": platform.machine(),
                  "python": "%d.%d" % sys.version_info[:2], "locked": os.path.isdir(os.path.join(root, ".lock"))}))
"""

PROBE = r"""
import json, platform, shutil, sys, os
root = sys.argv[1]
os.makedirs(root, exist_ok=True)
du = shutil.disk_usage(root)
print(json.dumps({"machine": platform.machine(), "python": "%d.%d" % sys.version_info[:2],
                  "free_bytes": du.free, "home": os.path.expanduser("~")}))
"""

LOCK = r"""
import os, sys, time
lock = sys.argv[1]
os.makedirs(os.path.dirname(lock), exist_ok=True)
try:
    os.mkdir(lock)
except FileExistsError:
    try: since = time.ctime(os.path.getmtime(lock))
    except OSError: since = "?"
    print(since); sys.exit(3)
with open(os.path.join(lock, "owner"), "w") as fh:
    fh.write(sys.argv[2])
"""

UNLOCK = r"""
import shutil, sys
shutil.rmtree(sys.argv[1], ignore_errors=True)
"""

BEGIN = r"""
import json, os, platform, shutil, sys, time
# One round trip at the start of a deploy: lock, probe, and what is already there.
root, release, venv_key, owner = sys.argv[1:5]
os.makedirs(root, exist_ok=True)
lock = os.path.join(root, ".lock")
try:
    os.mkdir(lock)
except FileExistsError:
    try: since = time.ctime(os.path.getmtime(lock))
    except OSError: since = "?"
    print(json.dumps({"locked_since": since})); sys.exit(0)
with open(os.path.join(lock, "owner"), "w") as fh:
    fh.write(owner)
sums = {}
try:
    for line in open(os.path.join(root, "current", "SHA256SUMS")):
        digest, name = line.rstrip("\n").split("  ", 1)
        sums[name] = digest
except OSError:
    pass
du = shutil.disk_usage(root)
print(json.dumps({"machine": platform.machine(), "python": "%d.%d" % sys.version_info[:2], "free_bytes": du.free,
                  "release_verified": os.path.isfile(os.path.join(root, "releases", release, ".verified")),
                  "current_sums": sums}))
"""

PREPARE = r"""
import json, os, sys
# Link unchanged files from current, make folders, and report which files still need bytes (and how many
# bytes of each a partial upload already holds).
current, staging, linkable, needed = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
todo = {}
for name in linkable + needed:
    dst = os.path.join(staging, name)
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    if os.path.exists(dst):
        continue
    if name in linkable:
        try:
            os.link(os.path.join(current, name), dst); continue
        except OSError:
            pass
    part = dst + ".part"
    todo[name] = os.path.getsize(part) if os.path.exists(part) else 0
print(json.dumps(todo))
"""

FINISH = r"""
import json, os, shutil, sys
# Move the verified release into place, link its venv, switch current (keeping previous), prune, unlock.
root, release, staging, venv_key, keep = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
rels = os.path.join(root, "releases")
rel_dir = os.path.join(rels, release)
os.makedirs(rels, exist_ok=True)
if staging != "-":
    shutil.rmtree(rel_dir, ignore_errors=True)
    os.rename(staging, rel_dir)
    open(os.path.join(rel_dir, ".verified"), "w").close()
def relink(link, target):
    tmp = link + ".tmp-%d" % os.getpid()
    os.symlink(target, tmp)
    os.replace(tmp, link)
relink(os.path.join(rel_dir, "venv"), os.path.join("..", "..", "venvs", venv_key))
current, previous = os.path.join(root, "current"), os.path.join(root, "previous")
new = os.path.join("releases", release)
old = os.readlink(current) if os.path.islink(current) else None
if old and old != new:
    relink(previous, old)
relink(current, new)
pinned = {os.path.basename(os.readlink(l)) for l in (current, previous) if os.path.islink(l)}
names = sorted(os.listdir(rels), key=lambda n: os.path.getmtime(os.path.join(rels, n)), reverse=True)
pruned, kept = [], 0
for name in names:
    if name in pinned:
        continue
    if kept < keep - len(pinned):
        kept += 1
        continue
    shutil.rmtree(os.path.join(rels, name), ignore_errors=True)
    pruned.append(name)
shutil.rmtree(os.path.join(root, ".lock"), ignore_errors=True)
print(json.dumps({"previous": old, "pruned": pruned}))
"""
