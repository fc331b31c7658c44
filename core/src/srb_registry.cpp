// How one static copy of the core reaches the process's registry: attach on
// first use, detach when the copy goes away (exit or dlclose), and the fork
// handlers.  Everything here has internal linkage, so each static copy (each
// plugin built with -fvisibility=hidden) has its own, and they meet only in
// the registry itself.  See core/PROTOCOL_srb.md.
#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <new>
#include <system_error>
#include <thread>

#include "shmpool/detail/srb_registry.hpp"
#include "shmpool/platform/liveness.hpp"
#include "shmpool/stable_reference_buffer.hpp"

namespace shmpool::detail {
namespace {

using P = platform::linux_platform;
using registry = srb_process_registry;

#if defined(SHMPOOL_TESTING_LOCAL_REGISTRY)
// The naive design the plugin test refutes: a registry per static copy.
constexpr bool local_registry = true;
#else
constexpr bool local_registry = false;
#endif

constexpr int attach_attempts = 1000;

// This copy's registry; set once, never cleared (the registry outlives the
// copy's static destructors, which may still release blocks).
P::atomic<registry*> g_registry{nullptr};
// The registry whose L this copy's prepare handler took for the fork in
// progress (a thread may attach between prepare and parent).
P::atomic<registry*> g_forking{nullptr};
// Delay scopes this thread opened through this copy (for fork).
thread_local std::int64_t t_scopes = 0;

void free_block(void* block) noexcept { std::free(block); }

std::uint64_t make_nonce(const void* where) noexcept {
  std::uint64_t h = static_cast<std::uint64_t>(P::now_ns()) ^ reinterpret_cast<std::uintptr_t>(where);
  h ^= static_cast<std::uint64_t>(::gettid()) << 32;
  h = (h ^ (h >> 30)) * 0xBF58'476D'1CE4'E5B9ULL;
  return (h ^ (h >> 31)) | 1;
}

registry* make_registry(std::uint64_t owner) {
  void* mem = srb_pages::map(sizeof(registry));
  if (mem == nullptr) throw std::bad_alloc();
  return new (mem) registry(make_nonce(mem), owner);
}

void discard_registry(registry* r) noexcept {
  r->~registry();
  srb_pages::unmap(r, sizeof(registry));
}

void unlink_root_of(registry& r) noexcept {
  if (r.root_owner() == 0) return;
  P::crash_point(platform::crash_site::registry_detach_unlinking);
  srb_unlink_root(r.root_owner());
}

// Cleaning up after dead processes must never cost this one its registry.
void sweep_best_effort() noexcept {
  try {
    srb_sweep_dead_registries();
  } catch (...) {  // NOLINT(bugprone-empty-catch): out of memory while listing /dev/shm; the next creator sweeps
  }
}

// Finds this process's registry by its root segment, or creates and
// publishes one.  Counts this copy as attached.
registry* attach_process_registry() {
  const std::uint64_t me = P::self_identity();
  for (int attempt = 0; attempt < attach_attempts; ++attempt) {
    if (registry* r = srb_open_root(me)) {
      if (r->attach_copy()) return r;
      std::this_thread::yield();  // retired: its root is already gone, look again
      continue;
    }
    registry* fresh = make_registry(me);
    const srb_publish published = srb_publish_root(srb_make_root_record(me, fresh, fresh->id().nonce));
    const int saved = errno;
    if (published == srb_publish::published) {
      sweep_best_effort();
      return fresh;
    }
    discard_registry(fresh);
    if (published == srb_publish::failed)
      throw std::system_error(saved, std::generic_category(), "publish " + srb_root_path(me));
  }
  throw registry_error("stable_reference_buffer: could not attach to the registry at " + srb_root_path(me));
}

// Destroyed when this copy goes away: at exit, or when its library is
// dlclose'd.  The last copy of the process retires the registry and removes
// the root segment.
struct copy_detacher {
  ~copy_detacher() {
    registry* r = P::load(g_registry, mo::acquire);  // pairs with the CAS in attach_slow
    if (r == nullptr || local_registry) return;
    r->detach_copy([r] { unlink_root_of(*r); });
  }
};

registry& attach_slow() {
  static copy_detacher detacher;
  registry* r = local_registry ? make_registry(0) : attach_process_registry();
  registry* expected = nullptr;
  if (P::cas(g_registry, expected, r, mo::acq_rel)) return *r;  // publishes r to this copy's threads
  // Another thread of this copy attached first: undo our attachment.
  if (local_registry)
    discard_registry(r);
  else
    r->detach_copy([r] { unlink_root_of(*r); });
  return *expected;
}

// ---- fork -------------------------------------------------------------------
void on_fork_prepare() {
  registry* r = P::load(g_registry, mo::acquire);
  P::store(g_forking, r, mo::relaxed);
  if (r != nullptr) r->fork_prepare(static_cast<std::uint64_t>(::gettid()), t_scopes);
}

void on_fork_parent() {
  if (registry* r = P::exchange(g_forking, static_cast<registry*>(nullptr), mo::relaxed)) r->fork_parent();
}

// Single-threaded, in the child.  The registry memory is already the
// child's own snapshot; the child needs its own root segment so that copies
// loaded later find it, and so that it never touches the parent's.
void on_fork_child() {
  registry* r = P::exchange(g_forking, static_cast<registry*>(nullptr), mo::relaxed);
  if (r == nullptr || !r->fork_child(free_block) || local_registry) return;
  const std::uint64_t child = platform::proc_liveness::identity_of(::getpid());
  const bool ok = child != 0 && srb_publish_root(srb_make_root_record(child, r, r->id().nonce)) == srb_publish::published;
  r->set_root_owner(ok ? child : 0);
}

// Registered when the copy is loaded, before any thread can be attaching.
const bool g_fork_handlers_registered = [] {
  ::pthread_atfork(on_fork_prepare, on_fork_parent, on_fork_child);
  return true;
}();

}  // namespace

void* srb_pages::map(std::size_t bytes) noexcept {
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? nullptr : p;
}

void srb_pages::unmap(void* p, std::size_t bytes) noexcept { ::munmap(p, bytes); }

registry& srb_current() {
  (void)g_fork_handlers_registered;
  if (registry* r = P::load(g_registry, mo::acquire)) return *r;  // pairs with the CAS in attach_slow
  return attach_slow();
}

void srb_free_block(void* block) noexcept { free_block(block); }

void* srb_enter_delay_scope() {
  registry& r = srb_current();
  r.enter_delay();
  ++t_scopes;
  return &r;
}

void srb_exit_delay_scope(void* reg) noexcept {
  --t_scopes;
  static_cast<registry*>(reg)->exit_delay(free_block);
}

std::string srb_registry_name() {
  const registry& r = srb_current();
  return r.root_owner() == 0 ? std::string() : srb_root_name(r.root_owner());
}

srb_stats srb_current_stats() { return srb_current().stats(); }

const void* srb_find_registry_as_new_copy() {
  const std::uint64_t me = P::self_identity();
  const registry* r = srb_open_root(me);
  if (r == nullptr) throw registry_error("stable_reference_buffer: no registry segment at " + srb_root_path(me));
  return r;
}

bool srb_local_registry_build() noexcept { return local_registry; }

}  // namespace shmpool::detail
