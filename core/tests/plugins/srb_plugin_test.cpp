// Issue 3, point 1: one count per process, whoever links the core.  Two real
// plugins, each a shared library with its own static copy of the core built
// with -fvisibility=hidden, loaded with dlopen(RTLD_LOCAL), exchange raw
// pointers through a C interface, adopt, copy and reset them; one is
// unloaded inside a delay_deallocation scope while the other still reads the
// memory.  The host is a third copy.  Built with AddressSanitizer: a double
// free, a read after free or a leak fails the run.  The same steps with
// plugins built around a process-local registry (what a naive
// implementation does) get the counts wrong, and the test asserts that.
// Fresh process images (this executable run again, srb_process_support.hpp)
// check that copies agree in a hostile environment and after the last copy
// is unloaded (issue 12, items 8 and 23).
#include <dlfcn.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "shmpool/detail/srb_registry.hpp"
#include "shmpool/platform/liveness.hpp"
#include "shmpool/stable_reference_buffer.hpp"
#include "../srb_process_support.hpp"

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
    bind(hand_out, "srb_plugin_hand_out");
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
  void* (*hand_out)(const void*) = nullptr;

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
  // The seed's motivating case (issue 12, item 13): the raw pointer can be
  // adopted again inside the scope, and the block then outlives it.
  EXPECT_EQ(b.is_known(p), 1);
  EXPECT_TRUE(stable_reference_buffer::is_known(p));
  ASSERT_EQ(b.adopt(p), 0) << b.last_error();
  EXPECT_EQ(b.use_count(p), 1);
  EXPECT_EQ(host_stats().pending, base.pending);
  ASSERT_EQ(b.close_scope(), 0);
  EXPECT_EQ(b.frees(), base.frees) << "the scope's end freed a block adopted again";
  EXPECT_EQ(b.sum(p, 64), 64L * 0xAB);
  ASSERT_EQ(b.release(p), 0);
  EXPECT_EQ(b.frees(), base.frees + 1);  // freed exactly once, by its last reference
  EXPECT_EQ(b.is_known(p), 0);
  EXPECT_EQ(b.adopt(p), 1) << "a freed block was adopted again";
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
    plugin c(SRB_PLUGIN_C);  // loaded after the fork: finds the child's registry through the inherited anchor
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

// A copy loaded over a corrupted anchor page reports a clear error.  In a
// child, so the parent's anchor is never touched.
TEST(SrbPlugins, APluginLoadedOverACorruptedAnchorReportsAClearError) {
  const std::uintptr_t at = shmpool::detail::srb_anchor_address();
  ASSERT_NE(at, 0u);
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    auto* rec = reinterpret_cast<shmpool::detail::srb_anchor_record*>(at);
    const bool writable = ::mprotect(rec, 4096, PROT_READ | PROT_WRITE) == 0;
    if (writable) rec->check ^= 1;
    plugin a(SRB_PLUGIN_A);
    const bool failed = a.create(8, 1) == nullptr;
    const bool clear = std::string(a.last_error()).find("fails its check word") != std::string::npos;
    if (!clear) std::fprintf(stderr, "error was: %s\n", a.last_error());
    ::_exit(writable && failed && clear ? 0 : 1);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

// ---- fresh images: the environment and the last copy (issue 12) --------------------

// Item 8: the host copy attaches first; a plugin loaded later must find the
// same registry: is_known and adopt agree in both directions.
bool host_and_a_later_plugin_agree() {
  bool ok = true;
  stable_reference_buffer host(16);
  std::memset(host.get(), 9, 16);
  if (std::string(srb_support::helper_mode()) == "removed") {
    // What systemd's RemoveIPC or a sweep does to the file the old design used.
    char name[64];
    std::snprintf(name, sizeof name, "/dev/shm/shmpool-srb-%016llx",
                  static_cast<unsigned long long>(shmpool::platform::proc_liveness::self()));
    ::unlink(name);
  }
  plugin a(SRB_PLUGIN_A);
  EXPECT_EQ(a.registry(), &shmpool::detail::srb_current()) << a.last_error();
  EXPECT_EQ(a.is_known(host.get()), 1) << "the later plugin does not know the host's block";
  EXPECT_EQ(a.adopt(host.get()), 0) << a.last_error();
  EXPECT_EQ(host.use_count(), 2u);
  void* p = a.create(8, 4);
  EXPECT_NE(p, nullptr) << a.last_error();
  EXPECT_TRUE(stable_reference_buffer::is_known(p)) << "the host does not know the plugin's block";
  if (p != nullptr) {
    const stable_reference_buffer adopted(static_cast<const void*>(p));
    EXPECT_EQ(a.use_count(p), 2);
    EXPECT_EQ(a.release(p), 0);
  }
  EXPECT_EQ(a.release(host.get()), 0);
  ok = ok && host.use_count() == 1 && !::testing::Test::HasFailure();
  return ok;
}

// Item 23: the last copy (a plugin) is unloaded while a block it created
// is still held by the host; the host's own copy attaches only afterwards.
void the_last_copy_goes_while_its_block_lives() {
  void* p = nullptr;
  stable_reference_buffer* handed = nullptr;
  {
    plugin a(SRB_PLUGIN_A);
    p = a.create(64, 0x42);
    ASSERT_NE(p, nullptr) << a.last_error();
    handed = static_cast<stable_reference_buffer*>(a.hand_out(p));
    ASSERT_NE(handed, nullptr);
    ASSERT_EQ(a.release(p), 0);  // only the handed-out reference remains
  }  // dlclose: the only attached copy leaves
  EXPECT_TRUE(stable_reference_buffer::is_known(p)) << "a live block was forgotten when the last copy left";
  stable_reference_buffer mine(static_cast<const void*>(p));
  EXPECT_EQ(mine.use_count(), 2u);
  {
    const stable_reference_buffer::delay_deallocation scope;
    mine.reset();
    EXPECT_EQ(static_cast<const unsigned char*>(p)[63], 0x42);  // ASan: still allocated
  }
  EXPECT_EQ(static_cast<const unsigned char*>(p)[0], 0x42);  // the handed-out reference keeps it
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    bool ok = stable_reference_buffer::is_known(p);
    plugin b(SRB_PLUGIN_B);
    ok = ok && b.is_known(p) == 1 && b.adopt(p) == 0 && b.use_count(p) == 2 && b.release(p) == 0;
    ::_exit(ok ? 0 : 1);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "the fork child disagreed";
  plugin b(SRB_PLUGIN_B);
  EXPECT_EQ(b.is_known(p), 1);
  EXPECT_EQ(b.adopt(p), 0) << b.last_error();
  EXPECT_EQ(b.release(p), 0);
  const auto before = host_stats();
  delete handed;  // the last reference, dropped by the host's copy
  EXPECT_EQ(host_stats().frees, before.frees + 1);
  EXPECT_FALSE(stable_reference_buffer::is_known(p));
}

TEST(SrbPluginHelper, Run) {
  const char* mode = srb_support::helper_mode();
  if (mode == nullptr) GTEST_SKIP() << "runs only as a helper image of the environment tests";
  const std::string m = mode;
  try {
    if (m == "foreign-first") {
      // Memory that is not ours at the first candidate (a non-PIE heap, a
      // MAP_32BIT mapping): the anchor goes to the next one, and every copy
      // walks past it the same way.
      void* const first = reinterpret_cast<void*>(shmpool::detail::srb_anchor_candidate(0));
      ASSERT_EQ(::mmap(first, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0), first);
      EXPECT_TRUE(host_and_a_later_plugin_agree());
      EXPECT_EQ(shmpool::detail::srb_anchor_address(), shmpool::detail::srb_anchor_candidate(1));
    } else if (m == "last-copy") {
      the_last_copy_goes_while_its_block_lives();
    } else {
      EXPECT_TRUE(host_and_a_later_plugin_agree());
    }
  } catch (const std::exception& e) {
    ADD_FAILURE() << "threw: " << e.what();
  }
}

// Item 8: /dev/shm read-only, full, or the old design's file removed from
// outside.  Real mount namespaces with a private tmpfs (root only).
TEST(SrbPlugins, AHostAndALaterPluginAgreeWhateverDevShmIs) {
  EXPECT_EQ(srb_support::run_helper("SrbPluginHelper.Run", "removed"), 0) << "file removed from outside";
  if (::geteuid() != 0) GTEST_SKIP() << "needs root for a private mount namespace";
  EXPECT_EQ(srb_support::run_helper("SrbPluginHelper.Run", "ro", [] { return srb_support::private_dev_shm("ro"); }),
            0)
      << "read-only /dev/shm";
  EXPECT_EQ(srb_support::run_helper("SrbPluginHelper.Run", "full", [] {
              return srb_support::private_dev_shm("size=4k") && srb_support::fill_up("/dev/shm");
            }),
            0)
      << "full /dev/shm";
}

// The candidate walk: the first candidate taken by foreign memory.
TEST(SrbPlugins, CopiesAgreeWhenTheFirstCandidateIsForeignMemory) {
  EXPECT_EQ(srb_support::run_helper("SrbPluginHelper.Run", "foreign-first"), 0);
}

// Item 23: a registry with live blocks stays reachable after its last copy
// is unloaded (under AddressSanitizer: no use after free, no leak).
TEST(SrbPlugins, UnloadingTheLastCopyNeverForgetsALiveBlock) {
  EXPECT_EQ(srb_support::run_helper("SrbPluginHelper.Run", "last-copy"), 0);
}

}  // namespace
