// One stress worker: a mixed workload over one pool, run in a forked
// process until it is killed.  Every slot it holds is stamped with a value
// only it writes; reading back anything else means another process wrote
// a slot this worker held (two holders at once, or a wrongful recovery).
#pragma once

#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "kill_stress_board.hpp"
#include "kill_stress_variant_ops.hpp"
#include "stress_util.hpp"

namespace stress {

struct held_slot {
  shmpool::slot_index slot;
  std::int64_t expected;  // what the worker last wrote into it
};

template <class Pool>
class stress_worker {
 public:
  stress_worker(Pool& pool, stress_board& board, std::atomic<std::uint32_t>* holders, std::uint32_t token,
                std::uint64_t seed)
      : pool_(pool), board_(board), holders_(holders), token_(token), cell_(board.workers[index_of_token(token)]),
        rng_(seed ^ (std::uint64_t{token} * 0x9E3779B97F4A7C15ULL)) {}

  [[noreturn]] void run() {
    for (;;) {
      try {
        one_step();
      } catch (const std::exception& e) {
        fail(std::string("exception: ") + e.what());
      }
      cell_.ops.fetch_add(1, std::memory_order_relaxed);
    }
  }

 private:
  static constexpr std::size_t max_held = 4;

  void one_step() {
    const std::uint64_t pick = rng_.below(100);
    if (pick < 22) alloc_one();
    else if (pick < 30) alloc_batch();
    else if (pick < 52) release_one();
    else if (pick < 58) release_batch();
    else if (pick < 66) scoped_guard();
    else if (pick < 88) touch_held();
    else if (pick < 95) bump_shared_counter();
    else if (pick < 99) hold_a_while();
    else pool_.recover_stale();
  }

  // Untimed only when holding nothing: then a blocked worker holds no slot,
  // and every holder gives its slots back in bounded time (no deadlock).
  void alloc_one() {
    if (held_.size() >= max_held) return release_one();
    std::optional<shmpool::slot_index> got;
    const std::uint64_t how = rng_.below(4);
    if (held_.empty() && how == 0) {
      cell_.blocked_since_ns.store(now_ns(), std::memory_order_release);
      got = pool_.alloc();
      cell_.blocked_since_ns.store(0, std::memory_order_release);
      if (!got) fail("untimed alloc returned nothing");
    } else if (how == 1) {
      got = pool_.try_alloc();
    } else {
      got = pool_.alloc(std::chrono::microseconds(200 + rng_.below(3000)));
    }
    if (got) acquired(*got);
  }

  void alloc_batch() {
    const std::size_t n = 1 + rng_.below(3);
    if (held_.size() + n > max_held || n > pool_.capacity()) return;
    auto got = pool_.alloc_n(n, std::chrono::microseconds(rng_.below(2000)));
    if (!got) return;
    if (got->size() != n) fail("alloc_n returned the wrong number of slots");
    for (const auto s : *got) acquired(s);
  }

  void release_one() {
    if (held_.empty()) return;
    const std::size_t k = rng_.below(held_.size());
    const held_slot h = held_[k];
    held_.erase(held_.begin() + static_cast<std::ptrdiff_t>(k));
    letting_go(h);
    if (!pool_.free(h.slot)) fail_slot("free of a held slot returned false", h.slot);
  }

  void release_batch() {
    if (held_.empty()) return;
    std::vector<shmpool::slot_index> batch;
    for (const held_slot& h : held_) {
      letting_go(h);
      batch.push_back(h.slot);
    }
    held_.clear();
    if (pool_.free_n(batch) != batch.size()) fail("free_n freed fewer slots than were held");
  }

  void scoped_guard() {
    auto g = pool_.alloc_guard(std::chrono::microseconds(rng_.below(1000)));
    if (!g) return;
    held_slot h{g->index(), 0};
    acquired_into(h);
    for (int k = 0; k < 3; ++k) touch(h);
    letting_go(h);
  }  // the guard frees the slot here

  void touch_held() {
    for (held_slot& h : held_) touch(h);
  }

  void bump_shared_counter() {
    if constexpr (variant_ops<Pool>::is_integer) {
      const std::uint64_t s = board_.counter_slot.load(std::memory_order_acquire);
      if (s == ~std::uint64_t{0}) return;
      pool_.add(s, 1);
      cell_.counter_adds.fetch_add(1, std::memory_order_release);
    }
  }

  void hold_a_while() { ::usleep(static_cast<useconds_t>(rng_.below(400))); }

  void acquired(shmpool::slot_index s) {
    held_slot h{s, 0};
    acquired_into(h);
    held_.push_back(h);
  }

  // After the pool op: claim the holder-table entry, stamp the slot.
  void acquired_into(held_slot& h) {
    const std::uint32_t prev = holders_[h.slot].exchange(token_, std::memory_order_acq_rel);
    if (prev != 0 && prev != token_ && token_is_live(board_, prev)) {
      char text[160];
      std::snprintf(text, sizeof text, "slot %llu handed to token %u while live token %u holds it",
                    static_cast<unsigned long long>(h.slot), token_, prev);
      fail(text);
    }
    h.expected = static_cast<std::int64_t>(rng_.below(1'000'000));
    variant_ops<Pool>::stamp(pool_, h.slot, h.expected);
  }

  // Before the pool op: verify the stamp, drop the holder-table entry.
  void letting_go(const held_slot& h) {
    verify(h);
    std::uint32_t mine = token_;
    if (!holders_[h.slot].compare_exchange_strong(mine, 0, std::memory_order_acq_rel)) {
      char text[160];
      std::snprintf(text, sizeof text, "slot %llu held by token %u was taken over by token %u",
                    static_cast<unsigned long long>(h.slot), token_, mine);
      fail(text);
    }
  }

  void touch(held_slot& h) {
    verify(h);
    h.expected = variant_ops<Pool>::mutate(pool_, h.slot, h.expected, rng_.next());
  }

  void verify(const held_slot& h) {
    if (!variant_ops<Pool>::matches(pool_, h.slot, h.expected)) fail_slot("slot data changed under its holder", h.slot);
  }

  void fail_slot(const char* what, shmpool::slot_index s) {
    char text[200];
    std::snprintf(text, sizeof text, "%s: slot %llu, token %u, owner pid %d", what,
                  static_cast<unsigned long long>(s), token_, static_cast<int>(pool_.owner(s)));
    fail(text);
  }

  // A worker that sees a broken invariant reports it and stops; the parent
  // notices the violation count and fails the run.
  [[noreturn]] void fail(const std::string& what) {
    const std::string text = "worker " + std::to_string(::getpid()) + ": " + what;
    report_violation(board_, text.c_str());
    ::_exit(3);
  }

  Pool& pool_;
  stress_board& board_;
  std::atomic<std::uint32_t>* holders_;
  std::uint32_t token_;
  worker_cell& cell_;
  rng rng_;
  std::vector<held_slot> held_;
};

}  // namespace stress
