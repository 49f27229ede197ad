/*
 * A libfuse3 low-level session that runs on its own threads.
 *
 * What it does by itself: read and write requests whose chunks are all in
 * the chunk table (chunk_table.c) are served here with pread/pwrite on the
 * pool's data file, without entering JavaScript; so are reads of holes and
 * first writes into them, with chunks JavaScript reserved. Everything else
 * (namespace operations, unmapped or shared chunks, fsync, fallocate,
 * lseek, statfs) is handed to one JavaScript handler through a thread-safe
 * function; the FUSE worker thread waits until the handler replies, so
 * request buffers stay valid and replies are sent from the worker.
 *
 * What it never does: decide anything. Entries, holes and reserved chunks
 * come from JavaScript (fuseMap, fuseHoles, fuseReserve), which takes them
 * back (fuseInvalidate) and folds first writes into its maps (fuseTaken).
 */
#include "fuse_session.h"
#include "fileops.h"
#include "fs_workers.h"
#include "session.h"

#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef PR_SET_IO_FLUSHER
#define PR_SET_IO_FLUSHER 57
#endif

enum {
  OP_LOOKUP = 1,
  OP_GETATTR = 2,
  OP_SETATTR = 3,
  OP_READDIR = 4,
  OP_OPEN = 5,
  OP_READ = 6,
  OP_WRITE = 7,
  OP_FSYNC = 8,
  OP_FALLOCATE = 9,
  OP_LSEEK = 10,
  OP_STATFS = 11,
  OP_LOW = 12, /* not a request: the chunk table's reserve runs low; no reply */
};

/* What table_low sends through the request queue (see there). */
static request low_signal = {.op = OP_LOW};

/* ---- the hop to JavaScript ------------------------------------------------- */

/*
 * The asking thread sleeps on `done` itself, not on a mutex and condition
 * variable: a signal under the mutex woke the asker only for it to block
 * on that mutex until the JavaScript thread let go of it, two wake-ups
 * (and, on a virtual machine, two cross-CPU interrupts) per answer.
 *
 * The wake after the store may reach the asker's stack after it has
 * returned: its stack is still mapped, and a futex wait that wakes early
 * finds `done` unset and waits again, so a late wake only costs a loop.
 */
static void request_wait(request *r) {
  while (atomic_load_explicit(&r->done, memory_order_acquire) == 0) syscall(SYS_futex, &r->done, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
}

static void request_done(request *r) {
  atomic_store_explicit(&r->done, 1, memory_order_release);
  syscall(SYS_futex, &r->done, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

/* No answer will come from JavaScript: EIO, answered by the asker, or here for a heap copy nobody waits on. */
static void unanswered(request *r) {
  r->err = EIO;
  if (!r->heap) {
    request_done(r);
    return;
  }
  r->answering = 1;
  if (r->finish) r->finish(r);
  r->let_go(r);
}

static void call_js(napi_env env, napi_value handler, void *context, void *data) {
  (void)context;
  request *r = data;
  if (r == &low_signal && env == NULL) return;
  if (env == NULL) { /* torn down with requests queued */
    int heap = r->heap;
    unanswered(r);
    if (heap) r->let_go(r);
    return;
  }
  napi_value argv[12], undefined;
  napi_get_undefined(env, &undefined);
  napi_create_double(env, (double)(uintptr_t)r, &argv[0]);
  napi_create_int32(env, r->op, &argv[1]);
  napi_create_double(env, (double)r->ino, &argv[2]);
  for (int i = 0; i < 3; i++) napi_create_double(env, (double)r->n[i], &argv[3 + i]);
  if (r->data) {
    napi_create_buffer_copy(env, r->len, r->data, NULL, &argv[6]);
  } else {
    argv[6] = undefined;
  }
  /* A cowfs name is bytes, not text: it goes over as a Buffer. */
  const char *names[2] = {r->name, r->name2};
  for (int i = 0; i < 2; i++) {
    if (!names[i]) argv[7 + i] = undefined;
    else if (r->raw_names) napi_create_buffer_copy(env, strlen(names[i]), names[i], NULL, &argv[7 + i]);
    else napi_create_string_utf8(env, names[i], NAPI_AUTO_LENGTH, &argv[7 + i]);
  }
  napi_create_uint32(env, r->uid, &argv[9]);
  napi_create_uint32(env, r->gid, &argv[10]);
  /* Negative for a resend (FUSE_UNIQUE_RESEND, bit 63): the rest fits a double for any run of a kernel. */
  uint64_t id = r->unique & ~(1ULL << 63);
  napi_create_double(env, (r->unique >> 63) ? -(double)id : (double)id, &argv[11]);
  /* Read before the call: a request some thread waits on may be gone (its stack reused) once JavaScript answered. */
  int heap = r->heap;
  napi_value result;
  if (napi_call_function(env, undefined, handler, 12, argv, &result) != napi_ok && r != &low_signal) {
    napi_value exception;
    napi_get_and_clear_last_exception(env, &exception);
    if (!atomic_load_explicit(&r->done, memory_order_relaxed) && !r->answering) unanswered(r);
  }
  /* A heap copy lives on while its answer is pending (an fsync answers after its flush). */
  if (heap) r->let_go(r);
}

int session_send_js(session *s, request *r) {
  atomic_store_explicit(&r->done, 0, memory_order_relaxed);
  r->err = 0;
  r->out = NULL;
  r->outlen = 0;
  atomic_fetch_add(&s->slow_requests, 1);
  if (atomic_load(&s->closing) || napi_call_threadsafe_function(s->tsfn, r, napi_tsfn_blocking) != napi_ok) return EIO;
  return 0;
}

int session_ask_js(session *s, request *r) {
  if (session_send_js(s, r) != 0) {
    r->err = EIO;
    atomic_store_explicit(&r->done, 1, memory_order_relaxed);
  }
  request_wait(r);
  return r->err;
}

static void fill_attr(struct stat *st, const int64_t *r) {
  memset(st, 0, sizeof(*st));
  st->st_ino = (ino_t)r[0];
  st->st_size = r[1];
  st->st_mode = (mode_t)r[2];
  st->st_nlink = (nlink_t)r[3];
  st->st_mtime = st->st_ctime = st->st_atime = (time_t)r[4];
  st->st_blksize = 4096;
  st->st_blocks = r[5] / 512;
}

static session *of(fuse_req_t req) {
  return fuse_req_userdata(req);
}

/* ---- per-volume counters (volume_stats.c) ----------------------------------- */

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* When a request started, if anyone counts; 0 spares the clock when nobody does. */
static uint64_t started(session *s) {
  return atomic_load_explicit(&s->stats, memory_order_acquire) ? now_ns() : 0;
}

/* Counts a request that completed without error, with the time since `since`. */
static void count(session *s, fuse_ino_t ino, stat_kind kind, uint64_t bytes, uint64_t since) {
  volume_stats *vs = atomic_load_explicit(&s->stats, memory_order_acquire);
  if (vs && since) stats_add(vs, ino, kind, bytes, now_ns() - since);
}

/* ---- lowlevel operations --------------------------------------------------- */

static void op_init(void *userdata, struct fuse_conn_info *conn) {
  (void)userdata;
  conn->max_write = 1 << 20;
  conn->max_readahead = 1 << 20;
  conn->max_background = 64;
  conn->congestion_threshold = 48;
  /* Block files never use the writeback cache: a loop device's dirty pages
   * must reach us, not sit in a second page cache. */
  conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name) {
  request r = {.op = OP_LOOKUP, .ino = parent, .name = name};
  int err = session_ask_js(of(req), &r);
  if (err) {
    fuse_reply_err(req, err);
    return;
  }
  struct fuse_entry_param e;
  memset(&e, 0, sizeof(e));
  e.ino = (fuse_ino_t)r.r[0];
  fill_attr(&e.attr, r.r);
  fuse_reply_entry(req, &e);
}

static void reply_attr(fuse_req_t req, request *r) {
  int err = session_ask_js(of(req), r);
  if (err) {
    fuse_reply_err(req, err);
    return;
  }
  struct stat st;
  fill_attr(&st, r->r);
  fuse_reply_attr(req, &st, 0);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  (void)fi;
  request r = {.op = OP_GETATTR, .ino = ino};
  reply_attr(req, &r);
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set, struct fuse_file_info *fi) {
  (void)fi;
  request r = {.op = OP_SETATTR, .ino = ino, .n = {to_set, attr->st_size, attr->st_mode}};
  reply_attr(req, &r);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  (void)fi;
  request r = {.op = OP_READDIR, .ino = ino, .n = {off, (int64_t)size, 0}};
  int err = session_ask_js(of(req), &r);
  if (err) {
    fuse_reply_err(req, err);
    return;
  }
  /* JS sends every entry: u64 ino, u32 mode, u16 name length, name. */
  char *buf = calloc(1, size);
  size_t used = 0, pos = 0;
  off_t index = 0;
  while (buf && pos + 14 <= r.outlen) {
    uint64_t child;
    uint32_t mode;
    uint16_t len;
    memcpy(&child, r.out + pos, 8);
    memcpy(&mode, r.out + pos + 8, 4);
    memcpy(&len, r.out + pos + 12, 2);
    if (pos + 14 + len > r.outlen || len >= 256) break;
    char name[256];
    memcpy(name, r.out + pos + 14, len);
    name[len] = 0;
    pos += 14 + len;
    index++;
    if (index <= off) continue;
    struct stat st;
    memset(&st, 0, sizeof(st));
    st.st_ino = (ino_t)child;
    st.st_mode = mode;
    size_t need = fuse_add_direntry(req, buf + used, size - used, name, &st, index);
    if (need > size - used) break;
    used += need;
  }
  fuse_reply_buf(req, buf, used);
  free(buf);
  free(r.out);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  request r = {.op = OP_OPEN, .ino = ino, .n = {fi->flags, 0, 0}};
  int err = session_ask_js(of(req), &r);
  if (err) {
    fuse_reply_err(req, err);
    return;
  }
  fi->direct_io = r.r[0] ? 1 : 0;
  fi->keep_cache = 0;
  fuse_reply_open(req, fi);
}

/* One read buffer per FUSE thread, grown to the largest read it served; freed when the thread ends. */
static pthread_key_t read_buffer_key;
static pthread_once_t read_buffer_once = PTHREAD_ONCE_INIT;
static _Thread_local char *read_buffer;
static _Thread_local size_t read_buffer_size;

static void read_buffer_key_init(void) {
  pthread_key_create(&read_buffer_key, free);
}

char *session_read_buffer(size_t size) {
  if (size <= read_buffer_size) return read_buffer;
  pthread_once(&read_buffer_once, read_buffer_key_init);
  char *bigger = realloc(read_buffer, size);
  if (!bigger) return NULL;
  read_buffer = bigger;
  read_buffer_size = size;
  pthread_setspecific(read_buffer_key, bigger);
  return bigger;
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  (void)fi;
  session *s = of(req);
  uint64_t since = started(s);
  char *buf = session_read_buffer(size ? size : 1);
  int err = 0;
  if (buf && table_io(s->table, ino, buf, size, off, 0, &err, NULL)) {
    if (err) fuse_reply_err(req, err);
    else fuse_reply_buf(req, buf, size);
    if (!err) count(s, ino, STAT_READ, size, since);
    return;
  }
  request r = {.op = OP_READ, .ino = ino, .n = {off, (int64_t)size, 0}};
  err = session_ask_js(s, &r);
  if (err) fuse_reply_err(req, err);
  else fuse_reply_buf(req, r.out, r.outlen);
  if (!err) count(s, ino, STAT_READ, r.outlen, since);
  free(r.out);
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *data, size_t size, off_t off, struct fuse_file_info *fi) {
  (void)fi;
  session *s = of(req);
  uint64_t since = started(s);
  int err = 0;
  if (table_io(s->table, ino, (char *)data, size, off, 1, &err, NULL)) {
    if (err) fuse_reply_err(req, err);
    else fuse_reply_write(req, size);
    if (!err) count(s, ino, STAT_WRITE, size, since);
    return;
  }
  request r = {.op = OP_WRITE, .ino = ino, .n = {off, (int64_t)size, 0}, .data = data, .len = size};
  err = session_ask_js(s, &r);
  if (err) fuse_reply_err(req, err);
  else fuse_reply_write(req, (size_t)r.r[0]);
  if (!err) count(s, ino, STAT_WRITE, (uint64_t)r.r[0], since);
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi) {
  (void)fi;
  session *s = of(req);
  uint64_t since = started(s);
  int err = 0;
  if (atomic_load(&s->closing) || !table_flush(s->table, 0, &err)) {
    request r = {.op = OP_FSYNC, .ino = ino, .n = {datasync, 0, 0}};
    err = session_ask_js(s, &r);
  }
  fuse_reply_err(req, err);
  if (!err) count(s, ino, STAT_FLUSH, 0, since);
}

static void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length, struct fuse_file_info *fi) {
  (void)fi;
  session *s = of(req);
  uint64_t since = started(s);
  request r = {.op = OP_FALLOCATE, .ino = ino, .n = {mode, offset, length}};
  int err = session_ask_js(s, &r);
  fuse_reply_err(req, err);
  /* What a block device calls a discard: punching a hole or zeroing a range (both free chunks here). */
  if (!err && (mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE))) count(s, ino, STAT_DISCARD, (uint64_t)length, since);
}

static void op_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, struct fuse_file_info *fi) {
  (void)fi;
  request r = {.op = OP_LSEEK, .ino = ino, .n = {off, whence, 0}};
  int err = session_ask_js(of(req), &r);
  if (err) fuse_reply_err(req, err);
  else fuse_reply_lseek(req, (off_t)r.r[0]);
}

void session_reply_statfs(fuse_req_t req, request *r) {
  int err = session_ask_js(of(req), r);
  if (err) {
    fuse_reply_err(req, err);
    return;
  }
  struct statvfs st;
  memset(&st, 0, sizeof(st));
  st.f_bsize = st.f_frsize = (unsigned long)r->r[5];
  st.f_blocks = (fsblkcnt_t)r->r[0];
  st.f_bfree = (fsblkcnt_t)r->r[1];
  st.f_bavail = (fsblkcnt_t)r->r[2];
  st.f_files = (fsfilcnt_t)r->r[3];
  st.f_ffree = st.f_favail = (fsfilcnt_t)r->r[4];
  st.f_namemax = 255;
  fuse_reply_statfs(req, &st);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino) {
  request r = {.op = OP_STATFS, .ino = ino};
  session_reply_statfs(req, &r);
}

static const struct fuse_lowlevel_ops ops = {
    .init = op_init,
    .lookup = op_lookup,
    .getattr = op_getattr,
    .setattr = op_setattr,
    .readdir = op_readdir,
    .open = op_open,
    .read = op_read,
    .write = op_write,
    .fsync = op_fsync,
    .fallocate = op_fallocate,
    .lseek = op_lseek,
    .statfs = op_statfs,
};

/* ---- session thread and JS entry points ----------------------------------- */

static ssize_t io_read(int fd, void *buf, size_t len, void *userdata) {
  return handover_read(&((session *)userdata)->ho, fd, buf, len);
}

static ssize_t io_writev(int fd, struct iovec *iov, int count, void *userdata) {
  return handover_writev(&((session *)userdata)->ho, fd, iov, count);
}

static const struct fuse_custom_io io = {.read = io_read, .writev = io_writev};

/*
 * Mounts, or takes over the connection `fd` whose kernel INIT was `init`.
 * 0, or an errno with the session left for the caller to free.
 */
static int connect_session(session *s, int fd, const char *init, size_t init_len) {
  if (fd < 0) {
    if (fuse_session_mount(s->se, s->mountpoint) != 0) return EIO;
    fd = fuse_session_fd(s->se);
  } else {
    s->taken_over = 1;
  }
  if (handover_setup(&s->ho, fd, init, init_len) != 0) return errno;
  /* cowfs drops set-id bits itself (the kernel still removes capabilities), so buffered writes need no xattr question each. */
  s->ho.kill_priv = s->filesystem;
  if (fuse_session_custom_io(s->se, &io, fd) != 0) return EINVAL;
  return 0;
}

static void *run(void *arg) {
  session *s = arg;
  struct fuse_loop_config *cfg = fuse_loop_cfg_create();
  fuse_loop_cfg_set_max_threads(cfg, (unsigned)s->threads);
  /* No idle worker exits: a detach signals readers by thread id (handover.c). */
  fuse_loop_cfg_set_idle_threads(cfg, (unsigned)s->threads);
  fuse_loop_cfg_set_clone_fd(cfg, 0);
  fuse_session_loop_mt(s->se, cfg);
  fuse_loop_cfg_destroy(cfg);
  handover_loop_done(&s->ho);
  atomic_store(&s->closing, 1);
  napi_call_threadsafe_function(s->closed_tsfn, NULL, napi_tsfn_blocking);
  return NULL;
}

/*
 * The chunk table's reserve runs low: tell JavaScript without waiting for
 * it. It goes through the requests' own queue (a second thread-safe
 * function was dispatched only once the requests let up, which is too late).
 */
static void table_low(void *ctx) {
  session *s = ctx;
  if (!atomic_load(&s->closing)) napi_call_threadsafe_function(s->tsfn, &low_signal, napi_tsfn_nonblocking);
}

static void call_closed(napi_env env, napi_value cb, void *context, void *data) {
  (void)context;
  (void)data;
  if (env == NULL) return;
  napi_value undefined, result;
  napi_get_undefined(env, &undefined);
  napi_call_function(env, undefined, cb, 0, NULL, &result);
}

/* Argument errors are EINVAL, as a syscall would say; the others carry their own errno. */
static napi_value throw_msg(napi_env env, const char *msg) {
  return cowvol_throw_code(env, "EINVAL", msg);
}

static session *get_session(napi_env env, napi_value v) {
  session *s = NULL;
  if (napi_get_value_external(env, v, (void **)&s) != napi_ok || s == NULL) {
    napi_throw_type_error(env, "EINVAL", "not a FUSE session");
    return NULL;
  }
  return s;
}

/* A boolean argument; `fallback` when it is not one. */
static bool bool_arg(napi_env env, napi_value v, bool fallback) {
  bool b = fallback;
  napi_get_value_bool(env, v, &b);
  return b;
}

/* The arguments of a call whose first is the session: fills argv (n of them) and returns the session, or NULL having thrown. */
static session *session_call(napi_env env, napi_callback_info info, size_t n, napi_value *argv) {
  size_t argc = n;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < n) {
    throw_msg(env, "missing arguments");
    return NULL;
  }
  return get_session(env, argv[0]);
}

static int64_t num(napi_env env, napi_value v) {
  double d = 0;
  napi_get_value_double(env, v, &d);
  return (int64_t)d;
}

/* What a session holds besides libfuse's: each may be NULL (a block files' session, or a half-made one). */
static void free_parts(session *s) {
  table_free(s->table);
  written_free(s->written);
  no_caps_free(s->no_caps);
  attr_cache_free(s->attrs);
  marks_free(s->marks);
  name_filter_free(s->names);
  kernel_times_free(s->times);
}

/* Frees a session that never started its thread. */
static void discard(session *s, int unmount) {
  if (unmount) fuse_session_unmount(s->se);
  fuse_session_destroy(s->se);
  napi_release_threadsafe_function(s->tsfn, napi_tsfn_abort);
  napi_release_threadsafe_function(s->closed_tsfn, napi_tsfn_abort);
  free_parts(s);
  free(s);
}

/* The optional takeover argument: [fuseFd, initBuffer]. fd -1 when absent. */
static int takeover_arg(napi_env env, napi_value v, int *fd, const char **init, size_t *len) {
  *fd = -1;
  bool is_array = false;
  if (napi_is_array(env, v, &is_array) != napi_ok || !is_array) return 0;
  napi_value fdv, buf;
  napi_get_element(env, v, 0, &fdv);
  napi_get_element(env, v, 1, &buf);
  void *data = NULL;
  if (napi_get_value_int32(env, fdv, fd) != napi_ok || napi_get_buffer_info(env, buf, &data, len) != napi_ok || *len == 0) return -1;
  *init = data;
  return 0;
}

/*
 * fuseMount(mountpoint, dataFd, chunkSize, tableSlots, options, handler, onClosed, takeover?, threads?) -> session
 * takeover = [fd, init]: serve a connection a previous daemon handed over instead of mounting.
 * threads > 0: a cowfs filesystem (fs_ops.c) served by the FUSE threads all cowfs mounts share
 * (fs_workers.c; the first mount starts that many); absent or 0, the block files on 16 of their own.
 */
napi_value fuse_mount(napi_env env, napi_callback_info info) {
  size_t argc = 9;
  napi_value argv[9];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 7) return throw_msg(env, "fuseMount: missing arguments");
  int fd = -1;
  const char *init = NULL;
  size_t init_len = 0;
  if (argc > 7 && takeover_arg(env, argv[7], &fd, &init, &init_len) != 0) return throw_msg(env, "fuseMount: takeover is [fd, init]");
  session *s = calloc(1, sizeof(session));
  if (!s) return cowvol_throw_errno(env, ENOMEM, "fuseMount");
  size_t len;
  napi_get_value_string_utf8(env, argv[0], s->mountpoint, sizeof(s->mountpoint), &len);
  int64_t fs_threads = argc > 8 ? num(env, argv[8]) : 0;
  s->filesystem = fs_threads > 0;
  s->threads = s->filesystem ? (int)(fs_threads < 64 ? fs_threads : 64) : 16;
  char options[1024];
  napi_get_value_string_utf8(env, argv[4], options, sizeof(options), &len);
  s->chunk_size = (uint64_t)num(env, argv[2]);
  s->table = table_new((size_t)num(env, argv[3]), s->chunk_size, (int)num(env, argv[1]), table_low, s);
  if (s->filesystem) {
    s->written = written_new();
    s->no_caps = no_caps_new();
    s->attrs = attr_cache_new();
    s->marks = marks_new();
    s->times = kernel_times_new();
    s->names = name_filter_new();
    if (s->table) table_set_tail(s->table, cowfs_on_tail, s);
  }
  if (!s->table || (s->filesystem && (!s->written || !s->no_caps || !s->attrs || !s->marks || !s->times || !s->names))) {
    free_parts(s);
    free(s);
    return throw_msg(env, "fuseMount: chunk size must be positive and the table hold at least one bucket");
  }

  napi_value name;
  napi_create_string_utf8(env, "cowvol-fuse", NAPI_AUTO_LENGTH, &name);
  napi_create_threadsafe_function(env, argv[5], NULL, name, 0, 1, NULL, NULL, NULL, call_js, &s->tsfn);
  napi_create_threadsafe_function(env, argv[6], NULL, name, 0, 1, NULL, NULL, NULL, call_closed, &s->closed_tsfn);

  char *fargv[] = {"cowvol", "-o", options, NULL};
  struct fuse_args args = FUSE_ARGS_INIT(3, fargv);
  s->se = s->filesystem ? fuse_session_new(&args, &cowfs_ops, cowfs_ops_size, s) : fuse_session_new(&args, &ops, sizeof(ops), s);
  if (!s->se) {
    napi_release_threadsafe_function(s->tsfn, napi_tsfn_abort);
    napi_release_threadsafe_function(s->closed_tsfn, napi_tsfn_abort);
    free_parts(s);
    free(s);
    return cowvol_throw_code(env, "EINVAL", "fuse_session_new failed (bad mount options?)");
  }
  int err = connect_session(s, fd, init, init_len);
  if (err != 0) {
    discard(s, fd < 0 && fuse_session_fd(s->se) >= 0);
    if (err == EIO) return cowvol_throw_code(env, "EIO", "fuse_session_mount failed (see the message above)");
    return cowvol_throw_errno(env, err, "fuse custom I/O");
  }
  /* Memory reclaim may wait on a loop device backed by us; we must not wait
   * on reclaim in turn. Set on this (the event loop's) thread, which serves
   * the slow path, and inherited by the FUSE threads created below. Needs
   * CAP_SYS_RESOURCE; without it the caller is told and logs it. */
  s->io_flusher_errno = prctl(PR_SET_IO_FLUSHER, 1, 0, 0, 0) == 0 ? 0 : errno;
  int rc;
  if (s->filesystem) {
    pthread_mutex_init(&s->done_mu, NULL);
    pthread_cond_init(&s->done_cv, NULL);
    rc = fs_workers_add(s, s->threads);
  } else {
    rc = pthread_create(&s->thread, NULL, run, s);
  }
  if (rc != 0) {
    const char *what = s->filesystem ? "cowfs workers" : "pthread_create";
    handover_free(&s->ho);
    discard(s, !s->taken_over);
    return cowvol_throw_errno(env, rc, what);
  }
  napi_value external;
  napi_create_external(env, s, NULL, NULL, &external);
  return external;
}

/* fuseReply(session, id, errno, buffer|undefined, numbers|undefined) */
napi_value fuse_reply(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 3) return throw_msg(env, "fuseReply: missing arguments");
  request *r = (request *)(uintptr_t)num(env, argv[1]);
  if (!r) return throw_msg(env, "fuseReply: bad request id");
  int err = (int)num(env, argv[2]);
  char *out = NULL;
  size_t outlen = 0;
  int64_t nums[REPLY_NUMBERS] = {0};
  bool is_buffer = false;
  if (argc > 3) napi_is_buffer(env, argv[3], &is_buffer);
  if (is_buffer) {
    void *data;
    napi_get_buffer_info(env, argv[3], &data, &outlen);
    out = malloc(outlen ? outlen : 1);
    if (out) memcpy(out, data, outlen);
  }
  bool is_array = false;
  if (argc > 4) napi_is_array(env, argv[4], &is_array);
  if (is_array) {
    uint32_t n;
    napi_get_array_length(env, argv[4], &n);
    for (uint32_t i = 0; i < n && i < REPLY_NUMBERS; i++) {
      napi_value v;
      napi_get_element(env, argv[4], i, &v);
      nums[i] = num(env, v);
    }
  }
  /* Only this thread answers: the asker reads these after `done`. */
  if (atomic_load_explicit(&r->done, memory_order_relaxed) || r->answering) {
    free(out);
    return throw_msg(env, "fuseReply: request already answered");
  }
  r->answering = 1;
  r->err = err;
  r->out = out;
  r->outlen = outlen;
  memcpy(r->r, nums, sizeof(nums));
  /* The asking thread waits for `done`, so the request and all it points to are alive until then; a heap copy
   * lives until its holds are let go (call_js holds one while JavaScript runs). */
  if (r->finish) r->finish(r);
  if (r->heap) r->let_go(r);
  else request_done(r);
  return NULL;
}

/* fuseMap(session, ino, index, fileOffset, writable, breakable, tail) */
napi_value fuse_map(napi_env env, napi_callback_info info) {
  napi_value argv[7];
  session *s = session_call(env, info, 7, argv);
  if (!s) return NULL;
  table_map(s->table, (uint64_t)num(env, argv[1]), (uint64_t)num(env, argv[2]), num(env, argv[3]), bool_arg(env, argv[4], false), bool_arg(env, argv[5], false),
            bool_arg(env, argv[6], false));
  return NULL;
}

/* Reads a JS array of numbers into a new C array of at most `max`; NULL (and *n = 0) when empty. */
static int64_t *numbers_of(napi_env env, napi_value array, size_t max, size_t *n) {
  uint32_t length = 0;
  *n = 0;
  if (napi_get_array_length(env, array, &length) != napi_ok || length == 0) return NULL;
  size_t count = length < max ? length : max;
  int64_t *out = malloc(count * sizeof(int64_t));
  if (!out) return NULL;
  for (uint32_t i = 0; i < count; i++) {
    napi_value v;
    napi_get_element(env, array, i, &v);
    out[i] = num(env, v);
  }
  *n = count;
  return out;
}

/* fuseHoles(session, ino, indices[], tail): these indices of the inode are unmapped; tail: past the file's end too (table_set_tail). */
napi_value fuse_holes(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  session *s = session_call(env, info, 4, argv);
  if (!s) return NULL;
  size_t n;
  int64_t *indices = numbers_of(env, argv[2], 4096, &n);
  if (n > 0) table_holes(s->table, (uint64_t)num(env, argv[1]), (const uint64_t *)indices, n, bool_arg(env, argv[3], false));
  free(indices);
  return NULL;
}

/* fuseReserve(session, offsets[]) -> how many chunks the table took in */
napi_value fuse_reserve(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  session *s = session_call(env, info, 2, argv);
  if (!s) return NULL;
  size_t n;
  int64_t *offsets = numbers_of(env, argv[1], TABLE_RESERVE_MAX, &n);
  size_t added = n > 0 ? table_reserve(s->table, offsets, n) : 0;
  free(offsets);
  napi_value result;
  napi_create_double(env, (double)added, &result);
  return result;
}

/* fuseTaken(session) -> [ino, index, offset, old, ...] of the first writes (old -1) and CoW breaks served since the last call */
napi_value fuse_taken(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  session *s = session_call(env, info, 1, argv);
  if (!s) return NULL;
  table_taken taken[TABLE_RESERVE_MAX];
  size_t n = table_taken_drain(s->table, taken, TABLE_RESERVE_MAX);
  /* A cowfs mount folds them now, into the transaction open now: its files' data syncs wait for that one. */
  for (size_t i = 0; s->marks && i < n; i++)
    if (taken[i].ino != 0) marks_file(s->marks, taken[i].ino);
  napi_value arr, v;
  napi_create_array_with_length(env, n * 4, &arr);
  for (size_t i = 0; i < n; i++) {
    double fields[4] = {(double)taken[i].ino, (double)taken[i].index, (double)taken[i].offset, (double)taken[i].old};
    for (uint32_t f = 0; f < 4; f++) {
      napi_create_double(env, fields[f], &v);
      napi_set_element(env, arr, (uint32_t)(4 * i + f), v);
    }
  }
  return arr;
}

/*
 * fuseInvalidate(session, ino, index): drops one entry, or every entry of
 * the inode when index is negative. Returns after in-flight fast I/O ends.
 */
napi_value fuse_invalidate(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  session *s = session_call(env, info, 3, argv);
  if (!s) return NULL;
  table_invalidate(s->table, (uint64_t)num(env, argv[1]), num(env, argv[2]));
  return NULL;
}

/* Appends `n` numbers to a JavaScript array at `*at` (a flat list of records). */
static void push_numbers(napi_env env, napi_value out, uint32_t *at, const double *v, size_t n) {
  for (size_t j = 0; j < n; j++) {
    napi_value x;
    napi_create_double(env, v[j], &x);
    napi_set_element(env, out, (*at)++, x);
  }
}

/*
 * fuseWritten(session, endsOnly) -> [ino, monotonic s (-1: no time), ns, end (0: none), ...]: the files
 * a cowfs mount wrote natively since the last call (endsOnly: only how far they reach, times stay noted).
 * Those with an end are marked as the takes are (fuse_taken).
 */
napi_value fuse_written(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  session *s = session_call(env, info, 2, argv);
  if (!s) return NULL;
  written_file files[WRITTEN_MAX];
  int ends_only = bool_arg(env, argv[1], false);
  size_t n = !s->written ? 0 : ends_only ? written_drain_ends(s->written, files) : written_drain(s->written, files);
  napi_value out;
  napi_create_array_with_length(env, n * 4, &out);
  uint32_t at = 0;
  for (size_t i = 0; i < n; i++) {
    if (files[i].end > 0 && s->marks) marks_file(s->marks, files[i].ino);
    double v[4] = {(double)files[i].ino, (double)files[i].sec, (double)files[i].nsec, (double)files[i].end};
    push_numbers(env, out, &at, v, 4);
  }
  return out;
}

/* fuseKernelTimes(session): [ino, set, atime s, ns, mtime s, ns, ctime s, ns] per file the kernel set times on (kernel_times.h). */
napi_value fuse_kernel_times(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  session *s = session_call(env, info, 1, argv);
  if (!s) return NULL;
  kernel_times_entry files[KERNEL_TIMES_MAX];
  size_t n = s->times ? kernel_times_drain(s->times, files) : 0;
  napi_value out;
  napi_create_array_with_length(env, n * 8, &out);
  uint32_t at = 0;
  for (size_t i = 0; i < n; i++) {
    const kernel_times_entry *f = &files[i];
    double v[8] = {(double)f->ino, (double)f->set, (double)f->atime[0], (double)f->atime[1], (double)f->mtime[0], (double)f->mtime[1], (double)f->ctime[0], (double)f->ctime[1]};
    push_numbers(env, out, &at, v, 8);
  }
  return out;
}

/* fuseClock(session, sec, nsec): the wall clock at CLOCK_MONOTONIC's zero, so native writes stamp times on JavaScript's scale. */
napi_value fuse_clock(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  session *s = session_call(env, info, 3, argv);
  if (!s) return NULL;
  s->wall_sec = num(env, argv[1]);
  s->wall_nsec = num(env, argv[2]);
  return NULL;
}

/* fuseCommitNeeded(session, needed) */
napi_value fuse_commit_needed(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  session *s = session_call(env, info, 2, argv);
  if (!s) return NULL;
  table_commit_needed(s->table, bool_arg(env, argv[1], true));
  return NULL;
}

/* fuseGenerations(session, open, durable, all): the pool's transaction generations, for a cowfs mount's flush marks; all: mark every file. */
napi_value fuse_generations(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  session *s = session_call(env, info, 4, argv);
  if (!s) return NULL;
  if (!s->marks) return NULL;
  marks_generations(s->marks, (uint64_t)num(env, argv[1]), (uint64_t)num(env, argv[2]));
  if (bool_arg(env, argv[3], false)) marks_all(s->marks);
  return NULL;
}

/* fuseFollowNames(session, dir, names): names, each ended by a NUL, are all that directory `dir` holds (name_filter.h). */
napi_value fuse_follow_names(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  session *s = session_call(env, info, 3, argv);
  if (!s || !s->names) return NULL;
  void *data = NULL;
  size_t len = 0;
  if (napi_get_buffer_info(env, argv[2], &data, &len) != napi_ok) return throw_msg(env, "fuseFollowNames: names must be a Buffer");
  name_filter_follow_names(s->names, (uint64_t)num(env, argv[1]), data, len);
  return NULL;
}

/* fuseStats(session) -> [fastReads, fastWrites, slowRequests, ioFlusherErrno, firstWrites, fastFlushes, flushErrno, absentNames, cowBreaks] */
napi_value fuse_stats(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  session *s = session_call(env, info, 1, argv);
  if (!s) return NULL;
  table_counts c = table_counts_sum(s->table);
  double values[9] = {(double)c.fast_reads, (double)c.fast_writes, (double)atomic_load(&s->slow_requests), (double)s->io_flusher_errno,
                      (double)c.first_writes, (double)c.fast_flushes, (double)c.flush_errno, s->names ? (double)name_filter_answers(s->names) : 0,
                      (double)c.cow_breaks};
  napi_value arr, v;
  napi_create_array_with_length(env, 9, &arr);
  for (uint32_t i = 0; i < 9; i++) {
    napi_create_double(env, values[i], &v);
    napi_set_element(env, arr, i, v);
  }
  return arr;
}

/*
 * fuseUnmount(session): stops taking requests and unmounts; does not wait.
 * The onClosed callback given to fuseMount runs once every worker is gone;
 * call fuseDestroy from it.
 */
napi_value fuse_unmount(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  session *s = session_call(env, info, 1, argv);
  if (!s) return NULL;
  fuse_session_exit(s->se);
  /* libfuse unmounts only what it mounted; a connection taken over is ours to unmount. So is
   * a cowfs mount's: libfuse's unmount closes the fd, which would leave the shared workers'
   * epoll set without a word (fs_workers.c); fuse_session_destroy closes it later. */
  if (s->taken_over || s->filesystem) umount2(s->mountpoint, MNT_DETACH);
  else fuse_session_unmount(s->se);
  /* Readers go on serving what loop devices still send until the kernel ends the connection (ENODEV). */
  return NULL;
}

/*
 * fuseDetach(session): stops taking requests without unmounting, so the next
 * daemon can take the connection over (fuseHandover, before fuseDestroy).
 * Requests arriving from now on wait in the kernel. onClosed runs once every
 * worker has answered what it was serving.
 */
napi_value fuse_detach(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  session *s = session_call(env, info, 1, argv);
  if (!s) return NULL;
  fuse_session_exit(s->se);
  /* The shared workers read only when woken (with no request queued, none would see the detach), and
   * signals would only interrupt them at work for other mounts. */
  handover_detach(&s->ho, !s->filesystem);
  if (s->filesystem) fs_workers_wake(s);
  return NULL;
}

/* fuseHandover(session) -> [fd, init]: a duplicate of the connection's fd and the kernel's INIT request (empty before INIT). */
napi_value fuse_handover(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  session *s = session_call(env, info, 1, argv);
  if (!s) return NULL;
  char init[HANDOVER_INIT_MAX];
  size_t n = handover_init_copy(&s->ho, init);
  int fd = fcntl(fuse_session_fd(s->se), F_DUPFD_CLOEXEC, 3);
  if (fd < 0) return cowvol_throw_errno(env, errno, "dup");
  napi_value out, fdv, buf;
  napi_create_int32(env, fd, &fdv);
  napi_create_buffer_copy(env, n, init, NULL, &buf);
  napi_create_array_with_length(env, 2, &out);
  napi_set_element(env, out, 0, fdv);
  napi_set_element(env, out, 1, buf);
  return out;
}

/* fuseDestroy(session): joins the session thread and frees everything. */
napi_value fuse_destroy(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  session *s = session_call(env, info, 1, argv);
  if (!s) return NULL;
  if (s->filesystem) {
    fs_workers_wait_done(s);
    pthread_mutex_destroy(&s->done_mu);
    pthread_cond_destroy(&s->done_cv);
  } else {
    pthread_join(s->thread, NULL);
  }
  fuse_session_destroy(s->se);
  handover_free(&s->ho);
  journal_close(s->journal);
  napi_release_threadsafe_function(s->tsfn, napi_tsfn_release);
  napi_release_threadsafe_function(s->closed_tsfn, napi_tsfn_release);
  free_parts(s);
  stats_free(atomic_load(&s->stats));
  free(s);
  return NULL;
}

/* fuseCountVolumes(session, volumes): count requests per volume from now on, tracking up to `volumes` per thread slot. */
napi_value fuse_count_volumes(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  session *s = session_call(env, info, 2, argv);
  if (!s) return NULL;
  if (atomic_load(&s->stats)) return throw_msg(env, "fuseCountVolumes: the session counts already");
  volume_stats *vs = stats_new((size_t)num(env, argv[1]));
  if (!vs) return cowvol_throw_errno(env, ENOMEM, "fuseCountVolumes");
  atomic_store_explicit(&s->stats, vs, memory_order_release);
  return NULL;
}

#define STAT_FIELDS (1 + 3 * STAT_KINDS)

/*
 * fuseVolumeStats(session) -> [untracked, then per entry: ino, counts[4],
 * bytes[4], ns[4]] in stat_kind order; an ino may repeat (one entry per
 * thread slot that counted it), the caller sums. [] when not counting.
 */
napi_value fuse_volume_stats(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  session *s = session_call(env, info, 1, argv);
  if (!s) return NULL;
  volume_stats *vs = atomic_load(&s->stats);
  size_t cap = stats_capacity(vs);
  volume_counts *all = cap ? calloc(cap, sizeof(volume_counts)) : NULL;
  if (cap && !all) return cowvol_throw_errno(env, ENOMEM, "fuseVolumeStats");
  size_t n = stats_collect(vs, all, cap);
  napi_value arr, v;
  napi_create_array_with_length(env, vs ? 1 + n * STAT_FIELDS : 0, &arr);
  uint32_t at = 0;
  if (vs) {
    napi_create_double(env, (double)stats_untracked(vs), &v);
    napi_set_element(env, arr, at++, v);
  }
  for (size_t i = 0; i < n; i++) {
    double fields[STAT_FIELDS] = {(double)all[i].ino};
    for (int k = 0; k < STAT_KINDS; k++) {
      fields[1 + k] = (double)all[i].count[k];
      fields[1 + STAT_KINDS + k] = (double)all[i].bytes[k];
      fields[1 + 2 * STAT_KINDS + k] = (double)all[i].ns[k];
    }
    for (int f = 0; f < STAT_FIELDS; f++) {
      napi_create_double(env, fields[f], &v);
      napi_set_element(env, arr, at++, v);
    }
  }
  free(all);
  return arr;
}

/*
 * fuseLatency(session) -> per kind, STAT_BUCKETS counts (bucket i: at most
 * 16 us << i; the last, the rest) and then the kind's total nanoseconds;
 * [] when not counting.
 */
napi_value fuse_latency(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  session *s = session_call(env, info, 1, argv);
  if (!s) return NULL;
  volume_stats *vs = atomic_load(&s->stats);
  uint64_t counts[STAT_KINDS][STAT_BUCKETS], ns[STAT_KINDS];
  stats_latency(vs, counts, ns);
  napi_value arr, v;
  napi_create_array_with_length(env, vs ? STAT_KINDS * (STAT_BUCKETS + 1) : 0, &arr);
  uint32_t at = 0;
  for (uint32_t k = 0; vs && k < STAT_KINDS; k++) {
    for (uint32_t b = 0; b <= STAT_BUCKETS; b++) {
      napi_create_double(env, (double)(b < STAT_BUCKETS ? counts[k][b] : ns[k]), &v);
      napi_set_element(env, arr, at++, v);
    }
  }
  return arr;
}

/* fuseForgetVolume(session, ino): its volume is gone; its counters go too. */
napi_value fuse_forget_volume(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  session *s = session_call(env, info, 2, argv);
  if (!s) return NULL;
  stats_forget(atomic_load(&s->stats), (uint64_t)num(env, argv[1]));
  return NULL;
}

/*
 * fuseJournal(session, fd, volume): journal every mapping change in the
 * memfd journal `fd` (journalCreate) from now on; a cowfs mount's first
 * writes and ends as its volume's (`volume`, -1 for the block files).
 */
napi_value fuse_journal(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  session *s = session_call(env, info, 3, argv);
  if (!s) return NULL;
  if (s->journal) return throw_msg(env, "fuseJournal: the session has a journal already");
  int64_t volume = num(env, argv[2]);
  if (s->filesystem != (volume >= 0)) return throw_msg(env, "fuseJournal: a volume is for a cowfs mount's journal only");
  journal *j = journal_open((int)num(env, argv[1]), 0, 0);
  if (!j) return cowvol_throw_errno(env, errno, "journal");
  s->journal_volume = volume;
  s->journal = j;
  table_set_journal(s->table, j, volume);
  return NULL;
}

/*
 * fuseJournalItems(session, packed, count, volume, unique) -> seq, 0 when
 * full: filesystem tree items as one unit (each packed as u32 volume, u32
 * key length, u32 value length or 0xffffffff for a delete, key, value),
 * then, unless `unique` is 0, the FUSE request of `volume` that made them.
 */
#define JOURNAL_BATCH_MAX 4096
napi_value fuse_journal_items(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  session *s = session_call(env, info, 5, argv);
  if (!s) return NULL;
  char *p = NULL;
  size_t len = 0;
  if (napi_get_buffer_info(env, argv[1], (void **)&p, &len) != napi_ok) return throw_msg(env, "fuseJournalItems: packed items must be a Buffer");
  int64_t n = num(env, argv[2]);
  if (n < 0 || n > JOURNAL_BATCH_MAX) return throw_msg(env, "fuseJournalItems: too many items for one unit");
  journal_item *items = calloc(n > 0 ? (size_t)n : 1, sizeof(journal_item));
  if (!items) return cowvol_throw_errno(env, ENOMEM, "journal");
  size_t at = 0;
  for (int64_t i = 0; i < n; i++) {
    uint32_t h[3] = {0, 0, 0};
    int cut = len - at < sizeof(h);
    if (!cut) {
      memcpy(h, p + at, sizeof(h));
      at += sizeof(h);
    }
    int deleted = h[2] == UINT32_MAX;
    size_t vlen = deleted ? 0 : h[2];
    if (cut || len - at < (size_t)h[1] + vlen) {
      free(items);
      return throw_msg(env, "fuseJournalItems: packed items cut short");
    }
    items[i] = (journal_item){.volume = h[0], .payload = p + at, .klen = h[1], .vlen = vlen, .deleted = deleted};
    at += h[1] + vlen;
  }
  uint64_t seq = s->journal ? journal_append_batch(s->journal, items, (size_t)n, (uint64_t)num(env, argv[3]), (uint64_t)num(env, argv[4])) : 0;
  free(items);
  napi_value out;
  napi_create_double(env, (double)seq, &out);
  return out;
}

/* fuseJournalAppend(session, ino, index, offset, old) -> seq, 0 when full */
napi_value fuse_journal_append(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  session *s = session_call(env, info, 5, argv);
  if (!s) return NULL;
  uint64_t seq = table_journal(s->table, (uint64_t)num(env, argv[1]), (uint64_t)num(env, argv[2]), num(env, argv[3]), num(env, argv[4]));
  napi_value out;
  napi_create_double(env, (double)seq, &out);
  return out;
}

/* The journal seq below which a commit sealed now holds everything this session journaled: its takes and ends folded. */
static uint64_t session_cover(session *s) {
  uint64_t covered = table_cover(s->table);
  uint64_t end = s->written ? written_cover(s->written) : 0;
  return end != 0 && end < covered ? end : covered;
}

/*
 * fuseJournalCommit(session, step, generation, covered) -> number. step 0:
 * the seq a commit sealed now covers; 1: mark it (before the superblock);
 * 2: trim (after it); 3: the journal's fill, 0..1.
 */
napi_value fuse_journal_commit(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  session *s = session_call(env, info, 4, argv);
  if (!s) return NULL;
  double r = 0;
  if (s->journal) {
    int64_t step = num(env, argv[1]);
    if (step == 0) r = (double)session_cover(s);
    else if (step == 1) journal_mark(s->journal, (uint64_t)num(env, argv[2]), (uint64_t)num(env, argv[3]));
    else if (step == 2) journal_trim(s->journal, (uint64_t)num(env, argv[3]));
    else r = journal_fill(s->journal);
  }
  napi_value out;
  napi_create_double(env, r, &out);
  return out;
}
