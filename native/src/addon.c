/*
 * Module entry: registers every native function under one object. Each group
 * of functions lives in its own file; this one only wires them up.
 */
#include <node_api.h>

#include "fileops.h"
#include "fd_passing.h"
#include "fuse_session.h"
#include "journal.h"
#include "keeper.h"
#include "spawn.h"
#include "background.h"

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"punchHole", NULL, fileops_punch_hole, NULL, NULL, NULL, napi_enumerable, NULL},
      {"tryLock", NULL, fileops_try_lock, NULL, NULL, NULL, napi_enumerable, NULL},
      {"loopBackingDevice", NULL, fileops_loop_backing_device, NULL, NULL, NULL, napi_enumerable, NULL},
      {"fuseMount", NULL, fuse_mount, NULL, NULL, NULL, napi_enumerable, NULL},
      {"fuseReply", NULL, fuse_reply, NULL, NULL, NULL, napi_enumerable, NULL},
      {"fuseMap", NULL, fuse_map, NULL, NULL, NULL, napi_enumerable, NULL},
      {"fuseInvalidate", NULL, fuse_invalidate, NULL, NULL, NULL, napi_enumerable, NULL},
      {"fuseHoles", NULL, fuse_holes, NULL, NULL, NULL, napi_enumerable, NULL},
      {"fuseReserve", NULL, fuse_reserve, NULL, NULL, NULL, napi_enumerable, NULL},
      {"fuseTaken", NULL, fuse_taken, NULL, NULL, NULL, napi_enumerable, NULL},
      {"fuseCommitNeeded", NULL, fuse_commit_needed, NULL, NULL, NULL, napi_enumerable, NULL},
      {"fuseGenerations", NULL, fuse_generations, NULL, NULL, NULL, napi_enumerable, NULL},
      {"fuseWritten", NULL, fuse_written, NULL, NULL, NULL, napi_enumerable, NULL},
      {"fuseKernelTimes", NULL, fuse_kernel_times, NULL, NULL, NULL, napi_enumerable, NULL},
      {"fuseClock", NULL, fuse_clock, NULL, NULL, NULL, napi_enumerable, NULL},
      {"fuseStats", NULL, fuse_stats, NULL, NULL, NULL, napi_enumerable, NULL},
      {"fuseFollowNames", NULL, fuse_follow_names, NULL, NULL, NULL, napi_enumerable, NULL},
      {"fuseUnmount", NULL, fuse_unmount, NULL, NULL, NULL, napi_enumerable, NULL},
      {"fuseDestroy", NULL, fuse_destroy, NULL, NULL, NULL, napi_enumerable, NULL},
      {"fuseDetach", NULL, fuse_detach, NULL, NULL, NULL, napi_enumerable, NULL},
      {"fuseHandover", NULL, fuse_handover, NULL, NULL, NULL, napi_enumerable, NULL},
      {"unixListen", NULL, fdp_js_listen, NULL, NULL, NULL, napi_enumerable, NULL},
      {"unixConnect", NULL, fdp_js_connect, NULL, NULL, NULL, napi_enumerable, NULL},
      {"unixSend", NULL, fdp_js_send, NULL, NULL, NULL, napi_enumerable, NULL},
      {"unixReceive", NULL, fdp_js_receive, NULL, NULL, NULL, napi_enumerable, NULL},
      {"keeperRun", NULL, keeper_js_run, NULL, NULL, NULL, napi_enumerable, NULL},
      {"sdNotify", NULL, fdp_js_notify, NULL, NULL, NULL, napi_enumerable, NULL},
      {"unixDatagramBind", NULL, fdp_js_datagram_bind, NULL, NULL, NULL, napi_enumerable, NULL},
      {"memfdWith", NULL, fdp_js_memfd_with, NULL, NULL, NULL, napi_enumerable, NULL},
      {"fuseJournal", NULL, fuse_journal, NULL, NULL, NULL, napi_enumerable, NULL},
      {"fuseJournalAppend", NULL, fuse_journal_append, NULL, NULL, NULL, napi_enumerable, NULL},
      {"fuseJournalItems", NULL, fuse_journal_items, NULL, NULL, NULL, napi_enumerable, NULL},
      {"fuseJournalCommit", NULL, fuse_journal_commit, NULL, NULL, NULL, napi_enumerable, NULL},
      {"fuseCountVolumes", NULL, fuse_count_volumes, NULL, NULL, NULL, napi_enumerable, NULL},
      {"fuseVolumeStats", NULL, fuse_volume_stats, NULL, NULL, NULL, napi_enumerable, NULL},
      {"fuseLatency", NULL, fuse_latency, NULL, NULL, NULL, napi_enumerable, NULL},
      {"fuseForgetVolume", NULL, fuse_forget_volume, NULL, NULL, NULL, napi_enumerable, NULL},
      {"spawnTool", NULL, spawn_tool, NULL, NULL, NULL, napi_enumerable, NULL},
      {"syncFilesystem", NULL, background_syncfs, NULL, NULL, NULL, napi_enumerable, NULL},
      {"punchHoleAsync", NULL, background_punch, NULL, NULL, NULL, napi_enumerable, NULL},
      {"punchWait", NULL, background_punch_wait, NULL, NULL, NULL, napi_enumerable, NULL},
      {"journalRead", NULL, journal_js_read, NULL, NULL, NULL, napi_enumerable, NULL},
      {"journalCreate", NULL, journal_js_create, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
