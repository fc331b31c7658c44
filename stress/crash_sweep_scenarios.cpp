// Known states and operations of the crash-point sweep.
#include "crash_sweep_scenarios.hpp"

#include <unistd.h>

#include <chrono>
#include <stdexcept>

namespace stress {
namespace {

using shmpool::detail::make_slot_word;
using shmpool::detail::slot_state;

void parent_takes(sweep_pool& sp, std::size_t n) {
  auto got = sp.pool.alloc_n(n, std::chrono::milliseconds(0));
  if (!got) throw std::runtime_error("sweep: cannot prepare the pool");
  for (const auto s : *got) {
    sp.pool.set(s, 1000 + static_cast<std::int64_t>(s));
    sp.parent_slots.insert(s);
  }
}

shmpool::slot_index free_slot_for_planting(sweep_pool& sp) {
  auto s = sp.pool.try_alloc();  // take it properly, then overwrite its word
  if (!s) throw std::runtime_error("sweep: no slot to plant");
  sp.planted.insert(*s);
  return *s;
}

// Dead owners in every state recovery must finish, and a stale group mark
// (a scanner killed between its mark and its re-read) over FREE words.
void plant_dead_owners(sweep_pool& sp) {
  std::uint64_t* dead = map_shared<std::uint64_t>();
  leave_slots_to_a_dead_process(sp, 3, dead);
  const auto claiming = free_slot_for_planting(sp);
  sp.view.forge_word(claiming, make_slot_word(slot_state::claiming, *dead));
  const auto releasing = free_slot_for_planting(sp);
  sp.view.forge_word(releasing, make_slot_word(slot_state::releasing, *dead));
  sp.view.forge_mark(0, shmpool::detail::group_full);  // group 0 has FREE words: stale
  ::munmap(dead, sizeof *dead);
}

}  // namespace

void leave_slots_to_a_dead_process(sweep_pool& sp, std::size_t count, std::uint64_t* dead_identity) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    *dead_identity = my_identity();
    auto got = sp.pool.alloc_n(count, std::chrono::milliseconds(0));
    ::_exit(got ? 0 : 1);
  }
  if (reap(pid) != 0) throw std::runtime_error("sweep: the dead-owner helper failed");
  for (shmpool::slot_index s = 0; s < sp.view.capacity(); ++s)
    if (identity_of_word(sp.view.word(s)) == *dead_identity) sp.planted.insert(s);
}

void prepare_sweep_pool(sweep_pool& sp, sweep_op op) {
  switch (op) {
    case sweep_op::alloc_wait: parent_takes(sp, sweep_capacity); break;
    // Five words look free to the batch's count (W2), but one is
    // RELEASING(dead): the batch claims four, fails on it and rolls back, so
    // the sweep reaches the rollback's crash points.  (With fewer free words
    // than asked, a batch claims nothing and there is no rollback to kill.)
    case sweep_op::alloc_n_rollback: {
      parent_takes(sp, sweep_capacity - 5);
      std::uint64_t* dead = map_shared<std::uint64_t>();
      leave_slots_to_a_dead_process(sp, 0, dead);
      sp.view.forge_word(free_slot_for_planting(sp), make_slot_word(slot_state::releasing, *dead));
      ::munmap(dead, sizeof *dead);
      break;
    }
    // The child takes the last slot and marks every group full: its free
    // then clears a mark (G), and a kill between its CAS and that clear
    // leaves a stale mark for recovery to repair.
    case sweep_op::free:
    case sweep_op::guard_free: parent_takes(sp, sweep_capacity - 1); break;
    // A full pool but for one slot, which the child takes first (so its
    // scan starts there and marks group 1, then group 0).
    case sweep_op::alloc_scan_full:
      parent_takes(sp, sweep_capacity);
      if (!sp.pool.free(alloc_scan_full_hint)) throw std::runtime_error("sweep: cannot prepare the pool");
      sp.parent_slots.erase(alloc_scan_full_hint);
      break;
    case sweep_op::recover_stale:
    case sweep_op::reset:
      parent_takes(sp, 5);
      plant_dead_owners(sp);
      break;
    default: parent_takes(sp, 5); break;
  }
}

child_setup setup_in_child(sweep_pool& sp, sweep_op op) {
  child_setup c;
  if (op == sweep_op::free) {
    if (auto s = sp.pool.try_alloc()) c.mine.push_back(*s);
    if (sp.pool.try_alloc()) c.mine.clear();  // the pool must be full now: the scan marks every group
  } else if (op == sweep_op::guard_free) {
    if (auto g = sp.pool.try_alloc_guard()) {
      c.mine.push_back(g->index());
      c.guard = std::move(*g);
    }
    if (sp.pool.try_alloc()) c.mine.clear();  // full now: every group marked
  } else if (op == sweep_op::alloc_scan_full) {
    // Takes the one free slot: the handle's next scan starts there.  Then
    // clears the marks this scan may have left, so the armed scan marks
    // both groups itself (a mark is only a hint: clearing one is safe).
    if (auto s = sp.pool.try_alloc()) c.mine.push_back(*s);
    for (std::uint64_t g = 0; g < shmpool::detail::group_count(sweep_capacity); ++g) sp.view.forge_mark(g, 0);
  } else if (op == sweep_op::free_n) {
    if (auto v = sp.pool.alloc_n(4, std::chrono::milliseconds(0))) c.mine = *v;
  }
  return c;
}

bool run_in_child(sweep_pool& sp, sweep_op op, child_setup& c) {
  auto& p = sp.pool;
  switch (op) {
    case sweep_op::alloc: {
      const auto s = p.alloc();
      return s && p.owner(*s) == ::getpid();
    }
    case sweep_op::alloc_wait: {
      const auto s = p.alloc(std::chrono::milliseconds(2));
      return !s || (c.others_free && p.owner(*s) == ::getpid());
    }
    // Scans from its own slot, marks both groups full, waits 20 ms.
    case sweep_op::alloc_scan_full: {
      if (c.mine.size() != 1 || c.mine[0] != alloc_scan_full_hint) return false;
      const auto s = p.alloc(std::chrono::milliseconds(20));
      return !s || (c.others_free && p.owner(*s) == ::getpid());
    }
    case sweep_op::alloc_n: {
      const auto v = p.alloc_n(5);
      return v && v->size() == 5;
    }
    // A concurrent recovery may free the RELEASING(dead) word first: then the batch fits.
    case sweep_op::alloc_n_rollback:
      return !p.alloc_n(5, std::chrono::milliseconds(0)) || c.recovery_races || c.others_free;
    case sweep_op::free: return c.mine.size() == 1 && p.free(c.mine[0]);
    // The checked free (free_if_held): the guard's destructor.  Afterwards
    // the word no longer names this process (another may have claimed it).
    case sweep_op::guard_free: {
      if (c.mine.size() != 1 || !c.guard) return false;
      c.guard.reset();
      return identity_of_word(sp.view.word(c.mine[0])) != my_identity();
    }
    case sweep_op::free_n: return c.mine.size() == 4 && p.free_n(c.mine) == 4;
    // 3 dead ALLOCATED, one CLAIMING, one RELEASING (the stale mark is cleared, not counted).
    case sweep_op::recover_stale: return p.recover_stale() == 5 || c.recovery_races;
    case sweep_op::reset: p.reset(); return p.used() == 0;
  }
  return false;
}

}  // namespace stress
