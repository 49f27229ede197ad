/*
 * syncfs and hole punching off the event loop (background.h says why).
 *
 * Caveat: syncfs reports writeback errors once per open file description;
 * each call opens the path afresh, so an error since the last call shows.
 *
 * Lock notes: `mu` guards `punching`, the punches queued and not yet
 * returned from fallocate. It drops in the worker, not in the completion,
 * so punchWait on the JavaScript thread never waits for the JavaScript
 * thread.
 */
#include "background.h"

#include "fileops.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { JOB_SYNCFS, JOB_PUNCH };

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  int kind;
  char path[PATH_MAX]; /* JOB_SYNCFS */
  int fd;              /* JOB_PUNCH */
  int64_t offset, length;
  int err;
  const char *syscall;
} job;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t idle = PTHREAD_COND_INITIALIZER;
static int punching;

static void run_syncfs(job *j) {
  int fd = open(j->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    j->err = errno;
    j->syscall = "open";
    return;
  }
  if (syncfs(fd) != 0) {
    j->err = errno;
    j->syscall = "syncfs";
  }
  close(fd);
}

static void run_punch(job *j) {
  int rc;
  do {
    rc = fallocate(j->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)j->offset, (off_t)j->length);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    j->err = errno;
    j->syscall = "fallocate";
  }
  pthread_mutex_lock(&mu);
  if (--punching == 0) pthread_cond_broadcast(&idle);
  pthread_mutex_unlock(&mu);
}

static void execute(napi_env env, void *data) {
  (void)env;
  job *j = data;
  if (j->kind == JOB_SYNCFS) run_syncfs(j);
  else run_punch(j);
}

static void complete(napi_env env, napi_status status, void *data) {
  job *j = data;
  if (status != napi_ok && j->err == 0) {
    j->err = ECANCELED;
    j->syscall = j->kind == JOB_SYNCFS ? "syncfs" : "fallocate";
  }
  if (j->err == 0) {
    napi_value undefined;
    napi_get_undefined(env, &undefined);
    napi_resolve_deferred(env, j->deferred, undefined);
  } else {
    napi_reject_deferred(env, j->deferred, cowvol_errno_error(env, j->err, j->syscall));
  }
  napi_delete_async_work(env, j->work);
  free(j);
}

/* Queues j and returns its promise; a job that cannot be queued is rejected (and, for a punch, uncounted). */
static napi_value queue(napi_env env, job *j) {
  napi_value promise, name;
  napi_create_promise(env, &j->deferred, &promise);
  napi_create_string_utf8(env, j->kind == JOB_SYNCFS ? "cowvol-syncfs" : "cowvol-punch", NAPI_AUTO_LENGTH, &name);
  if (j->kind == JOB_PUNCH) {
    pthread_mutex_lock(&mu);
    punching++;
    pthread_mutex_unlock(&mu);
  }
  if (napi_create_async_work(env, NULL, name, execute, complete, j, &j->work) != napi_ok || napi_queue_async_work(env, j->work) != napi_ok) {
    if (j->kind == JOB_PUNCH) {
      pthread_mutex_lock(&mu);
      if (--punching == 0) pthread_cond_broadcast(&idle);
      pthread_mutex_unlock(&mu);
    }
    napi_reject_deferred(env, j->deferred, cowvol_errno_error(env, EAGAIN, "napi_queue_async_work"));
    free(j);
  }
  return promise;
}

/* syncFilesystem(path) */
napi_value background_syncfs(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  job *j = calloc(1, sizeof(job));
  if (!j) return cowvol_throw_errno(env, ENOMEM, "syncFilesystem");
  j->kind = JOB_SYNCFS;
  size_t len = 0;
  if (argc < 1 || napi_get_value_string_utf8(env, argv[0], j->path, sizeof(j->path), &len) != napi_ok || len == 0 || len >= sizeof(j->path) - 1) {
    free(j);
    return cowvol_throw_code(env, "EINVAL", "syncFilesystem: a directory path is required");
  }
  return queue(env, j);
}

/* punchHoleAsync(fd, offset, length) */
napi_value background_punch(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int64_t a[3] = {-1, -1, -1};
  for (size_t i = 0; i < argc && i < 3; i++) napi_get_value_int64(env, argv[i], &a[i]);
  if (argc < 3 || a[0] < 0 || a[1] < 0 || a[2] <= 0) return cowvol_throw_code(env, "EINVAL", "punchHoleAsync: fd, offset and a positive length are required");
  job *j = calloc(1, sizeof(job));
  if (!j) return cowvol_throw_errno(env, ENOMEM, "punchHoleAsync");
  j->kind = JOB_PUNCH;
  j->fd = (int)a[0];
  j->offset = a[1];
  j->length = a[2];
  return queue(env, j);
}

/* punchWait(): returns once no punch is running. */
napi_value background_punch_wait(napi_env env, napi_callback_info info) {
  (void)env;
  (void)info;
  pthread_mutex_lock(&mu);
  while (punching > 0) pthread_cond_wait(&idle, &mu);
  pthread_mutex_unlock(&mu);
  return NULL;
}
