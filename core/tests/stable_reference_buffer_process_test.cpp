// stable_reference_buffer across processes: fork (the child's operations
// never change the parent's counts; inherited buffers keep their counts),
// cleanup of root segments (normal exit, SIGKILL, PID reuse, live owners),
// and corrupted root segments.  Children report through their exit status.
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <future>
#include <iterator>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "shmpool/detail/srb_registry.hpp"
#include "shmpool/platform/liveness.hpp"
#include "shmpool/stable_reference_buffer.hpp"

extern char** environ;

namespace {

using shmpool::stable_reference_buffer;
using delay = stable_reference_buffer::delay_deallocation;
namespace detail = shmpool::detail;
namespace platform = shmpool::platform;

constexpr const char* helper_env = "SHMPOOL_SRB_HELPER_OUT";

detail::srb_stats stats() { return detail::srb_current_stats(); }

bool shm_exists(const std::string& name) { return ::access(("/dev/shm/" + name).c_str(), F_OK) == 0; }

// Runs fn in a forked child; returns its exit status (0 = fn returned true).
// The child dies by SIGALRM rather than hang.
template <class F>
int in_child(F&& fn) {
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::alarm(20);
    ::_exit(fn() ? 0 : 1);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 100 + WTERMSIG(status);
}

// Removes what dead children of this test left behind.
class SrbProcess : public ::testing::Test {
 protected:
  void SetUp() override { (void)detail::srb_current(); }  // attached before any fork
  void TearDown() override { detail::srb_sweep_dead_registries(); }
};

// ---- fork ------------------------------------------------------------------------

TEST_F(SrbProcess, ChildOperationsNeverChangeTheParentsCounts) {
  stable_reference_buffer a(64);
  std::memset(a.get(), 0x77, 64);
  stable_reference_buffer b(a);
  const int status = in_child([&] {
    bool ok = a.use_count() == 2;
    {
      const stable_reference_buffer c(a);
      const stable_reference_buffer adopted(static_cast<const void*>(a.get()));
      ok = ok && a.use_count() == 4;
    }
    const auto before = stats();
    a.reset();
    b.reset();  // the child's last reference: frees the child's copy
    ok = ok && stats().frees == before.frees + 1;
    const stable_reference_buffer fresh(128);
    return ok && fresh.use_count() == 1;
  });
  EXPECT_EQ(status, 0);
  EXPECT_EQ(a.use_count(), 2u);
  EXPECT_TRUE(stable_reference_buffer::is_known(a.get()));
  EXPECT_EQ(static_cast<unsigned char*>(a.get())[63], 0x77);
}

TEST_F(SrbProcess, InheritedBuffersKeepCorrectCountsInTheChild) {
  const stable_reference_buffer a(16);
  stable_reference_buffer b(a);
  const stable_reference_buffer lone(8);
  const int status = in_child([&] {
    bool ok = a.use_count() == 2 && lone.use_count() == 1;
    ok = ok && stable_reference_buffer::is_known(a.get()) && stable_reference_buffer::is_known(lone.get());
    b.reset();
    ok = ok && a.use_count() == 1;
    const stable_reference_buffer adopted(static_cast<const void*>(lone.get()));
    return ok && lone.use_count() == 2;
  });
  EXPECT_EQ(status, 0);
  EXPECT_EQ(a.use_count(), 2u);
  EXPECT_EQ(lone.use_count(), 1u);
}

TEST_F(SrbProcess, TheChildPublishesItsOwnRootSegmentAndRemovesItOnNormalExit) {
  const std::string parent_name = detail::srb_registry_name();
  ASSERT_TRUE(shm_exists(parent_name));
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    const std::string mine = detail::srb_registry_name();
    const bool ok = mine != parent_name && shm_exists(mine) && detail::srb_find_registry_as_new_copy() != nullptr;
    char name[128] = {};
    std::snprintf(name, sizeof name, "%s", mine.c_str());
    (void)!::write(fds[1], name, sizeof name);
    std::exit(ok ? 0 : 1);  // a normal exit: static destructors remove the child's segment
  }
  char child_name[128] = {};
  ASSERT_EQ(::read(fds[0], child_name, sizeof child_name), static_cast<ssize_t>(sizeof child_name));
  int status = 0;
  ::waitpid(pid, &status, 0);
  ::close(fds[0]);
  ::close(fds[1]);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_FALSE(shm_exists(child_name)) << child_name;
  EXPECT_TRUE(shm_exists(parent_name));
}

TEST_F(SrbProcess, ForkWhileOtherThreadsUseTheRegistryNeverDeadlocksTheChild) {
  std::atomic<bool> stop{false};
  std::vector<std::thread> busy;
  for (int t = 0; t < 2; ++t)
    busy.emplace_back([&] {
      while (!stop.load()) {
        stable_reference_buffer x(32);
        const stable_reference_buffer y(static_cast<const void*>(x.get()));
        const delay scope;
        x.append("abc", 3);
      }
    });
  for (int i = 0; i < 20; ++i) {
    const int status = in_child([] {
      stable_reference_buffer x(8);
      const stable_reference_buffer copy(x);
      { const delay scope; }
      x.append("z", 1);
      return x.use_count() == 1 && copy.use_count() == 1 && stable_reference_buffer::is_known(x.get());
    });
    EXPECT_EQ(status, 0) << "fork " << i;
  }
  stop.store(true);
  for (auto& t : busy) t.join();
}

TEST_F(SrbProcess, TheForkingThreadsDelayScopeStaysOpenInTheChild) {
  auto scope = std::make_unique<delay>();
  const int status = in_child([&] {
    const auto before = stats();
    stable_reference_buffer x(8);
    x.reset();
    bool ok = stats().pending == before.pending + 1 && stats().frees == before.frees;
    scope.reset();
    return ok && stats().frees == before.frees + 1 && stats().pending == 0;
  });
  EXPECT_EQ(status, 0);
  scope.reset();
}

TEST_F(SrbProcess, DelayScopesOfOtherThreadsDoNotSurviveTheFork) {
  std::promise<void> opened, finish;
  std::thread holder([&] {
    const delay scope;
    opened.set_value();
    finish.get_future().wait();
  });
  opened.get_future().wait();
  const int status = in_child([] {
    const auto before = stats();
    stable_reference_buffer x(8);
    x.reset();
    return before.depth == 0 && stats().frees == before.frees + 1;
  });
  EXPECT_EQ(status, 0);
  EXPECT_EQ(stats().depth, 1);
  finish.set_value();
  holder.join();
}

// ---- cleanup -------------------------------------------------------------------------

// Runs this test binary again with only the helper test below: a fresh
// process that creates a registry (which sweeps dead segments) and exits
// normally.  Returns the helper's root segment name.
std::string run_registry_creating_helper() {
  char exe[4096] = {};
  EXPECT_GT(::readlink("/proc/self/exe", exe, sizeof exe - 1), 0);
  char out_tmpl[] = "/tmp/srb-helper-XXXXXX";
  const int fd = ::mkstemp(out_tmpl);
  ::close(fd);
  const std::string env_kv = std::string(helper_env) + "=" + out_tmpl;
  std::vector<char*> envp;
  for (char** e = environ; *e != nullptr; ++e) envp.push_back(*e);
  envp.push_back(const_cast<char*>(env_kv.c_str()));
  envp.push_back(nullptr);
  char filter[] = "--gtest_filter=SrbHelper.DISABLED_CreateARegistryAndExitNormally";
  char also_disabled[] = "--gtest_also_run_disabled_tests";
  char* argv[] = {exe, filter, also_disabled, nullptr};
  pid_t pid = 0;
  EXPECT_EQ(::posix_spawn(&pid, exe, nullptr, nullptr, argv, envp.data()), 0);
  int status = 0;
  ::waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  std::ifstream in(out_tmpl);
  std::string name;
  std::getline(in, name);
  ::unlink(out_tmpl);
  EXPECT_FALSE(name.empty()) << "the helper process wrote no registry name (did it run?)";
  return name;
}

// Not a test of its own: the helper process above runs it by name.  It is
// DISABLED_ so that a normal run neither runs it nor counts it as passed
// (GoogleTest lists it as disabled).
TEST(SrbHelper, DISABLED_CreateARegistryAndExitNormally) {
  const char* out = std::getenv(helper_env);
  ASSERT_NE(out, nullptr) << "runs only as the helper process of the cleanup tests";
  const stable_reference_buffer b(8);
  std::ofstream(out) << detail::srb_registry_name() << "\n";
}

// A child that published a segment and blocks until killed; returns its pid
// and writes its segment name.
pid_t start_child_with_segment(std::string& name) {
  int fds[2];
  if (::pipe(fds) != 0) return -1;
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    char text[128] = {};
    std::snprintf(text, sizeof text, "%s", detail::srb_registry_name().c_str());
    (void)!::write(fds[1], text, sizeof text);
    for (;;) ::pause();
  }
  char text[128] = {};
  const bool got = ::read(fds[0], text, sizeof text) == static_cast<ssize_t>(sizeof text);
  ::close(fds[0]);
  ::close(fds[1]);
  name = got ? text : "";
  return pid;
}

void write_file(const std::string& path, const void* data, std::size_t n) {
  const int fd = ::open(path.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0) << path;
  ASSERT_EQ(::write(fd, data, n), static_cast<ssize_t>(n));
  ::close(fd);
}

TEST_F(SrbProcess, SegmentsOfKilledProcessesAreRemovedByTheNextRegistryCreationAndLiveOnesKept) {
  std::string killed_name, live_name;
  const pid_t killed = start_child_with_segment(killed_name);
  const pid_t live = start_child_with_segment(live_name);
  ASSERT_GT(killed, 0);
  ASSERT_GT(live, 0);
  ASSERT_TRUE(shm_exists(killed_name)) << killed_name;
  ASSERT_TRUE(shm_exists(live_name)) << live_name;
  ::kill(killed, SIGKILL);
  ::waitpid(killed, nullptr, 0);
  EXPECT_TRUE(shm_exists(killed_name)) << "SIGKILL cannot clean up after itself";

  // PID reuse: our own (live) pid with another start time names a dead process.
  const std::uint64_t me = platform::proc_liveness::self();
  const std::uint64_t reused = platform::make_identity(platform::identity_ns_tag(me), platform::identity_pid(me),
                                                       platform::identity_start(me) + 1);
  // Another pid namespace: cannot be judged, so it must be kept.
  const std::uint64_t foreign = platform::make_identity(platform::identity_ns_tag(me) ^ 1, platform::identity_pid(me),
                                                        platform::identity_start(me) + 1);
  write_file(detail::srb_root_path(reused), "x", 1);
  write_file(detail::srb_root_path(foreign), "x", 1);

  const std::string helper_name = run_registry_creating_helper();
  EXPECT_FALSE(helper_name.empty());
  EXPECT_FALSE(shm_exists(killed_name)) << "a dead process's segment survived the next registry creation";
  EXPECT_FALSE(shm_exists(detail::srb_root_name(reused))) << "a reused pid kept its old segment";
  EXPECT_TRUE(shm_exists(live_name)) << "a live process's segment was removed";
  EXPECT_TRUE(shm_exists(detail::srb_registry_name())) << "our own segment was removed";
  EXPECT_TRUE(shm_exists(detail::srb_root_name(foreign))) << "a segment of another pid namespace was removed";
  EXPECT_FALSE(shm_exists(helper_name)) << "a normal exit left its segment behind";

  ::unlink(detail::srb_root_path(foreign).c_str());
  ::kill(live, SIGKILL);
  ::waitpid(live, nullptr, 0);
}

// ---- corrupted root segments ------------------------------------------------------------

struct corruption {
  const char* name;
  std::string expected;  // part of the error message
  std::vector<unsigned char> bytes;
};

std::vector<unsigned char> bytes_of(const detail::srb_root_record& r) {
  const auto* p = reinterpret_cast<const unsigned char*>(&r);
  return {p, p + sizeof r};
}

std::vector<corruption> corruptions(const detail::srb_root_record& good) {
  std::vector<corruption> all;
  auto variant = [&](const char* name, const char* expected, auto&& change) {
    detail::srb_root_record r = good;
    change(r);
    all.push_back({name, expected, bytes_of(r)});
  };
  variant("magic", "bad magic", [](auto& r) { r.magic ^= 1; });
  variant("format", "unsupported format", [](auto& r) { r.format += 1; });
  variant("owner", "owner identity", [](auto& r) { r.owner ^= 4; });
  variant("check", "checksum", [](auto& r) { r.check ^= 1; });
  variant("address", "checksum", [](auto& r) { r.registry += 4096; });  // without fixing the checksum
  all.push_back({"zeros", "bad magic", std::vector<unsigned char>(sizeof good, 0)});
  all.push_back({"ones", "bad magic", std::vector<unsigned char>(sizeof good, 0xFF)});
  const auto whole = bytes_of(good);
  all.push_back({"truncated", "wrong size", std::vector<unsigned char>(whole.begin(), whole.begin() + 20)});
  auto longer = whole;
  longer.push_back(0);
  all.push_back({"overgrown", "wrong size", longer});
  all.push_back({"empty", "wrong size", {}});
  return all;
}

// Well-formed records that name something other than the registry.
std::vector<corruption> wrong_targets(std::uint64_t owner, const void* registry, std::uint64_t nonce) {
  void* zeros = ::mmap(nullptr, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  void* guard = ::mmap(nullptr, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  // Heap a sanitizer poisons once freed.  Only its address is kept (the asm
  // hides it from g++'s use-after-free analysis: it is never dereferenced).
  void* heap = std::aligned_alloc(4096, 4096);
  auto address = reinterpret_cast<std::uintptr_t>(heap);
  asm volatile("" : "+r"(address));
  std::free(heap);
  const auto* freed = reinterpret_cast<const void*>(address);
  // Below vm.mmap_min_addr: nothing is ever mapped there (a freshly unmapped
  // page could be reused by the next mmap, a sanitizer's included).
  const void* unmapped = reinterpret_cast<const void*>(std::uintptr_t{4096});
  return {
      {"unmapped", "not mapped", bytes_of(detail::srb_make_root_record(owner, unmapped, nonce))},
      {"not-a-registry", "does not hold", bytes_of(detail::srb_make_root_record(owner, zeros, nonce))},
      {"prot-none", "not mapped", bytes_of(detail::srb_make_root_record(owner, guard, nonce))},
      {"freed-heap", "is not usable", bytes_of(detail::srb_make_root_record(owner, freed, nonce))},
      {"wrong-nonce", "does not hold", bytes_of(detail::srb_make_root_record(owner, registry, nonce + 1))},
      {"null", "out of range", bytes_of(detail::srb_make_root_record(owner, nullptr, nonce))},
      {"unaligned", "out of range",
       bytes_of(detail::srb_make_root_record(owner, static_cast<const char*>(registry) + 8, nonce))},
  };
}

// Writes each case into this process's root segment and checks that a new
// copy's attach throws registry_error with the expected reason.  Returns
// the number of cases that went wrong; restores the segment.
int run_corruption_cases() {
  const std::string path = "/dev/shm/" + detail::srb_registry_name();
  const void* registry = detail::srb_find_registry_as_new_copy();
  const auto& reg = *static_cast<const detail::srb_process_registry*>(registry);
  const std::uint64_t owner = platform::proc_liveness::self();
  const auto good = detail::srb_make_root_record(owner, registry, reg.id().nonce);
  auto cases = corruptions(good);
  for (auto& c : wrong_targets(owner, registry, reg.id().nonce)) cases.push_back(std::move(c));
  int failures = 0;
  auto expect_error = [&](const char* name, const std::string& expected) {
    try {
      detail::srb_find_registry_as_new_copy();
      std::fprintf(stderr, "corruption '%s' was accepted\n", name);
      ++failures;
    } catch (const shmpool::registry_error& e) {
      if (std::string(e.what()).find(expected) != std::string::npos) return;
      std::fprintf(stderr, "corruption '%s': unexpected message: %s\n", name, e.what());
      ++failures;
    }
  };
  for (const auto& c : cases) {
    write_file(path, c.bytes.data(), c.bytes.size());
    expect_error(c.name, c.expected);
  }
  write_file(path, &good, sizeof good);
  ::chmod(path.c_str(), 0622);  // anyone could have written it
  expect_error("mode 0622", "writable by others");
  ::unlink(path.c_str());
  write_file(path, &good, sizeof good);
  if (detail::srb_find_registry_as_new_copy() != registry) ++failures;
  return failures;
}

// In a child (so the parent's segment is never touched): every corruption
// of the child's root segment makes a new copy's attach throw a clear
// registry_error; the copies already attached keep working.
TEST_F(SrbProcess, Misuse_ACorruptedRootSegmentYieldsAClearErrorNeverACrash) {
  const int status = in_child([] {
    const int failures = run_corruption_cases();
    stable_reference_buffer still_works(8);  // attached copies never re-read the segment
    const stable_reference_buffer copy(still_works);
    return failures == 0 && copy.use_count() == 2;
  });
  EXPECT_EQ(status, 0);
}

// The same where seccomp forbids process_vm_readv (as some container
// profiles do): the address probe falls back to a pipe and still never
// crashes.
TEST_F(SrbProcess, Misuse_ACorruptedRootSegmentIsCaughtWithoutProcessVmReadv) {
  const int status = in_child([] {
    sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_process_vm_readv, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    sock_fprog prog{static_cast<unsigned short>(std::size(filter)), filter};
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || ::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0)
      return true;  // cannot install the filter here: nothing to test
    iovec probe{nullptr, 0};
    if (::process_vm_readv(::getpid(), &probe, 1, &probe, 1, 0) != -1 || errno != EPERM) return false;
    return run_corruption_cases() == 0;
  });
  EXPECT_EQ(status, 0);
}

TEST_F(SrbProcess, Misuse_AMissingRootSegmentYieldsAClearError) {
  const int status = in_child([] {
    ::unlink(("/dev/shm/" + detail::srb_registry_name()).c_str());
    try {
      detail::srb_find_registry_as_new_copy();
      return false;
    } catch (const shmpool::registry_error& e) {
      return std::string(e.what()).find("no registry segment") != std::string::npos;
    }
  });
  EXPECT_EQ(status, 0);
}

}  // namespace
