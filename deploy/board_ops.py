"""Small board-side operations: constant Python code, run as `python3 -c CODE ARG...`.

The code never changes with user input; paths travel as argv words, so no
path can inject anything. Only the board's stdlib is needed.
"""

from __future__ import annotations

# The board's sha256 of one file, read in 1 MiB chunks (a model can be larger than a small board likes to hold).
_DIGEST = r"""
import hashlib
def digest(path):
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
"""

VERIFY = _DIGEST + r"""
import os, sys
root = sys.argv[1]
bad = []
for line in open(os.path.join(root, "SHA256SUMS")):
    want, name = line.rstrip("\n").split("  ", 1)
    try:
        if digest(os.path.join(root, name)) == want:
            continue
    except OSError:
        pass
    bad.append(name)
for name in bad:
    try: os.remove(os.path.join(root, name))
    except OSError: pass
print("\n".join(bad))
sys.exit(1 if bad else 0)
"""

# Shared by the snippets that judge a release: every file against SHA256SUMS, and SHA256SUMS against the
# release id (whose suffix is the digest of the SHA256SUMS edgerl wrote), so editing both is caught too.
_PROBLEMS = _DIGEST + r"""
import hashlib, os
def release_problems(rel):
    if not os.path.isdir(rel):
        return ["the release folder is missing"]
    try:
        text = open(os.path.join(rel, "SHA256SUMS"), "rb").read()
    except OSError:
        return ["SHA256SUMS is missing"]
    problems = []
    if hashlib.sha256(text).hexdigest()[:8] != os.path.basename(rel).rsplit("-", 1)[-1]:
        problems.append("SHA256SUMS was modified")
    for line in text.decode(errors="replace").splitlines():
        want, _, name = line.partition("  ")
        try:
            if digest(os.path.join(rel, name)) != want:
                problems.append(name + " was modified")
        except OSError:
            problems.append(name + " is missing")
    return problems
"""

ROLLBACK = _PROBLEMS + r"""
import json, os, sys
root = sys.argv[1]
current, previous = os.path.join(root, "current"), os.path.join(root, "previous")
if not os.path.islink(previous):
    print(json.dumps({"refused": "there is no previous release to roll back to"})); sys.exit(0)
old_cur, old_prev = os.readlink(current), os.readlink(previous)
problems = release_problems(os.path.join(root, old_prev))
if not problems and not os.path.isfile(os.path.join(root, old_prev, ".verified")):
    problems = ["it never passed its self-test"]
if problems:
    print(json.dumps({"refused": "the previous release %s is broken (%s)" % (os.path.basename(old_prev),
                                                                           "; ".join(problems[:3]))}))
    sys.exit(0)
for link, target in ((current, old_prev), (previous, old_cur)):
    tmp = link + ".tmp-%d" % os.getpid()
    os.symlink(target, tmp)
    os.replace(tmp, link)
print(json.dumps({"current": os.path.basename(old_prev)}))
"""

CHECK_CURRENT = _PROBLEMS + r"""
import json, os, sys
# Resolve `current` once; the caller then uses this release's own path throughout, whatever flips later.
root = sys.argv[1]
current = os.path.join(root, "current")
if not os.path.islink(current):
    print(json.dumps({"release": None})); sys.exit(0)
release = os.path.join(root, os.readlink(current))
problems = release_problems(release)
if not problems and not os.path.isfile(os.path.join(release, ".verified")):
    problems = ["it never passed its self-test"]
print(json.dumps({"release": release, "problems": problems}))
"""

STATUS = r"""
import fcntl, json, os, platform, sys
root = sys.argv[1]
def locked():
    try:
        fd = os.open(os.path.join(root, ".deploy.lock"), os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)
def link(name):
    p = os.path.join(root, name)
    return os.path.basename(os.readlink(p)) if os.path.islink(p) else None
def ls(name):
    p = os.path.join(root, name)
    return sorted(os.listdir(p)) if os.path.isdir(p) else []
print(json.dumps({"current": link("current"), "previous": link("previous"), "releases": ls("releases"),
                  "venvs": ls("venvs"), "machine": platform.machine(),
                  "python": "%d.%d" % sys.version_info[:2], "locked": locked()}))
"""

PROBE = r"""
import json, platform, shutil, sys, os
root = sys.argv[1]
os.makedirs(root, exist_ok=True)
du = shutil.disk_usage(root)
print(json.dumps({"machine": platform.machine(), "python": "%d.%d" % sys.version_info[:2],
                  "free_bytes": du.free, "home": os.path.expanduser("~")}))
"""

HOLD_LOCK = r"""
import fcntl, json, os, select, sys, time
# The deploy lock: a kernel lock (flock) held by this process for as long as the deploy feeds its stdin.
# It dies with its holder: when the deploy ends, is killed, or goes silent for `silence` seconds
# (a cut link), this process exits and the kernel releases the lock. Nothing is left to clean by hand.
root, owner, silence = sys.argv[1], sys.argv[2], float(sys.argv[3])
os.makedirs(root, exist_ok=True)
path = os.path.join(root, ".deploy.lock")
fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
except OSError:
    try:
        who = open(path).read().strip()
        age = time.time() - os.stat(path).st_mtime
    except OSError:
        who, age = "?", 0.0
    print(json.dumps({"held_by": who, "quiet_s": age}), flush=True)
    sys.exit(3)
os.ftruncate(fd, 0)
os.write(fd, owner.encode())
print(json.dumps({"locked": True}), flush=True)
while True:
    ready, _, _ = select.select([0], [], [], silence)
    if not ready:
        sys.exit(4)
    if not os.read(0, 4096):
        sys.exit(0)
    os.utime(path)
"""

BEGIN = _PROBLEMS + r"""
import json, os, platform, shutil, sys
# One round trip at the start of a deploy (under the lock): probe, tidy, and what is already there.
root, release = sys.argv[1:3]
os.makedirs(root, exist_ok=True)
notes = []
legacy = os.path.join(root, ".lock")
if os.path.isdir(legacy):  # an older edgerl's mkdir lock, which outlived its deploy
    shutil.rmtree(legacy, ignore_errors=True)
    notes.append("cleared a stale .lock left by an earlier edgerl version")
incoming = os.path.join(root, "incoming")
for name in (os.listdir(incoming) if os.path.isdir(incoming) else []):
    if name != release:  # staging of failed deploys: nobody else can be using it while we hold the lock
        shutil.rmtree(os.path.join(incoming, name), ignore_errors=True)
        notes.append("removed the unfinished upload incoming/" + name)
# What current really holds (hashed, not taken from its SHA256SUMS): only intact files are reused.
sums = {}
current = os.path.join(root, "current")
try:
    for line in open(os.path.join(current, "SHA256SUMS")):
        want, _, name = line.rstrip("\n").partition("  ")
        try:
            if digest(os.path.join(current, name)) == want:
                sums[name] = want
        except OSError:
            pass
except OSError:
    pass
rel = os.path.join(root, "releases", release)
state = "absent"
if os.path.isdir(rel):
    problems = release_problems(rel)
    state = "damaged" if problems else ("verified" if os.path.isfile(os.path.join(rel, ".verified")) else "untested")
    if problems:
        notes.append("release %s is damaged (%s); repairing it" % (release, "; ".join(problems[:3])))
du = shutil.disk_usage(root)
print(json.dumps({"machine": platform.machine(), "python": "%d.%d" % sys.version_info[:2], "free_bytes": du.free,
                  "release_state": state, "current_sums": sums, "notes": notes}))
"""

REPAIR = _PROBLEMS + r"""
import json, os, sys
# Make a damaged release uploadable again in place: drop what does not match edgerl's SHA256SUMS.
rel, sums = sys.argv[1], sys.argv[2]
try:
    os.remove(os.path.join(rel, ".verified"))
except OSError:
    pass
removed = []
for line in sums.splitlines():
    want, _, name = line.partition("  ")
    path = os.path.join(rel, name)
    try:
        h = digest(path)
    except OSError:
        continue
    if h != want:
        os.remove(path)
        removed.append(name)
try:
    ok = open(os.path.join(rel, "SHA256SUMS")).read() == sums
except OSError:
    ok = False
if not ok:
    try:
        os.remove(os.path.join(rel, "SHA256SUMS"))
    except OSError:
        pass
print(json.dumps(removed))
"""

REMOVE_TREE = r"""
import shutil, sys
shutil.rmtree(sys.argv[1], ignore_errors=True)
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
import fcntl, json, os, shutil, sys
# Move the verified release into place, link its venv, switch current (keeping previous), prune.
root, release, staging, venv_key, keep, owner = sys.argv[1:7]
keep = int(keep)
# Switch only while this deploy still holds the lock: if its holder expired (a silent link), another
# deploy may be running now.
lock = os.path.join(root, ".deploy.lock")
fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    held = False
except OSError:
    held = open(lock).read() == owner
if not held:
    print(json.dumps({"lost_lock": True})); sys.exit(0)
rels = os.path.join(root, "releases")
rel_dir = os.path.join(rels, release)
os.makedirs(rels, exist_ok=True)
if staging != "-" and os.path.realpath(staging) != os.path.realpath(rel_dir):
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
print(json.dumps({"previous": old, "pruned": pruned}))
"""
