/*
 * A cowfs mount's attributes as JavaScript last answered them, so that a
 * getattr the kernel sends after each write (a write drops its cached size
 * and times, a close its block count) is answered without a trip to
 * JavaScript (attr_cache.c). Each mount's cache is a view of one store the
 * process's mounts share, of a fixed size.
 */
#ifndef COWVOL_ATTR_CACHE_H
#define COWVOL_ATTR_CACHE_H

#include <stdint.h>

/* The reply numbers fs_ops.c's fill_stat reads: ino, size, mode, nlink, uid, gid, rdev, blocks, then atime, mtime, ctime as (s, ns). */
#define ATTR_NUMBERS 14

typedef struct attr_cache attr_cache;

/* What a put must find unchanged: no clear, and no native write to the inode's slot. */
typedef struct {
  uint64_t generation;
  uint64_t touches;
} attr_ticket;

attr_cache *attr_cache_new(void);
void attr_cache_free(attr_cache *c);
/* A ticket to take before asking JavaScript for an inode's attributes; a put with a ticket some change has voided keeps nothing. */
attr_ticket attr_cache_ticket(attr_cache *c, uint64_t ino);
void attr_cache_put(attr_cache *c, const int64_t *r, attr_ticket ticket);
/* 1 and the numbers in out when the inode's attributes are held. */
int attr_cache_get(attr_cache *c, uint64_t ino, int64_t *out);
/* A native write at wall time (sec, nsec): mtime and ctime of a held entry move to it, and answers in flight for it are voided. */
void attr_cache_touch(attr_cache *c, uint64_t ino, int64_t sec, int64_t nsec);
/*
 * JavaScript is about to change one inode's attributes and no other's (a
 * write, a setattr, an fallocate, an xattr): its entry goes and answers in
 * flight for it are voided, other inodes' entries stay. The ticket is for
 * the change's own answer (attr_cache_end).
 */
attr_ticket attr_cache_begin(attr_cache *c, uint64_t ino);
/*
 * That change is answered: answers for the inode still in flight are
 * voided again, and r (its attributes after the change, or NULL) is kept
 * only if nothing else touched the inode or cleared the cache since begin.
 */
void attr_cache_end(attr_cache *c, uint64_t ino, const int64_t *r, attr_ticket ticket);
/* JavaScript changed the inode's attributes to r (r[0] is the inode): held as they are now, and answers in flight for it are voided. */
void attr_cache_replace(attr_cache *c, const int64_t *r);
/* JavaScript changed the inode's attributes: its entry goes, and answers in flight for it are voided. */
void attr_cache_drop(attr_cache *c, uint64_t ino);
/*
 * A native write is about to take a chunk for the inode or reach past its
 * end: answers in flight for it are voided; returns the mark to pass to
 * attr_cache_grow once it is done.
 */
uint64_t attr_cache_growing(attr_cache *c, uint64_t ino);
/* ...done: the held entry's size is at least `end` and it has `blocks` more (512-byte), unless an answer was kept since `mark`: then it goes. */
void attr_cache_grow(attr_cache *c, uint64_t ino, uint64_t mark, int64_t end, int64_t blocks);
/* JavaScript is about to change, or has changed, something: nothing held stays (O(1)). */
void attr_cache_clear(attr_cache *c);

#endif
