/*
 * The FUSE threads every cowfs mount of the process shares (fs_workers.c):
 * a fixed number, set by the first mount, whatever the number of mounts.
 */
#ifndef COWVOL_FS_WORKERS_H
#define COWVOL_FS_WORKERS_H

#include <stdint.h>

struct session;

/* Most workers the pool runs. */
#define FS_WORKERS_MAX 64

/* Serves the session's connection on the shared workers (started on first use, `workers` of them). 0 or an errno. */
int fs_workers_add(struct session *s, int workers);
/* Wakes a worker for the session even with no request queued: after a detach, so its read ends the session. */
void fs_workers_wake(struct session *s);
/* A hold on the session like a serving worker's, for a request answered after its worker moved on (fs_ops.c's hand_off): the closed callback waits for its put. */
void fs_workers_hold(struct session *s);
void fs_workers_put(struct session *s);
/* Waits until no worker touches the session any more (its closed callback was called). */
void fs_workers_wait_done(struct session *s);
/* Workers running now (0 before the first cowfs mount). */
int fs_workers_count(void);

/* The kernel's unique of the request this worker thread is serving now (fs_ops.c's make() copies it). */
extern _Thread_local uint64_t fs_worker_unique;

#endif
