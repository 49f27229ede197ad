"""
Seeded random file operations on a tree, through a mount: creates with and
without O_TRUNC, writes at offsets, appends, truncates both ways, renames
(over files too), hard links, unlinks (of open files too), chmod with set-id
bits, chown, utimensat, xattrs, fallocate and hole punching, writes through
a shared mapping, O_DIRECT writes, copy_file_range, fsync, directories made
and removed. Errors are part of the run (a rename of a name not there).
test/cowfs-posix.test.ts walks the tree (walk.py), remounts it and walks it
again: what any process saw must be what the volume holds.

Usage: python3 random_ops.py DIR SEED STEPS
"""
import ctypes
import mmap
import os
import random
import sys

FALLOC_PUNCH = 1 | 2  # KEEP_SIZE | PUNCH_HOLE
libc = ctypes.CDLL(None, use_errno=True)


def main():
    root, seed, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    rng = random.Random(seed)
    for d in range(4):
        os.makedirs(f"{root}/d{d}", exist_ok=True)
    names = [f"{root}/d{d}/f{i}" for d in range(4) for i in range(8)]
    held = []

    def some():
        return rng.choice(names)

    def create(p):
        flags = os.O_CREAT | os.O_WRONLY | (os.O_TRUNC if rng.random() < 0.5 else 0)
        fd = os.open(p, flags, 0o644)
        os.pwrite(fd, os.urandom(rng.choice([1, 100, 4096, 70000])), rng.choice([0, 10, 4096, 65536, 200000]))
        os.close(fd)

    def mapped(p):
        fd = os.open(p, os.O_RDWR)
        if os.fstat(fd).st_size >= 4096:
            m = mmap.mmap(fd, 4096)
            at = rng.randrange(4000)
            m[at:at + 5] = b"mmapd"
            m.close()
        os.close(fd)

    def direct(p):
        fd = os.open(p, os.O_RDWR | os.O_DIRECT)
        buf = mmap.mmap(-1, 4096)
        buf.write(os.urandom(4096))
        os.pwrite(fd, buf, rng.choice([0, 4096, 65536]))
        os.close(fd)

    def copy(p):
        a = os.open(p, os.O_RDONLY)
        b = os.open(some(), os.O_WRONLY | os.O_CREAT, 0o644)
        os.copy_file_range(a, b, rng.choice([4096, 65536, 131072]), rng.choice([0, 65536]), rng.choice([0, 65536]))
        os.close(a)
        os.close(b)

    def punch(p):
        fd = os.open(p, os.O_RDWR)
        libc.fallocate(fd, FALLOC_PUNCH, ctypes.c_long(rng.choice([0, 4096, 65536])), ctypes.c_long(rng.choice([4096, 65536])))
        os.close(fd)

    def preallocate(p):
        fd = os.open(p, os.O_RDWR)
        os.posix_fallocate(fd, rng.choice([0, 4096]), rng.choice([4096, 100000]))
        os.close(fd)

    def append(p):
        fd = os.open(p, os.O_RDWR | os.O_APPEND)
        os.write(fd, os.urandom(rng.choice([1, 3000, 70000])))
        os.close(fd)

    def hold(p):
        held.append(os.open(p, os.O_RDWR))
        if len(held) > 5:
            os.close(held.pop(0))

    def sync(p):
        fd = os.open(p, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)

    def directory(p):
        d = os.path.dirname(p) + "/sub"
        if rng.random() < 0.5:
            os.mkdir(d)
        else:
            os.rmdir(d)

    def emptied(p):
        os.close(os.open(p, os.O_WRONLY | os.O_TRUNC))

    ops = [
        create,
        lambda p: os.truncate(p, rng.choice([0, 5, 4096, 65536, 300000])),
        lambda p: os.rename(p, some()),
        lambda p: os.link(p, some()),
        os.unlink,
        lambda p: os.chmod(p, rng.choice([0o644, 0o600, 0o4755, 0o2755])),
        lambda p: os.utime(p, ns=(rng.randrange(10**18), rng.randrange(10**18))),
        lambda p: os.setxattr(p, f"user.k{rng.randrange(3)}", os.urandom(rng.randrange(1, 100))),
        preallocate,
        mapped,
        append,
        punch,
        hold,
        sync,
        lambda p: os.chown(p, rng.choice([0, 1000]), rng.choice([0, 1000])),
        emptied,
        copy,
        direct,
        directory,
    ]
    for _ in range(steps):
        op = rng.choice(ops)
        try:
            op(some())
        except OSError:
            pass
    for fd in held:
        os.close(fd)


main()
