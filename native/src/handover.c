/*
 * The session's own I/O on /dev/fuse, so a daemon can hand its connection to
 * the next one without the kernel noticing.
 *
 * Why custom I/O: libfuse 3.14 reads and writes the device itself and
 * insists on seeing FUSE_INIT before any other request, which the kernel
 * sends once per mount. A successor therefore gets the fd (from the keeper,
 * see keeper.c) and the INIT bytes its predecessor read; the first read of
 * its session returns those bytes, libfuse answers them as it did the first
 * time, and that answer is swallowed here (the kernel already has it). Right
 * after, FUSE_NOTIFY_RESEND (Linux 6.9) puts every request the predecessor
 * read but never answered back on the kernel's queue, marked as resent.
 *
 * Stopping without unmounting (`handover_detach`): readers block in read(2)
 * as libfuse's own would (the kernel wakes one per request), so a helper
 * thread sends each of them a signal whose handler does nothing and does not
 * restart the call: read returns EINTR, libfuse comes back for another read,
 * and that one returns ENODEV, which libfuse takes for an unmount and ends
 * its loop. A reader busy with a request answers it first. The helper
 * repeats the signals until the loop is over, which covers a signal that
 * lands just before a reader enters read(2). Requests that arrive meanwhile
 * wait in the kernel for the successor.
 *
 * Caveats: until the replayed INIT is answered, other readers wait (libfuse
 * would answer EIO to anything before INIT). Readers are signalled by kernel
 * thread id, so the session must not let idle workers exit (fuse_session.c
 * keeps as many idle as it may start). Reads on the hot path cost two atomic
 * loads more than a plain read(2). An earlier version polled the fd with an
 * eventfd instead; every request then woke every idle reader, and 4 KiB
 * random reads at depth 32 fell to half.
 */
#include "handover.h"
#include "kill_priv.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fuse.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* include/uapi/linux/fuse.h, 7.40 (Linux 6.9); Debian 12's header predates it. */
#define NOTIFY_RESEND 7

/* The signal that interrupts a reader's read(2); glibc keeps the first real-time signals for itself. */
static int wake_signal(void) {
  return SIGRTMIN + 5;
}

static void on_wake(int sig) {
  (void)sig;
}

int handover_setup(handover *h, int fuse_fd, const char *init, size_t init_len) {
  memset(h, 0, sizeof(*h));
  if (init_len > HANDOVER_INIT_MAX || (init_len > 0 && init_len < sizeof(struct fuse_in_header))) {
    errno = EINVAL;
    return -1;
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_wake; /* no SA_RESTART: the point is to end the read */
  sigemptyset(&sa.sa_mask);
  if (sigaction(wake_signal(), &sa, NULL) != 0) return -1;
  /* Readers block in read(2), so the kernel wakes one per request (a predecessor may have left the description non-blocking). */
  int flags = fcntl(fuse_fd, F_GETFL);
  if (flags < 0 || fcntl(fuse_fd, F_SETFL, flags & ~O_NONBLOCK) < 0) return -1;
  pthread_mutex_init(&h->mu, NULL);
  pthread_cond_init(&h->cv, NULL);
  if (init_len > 0) {
    memcpy(h->init, init, init_len);
    h->init_len = init_len;
    h->replay_unique = ((const struct fuse_in_header *)h->init)->unique;
    atomic_store(&h->replay, 1);
  }
  return 0;
}

void handover_free(handover *h) {
  handover_loop_done(h);
  pthread_mutex_destroy(&h->mu);
  pthread_cond_destroy(&h->cv);
}

/* Slow path while a takeover replays INIT: 1 and the bytes for the reader that replays, 0 once it was answered. */
static ssize_t replaying(handover *h, void *buf, size_t len) {
  ssize_t n = 0;
  pthread_mutex_lock(&h->mu);
  if (atomic_load(&h->replay) == 1) {
    atomic_store(&h->replay, 2);
    n = (ssize_t)(h->init_len < len ? h->init_len : len);
    memcpy(buf, h->init, (size_t)n);
  }
  while (n == 0 && atomic_load(&h->replay) == 2 && !atomic_load(&h->detaching)) pthread_cond_wait(&h->cv, &h->mu);
  pthread_mutex_unlock(&h->mu);
  return n;
}

static void keep_init(handover *h, const void *buf, size_t n) {
  if (n < sizeof(struct fuse_in_header) || n > HANDOVER_INIT_MAX) return;
  if (((const struct fuse_in_header *)buf)->opcode != FUSE_INIT) return;
  pthread_mutex_lock(&h->mu);
  if (h->init_len == 0) {
    memcpy(h->init, buf, n);
    h->init_len = n;
  }
  pthread_mutex_unlock(&h->mu);
}

static _Thread_local handover *registered_in;
static _Thread_local int my_reader = -1;

/* Each reader once: the waker needs its kernel thread id. */
static void register_reader(handover *h) {
  if (registered_in == h) return;
  registered_in = h;
  my_reader = atomic_fetch_add(&h->nreaders, 1);
  if (my_reader < HANDOVER_READERS) atomic_store(&h->readers[my_reader], (int)syscall(SYS_gettid));
}

static ssize_t gone(handover *h) {
  if (my_reader >= 0 && my_reader < HANDOVER_READERS) atomic_store(&h->readers[my_reader], 0);
  errno = ENODEV;
  return -1;
}

ssize_t handover_read(handover *h, int fd, void *buf, size_t len) {
  register_reader(h);
  for (;;) {
    if (atomic_load_explicit(&h->detaching, memory_order_acquire)) return gone(h);
    if (atomic_load_explicit(&h->replay, memory_order_acquire) != 0) {
      ssize_t n = replaying(h, buf, len);
      if (n > 0) return n;
      continue;
    }
    ssize_t n = read(fd, buf, len);
    if (n >= 0) {
      keep_init(h, buf, (size_t)n);
      if (h->kill_priv) kill_priv_note(buf, (size_t)n);
      return n;
    }
    if (errno == EINTR && atomic_load_explicit(&h->detaching, memory_order_acquire)) return gone(h);
    return -1; /* ENODEV, ENOENT, EINTR: libfuse knows them */
  }
}

ssize_t handover_writev(handover *h, int fd, struct iovec *iov, int count) {
  if (atomic_load_explicit(&h->replay, memory_order_acquire) == 2 && count > 0 && iov[0].iov_len >= sizeof(struct fuse_out_header) &&
      ((const struct fuse_out_header *)iov[0].iov_base)->unique == h->replay_unique) {
    ssize_t total = 0;
    for (int i = 0; i < count; i++) total += (ssize_t)iov[i].iov_len;
    struct fuse_out_header resend = {.len = sizeof(resend), .error = NOTIFY_RESEND, .unique = 0};
    int err = write(fd, &resend, sizeof(resend)) == (ssize_t)sizeof(resend) ? 0 : errno;
    pthread_mutex_lock(&h->mu);
    h->resend_errno = err;
    atomic_store(&h->replay, 0);
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
    return total;
  }
  /* The INIT answer comes from the thread that read INIT, after keep_init: init is settled. */
  if (h->kill_priv) kill_priv_answer(h->init, h->init_len, iov, count);
  return writev(fd, iov, count);
}

/* Bounds the waker: 5 s of signals every 2 ms, far past any request a reader could be serving. */
#define WAKER_ROUNDS 2500

static void *waker(void *arg) {
  handover *h = arg;
  struct timespec pause = {.tv_sec = 0, .tv_nsec = 2 * 1000 * 1000};
  pid_t pid = getpid();
  for (int round = 0; round < WAKER_ROUNDS && !atomic_load(&h->loop_done); round++) {
    int n = atomic_load(&h->nreaders);
    for (int i = 0; i < n && i < HANDOVER_READERS; i++) {
      int tid = atomic_load(&h->readers[i]);
      if (tid > 0) syscall(SYS_tgkill, pid, tid, wake_signal());
    }
    nanosleep(&pause, NULL);
  }
  return NULL;
}

void handover_detach(handover *h, int signal_readers) {
  atomic_store_explicit(&h->detaching, 1, memory_order_release);
  pthread_mutex_lock(&h->mu);
  pthread_cond_broadcast(&h->cv);
  if (signal_readers && !h->waker_started) h->waker_started = pthread_create(&h->waker, NULL, waker, h) == 0;
  pthread_mutex_unlock(&h->mu);
}

void handover_loop_done(handover *h) {
  atomic_store(&h->loop_done, 1);
  pthread_mutex_lock(&h->mu);
  int started = h->waker_started;
  h->waker_started = 0;
  pthread_mutex_unlock(&h->mu);
  if (started) pthread_join(h->waker, NULL);
}

size_t handover_init_copy(handover *h, char *out) {
  pthread_mutex_lock(&h->mu);
  size_t n = h->init_len;
  memcpy(out, h->init, n);
  pthread_mutex_unlock(&h->mu);
  return n;
}
