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
#include "journal.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct written {
  pthread_mutex_t mu;
  size_t count;
  written_file files[WRITTEN_MAX];
  /* Notes with an end: read without `mu` first by an fdatasync deciding whether it may skip JavaScript. */
  atomic_size_t growing;
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

/* The note of `ino`, a new one (no time, no end) if it has none; NULL when full. Caller holds `mu`. */
static written_file *note_of(written *w, uint64_t ino) {
  size_t i = 0;
  while (i < w->count && w->files[i].ino != ino) i++;
  if (i == WRITTEN_MAX) return NULL;
  if (i == w->count) w->files[w->count++] = (written_file){.ino = ino, .sec = -1, .nsec = 0, .end = 0, .seq = 0};
  return &w->files[i];
}

int written_note(written *w, uint64_t ino, struct timespec *at) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  *at = ts;
  pthread_mutex_lock(&w->mu);
  written_file *f = note_of(w, ino);
  if (f) {
    f->sec = ts.tv_sec;
    f->nsec = ts.tv_nsec;
  }
  pthread_mutex_unlock(&w->mu);
  return f != NULL;
}

int written_grow(written *w, uint64_t ino, uint64_t end) {
  return written_grow_journaled(w, ino, end, NULL, 0);
}

int written_grow_journaled(written *w, uint64_t ino, uint64_t end, struct journal *j, uint64_t volume) {
  pthread_mutex_lock(&w->mu);
  written_file *f = note_of(w, ino);
  if (f && j && end > f->end) {
    uint64_t payload[2] = {ino, end};
    uint64_t seq = journal_append_long(j, JOURNAL_FILE_END, volume, 0, payload, sizeof(payload));
    if (seq == 0) f = NULL; /* full: JavaScript serves the write, and the pool commits */
    else if (f->seq == 0) f->seq = seq;
  }
  if (f) {
    if (f->end == 0) atomic_fetch_add(&w->growing, 1);
    if (end > f->end) f->end = end;
  }
  pthread_mutex_unlock(&w->mu);
  return f != NULL;
}

uint64_t written_cover(written *w) {
  pthread_mutex_lock(&w->mu);
  uint64_t oldest = 0;
  for (size_t i = 0; i < w->count; i++) {
    uint64_t s = w->files[i].seq;
    if (s != 0 && (oldest == 0 || s < oldest)) oldest = s;
  }
  pthread_mutex_unlock(&w->mu);
  return oldest;
}

int written_grows(written *w, uint64_t ino) {
  if (atomic_load(&w->growing) == 0) return 0;
  pthread_mutex_lock(&w->mu);
  size_t i = 0;
  while (i < w->count && (w->files[i].ino != ino || w->files[i].end == 0)) i++;
  int found = i < w->count;
  pthread_mutex_unlock(&w->mu);
  return found;
}

size_t written_drain_ends(written *w, written_file *out) {
  pthread_mutex_lock(&w->mu);
  size_t n = 0, kept = 0;
  for (size_t i = 0; i < w->count; i++) {
    written_file f = w->files[i];
    if (f.end > 0) out[n++] = (written_file){.ino = f.ino, .sec = -1, .nsec = 0, .end = f.end};
    f.end = 0;
    f.seq = 0;
    if (f.sec >= 0) w->files[kept++] = f;
  }
  w->count = kept;
  atomic_store(&w->growing, 0);
  pthread_mutex_unlock(&w->mu);
  return n;
}

size_t written_drain(written *w, written_file *out) {
  pthread_mutex_lock(&w->mu);
  size_t n = w->count;
  memcpy(out, w->files, n * sizeof(written_file));
  w->count = 0;
  atomic_store(&w->growing, 0);
  pthread_mutex_unlock(&w->mu);
  return n;
}
