/*
 * The files known to carry no security.capability xattr (no_caps.h): a
 * direct-mapped array of inode numbers, so memory is fixed and a lookup is
 * one load. Inode numbers are never reused by cowfs, so an entry never
 * speaks for a later file; a collision only forgets an answer.
 *
 * Lock notes: slots are atomics. The race that matters is a getxattr that
 * JavaScript answered "none" just before a setxattr of the capability, and
 * that notes its answer after the setxattr dropped the entry: tickets (a
 * counter every drop moves, before and after the set) make such a late
 * note a no-op.
 */
#include "no_caps.h"

#include <stdatomic.h>
#include <stdlib.h>

#define SLOTS 4096

struct no_caps {
  _Atomic uint64_t slot[SLOTS];
  atomic_ullong drops;
};

no_caps *no_caps_new(void) {
  return calloc(1, sizeof(no_caps));
}

void no_caps_free(no_caps *c) {
  free(c);
}

int no_caps_has(no_caps *c, uint64_t ino) {
  return ino != 0 && atomic_load_explicit(&c->slot[ino % SLOTS], memory_order_acquire) == ino;
}

uint64_t no_caps_ticket(no_caps *c) {
  return atomic_load_explicit(&c->drops, memory_order_acquire);
}

void no_caps_add(no_caps *c, uint64_t ino, uint64_t ticket) {
  /* Noted first, checked after: a drop that raced either sees the entry (and clears it) or moved the count. */
  atomic_store_explicit(&c->slot[ino % SLOTS], ino, memory_order_seq_cst);
  if (atomic_load_explicit(&c->drops, memory_order_seq_cst) != ticket) {
    uint64_t expected = ino;
    atomic_compare_exchange_strong(&c->slot[ino % SLOTS], &expected, 0);
  }
}

void no_caps_drop(no_caps *c, uint64_t ino) {
  atomic_fetch_add_explicit(&c->drops, 1, memory_order_seq_cst);
  uint64_t expected = ino;
  atomic_compare_exchange_strong(&c->slot[ino % SLOTS], &expected, 0);
}
