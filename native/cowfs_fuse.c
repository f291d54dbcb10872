/*
 * cowfs_fuse: a Node addon (plain N-API, C) over libfuse 3's low-level API.
 *
 * One FUSE session per mount. Its loop runs on a native thread of its own
 * (serve: a non-blocking /dev/fuse, read again for LOOP_SPIN_US after each
 * request before sleeping in poll). Each request is copied into a message
 * (names and write data included: libfuse reuses its buffer for the next
 * request) and queued for JavaScript, without waiting; a thread-safe
 * function call wakes JavaScript only when the queue was not being drained
 * already, and JavaScript drains it in batches (drain). JavaScript answers
 * later through the reply functions below (libfuse's fuse_reply_* may be
 * called from any thread). So the loop thread never blocks on JavaScript,
 * and JavaScript never blocks on the kernel.
 *
 * Some requests never reach JavaScript: GETATTR of files and directories
 * whose attributes JavaScript gave us (cacheAttr), a SETATTR that changes
 * nothing of them, a LOOKUP of a name missing from a directory whose every
 * name we know (knowNames), a WRITE or a SETATTR of the times of a file
 * whose scratch file JavaScript lent us (writeTo), and OPEN, OPENDIR, FORGET and RELEASE of
 * handle 0.
 *
 * Kernel notifications (invalidating a cached inode or name) are queued to
 * a second native thread per session: the kernel may need the inode lock
 * of a request that is still waiting for JavaScript's answer, so a
 * notification written from the JavaScript thread could deadlock.
 *
 * Nothing here holds a file descriptor per inode: node ids are numbers the
 * JavaScript side hands out and takes back at FORGET (its handles, which
 * may hold descriptors, are kept to one budget per daemon).
 */
#define FUSE_USE_VERSION 34
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <malloc.h>
#include <node_api.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
/* Debian's libxxhash-dev, header only: the store names content by its xxhash64 (src/store/hash.ts). */
#define XXH_INLINE_ALL
#include <xxhash.h>

#ifndef PR_SET_IO_FLUSHER
#define PR_SET_IO_FLUSHER 57
#endif

/* Bumped whenever the request numbers or the calls change: src/fuse/libfuse3-binding.ts checks it. */
#define COWFS_FUSE_ABI 7

/* Request kinds, as JavaScript sees them (src/fuse/libfuse3-binding.ts mirrors these). */
enum {
  OP_INIT = 0, OP_EXIT, OP_LOOKUP, OP_FORGET, OP_GETATTR, OP_SETATTR, OP_READLINK, OP_MKDIR,
  OP_UNLINK, OP_RMDIR, OP_SYMLINK, OP_RENAME, OP_READ, OP_WRITE, OP_RELEASE, OP_FSYNC,
  OP_READDIR, OP_STATFS, OP_CREATE, OP_READDIRPLUS
};

/* Session features, chosen by JavaScript (bit flags of mount()). */
enum {
  F_WRITEBACK = 1, F_READDIRPLUS = 2, F_DEBUG = 8
};

#define NUMS 8

typedef struct msg {
  struct msg *next;
  int op;
  fuse_req_t req;
  double ino;
  double n[NUMS];
  char *name1;
  char *name2;
  char *data;
  size_t datalen;
  /* A read buffer of libfuse's that `data` points into, taken over (ll_write); else NULL. */
  void *block;
} msg_t;

typedef struct note {
  struct note *next;
  fuse_ino_t ino;
  char *name; /* NULL: invalidate the inode; else the entry `name` in directory `ino`. */
} note_t;

/* Where a session stands with JavaScript (session_t.state, under qmu). */
enum { IDLE = 0, WOKEN, DRAINING };

#define TARGET_BUCKETS 256

typedef struct session {
  struct fuse_session *se;
  /* Wakes JavaScript (its `wake` callback) when requests start waiting; `dispatch` answers each. */
  napi_threadsafe_function tsfn;
  napi_ref dispatch;
  /* Requests waiting for JavaScript, oldest first, and whether it was told (state); under qmu. */
  pthread_mutex_t qmu;
  msg_t *qhead, *qtail;
  int state;
  pthread_t loop;
  int loop_started;
  int features;
  unsigned max_write;
  /* The notification thread and its queue. */
  pthread_t notifier;
  int notifier_started;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  note_t *head, *tail;
  /* Notifications ever queued, and ever written to the kernel (notes); under mu. */
  double notes_queued, notes_written;
  int stopping;
  int closed;
  /* The loop thread's read buffer and how much of it the request being processed fills (serve, ll_write). */
  char *rbuf;
  size_t rlen;
  /* Attributes of files and directories JavaScript told us (cacheAttr), to answer GETATTR here; under amu. */
  pthread_mutex_t amu;
  struct cached_attr *attrs;
  size_t acap, aused, alive; /* slots; slots not empty (live or dropped); live */
  /* Directories whose every name is known (knowNames), to answer LOOKUPs of missing names; under amu. */
  struct dir_names **dirs;
  size_t dcap, dcount;
  /* Files whose WRITEs are written here (writeTo), by node id; under wmu. A write in flight is counted in its target (busy). */
  pthread_mutex_t wmu;
  pthread_cond_t wcv;
  struct write_target *targets[TARGET_BUCKETS];
  /* WRITEs written here, and the largest; under wmu. */
  double c_writes, c_max_write;
} session_t;

/* Attributes travel as (ino, mode, nlink, uid, gid, size, atimeMs, mtimeMs, ctimeMs). */
#define ATTR_ARGS 9

static void set_ts(struct timespec *t, double ms) {
  double s = ms / 1e3;
  t->tv_sec = (time_t)s;
  long ns = (long)((ms - (double)t->tv_sec * 1e3) * 1e6);
  if (ns < 0) ns = 0;
  if (ns > 999999999) ns = 999999999;
  t->tv_nsec = ns;
}

static void stat_of(const double *a, struct stat *st) {
  memset(st, 0, sizeof(*st));
  st->st_ino = (ino_t)a[0];
  st->st_mode = (mode_t)a[1];
  st->st_nlink = (nlink_t)a[2];
  st->st_uid = (uid_t)a[3];
  st->st_gid = (gid_t)a[4];
  st->st_size = (off_t)a[5];
  st->st_blksize = 4096;
  st->st_blocks = (st->st_size + 511) / 512;
  set_ts(&st->st_atim, a[6]);
  set_ts(&st->st_mtim, a[7]);
  set_ts(&st->st_ctim, a[8]);
}

/* ------------------------------------------------------- attribute cache */

/*
 * GETATTR of a file or directory whose attributes JavaScript told us
 * (cacheAttr) is answered here, and a SETATTR that changes nothing of them.
 * JavaScript drops an entry (dropAttr) before anything that may change those
 * attributes is answered: WRITE, SETATTR, a name made or removed in a
 * directory (cached again before the reply), unlink, rename, an
 * invalidation, FORGET. An open-addressing table
 * keyed by node id (0: empty slot, DROPPED: a removed entry).
 */
typedef struct cached_attr {
  fuse_ino_t ino;
  double timeout;
  double a[ATTR_ARGS];
} cached_attr_t;

#define DROPPED ((fuse_ino_t)-1)

static size_t attr_hash(fuse_ino_t ino, size_t cap) { return (size_t)(ino * 0x9E3779B97F4A7C15ull) & (cap - 1); }

/* The entry of `ino`, or NULL (amu held). Some slot is always empty, so the probe ends. */
static cached_attr_t *attr_find(session_t *s, fuse_ino_t ino) {
  if (!s->acap) return NULL;
  for (size_t i = attr_hash(ino, s->acap);; i = (i + 1) & (s->acap - 1)) {
    if (s->attrs[i].ino == ino) return &s->attrs[i];
    if (s->attrs[i].ino == 0) return NULL;
  }
}

/* A slot for an `ino` not in the table (amu held); NULL without memory. */
static cached_attr_t *attr_new(session_t *s, fuse_ino_t ino) {
  if ((s->aused + 1) * 4 > s->acap * 3) {
    size_t cap = 1024;
    while ((s->alive + 1) * 2 > cap) cap *= 2;
    cached_attr_t *old = s->attrs, *t = calloc(cap, sizeof(cached_attr_t));
    if (!t) return NULL;
    size_t oldcap = s->acap;
    s->attrs = t;
    s->acap = cap;
    s->aused = s->alive = 0;
    for (size_t i = 0; i < oldcap; i++) {
      if (old[i].ino && old[i].ino != DROPPED) *attr_new(s, old[i].ino) = old[i];
    }
    free(old);
  }
  size_t i = attr_hash(ino, s->acap);
  while (s->attrs[i].ino && s->attrs[i].ino != DROPPED) i = (i + 1) & (s->acap - 1);
  if (!s->attrs[i].ino) s->aused++;
  s->alive++;
  s->attrs[i].ino = ino;
  return &s->attrs[i];
}

static void attr_drop(session_t *s, fuse_ino_t ino) {
  pthread_mutex_lock(&s->amu);
  cached_attr_t *e = attr_find(s, ino);
  if (e) {
    e->ino = DROPPED;
    s->alive--;
  }
  pthread_mutex_unlock(&s->amu);
}

/* ------------------------------------------------------ writes served here */

/*
 * Once JavaScript holds a node's scratch file open for writing (a file
 * CREATE made, or one its first WRITE copied up), it lends us the
 * descriptor (writeTo) and the node's WRITEs are written here, on the loop
 * thread, with no round trip to JavaScript: a 1 GiB dd is 1,024 of them, an
 * unpacked file one or more. JavaScript then reads the file's size and
 * mtime from the file itself and hashes it at ingest. Attributes cached for
 * the node follow the file (fstat after each write, and at cacheAttr).
 * stopWriting takes the descriptor back before JavaScript closes it,
 * waiting for a write in flight; the lock is not held across the pwrite, so
 * a write held up by the disk never holds up the JavaScript thread, only
 * that node's release. JavaScript lends only without the writeback cache:
 * the kernel then sends a node's WRITEs one at a time, under its inode lock,
 * so none queued for JavaScript can be overtaken.
 */
#define WRITEBACK_STEP (16 << 20)

typedef struct write_target {
  struct write_target *next;
  fuse_ino_t ino;
  int fd;
  int busy;    /* a write in flight (the loop thread is the only writer) */
  double changes; /* bytes written here plus times set here, ever: moves with every change */
  /* Bytes 0..front were written in order; disk writes were started up to `started` (as src/store/sequential-write.ts). */
  off_t front, started;
  /* The xxhash64 of bytes 0..front, while every byte came in order into a file lent empty; only the loop thread touches it while lent. */
  int hashing;
  XXH64_state_t hash;
} write_target_t;

static double ms_of(const struct timespec *t) { return (double)t->tv_sec * 1e3 + (double)t->tv_nsec / 1e6; }

/* Where `ino`'s target is, or would be linked (wmu held). */
static write_target_t **target_slot(session_t *s, fuse_ino_t ino) {
  write_target_t **p = &s->targets[(size_t)((ino * 0x9E3779B97F4A7C15ull) >> 56) & (TARGET_BUCKETS - 1)];
  while (*p && (*p)->ino != ino) p = &(*p)->next;
  return p;
}

/* The mode bits a scratch file carries for its file (MODE_ON_FILE in src/overlay/open-file.ts). */
#define MODE_ON_FILE 0155

/*
 * Size, times and MODE_ON_FILE's bits of cached attributes from the file itself, as JavaScript
 * reads them (OpenFile.fromFile): the mtime as all three, in whole microseconds.
 */
static void attr_from_file(double *a, int fd) {
  struct stat st;
  if (fstat(fd, &st) != 0) return;
  a[1] = (double)(((mode_t)a[1] & ~(mode_t)MODE_ON_FILE) | (st.st_mode & MODE_ON_FILE));
  a[5] = (double)st.st_size;
  a[6] = a[7] = a[8] = (double)st.st_mtim.tv_sec * 1e3 + (double)(st.st_mtim.tv_nsec / 1000) / 1e3;
}

/*
 * Where an O_APPEND WRITE goes (write_here): the file's end. Without the
 * writeback cache the kernel places an O_APPEND write at the size its inode
 * believes, never asking ours, and after a rebase or an undo under a
 * process holding the file the path has a second node (a second kernel
 * inode) for the same file: each placed its writer's lines at its own size,
 * over the other's last lines or past the end with NULs between. As
 * O_APPEND does on a disk, the line goes where the file ends now; the
 * caller then has the kernel drop that inode's size and pages, which hold
 * the line where the kernel put it.
 */
static off_t append_at(int fd, off_t off) {
  struct stat st;
  return fstat(fd, &st) == 0 ? st.st_size : off;
}

static void queue_note(session_t *s, fuse_ino_t ino, char *name);

/* A WRITE to a lent file, written here (an O_APPEND one at the file's end); 0 if `ino` is not lent. */
static int write_here(session_t *s, fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off, int append) {
  pthread_mutex_lock(&s->wmu);
  write_target_t *t = *target_slot(s, ino);
  if (t) t->busy = 1;
  pthread_mutex_unlock(&s->wmu);
  if (!t) return 0;
  /* Only the loop thread writes a lent file (JavaScript takes it back before it writes it): the end read here stays the end. */
  off_t at = append ? append_at(t->fd, off) : off;
  ssize_t n = pwrite(t->fd, buf, size, at);
  int err = n < 0 ? errno : 0;
  if (n > 0 && at == t->front) {
    if (t->hashing) XXH64_update(&t->hash, buf, (size_t)n);
    t->front += n;
  } else if (n > 0) {
    t->hashing = 0;
  }
  if (t->front - t->started >= WRITEBACK_STEP) {
    off_t end = t->front - t->front % WRITEBACK_STEP;
    /* Only a head start for the final fsync (errors are fsync's to report); it may wait for the disk, so unlocked. */
    sync_file_range(t->fd, t->started, end - t->started, SYNC_FILE_RANGE_WRITE);
    t->started = end;
  }
  pthread_mutex_lock(&s->wmu);
  if (n > 0) {
    t->changes += (double)n;
    s->c_writes++;
    if ((double)size > s->c_max_write) s->c_max_write = (double)size;
    pthread_mutex_lock(&s->amu);
    cached_attr_t *e = attr_find(s, ino);
    if (e) attr_from_file(e->a, t->fd);
    pthread_mutex_unlock(&s->amu);
  }
  t->busy = 0;
  pthread_cond_broadcast(&s->wcv);
  pthread_mutex_unlock(&s->wmu);
  /* Once the cached attributes hold the new size; from the notifier thread: the kernel drops the page this WRITE holds locked. */
  if (n > 0 && at != off) queue_note(s, ino, NULL);
  if (err) fuse_reply_err(req, err);
  else fuse_reply_write(req, (size_t)n);
  return 1;
}

/* What a target's writes came to, when it is taken back. */
typedef struct target_end {
  double changes;
  off_t front;
  int hashed;
  XXH64_hash_t hash;
} target_end_t;

/*
 * A SETATTR of a lent file with cached attributes that the file itself
 * carries for the tree (OpenFile.refresh reads them from it): its mtime
 * (tar's futimens after it wrote the file), or a mode that differs only in
 * MODE_ON_FILE's bits (tar's fchmod of the file it made 0600). Set on the
 * file and answered from the cache; 0 to leave it to JavaScript. The tree
 * keeps no atime (a file's atime is its mtime there), so only the mtime is set.
 */
static int meta_here(session_t *s, fuse_req_t req, fuse_ino_t ino, const struct stat *attr, int to_set) {
  const int times = FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_ATIME_NOW | FUSE_SET_ATTR_MTIME_NOW | FUSE_SET_ATTR_CTIME;
  const int set_time = (to_set & times & ~FUSE_SET_ATTR_CTIME) != 0, set_mode = (to_set & FUSE_SET_ATTR_MODE) != 0;
  if ((to_set & ~(times | FUSE_SET_ATTR_MODE)) || !(set_time || set_mode)) return 0;
  if (set_time && !(to_set & (FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_MTIME_NOW))) return 0;
  struct timespec ts[2] = { { .tv_nsec = UTIME_OMIT }, { .tv_nsec = UTIME_OMIT } };
  if (to_set & FUSE_SET_ATTR_MTIME_NOW) ts[1].tv_nsec = UTIME_NOW;
  else ts[1] = attr->st_mtim;
  cached_attr_t hit = { 0 };
  pthread_mutex_lock(&s->wmu);
  write_target_t *t = *target_slot(s, ino);
  if (t) {
    pthread_mutex_lock(&s->amu);
    cached_attr_t *e = attr_find(s, ino);
    int ok = e != NULL;
    if (ok && set_mode) {
      ok = !((attr->st_mode ^ (mode_t)e->a[1]) & 07777 & ~(mode_t)MODE_ON_FILE)
        && fchmod(t->fd, (attr->st_mode & MODE_ON_FILE) | 0600) == 0;
    }
    if (ok && set_time) ok = futimens(t->fd, ts) == 0;
    if (ok) {
      t->changes += 1;
      attr_from_file(e->a, t->fd);
      hit = *e;
    }
    pthread_mutex_unlock(&s->amu);
  }
  pthread_mutex_unlock(&s->wmu);
  if (!hit.ino) return 0;
  struct stat st;
  stat_of(hit.a, &st);
  fuse_reply_attr(req, &st, hit.timeout);
  return 1;
}

/* Unlinks and frees `ino`'s target once no write is in flight (wmu held); 0 if it had none. */
static int target_remove(session_t *s, fuse_ino_t ino, target_end_t *end) {
  write_target_t **p = target_slot(s, ino), *t = *p;
  if (!t) return 0;
  *p = t->next;
  while (t->busy) pthread_cond_wait(&s->wcv, &s->wmu);
  if (end) {
    end->changes = t->changes;
    end->front = t->front;
    end->hashed = t->hashing;
    end->hash = t->hashing ? XXH64_digest(&t->hash) : 0;
  }
  free(t);
  return 1;
}

/* ------------------------------------------------------ names of directories */

/*
 * A directory made through the mount starts empty, and every name made in
 * it afterwards comes through the mount too (CREATE, MKDIR, SYMLINK, RENAME:
 * JavaScript adds each before the tree makes it). So a LOOKUP there of a
 * name not in its set is answered ENOENT here: tar and compilers look up
 * every name before they make it. JavaScript forgets a set (forgetNames)
 * whenever names may come otherwise: a rebase or a workspace change
 * reported in or under it, an operation that failed after the tree made its
 * name, FORGET. The set may hold names that are gone (unlinked): those
 * LOOKUPs go to JavaScript, as without it. A set stops at DIR_NAMES_MAX.
 */
#define DIR_NAMES_MAX 65536

typedef struct dir_names {
  struct dir_names *next; /* in its bucket */
  fuse_ino_t ino;
  double timeout; /* of the "no such name" answers */
  size_t cap, count;
  char **names; /* open addressing; NULL: empty slot */
} dir_names_t;

static size_t name_hash(const char *name) {
  size_t h = 1469598103934665603ull;
  for (const unsigned char *p = (const unsigned char *)name; *p; p++) h = (h ^ *p) * 1099511628211ull;
  return h;
}

/* The slot of `name` in `d`: where it is, or the empty one where it belongs. */
static char **name_slot(dir_names_t *d, const char *name) {
  for (size_t i = name_hash(name) & (d->cap - 1);; i = (i + 1) & (d->cap - 1)) {
    if (!d->names[i] || strcmp(d->names[i], name) == 0) return &d->names[i];
  }
}

static dir_names_t **dir_bucket(session_t *s, fuse_ino_t ino) {
  return &s->dirs[(size_t)(ino * 0x9E3779B97F4A7C15ull) & (s->dcap - 1)];
}

/* The set of directory `ino`, or NULL (amu held). */
static dir_names_t *dir_find(session_t *s, fuse_ino_t ino) {
  if (!s->dcap) return NULL;
  for (dir_names_t *d = *dir_bucket(s, ino); d; d = d->next) if (d->ino == ino) return d;
  return NULL;
}

static void dir_free(dir_names_t *d) {
  for (size_t i = 0; i < d->cap; i++) free(d->names[i]);
  free(d->names);
  free(d);
}

/* Forgets the set of `ino`, if any (amu held): its LOOKUPs go to JavaScript again. */
static void dir_forget(session_t *s, fuse_ino_t ino) {
  if (!s->dcap) return;
  for (dir_names_t **p = dir_bucket(s, ino); *p; p = &(*p)->next) {
    if ((*p)->ino == ino) {
      dir_names_t *d = *p;
      *p = d->next;
      dir_free(d);
      s->dcount--;
      return;
    }
  }
}

/* Starts the (empty) set of `ino` (amu held); without memory, none. */
static void dir_know(session_t *s, fuse_ino_t ino, double timeout) {
  dir_forget(s, ino);
  if (s->dcount + 1 > s->dcap) {
    size_t cap = s->dcap ? s->dcap * 2 : 256;
    dir_names_t **t = calloc(cap, sizeof(*t));
    if (!t) return;
    dir_names_t **old = s->dirs;
    size_t oldcap = s->dcap;
    s->dirs = t;
    s->dcap = cap;
    for (size_t i = 0; i < oldcap; i++) {
      for (dir_names_t *d = old[i], *next; d; d = next) {
        next = d->next;
        dir_names_t **b = dir_bucket(s, d->ino);
        d->next = *b;
        *b = d;
      }
    }
    free(old);
  }
  dir_names_t *d = calloc(1, sizeof(*d));
  if (d) d->names = calloc(16, sizeof(char *));
  if (!d || !d->names) { free(d); return; }
  d->ino = ino;
  d->timeout = timeout;
  d->cap = 16;
  dir_names_t **b = dir_bucket(s, ino);
  d->next = *b;
  *b = d;
  s->dcount++;
}

/* Adds `name` to the set of `ino`, if it has one (amu held); a set that cannot grow is forgotten. */
static void dir_add(session_t *s, fuse_ino_t ino, const char *name) {
  dir_names_t *d = dir_find(s, ino);
  if (!d) return;
  char **slot = name_slot(d, name);
  if (*slot) return;
  if (d->count + 1 > DIR_NAMES_MAX) { dir_forget(s, ino); return; }
  if ((d->count + 1) * 4 > d->cap * 3) {
    char **t = calloc(d->cap * 2, sizeof(char *));
    if (!t) { dir_forget(s, ino); return; }
    char **old = d->names;
    size_t oldcap = d->cap;
    d->names = t;
    d->cap *= 2;
    for (size_t i = 0; i < oldcap; i++) if (old[i]) *name_slot(d, old[i]) = old[i];
    free(old);
    slot = name_slot(d, name);
  }
  if (!(*slot = strdup(name))) { dir_forget(s, ino); return; }
  d->count++;
}

static void dirs_free(session_t *s) {
  for (size_t i = 0; i < s->dcap; i++) {
    for (dir_names_t *d = s->dirs[i], *next; d; d = next) { next = d->next; dir_free(d); }
  }
  free(s->dirs);
  s->dirs = NULL;
  s->dcap = s->dcount = 0;
}

/* ------------------------------------------------------------ requests */

/* Write data at least this long reaches JavaScript without a copy (ll_write, data_buffer); shorter is cheaper to copy. */
#define EXTERNAL_MIN (64 << 10)

static msg_t *msg_new(int op, fuse_req_t req, fuse_ino_t ino, const char *name1, const char *name2,
                      const char *data, size_t datalen) {
  size_t l1 = name1 ? strlen(name1) + 1 : 0;
  size_t l2 = name2 ? strlen(name2) + 1 : 0;
  msg_t *m = malloc(sizeof(msg_t) + l1 + l2 + datalen);
  if (!m) return NULL;
  memset(m, 0, sizeof(msg_t));
  char *p = (char *)(m + 1);
  m->op = op;
  m->req = req;
  m->ino = (double)ino;
  if (name1) { memcpy(p, name1, l1); m->name1 = p; p += l1; }
  if (name2) { memcpy(p, name2, l2); m->name2 = p; p += l2; }
  if (data) { memcpy(p, data, datalen); m->data = p; m->datalen = datalen; }
  return m;
}

static void msg_free(msg_t *m) {
  free(m->block);
  free(m);
}

/* Sessions woken whose requests JavaScript has not started draining: a drain's spin gives way to them. */
static int woken_sessions;

/*
 * Queues a request for JavaScript. Only a session that JavaScript is not
 * already draining (or about to) costs a wake-up: one thread-safe function
 * call per batch, not per request.
 */
static void post(session_t *s, msg_t *m) {
  if (!m) return;
  pthread_mutex_lock(&s->qmu);
  if (s->qtail) s->qtail->next = m;
  else s->qhead = m;
  s->qtail = m;
  int wake = s->state == IDLE;
  if (wake) {
    s->state = WOKEN;
    __atomic_add_fetch(&woken_sessions, 1, __ATOMIC_RELAXED);
  }
  pthread_mutex_unlock(&s->qmu);
  /* Fails only once the function is released (at close): close fails what is still queued. */
  if (wake) napi_call_threadsafe_function(s->tsfn, NULL, napi_tsfn_nonblocking);
}

/* The oldest queued request, or NULL; an empty queue leaves DRAINING for IDLE when `done`. */
static msg_t *take(session_t *s, int done) {
  pthread_mutex_lock(&s->qmu);
  msg_t *m = s->qhead;
  if (m) {
    s->qhead = m->next;
    if (!s->qhead) s->qtail = NULL;
  } else if (done) {
    s->state = IDLE;
  }
  pthread_mutex_unlock(&s->qmu);
  return m;
}

/*
 * Answers EIO to every request still queued: none may wait forever once the
 * session is gone. A session woken but never drained no longer counts as
 * waiting (other sessions' spins would give way to it forever).
 */
static void fail_queued(session_t *s) {
  for (msg_t *m; (m = take(s, 0));) {
    if (m->req) fuse_reply_err(m->req, EIO);
    msg_free(m);
  }
  pthread_mutex_lock(&s->qmu);
  if (s->state == WOKEN) __atomic_sub_fetch(&woken_sessions, 1, __ATOMIC_RELAXED);
  s->state = IDLE;
  pthread_mutex_unlock(&s->qmu);
}

static session_t *sess(fuse_req_t req) { return (session_t *)fuse_req_userdata(req); }

/* The caller's ids, for ownership of what it creates. */
static void ctx_ids(fuse_req_t req, msg_t *m, int uid_slot) {
  const struct fuse_ctx *c = fuse_req_ctx(req);
  m->n[uid_slot] = c->uid;
  m->n[uid_slot + 1] = c->gid;
  m->n[uid_slot + 2] = c->umask;
}

/*
 * Names and symlink targets reach JavaScript as strings, and the whole tree
 * (overlay, store, event log) holds them as strings: only valid UTF-8 comes
 * through unchanged. Any other bytes (a lone 0xE9) would turn into U+FFFD,
 * so two names would become one, a file would be made under a name nobody
 * asked for, and the name sets here (which hold what JavaScript gives back)
 * would miss it. Such a name is refused before JavaScript sees it: nothing
 * of that name can exist (LOOKUP, UNLINK, RMDIR, a RENAME's source: ENOENT)
 * nor be made (CREATE, MKDIR, SYMLINK and its target, a RENAME's target:
 * EILSEQ, as filesystems that only hold UTF-8 names answer).
 */
static int utf8_valid(const char *s) {
  for (const unsigned char *p = (const unsigned char *)s; *p;) {
    unsigned c = *p, cp, min;
    int more;
    if (c < 0x80) { p++; continue; }
    if ((c & 0xE0) == 0xC0) { more = 1; cp = c & 0x1F; min = 0x80; }
    else if ((c & 0xF0) == 0xE0) { more = 2; cp = c & 0x0F; min = 0x800; }
    else if ((c & 0xF8) == 0xF0) { more = 3; cp = c & 0x07; min = 0x10000; }
    else return 0;
    for (int i = 1; i <= more; i++) {
      if ((p[i] & 0xC0) != 0x80) return 0; /* the terminating NUL included */
      cp = (cp << 6) | (p[i] & 0x3F);
    }
    /* Overlong forms, UTF-16 surrogates and code points past Unicode's last are not UTF-8 either. */
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    p += more + 1;
  }
  return 1;
}

/* Answers `err` for a name JavaScript could not hold (utf8_valid); 1 if it did. */
static int refused(fuse_req_t req, const char *name, int err) {
  if (utf8_valid(name)) return 0;
  fuse_reply_err(req, err);
  return 1;
}

static msg_t *enomem(fuse_req_t req) {
  fuse_reply_err(req, ENOMEM);
  return NULL;
}

static void ll_init(void *userdata, struct fuse_conn_info *conn) {
  session_t *s = userdata;
  /* The kernel checks flock itself; O_TRUNC comes as a SETATTR of the size (needed: OPEN is never sent). */
  conn->want &= ~(FUSE_CAP_FLOCK_LOCKS | FUSE_CAP_POSIX_LOCKS | FUSE_CAP_ATOMIC_O_TRUNC);
  /* The kernel clears setuid/setgid bits at a write or chown with a SETATTR of the mode (setattr_changes_nothing relies on it). */
  conn->want &= ~FUSE_CAP_HANDLE_KILLPRIV;
  /* READDIRPLUS (with libfuse's default READDIRPLUS_AUTO): a listing brings each entry's node and attributes. */
  if (!(s->features & F_READDIRPLUS)) conn->want &= ~(FUSE_CAP_READDIRPLUS | FUSE_CAP_READDIRPLUS_AUTO);
  if ((s->features & F_WRITEBACK) && (conn->capable & FUSE_CAP_WRITEBACK_CACHE)) conn->want |= FUSE_CAP_WRITEBACK_CACHE;
  else conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
  if (s->max_write) conn->max_write = s->max_write;
  /* JavaScript only waits for it: the mount is up. */
  post(s, msg_new(OP_INIT, NULL, 0, NULL, NULL, NULL, 0));
}

static void ll_lookup(fuse_req_t req, fuse_ino_t parent, const char *name) {
  session_t *s = sess(req);
  if (refused(req, name, ENOENT)) return;
  pthread_mutex_lock(&s->amu);
  dir_names_t *d = dir_find(s, parent);
  int missing = d && !*name_slot(d, name);
  double timeout = d ? d->timeout : 0;
  pthread_mutex_unlock(&s->amu);
  if (missing) {
    /* A cached "no such name", as JavaScript answers one. */
    struct fuse_entry_param e;
    memset(&e, 0, sizeof(e));
    e.entry_timeout = timeout;
    fuse_reply_entry(req, &e);
    return;
  }
  post(s, msg_new(OP_LOOKUP, req, parent, name, NULL, NULL, 0) ?: enomem(req));
}

static void ll_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
  session_t *s = sess(req);
  fuse_reply_none(req);
  msg_t *m = msg_new(OP_FORGET, NULL, ino, NULL, NULL, NULL, 0);
  if (m) { m->n[0] = (double)nlookup; post(s, m); }
}

static void ll_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets) {
  session_t *s = sess(req);
  fuse_reply_none(req);
  for (size_t i = 0; i < count; i++) {
    msg_t *m = msg_new(OP_FORGET, NULL, forgets[i].ino, NULL, NULL, NULL, 0);
    if (m) { m->n[0] = (double)forgets[i].nlookup; post(s, m); }
  }
}

static void ll_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  session_t *s = sess(req);
  cached_attr_t hit = { 0 };
  pthread_mutex_lock(&s->amu);
  cached_attr_t *e = attr_find(s, ino);
  if (e) hit = *e;
  pthread_mutex_unlock(&s->amu);
  if (hit.ino) {
    struct stat st;
    stat_of(hit.a, &st);
    fuse_reply_attr(req, &st, hit.timeout);
    return;
  }
  post(s, msg_new(OP_GETATTR, req, ino, NULL, NULL, NULL, 0) ?: enomem(req));
}

/*
 * A SETATTR of the mode, owner or group they already have (tar chowns
 * every file it unpacks to the owner it was made with): nothing to do. The
 * kernel clears setuid and setgid bits itself (FUSE_CAP_HANDLE_KILLPRIV is
 * off, ll_init): a chown or write that clears them comes with the new mode,
 * which differs. CTIME comes with every SETATTR of a file under the
 * writeback cache; no time is set by a change of nothing.
 */
static int setattr_changes_nothing(const double *a, const struct stat *attr, int to_set) {
  if (to_set & ~(FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID | FUSE_SET_ATTR_CTIME)) return 0;
  if ((to_set & FUSE_SET_ATTR_MODE) && (attr->st_mode & 07777) != ((mode_t)a[1] & 07777)) return 0;
  if ((to_set & FUSE_SET_ATTR_UID) && attr->st_uid != (uid_t)a[3]) return 0;
  if ((to_set & FUSE_SET_ATTR_GID) && attr->st_gid != (gid_t)a[4]) return 0;
  return 1;
}

static void ll_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set, struct fuse_file_info *fi) {
  session_t *s = sess(req);
  cached_attr_t hit = { 0 };
  pthread_mutex_lock(&s->amu);
  cached_attr_t *e = attr_find(s, ino);
  if (e && setattr_changes_nothing(e->a, attr, to_set)) hit = *e;
  pthread_mutex_unlock(&s->amu);
  if (hit.ino) {
    struct stat st;
    stat_of(hit.a, &st);
    fuse_reply_attr(req, &st, hit.timeout);
    return;
  }
  if (meta_here(s, req, ino, attr, to_set)) return;
  msg_t *m = msg_new(OP_SETATTR, req, ino, NULL, NULL, NULL, 0);
  if (!m) { enomem(req); return; }
  /* n[0] unused: JavaScript works by node id (handles are ignored, see ll_open). */
  m->n[1] = to_set;
  m->n[2] = attr->st_mode;
  m->n[3] = attr->st_uid;
  m->n[4] = attr->st_gid;
  m->n[5] = (double)attr->st_size;
  m->n[6] = ms_of(&attr->st_atim);
  m->n[7] = ms_of(&attr->st_mtim);
  post(s, m);
}

static void ll_readlink(fuse_req_t req, fuse_ino_t ino) {
  post(sess(req), msg_new(OP_READLINK, req, ino, NULL, NULL, NULL, 0) ?: enomem(req));
}

static void ll_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode) {
  if (refused(req, name, EILSEQ)) return;
  msg_t *m = msg_new(OP_MKDIR, req, parent, name, NULL, NULL, 0);
  if (!m) { enomem(req); return; }
  m->n[0] = mode;
  ctx_ids(req, m, 1);
  post(sess(req), m);
}

static void ll_unlink(fuse_req_t req, fuse_ino_t parent, const char *name) {
  if (refused(req, name, ENOENT)) return;
  post(sess(req), msg_new(OP_UNLINK, req, parent, name, NULL, NULL, 0) ?: enomem(req));
}

static void ll_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name) {
  if (refused(req, name, ENOENT)) return;
  post(sess(req), msg_new(OP_RMDIR, req, parent, name, NULL, NULL, 0) ?: enomem(req));
}

static void ll_symlink(fuse_req_t req, const char *target, fuse_ino_t parent, const char *name) {
  if (refused(req, name, EILSEQ) || refused(req, target, EILSEQ)) return;
  msg_t *m = msg_new(OP_SYMLINK, req, parent, name, target, NULL, 0);
  if (!m) { enomem(req); return; }
  ctx_ids(req, m, 1);
  post(sess(req), m);
}

static void ll_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                      const char *newname, unsigned int flags) {
  if (refused(req, name, ENOENT) || refused(req, newname, EILSEQ)) return;
  msg_t *m = msg_new(OP_RENAME, req, parent, name, newname, NULL, 0);
  if (!m) { enomem(req); return; }
  m->n[0] = (double)newparent;
  m->n[1] = flags;
  post(sess(req), m);
}

/*
 * OPEN is answered ENOSYS: the kernel then never sends OPEN (nor RELEASE
 * for what it opened) again, keeps every file's page cache and opens with
 * handle 0, and JavaScript serves reads and writes by node id. Only CREATE
 * still makes a handle (and its RELEASE comes). FUSE-NOTES: a round trip
 * less per file opened, tar 6-8x -> ~3x the native disk.
 */
static void ll_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  (void)ino;
  (void)fi;
  fuse_reply_err(req, ENOSYS);
}

static void ll_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  msg_t *m = msg_new(OP_READ, req, ino, NULL, NULL, NULL, 0);
  if (!m) { enomem(req); return; }
  m->n[1] = (double)size;
  m->n[2] = (double)off;
  post(sess(req), m);
}

/*
 * Large write data is not copied either: the message takes libfuse's read
 * buffer it lies in, and serve gives libfuse a new one for the next request
 * (malloc reuses the blocks JavaScript is done with: keep_heap).
 */
static void ll_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                     struct fuse_file_info *fi) {
  session_t *s = sess(req);
  /* The writer's open flags come with every WRITE; a page the kernel writes back (mmap, the writeback cache) is no append. */
  int append = (fi->flags & O_APPEND) && !fi->writepage;
  if (write_here(s, req, ino, buf, size, off, append)) return;
  int take = size >= EXTERNAL_MIN && s->rbuf && buf >= s->rbuf && buf + size <= s->rbuf + s->rlen;
  msg_t *m = msg_new(OP_WRITE, req, ino, NULL, NULL, take ? NULL : buf, take ? 0 : size); /* taken: no room for a copy */
  if (!m) { enomem(req); return; }
  if (take) {
    m->data = (char *)buf;
    m->datalen = size;
    m->block = s->rbuf;
    s->rbuf = NULL;
  }
  m->n[2] = (double)off;
  m->n[3] = append;
  post(s, m);
}

/* Only handles CREATE made are released (files opened without OPEN have handle 0 and no RELEASE). */
static void ll_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  if (fi->fh == 0) {
    fuse_reply_err(req, 0);
    return;
  }
  msg_t *m = msg_new(OP_RELEASE, req, ino, NULL, NULL, NULL, 0);
  if (!m) { enomem(req); return; }
  m->n[0] = (double)fi->fh;
  post(sess(req), m);
}

static void ll_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi) {
  post(sess(req), msg_new(OP_FSYNC, req, ino, NULL, NULL, NULL, 0) ?: enomem(req));
}

/* Directories are read from their node id alone: ENOSYS tells the kernel OPENDIR is never needed,
   and it keeps caching listings by itself. */
static void ll_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  (void)ino;
  (void)fi;
  fuse_reply_err(req, ENOSYS);
}

/* READDIR and READDIRPLUS: both answered from JavaScript's listing of the directory. */
static void post_readdir(fuse_req_t req, int op, fuse_ino_t ino, size_t size, off_t off) {
  msg_t *m = msg_new(op, req, ino, NULL, NULL, NULL, 0);
  if (!m) { enomem(req); return; }
  m->n[1] = (double)size;
  m->n[2] = (double)off;
  post(sess(req), m);
}

static void ll_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  post_readdir(req, OP_READDIR, ino, size, off);
}

static void ll_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  post_readdir(req, OP_READDIRPLUS, ino, size, off);
}

static void ll_statfs(fuse_req_t req, fuse_ino_t ino) {
  post(sess(req), msg_new(OP_STATFS, req, ino, NULL, NULL, NULL, 0) ?: enomem(req));
}

static void ll_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, struct fuse_file_info *fi) {
  if (refused(req, name, EILSEQ)) return;
  msg_t *m = msg_new(OP_CREATE, req, parent, name, NULL, NULL, 0);
  if (!m) { enomem(req); return; }
  m->n[0] = mode;
  ctx_ids(req, m, 1);
  m->n[4] = fi->flags;
  post(sess(req), m);
}

static const struct fuse_lowlevel_ops ops = {
  .init = ll_init,
  .lookup = ll_lookup,
  .forget = ll_forget,
  .forget_multi = ll_forget_multi,
  .getattr = ll_getattr,
  .setattr = ll_setattr,
  .readlink = ll_readlink,
  .mkdir = ll_mkdir,
  .unlink = ll_unlink,
  .rmdir = ll_rmdir,
  .symlink = ll_symlink,
  .rename = ll_rename,
  .open = ll_open,
  .read = ll_read,
  .write = ll_write,
  .release = ll_release,
  .fsync = ll_fsync,
  .opendir = ll_opendir,
  .readdir = ll_readdir,
  .readdirplus = ll_readdirplus,
  .statfs = ll_statfs,
  .create = ll_create,
  /* Not set, so libfuse answers ENOSYS in C and the kernel stops asking: flush (written data is
     durable at write, ARCHITECTURE.md), xattrs (GETXATTR
     security.capability before every write), link, mknod, access (default_permissions),
     releasedir, fsyncdir, locks, fallocate. */
};

/* ------------------------------------------------------ to JavaScript */

/* The thread-safe function's call: JavaScript's `wake` then drains the session (drain below). */
static void call_wake(napi_env env, napi_value fn, void *context, void *data) {
  if (!env || !fn) return;
  napi_value global;
  napi_get_global(env, &global);
  napi_call_function(env, global, fn, 0, NULL, NULL);
}

/*
 * Large write data becomes a Buffer over the message's own bytes, not a
 * copy: copying 1 MiB per WRITE cost ~9% of a 1 GiB dd's daemon time. V8
 * counts every new Buffer's bytes as external memory and ran a full
 * collection every 64 MiB written (~25% of the daemon's time, copies or
 * not), so once dispatch returned its ArrayBuffer is detached (that takes
 * the bytes off V8's count) and the message freed here (JavaScript may not
 * keep `data` past dispatch: a kept one reads as empty). The Buffer has no
 * finalizer: the message stays ours whatever happens. (With one, a failed
 * napi_create_external_buffer may have freed it or left it to a later
 * collection, or not, depending on where it failed.) A build that allows no
 * external buffers (V8 sandbox), or any failure, gets a copy. Returns the
 * ArrayBuffer to detach after dispatch, NULL for a copy; *out is NULL when
 * neither could be made.
 */
static napi_value data_buffer(napi_env env, msg_t *m, napi_value *out) {
  napi_value ab;
  if (m->datalen >= EXTERNAL_MIN && napi_create_external_buffer(env, m->datalen, m->data, NULL, NULL, out) == napi_ok &&
      napi_get_typedarray_info(env, *out, NULL, NULL, NULL, &ab, NULL) == napi_ok) return ab;
  /* An external Buffer made whose ArrayBuffer was not found is left to the collector: nothing reaches it, it frees nothing. */
  if (napi_create_buffer_copy(env, m->datalen, m->data, NULL, out) != napi_ok) *out = NULL;
  return NULL;
}

/* Frees a message whose data an ArrayBuffer that could not be detached still shows (on the JS thread). */
static void free_msg(napi_env env, void *msg, void *hint) { msg_free(msg); }

/* After dispatch: JavaScript can no longer reach the message's data, which goes with it. */
static void take_back(napi_env env, napi_value ab, msg_t *m) {
  if (napi_detach_arraybuffer(env, ab) == napi_ok) msg_free(m);
  /* Not detachable (never so far): freed once collected. Should even that fail, it is leaked rather than freed under JavaScript. */
  else napi_add_finalizer(env, ab, m, free_msg, NULL, NULL);
}

/* Hands one request to JavaScript's dispatch and frees it; 0 when dispatch threw (pending exception). */
static int dispatch_msg(napi_env env, napi_value fn, msg_t *m) {
  napi_value argv[6 + NUMS], undef;
  napi_get_undefined(env, &undef);
  napi_value handed = NULL;
  if (m->data) {
    handed = data_buffer(env, m, &argv[5]);
    if (!argv[5]) {
      /* No Buffer for the data at all: the WRITE is answered here rather than never. */
      fuse_reply_err(m->req, EIO);
      msg_free(m);
      bool pending = false;
      napi_is_exception_pending(env, &pending);
      return !pending;
    }
  } else {
    argv[5] = undef;
  }
  napi_create_int32(env, m->op, &argv[0]);
  if (m->req) napi_create_external(env, m->req, NULL, NULL, &argv[1]);
  else argv[1] = undef;
  napi_create_double(env, m->ino, &argv[2]);
  if (m->name1) napi_create_string_utf8(env, m->name1, NAPI_AUTO_LENGTH, &argv[3]);
  else argv[3] = undef;
  if (m->name2) napi_create_string_utf8(env, m->name2, NAPI_AUTO_LENGTH, &argv[4]);
  else argv[4] = undef;
  for (int i = 0; i < NUMS; i++) napi_create_double(env, m->n[i], &argv[6 + i]);
  if (!handed) msg_free(m);
  napi_value global;
  napi_get_global(env, &global);
  int ok = napi_call_function(env, global, fn, 6 + NUMS, argv, NULL) == napi_ok;
  if (handed) take_back(env, handed, m);
  return ok;
}

/* ------------------------------------------------------------ threads */

static long long now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (long long)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

/* How long the loop thread keeps reading after a request before it sleeps in poll(2). */
#define LOOP_SPIN_US 50

/*
 * libfuse's fuse_session_loop, but over a non-blocking /dev/fuse: after a
 * request it tries to read the next one for LOOP_SPIN_US before it sleeps
 * in poll(2). A process working through many files sends its next request
 * within microseconds; a thread that slept is woken ~50-100 µs later on
 * this VM. The kernel's ENODEV at unmount (libfuse then exits the session)
 * and fuse_session_exit end the loop, as in libfuse's.
 */
static void serve(session_t *s) {
  struct fuse_buf buf = { .mem = NULL };
  int fd = fuse_session_fd(s->se);
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  long long last = now_us();
  while (!fuse_session_exited(s->se)) {
    int res = fuse_session_receive_buf(s->se, &buf);
    if (res == -EINTR) continue;
    if (res == -EAGAIN) {
      if (now_us() - last < LOOP_SPIN_US) {
        sched_yield();
      } else {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        poll(&p, 1, -1); /* readable, or an error the next read reports */
        last = now_us();
      }
      continue;
    }
    if (res <= 0) break;
    s->rbuf = buf.mem;
    s->rlen = buf.size;
    fuse_session_process_buf(s->se, &buf);
    if (!s->rbuf) buf.mem = NULL; /* a WRITE's message took it: libfuse allocates the next */
    s->rbuf = NULL;
    last = now_us();
  }
  free(buf.mem);
  fuse_session_reset(s->se);
}

static void *loop_main(void *arg) {
  session_t *s = arg;
  serve(s);
  msg_t *m = msg_new(OP_EXIT, NULL, 0, NULL, NULL, NULL, 0);
  post(s, m);
  return NULL;
}

static void *notifier_main(void *arg) {
  session_t *s = arg;
  for (;;) {
    pthread_mutex_lock(&s->mu);
    while (!s->head && !s->stopping) pthread_cond_wait(&s->cv, &s->mu);
    note_t *n = s->head;
    if (!n) { pthread_mutex_unlock(&s->mu); return NULL; }
    s->head = n->next;
    if (!s->head) s->tail = NULL;
    pthread_mutex_unlock(&s->mu);
    /* -ENOENT (the kernel no longer knows it) and -ENOTCONN (unmounted) need nothing more. */
    if (n->name) fuse_lowlevel_notify_inval_entry(s->se, n->ino, n->name, strlen(n->name));
    else fuse_lowlevel_notify_inval_inode(s->se, n->ino, 0, 0);
    free(n->name);
    free(n);
    pthread_mutex_lock(&s->mu);
    s->notes_written++;
    pthread_mutex_unlock(&s->mu);
  }
}

/* --------------------------------------------------------- N-API glue */

#define CHECK(call)                                                   \
  do {                                                                \
    if ((call) != napi_ok) {                                          \
      napi_throw_error(env, NULL, "cowfs_fuse: " #call " failed");    \
      return NULL;                                                    \
    }                                                                 \
  } while (0)

static napi_value throw_msg(napi_env env, const char *msg) {
  napi_throw_error(env, NULL, msg);
  return NULL;
}

static int get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv) {
  size_t argc = want;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return 0;
  for (size_t i = argc; i < want; i++) napi_get_undefined(env, &argv[i]);
  return 1;
}

static double num(napi_env env, napi_value v) {
  double d = 0;
  napi_get_value_double(env, v, &d);
  return d;
}

static char *str(napi_env env, napi_value v) {
  size_t len = 0;
  if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok) return NULL;
  char *out = malloc(len + 1);
  if (!out) return NULL;
  napi_get_value_string_utf8(env, v, out, len + 1, &len);
  return out;
}

static fuse_req_t req_of(napi_env env, napi_value v) {
  void *p = NULL;
  napi_get_value_external(env, v, &p);
  return p;
}

static session_t *session_of(napi_env env, napi_value v) {
  void *p = NULL;
  napi_get_value_external(env, v, &p);
  return p;
}

/* mount(mountpoint, options, features, maxWrite, dispatch, wake) → session */
static napi_value js_mount(napi_env env, napi_callback_info info) {
  napi_value argv[6];
  if (!get_args(env, info, 6, argv)) return NULL;
  char *mp = str(env, argv[0]);
  char *opts = str(env, argv[1]);
  if (!mp || !opts) { free(mp); free(opts); return throw_msg(env, "cowfs_fuse: mount(mountpoint, options, …) needs strings"); }
  /*
   * The JavaScript thread writes what the mounts' dirty pages become (scratch files, the store):
   * as an I/O flusher it is throttled by its own disk's dirty limit only, never by the global one
   * the mounts' pages count against (they may hold more than the kernel's 1%: src/fuse/bdi.ts).
   * Needs CAP_SYS_RESOURCE (root); without it nothing changes.
   */
  prctl(PR_SET_IO_FLUSHER, 1, 0, 0, 0);
  session_t *s = calloc(1, sizeof(session_t));
  s->features = (int)num(env, argv[2]);
  s->max_write = (unsigned)num(env, argv[3]);
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->cv, NULL);
  pthread_mutex_init(&s->amu, NULL);
  pthread_mutex_init(&s->qmu, NULL);
  pthread_mutex_init(&s->wmu, NULL);
  pthread_cond_init(&s->wcv, NULL);

  char *fargv[4] = { "cowfs", "-o", opts, NULL };
  int fargc = 3;
  if (s->features & F_DEBUG) { fargv[3] = "-d"; fargc = 4; }
  struct fuse_args args = FUSE_ARGS_INIT(fargc, fargv);
  s->se = fuse_session_new(&args, &ops, sizeof(ops), s);
  if (!s->se) {
    free(mp); free(opts); free(s);
    return throw_msg(env, "libfuse refused the session (bad option? see its message on stderr)");
  }
  napi_value name;
  napi_create_string_utf8(env, "cowfs_fuse", NAPI_AUTO_LENGTH, &name);
  if (napi_create_reference(env, argv[4], 1, &s->dispatch) != napi_ok) {
    fuse_session_destroy(s->se);
    free(mp); free(opts); free(s);
    return throw_msg(env, "cowfs_fuse: mount needs a dispatch function");
  }
  if (napi_create_threadsafe_function(env, argv[5], NULL, name, 0, 1, NULL, NULL, NULL, call_wake, &s->tsfn) != napi_ok) {
    napi_delete_reference(env, s->dispatch);
    fuse_session_destroy(s->se);
    free(mp); free(opts); free(s);
    return throw_msg(env, "cowfs_fuse: cannot create the thread-safe function");
  }
  /* The daemon's own server keeps it alive; a mount alone must not. */
  napi_unref_threadsafe_function(env, s->tsfn);
  if (fuse_session_mount(s->se, mp) != 0) {
    napi_release_threadsafe_function(s->tsfn, napi_tsfn_abort);
    napi_delete_reference(env, s->dispatch);
    fuse_session_destroy(s->se);
    free(mp); free(opts); free(s);
    return throw_msg(env, "libfuse could not mount (see its message on stderr: no /dev/fuse, not a directory, not permitted…)");
  }
  free(mp);
  free(opts);
  if (pthread_create(&s->loop, NULL, loop_main, s) != 0) {
    fuse_session_unmount(s->se);
    napi_release_threadsafe_function(s->tsfn, napi_tsfn_abort);
    napi_delete_reference(env, s->dispatch);
    fuse_session_destroy(s->se);
    free(s);
    return throw_msg(env, "cowfs_fuse: cannot start the session thread");
  }
  s->loop_started = 1;
  if (pthread_create(&s->notifier, NULL, notifier_main, s) == 0) s->notifier_started = 1;
  napi_value out;
  CHECK(napi_create_external(env, s, NULL, NULL, &out));
  return out;
}

/* The arguments of a call whose first is a session; NULL once the session was closed. */
static session_t *open_session(napi_env env, napi_callback_info info, size_t want, napi_value *argv) {
  if (!get_args(env, info, want, argv)) return NULL;
  session_t *s = session_of(env, argv[0]);
  return s && !s->closed ? s : NULL;
}

/* exit(session): asks the loop to stop at its next request (after the kernel mount is gone). */
static napi_value js_exit(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  session_t *s = open_session(env, info, 1, argv);
  if (s) fuse_session_exit(s->se);
  return NULL;
}

/* close(session): after OP_EXIT: joins the threads and frees the session. */
static napi_value js_close(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  session_t *s = open_session(env, info, 1, argv);
  if (!s) return NULL;
  s->closed = 1;
  if (s->loop_started) pthread_join(s->loop, NULL);
  pthread_mutex_lock(&s->mu);
  s->stopping = 1;
  while (s->head) { note_t *n = s->head; s->head = n->next; free(n->name); free(n); }
  s->tail = NULL;
  pthread_cond_signal(&s->cv);
  pthread_mutex_unlock(&s->mu);
  if (s->notifier_started) pthread_join(s->notifier, NULL);
  /* Only detaches if still mounted; with the connection gone it returns at once. */
  fuse_session_unmount(s->se);
  fail_queued(s);
  fuse_session_destroy(s->se);
  napi_release_threadsafe_function(s->tsfn, napi_tsfn_release);
  napi_delete_reference(env, s->dispatch);
  pthread_mutex_lock(&s->amu);
  free(s->attrs);
  s->attrs = NULL;
  s->acap = s->aused = s->alive = 0;
  dirs_free(s);
  pthread_mutex_unlock(&s->amu);
  /* The loop thread is gone: no write is in flight. */
  pthread_mutex_lock(&s->wmu);
  for (size_t i = 0; i < TARGET_BUCKETS; i++) {
    while (s->targets[i]) { write_target_t *t = s->targets[i]; s->targets[i] = t->next; free(t); }
  }
  pthread_mutex_unlock(&s->wmu);
  /* The session struct itself stays allocated: JavaScript may still hold its external. */
  return NULL;
}


/*
 * drain(session, budgetUs, spinUs) → whether requests remain: hands the
 * queued requests to dispatch one after another. With the queue empty it
 * waits up to spinUs for the next (the loop thread is reading it: waking
 * JavaScript again would cost ~100 µs), unless another session was woken
 * meanwhile. Returns after budgetUs so the event loop runs; true means
 * JavaScript must drain again soon (the session stays scheduled, so no
 * wake-up comes).
 */
static napi_value js_drain(napi_env env, napi_callback_info info) {
  napi_value argv[3], fn, out;
  session_t *s = open_session(env, info, 3, argv);
  int more = 0;
  if (s && napi_get_reference_value(env, s->dispatch, &fn) == napi_ok) {
    long long budget = (long long)num(env, argv[1]), spin = (long long)num(env, argv[2]);
    pthread_mutex_lock(&s->qmu);
    if (s->state == WOKEN) __atomic_sub_fetch(&woken_sessions, 1, __ATOMIC_RELAXED);
    s->state = DRAINING;
    pthread_mutex_unlock(&s->qmu);
    long long start = now_us(), idle_since = start;
    for (;;) {
      long long t = now_us();
      if (t - start >= budget) break;
      msg_t *m = take(s, 0);
      if (!m) {
        if (t - idle_since >= spin || __atomic_load_n(&woken_sessions, __ATOMIC_RELAXED) > 0) break;
        sched_yield();
        continue;
      }
      napi_handle_scope scope;
      napi_open_handle_scope(env, &scope);
      int ok = dispatch_msg(env, fn, m);
      napi_close_handle_scope(env, scope);
      /* A throw stays pending for the caller; the session stays DRAINING and JavaScript drains again. */
      if (!ok) return NULL;
      if (s->closed) break; /* EXIT closed it: nothing more comes */
      idle_since = now_us();
    }
    if (!s->closed) {
      pthread_mutex_lock(&s->qmu);
      more = s->qhead != NULL;
      if (!more) s->state = IDLE;
      pthread_mutex_unlock(&s->qmu);
    }
  }
  napi_get_boolean(env, more, &out);
  return out;
}

/* Queues an invalidation of inode `ino` (name NULL) or of the entry `name` (freed with the note) in directory `ino`. */
static void queue_note(session_t *s, fuse_ino_t ino, char *name) {
  note_t *n = calloc(1, sizeof(note_t));
  if (!n) { free(name); return; }
  n->ino = ino;
  n->name = name;
  pthread_mutex_lock(&s->mu);
  if (s->tail) s->tail->next = n;
  else s->head = n;
  s->tail = n;
  s->notes_queued++;
  pthread_cond_signal(&s->cv);
  pthread_mutex_unlock(&s->mu);
}

/* invalidate(session, ino, name?) */
static napi_value js_invalidate(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  session_t *s = open_session(env, info, 3, argv);
  if (!s) return NULL;
  napi_valuetype t;
  napi_typeof(env, argv[2], &t);
  queue_note(s, (fuse_ino_t)num(env, argv[1]), t == napi_string ? str(env, argv[2]) : NULL);
  return NULL;
}

/*
 * notes(session) → [queued, written]: how many invalidations were ever queued, and how many of
 * them the notification thread wrote to the kernel (in order). The daemon answers a request that
 * changed what an agent sees once `written` reached the `queued` it read then, so the caller's
 * next process never meets the old view; later notes do not hold it up. Without the thread
 * (it failed to start) nothing is written: every note counts as written.
 */
static napi_value js_notes(napi_env env, napi_callback_info info) {
  napi_value argv[1], out, q, w;
  session_t *s = open_session(env, info, 1, argv);
  if (!s) return NULL;
  pthread_mutex_lock(&s->mu);
  double queued = s->notes_queued, written = s->notifier_started ? s->notes_written : s->notes_queued;
  pthread_mutex_unlock(&s->mu);
  CHECK(napi_create_array_with_length(env, 2, &out));
  CHECK(napi_create_double(env, queued, &q));
  CHECK(napi_create_double(env, written, &w));
  CHECK(napi_set_element(env, out, 0, q));
  CHECK(napi_set_element(env, out, 1, w));
  return out;
}

static napi_value js_reply_err(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!get_args(env, info, 2, argv)) return NULL;
  fuse_reply_err(req_of(env, argv[0]), (int)num(env, argv[1]));
  return NULL;
}

static void fill_stat(napi_env env, napi_value *v, struct stat *st) {
  double a[ATTR_ARGS];
  for (int i = 0; i < ATTR_ARGS; i++) a[i] = num(env, v[i]);
  stat_of(a, st);
}

/* replyEntry(req, nodeid, ...attr, attrTimeout, entryTimeout); nodeid 0 = a cached "no such name". */
static napi_value js_reply_entry(napi_env env, napi_callback_info info) {
  napi_value argv[2 + ATTR_ARGS + 2];
  if (!get_args(env, info, 2 + ATTR_ARGS + 2, argv)) return NULL;
  struct fuse_entry_param e;
  memset(&e, 0, sizeof(e));
  e.ino = (fuse_ino_t)num(env, argv[1]);
  if (e.ino) fill_stat(env, argv + 2, &e.attr);
  e.attr_timeout = num(env, argv[2 + ATTR_ARGS]);
  e.entry_timeout = num(env, argv[3 + ATTR_ARGS]);
  fuse_reply_entry(req_of(env, argv[0]), &e);
  return NULL;
}

/* replyCreate(req, nodeid, ...attr, attrTimeout, entryTimeout, fh, openFlags) */
static void file_flags(struct fuse_file_info *fi, int f) {
  fi->keep_cache = (f & 1) != 0;
  fi->direct_io = (f & 2) != 0;
  fi->noflush = (f & 4) != 0;
}

static napi_value js_reply_create(napi_env env, napi_callback_info info) {
  napi_value argv[2 + ATTR_ARGS + 4];
  if (!get_args(env, info, 2 + ATTR_ARGS + 4, argv)) return NULL;
  struct fuse_entry_param e;
  memset(&e, 0, sizeof(e));
  e.ino = (fuse_ino_t)num(env, argv[1]);
  fill_stat(env, argv + 2, &e.attr);
  e.attr_timeout = num(env, argv[2 + ATTR_ARGS]);
  e.entry_timeout = num(env, argv[3 + ATTR_ARGS]);
  struct fuse_file_info fi;
  memset(&fi, 0, sizeof(fi));
  fi.fh = (uint64_t)num(env, argv[4 + ATTR_ARGS]);
  file_flags(&fi, (int)num(env, argv[5 + ATTR_ARGS]));
  fuse_reply_create(req_of(env, argv[0]), &e, &fi);
  return NULL;
}

/* replyAttr(req, ...attr, timeout) */
static napi_value js_reply_attr(napi_env env, napi_callback_info info) {
  napi_value argv[1 + ATTR_ARGS + 1];
  if (!get_args(env, info, 1 + ATTR_ARGS + 1, argv)) return NULL;
  struct stat st;
  fill_stat(env, argv + 1, &st);
  fuse_reply_attr(req_of(env, argv[0]), &st, num(env, argv[1 + ATTR_ARGS]));
  return NULL;
}

/* replyBuf(req, buffer, length) */
static napi_value js_reply_buf(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (!get_args(env, info, 3, argv)) return NULL;
  void *data = NULL;
  size_t len = 0;
  napi_get_buffer_info(env, argv[1], &data, &len);
  size_t n = (size_t)num(env, argv[2]);
  if (n > len) n = len;
  fuse_reply_buf(req_of(env, argv[0]), data, n);
  return NULL;
}

/* replyReadlink(req, target) */
static napi_value js_reply_readlink(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!get_args(env, info, 2, argv)) return NULL;
  char *t = str(env, argv[1]);
  fuse_req_t req = req_of(env, argv[0]);
  if (!t) fuse_reply_err(req, ENOMEM);
  else fuse_reply_readlink(req, t);
  free(t);
  return NULL;
}

/* replyWrite(req, count) */
static napi_value js_reply_write(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!get_args(env, info, 2, argv)) return NULL;
  fuse_reply_write(req_of(env, argv[0]), (size_t)num(env, argv[1]));
  return NULL;
}

/* replyStatfs(req, bsize, frsize, blocks, bfree, bavail, files, ffree, favail, namemax) */
static napi_value js_reply_statfs(napi_env env, napi_callback_info info) {
  napi_value argv[10];
  if (!get_args(env, info, 10, argv)) return NULL;
  struct statvfs v;
  memset(&v, 0, sizeof(v));
  v.f_bsize = (unsigned long)num(env, argv[1]);
  v.f_frsize = (unsigned long)num(env, argv[2]);
  v.f_blocks = (fsblkcnt_t)num(env, argv[3]);
  v.f_bfree = (fsblkcnt_t)num(env, argv[4]);
  v.f_bavail = (fsblkcnt_t)num(env, argv[5]);
  v.f_files = (fsfilcnt_t)num(env, argv[6]);
  v.f_ffree = (fsfilcnt_t)num(env, argv[7]);
  v.f_favail = (fsfilcnt_t)num(env, argv[8]);
  v.f_namemax = (unsigned long)num(env, argv[9]);
  fuse_reply_statfs(req_of(env, argv[0]), &v);
  return NULL;
}

/* The i-th string of a JavaScript array, into `name` (`cap` bytes). */
static int name_at(napi_env env, napi_value names, uint32_t i, char *name, size_t cap) {
  napi_value v;
  size_t len = 0;
  return napi_get_element(env, names, i, &v) == napi_ok &&
         napi_get_value_string_utf8(env, v, name, cap, &len) == napi_ok;
}

/* The i-th number of a JavaScript array. */
static double num_at(napi_env env, napi_value arr, uint32_t i) {
  napi_value v;
  if (napi_get_element(env, arr, i, &v) != napi_ok) return 0;
  return num(env, v);
}

/*
 * replyDir(req, names, types, size, offset): the directory's whole listing
 * ('.' and '..' included) as JavaScript knows it; sends the entries from
 * index `offset` on that fit in `size` bytes. An entry's offset is its
 * index + 1, so the kernel's next request starts after it.
 */
static napi_value js_reply_dir(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  if (!get_args(env, info, 5, argv)) return NULL;
  fuse_req_t req = req_of(env, argv[0]);
  uint32_t count = 0;
  napi_get_array_length(env, argv[1], &count);
  size_t size = (size_t)num(env, argv[3]);
  uint32_t off = (uint32_t)num(env, argv[4]);
  char *buf = malloc(size ? size : 1);
  if (!buf) { fuse_reply_err(req, ENOMEM); return NULL; }
  size_t used = 0;
  char name[1024];
  for (uint32_t i = off; i < count; i++) {
    if (!name_at(env, argv[1], i, name, sizeof(name))) continue;
    struct stat st;
    memset(&st, 0, sizeof(st));
    st.st_ino = 0xffffffffu;
    st.st_mode = (mode_t)num_at(env, argv[2], i);
    size_t need = fuse_add_direntry(req, buf + used, size - used, name, &st, (off_t)i + 1);
    if (need > size - used) break;
    used += need;
  }
  fuse_reply_buf(req, buf, used);
  free(buf);
  return NULL;
}

/*
 * replyDirPlus(req, names, ids, attrs, size, offset, timeout) → entries sent:
 * READDIRPLUS's entries from index `offset` on, each with its node id (0:
 * none, the kernel then only lists the name; so for '.' and '..') and its
 * attributes (ATTR_ARGS numbers per entry in the Float64Array `attrs`; with
 * id 0 only the mode's type counts). The kernel takes a lookup of every
 * entry sent with a node id (but '.' and '..'): JavaScript counts them from
 * the number returned.
 */
static napi_value js_reply_dir_plus(napi_env env, napi_callback_info info) {
  napi_value argv[7];
  if (!get_args(env, info, 7, argv)) return NULL;
  fuse_req_t req = req_of(env, argv[0]);
  napi_typedarray_type at;
  size_t alen = 0;
  void *adata = NULL;
  napi_get_typedarray_info(env, argv[3], &at, &alen, &adata, NULL, NULL);
  uint32_t count = 0;
  napi_get_array_length(env, argv[1], &count);
  size_t size = (size_t)num(env, argv[4]);
  uint32_t off = (uint32_t)num(env, argv[5]);
  double timeout = num(env, argv[6]);
  if (at != napi_float64_array || alen < (size_t)count * ATTR_ARGS) { fuse_reply_err(req, EIO); return NULL; }
  const double *a = adata;
  char *buf = malloc(size ? size : 1);
  if (!buf) { fuse_reply_err(req, ENOMEM); return NULL; }
  size_t used = 0;
  uint32_t sent = 0;
  char name[1024];
  for (uint32_t i = 0; i < count; i++, a += ATTR_ARGS) {
    if (!name_at(env, argv[1], i, name, sizeof(name))) break;
    struct fuse_entry_param e;
    memset(&e, 0, sizeof(e));
    e.ino = (fuse_ino_t)num_at(env, argv[2], i);
    stat_of(a, &e.attr);
    if (!e.ino) e.attr.st_ino = 0xffffffffu;
    e.attr_timeout = timeout;
    e.entry_timeout = timeout;
    size_t need = fuse_add_direntry_plus(req, buf + used, size - used, name, &e, (off_t)(off + i) + 1);
    if (need > size - used) break;
    used += need;
    sent++;
  }
  fuse_reply_buf(req, buf, used);
  free(buf);
  napi_value out;
  napi_create_uint32(env, sent, &out);
  return out;
}

static napi_value js_reply_none(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return NULL;
  fuse_reply_none(req_of(env, argv[0]));
  return NULL;
}

/* dropAttr(session, ino): GETATTR of `ino` goes to JavaScript again. */
static napi_value js_drop_attr(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  session_t *s = open_session(env, info, 2, argv);
  if (s) attr_drop(s, (fuse_ino_t)num(env, argv[1]));
  return NULL;
}

/* cacheAttr(session, ino, ...attr, timeout): GETATTR of `ino` is answered here from now on. */
static napi_value js_cache_attr(napi_env env, napi_callback_info info) {
  napi_value argv[2 + ATTR_ARGS + 1];
  session_t *s = open_session(env, info, 2 + ATTR_ARGS + 1, argv);
  if (!s) return NULL;
  fuse_ino_t ino = (fuse_ino_t)num(env, argv[1]);
  double a[ATTR_ARGS];
  for (int i = 0; i < ATTR_ARGS; i++) a[i] = num(env, argv[2 + i]);
  double timeout = num(env, argv[2 + ATTR_ARGS]);
  /* A lent file's size and mtime are the file's now: a write here may have come after JavaScript read them. */
  pthread_mutex_lock(&s->wmu);
  write_target_t *t = *target_slot(s, ino);
  if (t) attr_from_file(a, t->fd);
  pthread_mutex_lock(&s->amu);
  cached_attr_t *e = attr_find(s, ino);
  if (!e) e = attr_new(s, ino);
  if (e) {
    memcpy(e->a, a, sizeof(a));
    e->timeout = timeout;
  }
  pthread_mutex_unlock(&s->amu);
  pthread_mutex_unlock(&s->wmu);
  return NULL;
}

/* knowNames(session, ino, timeout): directory `ino` was just made, empty: LOOKUPs of names not added since answer ENOENT here. */
static napi_value js_know_names(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  session_t *s = open_session(env, info, 3, argv);
  if (!s) return NULL;
  pthread_mutex_lock(&s->amu);
  dir_know(s, (fuse_ino_t)num(env, argv[1]), num(env, argv[2]));
  pthread_mutex_unlock(&s->amu);
  return NULL;
}

/* addName(session, ino, name): `name` is (about to be) made in directory `ino`. */
static napi_value js_add_name(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  session_t *s = open_session(env, info, 3, argv);
  if (!s) return NULL;
  char *name = str(env, argv[2]);
  pthread_mutex_lock(&s->amu);
  if (name) dir_add(s, (fuse_ino_t)num(env, argv[1]), name);
  else dir_forget(s, (fuse_ino_t)num(env, argv[1]));
  pthread_mutex_unlock(&s->amu);
  free(name);
  return NULL;
}

/* forgetNames(session, ino): names of `ino` may come otherwise than through the mount. */
static napi_value js_forget_names(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  session_t *s = open_session(env, info, 2, argv);
  if (!s) return NULL;
  pthread_mutex_lock(&s->amu);
  dir_forget(s, (fuse_ino_t)num(env, argv[1]));
  pthread_mutex_unlock(&s->amu);
  return NULL;
}

/*
 * syncFileRange(fd, offset, length): starts the disk writes of a range of a file without waiting
 * for them (SYNC_FILE_RANGE_WRITE), so a file written front to back is mostly on the disk by the
 * time it is fsynced (src/store/sequential-write.ts). Node has no sync_file_range. Errors are ignored:
 * it is only a head start, fsync(2) is what promises.
 */
static napi_value js_sync_file_range(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (!get_args(env, info, 3, argv)) return NULL;
  sync_file_range((int)num(env, argv[0]), (off64_t)num(env, argv[1]), (off64_t)num(env, argv[2]), SYNC_FILE_RANGE_WRITE);
  return NULL;
}

/* writeTo(session, ino, fd): `ino`'s WRITEs are written to `fd` here until stopWriting. */
static napi_value js_write_to(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  session_t *s = open_session(env, info, 3, argv);
  if (!s) return NULL;
  fuse_ino_t ino = (fuse_ino_t)num(env, argv[1]);
  int fd = (int)num(env, argv[2]);
  struct stat st;
  off_t size = fstat(fd, &st) == 0 ? st.st_size : 0;
  pthread_mutex_lock(&s->wmu);
  target_remove(s, ino, NULL);
  write_target_t *t = calloc(1, sizeof(write_target_t));
  if (t) {
    t->ino = ino;
    t->fd = fd;
    t->front = size;
    t->started = size - size % WRITEBACK_STEP;
    t->hashing = size == 0;
    if (t->hashing) XXH64_reset(&t->hash, 0);
    write_target_t **p = target_slot(s, ino);
    *p = t;
  }
  pthread_mutex_unlock(&s->wmu);
  if (!t) napi_throw_error(env, NULL, "cowfs_fuse: out of memory");
  return NULL;
}

/*
 * stopWriting(session, ino) → [changes made here, bytes written in order from the start, their
 * xxhash64 as 16 hex digits or undefined], or undefined if `ino` was not lent: its WRITEs go to
 * JavaScript again; returns once none is being written here.
 */
static napi_value js_stop_writing(napi_env env, napi_callback_info info) {
  napi_value argv[2], out, v;
  session_t *s = open_session(env, info, 2, argv);
  target_end_t end;
  int found = 0;
  if (s) {
    pthread_mutex_lock(&s->wmu);
    found = target_remove(s, (fuse_ino_t)num(env, argv[1]), &end);
    pthread_mutex_unlock(&s->wmu);
  }
  if (!found) {
    CHECK(napi_get_undefined(env, &out));
    return out;
  }
  CHECK(napi_create_array_with_length(env, 3, &out));
  CHECK(napi_create_double(env, end.changes, &v));
  CHECK(napi_set_element(env, out, 0, v));
  CHECK(napi_create_double(env, (double)end.front, &v));
  CHECK(napi_set_element(env, out, 1, v));
  if (end.hashed) {
    char hex[17];
    snprintf(hex, sizeof(hex), "%016llx", (unsigned long long)end.hash);
    CHECK(napi_create_string_utf8(env, hex, 16, &v));
    CHECK(napi_set_element(env, out, 2, v));
  }
  return out;
}

/* written(session, ino) → the changes made here to `ino` while lent (bytes written plus times set), or -1 if it is not lent. */
static napi_value js_written(napi_env env, napi_callback_info info) {
  napi_value argv[2], out;
  session_t *s = open_session(env, info, 2, argv);
  double bytes = -1;
  if (s) {
    pthread_mutex_lock(&s->wmu);
    write_target_t *t = *target_slot(s, (fuse_ino_t)num(env, argv[1]));
    if (t) bytes = t->changes;
    pthread_mutex_unlock(&s->wmu);
  }
  CHECK(napi_create_double(env, bytes, &out));
  return out;
}

/* writesHere(session) → [WRITEs written here, the largest one's size]. */
static napi_value js_writes_here(napi_env env, napi_callback_info info) {
  napi_value argv[1], out, v;
  session_t *s = open_session(env, info, 1, argv);
  double n = 0, max = 0;
  if (s) {
    pthread_mutex_lock(&s->wmu);
    n = s->c_writes;
    max = s->c_max_write;
    pthread_mutex_unlock(&s->wmu);
  }
  CHECK(napi_create_array_with_length(env, 2, &out));
  CHECK(napi_create_double(env, n, &v));
  CHECK(napi_set_element(env, out, 0, v));
  CHECK(napi_create_double(env, max, &v));
  CHECK(napi_set_element(env, out, 1, v));
  return out;
}

/*
 * Every WRITE's data (up to 1 MiB) is in a block malloc'ed here and freed once JavaScript is done with
 * it (a message's, or libfuse's read buffer, ll_write): above
 * glibc's mmap threshold each one would be a fresh mmap, and under balloon free-page reporting
 * every page touched anew is a host fault (14% of the daemon's time in a 1 GiB dd). Fixing the
 * thresholds keeps those buffers in the heap and the heap from being trimmed back.
 */
static void keep_heap(void) {
  mallopt(M_MMAP_THRESHOLD, 4 << 20);
  mallopt(M_TRIM_THRESHOLD, 64 << 20);
}

static napi_value init_module(napi_env env, napi_value exports) {
  keep_heap();
  struct { const char *name; napi_callback fn; } fns[] = {
    { "mount", js_mount }, { "exit", js_exit }, { "close", js_close }, { "invalidate", js_invalidate },
    { "notes", js_notes },
    { "drain", js_drain }, { "cacheAttr", js_cache_attr },
    { "knowNames", js_know_names }, { "addName", js_add_name }, { "forgetNames", js_forget_names }, { "dropAttr", js_drop_attr },
    { "replyErr", js_reply_err }, { "replyEntry", js_reply_entry }, { "replyCreate", js_reply_create },
    { "replyAttr", js_reply_attr }, { "replyBuf", js_reply_buf },
    { "replyReadlink", js_reply_readlink }, { "replyWrite", js_reply_write },
    { "replyStatfs", js_reply_statfs }, { "replyDir", js_reply_dir },
    { "replyDirPlus", js_reply_dir_plus }, { "replyNone", js_reply_none },
    { "syncFileRange", js_sync_file_range },
    { "writeTo", js_write_to }, { "stopWriting", js_stop_writing }, { "written", js_written },
    { "writesHere", js_writes_here },
  };
  napi_value abi;
  if (napi_create_int32(env, COWFS_FUSE_ABI, &abi) != napi_ok || napi_set_named_property(env, exports, "abi", abi) != napi_ok) return NULL;
  for (size_t i = 0; i < sizeof(fns) / sizeof(fns[0]); i++) {
    napi_value f;
    if (napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].fn, NULL, &f) != napi_ok) return NULL;
    if (napi_set_named_property(env, exports, fns[i].name, f) != napi_ok) return NULL;
  }
  return exports;
}

NAPI_MODULE(cowfs_fuse, init_module)
