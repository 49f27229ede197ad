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
 * Stopping without unmounting (`handover_detach`): the fd is non-blocking and
 * readers sleep in poll() on it and on an eventfd, so they can be woken. A
 * woken reader returns ENODEV, which libfuse takes for an unmount and ends
 * its loop; a reader busy with a request answers it first. Requests that
 * arrive meanwhile wait in the kernel for the successor.
 *
 * Caveat: until the replayed INIT is answered, other readers wait (libfuse
 * would answer EIO to anything before INIT). Reads on the hot path cost one
 * atomic load more than a plain read(2); poll() only runs when the queue is empty.
 */
#include "handover.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fuse.h>
#include <poll.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

/* include/uapi/linux/fuse.h, 7.40 (Linux 6.9); Debian 12's header predates it. */
#define NOTIFY_RESEND 7

int handover_setup(handover *h, int fuse_fd, const char *init, size_t init_len) {
  memset(h, 0, sizeof(*h));
  if (init_len > HANDOVER_INIT_MAX || (init_len > 0 && init_len < sizeof(struct fuse_in_header))) {
    errno = EINVAL;
    return -1;
  }
  int flags = fcntl(fuse_fd, F_GETFL);
  if (flags < 0 || fcntl(fuse_fd, F_SETFL, flags | O_NONBLOCK) < 0) return -1;
  h->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (h->wake_fd < 0) return -1;
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
  if (h->wake_fd > 0) close(h->wake_fd);
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

ssize_t handover_read(handover *h, int fd, void *buf, size_t len) {
  for (;;) {
    if (atomic_load_explicit(&h->detaching, memory_order_acquire)) {
      errno = ENODEV;
      return -1;
    }
    if (atomic_load_explicit(&h->replay, memory_order_acquire) != 0) {
      ssize_t n = replaying(h, buf, len);
      if (n > 0) return n;
      continue;
    }
    ssize_t n = read(fd, buf, len);
    if (n >= 0) {
      keep_init(h, buf, (size_t)n);
      return n;
    }
    if (errno != EAGAIN) return -1; /* ENODEV, ENOENT, EINTR: libfuse knows them */
    struct pollfd p[2] = {{.fd = fd, .events = POLLIN}, {.fd = h->wake_fd, .events = POLLIN}};
    if (poll(p, 2, -1) < 0 && errno != EINTR) return -1;
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
  return writev(fd, iov, count);
}

void handover_detach(handover *h) {
  atomic_store_explicit(&h->detaching, 1, memory_order_release);
  uint64_t one = 1;
  if (write(h->wake_fd, &one, sizeof(one)) < 0) { /* already readable: counter saturated */
  }
  pthread_mutex_lock(&h->mu);
  pthread_cond_broadcast(&h->cv);
  pthread_mutex_unlock(&h->mu);
}

size_t handover_init_copy(handover *h, char *out) {
  pthread_mutex_lock(&h->mu);
  size_t n = h->init_len;
  memcpy(out, h->init, n);
  pthread_mutex_unlock(&h->mu);
  return n;
}
