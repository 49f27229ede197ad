/*
 * The raw-byte half of FUSE_HANDLE_KILLPRIV_V2 (kill_priv.h says why).
 *
 * Caveat: the flag stays on for the connection's life, so a successor that
 * takes a connection over must drop set-id bits itself as this one does
 * (an older daemon, which does not, would leave them on written files).
 */
#include "kill_priv.h"

#include <linux/fuse.h>
#include <stdint.h>
#include <string.h>

/* include/uapi/linux/fuse.h 7.33 (Linux 5.11); named here so the build does not depend on the header's age. */
#define HANDLE_KILLPRIV_V2 (1u << 28)
#define WRITE_KILL_SUIDGID (1u << 2)
#define ATTR_KILL_SUIDGID (1u << 11)

static _Thread_local int kills;

void kill_priv_answer(const char *init, size_t init_len, struct iovec *iov, int count) {
  if (init_len < sizeof(struct fuse_in_header) + 16 || count < 2) return;
  if (iov[0].iov_len < sizeof(struct fuse_out_header) || iov[1].iov_len < 16) return;
  const struct fuse_in_header *in = (const void *)init;
  const struct fuse_out_header *out = iov[0].iov_base;
  if (out->unique != in->unique || out->error != 0) return;
  /* fuse_init_in and fuse_init_out both start major, minor, max_readahead, flags (32 bits each). */
  uint32_t offered;
  memcpy(&offered, init + sizeof(*in) + 12, sizeof(offered));
  if (!(offered & HANDLE_KILLPRIV_V2)) return;
  char *answer = iov[1].iov_base;
  uint32_t flags;
  memcpy(&flags, answer + 12, sizeof(flags));
  flags |= HANDLE_KILLPRIV_V2;
  memcpy(answer + 12, &flags, sizeof(flags));
}

void kill_priv_note(const void *buf, size_t n) {
  kills = 0;
  if (n < sizeof(struct fuse_in_header)) return;
  const struct fuse_in_header *in = buf;
  const char *arg = (const char *)buf + sizeof(*in);
  if (in->opcode == FUSE_WRITE && n >= sizeof(*in) + sizeof(struct fuse_write_in)) {
    struct fuse_write_in w;
    memcpy(&w, arg, sizeof(w));
    kills = (w.write_flags & WRITE_KILL_SUIDGID) != 0;
  } else if (in->opcode == FUSE_SETATTR && n >= sizeof(*in) + sizeof(struct fuse_setattr_in)) {
    struct fuse_setattr_in a;
    memcpy(&a, arg, sizeof(a));
    kills = (a.valid & ATTR_KILL_SUIDGID) != 0;
  }
}

int kill_priv_kills(void) {
  return kills;
}
