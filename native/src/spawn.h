/*
 * Node tools started with posix_spawn on a thread of their own (spawn.c).
 */
#ifndef COWVOL_SPAWN_H
#define COWVOL_SPAWN_H

#include <node_api.h>

napi_value spawn_tool(napi_env env, napi_callback_info info);

#endif
