// The fault sweep's scenarios and the parent's checks (fault_scenarios.hpp).
#include "fault_scenarios.hpp"

#include <dirent.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <iterator>
#include <filesystem>
#include <optional>
#include <stdexcept>

#include "shmpool/platform/liveness.hpp"
#include "shmpool/pool.hpp"
#include "shmpool/stable_reference_buffer.hpp"
#include "stress_util.hpp"

namespace stress::faults {
namespace {

using shmpool::i64_pool;
using shmpool::slot_index;
using shmpool::stable_reference_buffer;
namespace fs = std::filesystem;

i64_pool open_pool(const world& w) {
  return w.memfd >= 0 ? i64_pool::from_fd(w.memfd) : i64_pool::open(w.pool_path, capacity);
}

void require(bool ok, const std::string& what) {
  if (!ok) throw check_failure{what};
}

// alloc, set, read back, free: the smallest use of a handle.
void use_once(i64_pool& p) {
  const auto i = p.try_alloc();
  require(i.has_value(), "try_alloc found no free slot in a pool with free slots");
  p.set(*i, 42);
  require(p.get(*i) == 42, "a slot does not hold the value just set");
  require(p.free(*i), "free of a slot just allocated returned false");
}

// ---- the parent's helpers ------------------------------------------------------

// A live process that holds `count` slots (value_of(slot) in each) until
// killed; returns its pid and fills `held`.
pid_t start_bystander(const world& w, std::size_t count, std::vector<std::uint64_t>& held) {
  int fds[2];
  if (::pipe(fds) != 0) throw std::runtime_error("fault sweep: pipe failed");
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[0]);
    try {
      i64_pool p = open_pool(w);
      for (std::size_t k = 0; k < count; ++k) {
        const slot_index s = *p.try_alloc();
        p.set(s, value_of(s));
        const std::uint64_t v = s;
        if (::write(fds[1], &v, sizeof v) != sizeof v) ::_exit(2);
      }
      ::close(fds[1]);
      for (;;) ::pause();
    } catch (...) {
      ::_exit(1);
    }
  }
  ::close(fds[1]);
  std::uint64_t v = 0;
  while (::read(fds[0], &v, sizeof v) == sizeof v) held.push_back(v);
  ::close(fds[0]);
  if (held.size() != count) throw std::runtime_error("fault sweep: the bystander could not take its slots");
  return pid;
}

// A process that takes two slots and exits without freeing them (reaped).
void leave_dead_owner_slots(const world& w) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    try {
      i64_pool p = open_pool(w);
      (void)p.try_alloc();
      (void)p.try_alloc();
      ::_exit(0);
    } catch (...) {
      ::_exit(1);
    }
  }
  reap(pid);
}

std::vector<std::string> entries_of(const std::string& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) names.push_back(e.path().filename().string());
  return names;
}

// Registry-named files in /dev/shm ("shmpool-srb-<identity>", format 1's
// root segments: the core makes none now, so any the child makes is a leak).
std::vector<std::string> registry_files() {
  std::vector<std::string> names;
  DIR* d = ::opendir("/dev/shm");
  if (d == nullptr) return names;
  while (const dirent* e = ::readdir(d))
    if (std::strncmp(e->d_name, "shmpool-srb-", 12) == 0 && std::strlen(e->d_name) >= 28) names.emplace_back(e->d_name);
  ::closedir(d);
  return names;
}

// Those that appeared during the run and carry the child's pid.
std::string registry_files_of(pid_t pid, const std::vector<std::string>& before) {
  std::string left;
  for (const std::string& name : registry_files()) {
    if (std::find(before.begin(), before.end(), name) != before.end()) continue;
    const std::uint64_t id = std::strtoull(name.substr(12, 16).c_str(), nullptr, 16);
    if (shmpool::platform::identity_pid(id) == pid) left += std::string(left.empty() ? "" : ", ") + name;
  }
  return left;
}

// ---- the scenarios -----------------------------------------------------------

void srb_exercise() {
  stable_reference_buffer b(64);
  require(b.use_count() == 1, "a new buffer's use_count is not 1");
  stable_reference_buffer c = b;
  require(b.use_count() == 2, "a copy did not raise use_count to 2");
  stable_reference_buffer adopted(b.get());
  require(stable_reference_buffer::is_known(b.get()), "a live block is not known");
  {
    stable_reference_buffer::delay_deallocation scope;
    c.reset();
    adopted.reset();
    b.append("abc", 3);
  }
  const void* old = b.get();
  b.reset();
  require(!stable_reference_buffer::is_known(old) || old == nullptr, "a released block is still known");
}

// The fault plugin (stress/CMakeLists.txt: srb_plugin.cpp over its own copy
// of the core, compiled with SHMPOOL_FAULTS), bound by name.
struct fault_plugin {
  void* lib = nullptr;
  void (*arm)(std::uint64_t, int, int, int) = nullptr;
  void (*counts)(std::int64_t[3]) = nullptr;
  std::size_t (*logged)(int*, std::size_t) = nullptr;
  int (*adopt)(const void*) = nullptr;
  int (*copy)(const void*) = nullptr;
  void* (*create)(std::size_t, unsigned char) = nullptr;
  void* (*hand_out)(const void*) = nullptr;
  int (*release)(const void*) = nullptr;
  long (*use_count)(const void*) = nullptr;
  int (*open_scope)() = nullptr;
  int (*close_scope)() = nullptr;
  int (*drop_all)() = nullptr;
  const char* (*last_error)() = nullptr;
  int (*last_error_type)() = nullptr;

  fault_plugin() {
    lib = ::dlopen(SHMPOOL_FAULT_PLUGIN, RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr) throw std::runtime_error(std::string("fault sweep: dlopen of the fault plugin: ") + ::dlerror());
    bind(arm, "srb_plugin_arm_fault");
    bind(counts, "srb_plugin_fault_counts");
    bind(logged, "srb_plugin_logged_calls");
    bind(adopt, "srb_plugin_adopt");
    bind(copy, "srb_plugin_copy");
    bind(create, "srb_plugin_create");
    bind(hand_out, "srb_plugin_hand_out");
    bind(release, "srb_plugin_release");
    bind(use_count, "srb_plugin_use_count");
    bind(open_scope, "srb_plugin_open_scope");
    bind(close_scope, "srb_plugin_close_scope");
    bind(drop_all, "srb_plugin_drop_all");
    bind(last_error, "srb_plugin_last_error");
    bind(last_error_type, "srb_plugin_last_error_type");
  }
  template <class F>
  void bind(F& f, const char* name) {
    f = reinterpret_cast<F>(::dlsym(lib, name));
    if (f == nullptr) throw std::runtime_error(std::string("fault sweep: the fault plugin lacks ") + name);
  }
  // The plugin copy's counts, for the report (before it is unloaded).
  void snapshot() const {
    std::int64_t c[3];
    counts(c);
    g_foreign.set = true;
    g_foreign.calls = static_cast<std::uint64_t>(c[0]);
    g_foreign.injected = c[1] != 0;
    g_foreign.injected_kind = static_cast<int>(c[2]);
    g_foreign.kinds.resize(4096);
    g_foreign.kinds.resize(logged(g_foreign.kinds.data(), g_foreign.kinds.size()));
  }
  // The plugin's last failure as the ending it would have been in-process.
  foreign_ending failure(const char* step) const {
    const int type = last_error_type();
    const ending how = type == 2   ? ending::registry_error
                       : type == 3 ? ending::shmpool_error
                       : type == 4 ? ending::bad_alloc
                                   : ending::other_exception;
    return {how, std::string(last_error()) + " (in the plugin, at " + step + ")"};
  }
};

// The probe's hardest environment: seccomp answers process_vm_readv with
// EFAULT ("nothing readable there") for every address, and exactly one
// descriptor is free (pipe2 needs two, memfd_create one).  For the rest of
// the child's life.
void starve_the_anchor_probe() {
  sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_process_vm_readv, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EFAULT),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  sock_fprog prog{static_cast<unsigned short>(std::size(filter)), filter};
  require(::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 && ::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) == 0,
          std::string("cannot install the seccomp filter that denies process_vm_readv: ") + std::strerror(errno));
  const int lowest = ::open("/dev/null", O_RDONLY | O_CLOEXEC);  // every lower descriptor is open
  require(lowest >= 0, "no descriptor free before the limit was set");
  ::close(lowest);
  rlimit lim{};
  require(::getrlimit(RLIMIT_NOFILE, &lim) == 0, "getrlimit failed");
  lim.rlim_cur = static_cast<rlim_t>(lowest) + 1;
  require(::setrlimit(RLIMIT_NOFILE, &lim) == 0, "cannot lower RLIMIT_NOFILE");
}

// A buffer shared with a plugin whose copy of the core has its own fault
// plan: each step of the plugin may fail; the first failure ends the plugin's
// part.  Whatever happened, once the plugin is unloaded the host's buffer
// must count exactly the host's references and hold its bytes, and a
// reference the plugin handed out must still work.  starved: the plugin's
// copy attaches in starve_the_anchor_probe's environment; it must find the
// host's registry or fail with registry_error (a second registry makes its
// adopt of the host's block fail with std::invalid_argument).
void srb_plugin_exercise(bool starved) {
  stable_reference_buffer host(64);  // the host's copy publishes the registry
  std::memset(host.get(), 7, 64);
  std::optional<foreign_ending> failed;
  stable_reference_buffer* handed = nullptr;
  {
    fault_plugin plugin;
    if (starved) starve_the_anchor_probe();
    plugin.arm(g_exec.nth, g_exec.error, g_exec.kind, g_exec.sticky ? 1 : 0);
    const auto step = [&](const char* what, bool ok) {
      if (!ok && !failed) failed = plugin.failure(what);
      return !failed;
    };
    if (step("adopt", plugin.adopt(host.get()) == 0)) require(host.use_count() == 2, "the plugin's adopt did not count");
    if (!failed && step("copy", plugin.copy(host.get()) == 0))
      require(host.use_count() == 3, "the plugin's copy did not count");
    void* mine = nullptr;
    if (!failed) step("create", (mine = plugin.create(32, 9)) != nullptr);
    if (!failed) step("hand_out", (handed = static_cast<stable_reference_buffer*>(plugin.hand_out(mine))) != nullptr);
    if (!failed) step("open_scope", plugin.open_scope() == 0);
    if (!failed) step("release", plugin.release(host.get()) == 0);
    if (!failed) step("close_scope", plugin.close_scope() == 0);
    if (!failed) {
      const long n = plugin.use_count(host.get());  // -1: it failed
      if (step("use_count", n != -1)) require(n == 2, "the plugin's copy counts " + std::to_string(n) + ", not 2");
    }
    if (!failed) step("drop_all", plugin.drop_all() == 0);
    plugin.snapshot();
    ::dlclose(plugin.lib);
  }
  require(host.use_count() == 1, "after the plugin was unloaded the host's buffer counts " +
                                     std::to_string(host.use_count()) + " references, not 1");
  for (std::size_t i = 0; i < 64; ++i)
    require(static_cast<const unsigned char*>(host.get())[i] == 7, "the host's buffer was overwritten");
  if (handed != nullptr) {
    require(handed->use_count() == 1, "a reference the plugin handed out counts " +
                                          std::to_string(handed->use_count()) + " after the plugin was unloaded");
    require(static_cast<const unsigned char*>(handed->get())[31] == 9, "the handed-out block lost its bytes");
    const void* block = handed->get();
    delete handed;
    require(!stable_reference_buffer::is_known(block), "the handed-out block outlived its last reference");
  }
  if (failed) throw *failed;
}

std::vector<scenario> make_scenarios() {
  std::vector<scenario> s;
  s.push_back({"create", "open() of a new file pool", setup::none, false, [](world& w, const auto& arm) {
                 arm();
                 i64_pool p = i64_pool::open(w.dir + "/new", capacity);
               }});
  s.push_back({"open_existing", "open() of a pool a live process uses, then alloc/set/free", setup::file_pool, false,
               [](world& w, const auto& arm) {
                 arm();
                 i64_pool p = i64_pool::open(w.pool_path, capacity);
                 use_once(p);
               }});
  s.push_back({"from_fd", "from_fd() of a memfd pool a live process uses, then alloc/set/free", setup::memfd_pool,
               false, [](world& w, const auto& arm) {
                 arm();
                 i64_pool p = i64_pool::from_fd(w.memfd);
                 use_once(p);
               }});
  s.push_back({"memfd", "memfd() creation, then alloc/set/free", setup::none, false, [](world&, const auto& arm) {
                 arm();
                 i64_pool p = i64_pool::memfd("fault-sweep", capacity);
                 use_once(p);
               }});
  s.push_back({"anonymous", "anonymous() creation, then alloc/set/free", setup::none, false,
               [](world&, const auto& arm) {
                 arm();
                 i64_pool p = i64_pool::anonymous(capacity);
                 use_once(p);
               }});
  s.push_back({"alloc_free", "alloc/free/alloc_n/free_n/guard on an open pool", setup::file_pool, false,
               [](world& w, const auto& arm) {
                 i64_pool p = open_pool(w);
                 arm();
                 use_once(p);
                 auto batch = p.alloc_n(3, std::chrono::milliseconds(200));
                 require(batch.has_value(), "alloc_n(3) failed with 5 slots free");
                 require(p.free_n(*batch) == 3, "free_n did not free the 3 slots of a batch");
                 {
                   auto g = p.try_alloc_guard();
                   require(g.has_value(), "try_alloc_guard found no free slot");
                 }
               }});
  s.push_back({"blocking_alloc", "alloc() blocked on a full pool, woken by another process's free",
               setup::file_pool, false, [](world& w, const auto& arm) {
                 i64_pool p = open_pool(w);
                 std::vector<slot_index> mine;
                 while (auto i = p.try_alloc()) mine.push_back(*i);
                 require(!mine.empty(), "no free slot to fill the pool with");
                 const slot_index last = mine.back();
                 mine.pop_back();
                 const pid_t freer = ::fork();
                 if (freer == 0) {
                   ::usleep(50'000);
                   p.free(last);
                   ::_exit(0);
                 }
                 arm();
                 const auto got = p.alloc(std::chrono::seconds(3));
                 reap(freer);
                 require(got.has_value(), "alloc timed out although another process freed a slot after 50 ms");
                 mine.push_back(*got);
                 p.free_n(mine);
               }});
  s.push_back({"recover_stale", "recover_stale() with a dead owner's and a live owner's slots", setup::file_pool,
               false, [](world& w, const auto& arm) {
                 i64_pool p = open_pool(w);
                 arm();
                 p.recover_stale();
               }});
  s.push_back({"reset", "reset() of a pool in use", setup::file_pool, true, [](world& w, const auto& arm) {
                 i64_pool p = open_pool(w);
                 arm();
                 p.reset();
               }});
  s.push_back({"check", "check() of a healthy pool", setup::file_pool, false, [](world& w, const auto& arm) {
                 i64_pool p = open_pool(w);
                 arm();
                 const auto problems = p.check();
                 require(problems.empty(), "check() of a healthy pool: " + (problems.empty() ? "" : problems[0]));
               }});
  s.push_back({"srb", "stable_reference_buffer construct/copy/adopt/delay/append/destroy in a fresh process",
               setup::none, false, [](world&, const auto& arm) {
                 arm();
                 srb_exercise();
               }});
  s.push_back({"srb_after_fork", "stable_reference_buffer used in a fork child (the parent used it first)",
               setup::none, false, [](world&, const auto& arm) {
                 stable_reference_buffer b(64);
                 const pid_t child = ::fork();
                 if (child != 0) {  // the parent of the fork only waits: the child runs and reports
                   reap(child);
                   ::_exit(0);
                 }
                 arm();
                 stable_reference_buffer c = b;
                 require(c.use_count() == 2, "a copy of an inherited buffer does not count 2 in the child");
                 srb_exercise();
               }});
  s.push_back({"srb_after_exec", "stable_reference_buffer used after the process re-executes itself",
               setup::none, false, [](world&, const auto&) {
                 stable_reference_buffer b(64);  // the image before exec used the registry
                 exec_self_into("srb");
               }});
  s.push_back({"srb_plugin",
               "stable_reference_buffer shared with a dlopen'd plugin until dlclose: the plugin's own copy of the "
               "core fails",
               setup::none, false, [](world&, const auto&) { srb_plugin_exercise(false); }});
  s.push_back({"srb_plugin_one_fd",
               "srb_plugin with process_vm_readv denied (seccomp: EFAULT) and exactly one descriptor free when "
               "the plugin's copy attaches",
               setup::none, false, [](world&, const auto&) { srb_plugin_exercise(true); }});
  return s;
}

}  // namespace

exec_request g_exec;
foreign_counts g_foreign;

void exec_self_into(const char* scenario_name) {
  const std::string nth = std::to_string(g_exec.nth), kind = std::to_string(g_exec.kind),
                    err = std::to_string(g_exec.error), fd = std::to_string(g_exec.report_fd);
  ::execl("/proc/self/exe", "fault_sweep", "--exec-stage", scenario_name, "--nth", nth.c_str(), "--kind", kind.c_str(), "--errno",
          err.c_str(), "--sticky", g_exec.sticky ? "1" : "0", "--report-fd", fd.c_str(), static_cast<char*>(nullptr));
  throw check_failure{std::string("exec of /proc/self/exe failed: ") + std::strerror(errno)};
}

const char* ending_name(ending e) {
  switch (e) {
    case ending::ok: return "ok";
    case ending::shmpool_error: return "shmpool::error";
    case ending::registry_error: return "registry_error";
    case ending::bad_alloc: return "std::bad_alloc";
    case ending::other_exception: return "undocumented exception";
    case ending::check_failed: return "wrong result";
    case ending::crashed: return "crashed";
    case ending::hung: return "hung";
  }
  return "?";
}

const std::vector<scenario>& all_scenarios() {
  static const std::vector<scenario> s = make_scenarios();
  return s;
}

const scenario* find_scenario(const std::string& name) {
  for (const scenario& s : all_scenarios())
    if (name == s.name) return &s;
  return nullptr;
}

world prepare(const scenario& s) {
  world w;
  char dir[] = "/dev/shm/shmpool-faults-XXXXXX";
  if (::mkdtemp(dir) == nullptr) throw std::runtime_error("fault sweep: mkdtemp in /dev/shm failed");
  w.dir = dir;
  w.registry_files_before = registry_files();
  if (s.needs == setup::none) return w;
  if (s.needs == setup::file_pool) {
    w.pool_path = w.dir + "/pool";
    (void)i64_pool::open(w.pool_path, capacity);
  } else {
    i64_pool p = i64_pool::memfd("fault-sweep", capacity);
    w.memfd = ::dup(p.memfd());
  }
  w.bystander = start_bystander(w, 3, w.held);
  leave_dead_owner_slots(w);
  w.dead_owner_slots = true;
  return w;
}

void tear_down(world& w) {
  if (w.bystander > 0) {
    ::kill(w.bystander, SIGKILL);
    reap(w.bystander);
  }
  if (w.memfd >= 0) ::close(w.memfd);
  std::error_code ec;
  fs::remove_all(w.dir, ec);
}

std::string check_state(const scenario& s, world& w, const outcome& o, pid_t child) {
  if (const std::string left = registry_files_of(child, w.registry_files_before); !left.empty())
    return "the exited process left its registry files behind: " + left;
  std::vector<std::string> names = entries_of(w.dir);
  if (s.needs == setup::none) {
    if (std::string(s.name) != "create") return names.empty() ? "" : "left " + w.dir + "/" + names[0] + " behind";
    if (o.how != ending::ok) return names.empty() ? "" : "a failed create left " + w.dir + "/" + names[0] + " behind";
    if (names.size() != 1 || names[0] != "new") return "after a successful create the directory holds something else";
    try {
      i64_pool p = i64_pool::open(w.dir + "/new", capacity);
      const auto problems = p.check();
      return problems.empty() ? "" : "the created pool is unhealthy: " + problems[0];
    } catch (const std::exception& e) {
      return std::string("the created pool cannot be opened: ") + e.what();
    }
  }
  if (s.needs == setup::file_pool && (names.size() != 1 || names[0] != "pool"))
    return names.empty() ? "the pool file is gone" : "the pool's directory holds more than the pool";
  try {
    i64_pool p = open_pool(w);
    if (!s.frees_live_slots) {
      for (const std::uint64_t slot : w.held) {
        if (!p.is_allocated(slot)) return "the live bystander's slot " + std::to_string(slot) + " was freed";
        if (p.owner(slot) != w.bystander)
          return "the live bystander's slot " + std::to_string(slot) + " now belongs to pid " +
                 std::to_string(p.owner(slot));
        if (p.get(slot) != value_of(slot))
          return "the live bystander's slot " + std::to_string(slot) + " holds " + std::to_string(p.get(slot)) +
                 ", not " + std::to_string(value_of(slot)) + " (re-initialised or overwritten)";
      }
    }
    p.recover_stale();  // the survivor's recovery: the child and the dead owner are gone
    if (s.frees_live_slots && o.how != ending::ok) {
      // A reset that failed part-way may have freed some of the bystander's
      // slots (as it would have freed all), never more than there were.
      if (p.used() > w.held.size())
        return "slots lost: " + std::to_string(p.used()) + " in use after a failed reset and a survivor's recovery";
    } else {
      const std::uint64_t expected = s.frees_live_slots ? 0 : w.held.size();
      if (p.used() != expected)
        return "slots lost: " + std::to_string(p.used()) + " in use after a survivor's recovery, expected " +
               std::to_string(expected);
    }
    if (const auto problems = p.check(); !problems.empty()) return "check() after recovery: " + problems[0];
  } catch (const std::exception& e) {
    return std::string("a healthy process cannot use the pool afterwards: ") + e.what();
  }
  return "";
}

}  // namespace stress::faults
