// How one static copy of the core reaches the process's registry: attach on
// first use (find the anchor page, or publish one), detach when the copy
// goes away (exit or dlclose), delay scopes, and the fork handlers.
// Everything here has internal linkage, so each static copy (each plugin
// built with -fvisibility=hidden) has its own, and they meet only in the
// registry itself.  See core/PROTOCOL.md, "stable_reference_buffer registry".
#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <new>
#include <string>

#include "shmpool/detail/srb_registry.hpp"
#include "shmpool/platform/sys.hpp"
#include "shmpool/stable_reference_buffer.hpp"

namespace shmpool::detail {
namespace {

namespace sys = platform::sys;
using P = platform::linux_platform;
using registry = srb_process_registry;

#if defined(SHMPOOL_TESTING_LOCAL_REGISTRY)
// The naive design the plugin test refutes: a registry per static copy.
constexpr bool local_registry = true;
#else
constexpr bool local_registry = false;
#endif

// This copy's registry; set once, never cleared (the registry outlives the
// copy's static destructors, which may still release blocks).
P::atomic<registry*> g_registry{nullptr};
// The registry whose L this copy's prepare handler took for the fork in
// progress (a thread may attach between prepare and parent).
P::atomic<registry*> g_forking{nullptr};

void free_block(void* block) noexcept { std::free(block); }

// The opener of a delay scope, and the forking thread.  pthread_self stays
// the same for the forking thread in the child (its thread block is copied),
// so the child's scopes keep their opener.
std::uint64_t this_thread_id() noexcept { return static_cast<std::uint64_t>(::pthread_self()); }

std::uint64_t make_nonce(const void* where) noexcept {
  std::uint64_t h = static_cast<std::uint64_t>(P::now_ns()) ^ reinterpret_cast<std::uintptr_t>(where);
  h ^= this_thread_id() << 17;
  h = (h ^ (h >> 30)) * 0xBF58'476D'1CE4'E5B9ULL;
  return (h ^ (h >> 31)) | 1;
}

registry* make_registry() {
  void* mem = srb_pages::map(sizeof(registry));
  if (mem == nullptr)
    throw registry_error(std::string("stable_reference_buffer: cannot map memory for the registry (") +
                         sys::errno_name(errno) + ")");
  return new (mem) registry(make_nonce(mem));
}

void discard_registry(registry* r) noexcept {
  r->~registry();
  srb_pages::unmap(r, sizeof(registry));
}

// Finds the process's registry by its anchor page, or creates one and
// publishes it.  Counts this copy as attached.  A published registry is
// never retired: a block a departed copy created may still be held.
registry* attach_process_registry() {
  if (registry* found = srb_find_anchor()) {
    found->attach_copy();
    return found;
  }
  registry* fresh = make_registry();
  registry* r = nullptr;
  try {
    r = srb_publish_anchor(fresh);
  } catch (...) {
    discard_registry(fresh);
    throw;
  }
  if (r != fresh) {  // another copy published first
    discard_registry(fresh);
    r->attach_copy();
  }
  return r;
}

// Destroyed when this copy goes away: at exit, or when its library is
// dlclose'd.  Only the count of attached copies changes: the registry and
// its anchor stay for the life of the process (item 23 of issue 12).
struct copy_detacher {
  ~copy_detacher() {
    registry* r = P::load(g_registry, mo::acquire);  // pairs with the CAS in attach_slow
    if (r != nullptr && !local_registry) r->detach_copy();
  }
};

registry& attach_slow() {
  static copy_detacher detacher;
  registry* r = local_registry ? make_registry() : attach_process_registry();
  registry* expected = nullptr;
  if (P::cas(g_registry, expected, r, mo::acq_rel)) return *r;  // publishes r to this copy's threads
  // Another thread of this copy attached first: undo our attachment.
  if (local_registry)
    discard_registry(r);
  else
    r->detach_copy();
  return *expected;
}

// A delay scope's record: malloc'd (every copy shares libc), so a scope
// opened through one copy may be closed through another, on any thread.
struct scope_record {
  srb_scope node;
  registry* home;
};

// ---- fork -------------------------------------------------------------------
void on_fork_prepare() {
  registry* r = P::load(g_registry, mo::acquire);
  P::store(g_forking, r, mo::relaxed);
  if (r != nullptr) r->fork_prepare(this_thread_id());
}

void on_fork_parent() {
  if (registry* r = P::exchange(g_forking, static_cast<registry*>(nullptr), mo::relaxed)) r->fork_parent();
}

// Single-threaded, in the child.  The registry memory and the anchor page
// are already the child's own copies (private mappings): a copy loaded
// later in the child finds the child's registry at the same address.
void on_fork_child() {
  if (registry* r = P::exchange(g_forking, static_cast<registry*>(nullptr), mo::relaxed)) r->fork_child(free_block);
}

// Registered when the copy is loaded, before any thread can be attaching.
const bool g_fork_handlers_registered = [] {
  ::pthread_atfork(on_fork_prepare, on_fork_parent, on_fork_child);
  return true;
}();

}  // namespace

void* srb_pages::map(std::size_t bytes) noexcept {
  void* p = sys::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? nullptr : p;
}

void srb_pages::unmap(void* p, std::size_t bytes) noexcept { sys::munmap(p, bytes); }

registry& srb_current() {
  (void)g_fork_handlers_registered;
  if (registry* r = P::load(g_registry, mo::acquire)) return *r;  // pairs with the CAS in attach_slow
  return attach_slow();
}

void srb_free_block(void* block) noexcept { free_block(block); }

void* srb_enter_delay_scope() {
  registry& r = srb_current();
  auto* s = static_cast<scope_record*>(std::malloc(sizeof(scope_record)));
  if (s == nullptr) throw std::bad_alloc();
  new (s) scope_record{srb_scope{}, &r};
  r.enter_delay(s->node, this_thread_id());
  return s;
}

void srb_exit_delay_scope(void* scope) noexcept {
  auto* s = static_cast<scope_record*>(scope);
  s->home->exit_delay(s->node, free_block);
  std::free(s);
}

srb_stats srb_current_stats() { return srb_current().stats(); }

bool srb_local_registry_build() noexcept { return local_registry; }

}  // namespace shmpool::detail
