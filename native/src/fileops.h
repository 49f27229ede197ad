/*
 * File operations that Node's fs module does not offer: hole punching and
 * advisory whole-file locks. The blockstore needs them to give freed chunks
 * back to the filesystem and to keep one process per pool. Also where a loop
 * device's backing file lives, which losetup does not report for FUSE files.
 */
#ifndef COWVOL_FILEOPS_H
#define COWVOL_FILEOPS_H

#include <node_api.h>

napi_value fileops_punch_hole(napi_env env, napi_callback_info info);
napi_value fileops_try_lock(napi_env env, napi_callback_info info);
napi_value fileops_loop_backing_device(napi_env env, napi_callback_info info);

/* An Error with code = the errno's name (the shape of Node's fs errors); throw it, or hand it to a promise. */
napi_value cowvol_errno_error(napi_env env, int err, const char *syscall);
napi_value cowvol_throw_errno(napi_env env, int err, const char *syscall);
napi_value cowvol_throw_code(napi_env env, const char *code_name, const char *message);

#endif
