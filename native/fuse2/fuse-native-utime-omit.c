/*
 * fuse-native's addon (the libfuse 2 adapter), built from fuse-native's own
 * source with one change: libfuse is told to pass on SETATTRs that set only
 * one of the two times (utime-omit.h). src/fuse/fuse-native-adapter.ts makes
 * fuse-native load this build instead of its prebuilt one.
 */
#include "utime-omit.h"
#include "fuse-native.c"
