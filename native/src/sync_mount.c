/*
 * syncfs(2) off the event loop (sync_mount.h says why).
 *
 * Caveat: syncfs reports writeback errors once per open file description;
 * each call opens the path afresh, so an error since the last call shows.
 */
#include "sync_mount.h"

#include "fileops.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  char path[PATH_MAX];
  int err;
  const char *syscall;
} job;

static void execute(napi_env env, void *data) {
  (void)env;
  job *j = data;
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

static void complete(napi_env env, napi_status status, void *data) {
  job *j = data;
  if (status != napi_ok && j->err == 0) {
    j->err = ECANCELED;
    j->syscall = "syncfs";
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

napi_value sync_mount(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  job *j = calloc(1, sizeof(job));
  if (!j) return cowvol_throw_errno(env, ENOMEM, "syncFilesystem");
  size_t len = 0;
  if (argc < 1 || napi_get_value_string_utf8(env, argv[0], j->path, sizeof(j->path), &len) != napi_ok || len == 0 || len >= sizeof(j->path) - 1) {
    free(j);
    return cowvol_throw_code(env, "EINVAL", "syncFilesystem: a directory path is required");
  }
  napi_value promise, name;
  napi_create_promise(env, &j->deferred, &promise);
  napi_create_string_utf8(env, "cowvol-syncfs", NAPI_AUTO_LENGTH, &name);
  if (napi_create_async_work(env, NULL, name, execute, complete, j, &j->work) != napi_ok || napi_queue_async_work(env, j->work) != napi_ok) {
    napi_reject_deferred(env, j->deferred, cowvol_errno_error(env, EAGAIN, "syncFilesystem"));
    free(j);
  }
  return promise;
}
