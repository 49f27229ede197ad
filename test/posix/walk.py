"""
Everything stat, readlink, listxattr and a read show of a tree, as one JSON
object keyed by path: what test/cowfs-posix.test.ts compares before an
unmount and after the next mount, so that nothing a process saw lived only
in the kernel's caches.

Usage: python3 walk.py DIR
"""
import hashlib
import json
import os
import stat
import sys


def entry(path):
    st = os.lstat(path)
    out = {
        "mode": st.st_mode,
        "nlink": st.st_nlink,
        "uid": st.st_uid,
        "gid": st.st_gid,
        "mtime": str(st.st_mtime_ns),  # exact: nanoseconds since 1970 are past a double's integers
        "ctime": str(st.st_ctime_ns),
        "xattrs": sorted(os.listxattr(path, follow_symlinks=False)),
    }
    if not stat.S_ISDIR(st.st_mode):
        out["size"] = st.st_size
        out["blocks"] = st.st_blocks
    if stat.S_ISREG(st.st_mode):
        with open(path, "rb") as f:
            out["sha1"] = hashlib.sha1(f.read()).hexdigest()
    if stat.S_ISLNK(st.st_mode):
        out["target"] = os.readlink(path)
    return out


def main():
    root = sys.argv[1]
    seen = {}
    for at, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(at, name)
            seen[os.path.relpath(path, root)] = entry(path)
    print(json.dumps(seen, sort_keys=True))


main()
