/*
 * Runs a node tool (losetup, mkfs, mount...) with posix_spawn, off the event
 * loop, and hands back its exit status and output.
 *
 * Why not child_process: libuv starts children with fork(), which copies the
 * daemon's page tables; with the daemon's memory (chunk table, journal, page
 * cache) that measured 19 ms per tool on this machine against 4 ms from a
 * small process, and a CSI stage runs three tools. glibc's posix_spawn
 * starts the child with CLONE_VM | CLONE_VFORK: nothing is copied.
 *
 * The child gets default signal dispositions and an empty signal mask (Node
 * ignores SIGPIPE, and an ignored signal stays ignored across exec), stdin
 * from /dev/null, and stdout and stderr on pipes. A thread of its own reads
 * them until both close and reaps the tool: not one of libuv's pool, whose
 * four threads also run the pool's fdatasyncs, which a tool writing to our
 * FUSE mount (mkfs's fsync) waits for. The caller bounds how many tools run
 * at once (src/host/run.ts). Output past OUTPUT_MAX is dropped (the tool
 * still runs to its end). A tool still running after its timeout is killed
 * (SIGKILL) and reported with status -1.
 *
 * spawnTool(argv: string[], timeoutMs: number) -> Promise<[status, stdout, stderr]>
 * status: the exit code, 128 + the signal that ended it, or -1 on timeout;
 * the promise is rejected (with the errno) only when the tool could not be
 * started at all (ENOENT: not on PATH).
 */
#include "spawn.h"
#include "fileops.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define ARGS_MAX 64
#define OUTPUT_MAX (16u << 20)

typedef struct {
  char *data;
  size_t len;
} output;

typedef struct {
  napi_threadsafe_function done;
  napi_deferred deferred;
  char *argv[ARGS_MAX + 1];
  int timeout_ms;
  int spawn_errno;
  int status;
  output out, err;
} job;

static void append(output *o, const char *buf, size_t n) {
  if (o->len + n > OUTPUT_MAX) n = OUTPUT_MAX - o->len;
  if (n == 0) return;
  char *bigger = realloc(o->data, o->len + n + 1);
  if (!bigger) return;
  memcpy(bigger + o->len, buf, n);
  o->data = bigger;
  o->len += n;
  o->data[o->len] = 0;
}

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Reads both pipes until they close or the deadline passes; 1 when it passed. */
static int drain(job *j, int fds[2], long long deadline) {
  struct pollfd p[2] = {{.fd = fds[0], .events = POLLIN}, {.fd = fds[1], .events = POLLIN}};
  output *sinks[2] = {&j->out, &j->err};
  int open = 2;
  char buf[65536];
  while (open > 0) {
    long long left = deadline - now_ms();
    if (left <= 0) return 1;
    int rc = poll(p, 2, (int)(left > 1000 ? 1000 : left));
    if (rc < 0 && errno != EINTR) return 0;
    for (int i = 0; rc > 0 && i < 2; i++) {
      if (p[i].fd < 0 || !(p[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      ssize_t n = read(p[i].fd, buf, sizeof(buf));
      if (n > 0) {
        append(sinks[i], buf, (size_t)n);
      } else if (n == 0 || errno != EINTR) {
        close(p[i].fd);
        p[i].fd = -1;
        open--;
      }
    }
  }
  return 0;
}

static int start(job *j, pid_t *pid, int out[2], int err[2]) {
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  posix_spawn_file_actions_adddup2(&fa, err[1], 2);
  posix_spawnattr_init(&attr);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  int rc = posix_spawnp(pid, j->argv[0], &fa, &attr, j->argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  return rc;
}

static void execute(job *j) {
  int out[2], err[2];
  if (pipe2(out, O_CLOEXEC) != 0) {
    j->spawn_errno = errno;
    return;
  }
  if (pipe2(err, O_CLOEXEC) != 0) {
    j->spawn_errno = errno;
    close(out[0]);
    close(out[1]);
    return;
  }
  pid_t pid;
  j->spawn_errno = start(j, &pid, out, err);
  close(out[1]);
  close(err[1]);
  if (j->spawn_errno != 0) {
    close(out[0]);
    close(err[0]);
    return;
  }
  int fds[2] = {out[0], err[0]};
  int late = drain(j, fds, now_ms() + j->timeout_ms);
  if (late) {
    kill(pid, SIGKILL);
    if (fds[0] >= 0) close(fds[0]);
    if (fds[1] >= 0) close(fds[1]);
  }
  int ws = 0;
  while (waitpid(pid, &ws, 0) < 0 && errno == EINTR) {
  }
  if (late) j->status = -1;
  else if (WIFEXITED(ws)) j->status = WEXITSTATUS(ws);
  else j->status = 128 + (WIFSIGNALED(ws) ? WTERMSIG(ws) : 0);
}

static void free_job(job *j) {
  for (int i = 0; j->argv[i]; i++) free(j->argv[i]);
  free(j->out.data);
  free(j->err.data);
  free(j);
}

/* On the event loop, once the tool's thread is done with it. */
static void complete(napi_env env, napi_value fn, void *context, void *data) {
  (void)fn;
  (void)context;
  job *j = data;
  if (env == NULL) { /* torn down first: nobody waits for the answer */
    free_job(j);
    return;
  }
  if (j->spawn_errno != 0) {
    napi_reject_deferred(env, j->deferred, cowvol_errno_error(env, j->spawn_errno, "posix_spawn"));
  } else {
    napi_value arr, st, out, err;
    napi_create_array_with_length(env, 3, &arr);
    napi_create_int32(env, j->status, &st);
    napi_create_string_utf8(env, j->out.data ? j->out.data : "", j->out.len, &out);
    napi_create_string_utf8(env, j->err.data ? j->err.data : "", j->err.len, &err);
    napi_set_element(env, arr, 0, st);
    napi_set_element(env, arr, 1, out);
    napi_set_element(env, arr, 2, err);
    napi_resolve_deferred(env, j->deferred, arr);
  }
  free_job(j);
}

static void *run_job(void *data) {
  job *j = data;
  execute(j);
  napi_threadsafe_function done = j->done;
  if (napi_call_threadsafe_function(done, j, napi_tsfn_blocking) != napi_ok) free_job(j);
  napi_release_threadsafe_function(done, napi_tsfn_release);
  return NULL;
}

/* Copies argv (strings) into the job; -1 with a JS error thrown on bad input. */
static int take_argv(napi_env env, napi_value list, job *j) {
  uint32_t n = 0;
  bool is_array = false;
  napi_is_array(env, list, &is_array);
  if (is_array) napi_get_array_length(env, list, &n);
  if (!is_array || n == 0 || n > ARGS_MAX) {
    cowvol_throw_code(env, "EINVAL", "spawnTool: argv must be 1 to 64 strings");
    return -1;
  }
  for (uint32_t i = 0; i < n; i++) {
    napi_value v;
    size_t len = 0;
    napi_get_element(env, list, i, &v);
    if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok || !(j->argv[i] = malloc(len + 1))) {
      cowvol_throw_code(env, "EINVAL", "spawnTool: argv must be strings");
      return -1;
    }
    napi_get_value_string_utf8(env, v, j->argv[i], len + 1, &len);
  }
  return 0;
}

napi_value spawn_tool(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  job *j = calloc(1, sizeof(job));
  if (!j) return cowvol_throw_errno(env, ENOMEM, "spawnTool");
  if (argc < 2 || take_argv(env, argv[0], j) != 0) {
    if (argc < 2) cowvol_throw_code(env, "EINVAL", "spawnTool: argv and timeout are required");
    free_job(j);
    return NULL;
  }
  double timeout = 0;
  napi_get_value_double(env, argv[1], &timeout);
  j->timeout_ms = timeout > 0 && timeout < 86400000 ? (int)timeout : 120000;
  napi_value promise, name;
  napi_create_promise(env, &j->deferred, &promise);
  napi_create_string_utf8(env, "cowvol-spawn", NAPI_AUTO_LENGTH, &name);
  napi_create_threadsafe_function(env, NULL, NULL, name, 0, 1, NULL, NULL, NULL, complete, &j->done);
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&attr, 256 * 1024);
  pthread_t thread;
  int rc = pthread_create(&thread, &attr, run_job, j);
  pthread_attr_destroy(&attr);
  if (rc != 0) {
    napi_release_threadsafe_function(j->done, napi_tsfn_abort);
    free_job(j);
    return cowvol_throw_errno(env, rc, "pthread_create");
  }
  return promise;
}
