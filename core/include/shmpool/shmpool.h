/** @file
 * The C API of shmpool: the same pool, the same core, for C programs and for
 * every language with a C foreign-function interface (Python ctypes, Perl
 * XS/FFI, Rust, Go cgo, ...).
 *
 * ~~~{.txt}
 * WHAT IT IS
 *   A thin layer over the C++ API of <shmpool/pool.hpp>: every function
 *   below calls one member of shmpool::pool (or i64_pool, i32_pool,
 *   f64_pool, str_pool) and turns its result and its exceptions into a
 *   status.  The slot protocol, the crash recovery, the owner identity
 *   (pid + start time), the validation of hostile files and every bound
 *   check are the C++ core's: the guarantees of pool.hpp (GUARANTEES,
 *   CONCURRENT DATA ACCESS) hold here word for word.
 *
 * HANDLES
 *   One opaque handle type, shmpool_t, for every variant (raw, i64, i32,
 *   f64, str) and every backing (file, anonymous, memfd, attached fd).
 *   A handle may be used by many threads at once, every function included,
 *   except shmpool_close(), which must be the last call on the handle.
 *   Any number of processes may use one pool, each through its own handle
 *   (a fork child may use the handle it inherited).
 *
 * STATUS AND ERRORS
 *   Every function returns SHMPOOL_OK (0) or a negative SHMPOOL_E... code,
 *   except the four constructors, which return the handle or NULL (as
 *   fopen does); shmpool_strerror() names a code.  Every function that
 *   takes a shmpool_error* fills it when it is not NULL: code (as
 *   returned), sys_errno (the errno of a failing system call, else 0) and
 *   a NUL-terminated message naming the pool, the slot and why (empty on
 *   success).  Results come back through out-parameters, written only on
 *   success.
 *   No C++ exception ever crosses this boundary: every function catches
 *   everything (and is declared noexcept when compiled as C++).  A NULL handle, a NULL pointer argument that is not
 *   documented as optional, or an unknown variant returns SHMPOOL_EINVAL.
 *
 * VARIANT CHECKS
 *   The typed functions (_i64, _i32, _f64, _str, and the raw get/set)
 *   return SHMPOOL_EWRONGVARIANT on a handle of another variant.  The
 *   functions without a suffix work on every variant.
 *
 * NOT HERE
 *   stable_reference_buffer stays C++: its point is the lifetime of C++
 *   objects shared by C++ libraries, which a C caller has none of.  Slot
 *   guards (RAII) are C++ only; use shmpool_free_if_mine().
 *
 * ABI
 *   shmpool_error and shmpool_stats only ever grow at their end; the
 *   exported shmpool_* symbols and the struct sizes are recorded in
 *   core/abi/shmpool_c_abi.txt and checked by ctest -L embedding.
 *   shmpool_stats carries its own size, so an older caller keeps working
 *   with a newer library.
 * ~~~
 */
#ifndef SHMPOOL_SHMPOOL_H
#define SHMPOOL_SHMPOOL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifndef SHMPOOL_C_EXPORT
#if defined(__GNUC__)
/** Marks a function of the C API as exported from the shared library
 *  (visible even when the library is built with -fvisibility=hidden). */
#define SHMPOOL_C_EXPORT __attribute__((visibility("default")))
#else
/** Marks a function of the C API as exported (nothing to do here). */
#define SHMPOOL_C_EXPORT
#endif
#endif

#if defined(__cplusplus)
/** In C++, every function is noexcept: no exception crosses the C API. */
#define SHMPOOL_NOEXCEPT noexcept
#else
/** In C, nothing (C has no exceptions). */
#define SHMPOOL_NOEXCEPT
#endif

/* ---- variants ---------------------------------------------------------- */

/** Raw bytes of any elem_size (shmpool::pool). */
#define SHMPOOL_VARIANT_RAW 1
/** One int64_t per slot (shmpool::i64_pool). */
#define SHMPOOL_VARIANT_I64 2
/** One int32_t per slot (shmpool::i32_pool). */
#define SHMPOOL_VARIANT_I32 3
/** One double per slot (shmpool::f64_pool). */
#define SHMPOOL_VARIANT_F64 4
/** A string of up to max_len bytes per slot (shmpool::str_pool). */
#define SHMPOOL_VARIANT_STR 5

/* ---- status codes ------------------------------------------------------ */

/** Success. */
#define SHMPOOL_OK 0
/** A NULL handle or pointer, an unknown variant, a NaN or other bad
 *  argument of the call itself (C++ std::invalid_argument), e.g. alloc_n of
 *  more than the capacity, release_owner of pid <= 0, a bad eventfd. */
#define SHMPOOL_EINVAL (-1)
/** The slot index is >= the capacity (C++ std::out_of_range). */
#define SHMPOOL_ERANGE (-2)
/** Data access to a slot that is not allocated (C++ std::logic_error); also
 *  shmpool_free() of a slot that was not allocated (nothing changed). */
#define SHMPOOL_ENOTALLOC (-3)
/** shmpool_try_alloc() / alloc_n with timeout 0: the pool is full. */
#define SHMPOOL_EFULL (-4)
/** A timed alloc: no slot became free in time (nothing is held). */
#define SHMPOOL_ETIMEDOUT (-5)
/** shmpool_free_if_mine(): this process does not hold the slot (nothing
 *  changed). */
#define SHMPOOL_ENOTOWNER (-6)
/** A system call failed: its errno is in shmpool_error.sys_errno. */
#define SHMPOOL_ESYSTEM (-7)
/** Memory ran out (C++ std::bad_alloc). */
#define SHMPOOL_ENOMEM (-8)
/** An operation that reports only failure failed: shmpool_notify() (no
 *  eventfd, or the write failed), shmpool_unlink() (no path, or unlink
 *  failed). */
#define SHMPOOL_EFAILED (-9)
/** Not a shmpool region. */
#define SHMPOOL_EBADMAGIC (-10)
/** A shmpool region of another format version or layout. */
#define SHMPOOL_EUNSUPPORTED (-11)
/** The pool (or the handle, for a typed function) is of another variant. */
#define SHMPOOL_EWRONGVARIANT (-12)
/** The file is smaller than its header says. */
#define SHMPOOL_ETRUNCATED (-13)
/** The header's fields disagree with each other. */
#define SHMPOOL_ELAYOUT (-14)
/** The header fails its checksum or a range check. */
#define SHMPOOL_ECORRUPT (-15)
/** capacity, elem_size, max_len or a memfd name out of range, or a path
 *  that is not a regular file. */
#define SHMPOOL_EBADARG (-16)
/** An existing pool has another capacity, elem_size or max_len. */
#define SHMPOOL_EPARAMMISMATCH (-17)
/** This process's owner identity cannot be determined (/proc unreadable);
 *  no slot was touched. */
#define SHMPOOL_EIDENTITY (-18)
/** The new pool is larger than its backing can hold. */
#define SHMPOOL_EEXCEEDS (-19)
/** An error the C API does not know (a bug: report it). */
#define SHMPOOL_EUNKNOWN (-99)

/* ---- structs ----------------------------------------------------------- */

/** Size of shmpool_error.message, the terminating NUL included. */
#define SHMPOOL_ERROR_MESSAGE_SIZE 256

/** What went wrong, filled by every function that takes one (optional:
 *  pass NULL).  Grows only at its end. */
typedef struct shmpool_error {
  int code;      /**< the status returned: SHMPOOL_OK or a SHMPOOL_E... code */
  int sys_errno; /**< the errno of a failing system call (SHMPOOL_ESYSTEM), else 0 */
  char message[SHMPOOL_ERROR_MESSAGE_SIZE]; /**< NUL-terminated, truncated to fit; "" on success */
} shmpool_error;

/** The pool's counters and gauges (C++ shmpool::pool_stats says what each
 *  means and how exact it is).  Set size to sizeof(shmpool_stats) before
 *  the call; the library fills the fields that fit in size bytes and sets
 *  size to the bytes it filled.  New fields are only ever added at the end. */
typedef struct shmpool_stats {
  uint64_t size;       /**< in: bytes the caller provides; out: bytes filled */
  uint64_t capacity;   /**< slots (immutable) */
  uint64_t elem_size;  /**< bytes per slot (immutable) */
  uint64_t used;       /**< gauge: slots allocated or being claimed/released */
  uint64_t available;  /**< gauge: capacity - used */
  uint64_t waiters;    /**< gauge: threads registered asleep in alloc */
  uint64_t mmap_size;  /**< bytes mapped */
  uint64_t allocs;     /**< counter: allocations published */
  uint64_t frees;      /**< counter: allocations ended */
  uint64_t waits;      /**< counter: alloc calls that had to wait */
  uint64_t timeouts;   /**< counter: waits that ended without slots */
  uint64_t recoveries; /**< counter: slots freed by recover_stale/release_owner */
} shmpool_stats;

/** The opaque handle of one pool of any variant and backing. */
typedef struct shmpool_handle shmpool_t;

/** Called by shmpool_check() once per problem, with a NUL-terminated
 *  description valid during the call, and the caller's context. */
typedef void (*shmpool_problem_fn)(const char *problem, void *context);

/** A constant English name of a status code ("SHMPOOL_ERANGE: ..."), never
 *  NULL.  Thread-safe, no system call. */
SHMPOOL_C_EXPORT const char *shmpool_strerror(int code) SHMPOOL_NOEXCEPT;

/* ---- open and close ---------------------------------------------------- */

/** Opens the pool of the given variant at path, or creates it with
 *  capacity slots.  elem_size_or_max_len is the slot size in bytes (RAW),
 *  the longest string (STR), or 0 or the natural size (8, 4, 8) for I64,
 *  I32, F64.  Any number of threads and processes may open one path at
 *  once: exactly one pool is published there (pool.hpp, class pool).
 *  Blocks only on the file lock of an opener that is building the pool.
 *  System calls: open, fstat, pread, ftruncate, fallocate, mmap, ...
 *  @return the handle, or NULL with err filled: SHMPOOL_EINVAL (NULL path,
 *  unknown variant, a wrong elem size for I64/I32/F64), SHMPOOL_EBADARG,
 *  SHMPOOL_EEXCEEDS, SHMPOOL_EPARAMMISMATCH, SHMPOOL_EWRONGVARIANT,
 *  SHMPOOL_EBADMAGIC, SHMPOOL_EUNSUPPORTED, SHMPOOL_ETRUNCATED,
 *  SHMPOOL_ELAYOUT, SHMPOOL_ECORRUPT, SHMPOOL_ESYSTEM (e.g. ELOOP for a
 *  symbolic link), SHMPOOL_ENOMEM. */
SHMPOOL_C_EXPORT shmpool_t *shmpool_open(const char *path, int variant, uint64_t capacity,
                                         uint64_t elem_size_or_max_len, shmpool_error *err) SHMPOOL_NOEXCEPT;
/** A new unnamed pool, shared with fork children only.  Arguments and
 *  errors as shmpool_open (no path). */
SHMPOOL_C_EXPORT shmpool_t *shmpool_anonymous(int variant, uint64_t capacity, uint64_t elem_size_or_max_len,
                                              shmpool_error *err) SHMPOOL_NOEXCEPT;
/** A new pool in a memfd named name (at most 249 bytes), sealed against
 *  shrinking and growing; hand shmpool_memfd_fd() to another process, which
 *  calls shmpool_from_fd().  Arguments and errors as shmpool_open. */
SHMPOOL_C_EXPORT shmpool_t *shmpool_memfd(const char *name, int variant, uint64_t capacity,
                                          uint64_t elem_size_or_max_len, shmpool_error *err) SHMPOOL_NOEXCEPT;
/** Attaches the pool of fd (a memfd or a pool file) after validating it;
 *  the handle keeps its own duplicate, the caller keeps and closes fd.
 *  @return the handle, or NULL with err filled: SHMPOOL_EINVAL (unknown
 *  variant), SHMPOOL_EWRONGVARIANT, SHMPOOL_EBADMAGIC, ..., SHMPOOL_ESYSTEM
 *  (EBADF for a closed fd), SHMPOOL_ENOMEM. */
SHMPOOL_C_EXPORT shmpool_t *shmpool_from_fd(int fd, int variant, shmpool_error *err) SHMPOOL_NOEXCEPT;
/** Destroys the handle: unmaps the pool and closes its own memfd and
 *  eventfd (never a caller's).  Frees no slot (slots this process holds stay
 *  allocated until freed or recovered).  Must be the last call on the
 *  handle, by one thread.  Never blocks.
 *  @return SHMPOOL_OK, or SHMPOOL_EINVAL for NULL. */
SHMPOOL_C_EXPORT int shmpool_close(shmpool_t *pool) SHMPOOL_NOEXCEPT;

/* ---- allocation -------------------------------------------------------- */

/** Claims a free slot into *slot, sleeping (futex, no CPU) while the pool is
 *  full.  Lock-free fast path, no system call.
 *  @return SHMPOOL_OK, SHMPOOL_EINVAL, SHMPOOL_EIDENTITY. */
SHMPOOL_C_EXPORT int shmpool_alloc(shmpool_t *pool, uint64_t *slot, shmpool_error *err) SHMPOOL_NOEXCEPT;
/** As shmpool_alloc, waiting at most timeout_ns nanoseconds: 0 tries once,
 *  a negative timeout waits forever.
 *  @return SHMPOOL_OK, SHMPOOL_ETIMEDOUT (counted in stats.timeouts),
 *  SHMPOOL_EINVAL, SHMPOOL_EIDENTITY. */
SHMPOOL_C_EXPORT int shmpool_alloc_timeout(shmpool_t *pool, int64_t timeout_ns, uint64_t *slot,
                                           shmpool_error *err) SHMPOOL_NOEXCEPT;
/** Claims a free slot if there is one, never waiting; no system call.
 *  @return SHMPOOL_OK, SHMPOOL_EFULL, SHMPOOL_EINVAL, SHMPOOL_EIDENTITY. */
SHMPOOL_C_EXPORT int shmpool_try_alloc(shmpool_t *pool, uint64_t *slot, shmpool_error *err) SHMPOOL_NOEXCEPT;
/** The seed's free: frees the slot whoever holds it (a stale index frees
 *  someone else's allocation: see shmpool_free_if_mine).  Lock-free; one
 *  futex wake when a thread sleeps in alloc.
 *  @return SHMPOOL_OK (freed), SHMPOOL_ENOTALLOC (was not allocated; nothing
 *  changed), SHMPOOL_ERANGE, SHMPOOL_EINVAL, SHMPOOL_EIDENTITY. */
SHMPOOL_C_EXPORT int shmpool_free(shmpool_t *pool, uint64_t slot, shmpool_error *err) SHMPOOL_NOEXCEPT;
/** Frees the slot only if this process holds it.
 *  @return SHMPOOL_OK, SHMPOOL_ENOTOWNER (not this process's; nothing
 *  changed), SHMPOOL_ERANGE, SHMPOOL_EINVAL, SHMPOOL_EIDENTITY. */
SHMPOOL_C_EXPORT int shmpool_free_if_mine(shmpool_t *pool, uint64_t slot, shmpool_error *err) SHMPOOL_NOEXCEPT;
/** Claims n slots, all or none, into slots[0..n-1], waiting at most
 *  timeout_ns (0: try once; negative: forever).  n == 0 succeeds at once
 *  (slots may then be NULL).  A batch in flight holds the slots it has
 *  claimed (pool.hpp, GUARANTEES).
 *  @return SHMPOOL_OK, SHMPOOL_EFULL (timeout 0) or SHMPOOL_ETIMEDOUT
 *  (nothing is held then), SHMPOOL_EINVAL (n > capacity, NULL slots),
 *  SHMPOOL_EIDENTITY, SHMPOOL_ENOMEM. */
SHMPOOL_C_EXPORT int shmpool_alloc_n(shmpool_t *pool, size_t n, uint64_t *slots, int64_t timeout_ns,
                                     shmpool_error *err) SHMPOOL_NOEXCEPT;
/** Frees slots[0..n-1] as shmpool_free does, in order, then wakes sleepers
 *  once.  Every index is checked first: on a bad one nothing is freed.
 *  freed (optional) receives how many were allocated and are now free.
 *  @return SHMPOOL_OK, SHMPOOL_ERANGE, SHMPOOL_EINVAL, SHMPOOL_EIDENTITY. */
SHMPOOL_C_EXPORT int shmpool_free_n(shmpool_t *pool, const uint64_t *slots, size_t n, size_t *freed,
                                    shmpool_error *err) SHMPOOL_NOEXCEPT;

/* ---- data: raw bytes (RAW) and strings (STR) ---------------------------- */
/* Every data function: SHMPOOL_ERANGE when slot >= capacity, SHMPOOL_ENOTALLOC
 * when the slot is not allocated, SHMPOOL_EWRONGVARIANT on a handle of another
 * variant, SHMPOOL_EINVAL for NULL arguments.  No system call, no lock. */

/** Copies min(size, elem_size) bytes of the slot into buf.  Not atomic
 *  (pool.hpp, CONCURRENT DATA ACCESS). */
SHMPOOL_C_EXPORT int shmpool_get(shmpool_t *pool, uint64_t slot, void *buf, size_t size, shmpool_error *err) SHMPOOL_NOEXCEPT;
/** Copies min(size, elem_size) bytes into the slot and zero-fills the rest;
 *  size 0 (bytes may be NULL then) clears it.  Not atomic. */
SHMPOOL_C_EXPORT int shmpool_set(shmpool_t *pool, uint64_t slot, const void *bytes, size_t size,
                                 shmpool_error *err) SHMPOOL_NOEXCEPT;
/** Copies the slot's string (at most max_len bytes, NULs allowed) into buf:
 *  min(length, size) bytes, then a NUL when there is room.  length
 *  (optional) receives the full length, so length >= size means buf was too
 *  small; buf may be NULL when size is 0.  Not atomic as a unit. */
SHMPOOL_C_EXPORT int shmpool_get_str(shmpool_t *pool, uint64_t slot, char *buf, size_t size, size_t *length,
                                     shmpool_error *err) SHMPOOL_NOEXCEPT;
/** Stores the len bytes at s (truncated to max_len; s may be NULL when len
 *  is 0).  Not atomic as a unit. */
SHMPOOL_C_EXPORT int shmpool_set_str(shmpool_t *pool, uint64_t slot, const char *s, size_t len,
                                     shmpool_error *err) SHMPOOL_NOEXCEPT;
/** The longest string a slot of a STR pool holds, into *max_len. */
SHMPOOL_C_EXPORT int shmpool_max_len(shmpool_t *pool, uint64_t *max_len, shmpool_error *err) SHMPOOL_NOEXCEPT;

/* ---- data: numbers (I64, I32, F64), each one lock-free atomic ---------- */
/* Errors as the data functions above.  Loads acquire, stores release,
 * read-modify-writes acq_rel; additions wrap like the hardware. */

/** The slot's int64_t into *value (an atomic load). */
SHMPOOL_C_EXPORT int shmpool_get_i64(shmpool_t *pool, uint64_t slot, int64_t *value, shmpool_error *err) SHMPOOL_NOEXCEPT;
/** Stores value in the slot (an atomic store). */
SHMPOOL_C_EXPORT int shmpool_set_i64(shmpool_t *pool, uint64_t slot, int64_t value, shmpool_error *err) SHMPOOL_NOEXCEPT;
/** Stores desired if the slot holds expected; *swapped = 1 if it did, else 0. */
SHMPOOL_C_EXPORT int shmpool_cas_i64(shmpool_t *pool, uint64_t slot, int64_t expected, int64_t desired,
                                     int *swapped, shmpool_error *err) SHMPOOL_NOEXCEPT;
/** Stores desired if the slot holds expected; *old = the value it held. */
SHMPOOL_C_EXPORT int shmpool_cmpxchg_i64(shmpool_t *pool, uint64_t slot, int64_t expected, int64_t desired,
                                         int64_t *old, shmpool_error *err) SHMPOOL_NOEXCEPT;
/** Stores value; *old (optional) = the value it held. */
SHMPOOL_C_EXPORT int shmpool_xchg_i64(shmpool_t *pool, uint64_t slot, int64_t value, int64_t *old,
                                      shmpool_error *err) SHMPOOL_NOEXCEPT;
/** Adds delta; *new_value (optional) = the sum. */
SHMPOOL_C_EXPORT int shmpool_add_i64(shmpool_t *pool, uint64_t slot, int64_t delta, int64_t *new_value,
                                     shmpool_error *err) SHMPOOL_NOEXCEPT;
/** Adds 1; *new_value (optional) = the sum. */
SHMPOOL_C_EXPORT int shmpool_incr_i64(shmpool_t *pool, uint64_t slot, int64_t *new_value, shmpool_error *err) SHMPOOL_NOEXCEPT;
/** Subtracts 1; *new_value (optional) = the difference. */
SHMPOOL_C_EXPORT int shmpool_decr_i64(shmpool_t *pool, uint64_t slot, int64_t *new_value, shmpool_error *err) SHMPOOL_NOEXCEPT;

/** The slot's int32_t into *value (an atomic load). */
SHMPOOL_C_EXPORT int shmpool_get_i32(shmpool_t *pool, uint64_t slot, int32_t *value, shmpool_error *err) SHMPOOL_NOEXCEPT;
/** Stores value in the slot (an atomic store). */
SHMPOOL_C_EXPORT int shmpool_set_i32(shmpool_t *pool, uint64_t slot, int32_t value, shmpool_error *err) SHMPOOL_NOEXCEPT;
/** Stores desired if the slot holds expected; *swapped = 1 if it did, else 0. */
SHMPOOL_C_EXPORT int shmpool_cas_i32(shmpool_t *pool, uint64_t slot, int32_t expected, int32_t desired,
                                     int *swapped, shmpool_error *err) SHMPOOL_NOEXCEPT;
/** Stores desired if the slot holds expected; *old = the value it held. */
SHMPOOL_C_EXPORT int shmpool_cmpxchg_i32(shmpool_t *pool, uint64_t slot, int32_t expected, int32_t desired,
                                         int32_t *old, shmpool_error *err) SHMPOOL_NOEXCEPT;
/** Stores value; *old (optional) = the value it held. */
SHMPOOL_C_EXPORT int shmpool_xchg_i32(shmpool_t *pool, uint64_t slot, int32_t value, int32_t *old,
                                      shmpool_error *err) SHMPOOL_NOEXCEPT;
/** Adds delta; *new_value (optional) = the sum. */
SHMPOOL_C_EXPORT int shmpool_add_i32(shmpool_t *pool, uint64_t slot, int32_t delta, int32_t *new_value,
                                     shmpool_error *err) SHMPOOL_NOEXCEPT;
/** Adds 1; *new_value (optional) = the sum. */
SHMPOOL_C_EXPORT int shmpool_incr_i32(shmpool_t *pool, uint64_t slot, int32_t *new_value, shmpool_error *err) SHMPOOL_NOEXCEPT;
/** Subtracts 1; *new_value (optional) = the difference. */
SHMPOOL_C_EXPORT int shmpool_decr_i32(shmpool_t *pool, uint64_t slot, int32_t *new_value, shmpool_error *err) SHMPOOL_NOEXCEPT;

/** The slot's double into *value (an atomic load). */
SHMPOOL_C_EXPORT int shmpool_get_f64(shmpool_t *pool, uint64_t slot, double *value, shmpool_error *err) SHMPOOL_NOEXCEPT;
/** Stores value in the slot (an atomic store). */
SHMPOOL_C_EXPORT int shmpool_set_f64(shmpool_t *pool, uint64_t slot, double value, shmpool_error *err) SHMPOOL_NOEXCEPT;

/* ---- zero-copy --------------------------------------------------------- */

/** The first byte of the slot in the shared mapping, into *ptr (every
 *  variant; range-checked, not allocation-checked); valid until
 *  shmpool_close.  Ordering access to the bytes is the caller's.
 *  @return SHMPOOL_OK, SHMPOOL_ERANGE, SHMPOOL_EINVAL. */
SHMPOOL_C_EXPORT int shmpool_slot_ptr(shmpool_t *pool, uint64_t slot, void **ptr, shmpool_error *err) SHMPOOL_NOEXCEPT;
/** The first byte of slot 0's data, into *ptr (slot i starts i * elem_size
 *  bytes later).  @return SHMPOOL_OK, SHMPOOL_EINVAL. */
SHMPOOL_C_EXPORT int shmpool_data_ptr(shmpool_t *pool, void **ptr, shmpool_error *err) SHMPOOL_NOEXCEPT;

/* ---- status ------------------------------------------------------------ */

/** *allocated = 1 if the slot is allocated now (a snapshot), else 0.
 *  @return SHMPOOL_OK, SHMPOOL_ERANGE, SHMPOOL_EINVAL. */
SHMPOOL_C_EXPORT int shmpool_is_allocated(shmpool_t *pool, uint64_t slot, int *allocated, shmpool_error *err) SHMPOOL_NOEXCEPT;
/** *pid = the pid recorded by the slot's holder, 0 when free (a snapshot).
 *  @return SHMPOOL_OK, SHMPOOL_ERANGE, SHMPOOL_EINVAL. */
SHMPOOL_C_EXPORT int shmpool_owner(shmpool_t *pool, uint64_t slot, pid_t *pid, shmpool_error *err) SHMPOOL_NOEXCEPT;
/** *used = slots allocated or being claimed/released (O(capacity/64)). */
SHMPOOL_C_EXPORT int shmpool_used(shmpool_t *pool, uint64_t *used, shmpool_error *err) SHMPOOL_NOEXCEPT;
/** *available = capacity - used (the same snapshot cost as shmpool_used). */
SHMPOOL_C_EXPORT int shmpool_available(shmpool_t *pool, uint64_t *available, shmpool_error *err) SHMPOOL_NOEXCEPT;
/** *capacity = the number of slots (fixed at creation). */
SHMPOOL_C_EXPORT int shmpool_capacity(shmpool_t *pool, uint64_t *capacity, shmpool_error *err) SHMPOOL_NOEXCEPT;
/** *elem_size = bytes per slot (for STR, the length word included). */
SHMPOOL_C_EXPORT int shmpool_elem_size(shmpool_t *pool, uint64_t *elem_size, shmpool_error *err) SHMPOOL_NOEXCEPT;
/** *variant = the handle's SHMPOOL_VARIANT_... */
SHMPOOL_C_EXPORT int shmpool_variant(shmpool_t *pool, int *variant, shmpool_error *err) SHMPOOL_NOEXCEPT;
/** Fills the fields of *stats that fit in stats->size bytes (which must be
 *  at least sizeof(uint64_t)) and sets stats->size to the bytes filled.
 *  O(capacity) atomic loads, no lock, no system call.
 *  @return SHMPOOL_OK, SHMPOOL_EINVAL (NULL, or size too small). */
SHMPOOL_C_EXPORT int shmpool_get_stats(shmpool_t *pool, shmpool_stats *stats, shmpool_error *err) SHMPOOL_NOEXCEPT;

/* ---- recovery and health ----------------------------------------------- */

/** Frees the slots of owners certainly dead (core/PROTOCOL.md); *freed
 *  (optional) = how many.  Safe at any time, concurrent with everything;
 *  never blocks; system calls for the liveness checks (/proc, kill(2)).
 *  @return SHMPOOL_OK, SHMPOOL_EINVAL, SHMPOOL_EIDENTITY. */
SHMPOOL_C_EXPORT int shmpool_recover_stale(shmpool_t *pool, size_t *freed, shmpool_error *err) SHMPOOL_NOEXCEPT;
/** Frees every slot whose owner is pid, alive or not (an operator's
 *  decision, e.g. after an exec); *freed (optional) = how many.
 *  @return SHMPOOL_OK, SHMPOOL_EINVAL (pid <= 0), SHMPOOL_EIDENTITY. */
SHMPOOL_C_EXPORT int shmpool_release_owner(shmpool_t *pool, pid_t pid, size_t *freed, shmpool_error *err) SHMPOOL_NOEXCEPT;
/** Frees every slot whatever its owner (exclusive access only: a running
 *  holder loses its slot).  Never blocks.
 *  @return SHMPOOL_OK, SHMPOOL_EINVAL, SHMPOOL_EIDENTITY. */
SHMPOOL_C_EXPORT int shmpool_reset(shmpool_t *pool, shmpool_error *err) SHMPOOL_NOEXCEPT;
/** Checks the mapping (header, slot words, group marks) and calls fn(problem,
 *  context) for each inconsistency found (fn may be NULL); *problems
 *  (optional) = how many.  Read-only; O(capacity).  Exact when no operation
 *  is in flight.  fn must not call shmpool_close on this handle.
 *  @return SHMPOOL_OK (healthy or not: see *problems), SHMPOOL_EINVAL,
 *  SHMPOOL_ENOMEM. */
SHMPOOL_C_EXPORT int shmpool_check(shmpool_t *pool, shmpool_problem_fn fn, void *context, size_t *problems,
                                   shmpool_error *err) SHMPOOL_NOEXCEPT;

/* ---- backing ----------------------------------------------------------- */

/** *fd = the pool's memfd (memfd pools; from_fd pools: the handle's own
 *  duplicate), -1 for file and anonymous pools.  The handle owns it: dup it
 *  to keep it past shmpool_close.  @return SHMPOOL_OK, SHMPOOL_EINVAL. */
SHMPOOL_C_EXPORT int shmpool_memfd_fd(shmpool_t *pool, int *fd, shmpool_error *err) SHMPOOL_NOEXCEPT;
/** Writes the mapping back to its file (msync(MS_SYNC): blocks on I/O).
 *  @return SHMPOOL_OK, SHMPOOL_ESYSTEM, SHMPOOL_EINVAL. */
SHMPOOL_C_EXPORT int shmpool_sync(shmpool_t *pool, shmpool_error *err) SHMPOOL_NOEXCEPT;
/** Removes the pool's path (unlink(2)); handles keep working.
 *  @return SHMPOOL_OK, SHMPOOL_EFAILED (no path, or unlink failed),
 *  SHMPOOL_EINVAL. */
SHMPOOL_C_EXPORT int shmpool_unlink(shmpool_t *pool, shmpool_error *err) SHMPOOL_NOEXCEPT;

/* ---- eventfd (the handle's, in this process; pool.hpp, "eventfd") ------ */

/** *fd = the current eventfd, creating the pool's own (non-blocking,
 *  CLOEXEC) if there is none.  @return SHMPOOL_OK, SHMPOOL_ESYSTEM,
 *  SHMPOOL_EINVAL. */
SHMPOOL_C_EXPORT int shmpool_eventfd(shmpool_t *pool, int *fd, shmpool_error *err) SHMPOOL_NOEXCEPT;
/** Uses the caller's fd (never closed by the pool) from now on; -1
 *  detaches.  @return SHMPOOL_OK, SHMPOOL_EINVAL (fd < -1 or not open;
 *  nothing changes). */
SHMPOOL_C_EXPORT int shmpool_eventfd_set(shmpool_t *pool, int fd, shmpool_error *err) SHMPOOL_NOEXCEPT;
/** *fd = the current eventfd or -1.  @return SHMPOOL_OK, SHMPOOL_EINVAL. */
SHMPOOL_C_EXPORT int shmpool_fileno(shmpool_t *pool, int *fd, shmpool_error *err) SHMPOOL_NOEXCEPT;
/** Adds 1 to the eventfd's counter (write(2)).
 *  @return SHMPOOL_OK, SHMPOOL_EFAILED (no eventfd, or the write failed),
 *  SHMPOOL_EINVAL. */
SHMPOOL_C_EXPORT int shmpool_notify(shmpool_t *pool, shmpool_error *err) SHMPOOL_NOEXCEPT;
/** Drains the eventfd's counter into *count (0: none or empty); a caller's
 *  blocking fd blocks while its counter is 0.
 *  @return SHMPOOL_OK, SHMPOOL_EINVAL. */
SHMPOOL_C_EXPORT int shmpool_eventfd_consume(shmpool_t *pool, uint64_t *count, shmpool_error *err) SHMPOOL_NOEXCEPT;

#ifdef __cplusplus
}  /* extern "C" */
#endif

#endif /* SHMPOOL_SHMPOOL_H */
