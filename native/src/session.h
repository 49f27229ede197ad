/*
 * What the FUSE session's files share (fuse_session.c runs the session and
 * serves block files; fs_ops.c serves a cowfs filesystem): the request that
 * carries one FUSE call to JavaScript and back, and the session itself.
 *
 * Lock notes: a request is owned by the FUSE thread that made it until
 * JavaScript answers (fuseReply stores `done`), or, handed over as a heap
 * copy, by the JavaScript thread; the session's fields are set before its
 * thread starts and read-only after, except the atomics.
 */
#ifndef COWVOL_SESSION_H
#define COWVOL_SESSION_H

#define FUSE_USE_VERSION 312
#include "chunk_table.h"
#include "handover.h"
#include "journal.h"
#include "volume_stats.h"
#include "written.h"
#include "kernel_times.h"
#include "no_caps.h"
#include "flush_marks.h"
#include "attr_cache.h"
#include "name_filter.h"

#include <fuse_lowlevel.h>
#include <node_api.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

/* Numbers a reply may carry (a cowfs create or unlink answers with two inodes' attributes: 28). */
#define REPLY_NUMBERS 32

typedef struct request {
  int op;
  uint64_t ino;
  int64_t n[3];
  const char *data;
  size_t len;
  const char *name;
  /* cowfs only: a second name (rename's new name), names handed over as bytes, and who asked. */
  const char *name2;
  int raw_names;
  uint32_t uid, gid;
  uint64_t unique; /* cowfs: the kernel's id of the request, FUSE_UNIQUE_RESEND kept (a successor's resend of one the killed daemon read) */
  /*
   * 1 once answered (fuseReply, or the teardown's EIO), stored last with
   * release order: the asking thread waits on it as a futex (request_wait).
   * Only the JavaScript thread answers, so nothing else guards the fields.
   */
  _Atomic uint32_t done;
  int err;
  char *out;
  size_t outlen;
  int64_t r[REPLY_NUMBERS];
  /*
   * cowfs: what answers the kernel once JavaScript answered, run by
   * fuseReply on the JavaScript thread, so the kernel hears without first
   * waking the FUSE thread that asked (which waits until it ran, so all
   * the request points to stays alive). NULL: the asking thread answers.
   * `answering`: fuseReply took the answer (and ran `finish`).
   */
  void (*finish)(struct request *r);
  int answering;
  /* fs_ops.c's own, for `finish`: the request, the reply to make and what it needs. */
  fuse_req_t req;
  void (*reply)(fuse_req_t req, struct request *r);
  int scope;
  uint64_t file;
  attr_ticket ticket; /* a one-inode change's (attr_cache_begin), or a getattr's (attr_cache_ticket) */
  int xattr;
  size_t size;
  struct fuse_file_info *fi;
  uint64_t caps_ticket;
  uint64_t release_ino; /* an open or create whose reply found the opener gone: the asking thread releases it */
  /*
   * cowfs: a heap copy of a request no FUSE thread waits for (fs_ops.c's
   * hand_off), with its names, data and file info copied in. `holds`: the
   * answer's and call_js's; `let_go` drops one and frees the copy at none.
   * Only the JavaScript thread touches a copy once it is handed over.
   */
  int heap;
  int holds;
  void (*let_go)(struct request *r);
  struct session *sess;
  struct fuse_file_info fi_copy;
} request;

typedef struct session {
  struct fuse_session *se;
  pthread_t thread;
  napi_threadsafe_function tsfn;
  napi_threadsafe_function closed_tsfn;
  chunk_table *table;
  atomic_int closing;
  atomic_ullong slow_requests;
  atomic_int handed; /* cowfs: requests handed to JavaScript with no thread waiting, not yet answered (fs_ops.c) */
  int io_flusher_errno; /* 0 when PR_SET_IO_FLUSHER took effect */
  handover ho;          /* our reads and writes on /dev/fuse (handover.c) */
  journal *journal;     /* map changes since the last commit, for a successor after a kill (journal.c); shared by a daemon's sessions */
  int64_t journal_volume; /* cowfs: the volume its file takes and ends are recorded for; -1 for the block files */
  int taken_over;       /* the connection came from a previous daemon: libfuse did not mount it */
  int filesystem;       /* a cowfs mount (fs_ops.c) rather than the block files */
  int threads;          /* block files: this session's FUSE threads; cowfs: the shared workers' number, if this mount starts them (fs_workers.c) */
  written *written;     /* cowfs: files written natively, for JavaScript to stamp (written.c); NULL for the block files */
  no_caps *no_caps;     /* cowfs: files without a capability xattr (no_caps.c); NULL for the block files */
  attr_cache *attrs;    /* cowfs: attributes as JavaScript last answered them (attr_cache.c) */
  flush_marks *marks;   /* cowfs: files whose data syncs need a commit (flush_marks.c) */
  kernel_times *times;  /* cowfs: times the kernel set, answered natively, waiting for JavaScript (kernel_times.c) */
  name_filter *names;   /* cowfs: names of the directories made in this mount, so a missing one is answered natively (name_filter.c) */
  uint64_t chunk_size; /* of the pool: a first write's chunk adds chunk_size / 512 blocks to a cowfs file */
  int64_t wall_sec, wall_nsec; /* cowfs: the wall clock at CLOCK_MONOTONIC's zero, as JavaScript's inode times count (fuseClock) */
  /* Per-volume counters; NULL until JavaScript asks for them (fuseCountVolumes), then set once and freed with the session. */
  _Atomic(volume_stats *) stats;
  char mountpoint[4096];
  /* cowfs: the shared workers' hold on the session (fs_workers.c has the lock notes). */
  atomic_int refs;
  atomic_int ended;
  pthread_mutex_t done_mu;
  pthread_cond_t done_cv;
  int done;
} session;

/* Sends the request to JavaScript and waits for its reply. Returns 0 or an errno. */
int session_ask_js(session *s, request *r);
/* Sends the request to JavaScript without waiting (a heap copy, see `heap`). 0, or EIO when the session is closing. */
int session_send_js(session *s, request *r);

/* This thread's read buffer, at least `size` bytes; NULL when out of memory. */
char *session_read_buffer(size_t size);

/* Asks, then answers statfs from r[0..5]: blocks, free, available, files, free files, block size. */
void session_reply_statfs(fuse_req_t req, request *r);

/* The lowlevel operations of a cowfs mount (fs_ops.c). */
extern const struct fuse_lowlevel_ops cowfs_ops;
extern const size_t cowfs_ops_size;
/* A cowfs table's note of a write past a file's known end (table_set_tail; fs_ops.c). */
int cowfs_on_tail(void *ctx, uint64_t ino, uint64_t end);

#endif
