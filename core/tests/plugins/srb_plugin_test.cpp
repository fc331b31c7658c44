// Issue 3, point 1: one count per process, whoever links the core.  Two real
// plugins, each a shared library with its own static copy of the core built
// with -fvisibility=hidden, loaded with dlopen(RTLD_LOCAL), exchange raw
// pointers through a C interface, adopt, copy and reset them; one is
// unloaded inside a delay_deallocation scope while the other still reads the
// memory.  The host is a third copy.  Built with AddressSanitizer: a double
// free, a read after free or a leak fails the run.  The same steps with
// plugins built around a process-local registry (what a naive
// implementation does) get the counts wrong, and the test asserts that.
#include <dlfcn.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "shmpool/detail/srb_registry.hpp"
#include "shmpool/stable_reference_buffer.hpp"

namespace {

using shmpool::stable_reference_buffer;

// One loaded plugin and its C interface.
class plugin {
 public:
  explicit plugin(const char* path) : handle_(::dlopen(path, RTLD_NOW | RTLD_LOCAL)) {
    if (handle_ == nullptr) throw std::runtime_error(std::string("dlopen: ") + ::dlerror());
    bind(create, "srb_plugin_create");
    bind(adopt, "srb_plugin_adopt");
    bind(copy, "srb_plugin_copy");
    bind(release, "srb_plugin_release");
    bind(use_count, "srb_plugin_use_count");
    bind(is_known, "srb_plugin_is_known");
    bind(sum, "srb_plugin_sum");
    bind(open_scope, "srb_plugin_open_scope");
    bind(close_scope, "srb_plugin_close_scope");
    bind(stats_into, "srb_plugin_stats");
    bind(registry, "srb_plugin_registry");
    bind(last_error, "srb_plugin_last_error");
    bind(local_build, "srb_plugin_local_registry_build");
  }
  ~plugin() { unload(); }
  plugin(const plugin&) = delete;
  plugin& operator=(const plugin&) = delete;

  void unload() {
    if (handle_ != nullptr) ::dlclose(handle_);
    handle_ = nullptr;
  }
  std::uint64_t frees() { return stat(2); }
  std::uint64_t pending() { return stat(1); }
  std::uint64_t stat(int i) {
    std::uint64_t s[4] = {};
    stats_into(s);
    return s[i];
  }

  void* (*create)(std::size_t, unsigned char) = nullptr;
  int (*adopt)(const void*) = nullptr;
  int (*copy)(const void*) = nullptr;
  int (*release)(const void*) = nullptr;
  long (*use_count)(const void*) = nullptr;
  int (*is_known)(const void*) = nullptr;
  long (*sum)(const void*, std::size_t) = nullptr;
  int (*open_scope)() = nullptr;
  int (*close_scope)() = nullptr;
  void (*stats_into)(std::uint64_t*) = nullptr;
  const void* (*registry)() = nullptr;
  const char* (*last_error)() = nullptr;
  int (*local_build)() = nullptr;

 private:
  template <class F>
  void bind(F& fn, const char* name) {
    fn = reinterpret_cast<F>(::dlsym(handle_, name));
    if (fn == nullptr) throw std::runtime_error(std::string("dlsym ") + name);
  }
  void* handle_;
};

shmpool::detail::srb_stats host_stats() { return shmpool::detail::srb_current_stats(); }

TEST(SrbPlugins, TheCopiesReallyAreSeparate) {
  plugin a(SRB_PLUGIN_A), b(SRB_PLUGIN_B);
  // Each plugin's core is private to it: no symbol of the core is exported.
  EXPECT_EQ(::dlsym(RTLD_DEFAULT, "_ZN7shmpool6detail11srb_currentEv"), nullptr);
  EXPECT_EQ(a.local_build(), 0);
  EXPECT_EQ(b.local_build(), 0);
}

TEST(SrbPlugins, CountsAreExactAcrossPluginsAndTheHost) {
  const auto base = host_stats();
  plugin a(SRB_PLUGIN_A), b(SRB_PLUGIN_B);
  ASSERT_EQ(a.registry(), &shmpool::detail::srb_current());
  ASSERT_EQ(b.registry(), &shmpool::detail::srb_current());
  EXPECT_EQ(host_stats().copies, base.copies + 2);

  void* p = a.create(64, 0xAB);
  ASSERT_NE(p, nullptr) << a.last_error();
  EXPECT_EQ(b.is_known(p), 1);
  EXPECT_TRUE(stable_reference_buffer::is_known(p));
  ASSERT_EQ(b.adopt(p), 0) << b.last_error();
  EXPECT_EQ(a.use_count(p), 2);
  EXPECT_EQ(b.use_count(p), 2);
  {
    const stable_reference_buffer host(static_cast<const void*>(p));
    EXPECT_EQ(host.use_count(), 3u);
    EXPECT_EQ(a.use_count(p), 3);
  }
  EXPECT_EQ(b.use_count(p), 2);
  ASSERT_EQ(b.copy(p), 0);
  EXPECT_EQ(a.use_count(p), 3);
  ASSERT_EQ(b.release(p), 0);
  EXPECT_EQ(a.use_count(p), 2);
  EXPECT_EQ(b.sum(p, 64), 64L * 0xAB);

  // Unload the creator inside a delay scope opened by the other plugin.
  ASSERT_EQ(b.open_scope(), 0);
  ASSERT_EQ(b.release(p), 0);
  EXPECT_EQ(a.use_count(p), 1);
  a.unload();  // drops A's last reference: the block must wait for the scope
  EXPECT_EQ(host_stats().copies, base.copies + 1);
  EXPECT_EQ(host_stats().pending, base.pending + 1);
  EXPECT_EQ(b.frees(), base.frees);
  EXPECT_EQ(b.sum(p, 64), 64L * 0xAB);  // still allocated (ASan would say otherwise)
  EXPECT_EQ(b.is_known(p), 0);
  EXPECT_EQ(b.adopt(p), 1) << "a released block was adopted again";
  ASSERT_EQ(b.close_scope(), 0);
  EXPECT_EQ(b.frees(), base.frees + 1);  // freed exactly once, at the scope's end
  EXPECT_EQ(b.pending(), base.pending);

  // Reloaded, A joins the same registry again; now B goes away without a scope.
  plugin a2(SRB_PLUGIN_A);
  ASSERT_EQ(a2.registry(), &shmpool::detail::srb_current());
  void* q = b.create(32, 3);
  ASSERT_EQ(a2.adopt(q), 0);
  EXPECT_EQ(a2.use_count(q), 2);
  b.unload();
  EXPECT_EQ(a2.use_count(q), 1);
  EXPECT_EQ(a2.sum(q, 32), 32L * 3);
  ASSERT_EQ(a2.release(q), 0);
  EXPECT_EQ(host_stats().frees, base.frees + 2);
  EXPECT_EQ(host_stats().live, base.live);
  EXPECT_EQ(host_stats().pending, base.pending);
}

TEST(SrbPlugins, AnUnknownAddressIsRejectedInEveryCopyWithItsAddress) {
  plugin b(SRB_PLUGIN_B);
  int on_stack = 0;
  EXPECT_EQ(b.adopt(&on_stack), 1);
  char text[32];
  std::snprintf(text, sizeof text, "%p", static_cast<void*>(&on_stack));
  EXPECT_NE(std::string(b.last_error()).find(text), std::string::npos) << b.last_error();
}

// Threads racing to make a fresh copy's first call attach it once.
TEST(SrbPlugins, ThreadsRacingToAttachAFreshCopyCountItOnce) {
  const auto base = host_stats();
  plugin c(SRB_PLUGIN_C);
  std::atomic<int> ready{0};
  std::vector<std::thread> threads;
  std::vector<void*> made(4, nullptr);
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      ready.fetch_add(1);
      while (ready.load() < 4) std::this_thread::yield();
      made[t] = c.create(8, 1);
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(host_stats().copies, base.copies + 1);
  for (void* p : made) {
    ASSERT_NE(p, nullptr) << c.last_error();
    EXPECT_EQ(c.use_count(p), 1);
    EXPECT_EQ(c.release(p), 0);
  }
  EXPECT_EQ(host_stats().live, base.live);
}

// After fork, every copy in the child (the inherited ones and one loaded in
// the child) shares the child's registry, and nothing the child does
// changes the parent's counts.
TEST(SrbPlugins, AForkChildGetsOneRegistryForAllItsCopies) {
  const auto base = host_stats();
  plugin a(SRB_PLUGIN_A), b(SRB_PLUGIN_B);
  void* p = a.create(16, 5);
  ASSERT_EQ(b.adopt(p), 0);
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    bool ok = a.use_count(p) == 2 && b.use_count(p) == 2;
    ok = ok && b.release(p) == 0 && a.use_count(p) == 1;
    void* q = b.create(8, 1);
    ok = ok && a.adopt(q) == 0 && a.use_count(q) == 2;
    plugin c(SRB_PLUGIN_C);  // loaded after the fork: finds the child's registry by its root segment
    ok = ok && c.registry() == a.registry() && c.adopt(q) == 0 && b.use_count(q) == 3;
    ok = ok && c.release(q) == 0 && a.release(q) == 0 && b.release(q) == 0 && c.is_known(q) == 0;
    ::_exit(ok ? 0 : 1);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_EQ(a.use_count(p), 2);
  EXPECT_EQ(b.use_count(p), 2);
  EXPECT_EQ(host_stats().live, base.live + 1);
  EXPECT_EQ(a.release(p), 0);
  EXPECT_EQ(b.release(p), 0);
  EXPECT_EQ(host_stats().live, base.live);
  shmpool::detail::srb_sweep_dead_registries();
}

// The same exchange with a registry per static copy: the copies disagree
// about which blocks exist, cannot adopt each other's blocks, and ignore
// each other's delay scopes.
TEST(SrbPlugins, AProcessLocalRegistryGetsTheCountsWrong) {
  plugin a(SRB_NAIVE_PLUGIN_A), b(SRB_NAIVE_PLUGIN_B);
  ASSERT_EQ(a.local_build(), 1);
  EXPECT_NE(a.registry(), b.registry());

  void* p = a.create(32, 1);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(a.is_known(p), 1);
  EXPECT_EQ(b.is_known(p), 0) << "the naive copies agreed (the test would prove nothing)";
  EXPECT_EQ(b.adopt(p), 1);  // B cannot hold a counted reference to A's block...
  EXPECT_EQ(a.use_count(p), 1);  // ...so A's count misses B's use of the pointer

  ASSERT_EQ(a.open_scope(), 0);  // a process-wide scope, as far as A knows
  void* q = b.create(16, 2);
  const std::uint64_t frees_before = b.frees();
  ASSERT_EQ(b.release(q), 0);
  EXPECT_EQ(b.frees(), frees_before + 1) << "B's block was kept despite B not seeing A's scope";
  ASSERT_EQ(a.close_scope(), 0);
  ASSERT_EQ(a.release(p), 0);
}

// A copy loaded over a corrupted root segment reports a clear error.  In a
// child, so the parent's segment is never touched.
TEST(SrbPlugins, APluginLoadedOverACorruptedRootSegmentReportsAClearError) {
  (void)shmpool::detail::srb_current();
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    const std::string path = "/dev/shm/" + shmpool::detail::srb_registry_name();
    const int fd = ::open(path.c_str(), O_WRONLY | O_TRUNC);
    const char garbage[48] = "not a registry";
    const bool wrote = fd >= 0 && ::write(fd, garbage, sizeof garbage) == static_cast<ssize_t>(sizeof garbage);
    if (fd >= 0) ::close(fd);
    plugin a(SRB_PLUGIN_A);
    const bool failed = a.create(8, 1) == nullptr;
    const bool clear = std::string(a.last_error()).find("not usable: bad magic") != std::string::npos;
    if (!clear) std::fprintf(stderr, "error was: %s\n", a.last_error());
    ::_exit(wrote && failed && clear ? 0 : 1);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  shmpool::detail::srb_sweep_dead_registries();
}

}  // namespace
