{
  "targets": [
    {
      "target_name": "cowfs_fuse",
      "sources": ["cowfs_fuse.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "<!@(pkg-config --cflags fuse3)"],
      "libraries": ["<!@(pkg-config --libs fuse3)"]
    }
  ]
}
