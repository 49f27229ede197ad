/*
 * The lowlevel operations of a cowfs mount: each FUSE call is handed to
 * JavaScript (src/fuse/cowfs-mount.ts), which decides it over the volume's
 * metadata tree and answers with numbers (attributes) and bytes (data,
 * names, directory entries); reads and in-place writes of file chunks
 * JavaScript put in the chunk table are served here, and so are lookups
 * of names a followed directory was never given (name_filter.h). This
 * file decides nothing.
 *
 * Who answers: a request served here is answered by the FUSE thread that
 * read it; one that went to JavaScript is answered on the JavaScript
 * thread, inside fuseReply (`ask_then`). Most go over as a heap copy of the
 * request with its names, data and file info (`hand_off`), and the FUSE
 * thread goes back to reading: nothing wakes it when the answer is made,
 * and a slow answer (an fsync's commit) holds no thread the other mounts
 * share. Past HANDED_MAX per mount, or with more data than
 * HANDED_DATA_MAX, the FUSE thread waits instead, so what the request
 * points to stays alive; that bounds the copies' memory per mount.
 *
 * Caveats:
 * - Permissions are the kernel's (the mount runs with default_permissions);
 *   locks too: no getlk/setlk/flock here, so the kernel keeps flock and
 *   POSIX locks for the mount itself, which serves one node.
 * - The kernel's writeback cache holds buffered writes: a snapshot, a clone
 *   and an unmount first flush the mount (syncfs, src/daemon/fs-mounts.ts),
 *   and fsync flushes the file's pages before it reaches us. The page cache
 *   is kept across opens (keep_cache): every change to file data comes
 *   through this mount, so what the kernel holds is never stale. O_DIRECT
 *   goes through the kernel's direct I/O path (not FOPEN_DIRECT_IO), which
 *   writes dirty pages back first, so buffered and direct descriptors of a
 *   file see each other's writes, with ext4's alignment rules.
 * - Set-id bits are ours to drop on write, truncate and chown
 *   (FUSE_HANDLE_KILLPRIV_V2, kill_priv.h): a write that must drop them goes
 *   to JavaScript. File capabilities the kernel still removes itself (a
 *   removexattr) before a process's write reaches us; a file's first such
 *   write goes to JavaScript until the file is known to have none.
 * - Attributes and entries (names that are not there too) are cached by
 *   the kernel for ATTR_SECONDS, a day, as a local filesystem's are for
 *   good: every change comes through this mount (a volume has one cowfs
 *   mount; binds share it), and the kernel drops what its own requests
 *   change (a write drops size and times, an unlink the name and the link
 *   count). The one change made behind it, the times JavaScript stamps for
 *   native writes, comes after such a drop, at the time the addon's cache
 *   already answers with.
 */
#include "fs_workers.h"
#include "kill_priv.h"
#include "name_filter.h"
#include "session.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

enum {
  FS_LOOKUP = 20,
  FS_GETATTR = 21,
  FS_SETATTR = 22,
  FS_READLINK = 23,
  FS_MKNOD = 24,
  FS_MKDIR = 25,
  FS_UNLINK = 26,
  FS_RMDIR = 27,
  FS_SYMLINK = 28,
  FS_RENAME = 29,
  FS_LINK = 30,
  FS_OPEN = 31,
  FS_READ = 32,
  FS_WRITE = 33,
  FS_RELEASE = 34,
  FS_FSYNC = 35,
  FS_READDIR = 36,
  FS_STATFS = 37,
  FS_SETXATTR = 38,
  FS_GETXATTR = 39,
  FS_LISTXATTR = 40,
  FS_REMOVEXATTR = 41,
  FS_CREATE = 42,
  FS_FALLOCATE = 43,
  FS_LSEEK = 44,
  FS_COPY_FILE_RANGE = 45,
};

/* Requests of one mount handed to JavaScript with no thread waiting, at most: 64 copies of up to 5 KiB (names and data). */
#define HANDED_MAX 64
/* A request with more data (a write JavaScript serves, a large xattr) keeps its thread waiting instead of copying. */
#define HANDED_DATA_MAX 4096

/* Not 1 s as for a passthrough, whose directory others may change: repeated path walks cost no request. */
static const double ATTR_SECONDS = 86400.0;

static session *of(fuse_req_t req) {
  return fuse_req_userdata(req);
}

/* A request from this caller, with names as bytes. */
static request make(fuse_req_t req, int op, fuse_ino_t ino) {
  const struct fuse_ctx *ctx = fuse_req_ctx(req);
  request r;
  memset(&r, 0, sizeof(r));
  r.op = op;
  r.ino = ino;
  r.raw_names = 1;
  r.uid = ctx->uid;
  r.gid = ctx->gid;
  r.unique = fs_worker_unique;
  r.sess = of(req);
  return r;
}

/* Which inodes' attributes JavaScript may change serving a request: the attribute cache forgets them around it. */
enum { CHANGES_NONE, CHANGES_ONE, CHANGES_ANY };

static int changes_attrs(int op) {
  switch (op) {
    /* The request's own inode and no other: a write, truncate, chmod, punch or ACL touches only it. */
    case FS_SETATTR: case FS_WRITE: case FS_FALLOCATE: case FS_SETXATTR: case FS_REMOVEXATTR:
    /* The directory, and an inode nobody could ask about before the answer (numbers are never reused). */
    case FS_MKNOD: case FS_MKDIR: case FS_SYMLINK: case FS_CREATE:
    /* The directory, and the inode the name was a link of, which the answer names (see ask). */
    case FS_UNLINK: case FS_RMDIR:
      return CHANGES_ONE;
    /* Two directories, links and targets. */
    case FS_RENAME: case FS_LINK: case FS_COPY_FILE_RANGE:
      return CHANGES_ANY;
    default: /* reads, lookups, opens, releases (an orphan freed is never asked for again), fsync (it stamps what the cache has) */
      return CHANGES_NONE;
  }
}

/* Something may change in JavaScript: attributes held go (all of them, or the one inode's, see ask). */
static void changing(session *s, int scope) {
  if (scope == CHANGES_ANY) attr_cache_clear(s->attrs);
}

/*
 * The file whose size or chunks JavaScript may change serving r, or 0:
 * its data syncs need a commit until one holds the change. Names,
 * directories, times, modes and xattrs do not count (fdatasync keeps none
 * of them); a new inode is marked from the answer (see ask).
 */
static uint64_t file_changed(const request *r) {
  switch (r->op) {
    case FS_WRITE: case FS_FALLOCATE:
      return r->ino;
    case FS_SETATTR: /* a truncate; times and modes are not data */
      return (((const int64_t *)r->data)[0] & FUSE_SET_ATTR_SIZE) ? r->ino : 0;
    case FS_COPY_FILE_RANGE: /* the destination: packed second (fs_copy_file_range) */
      return (uint64_t)((const int64_t *)r->data)[1];
    default:
      return 0;
  }
}

static int makes_inode(int op) {
  return op == FS_CREATE || op == FS_MKNOD || op == FS_MKDIR || op == FS_SYMLINK;
}

/*
 * The request inode's attributes after a one-inode change, when its answer
 * carries them: a setattr's are the answer, a write's follow its count, a
 * new inode's answer is followed by its directory's, an unlink's gives the
 * attributes of the inode that lost a link, then the directory's; an
 * rmdir's names the removed directory, then gives its parent's.
 */
static const int64_t *attrs_after(const request *r, int err) {
  if (err) return NULL;
  switch (r->op) {
    case FS_SETATTR: return r->r;
    case FS_WRITE: case FS_RMDIR: return r->r + 1;
    case FS_MKNOD: case FS_MKDIR: case FS_SYMLINK: case FS_CREATE: case FS_UNLINK: return r->r + ATTR_NUMBERS;
    default: return NULL;
  }
}

/* Marks what JavaScript may change serving r, before it does (see ask). */
static void before(session *s, request *r) {
  r->scope = changes_attrs(r->op);
  r->file = file_changed(r);
  if (r->scope == CHANGES_ONE) r->ticket = attr_cache_begin(s->attrs, r->ino);
  changing(s, r->scope);
  if (r->file) marks_file(s->marks, r->file);
}

/* The directory a request may put a name in, and the name (name_filter.h); 0 for requests that put none. */
static uint64_t names_dir(const request *r, const char **name) {
  switch (r->op) {
    case FS_CREATE: case FS_MKNOD: case FS_MKDIR: case FS_SYMLINK:
      *name = r->name;
      return r->ino;
    case FS_LINK:
      *name = r->name;
      return (uint64_t)r->n[0];
    case FS_RENAME: /* the new name; an exchange's first name was there before */
      *name = r->name2;
      return (uint64_t)r->n[0];
    default:
      return 0;
  }
}

/* Marks it again once JavaScript answered (r->err), before the kernel hears the answer. */
static void after(session *s, request *r) {
  int err = r->err;
  /* Failed or not: a name that is not there only costs its lookups a trip to JavaScript. */
  const char *name = NULL;
  uint64_t dir = names_dir(r, &name);
  if (dir) name_filter_add(s->names, dir, name);
  if (!err && r->op == FS_MKDIR) name_filter_follow(s->names, (uint64_t)r->r[0]);
  changing(s, r->scope);
  if (r->file) marks_file(s->marks, r->file);
  /* Nobody can name a new inode before this answer reaches the kernel, so marking it now is in time, and its
   * attributes are the ones to hold (the close of a new file sends its times, answered from them). */
  if (!err && makes_inode(r->op)) {
    marks_file(s->marks, (uint64_t)r->r[0]);
    attr_cache_replace(s->attrs, r->r);
  }
  if (r->scope == CHANGES_ONE) attr_cache_end(s->attrs, r->ino, attrs_after(r, err), r->ticket);
  /* The unlinked inode's link count and ctime changed: replaced (an unlink: the kernel sends the file's ctime
   * next, which the cache then answers) or dropped before the kernel hears of it, so an answer for it that
   * raced the change is gone now or voided (both count in its slot). */
  if (!err && r->op == FS_UNLINK) attr_cache_replace(s->attrs, r->r);
  if (!err && r->op == FS_RMDIR) attr_cache_drop(s->attrs, (uint64_t)r->r[0]);
}

/*
 * Every request to JavaScript has its changes marked before and after it:
 * before, so nothing held is used while JavaScript may be changing it;
 * after, so nothing JavaScript answered before the change (for another
 * thread) stays. ask() waits and leaves the answer to its caller (only the
 * release below uses it); ask_then() has the kernel answered as soon as
 * JavaScript replies. 0 or an errno.
 */
static int ask(session *s, request *r) {
  before(s, r);
  r->err = session_ask_js(s, r);
  after(s, r);
  return r->err;
}

/* Runs once per request: on the JavaScript thread as it answers, or on the asking thread if no answer came. */
static void complete(request *r) {
  after(r->sess, r);
  if (r->reply) r->reply(r->req, r);
}

static void ask_release(session *s, const request *opened);
static void hand_release(const request *opened);

/* Drops one of a heap copy's holds (session.h): at none, the copy goes, and with it its hold on the session. */
static void let_go(request *r) {
  if (--r->holds > 0) return;
  session *s = r->sess;
  if (r->release_ino) hand_release(r);
  free(r);
  atomic_fetch_sub(&s->handed, 1);
  fs_workers_put(s);
}

/* A heap copy of r, with what it points to, for JavaScript to answer with no thread waiting; NULL past the bounds. */
static request *heap_copy(session *s, const request *r) {
  size_t n1 = r->name ? strlen(r->name) + 1 : 0, n2 = r->name2 ? strlen(r->name2) + 1 : 0;
  size_t len = r->data ? r->len : 0;
  if (len > HANDED_DATA_MAX) return NULL;
  if (atomic_fetch_add(&s->handed, 1) >= HANDED_MAX) {
    atomic_fetch_sub(&s->handed, 1);
    return NULL;
  }
  request *h = malloc(sizeof(*h) + len + n1 + n2);
  if (!h) {
    atomic_fetch_sub(&s->handed, 1);
    return NULL;
  }
  *h = *r;
  char *p = (char *)(h + 1);
  if (r->data) h->data = memcpy(p, r->data, len), p += len;
  if (r->name) h->name = memcpy(p, r->name, n1), p += n1;
  if (r->name2) h->name2 = memcpy(p, r->name2, n2);
  if (r->fi) h->fi_copy = *r->fi, h->fi = &h->fi_copy;
  h->heap = 1;
  h->holds = 2; /* the answer's and call_js's */
  h->let_go = let_go;
  fs_workers_hold(s);
  return h;
}

/*
 * Hands r to JavaScript as a heap copy and returns 1, or 0 past the bounds
 * (the caller waits instead). A copy the session refuses (it is closing)
 * is answered here, with EIO.
 */
static int hand_off(session *s, request *r) {
  request *h = heap_copy(s, r);
  if (!h) return 0;
  if (session_send_js(s, h) == 0) return 1;
  h->err = EIO;
  h->holds = 1;
  complete(h);
  let_go(h);
  return 1;
}

/*
 * ask(), with the kernel answered by `reply` as soon as JavaScript answers
 * (complete(), from fuseReply), rather than after this thread wakes up:
 * one thread wake-up fewer between a request and its answer, and none at
 * all for a request handed off.
 */
static void ask_then(fuse_req_t req, request *r, void (*reply)(fuse_req_t req, request *r)) {
  session *s = of(req);
  r->req = req;
  r->reply = reply;
  r->finish = complete;
  before(s, r);
  if (hand_off(s, r)) return;
  r->err = session_ask_js(s, r);
  /* No answer came (a teardown, an exception): answered here, with the errno the session set. */
  if (!r->answering) complete(r);
  if (r->release_ino) ask_release(s, r);
}

/* The release JavaScript must hear for an open whose answer found the opener gone: nobody will send it. */
static request release_of(const request *opened) {
  request rel;
  memset(&rel, 0, sizeof(rel));
  rel.op = FS_RELEASE;
  rel.ino = opened->release_ino;
  rel.raw_names = 1;
  rel.uid = opened->uid;
  rel.gid = opened->gid;
  rel.sess = opened->sess;
  return rel;
}

/* The open `opened` answered was not delivered (the opener is gone): the release that balances it will never come. */
static void ask_release(session *s, const request *opened) {
  request rel = release_of(opened);
  ask(s, &rel);
}

/*
 * The same for a handed-off open, on the JavaScript thread, which must not
 * wait for itself: the release goes over as a heap copy with no kernel
 * request to answer. Past the bounds, or with the session closing, the
 * count stays one high, as a kill's would (the orphan waits for the next
 * mount's recovery).
 */
static void hand_release(const request *opened) {
  request rel = release_of(opened);
  rel.finish = complete;
  rel.scope = CHANGES_NONE;
  hand_off(rel.sess, &rel);
}

/* r[0..13]: ino, size, mode, nlink, uid, gid, rdev, 512-byte blocks, atime, mtime, ctime as (s, ns). */
static void fill_stat(struct stat *st, const int64_t *r) {
  memset(st, 0, sizeof(*st));
  st->st_ino = (ino_t)r[0];
  st->st_size = r[1];
  st->st_mode = (mode_t)r[2];
  st->st_nlink = (nlink_t)r[3];
  st->st_uid = (uid_t)r[4];
  st->st_gid = (gid_t)r[5];
  st->st_rdev = (dev_t)r[6];
  st->st_blocks = r[7];
  st->st_blksize = 4096;
  st->st_atim.tv_sec = r[8];
  st->st_atim.tv_nsec = r[9];
  st->st_mtim.tv_sec = r[10];
  st->st_mtim.tv_nsec = r[11];
  st->st_ctim.tv_sec = r[12];
  st->st_ctim.tv_nsec = r[13];
}

static void fill_entry(struct fuse_entry_param *e, const int64_t *r) {
  memset(e, 0, sizeof(*e));
  e->ino = (fuse_ino_t)r[0];
  e->attr_timeout = ATTR_SECONDS;
  e->entry_timeout = ATTR_SECONDS;
  fill_stat(&e->attr, r);
}

/* A name that is not there is remembered as such (inode 0), for as long as a name that is: only a request
 * through this mount can make it, and the kernel replaces the negative entry when one does. */
static void reply_absent(fuse_req_t req) {
  struct fuse_entry_param e;
  memset(&e, 0, sizeof(e));
  e.entry_timeout = ATTR_SECONDS;
  fuse_reply_entry(req, &e);
}

static void answer_entry(fuse_req_t req, request *r) {
  if (r->err == ENOENT && r->op == FS_LOOKUP) {
    reply_absent(req);
    return;
  }
  if (r->err) {
    fuse_reply_err(req, r->err);
    return;
  }
  struct fuse_entry_param e;
  fill_entry(&e, r->r);
  fuse_reply_entry(req, &e);
}

/* Asks, then answers an entry (lookup, mknod, mkdir, symlink, link). */
static void reply_entry(fuse_req_t req, request *r) {
  ask_then(req, r, answer_entry);
}

static void answer_attr(fuse_req_t req, request *r) {
  if (r->err) {
    fuse_reply_err(req, r->err);
    return;
  }
  if (r->op == FS_GETATTR) attr_cache_put(of(req)->attrs, r->r, r->ticket);
  struct stat st;
  fill_stat(&st, r->r);
  fuse_reply_attr(req, &st, ATTR_SECONDS);
}

/* Asks, then answers attributes; a getattr's are kept in the attribute cache (with the ticket it took). */
static void reply_attr(fuse_req_t req, request *r) {
  ask_then(req, r, answer_attr);
}

static void answer_plain(fuse_req_t req, request *r) {
  fuse_reply_err(req, r->err);
}

static void reply_plain(fuse_req_t req, request *r) {
  ask_then(req, r, answer_plain);
}

/* Answers what JavaScript said: an errno, or the bytes it sent (xattr calls with size 0 ask only for the length). */
static void answer_bytes(fuse_req_t req, request *r) {
  if (r->err) fuse_reply_err(req, r->err);
  else if (r->xattr && r->size == 0) fuse_reply_xattr(req, r->outlen);
  else if (r->xattr && r->outlen > r->size) fuse_reply_err(req, ERANGE);
  else fuse_reply_buf(req, r->out, r->outlen);
  free(r->out);
}

/* Asks, then answers bytes. */
static void reply_bytes(fuse_req_t req, request *r, int xattr, size_t size) {
  r->xattr = xattr;
  r->size = size;
  ask_then(req, r, answer_bytes);
}

static void fs_lookup(fuse_req_t req, fuse_ino_t parent, const char *name) {
  int known = name_filter_check(of(req)->names, parent, name);
  if (known == NAME_ABSENT) {
    reply_absent(req);
    return;
  }
  request r = make(req, FS_LOOKUP, parent);
  r.name = name;
  /* n0: JavaScript may hand the directory's names over if the name is not there (name_filter_follow_names). */
  r.n[0] = known == NAME_UNFOLLOWED;
  reply_entry(req, &r);
}

static void fs_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
  (void)ino;
  (void)nlookup;
  /* Inode numbers are never reused and nothing is held per lookup. */
  fuse_reply_none(req);
}

static void fs_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  (void)fi;
  session *s = of(req);
  struct stat st;
  int64_t held[ATTR_NUMBERS];
  if (attr_cache_get(s->attrs, ino, held)) {
    fill_stat(&st, held);
    fuse_reply_attr(req, &st, ATTR_SECONDS);
    return;
  }
  request r = make(req, FS_GETATTR, ino);
  /* Taken before asking: an answer some change raced is not kept (a getattr changes nothing, so `before` leaves it). */
  r.ticket = attr_cache_ticket(s->attrs, ino);
  reply_attr(req, &r);
}

/*
 * A setattr of times alone, the writeback cache's flush of a file's own
 * times, answered from the attribute cache: the times wait for JavaScript
 * (kernel_times.h). 0 when it must go to JavaScript (other changes, a
 * time set to now, the file's attributes not held, no room).
 */
static int times_here(fuse_req_t req, fuse_ino_t ino, const struct stat *attr, int to_set) {
  session *s = of(req);
  const int times = FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_CTIME;
  if ((to_set & ~times) != 0 || (to_set & times) == 0) return 0;
  int64_t held[ATTR_NUMBERS];
  attr_ticket ticket = attr_cache_ticket(s->attrs, ino);
  if (!attr_cache_get(s->attrs, ino, held)) return 0;
  kernel_times_entry e = {.ino = ino};
  /* held: ..., atime (8, 9), mtime (10, 11), ctime (12, 13), as fill_stat reads them */
  const struct {
    int bit, set, at;
    const struct timespec *ts;
    int64_t *out;
  } parts[] = {
      {FUSE_SET_ATTR_ATIME, KERNEL_ATIME, 8, &attr->st_atim, e.atime},
      {FUSE_SET_ATTR_MTIME, KERNEL_MTIME, 10, &attr->st_mtim, e.mtime},
      {FUSE_SET_ATTR_CTIME, KERNEL_CTIME, 12, &attr->st_ctim, e.ctime},
  };
  for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
    if (!(to_set & parts[i].bit)) continue;
    e.set |= parts[i].set;
    parts[i].out[0] = held[parts[i].at] = parts[i].ts->tv_sec;
    parts[i].out[1] = held[parts[i].at + 1] = parts[i].ts->tv_nsec;
  }
  if (!kernel_times_note(s->times, &e)) return 0;
  attr_cache_put(s->attrs, held, ticket);
  struct stat st;
  fill_stat(&st, held);
  fuse_reply_attr(req, &st, ATTR_SECONDS);
  return 1;
}

static void fs_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set, struct fuse_file_info *fi) {
  (void)fi;
  if (kill_priv_kills()) to_set |= FUSE_SET_ATTR_KILL_SUID; /* libfuse 3.14 masks the kernel's bit off */
  if (times_here(req, ino, attr, to_set)) return;
  /* ctime too: the writeback cache keeps a regular file's times and sends them. */
  int64_t v[11] = {to_set, attr->st_mode, attr->st_uid, attr->st_gid, attr->st_size, attr->st_atim.tv_sec, attr->st_atim.tv_nsec, attr->st_mtim.tv_sec, attr->st_mtim.tv_nsec, attr->st_ctim.tv_sec, attr->st_ctim.tv_nsec};
  request r = make(req, FS_SETATTR, ino);
  r.data = (const char *)v;
  r.len = sizeof(v);
  reply_attr(req, &r);
}

static void answer_readlink(fuse_req_t req, request *r) {
  if (r->err) {
    fuse_reply_err(req, r->err);
    return;
  }
  char *target = malloc(r->outlen + 1);
  if (!target) fuse_reply_err(req, ENOMEM);
  else {
    memcpy(target, r->out, r->outlen);
    target[r->outlen] = 0;
    fuse_reply_readlink(req, target);
  }
  free(target);
  free(r->out);
}

static void fs_readlink(fuse_req_t req, fuse_ino_t ino) {
  request r = make(req, FS_READLINK, ino);
  ask_then(req, &r, answer_readlink);
}

static void fs_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev) {
  request r = make(req, FS_MKNOD, parent);
  r.name = name;
  r.n[0] = mode;
  r.n[1] = (int64_t)rdev;
  r.n[2] = fuse_req_ctx(req)->umask;
  reply_entry(req, &r);
}

static void fs_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode) {
  request r = make(req, FS_MKDIR, parent);
  r.name = name;
  r.n[0] = mode;
  r.n[2] = fuse_req_ctx(req)->umask;
  reply_entry(req, &r);
}

static void fs_unlink(fuse_req_t req, fuse_ino_t parent, const char *name) {
  request r = make(req, FS_UNLINK, parent);
  r.name = name;
  reply_plain(req, &r);
}

static void fs_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name) {
  request r = make(req, FS_RMDIR, parent);
  r.name = name;
  reply_plain(req, &r);
}

static void fs_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name) {
  request r = make(req, FS_SYMLINK, parent);
  r.name = name;
  r.data = link;
  r.len = strlen(link);
  reply_entry(req, &r);
}

static void fs_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent, const char *newname, unsigned int flags) {
  request r = make(req, FS_RENAME, parent);
  r.name = name;
  r.name2 = newname;
  r.n[0] = (int64_t)newparent;
  r.n[1] = flags;
  reply_plain(req, &r);
}

static void fs_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname) {
  request r = make(req, FS_LINK, ino);
  r.name = newname;
  r.n[0] = (int64_t)newparent;
  reply_entry(req, &r);
}

static void answer_open(fuse_req_t req, request *r) {
  if (r->err) {
    fuse_reply_err(req, r->err);
    return;
  }
  r->fi->keep_cache = 1;
  /* The opener is gone: the asking thread sends the release that balances this open (it may wait for JavaScript). */
  if (fuse_reply_open(req, r->fi) != 0) r->release_ino = r->ino;
}

static void fs_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  request r = make(req, FS_OPEN, ino);
  r.n[0] = fi->flags;
  r.fi = fi;
  ask_then(req, &r, answer_open);
}

static void answer_create(fuse_req_t req, request *r) {
  if (r->err) {
    fuse_reply_err(req, r->err);
    return;
  }
  struct fuse_entry_param e;
  fill_entry(&e, r->r);
  /* A new file has no xattrs (no ticket can have moved for an inode nobody could name yet). */
  no_caps_add(of(req)->no_caps, e.ino, no_caps_ticket(of(req)->no_caps));
  r->fi->keep_cache = 1;
  if (fuse_reply_create(req, &e, r->fi) != 0) r->release_ino = e.ino;
}

static void fs_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, struct fuse_file_info *fi) {
  request r = make(req, FS_CREATE, parent);
  r.name = name;
  r.n[0] = mode;
  r.n[1] = fi->flags;
  r.n[2] = fuse_req_ctx(req)->umask;
  r.fi = fi;
  ask_then(req, &r, answer_create);
}

/*
 * File data: chunks JavaScript put in the table (whole chunks inside the
 * file, see src/fuse/file-chunks.ts) are read and written here, and so are
 * writes through the chunk holding a file's end and first writes into the
 * holes past it, which note how far they reach (cowfs_on_tail); the rest,
 * and any other write that would change more than the bytes, goes to
 * JavaScript.
 */
static void fs_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  (void)fi;
  session *s = of(req);
  char *buf = session_read_buffer(size ? size : 1);
  int err = 0;
  if (buf && table_io(s->table, ino, buf, size, off, 0, &err, NULL)) {
    if (err) fuse_reply_err(req, err);
    else fuse_reply_buf(req, buf, size);
    return;
  }
  request r = make(req, FS_READ, ino);
  r.n[0] = off;
  r.n[1] = (int64_t)size;
  reply_bytes(req, &r, 0, 0);
}

/* Set on this thread by cowfs_on_tail inside table_io: the write may move the file's size and block count (attr_cache_grow's mark). */
static _Thread_local int tail_noted;
static _Thread_local uint64_t tail_mark;

/*
 * A write through an entry past the file's known end (a first write into a
 * hole JavaScript offered, or an append within the chunk it took): the end
 * is noted for JavaScript to fold into the size, and the file's data syncs
 * need a commit from now on.
 */
int cowfs_on_tail(void *ctx, uint64_t ino, uint64_t end) {
  session *s = ctx;
  if (!written_grow_journaled(s->written, ino, end, s->journal, (uint64_t)s->journal_volume)) return 0;
  marks_file(s->marks, ino);
  tail_mark = attr_cache_growing(s->attrs, ino);
  tail_noted = 1;
  return 1;
}

/* A write's n[2] for JavaScript (src/fuse/cowfs-mount.ts). */
enum { WRITE_KILLS_SETID = 1, WRITE_FROM_CACHE = 2 };

static void answer_write(fuse_req_t req, request *r) {
  if (r->err) fuse_reply_err(req, r->err);
  else fuse_reply_write(req, (size_t)r->r[0]);
}

/* A write from a process: the kernel removed any capability before sending it, so later writes may stay here. */
static void answer_file_write(fuse_req_t req, request *r) {
  if (!r->err && !(r->n[2] & WRITE_FROM_CACHE)) no_caps_add(of(req)->no_caps, r->ino, r->caps_ticket);
  answer_write(req, r);
}

/*
 * Served here unless set-id bits must go, or the write comes straight from
 * a process (O_DIRECT, a set-id file's write-through) to a file not yet
 * known to have no capability (the cache's writes were checked when the
 * process wrote).
 */
static void fs_write(fuse_req_t req, fuse_ino_t ino, const char *data, size_t size, off_t off, struct fuse_file_info *fi) {
  session *s = of(req);
  int err = 0;
  /* ext4's rule for O_DIRECT writes: sector-aligned offset and length (FUSE checks neither; the buffer is the kernel's). */
  if ((fi->flags & O_DIRECT) && !fi->writepage && ((off | (off_t)size) & 511)) {
    fuse_reply_err(req, EINVAL);
    return;
  }
  int kills = kill_priv_kills();
  int cached = fi->writepage != 0;
  int plain = !kills && (cached || no_caps_has(s->no_caps, ino));
  /*
   * A write from the page cache carries no times: the kernel keeps the file's own and sends them (a setattr)
   * with the writeback. Any other is noted first: JavaScript stamps mtime and ctime from the note before it
   * answers anything after this write.
   */
  struct timespec at;
  tail_noted = 0;
  unsigned took = 0;
  if (plain && (cached || written_note(s->written, ino, &at)) && table_io(s->table, ino, (char *)data, size, off, 1, &err, &took)) {
    /* After the take: the kernel's next getattr (a close drops its block count) is answered here. */
    if (tail_noted) attr_cache_grow(s->attrs, ino, tail_mark, off + (off_t)size, (int64_t)(took * s->chunk_size / 512));
    /* A hole inside a sparse file taken: the block count held is short, so the next getattr folds it in JavaScript. */
    else if (took > 0) attr_cache_drop(s->attrs, ino);
    if (!cached) {
      int64_t nsec = s->wall_nsec + at.tv_nsec;
      attr_cache_touch(s->attrs, ino, s->wall_sec + at.tv_sec + nsec / 1000000000, nsec % 1000000000);
    }
    if (err) fuse_reply_err(req, err);
    else fuse_reply_write(req, size);
    return;
  }
  request r = make(req, FS_WRITE, ino);
  r.n[0] = off;
  r.n[1] = (int64_t)size;
  r.n[2] = (kills ? WRITE_KILLS_SETID : 0) | (cached ? WRITE_FROM_CACHE : 0);
  r.data = data;
  r.len = size;
  r.caps_ticket = no_caps_ticket(s->no_caps);
  ask_then(req, &r, answer_file_write);
}

static void fs_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  (void)fi;
  request r = make(req, FS_RELEASE, ino);
  reply_plain(req, &r);
}

static void fs_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi) {
  (void)fi;
  request r = make(req, FS_FSYNC, ino);
  r.n[0] = datasync;
  reply_plain(req, &r);
}

/* fdatasync of a file while JavaScript says the volume has nothing to commit: one fdatasync of the data file, here. */
static void fs_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi) {
  session *s = of(req);
  int err = 0;
  /* A size or chunk a native write moved, not yet in the tree, needs a commit (the marks catch it once JavaScript folds it). */
  if (datasync && !atomic_load(&s->closing) && marks_clean(s->marks, ino) && !written_grows(s->written, ino) && table_flush(s->table, ino, &err)) {
    fuse_reply_err(req, err);
    return;
  }
  fs_fsyncdir(req, ino, datasync, fi);
}

/* JavaScript sends entries as u64 ino | u32 mode | u64 next cookie | u16 name length | name. */
static void answer_readdir(fuse_req_t req, request *r) {
  if (r->err) {
    fuse_reply_err(req, r->err);
    return;
  }
  size_t size = r->size;
  char *buf = calloc(1, size ? size : 1);
  size_t used = 0, pos = 0;
  while (buf && pos + 22 <= r->outlen) {
    uint64_t child, next;
    uint32_t mode;
    uint16_t len;
    memcpy(&child, r->out + pos, 8);
    memcpy(&mode, r->out + pos + 8, 4);
    memcpy(&next, r->out + pos + 12, 8);
    memcpy(&len, r->out + pos + 20, 2);
    if (pos + 22 + len > r->outlen || len > 255) break;
    char name[256];
    memcpy(name, r->out + pos + 22, len);
    name[len] = 0;
    pos += 22 + len;
    struct stat st;
    memset(&st, 0, sizeof(st));
    st.st_ino = (ino_t)child;
    st.st_mode = mode;
    size_t need = fuse_add_direntry(req, buf + used, size - used, name, &st, (off_t)next);
    if (need > size - used) break;
    used += need;
  }
  if (buf) fuse_reply_buf(req, buf, used);
  else fuse_reply_err(req, ENOMEM);
  free(buf);
  free(r->out);
}

static void fs_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  (void)fi;
  request r = make(req, FS_READDIR, ino);
  r.n[0] = off;
  r.n[1] = (int64_t)size;
  r.size = size;
  ask_then(req, &r, answer_readdir);
}

static void fs_statfs(fuse_req_t req, fuse_ino_t ino) {
  request r = make(req, FS_STATFS, ino);
  session_reply_statfs(req, &r);
}

static int is_caps(const char *name) {
  return strcmp(name, NO_CAPS_XATTR) == 0;
}

/* Dropped again after the set (before the kernel hears of it), which voids a "none" noted meanwhile. */
static void answer_setxattr(fuse_req_t req, request *r) {
  if (is_caps(r->name)) no_caps_drop(of(req)->no_caps, r->ino);
  fuse_reply_err(req, r->err);
}

static void fs_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value, size_t size, int flags) {
  request r = make(req, FS_SETXATTR, ino);
  r.name = name;
  r.data = value;
  r.len = size;
  r.n[0] = flags;
  if (is_caps(name)) no_caps_drop(of(req)->no_caps, ino);
  ask_then(req, &r, answer_setxattr);
}

/* `caps_ticket`: taken before asking, so a set of the capability meanwhile voids the "none" noted here. */
static void answer_getxattr(fuse_req_t req, request *r) {
  if (r->err == ENODATA && is_caps(r->name)) no_caps_add(of(req)->no_caps, r->ino, r->caps_ticket);
  answer_bytes(req, r);
}

static void fs_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size) {
  session *s = of(req);
  if (is_caps(name) && no_caps_has(s->no_caps, ino)) {
    fuse_reply_err(req, ENODATA);
    return;
  }
  request r = make(req, FS_GETXATTR, ino);
  r.name = name;
  r.xattr = 1;
  r.size = size;
  r.caps_ticket = no_caps_ticket(s->no_caps);
  ask_then(req, &r, answer_getxattr);
}

static void fs_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  request r = make(req, FS_LISTXATTR, ino);
  reply_bytes(req, &r, 1, size);
}

static void fs_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name) {
  request r = make(req, FS_REMOVEXATTR, ino);
  r.name = name;
  reply_plain(req, &r);
}

static void fs_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length, struct fuse_file_info *fi) {
  (void)fi;
  request r = make(req, FS_FALLOCATE, ino);
  r.n[0] = mode;
  r.n[1] = offset;
  r.n[2] = length;
  reply_plain(req, &r);
}

static void answer_lseek(fuse_req_t req, request *r) {
  if (r->err) fuse_reply_err(req, r->err);
  else fuse_reply_lseek(req, (off_t)r->r[0]);
}

/*
 * One SEEK_DATA/SEEK_HOLE at a time, process-wide, may flush its file
 * first: the flush blocks this FUSE thread until the file's pages were
 * written, and those writes need the other threads. Two at once would
 * leave fewer free; the second answers from what reached the pool.
 */
static atomic_flag lseek_flushing = ATOMIC_FLAG_INIT;

/*
 * The kernel asks without writing the file's dirty pages back first, so
 * data still in the page cache would read as a hole: the inode's pages are
 * written back and dropped (a reverse invalidation launders dirty pages)
 * before JavaScript answers from the file's regions.
 */
static void fs_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, struct fuse_file_info *fi) {
  (void)fi;
  if (!atomic_flag_test_and_set(&lseek_flushing)) {
    fuse_lowlevel_notify_inval_inode(of(req)->se, ino, 0, 0);
    atomic_flag_clear(&lseek_flushing);
  }
  request r = make(req, FS_LSEEK, ino);
  r.n[0] = off;
  r.n[1] = whence;
  ask_then(req, &r, answer_lseek);
}

/* Between files of this mount, so of one volume: JavaScript shares whole chunks (a reflink) and copies the rest. */
static void fs_copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in, struct fuse_file_info *fi_in, fuse_ino_t ino_out, off_t off_out, struct fuse_file_info *fi_out, size_t len, int flags) {
  (void)fi_in;
  (void)fi_out;
  int64_t v[5] = {off_in, (int64_t)ino_out, off_out, (int64_t)len, flags};
  request r = make(req, FS_COPY_FILE_RANGE, ino_in);
  r.data = (const char *)v;
  r.len = sizeof(v);
  ask_then(req, &r, answer_write);
}

static void fs_init(void *userdata, struct fuse_conn_info *conn) {
  (void)userdata;
  conn->max_write = 1 << 20;
  conn->max_readahead = 1 << 20;
  /* Buffered writes stay in the kernel until writeback, fsync or a flush before a snapshot (see the caveats). */
  conn->want |= FUSE_CAP_WRITEBACK_CACHE & conn->capable;
  /* Renames and the rest go to JavaScript one by one; lookups of the same directory may run together. */
  conn->want |= FUSE_CAP_PARALLEL_DIROPS & conn->capable;
  /* The kernel enforces POSIX ACLs and leaves us the mode and inheritance (src/cowfs/acl.ts), and so the umask
   * too: with a default ACL in the directory it must not apply (each create, mknod and mkdir carries it). */
  conn->want |= (FUSE_CAP_POSIX_ACL | FUSE_CAP_DONT_MASK) & conn->capable;
  /*
   * libfuse asks for atomic O_TRUNC by default: the kernel then empties the
   * file in its own cache and leaves the truncate to OPEN, which here only
   * counts the open. Without it the kernel sends the truncate as a SETATTR
   * (size 0, the times, the set-id bits to drop), which JavaScript serves
   * as it serves ftruncate.
   */
  conn->want &= ~FUSE_CAP_ATOMIC_O_TRUNC;
}

const struct fuse_lowlevel_ops cowfs_ops = {
    .init = fs_init,
    .lookup = fs_lookup,
    .forget = fs_forget,
    .getattr = fs_getattr,
    .setattr = fs_setattr,
    .readlink = fs_readlink,
    .mknod = fs_mknod,
    .mkdir = fs_mkdir,
    .unlink = fs_unlink,
    .rmdir = fs_rmdir,
    .symlink = fs_symlink,
    .rename = fs_rename,
    .link = fs_link,
    .open = fs_open,
    .read = fs_read,
    .write = fs_write,
    .release = fs_release,
    .fsync = fs_fsync,
    .readdir = fs_readdir,
    .fsyncdir = fs_fsyncdir,
    .statfs = fs_statfs,
    .setxattr = fs_setxattr,
    .getxattr = fs_getxattr,
    .listxattr = fs_listxattr,
    .removexattr = fs_removexattr,
    .create = fs_create,
    .fallocate = fs_fallocate,
    .lseek = fs_lseek,
    .copy_file_range = fs_copy_file_range,
};
const size_t cowfs_ops_size = sizeof(cowfs_ops);
