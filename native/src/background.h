/*
 * System calls the event loop must not wait for, run on libuv's thread
 * pool, each a promise (background.c).
 *
 * syncFilesystem(path): syncfs(2) of the filesystem holding `path`. A
 * cowfs mount runs with the kernel's writeback cache, so writes a process
 * was told are done may still sit in the page cache; a snapshot, a clone or
 * an unmount of the volume flushes the mount first. The flush sends the
 * pages to the daemon as FUSE writes, which the FUSE threads and the event
 * loop serve, so it must never run on the event loop.
 *
 * punchHoleAsync(fd, offset, length): fallocate(PUNCH_HOLE | KEEP_SIZE).
 * Punching the chunks a commit freed can take half a second for a few
 * hundred megabytes (the filesystem frees extents); the pool keeps them out
 * of allocation until the punch is done (Pool.punchRun). punchWait() blocks
 * until no punch is running, so a file is never closed (and its number
 * reused) under one: FileDisk.close calls it.
 */
#ifndef COWVOL_BACKGROUND_H
#define COWVOL_BACKGROUND_H

#include <node_api.h>

napi_value background_syncfs(napi_env env, napi_callback_info info);
napi_value background_punch(napi_env env, napi_callback_info info);
napi_value background_punch_wait(napi_env env, napi_callback_info info);

#endif
