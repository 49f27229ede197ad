/*
 * The keeper process's loop: holds a FUSE connection between daemons. See keeper.c.
 */
#ifndef COWVOL_KEEPER_H
#define COWVOL_KEEPER_H

#include <node_api.h>

/* Runs until the keeper has nothing left to keep; returns why. */
const char *keeper_run(const char *path, int grace_ms);
napi_value keeper_js_run(napi_env env, napi_callback_info info);

#endif
