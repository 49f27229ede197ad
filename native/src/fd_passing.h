/*
 * Unix sequenced-packet sockets that carry file descriptors. See fd_passing.c.
 */
#ifndef COWVOL_FD_PASSING_H
#define COWVOL_FD_PASSING_H

#include <node_api.h>
#include <sys/types.h>

/*
 * Bounds: a message and the fds it carries. A clean stop hands the keeper
 * the block files' connection and journal, a record of the cowfs mounts
 * and up to 128 cowfs connections (HANDED_MOUNTS_MAX in fs-mounts.ts); the
 * kernel carries at most 253 fds in one message (SCM_MAX_FD).
 */
#define FDP_MAX_MESSAGE 8192
#define FDP_MAX_FDS 136

int fdp_listen(const char *path);
int fdp_connect(const char *path);
int fdp_send(int sock, const void *buf, size_t len, const int *fds, int nfds);
/* The message's length (0: the peer closed), its fds in fds/nfds; -1 with errno. */
ssize_t fdp_recv(int sock, void *buf, size_t cap, int *fds, int *nfds);

/* One datagram to the socket at `path` ('@' first: abstract). */
int fdp_notify(const char *path, const char *msg, const int *fds, int nfds);
int fdp_datagram_bind(const char *path, int timeout_ms);

napi_value fdp_js_listen(napi_env env, napi_callback_info info);
napi_value fdp_js_notify(napi_env env, napi_callback_info info);
napi_value fdp_js_datagram_bind(napi_env env, napi_callback_info info);
napi_value fdp_js_memfd_with(napi_env env, napi_callback_info info);
napi_value fdp_js_connect(napi_env env, napi_callback_info info);
napi_value fdp_js_send(napi_env env, napi_callback_info info);
napi_value fdp_js_receive(napi_env env, napi_callback_info info);

#endif
