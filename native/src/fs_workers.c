/*
 * The FUSE threads every cowfs mount shares, so threads are bounded by
 * configuration (the first mount's `workers`), not by how many filesystems
 * a node mounts. Each mount's /dev/fuse fd sits in one epoll set, armed
 * one-shot: a worker that the set wakes reads one request of that mount,
 * arms the fd again (so another worker may read the mount's next request),
 * then serves what it read. The fd is non-blocking, so a request the kernel
 * took back between the wake and the read costs a re-arm, not a worker.
 *
 * A session ends when its read says the connection is gone (after an
 * unmount) or that the session exited; its fd leaves the set, and the last
 * worker to let go of it calls its closed callback.
 *
 * A worker only reads when the set wakes it, and the set only wakes for a
 * request, so two reads that must happen with no request queued are
 * started by arming the fd for writing too (/dev/fuse always polls
 * writable): the first read of a session taken over from a previous
 * daemon, which replays the kernel's INIT (handover.c), and the read after
 * a detach, which says the session is over so it can end.
 *
 * Lock notes: `refs` counts the registration (1 until the end), every
 * worker serving the session and every request handed to JavaScript and
 * not yet answered (fs_ops.c's hand_off); `ended` is set once. `done_mu`
 * guards `done`, which tells fuseDestroy that no worker will touch the
 * session again. A worker hands most requests for JavaScript over and
 * reads on; past a mount's bound of them, or for a large write, it waits
 * for the answer, and with every worker waiting the other mounts wait too
 * (JavaScript answers all of them on one thread anyway).
 */
#include "fs_workers.h"
#include "session.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fuse.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/epoll.h>

/* Larger than any request libfuse reads (its bufsize: 256 pages of data and a header page). */
#define WORKER_BUFFER ((size_t)(2u << 20))

static pthread_mutex_t start_mu = PTHREAD_MUTEX_INITIALIZER;
static int epoll_fd = -1;
static atomic_int running;

/*
 * What a worker waits for on the session. Writable too while a read must
 * come with nothing queued: the INIT a takeover replays is not read yet, or
 * the session is detaching. Asked at every arming, so a worker re-arming
 * after its read cannot drop the wake-up a detach just armed.
 */
static uint32_t wanted(session *s) {
  int must_read = atomic_load(&s->ho.detaching) || atomic_load(&s->ho.replay) == 1;
  return EPOLLIN | EPOLLONESHOT | (must_read ? EPOLLOUT : 0);
}

static void arm(session *s, int op) {
  struct epoll_event ev = {.events = wanted(s), .data.ptr = s};
  /* Fails only for a session that ended meanwhile (its fd left the set). */
  epoll_ctl(epoll_fd, op, fuse_session_fd(s->se), &ev);
  /* A detach between asking and arming may have armed its wake-up first, and ours replaced it: arm it again. */
  if (!(ev.events & EPOLLOUT) && (wanted(s) & EPOLLOUT)) {
    ev.events = wanted(s);
    epoll_ctl(epoll_fd, EPOLL_CTL_MOD, fuse_session_fd(s->se), &ev);
  }
}

static void finish(session *s) {
  handover_loop_done(&s->ho);
  atomic_store(&s->closing, 1);
  napi_call_threadsafe_function(s->closed_tsfn, NULL, napi_tsfn_blocking);
  pthread_mutex_lock(&s->done_mu);
  s->done = 1;
  pthread_cond_broadcast(&s->done_cv);
  pthread_mutex_unlock(&s->done_mu);
}

static void put(session *s) {
  if (atomic_fetch_sub(&s->refs, 1) == 1) finish(s);
}

static void end(session *s) {
  if (atomic_exchange(&s->ended, 1)) return;
  epoll_ctl(epoll_fd, EPOLL_CTL_DEL, fuse_session_fd(s->se), NULL);
  put(s); /* the registration's */
}

_Thread_local uint64_t fs_worker_unique;

static void *worker(void *arg) {
  (void)arg;
  struct fuse_buf buf = {.mem = malloc(WORKER_BUFFER), .size = WORKER_BUFFER};
  if (!buf.mem) return NULL;
  for (;;) {
    struct epoll_event ev;
    if (epoll_wait(epoll_fd, &ev, 1, -1) != 1) continue;
    session *s = ev.data.ptr;
    atomic_fetch_add(&s->refs, 1);
    buf.flags = 0;
    int res = fuse_session_receive_buf(s->se, &buf);
    if (res > 0 && !fuse_session_exited(s->se)) {
      arm(s, EPOLL_CTL_MOD);
      fs_worker_unique = !(buf.flags & FUSE_BUF_IS_FD) && (size_t)res >= sizeof(struct fuse_in_header) ? ((const struct fuse_in_header *)buf.mem)->unique : 0;
      fuse_session_process_buf(s->se, &buf);
    } else if ((res == -EAGAIN || res == -EINTR) && !fuse_session_exited(s->se)) {
      arm(s, EPOLL_CTL_MOD);
    } else {
      end(s);
    }
    put(s);
  }
  return NULL;
}

static int start(int workers) {
  if (atomic_load(&running) > 0) return 0;
  epoll_fd = epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd < 0) return errno;
  if (workers < 1) workers = 1;
  if (workers > FS_WORKERS_MAX) workers = FS_WORKERS_MAX;
  for (int i = 0; i < workers; i++) {
    pthread_t t;
    int rc = pthread_create(&t, NULL, worker, NULL);
    if (rc != 0) return i > 0 ? 0 : rc;
    pthread_detach(t);
    atomic_fetch_add(&running, 1);
  }
  return 0;
}

void fs_workers_wake(session *s) {
  /* Fails only for a session that ended already: then nothing is left to wake. */
  arm(s, EPOLL_CTL_MOD);
}

int fs_workers_add(session *s, int workers) {
  pthread_mutex_lock(&start_mu);
  int err = start(workers);
  pthread_mutex_unlock(&start_mu);
  if (err) return err;
  int fd = fuse_session_fd(s->se);
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) return errno;
  atomic_store(&s->refs, 1);
  /* Taken over: a worker replays INIT at once, before any request needs it (wanted()). */
  struct epoll_event ev = {.events = wanted(s), .data.ptr = s};
  if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &ev) != 0) return errno;
  return 0;
}

void fs_workers_hold(session *s) {
  atomic_fetch_add(&s->refs, 1);
}

void fs_workers_put(session *s) {
  put(s);
}

void fs_workers_wait_done(session *s) {
  pthread_mutex_lock(&s->done_mu);
  while (!s->done) pthread_cond_wait(&s->done_cv, &s->done_mu);
  pthread_mutex_unlock(&s->done_mu);
}

int fs_workers_count(void) {
  return atomic_load(&running);
}
