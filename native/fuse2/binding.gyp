{
  "targets": [
    {
      "target_name": "fuse_native",
      "sources": ["fuse-native-utime-omit.c"],
      "include_dirs": [
        "<!(node -p \"require('path').dirname(require.resolve('napi-macros/napi-macros.h'))\")",
        "<!(node -e \"require('fuse-shared-library/include')\")"
      ],
      "cflags": [
        "-O2", "-Wall",
        "-iquote", "<!(node -p \"require('path').dirname(require.resolve('fuse-native/fuse-native.c'))\")"
      ],
      "libraries": ["-l:libfuse.so.2"]
    }
  ]
}
