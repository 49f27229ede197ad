"""
POSIX cases for cowfs, run the same way on a cowfs mount and on ext4.

Usage: python3 cases.py DIR. Each case runs in a fresh directory under DIR
and prints one JSON line {"case": name, "result": ...}: what the calls
returned, or the errno name they failed with. Results hold no inode numbers
or clock values, only relations between them, so two filesystems that
behave alike print the same lines. test/cowfs-posix.test.ts compares them.
"""
import ctypes
import errno
import fcntl
import json
import mmap
import os
import socket
import stat
import struct
import sys

libc = ctypes.CDLL(None, use_errno=True)
RENAME_NOREPLACE, RENAME_EXCHANGE = 1, 2
FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, FALLOC_FL_ZERO_RANGE = 1, 2, 16
XATTR_CREATE, XATTR_REPLACE = 1, 2
CASES = []


def case(fn):
    CASES.append(fn)
    return fn


def err(e):
    return errno.errorcode.get(e.errno, str(e.errno))


def attempt(fn, *args):
    try:
        r = fn(*args)
        return "ok" if r is None else r
    except OSError as e:
        return err(e)


def libc_call(name, *args):
    r = getattr(libc, name)(*args)
    if r < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return r


def renameat2(a, b, flags):
    return libc_call("renameat2", -100, a.encode(), -100, b.encode(), flags)


def fallocate(fd, mode, off, length):
    return libc_call("fallocate", fd, mode, ctypes.c_long(off), ctypes.c_long(length))


def write(path, data, mode=0o644):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    os.write(fd, data)
    os.close(fd)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def as_user(uid, fn):
    """Runs fn in a child with that uid and gid; returns what it returned, or its errno name."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            out = attempt(fn)
        except BaseException as e:  # noqa: BLE001 - reported to the parent
            out = repr(e)
        os.write(w, json.dumps(out).encode())
        os._exit(0)
    os.close(w)
    data = b""
    while True:
        chunk = os.read(r, 4096)
        if not chunk:
            break
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    return json.loads(data)


@case
def names():
    write("a", b"1")
    return [
        attempt(os.mkdir, "a"),
        attempt(os.open, "missing", os.O_RDONLY),
        attempt(os.mkdir, "n" * 255),
        attempt(os.mkdir, "n" * 256),
        attempt(os.stat, "a/x"),
        attempt(os.unlink, "n" * 255),
        attempt(os.rmdir, "a"),
        sorted(os.listdir(".")) == ["a", "n" * 255],
    ]


@case
def directories():
    os.makedirs("p/q")
    write("p/f", b"x")
    out = [os.stat("p").st_nlink, attempt(os.rmdir, "p"), attempt(os.unlink, "p/q")]
    os.rmdir("p/q")
    out += [os.stat("p").st_nlink, attempt(os.rmdir, "p/f")]
    os.mkdir("big")
    for i in range(1000):
        write(f"big/e{i}", b"")
    listed = os.listdir("big")
    out += [len(listed), len(set(listed)), sorted(listed) == sorted(f"e{i}" for i in range(1000))]
    return out


@case
def renames():
    os.makedirs("d1/sub")
    os.mkdir("d2")
    os.mkdir("full")
    write("full/x", b"")
    write("f", b"file")
    write("g", b"other")
    out = [
        attempt(os.rename, "f", "d1"),
        attempt(os.rename, "d1", "f"),
        attempt(os.rename, "d2", "full"),
        attempt(os.rename, "d1", "d1/sub/inside"),
        attempt(os.rename, "f", "f"),
        attempt(os.rename, "missing", "x"),
    ]
    os.rename("d1", "d2/moved")
    out.append(os.stat("d2/moved/..").st_ino == os.stat("d2").st_ino)
    out.append([os.stat("d2").st_nlink, os.stat(".").st_nlink])
    os.rename("f", "g")
    out.append([read("g"), os.path.exists("f")])
    os.link("g", "h")
    out.append([attempt(os.rename, "g", "h"), os.path.exists("g"), os.stat("h").st_nlink])
    return str(out)


@case
def renameat2_flags():
    write("a", b"A")
    write("b", b"B")
    os.mkdir("d")
    out = [attempt(renameat2, "a", "b", RENAME_NOREPLACE), attempt(renameat2, "a", "c", RENAME_NOREPLACE)]
    out.append(attempt(renameat2, "c", "b", RENAME_EXCHANGE))
    out.append([read("c"), read("b")])
    out.append(attempt(renameat2, "c", "missing", RENAME_EXCHANGE))
    out.append(attempt(renameat2, "c", "d", RENAME_EXCHANGE))
    out.append([stat.S_ISDIR(os.stat("c").st_mode), read("d")])
    out.append(attempt(renameat2, "c", "d", RENAME_EXCHANGE | RENAME_NOREPLACE))
    return str(out)


@case
def links():
    write("f", b"data")
    os.mkdir("dir")
    out = [attempt(os.link, "dir", "dlink"), attempt(os.link, "f", "f")]
    os.link("f", "g")
    out.append(os.stat("f").st_nlink)
    os.unlink("f")
    out += [os.stat("g").st_nlink, read("g").decode()]
    os.symlink("g", "s")
    os.symlink("nowhere", "dangling")
    out += [os.readlink("s"), read("s").decode(), attempt(os.readlink, "g"), attempt(os.stat, "dangling"), stat.S_ISLNK(os.lstat("dangling").st_mode)]
    out.append(attempt(os.symlink, "x" * 4096, "long"))
    os.symlink("y" * 4095, "longest")
    out.append(len(os.readlink("longest")))
    return out


@case
def special_files():
    os.mkfifo("fifo")
    os.mknod("null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    s = socket.socket(socket.AF_UNIX)
    s.bind("sock")
    s.close()
    out = [stat.S_ISFIFO(os.stat("fifo").st_mode), stat.S_ISCHR(os.stat("null").st_mode), os.major(os.stat("null").st_rdev), os.minor(os.stat("null").st_rdev), stat.S_ISSOCK(os.stat("sock").st_mode)]
    with open("null", "wb") as f:
        f.write(b"discarded")
    out.append(os.stat("null").st_size)
    return out


@case
def truncate_and_sparse():
    fd = os.open("f", os.O_RDWR | os.O_CREAT, 0o644)
    os.write(fd, b"x" * 10000)
    os.ftruncate(fd, 100)
    os.ftruncate(fd, 300000)
    data = os.pread(fd, 300000, 0)
    out = [len(data), data[:100] == b"x" * 100, data[100:] == bytes(299900)]
    os.pwrite(fd, b"tail", 1 << 22)
    out.append(os.fstat(fd).st_size)
    out.append(os.lseek(fd, 0, os.SEEK_DATA))
    out.append(os.lseek(fd, 1 << 21, os.SEEK_DATA) >= (1 << 21))
    out.append(attempt(os.lseek, fd, (1 << 22) + 10, os.SEEK_DATA))
    out.append(os.lseek(fd, (1 << 22) + 2, os.SEEK_HOLE))
    out.append(os.fstat(fd).st_blocks * 512 < (1 << 21))
    os.close(fd)
    return out


@case
def fallocate_modes():
    fd = os.open("f", os.O_RDWR | os.O_CREAT, 0o644)
    os.write(fd, b"y" * 200000)
    out = [attempt(fallocate, fd, 0, 0, 300000), os.fstat(fd).st_size]
    out += [attempt(fallocate, fd, FALLOC_FL_KEEP_SIZE, 0, 400000), os.fstat(fd).st_size]
    out += [attempt(fallocate, fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 65536, 65536), os.fstat(fd).st_size]
    out.append(os.pread(fd, 65536, 65536) == bytes(65536))
    out.append(os.pread(fd, 10, 65536 - 10) == b"y" * 10)
    out += [attempt(fallocate, fd, FALLOC_FL_ZERO_RANGE, 190000, 20000), os.fstat(fd).st_size]
    out.append(os.pread(fd, 20000, 190000) == bytes(20000))
    out.append(attempt(fallocate, fd, FALLOC_FL_PUNCH_HOLE, 0, 10))
    os.close(fd)
    return out


@case
def xattrs():
    write("f", b"")
    out = [attempt(os.getxattr, "f", "user.a")]
    os.setxattr("f", "user.a", b"one")
    out += [os.getxattr("f", "user.a").decode(), attempt(os.setxattr, "f", "user.a", b"two", XATTR_CREATE), attempt(os.setxattr, "f", "user.b", b"x", XATTR_REPLACE)]
    os.setxattr("f", "user.a", b"three", XATTR_REPLACE)
    os.setxattr("f", "trusted.t", b"tt")
    os.setxattr("f", "security.s", b"ss")
    out += [os.getxattr("f", "user.a").decode(), sorted(os.listxattr("f")), attempt(os.removexattr, "f", "user.zz")]
    buf = ctypes.create_string_buffer(2)
    out.append(attempt(libc_call, "getxattr", b"f", b"user.a", buf, ctypes.c_size_t(2)))
    out.append(attempt(libc_call, "getxattr", b"f", b"user.a", None, ctypes.c_size_t(0)))
    out.append(attempt(os.setxattr, "f", "user." + "n" * 251, b"v"))
    out.append(attempt(os.setxattr, "f", "user." + "n" * 250, b"v"))
    out.append(attempt(os.setxattr, "f", "user.big", b"v" * 70000))
    os.removexattr("f", "user.a")
    out.append(sorted(os.listxattr("f")))
    return out


def acl(*entries):
    """The kernel's xattr form of an access ACL: version 2, then (tag, perm, id) per entry."""
    out = (2).to_bytes(4, "little")
    for tag, perm, uid in entries:
        out += tag.to_bytes(2, "little") + perm.to_bytes(2, "little") + uid.to_bytes(4, "little")
    return out


@case
def acls():
    write("f", b"for 1000 only", 0o600)
    any_id = 0xFFFFFFFF
    # user::rw- user:1000:r-- group::--- mask::r-- other::---
    granted = acl((1, 6, any_id), (2, 4, 1000), (4, 0, any_id), (0x10, 4, any_id), (0x20, 0, any_id))
    out = [attempt(os.setxattr, "f", "system.posix_acl_access", granted)]
    out.append(oct(os.stat("f").st_mode & 0o777))
    out.append(as_user(1000, lambda: read("f").decode()))
    out.append(as_user(1001, lambda: read("f").decode()))
    return out


def acl_entries(path, name="system.posix_acl_access"):
    """An ACL xattr as (tag, perm, id) triples, or its errno name."""
    try:
        b = os.getxattr(path, name)
    except OSError as e:
        return err(e)
    return [[int.from_bytes(b[i:i + 2], "little"), int.from_bytes(b[i + 2:i + 4], "little"), int.from_bytes(b[i + 4:i + 8], "little")] for i in range(4, len(b), 8)]


@case
def acl_mode_and_inheritance():
    any_id = 0xFFFFFFFF
    write("f", b"x", 0o644)
    os.setxattr("f", "system.posix_acl_access", acl((1, 7, any_id), (2, 6, 1000), (4, 4, any_id), (0x10, 6, any_id), (0x20, 0, any_id)))
    out = [oct(os.stat("f").st_mode & 0o777)]
    # A chmod moves the owner, mask and other entries; the named user stays.
    os.chmod("f", 0o750)
    out += [oct(os.stat("f").st_mode & 0o777), acl_entries("f")]
    # An ACL the mode says all of is kept as the mode.
    os.setxattr("f", "system.posix_acl_access", acl((1, 6, any_id), (4, 4, any_id), (0x20, 4, any_id)))
    out += [oct(os.stat("f").st_mode & 0o777), acl_entries("f")]
    # No default ACL: the umask applies. A default ACL: it does not, the ACL narrows the mode.
    old = os.umask(0o027)
    try:
        write("masked", b"", 0o666)
        os.mkdir("d", 0o755)
        os.setxattr("d", "system.posix_acl_default", acl((1, 7, any_id), (2, 5, 1000), (4, 5, any_id), (0x10, 5, any_id), (0x20, 5, any_id)))
        write("d/inherits", b"", 0o666)
        os.mkdir("d/sub", 0o777)
        os.symlink("inherits", "d/link")
    finally:
        os.umask(old)
    out += [oct(os.stat("masked").st_mode & 0o777), oct(os.stat("d/inherits").st_mode & 0o777), acl_entries("d/inherits")]
    out += [oct(os.stat("d/sub").st_mode & 0o777), acl_entries("d/sub"), acl_entries("d/sub", "system.posix_acl_default")]
    out += [acl_entries("f", "system.posix_acl_default"), attempt(os.setxattr, "f", "system.posix_acl_default", acl((1, 7, any_id), (4, 5, any_id), (0x20, 5, any_id)))]
    out.append(as_user(1000, lambda: read("d/inherits").decode()))
    return out


@case
def ownership_and_setid():
    write("f", b"#!/bin/sh\n", 0o755)
    os.chmod("f", 0o6755)
    out = [oct(os.stat("f").st_mode & 0o7777)]
    os.chown("f", 1000, 1000)
    out.append(oct(os.stat("f").st_mode & 0o7777))
    os.chmod("f", 0o2644)
    os.chown("f", 1001, 1001)
    out.append(oct(os.stat("f").st_mode & 0o7777))
    os.mkdir("g", 0o2775)
    os.chown("g", 0, 1234)
    os.chmod("g", 0o2775)
    write("g/file", b"")
    os.mkdir("g/sub")
    out += [os.stat("g/file").st_gid, os.stat("g/sub").st_gid, oct(os.stat("g/sub").st_mode & 0o7777)]
    return out


def overwrite(path, data, flags=0):
    fd = os.open(path, os.O_WRONLY | flags)
    try:
        if flags & os.O_DIRECT:
            buf = mmap.mmap(-1, 4096)
            buf.write(data.ljust(4096, b"\0"))
            data = buf
        return os.pwrite(fd, data, 0)
    finally:
        os.close(fd)


def setid_file(name, mode):
    write(name, b"0123456789" * 500, 0o644)
    os.chmod(name, mode)
    return name


def caps(path):
    try:
        return len(os.getxattr(path, "security.capability"))
    except OSError as e:
        return err(e)


@case
def writes_drop_setid_and_caps():
    mode = lambda p: oct(os.stat(p).st_mode & 0o7777)
    out = []
    # Another user's buffered write, direct write and truncate drop setuid, and setgid with group execute.
    for how in ["buffered", "direct", "truncate"]:
        f = setid_file("u-" + how, 0o6777)
        if how == "truncate":
            out.append(as_user(1001, lambda: os.truncate(f, 100)))
        else:
            out.append(as_user(1001, lambda: overwrite(f, b"x", os.O_DIRECT if how == "direct" else 0)))
        out.append(mode(f))
    g = setid_file("g", 0o2666)
    out += [as_user(1001, lambda: overwrite(g, b"x")), mode(g)]
    # root (CAP_FSETID) keeps them.
    r = setid_file("r", 0o6777)
    out += [overwrite(r, b"x"), overwrite(r, b"y", os.O_DIRECT), mode(r)]
    # A file capability goes with any write, root's too, buffered or direct, and with a truncate.
    cap = struct.pack("<IIIII", 0x02000000, 1 << 13, 0, 0, 0)
    for how in ["buffered", "direct", "truncate"]:
        c = setid_file("c-" + how, 0o755)
        os.setxattr(c, "security.capability", cap)
        before = caps(c)
        if how == "truncate":
            os.truncate(c, 10)
        else:
            overwrite(c, b"x", os.O_DIRECT if how == "direct" else 0)
        out += [before, caps(c)]
    # Both at once: another user's write to a set-id file with a capability.
    b = setid_file("both", 0o6777)
    os.setxattr(b, "security.capability", cap)
    out += [as_user(1001, lambda: overwrite(b, b"x")), mode(b), caps(b)]
    return out


@case
def permissions():
    write("root-only", b"secret", 0o600)
    write("readable", b"open", 0o644)
    os.mkdir("sticky", 0o1777)
    os.chmod("sticky", 0o1777)
    write("sticky/mine", b"")
    os.chown("sticky/mine", 1000, 1000)
    return [
        as_user(1000, lambda: read("root-only").decode()),
        as_user(1000, lambda: read("readable").decode()),
        as_user(1000, lambda: write("readable", b"no")),
        as_user(1001, lambda: os.unlink("sticky/mine")),
        as_user(1000, lambda: os.unlink("sticky/mine")),
    ]


@case
def times():
    write("f", b"")
    st = os.stat("f")
    out = [st.st_mtime_ns == st.st_ctime_ns]
    os.utime("f", ns=(1_000_000_123, 2_000_000_456))
    st = os.stat("f")
    out += [st.st_atime_ns, st.st_mtime_ns]
    # UTIME_OMIT for atime, UTIME_NOW for mtime, through utimensat.
    ts = (ctypes.c_long * 4)(0, (1 << 30) - 2, 0, (1 << 30) - 1)
    libc_call("utimensat", -100, b"f", ts, 0)
    st2 = os.stat("f")
    out += [st2.st_atime_ns == 1_000_000_123, st2.st_mtime_ns > 2_000_000_456, st2.st_ctime_ns >= st.st_ctime_ns]
    os.mkdir("d")
    before = os.stat("d").st_mtime_ns
    write("d/new", b"")
    out.append(os.stat("d").st_mtime_ns >= before)
    return out


@case
def unlinked_open_file():
    write("f", b"still here")
    fd = os.open("f", os.O_RDWR)
    os.unlink("f")
    os.pwrite(fd, b"S", 0)
    out = [os.pread(fd, 10, 0).decode(), os.fstat(fd).st_nlink, os.path.exists("f")]
    os.close(fd)
    return out


@case
def direct_io_and_mmap():
    fd = os.open("d", os.O_RDWR | os.O_CREAT | os.O_DIRECT, 0o644)
    buf = mmap.mmap(-1, 8192)
    buf.write(b"z" * 8192)
    out = [os.pwrite(fd, buf, 0)]
    rbuf = mmap.mmap(-1, 8192)
    out.append(os.preadv(fd, [rbuf], 0))
    out.append(rbuf[:8192] == b"z" * 8192)
    os.close(fd)
    fd = os.open("m", os.O_RDWR | os.O_CREAT, 0o644)
    os.ftruncate(fd, 8192)
    m = mmap.mmap(fd, 8192, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    m[100:105] = b"mmap!"
    m.flush()
    m.close()
    os.close(fd)
    out.append(read("m")[100:105].decode())
    return out


@case
def direct_io_sees_buffered_writes():
    # Buffered and O_DIRECT descriptors of one file see each other's writes at once, as on ext4.
    buffered = os.open("f", os.O_RDWR | os.O_CREAT, 0o644)
    os.pwrite(buffered, b"b" * 8192, 0)
    direct = os.open("f", os.O_RDWR | os.O_DIRECT)
    rbuf = mmap.mmap(-1, 8192)
    out = [os.preadv(direct, [rbuf], 0), rbuf[:8192] == b"b" * 8192]
    wbuf = mmap.mmap(-1, 4096)
    wbuf.write(b"d" * 4096)
    out.append(os.pwrite(direct, wbuf, 4096))
    out.append(os.pread(buffered, 8192, 0) == b"b" * 4096 + b"d" * 4096)
    out.append(attempt(os.pwrite, direct, b"x", 1))
    os.close(direct)
    os.close(buffered)
    return out


@case
def locks():
    write("f", b"")
    a = os.open("f", os.O_RDWR)
    fcntl.flock(a, fcntl.LOCK_EX)
    out = [as_user(0, lambda: fcntl.flock(os.open("f", os.O_RDWR), fcntl.LOCK_EX | fcntl.LOCK_NB))]
    fcntl.flock(a, fcntl.LOCK_UN)
    fcntl.lockf(a, fcntl.LOCK_EX, 10, 0)
    out.append(as_user(0, lambda: fcntl.lockf(os.open("f", os.O_RDWR), fcntl.LOCK_EX | fcntl.LOCK_NB, 10, 0)))
    out.append(as_user(0, lambda: fcntl.lockf(os.open("f", os.O_RDWR), fcntl.LOCK_EX | fcntl.LOCK_NB, 10, 20)))
    os.close(a)
    return out


@case
def copy_range():
    write("src", b"q" * 300000)
    a = os.open("src", os.O_RDONLY)
    b = os.open("dst", os.O_WRONLY | os.O_CREAT, 0o644)
    out = [os.copy_file_range(a, b, 300000)]
    os.close(a)
    os.close(b)
    out.append(read("dst") == read("src"))
    return out


@case
def truncating_opens():
    # What `> f` and open(f, "w") do to a file with contents; the files stay for the walk after a remount.
    write("f", b"x" * 300000)
    fd = os.open("f", os.O_WRONLY | os.O_TRUNC)
    os.write(fd, b"short")
    os.close(fd)
    write("g", b"y" * 70000)
    with open("g", "w") as f:
        f.write("")
    return [os.stat("f").st_size, read("f") == b"short", os.stat("g").st_size]


@case
def statfs_names():
    s = os.statvfs(".")
    return [s.f_namemax, s.f_bsize > 0, s.f_blocks > 0, s.f_files > 0]


def main():
    root = sys.argv[1]
    only = sys.argv[2:]
    os.umask(0o022)
    for fn in CASES:
        if only and fn.__name__ not in only:
            continue
        where = os.path.join(root, fn.__name__)
        os.mkdir(where)
        os.chdir(where)
        try:
            result = fn()
        except OSError as e:
            result = "unexpected " + err(e)
        os.chdir(root)
        print(json.dumps({"case": fn.__name__, "result": result}), flush=True)


main()
