// Command line, totals, live progress and the summary of pool_kill_stress.
#pragma once

#include <cstdint>
#include <string>

namespace stress {

struct options {
  std::string backing = "anon";  // file | memfd | anon
  std::string variant = "i64";   // raw | i64 | i32 | f64 | str | all
  unsigned workers = 4;
  std::uint64_t capacity = 16;
  std::uint64_t kills = 400;     // ignored when duration_s > 0
  double duration_s = 0;
  std::uint64_t seed = 1;
  std::string json;              // default: reports/stress/kill-<backing>-<variant>.json
  bool quiet = false;
};

struct run_totals {
  std::uint64_t kills = 0, ops = 0, checks = 0, quiescent_checks = 0, waiter_probes = 0;
  std::uint64_t pid_reuse_forged = 0, recovered = 0, violations = 0;
  double seconds = 0;
  std::string first_violation;
  void add(const run_totals& r);
};

options parse_options(int argc, char** argv);
std::string replay_command(const options& o);

// The live line on a terminal (stderr), refreshed at most 4 times a second.
class progress {
 public:
  explicit progress(const options& o);
  void update(const run_totals& t, std::uint64_t ops, std::int64_t elapsed_ns);
  void variant_done(const std::string& variant, const run_totals& t);

 private:
  bool live_;
  bool quiet_;
  std::int64_t last_ns_ = 0;
};

// Prints the summary line, writes the JSON, and returns the exit status.
int finish_run(const options& o, const run_totals& total, int argc, char** argv);

}  // namespace stress
