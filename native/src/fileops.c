/*
 * Synchronous wrappers for fallocate(PUNCH_HOLE) and flock.
 * They run on the calling thread: the blockstore does its metadata I/O
 * synchronously on purpose (deterministic, replayable in tests), and these are
 * short system calls. Errors are thrown as Error objects whose `code` is the
 * errno name, the same shape Node's own fs errors have.
 */
#include "fileops.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <linux/loop.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <unistd.h>

static napi_value code_error(napi_env env, const char *code_name, const char *message) {
  napi_value code, msg, error;
  napi_create_string_utf8(env, code_name, NAPI_AUTO_LENGTH, &code);
  napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &msg);
  napi_create_error(env, code, msg, &error);
  return error;
}

/*
 * An Error whose code is the errno's own name (ENOSPC, ENOTCONN...), as
 * Node's fs errors have; src/errors.ts maps the name onward. glibc >= 2.32
 * names every errno it knows; an unknown one is reported as EIO.
 */
napi_value cowvol_errno_error(napi_env env, int err, const char *syscall) {
  const char *name = strerrorname_np(err);
  char message[160];
  snprintf(message, sizeof(message), "%s: %s", syscall, strerror(err));
  return code_error(env, name ? name : "EIO", message);
}

napi_value cowvol_throw_errno(napi_env env, int err, const char *syscall) {
  napi_throw(env, cowvol_errno_error(env, err, syscall));
  return NULL;
}

napi_value cowvol_throw_code(napi_env env, const char *code_name, const char *message) {
  napi_throw(env, code_error(env, code_name, message));
  return NULL;
}

/* Reads argument i as a non-negative integer that fits a double exactly. */
static int get_int64(napi_env env, napi_value value, int64_t *out) {
  if (napi_get_value_int64(env, value, out) != napi_ok || *out < 0) {
    napi_throw_type_error(env, "EINVAL", "expected a non-negative integer");
    return -1;
  }
  return 0;
}

static int get_args(napi_env env, napi_callback_info info, size_t want, int64_t *out) {
  napi_value argv[6];
  size_t argc = 6;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < want) {
    napi_throw_type_error(env, "EINVAL", "missing arguments");
    return -1;
  }
  for (size_t i = 0; i < want; i++) {
    if (get_int64(env, argv[i], &out[i]) != 0) return -1;
  }
  return 0;
}

/* punchHole(fd, offset, length): deallocate the range, keep the file size. */
napi_value fileops_punch_hole(napi_env env, napi_callback_info info) {
  int64_t a[3];
  if (get_args(env, info, 3, a) != 0) return NULL;
  if (a[2] == 0) return NULL;
  int rc;
  do {
    rc = fallocate((int)a[0], FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)a[1], (off_t)a[2]);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) return cowvol_throw_errno(env, errno, "fallocate");
  return NULL;
}

/*
 * tryLock(fd): exclusive, non-blocking flock. Returns true when taken, false
 * when another open file description holds it. The kernel drops the lock when
 * the holder dies, so a kill -9 never leaves a pool locked.
 */
napi_value fileops_try_lock(napi_env env, napi_callback_info info) {
  int64_t a[1];
  if (get_args(env, info, 1, a) != 0) return NULL;
  int rc;
  do {
    rc = flock((int)a[0], LOCK_EX | LOCK_NB);
  } while (rc != 0 && errno == EINTR);
  napi_value result;
  if (rc == 0) {
    napi_get_boolean(env, true, &result);
    return result;
  }
  if (errno == EWOULDBLOCK) {
    napi_get_boolean(env, false, &result);
    return result;
  }
  return cowvol_throw_errno(env, errno, "flock");
}

/*
 * loopBackingDevice(path): "major:minor" of the filesystem that holds a loop
 * device's backing file, from LOOP_GET_STATUS64. When that filesystem was a
 * FUSE mount that is gone, the backing file's path no longer tells where it
 * was; this number still does. Returns "" for a loop device with no file.
 */
napi_value fileops_loop_backing_device(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char path[256];
  size_t len = 0;
  if (argc < 1 || napi_get_value_string_utf8(env, argv[0], path, sizeof(path), &len) != napi_ok) {
    napi_throw_type_error(env, NULL, "loopBackingDevice(path)");
    return NULL;
  }
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return cowvol_throw_errno(env, errno, "open");
  struct loop_info64 li;
  memset(&li, 0, sizeof(li));
  int rc = ioctl(fd, LOOP_GET_STATUS64, &li);
  int err = errno;
  close(fd);
  char out[32] = "";
  if (rc != 0) {
    if (err != ENXIO) return cowvol_throw_errno(env, err, "ioctl(LOOP_GET_STATUS64)");
  } else {
    snprintf(out, sizeof(out), "%u:%u", major((dev_t)li.lo_device), minor((dev_t)li.lo_device));
  }
  napi_value result;
  napi_create_string_utf8(env, out, NAPI_AUTO_LENGTH, &result);
  return result;
}
