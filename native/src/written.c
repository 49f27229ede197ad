/*
 * The files written natively since JavaScript last looked (written.h).
 *
 * Lock notes: `mu` guards every field; a note is a few compares under it,
 * taken once per native write before its data goes in (as ext4 stamps
 * mtime before it copies), so a stat that follows the answer (JavaScript
 * drains before serving it) sees the new mtime. A write the table then
 * cannot serve goes to JavaScript, which stamps a later time itself.
 */
#include "written.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct written {
  pthread_mutex_t mu;
  size_t count;
  written_file files[WRITTEN_MAX];
};

written *written_new(void) {
  written *w = calloc(1, sizeof(written));
  if (w) pthread_mutex_init(&w->mu, NULL);
  return w;
}

void written_free(written *w) {
  if (!w) return;
  pthread_mutex_destroy(&w->mu);
  free(w);
}

int written_note(written *w, uint64_t ino, struct timespec *at) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  *at = ts;
  pthread_mutex_lock(&w->mu);
  size_t i = 0;
  while (i < w->count && w->files[i].ino != ino) i++;
  int ok = i < WRITTEN_MAX;
  if (ok) {
    if (i == w->count) w->count++;
    w->files[i] = (written_file){.ino = ino, .sec = ts.tv_sec, .nsec = ts.tv_nsec};
  }
  pthread_mutex_unlock(&w->mu);
  return ok;
}

size_t written_drain(written *w, written_file *out) {
  pthread_mutex_lock(&w->mu);
  size_t n = w->count;
  memcpy(out, w->files, n * sizeof(written_file));
  w->count = 0;
  pthread_mutex_unlock(&w->mu);
  return n;
}
