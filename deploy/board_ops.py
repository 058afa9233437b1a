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

SWITCH = r"""
import os, sys
root, release = sys.argv[1], sys.argv[2]
current = os.path.join(root, "current")
previous = os.path.join(root, "previous")
old = os.readlink(current) if os.path.islink(current) else None
for link, target in ((previous, old), (current, os.path.join("releases", release))):
    if target is None or (link == previous and old == os.path.join("releases", release)):
        continue
    tmp = link + ".tmp-%d" % os.getpid()
    os.symlink(target, tmp)
    os.replace(tmp, link)
print(old or "")
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

PRUNE = r"""
import os, shutil, sys
root, keep = sys.argv[1], int(sys.argv[2])
rel = os.path.join(root, "releases")
pinned = {os.path.basename(os.readlink(os.path.join(root, l))) for l in ("current", "previous")
          if os.path.islink(os.path.join(root, l))}
names = sorted(os.listdir(rel), key=lambda n: os.path.getmtime(os.path.join(rel, n)), reverse=True)
kept = 0
for name in names:
    if name in pinned or kept < keep:
        kept += name not in pinned
        continue
    shutil.rmtree(os.path.join(rel, name), ignore_errors=True)
    print(name)
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

LINK_OR_MISSING = r"""
import os, sys
# Reuse unchanged files of an existing release by hard link: a redeploy uploads only what changed.
src_root, dst_root = sys.argv[1], sys.argv[2]
missing = []
for name in sys.argv[3:]:
    src, dst = os.path.join(src_root, name), os.path.join(dst_root, name)
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    if os.path.exists(dst):
        continue
    try:
        os.link(src, dst)
    except OSError:
        missing.append(name)
print("\n".join(missing))
"""
