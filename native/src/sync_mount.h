/*
 * syncFilesystem(path): a promise that settles once syncfs(2) of the
 * filesystem holding `path` returned, run on libuv's thread pool.
 *
 * What it is for: a cowfs mount runs with the kernel's writeback cache, so
 * writes a process was told are done may still sit in the page cache. A
 * snapshot, a clone or an unmount of the volume flushes the mount first;
 * the flush sends the pages to the daemon as FUSE writes, which the FUSE
 * threads and the event loop serve, so it must never run on the event loop.
 */
#ifndef COWVOL_SYNC_MOUNT_H
#define COWVOL_SYNC_MOUNT_H

#include <node_api.h>

napi_value sync_mount(napi_env env, napi_callback_info info);

#endif
