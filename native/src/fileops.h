/*
 * File operations that Node's fs module does not offer: hole punching,
 * advisory whole-file locks and in-kernel range copies. The blockstore needs
 * them to give freed chunks back to the filesystem, to keep one process per
 * pool, and to copy a chunk on a CoW break without bouncing it through JS.
 */
#ifndef COWVOL_FILEOPS_H
#define COWVOL_FILEOPS_H

#include <node_api.h>

napi_value fileops_punch_hole(napi_env env, napi_callback_info info);
napi_value fileops_try_lock(napi_env env, napi_callback_info info);
napi_value fileops_copy_range(napi_env env, napi_callback_info info);

#endif
