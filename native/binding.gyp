{
  "targets": [
    {
      "target_name": "cowvol_native",
      "sources": ["src/addon.c", "src/fileops.c", "src/fuse_session.c", "src/fs_ops.c", "src/chunk_table.c", "src/handover.c", "src/fd_passing.c", "src/keeper.c", "src/journal.c", "src/volume_stats.c", "src/spawn.c", "src/written.c", "src/fs_workers.c", "src/no_caps.c", "src/attr_cache.c", "src/flush_marks.c", "src/kill_priv.c", "src/background.c", "src/kernel_times.c", "src/name_filter.c"],
      "cflags": ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Werror", "<!@(pkg-config --cflags fuse3)"],
      "libraries": ["<!@(pkg-config --libs fuse3)"],
      "defines": ["_GNU_SOURCE", "NAPI_VERSION=8"]
    }
  ]
}
