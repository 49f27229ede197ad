/*
 * The FUSE ceiling for bench/: a minimal libfuse3 low-level filesystem
 * with one file, /data, whose reads and writes go straight to a plain file
 * with pread/pwrite on libfuse's worker threads. Same mount options and
 * open flags as cowvol's block files (max_write 1 MiB, direct_io, no
 * writeback cache), so the gap between the two is cowvol's own cost.
 *
 * Not a product: no error paths beyond errno, no directories, no metadata.
 * Usage: passthrough MOUNTPOINT BACKING_FILE (runs until unmounted).
 */
#define FUSE_USE_VERSION 312
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int backing = -1;

static void stat_of(fuse_ino_t ino, struct stat *st) {
  memset(st, 0, sizeof(*st));
  st->st_ino = ino;
  if (ino == 1) {
    st->st_mode = S_IFDIR | 0755;
    st->st_nlink = 2;
  } else {
    struct stat b;
    fstat(backing, &b);
    st->st_mode = S_IFREG | 0644;
    st->st_nlink = 1;
    st->st_size = b.st_size;
  }
}

static void ll_init(void *userdata, struct fuse_conn_info *conn) {
  (void)userdata;
  conn->max_write = 1 << 20;
  conn->max_readahead = 1 << 20;
  conn->max_background = 64;
  conn->congestion_threshold = 48;
  conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
}

static void ll_lookup(fuse_req_t req, fuse_ino_t parent, const char *name) {
  if (parent != 1 || strcmp(name, "data") != 0) {
    fuse_reply_err(req, ENOENT);
    return;
  }
  struct fuse_entry_param e;
  memset(&e, 0, sizeof(e));
  e.ino = 2;
  stat_of(2, &e.attr);
  fuse_reply_entry(req, &e);
}

static void ll_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  (void)fi;
  struct stat st;
  stat_of(ino, &st);
  fuse_reply_attr(req, &st, 0);
}

static void ll_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  if (ino != 2) {
    fuse_reply_err(req, EISDIR);
    return;
  }
  fi->direct_io = 1;
  fuse_reply_open(req, fi);
}

static void ll_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  (void)ino;
  (void)fi;
  char *buf = malloc(size);
  ssize_t n = pread(backing, buf, size, off);
  if (n < 0) fuse_reply_err(req, errno);
  else fuse_reply_buf(req, buf, (size_t)n);
  free(buf);
}

static void ll_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off, struct fuse_file_info *fi) {
  (void)ino;
  (void)fi;
  ssize_t n = pwrite(backing, buf, size, off);
  if (n < 0) fuse_reply_err(req, errno);
  else fuse_reply_write(req, (size_t)n);
}

static void ll_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi) {
  (void)ino;
  (void)fi;
  fuse_reply_err(req, (datasync ? fdatasync(backing) : fsync(backing)) ? errno : 0);
}

static const struct fuse_lowlevel_ops ops = {
    .init = ll_init, .lookup = ll_lookup, .getattr = ll_getattr, .open = ll_open,
    .read = ll_read, .write = ll_write, .fsync = ll_fsync,
};

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s MOUNTPOINT BACKING_FILE\n", argv[0]);
    return 2;
  }
  backing = open(argv[2], O_RDWR);
  if (backing < 0) {
    perror(argv[2]);
    return 1;
  }
  char *fargv[] = {argv[0], "-o", "fsname=cowvol-ref,allow_other,default_permissions", NULL};
  struct fuse_args args = FUSE_ARGS_INIT(3, fargv);
  struct fuse_session *se = fuse_session_new(&args, &ops, sizeof(ops), NULL);
  if (!se || fuse_set_signal_handlers(se) != 0 || fuse_session_mount(se, argv[1]) != 0) return 1;
  struct fuse_loop_config *cfg = fuse_loop_cfg_create();
  fuse_loop_cfg_set_max_threads(cfg, 16);
  int rc = fuse_session_loop_mt(se, cfg);
  fuse_loop_cfg_destroy(cfg);
  fuse_session_unmount(se);
  fuse_remove_signal_handlers(se);
  fuse_session_destroy(se);
  return rc ? 1 : 0;
}
