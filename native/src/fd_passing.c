/*
 * Unix sockets that carry file descriptors (SCM_RIGHTS), which Node's net
 * module cannot do: how a daemon gives its FUSE connection to the keeper and
 * the keeper gives it to the next daemon (keeper.c), over sequenced packets
 * (one send is one message, fds and all); and datagrams to a service
 * manager's notify socket (sd_notify's protocol: READY=1, WATCHDOG=1...),
 * which Node's dgram module cannot send either. Calls block; the daemon
 * makes them only while starting and stopping and for short datagrams, the
 * keeper is built around them.
 */
#include "fd_passing.h"
#include "fileops.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

static int address(const char *path, struct sockaddr_un *a) {
  memset(a, 0, sizeof(*a));
  a->sun_family = AF_UNIX;
  if (strlen(path) >= sizeof(a->sun_path)) {
    errno = ENAMETOOLONG;
    return -1;
  }
  strcpy(a->sun_path, path);
  return 0;
}

int fdp_listen(const char *path) {
  struct sockaddr_un a;
  if (address(path, &a) != 0) return -1;
  int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (s < 0) return -1;
  unlink(path);
  /* Root only: whoever connects can take the connection to every volume's I/O. */
  mode_t old = umask(077);
  int rc = bind(s, (struct sockaddr *)&a, sizeof(a));
  umask(old);
  if (rc != 0 || listen(s, 4) != 0) {
    int err = errno;
    close(s);
    errno = err;
    return -1;
  }
  return s;
}

int fdp_connect(const char *path) {
  struct sockaddr_un a;
  if (address(path, &a) != 0) return -1;
  int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (s < 0) return -1;
  if (connect(s, (struct sockaddr *)&a, sizeof(a)) != 0) {
    int err = errno;
    close(s);
    errno = err;
    return -1;
  }
  return s;
}

/* A path starting with '@' is in the abstract namespace, as systemd writes NOTIFY_SOCKET. */
static socklen_t datagram_address(const char *path, struct sockaddr_un *a) {
  if (address(path, a) != 0) return 0;
  socklen_t len = sizeof(*a);
  if (path[0] == '@') {
    a->sun_path[0] = 0;
    len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path));
  }
  return len;
}

int fdp_notify(const char *path, const char *msg, const int *fds, int nfds) {
  struct sockaddr_un a;
  socklen_t alen = datagram_address(path, &a);
  if (alen == 0) return -1;
  int s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return -1;
  int rc = connect(s, (struct sockaddr *)&a, alen) == 0 ? fdp_send(s, msg, strlen(msg), fds, nfds) : -1;
  int err = errno;
  close(s);
  errno = err;
  return rc;
}

int fdp_datagram_bind(const char *path, int timeout_ms) {
  struct sockaddr_un a;
  if (address(path, &a) != 0) return -1;
  int s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return -1;
  unlink(path);
  struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
  if (bind(s, (struct sockaddr *)&a, sizeof(a)) != 0 || setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) != 0) {
    int err = errno;
    close(s);
    errno = err;
    return -1;
  }
  return s;
}

int fdp_send(int sock, const void *buf, size_t len, const int *fds, int nfds) {
  if (nfds < 0 || nfds > FDP_MAX_FDS) {
    errno = EINVAL;
    return -1;
  }
  char control[CMSG_SPACE(sizeof(int) * FDP_MAX_FDS)];
  memset(control, 0, sizeof(control));
  struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
  struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
  if (nfds > 0) {
    m.msg_control = control;
    m.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)nfds);
  }
  ssize_t n;
  do n = sendmsg(sock, &m, MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  return n == (ssize_t)len ? 0 : -1;
}

ssize_t fdp_recv(int sock, void *buf, size_t cap, int *fds, int *nfds) {
  char control[CMSG_SPACE(sizeof(int) * FDP_MAX_FDS)];
  struct iovec iov = {.iov_base = buf, .iov_len = cap};
  struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control, .msg_controllen = sizeof(control)};
  ssize_t n;
  do n = recvmsg(sock, &m, MSG_CMSG_CLOEXEC);
  while (n < 0 && errno == EINTR);
  *nfds = 0;
  if (n < 0) return -1;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c != NULL; c = CMSG_NXTHDR(&m, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    int k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
    for (int i = 0; i < k; i++) {
      int fd;
      memcpy(&fd, CMSG_DATA(c) + sizeof(int) * (size_t)i, sizeof(int));
      if (*nfds < FDP_MAX_FDS) fds[(*nfds)++] = fd;
      else close(fd);
    }
  }
  if (m.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
    for (int i = 0; i < *nfds; i++) close(fds[i]);
    *nfds = 0;
    errno = EMSGSIZE;
    return -1;
  }
  return n;
}

/* ---- JavaScript's side ------------------------------------------------------ */

static int path_arg(napi_env env, napi_value v, char *out, size_t cap) {
  size_t len = 0;
  if (napi_get_value_string_utf8(env, v, out, cap, &len) != napi_ok || len == 0 || len >= cap - 1) {
    napi_throw_type_error(env, "EINVAL", "expected a socket path");
    return -1;
  }
  return 0;
}

static napi_value int_value(napi_env env, int64_t v) {
  napi_value out;
  napi_create_int64(env, v, &out);
  return out;
}

/* A call that takes one socket path and makes one fd of it: listen or connect. */
static napi_value path_to_fd(napi_env env, napi_callback_info info, int (*make)(const char *), const char *what) {
  size_t argc = 1;
  napi_value argv[1];
  char path[108];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1 || path_arg(env, argv[0], path, sizeof(path)) != 0) return NULL;
  int s = make(path);
  return s < 0 ? cowvol_throw_errno(env, errno, what) : int_value(env, s);
}

/* unixListen(path) -> fd */
napi_value fdp_js_listen(napi_env env, napi_callback_info info) {
  return path_to_fd(env, info, fdp_listen, "listen");
}

/* unixConnect(path) -> fd */
napi_value fdp_js_connect(napi_env env, napi_callback_info info) {
  return path_to_fd(env, info, fdp_connect, "connect");
}

/* fds argument of unixSend and sdNotify: a JavaScript array of fd numbers. */
static int fds_arg(napi_env env, napi_value v, int *fds, uint32_t *n) {
  if (napi_get_array_length(env, v, n) != napi_ok || *n > FDP_MAX_FDS) return -1;
  for (uint32_t i = 0; i < *n; i++) {
    napi_value e;
    napi_get_element(env, v, i, &e);
    if (napi_get_value_int32(env, e, &fds[i]) != napi_ok) return -1;
  }
  return 0;
}

/* unixSend(fd, buffer, fds) */
napi_value fdp_js_send(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t sock = -1;
  void *data = NULL;
  size_t len = 0;
  uint32_t nfds = 0;
  int fds[FDP_MAX_FDS];
  if (argc < 3 || napi_get_value_int32(env, argv[0], &sock) != napi_ok || napi_get_buffer_info(env, argv[1], &data, &len) != napi_ok ||
      fds_arg(env, argv[2], fds, &nfds) != 0) {
    napi_throw_type_error(env, "EINVAL", "unixSend(fd, buffer, fds): bad arguments");
    return NULL;
  }
  if (fdp_send(sock, data, len, fds, (int)nfds) != 0) return cowvol_throw_errno(env, errno, "sendmsg");
  return NULL;
}

/* unixReceive(fd) -> [buffer, fds], or null when the peer closed. Blocks. */
napi_value fdp_js_receive(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t sock = -1;
  if (argc < 1 || napi_get_value_int32(env, argv[0], &sock) != napi_ok) {
    napi_throw_type_error(env, "EINVAL", "unixReceive(fd): bad arguments");
    return NULL;
  }
  char buf[FDP_MAX_MESSAGE];
  int fds[FDP_MAX_FDS];
  int nfds = 0;
  ssize_t n = fdp_recv(sock, buf, sizeof(buf), fds, &nfds);
  if (n < 0) return cowvol_throw_errno(env, errno, "recvmsg");
  napi_value out, data, list;
  if (n == 0 && nfds == 0) {
    napi_get_null(env, &out);
    return out;
  }
  napi_create_buffer_copy(env, (size_t)n, buf, NULL, &data);
  napi_create_array_with_length(env, (size_t)nfds, &list);
  for (int i = 0; i < nfds; i++) napi_set_element(env, list, (uint32_t)i, int_value(env, fds[i]));
  napi_create_array_with_length(env, 2, &out);
  napi_set_element(env, out, 0, data);
  napi_set_element(env, out, 1, list);
  return out;
}

/* sdNotify(socketPath, message, fds): one datagram to a service manager's notify socket. */
napi_value fdp_js_notify(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char path[108];
  char msg[FDP_MAX_MESSAGE];
  size_t len = 0;
  int fds[FDP_MAX_FDS];
  uint32_t nfds = 0;
  if (argc < 3 || path_arg(env, argv[0], path, sizeof(path)) != 0) return NULL;
  if (napi_get_value_string_utf8(env, argv[1], msg, sizeof(msg), &len) != napi_ok || fds_arg(env, argv[2], fds, &nfds) != 0) {
    napi_throw_type_error(env, "EINVAL", "sdNotify(path, message, fds): bad arguments");
    return NULL;
  }
  if (fdp_notify(path, msg, fds, (int)nfds) != 0) return cowvol_throw_errno(env, errno, "sendmsg");
  return NULL;
}

/* unixDatagramBind(path, timeoutMs) -> fd: a datagram socket whose receives (unixReceive) give up after the timeout (EAGAIN). */
napi_value fdp_js_datagram_bind(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char path[108];
  int32_t timeout = 0;
  if (argc < 2 || path_arg(env, argv[0], path, sizeof(path)) != 0) return NULL;
  napi_get_value_int32(env, argv[1], &timeout);
  int s = fdp_datagram_bind(path, timeout);
  return s < 0 ? cowvol_throw_errno(env, errno, "bind") : int_value(env, s);
}

/* memfdWith(buffer) -> fd of a memfd holding those bytes: a small record that can sit in a service manager's fd store. */
napi_value fdp_js_memfd_with(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  void *data = NULL;
  size_t len = 0;
  if (argc < 1 || napi_get_buffer_info(env, argv[0], &data, &len) != napi_ok) {
    napi_throw_type_error(env, "EINVAL", "memfdWith(buffer): bad arguments");
    return NULL;
  }
  int fd = memfd_create("cowvol-info", MFD_CLOEXEC);
  if (fd < 0) return cowvol_throw_errno(env, errno, "memfd_create");
  if (pwrite(fd, data, len, 0) != (ssize_t)len) {
    int err = errno;
    close(fd);
    return cowvol_throw_errno(env, err, "pwrite");
  }
  return int_value(env, fd);
}
