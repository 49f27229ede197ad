/*
 * The FUSE ceiling for cowfs in bench/: a minimal libfuse3 filesystem that
 * passes every call through to a host directory, on libfuse's worker
 * threads. Mounted as cowfs is (default_permissions, allow_other, no
 * writeback cache, 1 s attribute and entry timeouts), so the gap between
 * the two is cowfs's own cost, not FUSE's.
 *
 * Caveats: libfuse's path-based API (it keeps the inode table and resolves
 * paths for us), which costs a little over a low-level passthrough such as
 * libfuse's passthrough_ll; files are opened on each open, as the kernel
 * asks; no xattrs, no locks. Not a product.
 * Usage: passthrough-fs MOUNTPOINT DIRECTORY (runs until unmounted).
 */
#define FUSE_USE_VERSION 312
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fuse.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

static int root = -1;

/* A path from the mount relative to the backing directory ("/" is "."). */
static const char *rel(const char *path) {
  return path[1] == 0 ? "." : path + 1;
}

static void *pt_init(struct fuse_conn_info *conn, struct fuse_config *cfg) {
  (void)conn;
  cfg->use_ino = 1;
  cfg->attr_timeout = 1.0;
  cfg->entry_timeout = 1.0;
  cfg->negative_timeout = 0;
  return NULL;
}

static int pt_getattr(const char *path, struct stat *st, struct fuse_file_info *fi) {
  int r = fi ? fstat((int)fi->fh, st) : fstatat(root, rel(path), st, AT_SYMLINK_NOFOLLOW);
  return r == 0 ? 0 : -errno;
}

static int pt_readdir(const char *path, void *buf, fuse_fill_dir_t fill, off_t off, struct fuse_file_info *fi, enum fuse_readdir_flags flags) {
  (void)off;
  (void)fi;
  (void)flags;
  int fd = openat(root, rel(path), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return -errno;
  DIR *d = fdopendir(fd);
  if (!d) {
    close(fd);
    return -errno;
  }
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    struct stat st;
    memset(&st, 0, sizeof(st));
    st.st_ino = e->d_ino;
    st.st_mode = (mode_t)(e->d_type << 12);
    if (fill(buf, e->d_name, &st, 0, 0)) break;
  }
  closedir(d);
  return 0;
}

static int pt_mkdir(const char *path, mode_t mode) {
  return mkdirat(root, rel(path), mode) == 0 ? 0 : -errno;
}

static int pt_unlink(const char *path) {
  return unlinkat(root, rel(path), 0) == 0 ? 0 : -errno;
}

static int pt_rmdir(const char *path) {
  return unlinkat(root, rel(path), AT_REMOVEDIR) == 0 ? 0 : -errno;
}

static int pt_rename(const char *from, const char *to, unsigned int flags) {
  return renameat2(root, rel(from), root, rel(to), flags) == 0 ? 0 : -errno;
}

static int pt_create(const char *path, mode_t mode, struct fuse_file_info *fi) {
  int fd = openat(root, rel(path), fi->flags | O_CREAT, mode);
  if (fd < 0) return -errno;
  fi->fh = (uint64_t)fd;
  return 0;
}

static int pt_open(const char *path, struct fuse_file_info *fi) {
  int fd = openat(root, rel(path), fi->flags & ~O_NOFOLLOW);
  if (fd < 0) return -errno;
  fi->fh = (uint64_t)fd;
  return 0;
}

static int pt_read(const char *path, char *buf, size_t size, off_t off, struct fuse_file_info *fi) {
  (void)path;
  ssize_t n = pread((int)fi->fh, buf, size, off);
  return n < 0 ? -errno : (int)n;
}

static int pt_write(const char *path, const char *buf, size_t size, off_t off, struct fuse_file_info *fi) {
  (void)path;
  ssize_t n = pwrite((int)fi->fh, buf, size, off);
  return n < 0 ? -errno : (int)n;
}

static int pt_release(const char *path, struct fuse_file_info *fi) {
  (void)path;
  close((int)fi->fh);
  return 0;
}

static int pt_fsync(const char *path, int datasync, struct fuse_file_info *fi) {
  (void)path;
  return (datasync ? fdatasync((int)fi->fh) : fsync((int)fi->fh)) == 0 ? 0 : -errno;
}

static int pt_truncate(const char *path, off_t size, struct fuse_file_info *fi) {
  int r = fi ? ftruncate((int)fi->fh, size) : -1;
  if (!fi) {
    int fd = openat(root, rel(path), O_WRONLY);
    if (fd < 0) return -errno;
    r = ftruncate(fd, size);
    close(fd);
  }
  return r == 0 ? 0 : -errno;
}

static int pt_utimens(const char *path, const struct timespec tv[2], struct fuse_file_info *fi) {
  int r = fi ? futimens((int)fi->fh, tv) : utimensat(root, rel(path), tv, AT_SYMLINK_NOFOLLOW);
  return r == 0 ? 0 : -errno;
}

static int pt_chmod(const char *path, mode_t mode, struct fuse_file_info *fi) {
  int r = fi ? fchmod((int)fi->fh, mode) : fchmodat(root, rel(path), mode, 0);
  return r == 0 ? 0 : -errno;
}

static int pt_statfs(const char *path, struct statvfs *st) {
  (void)path;
  return fstatvfs(root, st) == 0 ? 0 : -errno;
}

static const struct fuse_operations ops = {
    .init = pt_init,
    .getattr = pt_getattr,
    .readdir = pt_readdir,
    .mkdir = pt_mkdir,
    .unlink = pt_unlink,
    .rmdir = pt_rmdir,
    .rename = pt_rename,
    .create = pt_create,
    .open = pt_open,
    .read = pt_read,
    .write = pt_write,
    .release = pt_release,
    .fsync = pt_fsync,
    .truncate = pt_truncate,
    .utimens = pt_utimens,
    .chmod = pt_chmod,
    .statfs = pt_statfs,
};

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s MOUNTPOINT DIRECTORY\n", argv[0]);
    return 2;
  }
  root = open(argv[2], O_RDONLY | O_DIRECTORY);
  if (root < 0) {
    perror(argv[2]);
    return 1;
  }
  char *fargv[] = {argv[0], argv[1], "-f", "-o", "default_permissions,allow_other,fsname=passthrough-fs", NULL};
  return fuse_main(5, fargv, &ops, NULL);
}
