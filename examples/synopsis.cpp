// The seed's SYNOPSIS (README.md, "The seed's SYNOPSIS in C++"), run for real
// on file-backed pools in a fresh temporary directory.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <span>
#include <stdexcept>
#include <string>

#include "check.hpp"
#include <shmpool/pool.hpp>
#include <shmpool/version.hpp>

int main() {
  namespace fs = std::filesystem;
  char tmpl[] = "/tmp/shmpool-synopsis.XXXXXX";
  CHECK(::mkdtemp(tmpl) != nullptr);
  const fs::path dir = tmpl;

  // Raw byte pool: 100 slots of 64 bytes each.
  auto pool = shmpool::pool::open(dir / "pool.shm", 100, 64);
  auto idx = *pool.alloc();  // blocks while full
  pool.set(idx, std::as_bytes(std::span{"hello world", 11}));
  auto data = pool.get(idx);  // std::span<const std::byte>, a view of the slot
  CHECK(data.size() == 64);
  CHECK(std::memcmp(data.data(), "hello world", 11) == 0);
  CHECK(data[11] == std::byte{0});  // set() zero-fills the rest
  CHECK(pool.is_allocated(idx) && pool.owner(idx) == ::getpid());
  CHECK(pool.free(idx));
  CHECK(!pool.free(idx));  // a second free is refused

  // Typed pools and the lock-free primitives.
  auto ints = shmpool::i64_pool::open(dir / "ints.shm", 1000);
  auto i = *ints.alloc();
  ints.set(i, 42);
  CHECK(ints.add(i, 8) == 50);
  CHECK(ints.cas(i, 50, 99));
  CHECK(ints.get(i) == 99);
  CHECK(ints.cmpxchg(i, 99, 200) == 99);  // returns the old value
  CHECK(ints.xchg(i, 300) == 200);
  CHECK(ints.incr(i) == 301 && ints.decr(i) == 300);

  auto floats = shmpool::f64_pool::open(dir / "f.shm", 100);
  auto f = *floats.alloc_set(2.5);
  CHECK(floats.get(f) == 2.5);
  auto strs = shmpool::str_pool::open(dir / "s.shm", 100, 256);
  auto s = *strs.alloc_set("a string of up to 256 bytes");
  CHECK(strs.get(s) == "a string of up to 256 bytes");
  CHECK(strs.max_len() == 256);

  // Guard: freed at scope exit.
  {
    auto guard = pool.alloc_guard();
    CHECK(guard && pool.is_allocated(guard->index()));
    CHECK(pool.used() == 1);
  }
  CHECK(pool.used() == 0);

  // Batch operations: all-or-nothing alloc, one wake for the whole free.
  auto slots = *pool.alloc_n(10);
  CHECK(slots.size() == 10 && pool.used() == 10);
  CHECK(pool.allocated_slots().size() == 10);
  CHECK(pool.free_n(slots) == 10 && pool.used() == 0);
  bool refused = false;  // more than the capacity could never succeed: refused at once
  try {
    (void)pool.alloc_n(101);
  } catch (const std::invalid_argument&) {
    refused = true;
  }
  CHECK(refused);

  // Convenience and non-blocking.
  auto j = ints.try_alloc_set(42);
  CHECK(j && ints.get(*j) == 42);

  // Crash recovery: nobody here is dead, so nothing is freed.
  CHECK(pool.recover_stale() == 0);

  // Anonymous and memfd pools; from_fd attaches (validated).
  auto anon = shmpool::i64_pool::anonymous(100);
  CHECK(anon.memfd() == -1 && !anon.path());
  auto mem = shmpool::i64_pool::memfd("my_pool", 100);
  auto peer = shmpool::i64_pool::from_fd(mem.memfd());
  auto k = *mem.alloc_set(7);
  CHECK(peer.get(k) == 7);  // the same memory

  // Stats and the health check.
  const auto st = ints.stats();
  CHECK(st.capacity == 1000 && st.used == 2 && st.allocs == 2);
  CHECK(ints.check().empty());

  std::printf("synopsis: ok (shmpool %s)\n", SHMPOOL_VERSION);
  fs::remove_all(dir);
  return 0;
}
