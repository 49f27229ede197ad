{
  "targets": [
    {
      "target_name": "cowvol_native",
      "sources": ["src/addon.c", "src/fileops.c"],
      "cflags": ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Werror"],
      "defines": ["_GNU_SOURCE", "NAPI_VERSION=8"]
    }
  ]
}
