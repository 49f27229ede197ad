/*
 * FUSE_HANDLE_KILLPRIV_V2 for cowfs mounts (kill_priv.c): the filesystem,
 * not the kernel, drops setuid, setgid and file capabilities on write,
 * truncate and chown. What it buys: the kernel marks the superblock
 * SB_NOSEC, so once a file is known to carry nothing to drop, a buffered
 * write no longer asks for its security.capability xattr first, and the
 * writeback cache can absorb writes without a round trip each.
 *
 * libfuse 3.14 knows neither the flag nor the per-write bit that comes with
 * it, so both are handled on the raw bytes our own I/O sees (handover.c):
 * the INIT answer gets the flag when the kernel offered it, and each read
 * notes, for the thread that will process it, whether a WRITE or SETATTR
 * asks for the set-id bits to go (FUSE_WRITE_KILL_SUIDGID and
 * FATTR_KILL_SUIDGID: a writer or truncater without CAP_FSETID, any chown).
 */
#ifndef COWVOL_KILL_PRIV_H
#define COWVOL_KILL_PRIV_H

#include <stddef.h>
#include <sys/uio.h>

/* If iov is the answer to `init` (the kernel's INIT request) and the kernel offered the flag, turns it on. */
void kill_priv_answer(const char *init, size_t init_len, struct iovec *iov, int count);
/* Notes, for this thread, what the request just read asks of a write. */
void kill_priv_note(const void *buf, size_t n);
/* Whether the request this thread read last (a write or a setattr) must drop set-id bits. */
int kill_priv_kills(void);

#endif
