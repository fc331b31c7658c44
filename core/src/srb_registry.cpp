// How one static copy of the core reaches the process's registry: attach on
// first use (find the anchor page, or publish one), detach when the copy
// goes away (exit or dlclose), delay scopes and their threads' tokens, and
// the fork handlers.
// Everything here has internal linkage, so each static copy (each plugin
// built with -fvisibility=hidden) has its own, and they meet only in the
// registry itself.  See core/PROTOCOL.md, "stable_reference_buffer registry".
#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
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

// This copy's registry; set once, under g_attach, never cleared (the
// registry outlives the copy's static destructors, which may still release
// blocks).
P::atomic<registry*> g_registry{nullptr};
// The registry whose L this copy's prepare handler took for the fork in
// progress.
P::atomic<registry*> g_forking{nullptr};

// Attach and fork exclude each other.  An attach holds g_attach from its
// look at g_registry until it has stored it; the prepare handler takes
// g_attach before it reads g_registry and keeps it until the fork is done.
// So either the attach finished first and the handler takes L, or the
// attach waits until after the fork: no thread can attach and take L in
// the gap between the handler's look and the fork itself, which would leave
// the child a lock no thread of it releases.  The lock order is g_attach,
// then L, per copy; across copies a handler may hold L (an earlier copy's)
// while it waits for g_attach, so an attach never waits for L while it
// holds g_attach (it counts itself in after letting go).
pthread_mutex_t g_attach = PTHREAD_MUTEX_INITIALIZER;
#if defined(SHMPOOL_MUTANT_FORK_LOCK_UNHELD)
constexpr bool fork_waits_for_attach = false;  // Mutant: a fork may land between an attach and its first L.
#else
constexpr bool fork_waits_for_attach = true;
#endif

class attach_gate {
 public:
  attach_gate() noexcept { ::pthread_mutex_lock(&g_attach); }
  ~attach_gate() { ::pthread_mutex_unlock(&g_attach); }
  attach_gate(const attach_gate&) = delete;
  attach_gate& operator=(const attach_gate&) = delete;
};

void free_block(void* block) noexcept { std::free(block); }

// The forking thread's id: unique among live threads, which is all the
// nesting of one fork's handlers needs (the registry's fork_tid).
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
// publishes it; takes no L.  count_in: this copy must still count itself
// in (a fresh registry counts its creator).  A published registry is never
// retired: a block a departed copy created may still be held.
registry* find_or_publish_registry(bool& count_in) {
  count_in = true;
  if (registry* found = srb_find_anchor()) return found;
  registry* fresh = make_registry();
  registry* r = nullptr;
  try {
    r = srb_publish_anchor(fresh);
  } catch (...) {
    discard_registry(fresh);
    throw;
  }
  if (r == fresh)
    count_in = false;
  else
    discard_registry(fresh);  // another copy published first
  return r;
}

// Destroyed when this copy goes away: at exit, or when its library is
// dlclose'd.  Only the count of attached copies changes: the registry and
// its anchor stay for the life of the process (item 23 of issue 12).
struct copy_detacher {
  ~copy_detacher() {
    registry* r = P::load(g_registry, mo::acquire);  // pairs with the store in attach_slow
    if (r != nullptr && !local_registry) r->detach_copy();
  }
};

registry& attach_slow() {
  static copy_detacher detacher;
  registry* r = nullptr;
  bool count_in = false;
  {
    const attach_gate gate;  // no fork while this copy attaches (see g_attach)
    if (registry* other = P::load(g_registry, mo::acquire)) return *other;  // another thread of this copy attached
    r = local_registry ? make_registry() : find_or_publish_registry(count_in);
    P::store(g_registry, r, mo::release);  // publishes r to this copy's threads
  }
  if (count_in) r->attach_copy();  // L: never while holding g_attach
  return *r;
}

// ---- thread tokens (G7) ---------------------------------------------------------
// A delay scope records the thread that opened it: a fork keeps only the
// forking thread's scopes open in the child (G5).  pthread_self() cannot
// tell: glibc gives a joined thread's pthread_t to the next thread it makes,
// which would then inherit the dead thread's scopes at its fork.  A token
// is a number the registry hands out once; it lives in a pthread key that
// the registry names, so every copy of the core reads the same token for a
// thread.  A new thread's value of the key is null (no token yet); the fork
// child's one thread keeps the forking thread's.  The key has no
// destructor: one in a plugin would outlive the plugin's dlclose.

// This copy's cache of the registry's key word (key + 1; 0: not read yet).
P::atomic<std::uint64_t> g_thread_key{0};

std::uint64_t thread_key_word(registry& r) {
  // Acquire pairs with the release below, made after L ordered the key's
  // creation before it: pthread_setspecific must see the key made.
  if (const std::uint64_t k = P::load(g_thread_key, mo::acquire)) return k;
  int err = 0;
  const std::uint64_t k = r.thread_key([&]() noexcept -> std::uint64_t {
    pthread_key_t key{};
    err = ::pthread_key_create(&key, nullptr);
    return err == 0 ? std::uint64_t{key} + 1 : 0;
  });
  if (k == 0)
    throw registry_error(std::string("stable_reference_buffer: cannot make the key of delay scopes' threads (") +
                         sys::errno_name(err) + ")");
  P::store(g_thread_key, k, mo::release);
  return k;
}

std::uint64_t token_in(std::uint64_t key_word) noexcept {
  return reinterpret_cast<std::uintptr_t>(::pthread_getspecific(static_cast<pthread_key_t>(key_word - 1)));
}

// This thread's token, handed out on its first scope.
std::uint64_t this_thread_token(registry& r) {
  const std::uint64_t key_word = thread_key_word(r);
#if defined(SHMPOOL_MUTANT_SCOPE_BY_THREAD_ID)
  (void)key_word;
  return this_thread_id();  // Mutant: a reused pthread_t owns a dead thread's scopes.
#endif
  if (const std::uint64_t token = token_in(key_word)) return token;
  const std::uint64_t token = r.new_thread_token();
  // NOLINTNEXTLINE(performance-no-int-to-ptr): the token is a number kept in the key's pointer
  const int err = ::pthread_setspecific(static_cast<pthread_key_t>(key_word - 1), reinterpret_cast<void*>(token));
  if (err == ENOMEM) throw std::bad_alloc();
  if (err != 0)
    throw registry_error(std::string("stable_reference_buffer: cannot record the thread of a delay scope (") +
                         sys::errno_name(err) + ")");
  return token;
}

// The forking thread's token, under L (fork_prepare): reads, never makes.
std::uint64_t forking_thread_token(std::uint64_t key_word) noexcept {
#if defined(SHMPOOL_MUTANT_SCOPE_BY_THREAD_ID)
  (void)key_word;
  return this_thread_id();
#else
  return token_in(key_word);
#endif
}

// A delay scope's record: malloc'd (every copy shares libc), so a scope
// opened through one copy may be closed through another, on any thread.
struct scope_record {
  srb_scope node;
  registry* home = nullptr;
};

// ---- fork -------------------------------------------------------------------
// g_attach is held from prepare until parent or child (see g_attach), so
// g_registry cannot change in between.
void on_fork_prepare() {
  if (fork_waits_for_attach) ::pthread_mutex_lock(&g_attach);
  registry* r = P::load(g_registry, mo::acquire);
  P::store(g_forking, r, mo::relaxed);
  if (r != nullptr) r->fork_prepare(this_thread_id(), forking_thread_token);
}

void on_fork_parent() {
  if (registry* r = P::exchange(g_forking, static_cast<registry*>(nullptr), mo::relaxed)) r->fork_parent();
  if (fork_waits_for_attach) ::pthread_mutex_unlock(&g_attach);
}

// Single-threaded, in the child.  The registry memory and the anchor page
// are already the child's own copies (private mappings): a copy loaded
// later in the child finds the child's registry at the same address.  The
// child's one thread is the one that took g_attach in prepare.
void on_fork_child() {
  if (registry* r = P::exchange(g_forking, static_cast<registry*>(nullptr), mo::relaxed)) r->fork_child(free_block);
  if (fork_waits_for_attach) ::pthread_mutex_unlock(&g_attach);
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
  if (registry* r = P::load(g_registry, mo::acquire)) return *r;  // pairs with the store in attach_slow
  return attach_slow();
}

void srb_free_block(void* block) noexcept { free_block(block); }

void* srb_enter_delay_scope() {
  registry& r = srb_current();
  const std::uint64_t opener = this_thread_token(r);
  auto* s = static_cast<scope_record*>(std::malloc(sizeof(scope_record)));
  if (s == nullptr) throw std::bad_alloc();
  new (s) scope_record{srb_scope{}, &r};
  r.enter_delay(s->node, opener);
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
