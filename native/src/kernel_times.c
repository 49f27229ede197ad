/*
 * The kernel's times waiting for JavaScript (kernel_times.h).
 *
 * Lock notes: `mu` guards every field. A note is taken before the setattr
 * is answered, and JavaScript drains before it serves anything, so a
 * request that follows the answer sees the times in the tree.
 */
#include "kernel_times.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct kernel_times {
  pthread_mutex_t mu;
  size_t count;
  kernel_times_entry files[KERNEL_TIMES_MAX];
};

kernel_times *kernel_times_new(void) {
  kernel_times *k = calloc(1, sizeof(kernel_times));
  if (k) pthread_mutex_init(&k->mu, NULL);
  return k;
}

void kernel_times_free(kernel_times *k) {
  if (!k) return;
  pthread_mutex_destroy(&k->mu);
  free(k);
}

int kernel_times_note(kernel_times *k, const kernel_times_entry *e) {
  pthread_mutex_lock(&k->mu);
  size_t i = 0;
  while (i < k->count && k->files[i].ino != e->ino) i++;
  int ok = i < KERNEL_TIMES_MAX;
  if (ok && i == k->count) {
    k->count++;
    k->files[i] = (kernel_times_entry){.ino = e->ino};
  }
  if (ok) {
    kernel_times_entry *f = &k->files[i];
    if (e->set & KERNEL_ATIME) memcpy(f->atime, e->atime, sizeof(f->atime));
    if (e->set & KERNEL_MTIME) memcpy(f->mtime, e->mtime, sizeof(f->mtime));
    if (e->set & KERNEL_CTIME) memcpy(f->ctime, e->ctime, sizeof(f->ctime));
    f->set |= e->set;
  }
  pthread_mutex_unlock(&k->mu);
  return ok;
}

size_t kernel_times_drain(kernel_times *k, kernel_times_entry *out) {
  pthread_mutex_lock(&k->mu);
  size_t n = k->count;
  memcpy(out, k->files, n * sizeof(kernel_times_entry));
  k->count = 0;
  pthread_mutex_unlock(&k->mu);
  return n;
}
