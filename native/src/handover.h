/*
 * Handing a live FUSE connection from one daemon to the next: the session's
 * own reads and writes on /dev/fuse (libfuse's custom I/O), which keep the
 * kernel's INIT request, stop without unmounting, and on takeover replay
 * that INIT to a fresh libfuse session and ask the kernel to resend what the
 * previous daemon read and never answered. See handover.c.
 */
#ifndef COWVOL_HANDOVER_H
#define COWVOL_HANDOVER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

/* A FUSE_INIT request is 64 bytes of argument and a 40-byte header today; room to spare. */
#define HANDOVER_INIT_MAX 512
/* Reader threads that can be woken; the session runs at most this many (fuse_session.c). */
#define HANDOVER_READERS 64

typedef struct handover {
  atomic_int detaching; /* set once; readers return ENODEV, which ends libfuse's loop */
  atomic_int loop_done; /* the session's loop returned: no reader is left to wake */
  atomic_int readers[HANDOVER_READERS]; /* kernel thread ids of the readers, 0 once gone */
  atomic_int nreaders;
  pthread_t waker;
  int waker_started;
  pthread_mutex_t mu;   /* guards everything below */
  pthread_cond_t cv;    /* a replayed INIT was answered */
  char init[HANDOVER_INIT_MAX];
  size_t init_len;      /* 0 until the kernel's INIT was read (or given, on takeover) */
  atomic_int replay;    /* 1: the next read returns init; 2: replayed, its reply not seen yet */
  uint64_t replay_unique;
  int resend_errno;     /* what FUSE_NOTIFY_RESEND answered (0: done) */
  int kill_priv;        /* set before the first read: answer INIT with FUSE_HANDLE_KILLPRIV_V2 (kill_priv.h) */
} handover;

/* Sets the connection up for our I/O; `init` (len > 0) makes this a takeover. -1 with errno on failure. */
int handover_setup(handover *h, int fuse_fd, const char *init, size_t init_len);
void handover_free(handover *h);
ssize_t handover_read(handover *h, int fd, void *buf, size_t len);
ssize_t handover_writev(handover *h, int fd, struct iovec *iov, int count);
/*
 * Ends the session's loop without unmounting: each reader returns once its
 * current request is answered. `signal_readers`: readers block in read(2)
 * and must be woken by a signal (the block files' own threads); a cowfs
 * session's shared workers are woken through epoll instead (fs_workers.c).
 */
void handover_detach(handover *h, int signal_readers);
/* The session's loop returned (every reader is joined): stops waking them. */
void handover_loop_done(handover *h);
/* Copies the kernel's INIT request into out (HANDOVER_INIT_MAX bytes); 0 if none was read yet. */
size_t handover_init_copy(handover *h, char *out);

#endif
