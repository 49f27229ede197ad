/*
 * The FUSE session: a libfuse3 low-level filesystem on native threads that
 * serves mapped chunk I/O itself and asks JavaScript for everything else.
 * See fuse_session.c for the rules it keeps.
 */
#ifndef COWVOL_FUSE_SESSION_H
#define COWVOL_FUSE_SESSION_H

#include <node_api.h>

napi_value fuse_mount(napi_env env, napi_callback_info info);
napi_value fuse_reply(napi_env env, napi_callback_info info);
napi_value fuse_map(napi_env env, napi_callback_info info);
napi_value fuse_invalidate(napi_env env, napi_callback_info info);
napi_value fuse_holes(napi_env env, napi_callback_info info);
napi_value fuse_reserve(napi_env env, napi_callback_info info);
napi_value fuse_taken(napi_env env, napi_callback_info info);
napi_value fuse_commit_needed(napi_env env, napi_callback_info info);
napi_value fuse_generations(napi_env env, napi_callback_info info);
napi_value fuse_written(napi_env env, napi_callback_info info);
napi_value fuse_kernel_times(napi_env env, napi_callback_info info);
napi_value fuse_clock(napi_env env, napi_callback_info info);
napi_value fuse_stats(napi_env env, napi_callback_info info);
napi_value fuse_follow_names(napi_env env, napi_callback_info info);
napi_value fuse_unmount(napi_env env, napi_callback_info info);
napi_value fuse_destroy(napi_env env, napi_callback_info info);
napi_value fuse_detach(napi_env env, napi_callback_info info);
napi_value fuse_handover(napi_env env, napi_callback_info info);
napi_value fuse_journal(napi_env env, napi_callback_info info);
napi_value fuse_journal_append(napi_env env, napi_callback_info info);
napi_value fuse_journal_items(napi_env env, napi_callback_info info);
napi_value fuse_journal_commit(napi_env env, napi_callback_info info);
napi_value fuse_count_volumes(napi_env env, napi_callback_info info);
napi_value fuse_volume_stats(napi_env env, napi_callback_info info);
napi_value fuse_latency(napi_env env, napi_callback_info info);
napi_value fuse_forget_volume(napi_env env, napi_callback_info info);

#endif
