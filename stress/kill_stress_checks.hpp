// The stress runner's outside view of health: the exact checks it runs
// while every worker is stopped (SIGSTOP), after recover_stale().
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "kill_stress_board.hpp"
#include "stress_util.hpp"

namespace stress {

struct snapshot_figures {
  std::uint64_t in_flight = 0;   // CLAIMING/RELEASING words (a stopped worker mid-operation)
  bool quiescent() const { return in_flight == 0; }
};

class stopped_pool_checker {
 public:
  stopped_pool_checker(const shmpool::detail::pool_base& pool, const raw_pool_view& view, const stress_board& board,
                       const std::atomic<std::uint32_t>* holders, unsigned workers, unsigned counter_bits)
      : pool_(pool), view_(view), board_(board), holders_(holders), workers_(workers), counter_bits_(counter_bits) {}

  // Words naming a live worker mid-operation.
  snapshot_figures figures() const;

  // Every check that must hold with all workers stopped and no dead owner
  // left; one line per problem.  lost_updates_allowed bounds the shared
  // counter's lead over the workers' tallies (one per kill, one per worker).
  std::vector<std::string> run(std::uint64_t lost_updates_allowed) const;

 private:
  std::set<std::uint64_t> live_identities() const;
  void check_owners(const std::set<std::uint64_t>& live, std::vector<std::string>& out) const;
  void check_words_and_used(std::vector<std::string>& out) const;
  void check_holder_table(std::vector<std::string>& out) const;
  void check_shared_counter(std::uint64_t lost_updates_allowed, std::vector<std::string>& out) const;

  const shmpool::detail::pool_base& pool_;
  const raw_pool_view& view_;
  const stress_board& board_;
  const std::atomic<std::uint32_t>* holders_;
  unsigned workers_;
  unsigned counter_bits_;  // 64 or 32 for integer pools, 0 otherwise
};

}  // namespace stress
