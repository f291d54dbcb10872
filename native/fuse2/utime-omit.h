/*
 * Included before fuse-native's own source (fuse-native-utime-omit.c), so
 * that its call of fuse_new goes through cowfs_fuse_new below.
 *
 * fuse-native leaves flag_utime_omit_ok unset, and libfuse 2 then drops,
 * answering success, every SETATTR that sets only one of the two times:
 * tar's futimens(fd, {UTIME_OMIT, mtime}) after unpacking a file, touch -m.
 * With the flag libfuse passes them on, UTIME_OMIT and UTIME_NOW in place
 * of a time. fuse-native hands JS milliseconds, where both read as 1073 ms:
 * UTIME_NOW is turned into the time itself here, so 1073 ms means "leave it".
 */
#define FUSE_USE_VERSION 29
#include <fuse.h>
#include <sys/stat.h>
#include <time.h>

static int (*cowfs_js_utimens)(const char *path, const struct timespec tv[2]);

static int cowfs_utimens(const char *path, const struct timespec tv[2]) {
  struct timespec t[2] = { tv[0], tv[1] };
  for (int i = 0; i < 2; i++) {
    if (t[i].tv_nsec == UTIME_NOW) clock_gettime(CLOCK_REALTIME, &t[i]);
  }
  return cowfs_js_utimens(path, t);
}

static struct fuse *cowfs_fuse_new(struct fuse_chan *ch, struct fuse_args *args,
                                   const struct fuse_operations *op, size_t op_size, void *user_data) {
  struct fuse_operations ops = *op;
  ops.flag_utime_omit_ok = 1;
  if (ops.utimens) {
    cowfs_js_utimens = ops.utimens;
    ops.utimens = cowfs_utimens;
  }
  return fuse_new(ch, args, &ops, op_size, user_data);
}

#define fuse_new cowfs_fuse_new
