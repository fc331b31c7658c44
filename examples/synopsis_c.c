/* The seed's SYNOPSIS in C (README.md, "The C API"), through
 * <shmpool/shmpool.h> only, run for real on file-backed pools in a fresh
 * temporary directory.  Every call's status is checked: a failure prints
 * where, the code and the message, and exits 1. */
#define _GNU_SOURCE 1

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <shmpool/shmpool.h>

static shmpool_error err;

/* CHECK(cond): asserts also in release builds. */
#define CHECK(cond)                                                                              \
  do {                                                                                           \
    if (!(cond)) {                                                                               \
      fprintf(stderr, "%s:%d: CHECK failed: %s (last error %d: %s)\n", __FILE__, __LINE__, #cond, \
              err.code, err.message);                                                            \
      exit(1);                                                                                   \
    }                                                                                            \
  } while (0)
#define OK(call) CHECK((call) == SHMPOOL_OK)

int main(void) {
  char dir[] = "/tmp/shmpool-synopsis-c.XXXXXX";
  char path[128], cmd[160];
  shmpool_t *pool, *ints, *strs, *mem, *peer;
  uint64_t idx, i, slots[10], used;
  int64_t v;
  int swapped, fd;
  char data[64], s[32];
  size_t n, len;
  shmpool_stats st;
  CHECK(mkdtemp(dir) != NULL);

  /* Raw byte pool: 100 slots of 64 bytes each. */
  snprintf(path, sizeof path, "%s/pool.shm", dir);
  pool = shmpool_open(path, SHMPOOL_VARIANT_RAW, 100, 64, &err);
  CHECK(pool != NULL);
  OK(shmpool_alloc(pool, &idx, &err)); /* blocks while full */
  OK(shmpool_set(pool, idx, "hello world", 11, &err));
  OK(shmpool_get(pool, idx, data, sizeof data, &err));
  CHECK(memcmp(data, "hello world", 11) == 0 && data[11] == 0); /* set() zero-fills the rest */
  OK(shmpool_free(pool, idx, &err));
  CHECK(shmpool_free(pool, idx, &err) == SHMPOOL_ENOTALLOC); /* a second free is refused */

  /* Typed pools and the lock-free primitives. */
  snprintf(path, sizeof path, "%s/ints.shm", dir);
  ints = shmpool_open(path, SHMPOOL_VARIANT_I64, 1000, 0, &err);
  CHECK(ints != NULL);
  OK(shmpool_alloc(ints, &i, &err));
  OK(shmpool_set_i64(ints, i, 42, &err));
  OK(shmpool_add_i64(ints, i, 8, &v, &err));
  CHECK(v == 50);
  OK(shmpool_cas_i64(ints, i, 50, 99, &swapped, &err));
  CHECK(swapped);
  OK(shmpool_cmpxchg_i64(ints, i, 99, 200, &v, &err));
  CHECK(v == 99); /* returns the old value */
  OK(shmpool_xchg_i64(ints, i, 300, &v, &err));
  CHECK(v == 200);

  snprintf(path, sizeof path, "%s/s.shm", dir);
  strs = shmpool_open(path, SHMPOOL_VARIANT_STR, 100, 256, &err);
  CHECK(strs != NULL);
  OK(shmpool_alloc(strs, &i, &err));
  OK(shmpool_set_str(strs, i, "a string", 8, &err));
  OK(shmpool_get_str(strs, i, s, sizeof s, &len, &err));
  CHECK(len == 8 && strcmp(s, "a string") == 0);

  /* Batch operations: all-or-nothing alloc, one wake for the whole free. */
  OK(shmpool_alloc_n(pool, 10, slots, -1, &err));
  OK(shmpool_used(pool, &used, &err));
  CHECK(used == 10);
  OK(shmpool_free_n(pool, slots, 10, &n, &err));
  CHECK(n == 10);
  CHECK(shmpool_alloc_n(pool, 101, slots, -1, &err) == SHMPOOL_EINVAL); /* could never succeed */

  /* Non-blocking and timed allocation. */
  OK(shmpool_try_alloc(pool, &idx, &err));
  OK(shmpool_free(pool, idx, &err));
  OK(shmpool_alloc_timeout(pool, 1000000, &idx, &err)); /* waits at most 1 ms */
  OK(shmpool_free(pool, idx, &err));

  /* Crash recovery: nobody here is dead, so nothing is freed. */
  OK(shmpool_recover_stale(pool, &n, &err));
  CHECK(n == 0);

  /* memfd pools; from_fd attaches (validated). */
  mem = shmpool_memfd("my_pool", SHMPOOL_VARIANT_I64, 100, 0, &err);
  CHECK(mem != NULL);
  OK(shmpool_memfd_fd(mem, &fd, &err)); /* can be sent over a socket */
  peer = shmpool_from_fd(fd, SHMPOOL_VARIANT_I64, &err);
  CHECK(peer != NULL);
  OK(shmpool_alloc(mem, &i, &err));
  OK(shmpool_set_i64(mem, i, 7, &err));
  OK(shmpool_get_i64(peer, i, &v, &err));
  CHECK(v == 7); /* the same memory */

  /* Errors are codes with a message, never a crash. */
  CHECK(shmpool_get_i64(ints, 1000, &v, &err) == SHMPOOL_ERANGE);
  CHECK(strlen(err.message) > 0);

  /* Stats (a struct that says its own size) and the health check. */
  st.size = sizeof st;
  OK(shmpool_get_stats(ints, &st, &err));
  CHECK(st.capacity == 1000 && st.used == 1 && st.allocs == 1);
  OK(shmpool_check(ints, NULL, NULL, &n, &err));
  CHECK(n == 0);

  OK(shmpool_close(peer));
  OK(shmpool_close(mem));
  OK(shmpool_close(strs));
  OK(shmpool_close(ints));
  OK(shmpool_close(pool));
  printf("synopsis_c: ok\n");
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  return system(cmd) == 0 ? 0 : 1;
}
