// The careless caller, concurrently (issue 13, 3b): a RapidCheck command set
// of API calls, misuses included, run by 2-4 threads at once on ONE shared
// handle, then a sequential check of the pool against what the commands
// documented.  pool.hpp's contract comments and ERRORS section are the
// oracle; the sanitizer of the build (ASan+UBSan in model.pool_misuse_model_test,
// TSan in model.pool_misuse_tsan_test) reports what no assertion can see: a
// race on the handle's eventfd state, a moved-from handle dereferenced,
// memcpy of an overlapping span, a guard used after its pool.
//
// Each thread owns the slots it allocated and checks after every command
// that they are still allocated and hold its bytes; a command of another
// thread may misuse the handle in any documented-as-safe way (a stale guard,
// a moved-over guard, a free_if_mine of another process's slot, eventfd_set
// racing notify, a read of a shared str slot while another thread writes
// it) but never take a slot it does not own.  A child process (the witness)
// holds two slots with known bytes for the whole run, and an unrelated file
// (dup'd and closed in a loop by the threads, so its numbers are the ones a
// stale close would hit) must keep its inode and content.
//
// A failure prints the threads' command lists (showValue below) and the
// first broken expectation.  Replay: RC_PARAMS="replay=<the printed string>"
// model/pool_misuse_model_test (or the tsan binary).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cerrno>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <ostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "shmpool/pool.hpp"

namespace shmpool::misuse_model {

enum class op : std::uint8_t {
  try_alloc, alloc_nan, alloc_neg_inf, alloc_short, free_own, free_if_mine_own, free_twice_via_guard,
  free_if_mine_witness, free_out_of_range, guard_new, guard_drop, guard_move_over, guard_outlives_handle,
  set_overlapping, set_empty, read_own, read_free_or_foreign, eventfd_set_caller, eventfd_detach, eventfd_own,
  eventfd_bad, notify, consume, moved_from_member, str_write_shared, str_read_shared, str_set_own,
  recycle_fd, alloc_n_batch, count_
};
constexpr std::array<const char*, static_cast<int>(op::count_)> op_names = {
    "try_alloc", "alloc_nan", "alloc_neg_inf", "alloc_short", "free_own", "free_if_mine_own", "free_twice_via_guard",
    "free_if_mine_witness", "free_out_of_range", "guard_new", "guard_drop", "guard_move_over",
    "guard_outlives_handle", "set_overlapping", "set_empty", "read_own", "read_free_or_foreign",
    "eventfd_set_caller", "eventfd_detach", "eventfd_own", "eventfd_bad", "notify", "consume", "moved_from_member",
    "str_write_shared", "str_read_shared", "str_set_own", "recycle_fd", "alloc_n_batch"};

struct command {
  op what;
  std::uint8_t arg;
};
inline void showValue(const command& c, std::ostream& os) {
  os << op_names[static_cast<int>(c.what)] << "(" << int{c.arg} << ")";
}

}  // namespace shmpool::misuse_model

namespace rc {
template <>
struct Arbitrary<shmpool::misuse_model::command> {
  static Gen<shmpool::misuse_model::command> arbitrary() {
    using shmpool::misuse_model::command;
    using shmpool::misuse_model::op;
    return gen::construct<command>(
        gen::cast<op>(gen::inRange<int>(0, static_cast<int>(op::count_))), gen::arbitrary<std::uint8_t>());
  }
};
}  // namespace rc

namespace shmpool::misuse_model {
namespace {

#if defined(SHMPOOL_MISUSE_RACE_FREE_STR)  // the TSan build (model/CMakeLists.txt)
constexpr bool race_free_str = true;
#else
constexpr bool race_free_str = false;
#endif
constexpr std::uint64_t capacity = 12;
constexpr std::uint64_t elem_size = 16;
constexpr std::uint64_t str_capacity = 8;
constexpr std::uint64_t str_max_len = 24;
constexpr std::string_view unrelated_text = "an unrelated file: the pool must never touch it\n";
using bytes16 = std::array<std::byte, elem_size>;

bytes16 pattern(std::uint64_t tag) {
  bytes16 b{};
  for (std::size_t j = 0; j < b.size(); ++j) b[j] = static_cast<std::byte>((tag * 37 + j * 11 + 3) & 0xff);
  return b;
}

bool fd_is(int fd, ino_t ino) {
  struct stat st {};
  return fcntl(fd, F_GETFD) >= 0 && fstat(fd, &st) == 0 && st.st_ino == ino;
}

// What lives for the whole test process: the pools, the witness child, the
// unrelated file, the caller's eventfd, a moved-from handle.
struct fixture {
  int memfd = -1, str_memfd = -1, unrelated = -1, caller_efd = -1;
  ino_t unrelated_ino = 0, caller_ino = 0;
  pid_t witness = -1;
  std::array<slot_index, 2> witness_slots{};
  std::optional<pool> shared;      // the one handle every thread uses
  std::optional<str_pool> str;
  std::optional<pool> moved_from;  // a handle whose pool was moved away
  slot_index shared_str_slot = 0;

  fixture() {
    shared.emplace(pool::memfd("misuse_model", capacity, elem_size));
    memfd = shared->memfd();
    str.emplace(str_pool::memfd("misuse_model_str", str_capacity, str_max_len));
    str_memfd = str->memfd();
    shared_str_slot = *str->try_alloc();
    str->set(shared_str_slot, std::string(str_max_len, 'A'));
    moved_from.emplace(pool::from_fd(memfd));
    { pool away = std::move(*moved_from); }
    unrelated = memfd_create("misuse_model_unrelated", MFD_CLOEXEC);
    if (pwrite(unrelated, unrelated_text.data(), unrelated_text.size(), 0) != static_cast<ssize_t>(unrelated_text.size()))
      std::abort();
    struct stat st {};
    fstat(unrelated, &st);
    unrelated_ino = st.st_ino;
    caller_efd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    fstat(caller_efd, &st);
    caller_ino = st.st_ino;
    start_witness();
  }

  // Forked before any test thread exists: holds two slots until we die.
  void start_witness() {
    int ready[2];
    if (pipe(ready) != 0) std::abort();
    const pid_t parent = getpid();
    const pid_t child = fork();
    if (child == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(0);
      pool p = pool::from_fd(memfd);
      std::array<slot_index, 2> got{};
      for (int k = 0; k < 2; ++k) {
        got[k] = *p.try_alloc();
        p.set(got[k], pattern(9000 + k));
      }
      if (write(ready[1], got.data(), sizeof got) != sizeof got) _exit(1);
      for (;;) pause();
    }
    if (read(ready[0], witness_slots.data(), sizeof witness_slots) != sizeof witness_slots) std::abort();
    close(ready[0]);
    close(ready[1]);
    witness = child;
  }

  bool witness_slot(slot_index i) const { return i == witness_slots[0] || i == witness_slots[1]; }
};

fixture& the_fixture() {
  static fixture f;
  return f;
}

// The first broken expectation of any thread.
class failures {
 public:
  void add(const std::string& what) {
    std::lock_guard lock(m_);
    if (first_.empty()) {
      first_ = what;
      // Printed now as well: a shrunk concurrent case may pass on its final
      // re-run, and RapidCheck then reports that run's result.
      std::fprintf(stderr, "pool_misuse: %s\n", what.c_str());
    }
    any_.store(true);
  }
  bool any() const { return any_.load(); }
  std::string first() const {
    std::lock_guard lock(m_);
    return first_;
  }

 private:
  mutable std::mutex m_;
  std::string first_;
  std::atomic<bool> any_{false};
};

template <class E, class F>
bool throws_exactly(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return typeid(e) == typeid(E);
  } catch (...) {
    return false;
  }
  return false;
}

template <class F>
bool throws_invalid_handle(F&& f) {
  try {
    f();
  } catch (const shmpool::error& e) {
    return e.code() == errc::invalid_handle;
  } catch (...) {
    return false;
  }
  return false;
}

// One thread's run of its commands on the shared handle.
class worker {
 public:
  worker(int id, const std::vector<command>& cmds, fixture& f, failures& bad)
      : id_(id), cmds_(cmds), f_(f), p_(*f.shared), bad_(bad) {}

  void run() {
    for (std::size_t k = 0; k < cmds_.size() && !bad_.any(); ++k) {
      step_ = k;
      try {
        execute(cmds_[k]);
      } catch (const std::exception& e) {
        expect(false, std::string("undocumented exception: ") + e.what());
      }
      check_own();
    }
  }

  // What the sequential check needs after the join.
  std::map<slot_index, bytes16>& held() { return held_; }
  std::map<slot_index, std::string>& str_held() { return str_held_; }
  std::vector<std::pair<slot_guard, std::uint64_t>>& guards() { return guards_; }

 private:
  void expect(bool ok, const std::string& what) {
    if (!ok) {
      showValue(cmds_[step_], msg_);
      bad_.add("thread " + std::to_string(id_) + " command " + std::to_string(step_) + " " + msg_.str() + ": " + what);
      msg_.str("");
    }
  }

  std::uint64_t next_tag() { return (std::uint64_t(id_) << 32) | ++tags_; }

  void took(slot_index i) {
    guard_tags_.erase(i);  // a new allocation, not (yet) a guard's
    expect(!held_.count(i) && !f_.witness_slot(i), "alloc returned a slot this thread or the witness holds");
    held_[i] = pattern(next_tag());
    p_.set(i, held_[i]);
  }

  // Every slot this thread holds is allocated and keeps its bytes: no other
  // thread's misuse took it or wrote it.
  void check_own() {
    for (const auto& [i, v] : held_) {
      if (!p_.is_allocated(i)) return expect(false, "slot " + std::to_string(i) + " freed behind its holder's back");
      const auto got = p_.get(i);
      if (!std::equal(got.begin(), got.end(), v.begin()))
        return expect(false, "slot " + std::to_string(i) + " changed behind its holder's back");
    }
    for (const auto& [i, s] : str_held_)
      if (f_.str->get(i) != s) return expect(false, "str slot " + std::to_string(i) + " changed");
  }

  std::optional<slot_index> own(std::uint8_t arg) const {
    if (held_.empty()) return std::nullopt;
    auto it = held_.begin();
    std::advance(it, arg % held_.size());
    return it->first;
  }

  // The guard that ends: frees its allocation if this thread still holds it
  // as that allocation (the tag in the guard list), else nothing.
  void end_guard(std::size_t j) {
    auto& [g, tag] = guards_[j];
    if (tag != 0 && held_.count(g.index()) && guard_tags_[g.index()] == tag) held_.erase(g.index());
    guards_.erase(guards_.begin() + static_cast<std::ptrdiff_t>(j));
  }

  void execute(const command& c) {
    const std::uint8_t a = c.arg;
    switch (c.what) {
      case op::try_alloc:
        if (auto i = p_.try_alloc()) took(*i);
        break;
      case op::alloc_nan:
        expect(throws_exactly<std::invalid_argument>(
                   [&] { (void)p_.alloc(std::chrono::duration<double>(std::numeric_limits<double>::quiet_NaN())); }),
               "alloc(NaN) must throw invalid_argument");
        break;
      case op::alloc_neg_inf:
        if (auto i = p_.alloc(std::chrono::duration<double>(-INFINITY))) took(*i);
        break;
      case op::alloc_short:
        if (auto i = p_.alloc(std::chrono::microseconds(a % 20))) took(*i);
        break;
      case op::alloc_n_batch:
        if (a & 1) {
          expect(throws_exactly<std::invalid_argument>([&] { (void)p_.alloc_n(capacity + 1, std::chrono::seconds(0)); }),
                 "alloc_n(> capacity) must throw invalid_argument");
        } else if (auto got = p_.alloc_n(1 + a % 3, std::chrono::seconds(0))) {
          for (slot_index i : *got) took(i);
        }
        break;
      case op::free_own:
        if (auto i = own(a)) {
          expect(p_.free(*i), "free of a held slot returned false");
          held_.erase(*i);
        }
        break;
      case op::free_if_mine_own:
        if (auto i = own(a)) {
          expect(p_.free_if_mine(*i), "free_if_mine of a held slot returned false");
          held_.erase(*i);
        }
        break;
      case op::free_twice_via_guard: {
        // The stale index freed twice: plain free, then the guard of that
        // allocation ends while another thread may hold the slot again.
        auto g = p_.try_alloc_guard();
        if (!g) break;
        const slot_index i = g->index();
        expect(p_.free(i), "free of a guarded slot returned false");
        if (a & 1) std::this_thread::yield();
        g.reset();  // must free nothing: the allocation it guarded is over
        break;
      }
      case op::free_if_mine_witness:
        expect(!p_.free_if_mine(f_.witness_slots[a & 1]), "free_if_mine freed another process's slot");
        break;
      case op::free_out_of_range:
        expect(throws_exactly<std::out_of_range>([&] { (void)p_.free(capacity + a); }) &&
                   throws_exactly<std::out_of_range>([&] { (void)p_.free_if_mine(capacity + a); }) &&
                   throws_exactly<std::out_of_range>([&] { (void)p_.get(capacity + a); }),
               "an out-of-range index must throw out_of_range");
        break;
      case op::guard_new:
        if (auto g = p_.try_alloc_guard()) {
          took(g->index());
          const std::uint64_t tag = next_tag();
          guard_tags_[g->index()] = tag;
          guards_.emplace_back(std::move(*g), tag);
        }
        break;
      case op::guard_drop:
        if (!guards_.empty()) end_guard(a % guards_.size());
        break;
      case op::guard_move_over:
        if (guards_.size() >= 2) {
          const std::size_t from = a % guards_.size(), to = (a / 16) % guards_.size();
          if (from == to) break;
          auto& [gt, tt] = guards_[to];
          if (tt != 0 && held_.count(gt.index()) && guard_tags_[gt.index()] == tt) held_.erase(gt.index());
          gt = std::move(guards_[from].first);
          tt = guards_[from].second;
          guards_[from].second = 0;
          expect(!guards_[from].first.owns_slot(), "a moved-from guard still owns a slot");
        }
        break;
      case op::guard_outlives_handle: {
        std::optional<slot_guard> g;
        {
          pool local = pool::from_fd(f_.memfd);
          g = local.try_alloc_guard();
        }  // the handle dies; the guard keeps the mapping
        if (g) {
          const slot_index i = g->index();
          expect(p_.is_allocated(i), "a guard's slot is free while its guard lives");
          g.reset();
        }
        break;
      }
      case op::set_overlapping:
        if (auto i = own(a)) {
          const std::size_t off = a % (elem_size + 1), len = (a / 3) % (elem_size - off + 1);
          bytes16 want{};
          std::copy_n(held_[*i].begin() + static_cast<std::ptrdiff_t>(off), len, want.begin());
          p_.set(*i, p_.get(*i).subspan(off, len));
          held_[*i] = want;
        }
        break;
      case op::set_empty:
        if (auto i = own(a)) {
          p_.set(*i, std::span<const std::byte>{});
          held_[*i] = bytes16{};
        }
        break;
      case op::read_own:
        check_own();
        break;
      case op::read_free_or_foreign: {
        const slot_index i = a % capacity;
        if (f_.witness_slot(i)) {
          expect(p_.owner(i) == f_.witness, "the witness's slot changed owner");
        } else if (!held_.count(i)) {
          try {
            (void)p_.get(i);  // allocated to another thread, or logic_error
          } catch (const std::logic_error& e) {
            expect(typeid(e) == typeid(std::logic_error), "get of a free slot must throw logic_error");
          }
        }
        break;
      }
      case op::eventfd_set_caller: p_.eventfd_set(f_.caller_efd); break;
      case op::eventfd_detach: p_.eventfd_set(-1); break;
      case op::eventfd_own: expect(p_.eventfd() >= 0, "eventfd() returned no fd"); break;
      case op::eventfd_bad:
        expect(throws_exactly<std::invalid_argument>([&] { p_.eventfd_set(-2 - a); }),
               "eventfd_set(< -1) must throw invalid_argument");
        break;
      case op::notify: (void)p_.notify(); break;
      case op::consume: (void)p_.eventfd_consume(); break;
      case op::moved_from_member: moved_from_member(a); break;
      case op::str_write_shared:
        // Under TSan a get concurrent with a set of one str slot is a plain
        // byte race, which pool.hpp documents (a mix of values): TSan would
        // rightly name it, so the TSan build writes the shared slot never.
        if (race_free_str) break;
        f_.str->set(f_.shared_str_slot, std::string(1 + a % str_max_len, static_cast<char>('A' + a % 3)));
        break;
      case op::str_read_shared: {
        const std::string got = f_.str->get(f_.shared_str_slot);
        expect(got.size() <= str_max_len, "a str get longer than max_len");
        expect(std::all_of(got.begin(), got.end(), [](char ch) { return ch >= 'A' && ch <= 'C'; }),
               "a str get with a byte of no value written");
        break;
      }
      case op::str_set_own: str_set_own(a); break;
      case op::recycle_fd: {
        const int d = dup(f_.unrelated);
        if (d < 0) break;
        expect(fd_is(d, f_.unrelated_ino), "a fresh dup is not the unrelated file");
        expect(close(d) == 0, "someone closed the unrelated file's dup");
        break;
      }
      case op::count_: break;
    }
  }

  void moved_from_member(std::uint8_t a) {
    const pool& dead = *f_.moved_from;
    pool& dead_mut = *f_.moved_from;  // members called concurrently: each must only throw
    expect(!dead.valid() && dead.capacity() == 0 && dead.data_ptr() == nullptr && dead.fileno() == -1 &&
               dead.memfd() == -1,
           "a moved-from handle's noexcept members are not neutral");
    bool ok = true;
    switch (a % 8) {
      case 0: ok = throws_invalid_handle([&] { (void)dead_mut.try_alloc(); }); break;
      case 1: ok = throws_invalid_handle([&] { (void)dead_mut.free(0); }); break;
      case 2: ok = throws_invalid_handle([&] { (void)dead_mut.free_if_mine(0); }); break;
      case 3: ok = throws_invalid_handle([&] { (void)dead.get(0); }); break;
      case 4: ok = throws_invalid_handle([&] { (void)dead.notify(); }); break;
      case 5: ok = throws_invalid_handle([&] { (void)dead_mut.eventfd(); }); break;
      case 6: ok = throws_invalid_handle([&] { (void)dead.used(); }); break;
      default: ok = throws_invalid_handle([&] { (void)dead_mut.try_alloc_guard(); }); break;
    }
    expect(ok, "a moved-from handle's member must throw errc::invalid_handle");
  }

  void str_set_own(std::uint8_t a) {
    str_pool& s = *f_.str;
    if (str_held_.empty() || (a & 1)) {
      if (auto i = s.try_alloc()) {
        str_held_[*i] = "";
        s.set(*i, std::string_view{});  // default-constructed: stores ""
      }
      return;
    }
    auto it = str_held_.begin();
    std::advance(it, a % str_held_.size());
    const slot_index i = it->first;
    // From bytes of the slot itself (overlapping), as they are now.
    const std::size_t off = a % (s.elem_size() + 1), len = (a / 5) % (s.elem_size() - off + 1);
    const std::string_view src(reinterpret_cast<const char*>(s.slot(i).data()) + off, len);
    const std::string want(src.substr(0, str_max_len));
    s.set(i, src);
    it->second = want;
  }

  int id_;
  const std::vector<command>& cmds_;
  fixture& f_;
  pool& p_;
  failures& bad_;
  std::size_t step_ = 0;
  std::ostringstream msg_;
  std::uint64_t tags_ = 0;
  std::map<slot_index, bytes16> held_;
  std::map<slot_index, std::uint64_t> guard_tags_;  // slot -> the tag of the guard's allocation
  std::map<slot_index, std::string> str_held_;
  std::vector<std::pair<slot_guard, std::uint64_t>> guards_;
};

// After the join: the pool holds exactly the threads' slots and the
// witness's, with their bytes; a forked child's copies of the guards free
// nothing; the unrelated file and the caller's eventfd are untouched.
void sequential_check(fixture& f, std::vector<std::unique_ptr<worker>>& workers) {
  pool& p = *f.shared;
  std::map<slot_index, bytes16> expected;
  std::size_t str_expected = 1;  // the shared str slot
  for (auto& w : workers) {
    for (const auto& [i, v] : w->held()) RC_ASSERT(expected.emplace(i, v).second);
    str_expected += w->str_held().size();
  }
  for (int k = 0; k < 2; ++k) expected[f.witness_slots[k]] = pattern(9000 + k);
  for (slot_index i = 0; i < capacity; ++i) {
    RC_ASSERT(p.is_allocated(i) == (expected.count(i) == 1));
    if (!expected.count(i)) continue;
    const auto got = p.get(i);
    RC_ASSERT(std::equal(got.begin(), got.end(), expected[i].begin()));
  }
  RC_ASSERT(p.used() == expected.size());
  RC_ASSERT(f.str->used() == str_expected);
  RC_ASSERT(p.check().empty());
  RC_ASSERT(p.recover_stale() == 0u);  // every holder is alive
  for (int k = 0; k < 2; ++k) RC_ASSERT(p.owner(f.witness_slots[k]) == f.witness);

  // fork: the child inherits every guard; its copies free nothing, and its
  // checked frees of our slots refuse.
  const pid_t child = fork();
  if (child == 0) {
    int took = 0;
    for (auto& w : workers) {
      w->guards().clear();
      for (const auto& [i, v] : w->held()) took += p.free_if_mine(i) ? 1 : 0;
    }
    _exit(took == 0 ? 0 : 1);
  }
  int status = 0;
  pid_t waited;
  while ((waited = waitpid(child, &status, 0)) < 0 && errno == EINTR) {}
  RC_ASSERT(waited == child);
  RC_ASSERT((WIFEXITED(status) && WEXITSTATUS(status) == 0));
  RC_ASSERT(p.used() == expected.size());

  std::string content(unrelated_text.size(), '\0');
  RC_ASSERT(pread(f.unrelated, content.data(), content.size(), 0) == static_cast<ssize_t>(content.size()));
  RC_ASSERT(content == unrelated_text);
  RC_ASSERT(fd_is(f.unrelated, f.unrelated_ino));
  RC_ASSERT(fd_is(f.caller_efd, f.caller_ino));
}

// Back to the state every case starts from: no slot of ours, the handle's
// eventfd detached, the shared str slot still held.
void clean_up(fixture& f, std::vector<std::unique_ptr<worker>>& workers) {
  for (auto& w : workers) w->guards().clear();
  f.shared->release_owner(getpid());
  f.shared->eventfd_set(-1);
  for (slot_index i = 0; i < str_capacity; ++i)
    if (i != f.shared_str_slot) f.str->free(i);
  std::uint64_t drained;
  while (read(f.caller_efd, &drained, sizeof drained) == sizeof drained) {}
}

RC_GTEST_PROP(PoolMisuse, ThreadsMisusingOneHandle, ()) {
  fixture& f = the_fixture();
  const int threads = *rc::gen::inRange(2, 5);
  const auto programs = *rc::gen::container<std::vector<std::vector<command>>>(
      static_cast<std::size_t>(threads), rc::gen::container<std::vector<command>>(rc::gen::arbitrary<command>()));
  failures bad;
  std::vector<std::unique_ptr<worker>> workers;
  for (int t = 0; t < threads; ++t) workers.push_back(std::make_unique<worker>(t, programs[t], f, bad));
  {
    std::atomic<int> ready{0};
    std::vector<std::thread> running;
    for (auto& w : workers)
      running.emplace_back([&, w = w.get()] {
        ready.fetch_add(1);
        while (ready.load() < threads) std::this_thread::yield();  // start together
        w->run();
      });
    for (auto& t : running) t.join();
  }
  struct at_end {
    fixture& f;
    std::vector<std::unique_ptr<worker>>& w;
    ~at_end() { clean_up(f, w); }  // also when an RC_ASSERT throws
  } cleaned{f, workers};
  if (bad.any()) RC_FAIL(bad.first());
  sequential_check(f, workers);
}

}  // namespace
}  // namespace shmpool::misuse_model
