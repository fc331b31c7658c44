/* The C API, from C: compiled as C99 (-std=c99 -Wall -Wextra -Werror
 * -pedantic) and linked against libshmpool.  Every function of shmpool.h is
 * called, on its success path and its error paths, and one multi-process
 * test kills a holder with SIGKILL and recovers its slot, all through the C
 * API only.  Exit status 0 when every check holds; each failed check prints
 * its line.  "c_api_test --abi" prints the sizes of the public structs
 * instead (for the ABI check, cmake/c_abi_check.cmake). */
#define _GNU_SOURCE 1

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <shmpool/shmpool.h>

static int failures = 0;

#define CHECK(cond)                                                       \
  do {                                                                    \
    if (!(cond)) {                                                        \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      ++failures;                                                         \
    }                                                                     \
  } while (0)

/* A call that must return code; its err must say the same. */
#define EXPECT_CODE(want, call)                                                                 \
  do {                                                                                          \
    int rc_ = (call);                                                                           \
    if (rc_ != (want) || err.code != rc_) {                                                     \
      fprintf(stderr, "%s:%d: %s returned %d (%s), err.code %d, expected %d; message: %s\n",    \
              __FILE__, __LINE__, #call, rc_, shmpool_strerror(rc_), err.code, (want), err.message); \
      ++failures;                                                                               \
    }                                                                                           \
  } while (0)
#define EXPECT_OK(call) EXPECT_CODE(SHMPOOL_OK, call)

static char dir[] = "/tmp/shmpool-c-api.XXXXXX";

static const char *path_in_dir(const char *name) {
  static char buf[4][256];
  static int next = 0;
  char *p = buf[next++ % 4];
  snprintf(p, sizeof buf[0], "%s/%s", dir, name);
  return p;
}

static void test_raw_pool(void) {
  shmpool_error err;
  shmpool_t *p = shmpool_open(path_in_dir("raw.shm"), SHMPOOL_VARIANT_RAW, 4, 16, &err);
  uint64_t slot = 99, value = 0;
  char buf[32];
  int allocated = -1, variant = 0;
  pid_t pid = 0;
  void *slot_ptr = NULL, *data = NULL;
  CHECK(p != NULL && err.code == SHMPOOL_OK && err.message[0] == '\0');
  if (p == NULL) return;
  EXPECT_OK(shmpool_alloc(p, &slot, &err));
  CHECK(slot < 4);
  EXPECT_OK(shmpool_set(p, slot, "hello world", 11, &err));
  memset(buf, 'x', sizeof buf);
  EXPECT_OK(shmpool_get(p, slot, buf, sizeof buf, &err));
  CHECK(memcmp(buf, "hello world", 11) == 0 && buf[11] == 0 && buf[15] == 0); /* zero-filled */
  CHECK(buf[16] == 'x'); /* never more than elem_size bytes */
  EXPECT_OK(shmpool_is_allocated(p, slot, &allocated, &err));
  CHECK(allocated == 1);
  EXPECT_OK(shmpool_owner(p, slot, &pid, &err));
  CHECK(pid == getpid());
  EXPECT_OK(shmpool_capacity(p, &value, &err));
  CHECK(value == 4);
  EXPECT_OK(shmpool_elem_size(p, &value, &err));
  CHECK(value == 16);
  EXPECT_OK(shmpool_used(p, &value, &err));
  CHECK(value == 1);
  EXPECT_OK(shmpool_available(p, &value, &err));
  CHECK(value == 3);
  EXPECT_OK(shmpool_variant(p, &variant, &err));
  CHECK(variant == SHMPOOL_VARIANT_RAW);
  EXPECT_OK(shmpool_slot_ptr(p, slot, &slot_ptr, &err));
  EXPECT_OK(shmpool_data_ptr(p, &data, &err));
  CHECK((char *)slot_ptr == (char *)data + slot * 16);
  CHECK(memcmp(slot_ptr, "hello world", 11) == 0); /* zero-copy: the same bytes */
  EXPECT_OK(shmpool_set(p, slot, NULL, 0, &err)); /* clears */
  CHECK(((char *)slot_ptr)[0] == 0);

  /* Slot not allocated, index out of range. */
  EXPECT_OK(shmpool_free(p, slot, &err));
  EXPECT_CODE(SHMPOOL_ENOTALLOC, shmpool_free(p, slot, &err)); /* a second free is refused */
  EXPECT_CODE(SHMPOOL_ENOTALLOC, shmpool_get(p, slot, buf, sizeof buf, &err));
  CHECK(strstr(err.message, "not allocated") != NULL);
  EXPECT_CODE(SHMPOOL_ENOTALLOC, shmpool_set(p, slot, "x", 1, &err));
  EXPECT_CODE(SHMPOOL_ENOTOWNER, shmpool_free_if_mine(p, slot, &err));
  EXPECT_CODE(SHMPOOL_ERANGE, shmpool_get(p, 4, buf, sizeof buf, &err));
  EXPECT_CODE(SHMPOOL_ERANGE, shmpool_free(p, 4, &err));
  EXPECT_CODE(SHMPOOL_ERANGE, shmpool_free_if_mine(p, 1000, &err));
  EXPECT_CODE(SHMPOOL_ERANGE, shmpool_is_allocated(p, 4, &allocated, &err));
  EXPECT_CODE(SHMPOOL_ERANGE, shmpool_owner(p, 4, &pid, &err));
  EXPECT_CODE(SHMPOOL_ERANGE, shmpool_slot_ptr(p, 4, &slot_ptr, &err));
  EXPECT_CODE(SHMPOOL_EWRONGVARIANT, shmpool_get_i64(p, 0, NULL, &err));
  EXPECT_CODE(SHMPOOL_EWRONGVARIANT, shmpool_set_str(p, 0, "x", 1, &err));
  EXPECT_CODE(SHMPOOL_EWRONGVARIANT, shmpool_max_len(p, &value, &err));

  /* free_if_mine of this process's slot; the error struct is optional. */
  CHECK(shmpool_alloc(p, &slot, NULL) == SHMPOOL_OK);
  EXPECT_OK(shmpool_free_if_mine(p, slot, &err));
  CHECK(shmpool_free(p, slot, NULL) == SHMPOOL_ENOTALLOC);

  /* A pool at the same path with other parameters, or another variant. */
  CHECK(shmpool_open(path_in_dir("raw.shm"), SHMPOOL_VARIANT_RAW, 5, 16, &err) == NULL);
  CHECK(err.code == SHMPOOL_EPARAMMISMATCH);
  CHECK(shmpool_open(path_in_dir("raw.shm"), SHMPOOL_VARIANT_STR, 4, 16, &err) == NULL);
  CHECK(err.code == SHMPOOL_EWRONGVARIANT && strstr(err.message, "raw.shm") != NULL);

  /* sync, unlink. */
  EXPECT_OK(shmpool_sync(p, &err));
  EXPECT_OK(shmpool_unlink(p, &err));
  CHECK(access(path_in_dir("raw.shm"), F_OK) != 0);
  EXPECT_CODE(SHMPOOL_EFAILED, shmpool_unlink(p, &err)); /* the path is gone */
  CHECK(shmpool_close(p) == SHMPOOL_OK);
}

static void test_batches_and_timeouts(void) {
  shmpool_error err;
  shmpool_t *p = shmpool_anonymous(SHMPOOL_VARIANT_RAW, 8, 8, &err);
  uint64_t slots[8], extra = 0, used = 0;
  size_t freed = 0;
  shmpool_stats st;
  CHECK(p != NULL);
  if (p == NULL) return;
  EXPECT_OK(shmpool_alloc_n(p, 0, NULL, 0, &err));
  EXPECT_OK(shmpool_alloc_n(p, 8, slots, -1, &err));
  EXPECT_OK(shmpool_used(p, &used, &err));
  CHECK(used == 8);
  EXPECT_CODE(SHMPOOL_EFULL, shmpool_try_alloc(p, &extra, &err));
  EXPECT_CODE(SHMPOOL_ETIMEDOUT, shmpool_alloc_timeout(p, 1000000, &extra, &err)); /* 1 ms */
  EXPECT_CODE(SHMPOOL_EFULL, shmpool_alloc_n(p, 1, &extra, 0, &err));
  EXPECT_CODE(SHMPOOL_EINVAL, shmpool_alloc_n(p, 9, slots, 0, &err)); /* could never succeed */
  EXPECT_CODE(SHMPOOL_EINVAL, shmpool_alloc_n(p, 1, NULL, 0, &err));
  memset(&st, 0, sizeof st);
  st.size = sizeof st;
  EXPECT_OK(shmpool_get_stats(p, &st, &err));
  CHECK(st.size == sizeof st && st.capacity == 8 && st.elem_size == 8 && st.used == 8 && st.available == 0);
  CHECK(st.allocs == 8 && st.frees == 0 && st.timeouts >= 1 && st.mmap_size > 0);
  /* An older caller's smaller struct: only the fields that fit. */
  memset(&st, 0xAB, sizeof st);
  st.size = 2 * sizeof(uint64_t);
  EXPECT_OK(shmpool_get_stats(p, &st, &err));
  CHECK(st.size == 2 * sizeof(uint64_t) && st.capacity == 8 && st.elem_size == 0xABABABABABABABABull);
  st.size = 0;
  EXPECT_CODE(SHMPOOL_EINVAL, shmpool_get_stats(p, &st, &err));

  {
    const uint64_t bad[2] = {0, 8};
    EXPECT_CODE(SHMPOOL_ERANGE, shmpool_free_n(p, bad, 2, &freed, &err));
    EXPECT_OK(shmpool_used(p, &used, &err));
    CHECK(used == 8); /* nothing freed on a bad index */
  }
  EXPECT_OK(shmpool_free_n(p, slots, 8, &freed, &err));
  CHECK(freed == 8);
  EXPECT_OK(shmpool_free_n(p, slots, 8, NULL, &err)); /* none allocated any more */
  EXPECT_OK(shmpool_alloc_timeout(p, 0, &extra, &err));
  EXPECT_OK(shmpool_alloc_timeout(p, -1, &extra, &err));
  EXPECT_OK(shmpool_try_alloc(p, &extra, &err));
  EXPECT_OK(shmpool_used(p, &used, &err));
  CHECK(used == 3);
  EXPECT_OK(shmpool_reset(p, &err));
  EXPECT_OK(shmpool_used(p, &used, &err));
  CHECK(used == 0);
  EXPECT_CODE(SHMPOOL_EFAILED, shmpool_unlink(p, &err)); /* no path */
  CHECK(shmpool_close(p) == SHMPOOL_OK);
}

static void test_integers(void) {
  shmpool_error err;
  shmpool_t *p = shmpool_open(path_in_dir("ints.shm"), SHMPOOL_VARIANT_I64, 10, 0, &err);
  shmpool_t *q = shmpool_anonymous(SHMPOOL_VARIANT_I32, 10, 4, &err);
  uint64_t i = 0, j = 0;
  int64_t v = 0;
  int32_t w = 0;
  int swapped = -1;
  CHECK(p != NULL && q != NULL);
  if (p == NULL || q == NULL) return;
  EXPECT_OK(shmpool_alloc(p, &i, &err));
  EXPECT_OK(shmpool_set_i64(p, i, 42, &err));
  EXPECT_OK(shmpool_add_i64(p, i, 8, &v, &err));
  CHECK(v == 50);
  EXPECT_OK(shmpool_cas_i64(p, i, 50, 99, &swapped, &err));
  CHECK(swapped == 1);
  EXPECT_OK(shmpool_cas_i64(p, i, 50, 1, &swapped, &err));
  CHECK(swapped == 0);
  EXPECT_OK(shmpool_get_i64(p, i, &v, &err));
  CHECK(v == 99);
  EXPECT_OK(shmpool_cmpxchg_i64(p, i, 99, 200, &v, &err));
  CHECK(v == 99);
  EXPECT_OK(shmpool_xchg_i64(p, i, 300, &v, &err));
  CHECK(v == 200);
  EXPECT_OK(shmpool_incr_i64(p, i, &v, &err));
  CHECK(v == 301);
  EXPECT_OK(shmpool_decr_i64(p, i, &v, &err));
  CHECK(v == 300);
  EXPECT_OK(shmpool_xchg_i64(p, i, INT64_MAX, NULL, &err));
  EXPECT_OK(shmpool_incr_i64(p, i, NULL, &err)); /* wraps like the hardware */
  EXPECT_OK(shmpool_get_i64(p, i, &v, &err));
  CHECK(v == INT64_MIN);
  EXPECT_CODE(SHMPOOL_EINVAL, shmpool_get_i64(p, i, NULL, &err));
  EXPECT_CODE(SHMPOOL_EINVAL, shmpool_cas_i64(p, i, 0, 0, NULL, &err));
  EXPECT_CODE(SHMPOOL_ERANGE, shmpool_set_i64(p, 10, 1, &err));
  EXPECT_CODE(SHMPOOL_ENOTALLOC, shmpool_add_i64(p, (i + 1) % 10, 1, &v, &err));
  EXPECT_CODE(SHMPOOL_EWRONGVARIANT, shmpool_get_i32(p, i, &w, &err));
  EXPECT_CODE(SHMPOOL_EWRONGVARIANT, shmpool_set_f64(p, i, 1.0, &err));

  EXPECT_OK(shmpool_alloc(q, &j, &err));
  EXPECT_OK(shmpool_set_i32(q, j, 7, &err));
  EXPECT_OK(shmpool_add_i32(q, j, -10, &w, &err));
  CHECK(w == -3);
  EXPECT_OK(shmpool_cas_i32(q, j, -3, 5, &swapped, &err));
  CHECK(swapped == 1);
  EXPECT_OK(shmpool_cmpxchg_i32(q, j, 4, 6, &w, &err));
  CHECK(w == 5); /* no swap: returns what it held */
  EXPECT_OK(shmpool_xchg_i32(q, j, INT32_MAX, &w, &err));
  CHECK(w == 5);
  EXPECT_OK(shmpool_incr_i32(q, j, &w, &err));
  CHECK(w == INT32_MIN);
  EXPECT_OK(shmpool_decr_i32(q, j, &w, &err));
  CHECK(w == INT32_MAX);
  EXPECT_OK(shmpool_get_i32(q, j, &w, &err));
  CHECK(w == INT32_MAX);
  EXPECT_CODE(SHMPOOL_EWRONGVARIANT, shmpool_incr_i64(q, j, &v, &err));
  EXPECT_CODE(SHMPOOL_ENOTALLOC, shmpool_get_i32(q, (j + 1) % 10, &w, &err));

  CHECK(shmpool_close(p) == SHMPOOL_OK && shmpool_close(q) == SHMPOOL_OK);
}

static void test_f64_and_str(void) {
  shmpool_error err;
  shmpool_t *f = shmpool_memfd("c_api_f64", SHMPOOL_VARIANT_F64, 4, 8, &err);
  shmpool_t *s = shmpool_open(path_in_dir("s.shm"), SHMPOOL_VARIANT_STR, 4, 8, &err);
  uint64_t i = 0, max_len = 0;
  double d = 0;
  char buf[16];
  size_t len = 0;
  CHECK(f != NULL && s != NULL);
  if (f == NULL || s == NULL) return;
  EXPECT_OK(shmpool_alloc(f, &i, &err));
  EXPECT_OK(shmpool_set_f64(f, i, 2.5, &err));
  EXPECT_OK(shmpool_get_f64(f, i, &d, &err));
  CHECK(d == 2.5);
  EXPECT_CODE(SHMPOOL_ERANGE, shmpool_get_f64(f, 4, &d, &err));
  EXPECT_CODE(SHMPOOL_EWRONGVARIANT, shmpool_get_str(f, i, buf, sizeof buf, &len, &err));

  EXPECT_OK(shmpool_max_len(s, &max_len, &err));
  CHECK(max_len == 8);
  EXPECT_OK(shmpool_alloc(s, &i, &err));
  EXPECT_OK(shmpool_set_str(s, i, "abc", 3, &err));
  memset(buf, 'x', sizeof buf);
  EXPECT_OK(shmpool_get_str(s, i, buf, sizeof buf, &len, &err));
  CHECK(len == 3 && strcmp(buf, "abc") == 0);
  EXPECT_OK(shmpool_set_str(s, i, "a longer string", 15, &err)); /* truncated to max_len */
  EXPECT_OK(shmpool_get_str(s, i, buf, sizeof buf, &len, &err));
  CHECK(len == 8 && strcmp(buf, "a longer") == 0);
  memset(buf, 'x', sizeof buf);
  EXPECT_OK(shmpool_get_str(s, i, buf, 4, &len, &err)); /* too small: len says so */
  CHECK(len == 8 && memcmp(buf, "a lo", 4) == 0 && buf[4] == 'x');
  EXPECT_OK(shmpool_get_str(s, i, NULL, 0, &len, &err)); /* the length alone */
  CHECK(len == 8);
  EXPECT_OK(shmpool_set_str(s, i, "a\0b", 3, &err)); /* NULs are bytes */
  EXPECT_OK(shmpool_get_str(s, i, buf, sizeof buf, &len, &err));
  CHECK(len == 3 && memcmp(buf, "a\0b", 4) == 0);
  EXPECT_OK(shmpool_set_str(s, i, NULL, 0, &err));
  EXPECT_OK(shmpool_get_str(s, i, buf, sizeof buf, &len, &err));
  CHECK(len == 0 && buf[0] == '\0');
  EXPECT_CODE(SHMPOOL_EINVAL, shmpool_set_str(s, i, NULL, 2, &err));
  EXPECT_CODE(SHMPOOL_EINVAL, shmpool_get_str(s, i, NULL, 4, &len, &err));
  EXPECT_CODE(SHMPOOL_ENOTALLOC, shmpool_set_str(s, (i + 1) % 4, "x", 1, &err));
  CHECK(shmpool_close(f) == SHMPOOL_OK && shmpool_close(s) == SHMPOOL_OK);
}

static void test_memfd_and_from_fd(void) {
  shmpool_error err;
  shmpool_t *a = shmpool_memfd("c_api_i64", SHMPOOL_VARIANT_I64, 4, 0, &err);
  shmpool_t *b = NULL;
  int fd = -1, file_fd = -1;
  uint64_t i = 0;
  int64_t v = 0;
  pid_t owner = 0;
  CHECK(a != NULL);
  if (a == NULL) return;
  EXPECT_OK(shmpool_memfd_fd(a, &fd, &err));
  CHECK(fd >= 0);
  b = shmpool_from_fd(fd, SHMPOOL_VARIANT_I64, &err);
  CHECK(b != NULL && err.code == SHMPOOL_OK);
  if (b == NULL) return;
  EXPECT_OK(shmpool_alloc(a, &i, &err));
  EXPECT_OK(shmpool_set_i64(a, i, 7, &err));
  EXPECT_OK(shmpool_get_i64(b, i, &v, &err));
  CHECK(v == 7); /* the same memory */
  EXPECT_OK(shmpool_owner(b, i, &owner, &err));
  CHECK(owner == getpid());
  CHECK(shmpool_from_fd(fd, SHMPOOL_VARIANT_STR, &err) == NULL && err.code == SHMPOOL_EWRONGVARIANT);
  CHECK(shmpool_from_fd(-1, SHMPOOL_VARIANT_I64, &err) == NULL);
  CHECK(err.code == SHMPOOL_ESYSTEM && err.sys_errno == EBADF);
  CHECK(shmpool_from_fd(fd, 0, &err) == NULL && err.code == SHMPOOL_EINVAL);

  /* A file that is not a pool. */
  file_fd = open(path_in_dir("junk"), O_RDWR | O_CREAT | O_TRUNC, 0600);
  CHECK(file_fd >= 0 && write(file_fd, "this is not a pool, only some junk bytes................", 56) == 56);
  CHECK(shmpool_from_fd(file_fd, SHMPOOL_VARIANT_I64, &err) == NULL && err.code < 0);
  CHECK(shmpool_open(path_in_dir("junk"), SHMPOOL_VARIANT_I64, 4, 0, &err) == NULL);
  CHECK(err.code == SHMPOOL_EBADMAGIC || err.code == SHMPOOL_ETRUNCATED);
  CHECK(strstr(err.message, "junk") != NULL);
  close(file_fd);

  CHECK(shmpool_close(b) == SHMPOOL_OK && shmpool_close(a) == SHMPOOL_OK);
}

static void note_problem(const char *problem, void *context) {
  CHECK(problem != NULL && problem[0] != '\0');
  ++*(int *)context;
}

static void test_check_and_eventfd(void) {
  shmpool_error err;
  shmpool_t *p = shmpool_open(path_in_dir("chk.shm"), SHMPOOL_VARIANT_I64, 4, 8, &err);
  size_t problems = 99;
  int calls = 0, fd = -1, other = -1, fd_file = -1;
  uint64_t count = 9;
  CHECK(p != NULL);
  if (p == NULL) return;
  EXPECT_OK(shmpool_check(p, note_problem, &calls, &problems, &err));
  CHECK(problems == 0 && calls == 0);
  EXPECT_OK(shmpool_check(p, NULL, NULL, NULL, &err));

  /* eventfd: none, the pool's own, the caller's, detached. */
  EXPECT_OK(shmpool_fileno(p, &fd, &err));
  CHECK(fd == -1);
  EXPECT_CODE(SHMPOOL_EFAILED, shmpool_notify(p, &err));
  EXPECT_OK(shmpool_eventfd_consume(p, &count, &err));
  CHECK(count == 0);
  EXPECT_OK(shmpool_eventfd(p, &fd, &err));
  CHECK(fd >= 0);
  EXPECT_OK(shmpool_fileno(p, &other, &err));
  CHECK(other == fd);
  EXPECT_OK(shmpool_notify(p, &err));
  EXPECT_OK(shmpool_notify(p, &err));
  EXPECT_OK(shmpool_eventfd_consume(p, &count, &err));
  CHECK(count == 2);
  EXPECT_CODE(SHMPOOL_EINVAL, shmpool_eventfd_set(p, -5, &err));
  EXPECT_OK(shmpool_eventfd_set(p, -1, &err));
  EXPECT_OK(shmpool_fileno(p, &fd, &err));
  CHECK(fd == -1);

  /* A header changed under the handle: check() reports it through fn. */
  fd_file = open(path_in_dir("chk.shm"), O_RDWR);
  CHECK(fd_file >= 0 && pwrite(fd_file, "XXXXXXXX", 8, 0) == 8);
  close(fd_file);
  EXPECT_OK(shmpool_check(p, note_problem, &calls, &problems, &err));
  CHECK(problems >= 1 && calls == (int)problems);
  CHECK(shmpool_close(p) == SHMPOOL_OK);
}

/* Every function refuses a NULL handle, and the constructors bad arguments. */
static void test_null_and_bad_arguments(void) {
  shmpool_error err;
  uint64_t u = 0;
  int64_t v = 0;
  int32_t w = 0;
  int n = 0;
  double d = 0;
  size_t z = 0;
  pid_t pid = 0;
  void *ptr = NULL;
  char buf[4];
  shmpool_stats st;
  st.size = sizeof st;
  CHECK(shmpool_close(NULL) == SHMPOOL_EINVAL);
  EXPECT_CODE(SHMPOOL_EINVAL, shmpool_alloc(NULL, &u, &err));
  CHECK(strstr(err.message, "NULL") != NULL);
  EXPECT_CODE(SHMPOOL_EINVAL, shmpool_alloc_timeout(NULL, 0, &u, &err));
  EXPECT_CODE(SHMPOOL_EINVAL, shmpool_try_alloc(NULL, &u, &err));
  EXPECT_CODE(SHMPOOL_EINVAL, shmpool_free(NULL, 0, &err));
  EXPECT_CODE(SHMPOOL_EINVAL, shmpool_free_if_mine(NULL, 0, &err));
  EXPECT_CODE(SHMPOOL_EINVAL, shmpool_alloc_n(NULL, 1, &u, 0, &err));
  EXPECT_CODE(SHMPOOL_EINVAL, shmpool_free_n(NULL, &u, 1, &z, &err));
  EXPECT_CODE(SHMPOOL_EINVAL, shmpool_get(NULL, 0, buf, 4, &err));
  EXPECT_CODE(SHMPOOL_EINVAL, shmpool_set(NULL, 0, buf, 4, &err));
  EXPECT_CODE(SHMPOOL_EINVAL, shmpool_get_str(NULL, 0, buf, 4, &z, &err));
  EXPECT_CODE(SHMPOOL_EINVAL, shmpool_set_str(NULL, 0, "x", 1, &err));
  EXPECT_CODE(SHMPOOL_EINVAL, shmpool_max_len(NULL, &u, &err));
  EXPECT_CODE(SHMPOOL_EINVAL, shmpool_get_i64(NULL, 0, &v, &err));
  EXPECT_CODE(SHMPOOL_EINVAL, shmpool_set_i64(NULL, 0, 1, &err));
  EXPECT_CODE(SHMPOOL_EINVAL, shmpool_cas_i64(NULL, 0, 1, 2, &n, &err));
  EXPECT_CODE(SHMPOOL_EINVAL, shmpool_cmpxchg_i64(NULL, 0, 1, 2, &v, &err));
  EXPECT_CODE(SHMPOOL_EINVAL, shmpool_xchg_i64(NULL, 0, 1, &v, &err));
  EXPECT_CODE(SHMPOOL_EINVAL, shmpool_add_i64(NULL, 0, 1, &v, &err));
  EXPECT_CODE(SHMPOOL_EINVAL, shmpool_incr_i64(NULL, 0, &v, &err));
  EXPECT_CODE(SHMPOOL_EINVAL, shmpool_decr_i64(NULL, 0, &v, &err));
  EXPECT_CODE(SHMPOOL_EINVAL, shmpool_get_i32(NULL, 0, &w, &err));
  EXPECT_CODE(SHMPOOL_EINVAL, shmpool_set_i32(NULL, 0, 1, &err));
  EXPECT_CODE(SHMPOOL_EINVAL, shmpool_cas_i32(NULL, 0, 1, 2, &n, &err));
  EXPECT_CODE(SHMPOOL_EINVAL, shmpool_cmpxchg_i32(NULL, 0, 1, 2, &w, &err));
  EXPECT_CODE(SHMPOOL_EINVAL, shmpool_xchg_i32(NULL, 0, 1, &w, &err));
  EXPECT_CODE(SHMPOOL_EINVAL, shmpool_add_i32(NULL, 0, 1, &w, &err));
  EXPECT_CODE(SHMPOOL_EINVAL, shmpool_incr_i32(NULL, 0, &w, &err));
  EXPECT_CODE(SHMPOOL_EINVAL, shmpool_decr_i32(NULL, 0, &w, &err));
  EXPECT_CODE(SHMPOOL_EINVAL, shmpool_get_f64(NULL, 0, &d, &err));
  EXPECT_CODE(SHMPOOL_EINVAL, shmpool_set_f64(NULL, 0, 1.0, &err));
  EXPECT_CODE(SHMPOOL_EINVAL, shmpool_slot_ptr(NULL, 0, &ptr, &err));
  EXPECT_CODE(SHMPOOL_EINVAL, shmpool_data_ptr(NULL, &ptr, &err));
  EXPECT_CODE(SHMPOOL_EINVAL, shmpool_is_allocated(NULL, 0, &n, &err));
  EXPECT_CODE(SHMPOOL_EINVAL, shmpool_owner(NULL, 0, &pid, &err));
  EXPECT_CODE(SHMPOOL_EINVAL, shmpool_used(NULL, &u, &err));
  EXPECT_CODE(SHMPOOL_EINVAL, shmpool_available(NULL, &u, &err));
  EXPECT_CODE(SHMPOOL_EINVAL, shmpool_capacity(NULL, &u, &err));
  EXPECT_CODE(SHMPOOL_EINVAL, shmpool_elem_size(NULL, &u, &err));
  EXPECT_CODE(SHMPOOL_EINVAL, shmpool_variant(NULL, &n, &err));
  EXPECT_CODE(SHMPOOL_EINVAL, shmpool_get_stats(NULL, &st, &err));
  EXPECT_CODE(SHMPOOL_EINVAL, shmpool_recover_stale(NULL, &z, &err));
  EXPECT_CODE(SHMPOOL_EINVAL, shmpool_release_owner(NULL, 1, &z, &err));
  EXPECT_CODE(SHMPOOL_EINVAL, shmpool_reset(NULL, &err));
  EXPECT_CODE(SHMPOOL_EINVAL, shmpool_check(NULL, NULL, NULL, &z, &err));
  EXPECT_CODE(SHMPOOL_EINVAL, shmpool_memfd_fd(NULL, &n, &err));
  EXPECT_CODE(SHMPOOL_EINVAL, shmpool_sync(NULL, &err));
  EXPECT_CODE(SHMPOOL_EINVAL, shmpool_unlink(NULL, &err));
  EXPECT_CODE(SHMPOOL_EINVAL, shmpool_eventfd(NULL, &n, &err));
  EXPECT_CODE(SHMPOOL_EINVAL, shmpool_eventfd_set(NULL, -1, &err));
  EXPECT_CODE(SHMPOOL_EINVAL, shmpool_fileno(NULL, &n, &err));
  EXPECT_CODE(SHMPOOL_EINVAL, shmpool_notify(NULL, &err));
  EXPECT_CODE(SHMPOOL_EINVAL, shmpool_eventfd_consume(NULL, &u, &err));

  /* Constructors: NULL names, unknown variants, sizes out of range, a
   * directory that does not exist. */
  CHECK(shmpool_open(NULL, SHMPOOL_VARIANT_RAW, 4, 8, &err) == NULL && err.code == SHMPOOL_EINVAL);
  CHECK(shmpool_memfd(NULL, SHMPOOL_VARIANT_RAW, 4, 8, &err) == NULL && err.code == SHMPOOL_EINVAL);
  CHECK(shmpool_anonymous(42, 4, 8, &err) == NULL && err.code == SHMPOOL_EINVAL);
  CHECK(strstr(err.message, "42") != NULL);
  CHECK(shmpool_anonymous(SHMPOOL_VARIANT_I64, 4, 3, &err) == NULL && err.code == SHMPOOL_EINVAL);
  CHECK(shmpool_anonymous(SHMPOOL_VARIANT_RAW, 0, 8, &err) == NULL && err.code == SHMPOOL_EBADARG);
  CHECK(shmpool_anonymous(SHMPOOL_VARIANT_RAW, 4, 0, NULL) == NULL); /* err is optional */
  CHECK(shmpool_open(path_in_dir("no/such/dir/p.shm"), SHMPOOL_VARIANT_RAW, 4, 8, &err) == NULL);
  CHECK(err.code == SHMPOOL_ESYSTEM && err.sys_errno == ENOENT);
  CHECK(strcmp(shmpool_strerror(SHMPOOL_ERANGE), "SHMPOOL_ERANGE: slot index out of range") == 0);
  CHECK(shmpool_strerror(12345) != NULL);
}

/* A holder killed with SIGKILL: its slot is recovered by recover_stale;
 * a living holder's slot is freed only by release_owner; a sleeping alloc is
 * woken by a free from another process.  C API only. */
static void test_processes(void) {
  shmpool_error err;
  const char *path = path_in_dir("procs.shm");
  shmpool_t *p = shmpool_open(path, SHMPOOL_VARIANT_I64, 2, 0, &err);
  int ready[2];
  pid_t child, owner = 0;
  uint64_t slot = 0, used = 0, mine = 0;
  size_t freed = 0;
  int status = 0, allocated = 1;
  CHECK(p != NULL && pipe(ready) == 0);
  if (p == NULL) return;

  child = fork();
  if (child == 0) { /* the holder: its own handle, one slot, then waits to die */
    shmpool_t *q = shmpool_open(path, SHMPOOL_VARIANT_I64, 2, 0, NULL);
    uint64_t s = 0;
    if (q == NULL || shmpool_alloc(q, &s, NULL) != SHMPOOL_OK || shmpool_set_i64(q, s, 11, NULL) != SHMPOOL_OK) _exit(2);
    if (write(ready[1], &s, sizeof s) != (ssize_t)sizeof s) _exit(3);
    for (;;) pause();
  }
  CHECK(child > 0 && read(ready[0], &slot, sizeof slot) == (ssize_t)sizeof slot);
  EXPECT_OK(shmpool_owner(p, slot, &owner, &err));
  CHECK(owner == child);
  EXPECT_OK(shmpool_recover_stale(p, &freed, &err));
  CHECK(freed == 0); /* alive: keeps its slot */
  CHECK(kill(child, SIGKILL) == 0 && waitpid(child, &status, 0) == child);
  CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  EXPECT_OK(shmpool_recover_stale(p, &freed, &err));
  CHECK(freed == 1);
  EXPECT_OK(shmpool_is_allocated(p, slot, &allocated, &err));
  CHECK(allocated == 0);

  /* release_owner frees a living process's slots. */
  child = fork();
  if (child == 0) {
    shmpool_t *q = shmpool_open(path, SHMPOOL_VARIANT_I64, 2, 0, NULL);
    uint64_t s = 0;
    if (q == NULL || shmpool_alloc(q, &s, NULL) != SHMPOOL_OK) _exit(2);
    if (write(ready[1], &s, sizeof s) != (ssize_t)sizeof s) _exit(3);
    for (;;) pause();
  }
  CHECK(child > 0 && read(ready[0], &slot, sizeof slot) == (ssize_t)sizeof slot);
  EXPECT_CODE(SHMPOOL_EINVAL, shmpool_release_owner(p, 0, &freed, &err));
  EXPECT_OK(shmpool_release_owner(p, child, &freed, &err));
  CHECK(freed == 1);
  CHECK(kill(child, SIGKILL) == 0 && waitpid(child, &status, 0) == child);

  /* A blocked alloc in another process is woken by this process's free. */
  EXPECT_OK(shmpool_alloc_n(p, 2, (uint64_t[2]){0, 0}, -1, &err));
  child = fork();
  if (child == 0) {
    shmpool_t *q = shmpool_open(path, SHMPOOL_VARIANT_I64, 2, 0, NULL);
    uint64_t s = 0;
    _exit(q != NULL && shmpool_alloc(q, &s, NULL) == SHMPOOL_OK && s == 0 ? 0 : 1);
  }
  EXPECT_OK(shmpool_free(p, 0, &err));
  CHECK(child > 0 && waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_OK(shmpool_recover_stale(p, &freed, &err)); /* the child exited holding slot 0 */
  CHECK(freed == 1);
  EXPECT_OK(shmpool_used(p, &used, &err));
  CHECK(used == 1);
  EXPECT_OK(shmpool_free_if_mine(p, 1, &err));
  EXPECT_OK(shmpool_try_alloc(p, &mine, &err));
  CHECK(shmpool_close(p) == SHMPOOL_OK);
  close(ready[0]);
  close(ready[1]);
}

/* The C++ errors that need a particular file or environment, each as its
 * documented code: a truncated pool file, a pool larger than memory, and a
 * process that cannot read its own identity (no fd left for /proc/self/stat). */
static void test_environment_errors(void) {
  shmpool_error err;
  const char *path = path_in_dir("trunc.shm");
  shmpool_t *p = shmpool_open(path, SHMPOOL_VARIANT_I64, 64, 0, &err);
  pid_t child;
  int status = 0;
  CHECK(p != NULL);
  if (p == NULL) return;
  CHECK(shmpool_close(p) == SHMPOOL_OK);
  CHECK(truncate(path, 100) == 0);
  CHECK(shmpool_open(path, SHMPOOL_VARIANT_I64, 64, 0, &err) == NULL && err.code == SHMPOOL_ETRUNCATED);

  /* About 1000 GiB (under the format's 1 TiB limit): more than this
   * machine's memory and swap, so refused before anything is reserved. */
  CHECK(shmpool_anonymous(SHMPOOL_VARIANT_RAW, 1000u * 1024u, 1u << 20, &err) == NULL);
  CHECK(err.code == SHMPOOL_EEXCEEDS);

  p = shmpool_anonymous(SHMPOOL_VARIANT_I64, 4, 0, &err);
  CHECK(p != NULL);
  if (p == NULL) return;
  child = fork(); /* a fork child computes its own identity on first use */
  if (child == 0) {
    uint64_t slot = 0, used = 1;
    shmpool_error e;
    while (dup(0) >= 0) {
    }
    if (shmpool_alloc(p, &slot, &e) != SHMPOOL_EIDENTITY || e.code != SHMPOOL_EIDENTITY) _exit(1);
    if (shmpool_used(p, &used, NULL) != SHMPOOL_OK || used != 0) _exit(2); /* no slot was touched */
    _exit(0);
  }
  CHECK(child > 0 && waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0);
  CHECK(shmpool_close(p) == SHMPOOL_OK);
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "--abi") == 0) {
    printf("struct shmpool_error %u\n", (unsigned)sizeof(shmpool_error));
    printf("struct shmpool_stats %u\n", (unsigned)sizeof(shmpool_stats));
    return 0;
  }
  /* Every blocking call here is woken within milliseconds: a wake that
     never comes fails the run now (SIGALRM) instead of at ctest's timeout. */
  alarm(60);
  if (mkdtemp(dir) == NULL) {
    perror("mkdtemp");
    return 1;
  }
  test_raw_pool();
  test_batches_and_timeouts();
  test_integers();
  test_f64_and_str();
  test_memfd_and_from_fd();
  test_check_and_eventfd();
  test_null_and_bad_arguments();
  test_processes();
  test_environment_errors();
  {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
  }
  if (failures != 0) {
    fprintf(stderr, "c_api_test: %d check(s) failed\n", failures);
    return 1;
  }
  printf("c_api_test: ok\n");
  return 0;
}
