// Small helpers shared by the stress runner, the crash-point sweep and the
// PID-namespace check: shared anonymous memory, process states, a seeded
// random generator, and an outside view of a pool's slot words and group marks
// (read through the published format, as core/tests/pool_test.cpp does).
#pragma once

#include <sys/mman.h>
#include <sys/types.h>
#include <time.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "shmpool/detail/format.hpp"
#include "shmpool/pool.hpp"

namespace stress {

// Zeroed memory shared with every later fork child.  Never unmapped: it
// lives as long as the runner.
template <class T>
T* map_shared(std::size_t count = 1) {
  void* p = ::mmap(nullptr, sizeof(T) * count, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::runtime_error("stress: mmap of shared side memory failed");
  return new (p) T[count]();
}

inline std::int64_t now_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

// splitmix64: tiny, seedable, the same on every machine.
class rng {
 public:
  explicit rng(std::uint64_t seed) : s_(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (s_ += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }
  std::uint64_t below(std::uint64_t n) { return n == 0 ? 0 : next() % n; }
  bool one_in(std::uint64_t n) { return below(n) == 0; }

 private:
  std::uint64_t s_;
};

// The state letter of /proc/<pid>/stat ('R', 'S', 'T', 'Z', ...), or 0 when
// there is no such process.
char process_state(pid_t pid);
// Running or stopped, but neither gone nor a zombie.
inline bool process_is_running(pid_t pid) {
  const char s = process_state(pid);
  return s != 0 && s != 'Z' && s != 'X';
}

// Blocks until the child is a zombie (dead, not reaped: its pid stays reserved).
void wait_until_zombie(pid_t pid);
// Reaps a child; returns the raw wait status.
int reap(pid_t pid);
// Waits until the child is dead, leaving it a zombie; true if SIGKILL (a
// crash point) ended it, else its exit code is stored (-1: another signal).
bool died_at_crash_point(pid_t pid, int& exit_code);

// The slot words and group marks of a pool as the mapping holds them.
class raw_pool_view {
 public:
  template <class Pool>
  explicit raw_pool_view(const Pool& p, std::uint64_t max_len = 0)
      : raw_pool_view(static_cast<const shmpool::detail::pool_base&>(p), max_len) {}
  raw_pool_view(const shmpool::detail::pool_base& p, std::uint64_t max_len);

  std::uint64_t capacity() const { return capacity_; }
  std::uint64_t word(std::uint64_t slot) const { return meta_[2 * slot].load(std::memory_order_acquire); }
  // The mark of a group of 64 slots (0, or group_full: slot_protocol.hpp, G).
  std::uint64_t mark(std::uint64_t group) const { return groups_[group * 8].load(std::memory_order_acquire); }
  // Overwrites a slot word, as a process with that identity would have left it.
  void forge_word(std::uint64_t slot, std::uint64_t w) { meta_[2 * slot].store(w, std::memory_order_release); }
  // Overwrites a group mark, as a scanner killed between its mark and its re-read leaves it.
  void forge_mark(std::uint64_t group, std::uint64_t m) { groups_[group * 8].store(m, std::memory_order_release); }
  // Waiter entries in use (format 2: one identity per registered waiter).
  std::uint32_t waiters() const {
    std::uint32_t n = 0;
    for (unsigned k = 0; k < shmpool::detail::waiter_slots; ++k)
      n += control_waiters_[k].load(std::memory_order_acquire) != 0;
    return n;
  }
  // The identity in waiter entry k (0: free).
  std::uint64_t waiter(unsigned k) const { return control_waiters_[k].load(std::memory_order_acquire); }

 private:
  std::atomic<std::uint64_t>* meta_ = nullptr;
  std::atomic<std::uint64_t>* groups_ = nullptr;  // one word per 64-byte line: stride 8
  const std::atomic<std::uint64_t>* control_waiters_ = nullptr;
  std::uint64_t capacity_ = 0;
};

inline shmpool::detail::slot_state state_of_word(std::uint64_t w) { return shmpool::detail::state_of(w); }
inline std::uint64_t identity_of_word(std::uint64_t w) { return shmpool::detail::identity_of(w); }
inline pid_t pid_of_word(std::uint64_t w) { return shmpool::platform::identity_pid(identity_of_word(w)); }
inline std::uint64_t allocated_word(std::uint64_t identity) {
  return shmpool::detail::make_slot_word(shmpool::detail::slot_state::allocated, identity);
}
inline std::uint64_t identity_of_process(pid_t pid) { return shmpool::platform::proc_liveness::identity_of(pid); }
inline std::uint64_t my_identity() { return shmpool::platform::proc_liveness::self(); }

const char* state_name(shmpool::detail::slot_state s);

// "slot 3 (ALLOCATED, pid 1234)": how every check names a slot.
inline std::string slot_text(std::uint64_t s, std::uint64_t w) {
  return "slot " + std::to_string(s) + " (" + state_name(state_of_word(w)) + ", pid " +
         std::to_string(pid_of_word(w)) + ")";
}

// Minimal JSON object writer: keys in insertion order, numbers and strings.
class json_object {
 public:
  json_object& num(const std::string& key, double v);
  json_object& num(const std::string& key, std::uint64_t v);
  json_object& str(const std::string& key, const std::string& v);
  json_object& raw(const std::string& key, const std::string& json);
  std::string text() const { return "{" + body_ + "}"; }

 private:
  void key(const std::string& k);
  std::string body_;
};
std::string json_escape(const std::string& s);
bool write_text_file(const std::string& path, const std::string& text);

// Everything a child writes to fd until it closes its end or `seconds`
// pass (a child that hangs must not hang its sweeper).
std::string read_until_eof(int fd, int seconds);

}  // namespace stress
