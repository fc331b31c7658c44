// The operations the crash-point sweep kills, and the known pool state
// each starts from.  One fresh anonymous i64 pool of 70 slots (two groups
// words, a tail) per run, so every run starts from the same state.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <utility>

#include "shmpool/pool.hpp"
#include "stress_util.hpp"

namespace stress {

enum class sweep_op {
  alloc, alloc_wait, alloc_scan_full, alloc_n, alloc_n_rollback, free, guard_free, free_n, recover_stale, reset
};

struct sweep_op_info {
  sweep_op op;
  const char* name;
};
inline constexpr sweep_op_info sweep_ops[] = {
    {sweep_op::alloc, "alloc"},           {sweep_op::alloc_wait, "alloc_wait"},
    {sweep_op::alloc_scan_full, "alloc_scan_full"},
    {sweep_op::alloc_n, "alloc_n"},       {sweep_op::alloc_n_rollback, "alloc_n_rollback"},
    {sweep_op::free, "free"},             {sweep_op::guard_free, "guard_free"},
    {sweep_op::free_n, "free_n"},         {sweep_op::recover_stale, "recover_stale"},
    {sweep_op::reset, "reset"},
};

inline constexpr std::uint64_t sweep_capacity = 70;

// A pool in a known state: slots the (live) parent holds, and slots whose
// words were planted as a dead process would leave them (not checked
// before recovery: they are broken on purpose).
struct sweep_pool {
  sweep_pool() = default;
  explicit sweep_pool(shmpool::i64_pool p) : pool(std::move(p)) {}  // another backing (the exec sweep's memfd)
  shmpool::i64_pool pool = shmpool::i64_pool::anonymous(sweep_capacity);
  raw_pool_view view{pool};
  std::set<shmpool::slot_index> parent_slots;
  std::set<shmpool::slot_index> planted;
};

// Fills `sp` for `op`: the parent takes 5 slots (all but 5 for
// alloc_n_rollback, one of which is then RELEASING(dead), all but 1 for
// free and guard_free, all for alloc_wait, all but slot
// alloc_scan_full_hint for alloc_scan_full); recover_stale
// and reset also get dead owners in every state (ALLOCATED, CLAIMING,
// RELEASING) and a stale group mark.
void prepare_sweep_pool(sweep_pool& sp, sweep_op op);

// alloc_scan_full: the child holds this slot and starts its scan there, so
// the scan order is known: the rest of group 0, group 1 (marked), the head
// of group 0 (marked), then the wait.  A slot freed in the rest of group 0
// while the scanner stands at group 1's mark is freed before its mark of
// group 0: the window of issue 20, item 3 (suspension sweep).
inline constexpr shmpool::slot_index alloc_scan_full_hint = 10;

// In the child, before arming: the slots the operation will release.
struct child_setup {
  std::vector<shmpool::slot_index> mine;
  std::optional<shmpool::slot_guard> guard;  // guard_free: the guard whose destructor frees mine[0]
  bool recovery_races = false;  // another recoverer may take the dead slots first
  bool others_free = false;     // other processes free slots meanwhile (suspension sweep): a
                                // wait on a full pool may succeed, a batch meant to fail may fit
};
child_setup setup_in_child(sweep_pool& sp, sweep_op op);

// In the child, armed: runs the operation; false if its result is wrong
// (e.g. free() of the child's own slot returned false).
bool run_in_child(sweep_pool& sp, sweep_op op, child_setup& setup);

// Leaves `count` slots owned by a process that has exited and been reaped.
void leave_slots_to_a_dead_process(sweep_pool& sp, std::size_t count, std::uint64_t* dead_identity);

}  // namespace stress
