#!/usr/bin/env python3
"""The C API from an FFI, without a compiler: Python's ctypes loads
libshmpool, opens a pool that the C++ API created (c_api_cpp_peer), sees
its slot, allocates and sets another that the C++ API then reads back, maps
errors to their codes and recovers the slot of the dead C++ process.

usage: c_api_ctypes_test.py LIBSHMPOOL_SO C_API_CPP_PEER
"""
import ctypes
import os
import subprocess
import sys
import tempfile

SHMPOOL_OK = 0
SHMPOOL_ERANGE = -2
SHMPOOL_ENOTALLOC = -3
SHMPOOL_EWRONGVARIANT = -12
SHMPOOL_VARIANT_I64 = 2
SHMPOOL_VARIANT_STR = 5


class Error(ctypes.Structure):
    _fields_ = [("code", ctypes.c_int), ("sys_errno", ctypes.c_int), ("message", ctypes.c_char * 256)]


class Stats(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in (
        "size", "capacity", "elem_size", "used", "available", "waiters", "mmap_size",
        "allocs", "frees", "waits", "timeouts", "recoveries")]


def load(path):
    lib = ctypes.CDLL(path)
    handle = ctypes.c_void_p
    err = ctypes.POINTER(Error)
    u64, i64, p = ctypes.c_uint64, ctypes.c_int64, ctypes.POINTER
    signatures = {
        "shmpool_open": (handle, [ctypes.c_char_p, ctypes.c_int, u64, u64, err]),
        "shmpool_close": (ctypes.c_int, [handle]),
        "shmpool_alloc": (ctypes.c_int, [handle, p(u64), err]),
        "shmpool_free": (ctypes.c_int, [handle, u64, err]),
        "shmpool_is_allocated": (ctypes.c_int, [handle, u64, p(ctypes.c_int), err]),
        "shmpool_owner": (ctypes.c_int, [handle, u64, p(ctypes.c_int), err]),
        "shmpool_get_i64": (ctypes.c_int, [handle, u64, p(i64), err]),
        "shmpool_set_i64": (ctypes.c_int, [handle, u64, i64, err]),
        "shmpool_add_i64": (ctypes.c_int, [handle, u64, i64, p(i64), err]),
        "shmpool_get_stats": (ctypes.c_int, [handle, p(Stats), err]),
        "shmpool_recover_stale": (ctypes.c_int, [handle, p(ctypes.c_size_t), err]),
        "shmpool_strerror": (ctypes.c_char_p, [ctypes.c_int]),
    }
    for name, (restype, argtypes) in signatures.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = restype, argtypes
    return lib


failures = 0


def check(cond, what):
    global failures
    if not cond:
        print("c_api_ctypes_test: FAILED:", what, file=sys.stderr)
        failures += 1


def main():
    lib_path, peer = sys.argv[1], sys.argv[2]
    lib = load(lib_path)
    err = Error()
    with tempfile.TemporaryDirectory(prefix="shmpool-ctypes.") as d:
        path = os.path.join(d, "ints.shm")
        # 1. The C++ API creates the pool and leaves a slot set to 42, held
        #    by a process that has exited since.
        out = subprocess.run([peer, "create", path], check=True, capture_output=True, text=True).stdout.split()
        cpp_slot, cpp_pid = int(out[0]), int(out[1])

        pool = lib.shmpool_open(path.encode(), SHMPOOL_VARIANT_I64, 8, 0, ctypes.byref(err))
        check(pool is not None and err.code == SHMPOOL_OK, "shmpool_open: %d %s" % (err.code, err.message))
        allocated, owner, value = ctypes.c_int(), ctypes.c_int(), ctypes.c_int64()
        check(lib.shmpool_is_allocated(pool, cpp_slot, ctypes.byref(allocated), None) == 0 and allocated.value == 1,
              "the C++ slot is allocated")
        check(lib.shmpool_owner(pool, cpp_slot, ctypes.byref(owner), None) == 0 and owner.value == cpp_pid,
              "the C++ slot's owner is the C++ process")
        check(lib.shmpool_get_i64(pool, cpp_slot, ctypes.byref(value), None) == 0 and value.value == 42,
              "the C++ slot holds 42")

        # 2. A slot allocated and set here, read back by the C++ API.
        slot, now = ctypes.c_uint64(), ctypes.c_int64()
        check(lib.shmpool_alloc(pool, ctypes.byref(slot), ctypes.byref(err)) == 0, "shmpool_alloc")
        check(slot.value != cpp_slot, "a different slot")
        check(lib.shmpool_set_i64(pool, slot, 7, None) == 0, "shmpool_set_i64")
        check(lib.shmpool_add_i64(pool, slot, 5, ctypes.byref(now), None) == 0 and now.value == 12, "shmpool_add_i64")
        verify = subprocess.run([peer, "verify", path, str(slot.value), "12"], capture_output=True, text=True)
        check(verify.returncode == 0, "the C++ API sees the slot: " + verify.stderr)

        # 3. Errors come back as codes with messages, never as a crash.
        check(lib.shmpool_get_i64(pool, 8, ctypes.byref(value), ctypes.byref(err)) == SHMPOOL_ERANGE
              and err.code == SHMPOOL_ERANGE and err.message, "index out of range")
        free_slot = next(i for i in range(8) if i not in (cpp_slot, slot.value))
        check(lib.shmpool_set_i64(pool, free_slot, 1, ctypes.byref(err)) == SHMPOOL_ENOTALLOC, "slot not allocated")
        check(lib.shmpool_open(path.encode(), SHMPOOL_VARIANT_STR, 8, 16, ctypes.byref(err)) is None
              and err.code == SHMPOOL_EWRONGVARIANT, "wrong variant")
        check(lib.shmpool_strerror(SHMPOOL_EWRONGVARIANT).startswith(b"SHMPOOL_EWRONGVARIANT"), "shmpool_strerror")
        check(lib.shmpool_get_i64(None, 0, ctypes.byref(value), None) != 0, "a NULL handle")

        # 4. The dead C++ process's slot is recovered; the stats agree.
        freed = ctypes.c_size_t()
        check(lib.shmpool_recover_stale(pool, ctypes.byref(freed), None) == 0 and freed.value == 1, "recover_stale")
        check(lib.shmpool_is_allocated(pool, cpp_slot, ctypes.byref(allocated), None) == 0 and allocated.value == 0,
              "the C++ slot is free after recovery")
        stats = Stats(size=ctypes.sizeof(Stats))
        check(lib.shmpool_get_stats(pool, ctypes.byref(stats), None) == 0, "shmpool_get_stats")
        check(stats.size == ctypes.sizeof(Stats) and stats.capacity == 8 and stats.used == 1
              and stats.allocs == 2 and stats.recoveries == 1, "stats: %r" % [getattr(stats, f) for f, _ in Stats._fields_])
        check(lib.shmpool_free(pool, slot, None) == 0, "shmpool_free")
        check(lib.shmpool_close(pool) == 0, "shmpool_close")
    if failures:
        print("c_api_ctypes_test: %d check(s) failed" % failures, file=sys.stderr)
        return 1
    print("c_api_ctypes_test: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
