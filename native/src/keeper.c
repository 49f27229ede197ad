/*
 * The keeper: a small process that holds the daemon's FUSE connection (the
 * /dev/fuse fd) so that the connection outlives the daemon, and gives it to
 * the next `cowvol serve` on the same pool. Outside systemd this is what
 * keeps the mount alive across a restart (under systemd, the unit's fd store
 * could do the same job).
 *
 * One socket, root only (fd_passing.c), one message per packet, the first
 * byte saying what it is:
 *   daemon -> keeper  H mount\0init  + [fuse fd, journal fd]  I serve this connection
 *                     D mount\0init  + [fuse fd, journal fd, more...]  I stopped cleanly: hold it for a successor
 * (more: the cowfs mounts' record, after H their open counts, and their
 * connections; the keeper holds them unread and gives every fd back in the
 * order it got them. H comes again whenever the cowfs mounts change.)
 *                     T                           give me the connection (a new daemon)
 *                     S                           stopping for good: let go, do not unmount
 *   keeper -> daemon  K pid | F or U mount\0init + [fds] | N (nothing held) | B (someone serves)
 * The daemon that sent H or took the connection with T is the owner; its
 * socket closing is how the keeper learns the owner is gone. Gone after D:
 * wait up to `grace` for a successor, then unmount lazily and exit. Gone
 * without D (kill -9, a crash): the owner may have acknowledged writes whose
 * map changes never reached a commit; they are in its journal (journal.c),
 * so the keeper waits the same way and answers U instead of F, and the
 * successor replays the journal before it serves. Without a journal the
 * keeper lets go at once and the kernel fails the connection. A grace that
 * passes after D or a kill, or an S with no owner, also detaches the cowfs mounts
 * the record names (a JSON array of entries with "dir",
 * src/daemon/handed-mounts.ts), so none is left dead; a directory whose
 * name JSON had to escape beyond \" and \\ is left as it is.
 *
 * Bounded: one owner, FDP_MAX_FDS fds, one pending client at a time.
 */
#include "keeper.h"
#include "fd_passing.h"
#include "fileops.h"
#include "handover.h"

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

typedef struct keeper {
  int listen_fd;
  int owner; /* -1: none */
  int fds[FDP_MAX_FDS];
  int nfds;
  int detached; /* 1: handed over cleanly; 2: the owner died, its journal says what it changed */
  char mount[4096];
  char init[HANDOVER_INIT_MAX];
  size_t init_len;
  int64_t deadline; /* ms, when no owner */
  int grace_ms;
} keeper;

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Reads a JSON string body at s (after its opening quote) into out; the length read, or 0 for one this does not take. */
static size_t json_path(const char *s, const char *end, char *out, size_t room) {
  size_t n = 0;
  for (const char *p = s; p < end && n + 1 < room; p++) {
    if (*p == '"') {
      out[n] = 0;
      return n;
    }
    if (*p == '\\') {
      p++;
      if (p >= end || (*p != '"' && *p != '\\' && *p != '/')) return 0;
    }
    out[n++] = *p;
  }
  return 0;
}

/* Detaches every cowfs mount the handed record (fds[2], after the block files' two) names. */
static void unmount_handed(keeper *k) {
  if (k->nfds < 3) return;
  struct stat st;
  if (fstat(k->fds[2], &st) != 0 || st.st_size <= 0 || st.st_size > (1 << 20)) return;
  static char record[1 << 20];
  ssize_t n = pread(k->fds[2], record, (size_t)st.st_size, 0);
  if (n <= 0) return;
  static const char key[] = "\"dir\":\"";
  char dir[4096];
  const char *end = record + n;
  for (const char *p = memmem(record, (size_t)n, key, sizeof(key) - 1); p; p = memmem(p, (size_t)(end - p), key, sizeof(key) - 1)) {
    p += sizeof(key) - 1;
    if (json_path(p, end, dir, sizeof(dir)) > 0 && dir[0] == '/') umount2(dir, MNT_DETACH);
  }
}

static void drop_fds(keeper *k) {
  for (int i = 0; i < k->nfds; i++) close(k->fds[i]);
  k->nfds = 0;
}

/* No successor will come (a grace passed, or `cowvol stop` with no daemon): detach what a clean stop or a killed owner left, and let go. */
static void let_go(keeper *k) {
  if (k->detached && k->mount[0]) umount2(k->mount, MNT_DETACH);
  if (k->detached) unmount_handed(k);
  drop_fds(k);
}

static void reply(int sock, const char *msg, size_t len, const int *fds, int nfds) {
  if (fdp_send(sock, msg, len, fds, nfds) != 0) { /* the peer went away; its loss, not ours */
  }
}

static void reply_pid(int sock) {
  char msg[32];
  int n = snprintf(msg, sizeof(msg), "K%d", (int)getpid());
  reply(sock, msg, (size_t)n, NULL, 0);
}

/* H and D: what the owner gives to hold. Replaces what was held. */
static void hold(keeper *k, const char *msg, size_t n, const int *fds, int nfds, int detached) {
  drop_fds(k);
  memcpy(k->fds, fds, sizeof(int) * (size_t)nfds);
  k->nfds = nfds;
  size_t mlen = strnlen(msg + 1, n - 1);
  if (mlen >= sizeof(k->mount)) mlen = sizeof(k->mount) - 1;
  memcpy(k->mount, msg + 1, mlen);
  k->mount[mlen] = 0;
  size_t rest = n - 1 > mlen + 1 ? n - 1 - (mlen + 1) : 0;
  k->init_len = rest <= sizeof(k->init) ? rest : 0;
  if (k->init_len > 0) memcpy(k->init, msg + 2 + mlen, k->init_len);
  k->detached = detached;
}

/* The owner spoke (or went away). Returns a reason to exit, or NULL. */
static const char *from_owner(keeper *k) {
  char msg[FDP_MAX_MESSAGE];
  int fds[FDP_MAX_FDS];
  int nfds = 0;
  ssize_t n = fdp_recv(k->owner, msg, sizeof(msg), fds, &nfds);
  if (n <= 0) {
    close(k->owner);
    k->owner = -1;
    if (!k->detached) {
      /* Killed: with its journal and INIT (H gives both), a successor can replay what it changed. */
      if (k->nfds < 2 || k->init_len == 0) {
        drop_fds(k);
        return "the serving process ended without handing over, and left no journal";
      }
      k->detached = 2;
    }
    k->deadline = now_ms() + k->grace_ms;
    return NULL;
  }
  if (msg[0] == 'H' || msg[0] == 'D') {
    hold(k, msg, (size_t)n, fds, nfds, msg[0] == 'D');
    reply_pid(k->owner);
    return NULL;
  }
  for (int i = 0; i < nfds; i++) close(fds[i]);
  if (msg[0] == 'S') {
    reply_pid(k->owner);
    drop_fds(k);
    return "stopped";
  }
  return NULL;
}

static void give(keeper *k, int c) {
  char msg[FDP_MAX_MESSAGE];
  size_t mlen = strlen(k->mount);
  msg[0] = k->detached == 2 ? 'U' : 'F';
  memcpy(msg + 1, k->mount, mlen + 1);
  memcpy(msg + 2 + mlen, k->init, k->init_len);
  reply(c, msg, 2 + mlen + k->init_len, k->fds, k->nfds);
}

/* A new connection: a successor (T), the first daemon (H), or a stop with no owner (S). Returns a reason to exit, or NULL. */
static const char *from_client(keeper *k, int c) {
  char msg[FDP_MAX_MESSAGE];
  int fds[FDP_MAX_FDS];
  int nfds = 0;
  ssize_t n = fdp_recv(c, msg, sizeof(msg), fds, &nfds);
  int free_to_own = k->owner < 0;
  if (n > 0 && msg[0] == 'T' && free_to_own && k->detached && k->nfds > 0) {
    give(k, c);
    k->owner = c;
    k->detached = 0; /* the successor hands over again, or its end is unclean */
    return NULL;
  }
  if (n > 0 && msg[0] == 'H' && free_to_own && k->nfds == 0) {
    hold(k, msg, (size_t)n, fds, nfds, 0);
    k->owner = c;
    reply_pid(c);
    return NULL;
  }
  for (int i = 0; i < nfds; i++) close(fds[i]);
  if (n > 0 && msg[0] == 'S' && free_to_own) {
    reply_pid(c);
    close(c);
    let_go(k);
    return "stopped with no daemon serving";
  }
  if (n > 0) reply(c, free_to_own ? "N" : "B", 1, NULL, 0);
  close(c);
  return NULL;
}

const char *keeper_run(const char *path, int grace_ms) {
  keeper k = {.owner = -1, .grace_ms = grace_ms};
  k.listen_fd = fdp_listen(path);
  if (k.listen_fd < 0) return "cannot listen on the keeper socket";
  /* Said once the socket exists, so the daemon that started us can connect. */
  if (write(STDOUT_FILENO, "ready\n", 6) != 6) { /* nobody waits for it */
  }
  k.deadline = now_ms() + grace_ms;
  const char *why = NULL;
  while (why == NULL) {
    struct pollfd p[2] = {{.fd = k.listen_fd, .events = POLLIN}, {.fd = k.owner, .events = POLLIN}};
    int timeout = -1;
    if (k.owner < 0) {
      int64_t left = k.deadline - now_ms();
      timeout = left > 0 ? (int)left : 0;
    }
    int r = poll(p, k.owner >= 0 ? 2 : 1, timeout);
    if (r < 0 && errno != EINTR) why = "poll failed";
    else if (r == 0) {
      let_go(&k);
      why = "no daemon came within the grace period";
    } else if (k.owner >= 0 && (p[1].revents & (POLLIN | POLLHUP | POLLERR))) {
      why = from_owner(&k);
    } else if (p[0].revents & POLLIN) {
      int c = accept4(k.listen_fd, NULL, NULL, SOCK_CLOEXEC);
      if (c >= 0) why = from_client(&k, c);
    }
  }
  if (k.owner >= 0) close(k.owner);
  close(k.listen_fd);
  unlink(path);
  return why;
}

/* keeperRun(path, graceMs) -> why it ended. Blocks for the keeper's whole life. */
napi_value keeper_js_run(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char path[108];
  size_t len = 0;
  int32_t grace = 0;
  if (argc < 2 || napi_get_value_string_utf8(env, argv[0], path, sizeof(path), &len) != napi_ok || len == 0 || len >= sizeof(path) - 1 ||
      napi_get_value_int32(env, argv[1], &grace) != napi_ok || grace < 0) {
    napi_throw_type_error(env, "EINVAL", "keeperRun(path, graceMs): bad arguments");
    return NULL;
  }
  const char *why = keeper_run(path, grace);
  napi_value out;
  napi_create_string_utf8(env, why, NAPI_AUTO_LENGTH, &out);
  return out;
}
