// fuzz_misuse: the careless caller (issue 13, 3b).  The input drives a
// sequence of API calls, misuses included, on two handles of one memfd pool,
// their guards, a str pool and the eventfd members, and checks after every
// call that it did what pool.hpp documents (its contract comments and ERRORS
// section are the oracle) and nothing else:
//   - a call either succeeds as documented or throws the documented error
//     (std::out_of_range, std::logic_error, std::invalid_argument,
//     shmpool::error with errc::invalid_handle), never something else;
//   - another holder's slots keep their values: a child process (the
//     witness) holds two slots with known bytes for the whole run; a free of
//     them by this process's checked free, a guard, a forked copy of a guard,
//     recover_stale or a stale index must leave them held and unchanged;
//   - an unrelated file (and every dup of it the harness makes, which take
//     the lowest free fd numbers, i.e. the numbers a stale close or notify
//     would hit) keeps its inode and its content, and the caller's eventfd is
//     never closed by the pool;
//   - the model of this process's slots (which are held, with which bytes,
//     by which allocation) matches the pool after every call.
// ASan+UBSan report what the oracle cannot see (a moved-from handle
// dereferenced, memcpy of an overlapping span, a guard after its pool).
//
// Input: one op byte (low 5 bits: the op, bit 7: which handle) followed by
// that op's argument bytes, until the input ends or max_ops have run.
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <typeinfo>
#include <vector>

#include "pool_fuzz_support.hpp"
#include "shmpool/pool.hpp"

namespace {

using namespace shmpool_fuzz;
using shmpool::pool;
using shmpool::slot_guard;
using shmpool::str_pool;

constexpr int max_ops = 160;
constexpr std::uint64_t capacity = 6;
constexpr std::uint64_t elem_size = 16;
constexpr std::uint64_t str_capacity = 4;
constexpr std::uint64_t str_max_len = 24;
constexpr std::string_view unrelated_text = "an unrelated file: the pool must never touch it\n";
using bytes16 = std::array<std::byte, elem_size>;

// ---- expected outcomes ---------------------------------------------------------
template <class F>
void expect_invalid_handle(F&& f, const char* what) {
  try {
    f();
  } catch (const shmpool::error& e) {
    if (e.code() == shmpool::errc::invalid_handle) return;
    fail(what, 1, static_cast<std::uint64_t>(e.code().value()));
  } catch (...) {
    fail(what, 2);
  }
  fail(what, 3);  // a moved-from handle must throw invalid_handle
}

// Throws exactly E (not a subclass standing for another ERRORS row).
template <class E, class F>
void expect_throws(F&& f, const char* what) {
  try {
    f();
  } catch (const E& e) {
    if (typeid(e) != typeid(E)) fail(what, 4);
    return;
  } catch (...) {
    fail(what, 5);
  }
  fail(what, 6);
}

// ---- what lives for the whole fuzzing process ------------------------------------
struct process_fixture {
  int memfd = -1;        // the raw pool's memfd (the harness's own handle below)
  int str_memfd = -1;
  int unrelated = -1;    // a file the pool must never touch
  ino_t unrelated_ino = 0;
  int caller_efd = -1;   // the caller's eventfd, lent to handles by eventfd_set
  ino_t caller_ino = 0;
  pid_t witness = -1;    // another process holding two slots
  std::array<slot_index, 2> witness_slots{};
  std::array<bytes16, 2> witness_values{};
  std::optional<pool> observer;      // never misused: reads the pool for the checks
  std::optional<str_pool> str_observer;
};

bytes16 pattern(std::uint64_t id) {
  bytes16 b{};
  for (std::size_t j = 0; j < b.size(); ++j) b[j] = static_cast<std::byte>((id * 31 + j * 7 + 1) & 0xff);
  return b;
}

// The witness: a child that holds two slots (its own identity) and waits
// until this process dies (PDEATHSIG) or closes the pipe.
void start_witness(process_fixture& f) {
  int ready[2], hold[2];
  if (pipe(ready) != 0 || pipe(hold) != 0) fail("pipe");
  const pid_t parent = getpid();
  const pid_t child = fork();
  if (child < 0) fail("fork witness");
  if (child == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(0);
    close(ready[0]);
    close(hold[1]);
    pool p = pool::from_fd(f.memfd);
    for (int k = 0; k < 2; ++k) {
      const auto i = p.try_alloc();
      if (!i) _exit(2);
      const bytes16 v = pattern(1000 + k);
      p.set(*i, v);
      f.witness_slots[k] = *i;
    }
    if (write(ready[1], f.witness_slots.data(), sizeof f.witness_slots) != sizeof f.witness_slots) _exit(3);
    char c;
    while (read(hold[0], &c, 1) < 0) {}
    _exit(0);
  }
  close(ready[1]);
  close(hold[0]);  // hold[1] stays open (leaked on purpose) until this process ends
  ssize_t got;
  while ((got = read(ready[0], f.witness_slots.data(), sizeof f.witness_slots)) < 0 && errno == EINTR) {}
  if (got != sizeof f.witness_slots) fail("witness did not start");
  close(ready[0]);
  f.witness = child;
  f.witness_values = {pattern(1000), pattern(1001)};
}

process_fixture& fixture() {
  static process_fixture f = [] {
    process_fixture x;
    {
      pool p = pool::memfd("fuzz_misuse", capacity, elem_size);
      x.memfd = fcntl(p.memfd(), F_DUPFD_CLOEXEC, 0);
    }
    {
      str_pool s = str_pool::memfd("fuzz_misuse_str", str_capacity, str_max_len);
      x.str_memfd = fcntl(s.memfd(), F_DUPFD_CLOEXEC, 0);
    }
    x.unrelated = memfd_create("fuzz_misuse_unrelated", MFD_CLOEXEC);
    if (x.unrelated < 0 || pwrite(x.unrelated, unrelated_text.data(), unrelated_text.size(), 0) !=
                               static_cast<ssize_t>(unrelated_text.size()))
      fail("unrelated file");
    struct stat st {};
    fstat(x.unrelated, &st);
    x.unrelated_ino = st.st_ino;
    x.caller_efd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    fstat(x.caller_efd, &st);
    x.caller_ino = st.st_ino;
    x.observer.emplace(pool::from_fd(x.memfd));
    x.str_observer.emplace(str_pool::from_fd(x.str_memfd));
    start_witness(x);
    return x;
  }();
  return f;
}

bool fd_is(int fd, ino_t ino) {
  struct stat st {};
  return fcntl(fd, F_GETFD) >= 0 && fstat(fd, &st) == 0 && st.st_ino == ino;
}

void check_unrelated(int fd, ino_t ino) {
  if (!fd_is(fd, ino)) fail("an unrelated fd was closed or replaced", static_cast<std::uint64_t>(fd));
  std::string got(unrelated_text.size() + 8, '\0');
  const ssize_t n = pread(fd, got.data(), got.size(), 0);
  if (n != static_cast<ssize_t>(unrelated_text.size()) || got.compare(0, n, unrelated_text) != 0)
    fail("an unrelated file's content changed", static_cast<std::uint64_t>(fd));
}

// ---- the model -------------------------------------------------------------------
struct held_slot {
  std::uint64_t allocation;  // which allocation (a guard frees only its own)
  bytes16 value;
};

enum class efd_state { none, own, caller };
struct handle_model {
  bool valid = true;
  efd_state efd = efd_state::none;
  int own_fd = -1;
  std::uint64_t own_count = 0;
};

struct guard_entry {
  slot_guard g;
  std::uint64_t allocation = 0;  // 0: owns nothing (moved from or released)
};

class misuse_run {
 public:
  explicit misuse_run(byte_reader& in) : in_(in), f_(fixture()) {
    // Start from a known state: none of this process's slots held (a previous
    // input's leftovers), the str pool empty, the caller's eventfd drained.
    f_.observer->release_owner(getpid());
    f_.str_observer->reset();
    drain(f_.caller_efd);
    for (auto& h : h_) h.emplace(pool::from_fd(f_.memfd));
    str_.emplace(str_pool::from_fd(f_.str_memfd));
    check_all();
  }

  ~misuse_run() {
    for (int fd : dups_) close(fd);
  }

  void run() {
    for (int k = 0; k < max_ops && !in_.empty(); ++k) {
      const std::uint8_t op = in_.u8();
      step(op & 31u, (op >> 7) & 1u);
      check_all();
    }
    // Destroy guards and handles: guards free their own allocations only.
    while (!guards_.empty()) drop_guard(0);
    for (auto& h : h_) h.reset();
    check_all();
  }

 private:
  void step(unsigned op, unsigned k) {
    if (!m_[k].valid && op < 24) return on_moved_from(k);
    switch (op) {
      case 0: case 1: alloc_one(k, op == 1); break;
      case 2: free_one(k, false); break;
      case 3: free_one(k, true); break;
      case 4: alloc_batch(k); break;
      case 5: free_batch(k); break;
      case 6: new_guard(k); break;
      case 7: if (!guards_.empty()) drop_guard(in_.u8() % guards_.size()); break;
      case 8: move_assign_guard(); break;
      case 9: release_guard(); break;
      case 10: set_overlapping(k); break;
      case 11: out_of_range(k); break;
      case 12: read_free_slot(k); break;
      case 13: eventfd_op(k); break;
      case 14: race_eventfd(k); break;
      case 15: fork_with_guards(); break;
      case 16: move_handle(k); break;
      case 17: destroy_handle(k); break;
      case 18: recover_and_release(k); break;
      case 19: case 20: str_op(); break;
      case 21: race_str(); break;
      case 22: recycle_fd(); break;
      case 23: timeouts_when_full(k); break;
      default: reopen(k); break;
    }
  }

  pool& h(unsigned k) { return *h_[k]; }
  std::uint64_t held_total() const { return held_.size() + 2; }
  bool witness_slot(slot_index i) const { return i == f_.witness_slots[0] || i == f_.witness_slots[1]; }

  // An index by its role, so that an input means the same calls whatever
  // slots this run's identities start from (alloc's start slot depends on
  // the caller's pid and start time): one of ours (by allocation order), a
  // witness slot, a stale index (freed by us, maybe re-allocated since), a
  // free one, or out of range.
  slot_index any_index() {
    const std::uint8_t b = in_.u8();
    const std::size_t n = b >> 2;
    switch (b & 3) {
      case 0:
        if (!held_.empty()) {
          std::vector<std::pair<std::uint64_t, slot_index>> by_age;
          for (const auto& [i, s] : held_) by_age.emplace_back(s.allocation, i);
          std::sort(by_age.begin(), by_age.end());
          return by_age[n % by_age.size()].second;
        }
        [[fallthrough]];
      case 1: return f_.witness_slots[n & 1];
      case 2:
        if (!freed_.empty()) return freed_[freed_.size() - 1 - n % freed_.size()];
        [[fallthrough]];
      default:
        if (n & 1) return capacity + (n >> 1) % 3;
        for (slot_index k = 0, seen = 0; k < capacity; ++k) {
          const slot_index i = (f_.witness_slots[0] + k) % capacity;
          if (!held_.count(i) && !witness_slot(i) && seen++ == (n >> 1) % capacity) return i;
        }
        return f_.witness_slots[0];
    }
  }

  void forget(slot_index i) {
    if (held_.erase(i) == 0) return;
    freed_.push_back(i);
    if (freed_.size() > 8) freed_.erase(freed_.begin());
  }

  void took(slot_index i) {
    if (held_.count(i) || witness_slot(i)) fail("alloc returned a held slot", i);
    const std::uint64_t a = ++allocations_;
    const bytes16 v = pattern(a);
    held_[i] = {a, v};
  }

  void write_back(unsigned k, slot_index i) { h(k).set(i, held_.at(i).value); }

  void alloc_one(unsigned k, bool timed) {
    const bool room = held_total() < capacity;
    std::optional<slot_index> got;
    if (!timed) {
      got = h(k).try_alloc();
    } else {
      switch (in_.u8() % 6) {
        case 0: {
          const std::uint64_t used = h(k).used();
          expect_throws<std::invalid_argument>(
              [&] { (void)h(k).alloc(std::chrono::duration<double>(std::numeric_limits<double>::quiet_NaN())); },
              "alloc(NaN) must throw invalid_argument");
          if (h(k).used() != used) fail("alloc(NaN) changed the pool");
          return;
        }
        case 1:
          if (!room) return;  // +inf waits forever when full: documented, not a misuse to test here
          got = h(k).alloc(std::chrono::duration<double>(std::numeric_limits<double>::infinity()));
          break;
        case 2: got = h(k).alloc(std::chrono::duration<double>(-std::numeric_limits<double>::infinity())); break;
        case 3: got = h(k).alloc(std::chrono::microseconds(in_.u8() % 50)); break;
        case 4: got = h(k).alloc(std::chrono::duration<double>(std::numeric_limits<double>::denorm_min())); break;
        default: got = h(k).alloc(std::chrono::nanoseconds(std::numeric_limits<std::int64_t>::min())); break;
      }
    }
    if (got.has_value() != room) fail("alloc disagrees with the free slots", room, got.has_value());
    if (got) {
      took(*got);
      write_back(k, *got);
    }
  }

  // Plain free of one of ours (or of a stale/free/out-of-range index), or
  // free_if_mine of any.  Plain free of a witness slot is documented to free
  // it (the seed's free): the driver uses free_if_mine there instead.
  void free_one(unsigned k, bool checked) {
    const slot_index i = any_index();
    if (i >= capacity) {
      expect_throws<std::out_of_range>([&] { checked ? h(k).free_if_mine(i) : h(k).free(i); }, "free(out of range)");
      return;
    }
    if (witness_slot(i)) checked = true;
    const bool ours = held_.count(i) != 0;
    const bool freed = checked ? h(k).free_if_mine(i) : h(k).free(i);
    if (freed != ours) fail(checked ? "free_if_mine result" : "free result", i, freed);
    forget(i);
  }

  void alloc_batch(unsigned k) {
    const std::size_t n = in_.u8() % (capacity + 2);
    const unsigned how = in_.u8() % 3;
    if (how == 0) {
      expect_throws<std::invalid_argument>(
          [&] { (void)h(k).alloc_n(n, std::chrono::duration<double>(std::nan(""))); }, "alloc_n(NaN)");
      return;
    }
    if (n > capacity) {
      expect_throws<std::invalid_argument>([&] { (void)h(k).alloc_n(n, std::chrono::seconds(0)); }, "alloc_n(> capacity)");
      return;
    }
    const auto got = how == 1 ? h(k).alloc_n(n, std::chrono::seconds(0))
                              : h(k).alloc_n(n, std::chrono::duration<double>(-INFINITY));
    const bool fits = held_total() + n <= capacity;
    if (got.has_value() != fits) fail("alloc_n disagrees with the free slots", n, got.has_value());
    if (!got) return;
    if (got->size() != n) fail("alloc_n size", n, got->size());
    for (slot_index i : *got) {
      took(i);
      write_back(k, i);
    }
  }

  // Indices freed in order, duplicates and stale ones included.
  void free_batch(unsigned k) {
    std::vector<slot_index> list;
    const std::size_t n = in_.u8() % 6;
    for (std::size_t j = 0; j < n; ++j) {
      const slot_index i = any_index();
      if (!witness_slot(i)) list.push_back(i);
    }
    bool bad = false;
    for (slot_index i : list) bad |= i >= capacity;
    if (bad) {
      const auto before = held_.size();
      expect_throws<std::out_of_range>([&] { (void)h(k).free_n(list); }, "free_n(out of range)");
      if (h(k).used() != before + 2) fail("free_n with a bad index freed something");
      return;
    }
    std::size_t expected = 0;
    for (slot_index i : list) {
      expected += held_.count(i);
      forget(i);
    }
    const std::size_t got = h(k).free_n(list);
    if (got != expected) fail("free_n count", expected, got);
  }

  // ---- guards ----
  void new_guard(unsigned k) {
    auto g = h(k).try_alloc_guard();
    if (g.has_value() != (held_total() < capacity)) fail("try_alloc_guard");
    if (!g) return;
    took(g->index());
    write_back(k, g->index());
    guards_.push_back({std::move(*g), held_.at(g->index()).allocation});
  }

  // What destroying (or overwriting) a guard must do: free its allocation if
  // the slot still holds it, nothing otherwise.
  void guard_ends(const guard_entry& e, slot_index i) {
    if (e.allocation == 0) return;
    const auto it = held_.find(i);
    if (it != held_.end() && it->second.allocation == e.allocation) forget(i);
  }

  void drop_guard(std::size_t j) {
    const slot_index i = guards_[j].g.index();
    guard_ends(guards_[j], i);
    guards_.erase(guards_.begin() + static_cast<std::ptrdiff_t>(j));
  }

  void move_assign_guard() {
    if (guards_.size() < 2) return;
    const std::size_t from = in_.u8() % guards_.size();
    const std::size_t to = in_.u8() % guards_.size();
    if (from == to) return;
    guard_ends(guards_[to], guards_[to].g.index());
    guards_[to].g = std::move(guards_[from].g);
    guards_[to].allocation = guards_[from].allocation;
    guards_[from].allocation = 0;
    if (guards_[from].g.owns_slot()) fail("a moved-from guard still owns its slot");
  }

  void release_guard() {
    if (guards_.empty()) return;
    const std::size_t j = in_.u8() % guards_.size();
    guards_[j].g.release();
    guards_[j].allocation = 0;
  }

  // A forked child inherits every guard and handle: its copies free nothing,
  // and its checked frees of this process's slots refuse.
  void fork_with_guards() {
    if (forks_++ >= 2) return;
    std::vector<slot_index> ours;
    for (const auto& [i, s] : held_) ours.push_back(i);
    const pid_t child = fork();
    if (child < 0) fail("fork");
    if (child == 0) {
      int bad = 0;
      guards_.clear();
      for (slot_index i : ours) bad += h_[0] && m_[0].valid && h(0).free_if_mine(i) ? 1 : 0;
      for (slot_index i : f_.witness_slots) bad += f_.observer->free_if_mine(i) ? 1 : 0;
      _exit(bad);
    }
    int status = 0;
    pid_t waited;
    while ((waited = waitpid(child, &status, 0)) < 0 && errno == EINTR) {}  // libFuzzer's SIGALRM
    if (waited != child || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
      fail("a forked child's guards or checked frees took a slot", static_cast<std::uint64_t>(status));
  }

  // ---- data ----
  // set from a span that overlaps the slot (a subspan of get(i)), or empty.
  void set_overlapping(unsigned k) {
    const slot_index i = any_index();
    const std::size_t off = in_.u8() % (elem_size + 1);
    const std::size_t len = in_.u8() % (elem_size - off + 1);
    if (i >= capacity) {
      expect_throws<std::out_of_range>([&] { h(k).set(i, {}); }, "set(out of range)");
      return;
    }
    if (witness_slot(i)) return;  // allocated to another process: set would (rightly) write it
    if (!held_.count(i)) {
      expect_throws<std::logic_error>([&] { h(k).set(i, {}); }, "set of a slot not allocated");
      return;
    }
    bytes16 expect{};
    const bytes16 old = held_[i].value;
    if (in_.u8() & 1) {
      h(k).set(i, std::span<const std::byte>{});  // an empty span clears the slot
    } else {
      std::copy_n(old.begin() + off, len, expect.begin());
      h(k).set(i, h(k).get(i).subspan(off, len));
    }
    held_[i].value = expect;
  }

  void out_of_range(unsigned k) {
    const slot_index i = capacity + in_.u8() + (in_.u8() & 1 ? (std::uint64_t{1} << 62) : 0);
    pool& p = h(k);
    expect_throws<std::out_of_range>([&] { (void)p.get(i); }, "get(out of range)");
    expect_throws<std::out_of_range>([&] { (void)p.slot(i); }, "slot(out of range)");
    expect_throws<std::out_of_range>([&] { (void)p.ptr(i); }, "ptr(out of range)");
    expect_throws<std::out_of_range>([&] { (void)p.is_allocated(i); }, "is_allocated(out of range)");
    expect_throws<std::out_of_range>([&] { (void)p.owner(i); }, "owner(out of range)");
    expect_throws<std::out_of_range>([&] { p.set(i, {}); }, "set(out of range)");
  }

  void read_free_slot(unsigned k) {
    for (slot_index i = 0; i < capacity; ++i) {
      if (held_.count(i) || witness_slot(i)) continue;
      expect_throws<std::logic_error>([&] { (void)h(k).get(i); }, "get of a free slot");
      if (h(k).owner(i) != 0) fail("owner of a free slot");
      return;
    }
  }

  // ---- eventfd ----
  void eventfd_op(unsigned k) {
    pool& p = h(k);
    handle_model& m = m_[k];
    switch (in_.u8() % 8) {
      case 0: {
        const int fd = p.eventfd();
        if (m.efd == efd_state::none) {
          m.efd = efd_state::own;
          m.own_fd = fd;
          m.own_count = 0;
        }
        if (fd != current_fd(m)) fail("eventfd() returned another fd", static_cast<std::uint64_t>(fd));
        break;
      }
      case 1: p.eventfd_set(f_.caller_efd); m.efd = efd_state::caller; break;
      case 2: p.eventfd_set(-1); m.efd = efd_state::none; break;
      case 3: expect_throws<std::invalid_argument>([&] { p.eventfd_set(-2 - in_.u8()); }, "eventfd_set(< -1)"); break;
      case 4: {
        const int closed = closed_fd_number();
        expect_throws<std::invalid_argument>([&] { p.eventfd_set(closed); }, "eventfd_set(closed fd)");
        break;
      }
      case 5: p.eventfd_set(p.fileno()); break;  // the current fd: nothing changes
      case 6: {
        const bool sent = p.notify();
        if (sent != (m.efd != efd_state::none)) fail("notify result");
        if (m.efd == efd_state::own) ++m.own_count;
        if (m.efd == efd_state::caller) ++caller_count_;
        break;
      }
      default: {
        const std::uint64_t got = p.eventfd_consume();
        std::uint64_t expect = 0;
        if (m.efd == efd_state::own) std::swap(expect, m.own_count);
        if (m.efd == efd_state::caller) std::swap(expect, caller_count_);
        if (got != expect) fail("eventfd_consume count", expect, got);
        break;
      }
    }
    if (p.fileno() != current_fd(m)) fail("fileno() disagrees");
  }

  int current_fd(const handle_model& m) const {
    return m.efd == efd_state::none ? -1 : m.efd == efd_state::own ? m.own_fd : f_.caller_efd;
  }

  static int closed_fd_number() {
    for (int fd = 700;; ++fd)
      if (fcntl(fd, F_GETFD) < 0) return fd;
  }

  // Two threads switch the handle's eventfd around (own, caller's, none)
  // while this one notifies and consumes and a fourth recycles fd numbers:
  // a stale fd closed twice or written would hit the recycled dup.
  void race_eventfd(unsigned k) {
    if (races_++ >= 2) return;
    pool& p = h(k);
    const int rounds = 16 + in_.u8() % 48;
    std::atomic<bool> bad_fd{false};
    std::atomic<int> done{0};
    auto switch_around = [&] {
      for (int r = 0; r < rounds; ++r) {
        p.eventfd_set(f_.caller_efd);
        (void)p.eventfd();
        p.eventfd_set(-1);
        (void)p.eventfd();
      }
      p.eventfd_set(-1);
      done.fetch_add(1);
    };
    std::thread switcher(switch_around), second_switcher(switch_around);
    std::thread recycler([&] {
      while (done.load() < 2) {
        const int d = dup(f_.unrelated);
        if (d < 0) continue;
        if (!fd_is(d, f_.unrelated_ino)) bad_fd = true;
        if (close(d) != 0) bad_fd = true;  // someone closed our number
      }
    });
    while (done.load() < 2) {
      (void)p.notify();
      (void)p.eventfd_consume();
    }
    switcher.join();
    second_switcher.join();
    recycler.join();
    if (bad_fd) fail("the eventfd race closed or replaced an unrelated fd");
    m_[k].efd = efd_state::none;
    m_[k].own_count = 0;
    drain(f_.caller_efd);
    caller_count_ = 0;
  }

  static void drain(int fd) {
    std::uint64_t v;
    while (read(fd, &v, sizeof v) == sizeof v) {}
  }

  // Takes the lowest free fd numbers with dups of the unrelated file: what a
  // stale close or a stale notify of the pool would hit.
  void recycle_fd() {
    if (dups_.size() >= 4) {
      close(dups_.back());
      dups_.pop_back();
      return;
    }
    const int d = dup(f_.unrelated);
    if (d >= 0) dups_.push_back(d);
  }

  // ---- handles ----
  // Every member of a moved-from handle: invalid_handle or the neutral value.
  void on_moved_from(unsigned k) {
    pool& p = h(k);
    if (p.valid()) fail("a moved-from handle says valid()");
    if (p.capacity() != 0 || p.elem_size() != 0 || p.data_ptr() != nullptr || p.memfd() != -1 || p.fileno() != -1 ||
        p.path().has_value() || p.variant() != shmpool::pool_variant::raw)
      fail("a moved-from handle's noexcept members are not neutral");
    const slot_index i = in_.u8() % capacity;
    switch (in_.u8() % 12) {
      case 0: expect_invalid_handle([&] { (void)p.try_alloc(); }, "moved-from try_alloc"); break;
      case 1: expect_invalid_handle([&] { (void)p.free(i); }, "moved-from free"); break;
      case 2: expect_invalid_handle([&] { (void)p.free_if_mine(i); }, "moved-from free_if_mine"); break;
      case 3: expect_invalid_handle([&] { (void)p.get(i); }, "moved-from get"); break;
      case 4: expect_invalid_handle([&] { p.set(i, {}); }, "moved-from set"); break;
      case 5: expect_invalid_handle([&] { (void)p.alloc_n(1, std::chrono::seconds(0)); }, "moved-from alloc_n"); break;
      case 6: expect_invalid_handle([&] { (void)p.used(); }, "moved-from used"); break;
      case 7: expect_invalid_handle([&] { (void)p.recover_stale(); }, "moved-from recover_stale"); break;
      case 8: expect_invalid_handle([&] { (void)p.eventfd(); }, "moved-from eventfd"); break;
      case 9: expect_invalid_handle([&] { (void)p.notify(); }, "moved-from notify"); break;
      case 10: expect_invalid_handle([&] { (void)p.try_alloc_guard(); }, "moved-from try_alloc_guard"); break;
      default: reopen(k); break;
    }
  }

  // Moves handle k into the other one (move-assigned over a live handle:
  // that one's own eventfd closes) or into a temporary that dies.
  void move_handle(unsigned k) {
    const unsigned o = 1 - k;
    if (in_.u8() & 1) {
      h(o) = std::move(h(k));
      m_[o] = m_[k];
    } else {
      pool moved = std::move(h(k));
      (void)moved;
    }
    m_[k] = handle_model{};
    m_[k].valid = false;
  }

  // The handle dies; its guards live on (they share the mapping).
  void destroy_handle(unsigned k) {
    h_[k].reset();
    h_[k].emplace(pool::from_fd(f_.memfd));
    h(k) = pool(std::move(h(k)));
    { pool gone = std::move(h(k)); }
    m_[k] = handle_model{};
    m_[k].valid = false;
  }

  void reopen(unsigned k) {
    h(k) = pool::from_fd(f_.memfd);
    m_[k] = handle_model{};
  }

  void recover_and_release(unsigned k) {
    switch (in_.u8() % 3) {
      case 0:
        if (h(k).recover_stale() != 0) fail("recover_stale freed a live holder's slot");
        break;
      case 1:
        expect_throws<std::invalid_argument>([&] { (void)h(k).release_owner(-(in_.u8() % 3)); }, "release_owner(<= 0)");
        break;
      default:
        if (h(k).release_owner(getpid()) != held_.size()) fail("release_owner(self) count");
        held_.clear();
        break;
    }
    if (!h(k).check().empty()) fail("check() found a problem");
  }

  void timeouts_when_full(unsigned k) {
    while (held_total() < capacity) {
      const auto i = h(k).try_alloc();
      if (!i) fail("try_alloc with room failed");
      took(*i);
      write_back(k, *i);
    }
    if (h(k).try_alloc() || h(k).alloc(std::chrono::duration<double>(-INFINITY)) ||
        h(k).alloc(std::chrono::duration<double>(0.0)) || h(k).alloc(std::chrono::nanoseconds(1)) ||
        h(k).alloc_n(1, std::chrono::microseconds(1)))
      fail("an alloc succeeded on a full pool");
    expect_throws<std::invalid_argument>([&] { (void)h(k).alloc(std::chrono::duration<float>(NAN)); }, "alloc(float NaN)");
  }

  // ---- str pool ----
  void str_op() {
    str_pool& s = *str_;
    // Odd: the n-th slot we hold (which slot alloc returns depends on the
    // caller's identity); even: a slot number, or out of range.
    const std::uint8_t pick = in_.u8();
    slot_index i = (pick >> 1) % (str_capacity + 1);
    if ((pick & 1) && !str_values_.empty()) {
      auto it = str_values_.begin();
      std::advance(it, (pick >> 1) % str_values_.size());
      i = it->first;
    }
    if (i >= str_capacity) {
      expect_throws<std::out_of_range>([&] { s.set(i, "x"); }, "str set(out of range)");
      return;
    }
    const bool held = str_values_.count(i) != 0;
    switch (in_.u8() % 6) {
      case 0:
        if (!held) {
          if (auto g = s.try_alloc(); g) {
            if (str_values_.count(*g)) fail("str alloc returned a held slot");
            str_values_[*g] = s.get(*g);
          }
        }
        break;
      case 1:
        if (s.free(i) != held) fail("str free result");
        str_values_.erase(i);
        break;
      case 2: case 3: {
        if (!held) {
          expect_throws<std::logic_error>([&] { s.set(i, std::string_view{}); }, "str set of a free slot");
          break;
        }
        std::string_view src;
        const std::size_t off = in_.u8() % (s.elem_size() + 1);
        const std::size_t len = in_.u8() % (s.elem_size() - off + 1);
        const unsigned kind = in_.u8() % 3;
        std::string long_value(str_max_len + 1 + in_.u8() % 8, static_cast<char>('a' + in_.u8() % 26));
        if (kind == 0) src = std::string_view{};  // default-constructed: stores ""
        if (kind == 1) src = std::string_view(reinterpret_cast<const char*>(s.slot(i).data()) + off, len);
        if (kind == 2) src = long_value;
        const std::string expect(src.substr(0, str_max_len));
        s.set(i, src);
        str_values_[i] = expect;
        break;
      }
      default:
        if (!held) expect_throws<std::logic_error>([&] { (void)s.get(i); }, "str get of a free slot");
        break;
    }
  }

  // A str slot read while another thread writes it: any mix of the values,
  // never longer than max_len; afterwards exactly the last value.
  void race_str() {
    if (races_++ >= 2) return;
    str_pool& s = *str_;
    const auto i = s.try_alloc();
    if (!i) return;
    const std::string a(str_max_len, 'A'), b(3, 'B');
    s.set(*i, a);  // the slot's bytes are all 'A' before any reader looks
    std::atomic<bool> done{false};
    std::thread writer([&] {
      for (int r = 0; r < 64; ++r) s.set(*i, r & 1 ? std::string_view(b) : std::string_view(a));
      done = true;
    });
    while (!done.load()) {
      const std::string got = s.get(*i);
      if (got.size() > str_max_len) fail("str get longer than max_len", got.size());
      for (char c : got)
        if (c != 'A' && c != 'B' && c != '\0') fail("str get returned a byte of no value", static_cast<std::uint8_t>(c));
    }
    writer.join();
    if (s.get(*i) != b) fail("str get after the race is not the last value set");  // r = 63 wrote b
    str_values_[*i] = b;
  }

  // ---- the checks after every call ----
  void check_all() {
    pool& obs = *f_.observer;
    for (slot_index i = 0; i < capacity; ++i) {
      const bool held = held_.count(i) || witness_slot(i);
      if (obs.is_allocated(i) != held) fail("slot allocation differs from the model", i, held);
      if (!held) continue;
      const bytes16& want = witness_slot(i) ? f_.witness_values[i == f_.witness_slots[1]] : held_.at(i).value;
      const auto got = obs.get(i);
      if (!std::equal(got.begin(), got.end(), want.begin())) fail("a held slot's bytes changed", i);
      if (witness_slot(i) && obs.owner(i) != f_.witness) fail("the witness lost its slot", i);
    }
    if (obs.used() != held_total()) fail("used() differs from the model", held_total(), obs.used());
    for (const auto& [i, v] : str_values_)
      if (f_.str_observer->get(i) != v) fail("a str slot differs from the last value set", i);
    if (f_.str_observer->used() != str_values_.size()) fail("str used() differs");
    check_unrelated(f_.unrelated, f_.unrelated_ino);
    for (int d : dups_) check_unrelated(d, f_.unrelated_ino);
    if (!fd_is(f_.caller_efd, f_.caller_ino)) fail("the pool closed the caller's eventfd");
  }

  byte_reader& in_;
  process_fixture& f_;
  std::array<std::optional<pool>, 2> h_;
  std::array<handle_model, 2> m_{};
  std::optional<str_pool> str_;
  std::map<slot_index, held_slot> held_;
  std::map<slot_index, std::string> str_values_;
  std::vector<guard_entry> guards_;
  std::vector<slot_index> freed_;  // recently freed by this process, oldest first
  std::vector<int> dups_;
  std::uint64_t allocations_ = 0;
  std::uint64_t caller_count_ = 0;
  int forks_ = 0;
  int races_ = 0;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  byte_reader in(data, size);
  misuse_run run(in);
  run.run();
  return 0;
}
