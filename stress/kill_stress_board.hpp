// The side memory the stress runner shares with its workers (an anonymous
// MAP_SHARED mapping, separate from the pool under test).
//
// HOLDER TABLE: holders[slot] is the token of the worker that believes it
// holds the slot.  A worker writes it after the pool op that gave it the
// slot and clears it before the pool op that gives the slot back, so:
//   - a worker killed between the pool op and the table write leaves the
//     table one step behind the pool, never ahead: holders[s] == t with t
//     live implies t's pool alloc returned s and t has not started to free s;
//   - a stale entry names a dead token, which readers ignore.
// Hence "holders[s] names a live worker" => "the slot word is ALLOCATED by
// that worker" is exact whenever the workers are stopped, and a worker that
// gets a slot whose entry names another live worker has caught two live
// holders at once.
//
// TOKENS: (incarnation << 8) | worker index.  A token is live while
// workers[index].token equals it and its pid is not a zombie; the parent
// zeroes the cell once the victim is a zombie, so pid reuse (pid_max may be
// 32768) never makes a dead token look live.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <cstring>

#include "stress_util.hpp"

namespace stress {

inline constexpr unsigned max_workers = 64;

struct worker_cell {
  std::atomic<std::uint32_t> token{0};   // live incarnation, 0 while none
  std::atomic<pid_t> pid{0};
  std::atomic<std::uint64_t> ops{0};             // pool operations done, all incarnations
  std::atomic<std::uint64_t> counter_adds{0};    // adds to the shared counter, recorded after each add
  std::atomic<std::int64_t> blocked_since_ns{0}; // > 0 while inside an untimed alloc
};

struct stress_board {
  worker_cell workers[max_workers];
  std::atomic<std::uint64_t> counter_slot{~std::uint64_t{0}};  // the parent's shared counter (integer pools)
  std::atomic<std::uint32_t> violations{0};
  std::atomic<int> first_violation_taken{0};
  char first_violation[512] = {};
};

inline std::uint32_t make_token(std::uint32_t incarnation, unsigned index) { return (incarnation << 8) | index; }
inline unsigned index_of_token(std::uint32_t token) { return token & 0xFF; }

inline bool token_is_live(const stress_board& b, std::uint32_t token) {
  if (token == 0) return false;
  const worker_cell& c = b.workers[index_of_token(token) % max_workers];
  return c.token.load(std::memory_order_acquire) == token && process_is_running(c.pid.load(std::memory_order_acquire));
}

// Records a broken invariant seen by anyone (worker or parent).
inline void report_violation(stress_board& b, const char* text) {
  b.violations.fetch_add(1, std::memory_order_acq_rel);
  if (b.first_violation_taken.exchange(1) == 0) {
    std::strncpy(b.first_violation, text, sizeof b.first_violation - 1);
  }
}

}  // namespace stress
