// The fault sweep's scenarios: what a run prepares (in the healthy parent),
// what it does with a system call failing (in a child), and what must hold
// afterwards (checked again by the healthy parent).  See fault_sweep.cpp.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace stress::faults {

// Everything one run works on.  The parent builds it before the run and
// tears it down after; the child inherits it through fork.
struct world {
  std::string dir;                  // private directory of this run (on /dev/shm)
  std::string pool_path;            // dir + "/pool": an i64 pool of `capacity` slots
  int memfd = -1;                   // set instead of pool_path for memfd scenarios
  pid_t bystander = -1;             // a live process that holds `held`
  std::vector<std::uint64_t> held;  // the bystander's slots; slot s holds value_of(s)
  bool dead_owner_slots = false;    // a reaped process died holding two slots
  // Registry-named files in /dev/shm before the run: another process's (a
  // killed test's, long ago) may carry a pid the child happens to reuse.
  std::vector<std::string> registry_files_before;
};
inline constexpr std::uint64_t capacity = 8;
inline constexpr std::int64_t value_of(std::uint64_t slot) { return 7000 + static_cast<std::int64_t>(slot); }

// How the child's scenario ended.
enum class ending { ok, shmpool_error, registry_error, bad_alloc, other_exception, check_failed, crashed, hung };
const char* ending_name(ending e);

struct outcome {
  ending how = ending::ok;
  std::string message;         // what() of the exception, or the signal
  std::uint64_t calls = 0;     // system calls counted after arming
  std::vector<int> kinds;      // the kinds of those calls, in order (sys::call values)
  bool injected = false;       // whether the planned failure happened
  int injected_kind = -1;      // the kind of call that failed (sys::call value)
  pid_t reporter = -1;         // the process that ran the scenario (after any fork or exec)
};

// Thrown by a scenario that saw the pool or buffer misbehave (not an error
// the API documents, but a wrong result).
struct check_failure {
  std::string what;
};

// What a scenario sets up in the parent.
enum class setup { none, file_pool, memfd_pool };

struct scenario {
  const char* name;
  const char* summary;
  setup needs;
  bool frees_live_slots;  // reset(): the bystander's slots are freed by design
  // Runs in the child.  Calls `arm()` where the failures may start (the
  // part before is preparation that must not fail).
  std::function<void(world&, const std::function<void()>& arm)> act;
};

const std::vector<scenario>& all_scenarios();
const scenario* find_scenario(const std::string& name);

// The parent's side of a run.
world prepare(const scenario& s);
void tear_down(world& w);
// Problems with the state the run left ("" if none): the bystander's slots
// and values, no slot lost after a survivor's recovery, check() clean, no
// file left behind by the child (pid `child`, exited and reaped).
std::string check_state(const scenario& s, world& w, const outcome& o, pid_t child);

// A scenario that re-executes the process carries the fault plan across
// exec on the command line (fault_sweep --exec-stage).
struct exec_request {
  std::uint64_t nth = 0;
  int kind = 0;
  int error = 0;
  bool sticky = false;
  int report_fd = -1;
};
extern exec_request g_exec;
[[noreturn]] void exec_self_into(const char* scenario_name);

// A scenario whose faults fall in another copy of the core (a dlopen'd
// plugin's, with its own fault plan) reports that copy's counts instead of
// this one's: filled by the scenario before it unloads the copy.
struct foreign_counts {
  bool set = false;
  std::uint64_t calls = 0;
  bool injected = false;
  int injected_kind = -1;
  std::vector<int> kinds;
};
extern foreign_counts g_foreign;

// How a scenario ended when the failure happened across a plain-C plugin
// boundary, where the exception itself cannot travel: reported as if it
// had been thrown here.
struct foreign_ending {
  ending how;
  std::string message;
};

}  // namespace stress::faults
