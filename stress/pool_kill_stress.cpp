// pool_kill_stress: N forked workers run a mixed workload over one pool
// while a chaos loop SIGKILLs one at random and respawns it.  After every
// kill the workers are stopped and the pool is checked from the outside
// (kill_stress_checks.hpp); at the end every worker is killed, recovery runs
// and the pool must be empty, healthy and fillable.  stress/README.md says
// what each check proves.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "kill_stress_checks.hpp"
#include "kill_stress_worker.hpp"
#include "stress_options.hpp"

namespace stress {
namespace {

using shmpool::slot_index;

template <class Pool>
Pool make_pool(const options& o, const std::string& file);

template <class Pool>
Pool make_sized(const options& o, const std::string& file, auto&&... size) {
  if (o.backing == "anon") return Pool::anonymous(o.capacity, size...);
  if (o.backing == "memfd") return Pool::memfd("shmpool-stress", o.capacity, size...);
  return Pool::open(file, o.capacity, size...);
}
template <> shmpool::pool make_pool(const options& o, const std::string& f) { return make_sized<shmpool::pool>(o, f, 24); }
template <> shmpool::str_pool make_pool(const options& o, const std::string& f) { return make_sized<shmpool::str_pool>(o, f, 24); }
template <> shmpool::i64_pool make_pool(const options& o, const std::string& f) { return make_sized<shmpool::i64_pool>(o, f); }
template <> shmpool::i32_pool make_pool(const options& o, const std::string& f) { return make_sized<shmpool::i32_pool>(o, f); }
template <> shmpool::f64_pool make_pool(const options& o, const std::string& f) { return make_sized<shmpool::f64_pool>(o, f); }

template <class Pool>
constexpr unsigned counter_bits() {
  if constexpr (std::is_same_v<Pool, shmpool::i64_pool>) return 64;
  else if constexpr (std::is_same_v<Pool, shmpool::i32_pool>) return 32;
  else return 0;
}

// One variant's run: the pool, its workers, the chaos loop.
template <class Pool>
class kill_stress_run {
 public:
  kill_stress_run(const options& o, std::uint64_t kills_wanted, double seconds)
      : o_(o), kills_wanted_(kills_wanted), seconds_(seconds), file_(pool_file_name(o)),
        pool_(make_pool<Pool>(o, file_)), view_(pool_, 24), board_(map_shared<stress_board>()),
        holders_(map_shared<std::atomic<std::uint32_t>>(o.capacity)), chaos_(o.seed),
        checker_(pool_, view_, *board_, holders_, o.workers, counter_bits<Pool>()) {}

  ~kill_stress_run() {
    if (o_.backing == "file") std::filesystem::remove(file_);
  }

  run_totals run(progress& shown) {
    const std::int64_t start = now_ns();
    take_shared_counter();
    for (unsigned k = 0; k < o_.workers; ++k) spawn(k);
    while (!done(start) && board_->violations.load() == 0) {
      ::usleep(static_cast<useconds_t>(1000 + chaos_.below(5000)));
      kill_one(static_cast<unsigned>(chaos_.below(o_.workers)));
      shown.update(t_, ops(), now_ns() - start);
    }
    finish();
    t_.seconds = static_cast<double>(now_ns() - start) / 1e9;
    t_.ops = ops();
    t_.violations = board_->violations.load();
    if (t_.violations != 0 && t_.first_violation.empty()) t_.first_violation = board_->first_violation;
    return t_;
  }

 private:
  static std::string pool_file_name(const options& o) {
    const std::string dir = std::filesystem::exists("/dev/shm") ? "/dev/shm" : "/tmp";
    return dir + "/shmpool-stress-" + std::to_string(::getpid()) + "-" + o.variant;
  }

  bool done(std::int64_t start) const {
    if (seconds_ > 0) return static_cast<double>(now_ns() - start) / 1e9 >= seconds_;
    return t_.kills >= kills_wanted_;
  }

  std::uint64_t ops() const {
    std::uint64_t n = 0;
    for (unsigned k = 0; k < o_.workers; ++k) n += board_->workers[k].ops.load();
    return n;
  }

  void take_shared_counter() {
    if constexpr (counter_bits<Pool>() != 0) {
      const auto s = pool_.try_alloc();
      if (!s) throw std::runtime_error("stress: no slot for the shared counter");
      pool_.set(*s, 0);
      board_->counter_slot.store(*s);
    }
  }

  void spawn(unsigned k) {
    const std::uint32_t token = make_token(++incarnations_, k);
    worker_cell& c = board_->workers[k];
    c.token.store(token);
    c.blocked_since_ns.store(0);
    const pid_t pid = ::fork();
    if (pid < 0) throw std::runtime_error("stress: fork failed");
    if (pid == 0) stress_worker<Pool>(pool_, *board_, holders_, token, o_.seed).run();
    c.pid.store(pid);
    pids_[k] = pid;
  }

  // SIGKILL, recover (every other time while the victim is still a
  // zombie), check everything with the survivors stopped, respawn.
  void kill_one(unsigned victim) {
    const pid_t pid = pids_[victim];
    const std::uint64_t victim_identity = identity_of_process(pid);
    ::kill(pid, SIGKILL);
    wait_until_zombie(pid);
    board_->workers[victim].token.store(0);
    if (t_.kills % 2 == 0) recover_while_zombie(victim_identity);
    reap(pid);
    pids_[victim] = 0;
    ++t_.kills;
    check_with_workers_stopped();
    spawn(victim);
  }

  // A zombie is certainly dead: one recover_stale() must leave no word
  // naming it (nothing else can write its identity any more).
  void recover_while_zombie(std::uint64_t victim_identity) {
    t_.recovered += pool_.recover_stale();
    for (slot_index s = 0; s < view_.capacity(); ++s)
      if (victim_identity != 0 && identity_of_word(view_.word(s)) == victim_identity)
        fail("slot " + std::to_string(s) + " still names a zombie worker after recover_stale()");
  }

  void check_with_workers_stopped() {
    for (int attempt = 0;; ++attempt) {
      stop_all();
      if (checker_.figures().quiescent() || attempt == 8) break;
      continue_all();  // a worker was stopped mid-operation: try for a quiescent snapshot
      ::usleep(50);
    }
    forge_a_reused_pid();
    t_.recovered += pool_.recover_stale();
    check_forged_owner_recovered();
    const auto problems = checker_.run(t_.kills + o_.workers);
    ++t_.checks;
    if (checker_.figures().quiescent()) ++t_.quiescent_checks;
    for (const std::string& p : problems) fail("after kill " + std::to_string(t_.kills) + ": " + p);
    probe_a_blocked_waiter();
    continue_all();
  }

  void stop_all() {
    for (unsigned k = 0; k < o_.workers; ++k) {
      if (pids_[k] == 0) continue;
      ::kill(pids_[k], SIGSTOP);
      int st = 0;
      if (::waitpid(pids_[k], &st, WUNTRACED) == pids_[k] && !WIFSTOPPED(st)) worker_ended(k, st);
    }
  }

  void continue_all() {
    for (unsigned k = 0; k < o_.workers; ++k)
      if (pids_[k] != 0) ::kill(pids_[k], SIGCONT);
  }

  // A worker only exits by itself after reporting a violation.
  void worker_ended(unsigned k, int status) {
    fail("worker pid " + std::to_string(pids_[k]) + " ended by itself (status " + std::to_string(status) + ")");
    board_->workers[k].token.store(0);
    pids_[k] = 0;
  }

  // PID reuse under stress: a slot whose owner word carries a live worker's
  // pid with another start time is a dead owner; recovery must free it.
  void forge_a_reused_pid() {
    forged_slot_ = ~slot_index{0};
    const unsigned k = static_cast<unsigned>(chaos_.below(o_.workers));
    if (pids_[k] == 0) return;
    const std::uint64_t live = identity_of_process(pids_[k]);
    const auto s = pool_.try_alloc();
    if (live == 0 || !s) {
      if (s) pool_.free(*s);
      return;
    }
    forged_word_ = allocated_word(live ^ 0x100);  // same pid and namespace, a start time 256 ticks away
    view_.forge_word(*s, forged_word_);
    forged_slot_ = *s;
    ++t_.pid_reuse_forged;
  }

  void check_forged_owner_recovered() {
    if (forged_slot_ == ~slot_index{0}) return;
    if (view_.word(forged_slot_) == forged_word_)
      fail("slot " + std::to_string(forged_slot_) + " owned by a reused pid (live pid " +
           std::to_string(pid_of_word(forged_word_)) + ", other start time) was not recovered");
  }

  // No waiter asleep while a slot is free: with no operation in flight and
  // a free slot, a worker inside an untimed alloc, resumed alone, must
  // return.  Nobody else runs, so only a wake it already had can end its wait.
  void probe_a_blocked_waiter() {
    if (!checker_.figures().quiescent() || pool_.used() >= pool_.capacity()) return;
    for (unsigned k = 0; k < o_.workers; ++k) {
      worker_cell& c = board_->workers[k];
      if (pids_[k] == 0 || c.blocked_since_ns.load() == 0) continue;
      ++t_.waiter_probes;
      const std::uint64_t free_slots = pool_.capacity() - pool_.used();
      ::kill(pids_[k], SIGCONT);
      const std::int64_t deadline = now_ns() + 2'000'000'000;
      while (c.blocked_since_ns.load() != 0 && now_ns() < deadline) ::usleep(100);
      if (c.blocked_since_ns.load() != 0)
        fail("worker pid " + std::to_string(pids_[k]) + " stayed asleep in alloc() for 2 s while " +
             std::to_string(free_slots) + " slots were free and nothing else ran (lost wake-up); waiters=" +
             std::to_string(view_.waiters()));
      return;
    }
  }

  // The end: every worker killed, one recovery, and an empty pool that can
  // be filled completely and emptied again.
  void finish() {
    for (unsigned k = 0; k < o_.workers; ++k) {
      if (pids_[k] == 0) continue;
      ::kill(pids_[k], SIGKILL);
      reap(pids_[k]);
      board_->workers[k].token.store(0);
      pids_[k] = 0;
    }
    const auto counter = board_->counter_slot.load();
    if (counter != ~slot_index{0} && !pool_.free(counter)) fail("the parent's counter slot could not be freed");
    t_.recovered += pool_.recover_stale();
    if (pool_.used() != 0) fail("after every worker exited and recovery ran, used() = " + std::to_string(pool_.used()));
    if (!pool_.allocated_slots().empty()) fail("after recovery, allocated slots remain");
    for (const std::string& p : pool_.check()) fail("final check(): " + p);
    auto all = pool_.alloc_n(pool_.capacity(), std::chrono::milliseconds(0));
    if (!all) fail("the recovered pool cannot be filled completely");
    else if (pool_.free_n(*all) != pool_.capacity()) fail("the filled pool cannot be emptied");
  }

  void fail(const std::string& what) {
    if (t_.first_violation.empty()) t_.first_violation = what;
    report_violation(*board_, what.c_str());
  }

  const options& o_;
  std::uint64_t kills_wanted_;
  double seconds_;
  std::string file_;
  Pool pool_;
  raw_pool_view view_;
  stress_board* board_;
  std::atomic<std::uint32_t>* holders_;
  rng chaos_;
  stopped_pool_checker checker_;
  pid_t pids_[max_workers] = {};
  std::uint32_t incarnations_ = 0;
  slot_index forged_slot_ = ~slot_index{0};
  std::uint64_t forged_word_ = 0;
  run_totals t_;
};

run_totals run_one_variant(const options& o, const std::string& variant, std::uint64_t kills, double seconds,
                           progress& shown) {
  options v = o;
  v.variant = variant;
  v.seed = o.seed ^ std::hash<std::string>{}(variant);
  if (variant == "raw") return kill_stress_run<shmpool::pool>(v, kills, seconds).run(shown);
  if (variant == "i64") return kill_stress_run<shmpool::i64_pool>(v, kills, seconds).run(shown);
  if (variant == "i32") return kill_stress_run<shmpool::i32_pool>(v, kills, seconds).run(shown);
  if (variant == "f64") return kill_stress_run<shmpool::f64_pool>(v, kills, seconds).run(shown);
  return kill_stress_run<shmpool::str_pool>(v, kills, seconds).run(shown);
}

}  // namespace
}  // namespace stress

int main(int argc, char** argv) {
  using namespace stress;
  const options o = parse_options(argc, argv);
  ::signal(SIGPIPE, SIG_IGN);
  const std::vector<std::string> variants =
      o.variant == "all" ? std::vector<std::string>{"raw", "i64", "i32", "f64", "str"} : std::vector<std::string>{o.variant};
  progress shown(o);
  run_totals total;
  for (const std::string& v : variants) {
    const auto n = static_cast<std::uint64_t>(variants.size());
    const run_totals r = run_one_variant(o, v, (o.kills + n - 1) / n, o.duration_s / static_cast<double>(n), shown);
    shown.variant_done(v, r);
    total.add(r);
    if (r.violations != 0) break;
  }
  return finish_run(o, total, argc, argv);
}
