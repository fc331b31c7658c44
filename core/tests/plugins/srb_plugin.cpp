// A plugin for the stable_reference_buffer plugin test.  Built several
// times as separate shared libraries, each with its own static copy of the
// core (compiled in with -fvisibility=hidden), and loaded with
// dlopen(RTLD_LOCAL): the copies share nothing but libc and the registry.
// The interface is plain C; addresses are the only thing that crosses it.
#include <cstdint>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "shmpool/detail/srb_registry.hpp"
#include "shmpool/error.hpp"
#include "shmpool/platform/sys.hpp"
#include "shmpool/stable_reference_buffer.hpp"

#define SRB_EXPORT extern "C" __attribute__((visibility("default")))

namespace {

using shmpool::stable_reference_buffer;

// References this plugin holds.  Destroyed when the plugin is unloaded,
// which drops them: that is how a plugin lets go at dlclose.
struct plugin_state {
  std::mutex mutex;
  std::vector<stable_reference_buffer> held;
  std::vector<stable_reference_buffer::delay_deallocation*> scopes;
  std::string last_error;
  // The type of the last exception: 0 none, 1 std::invalid_argument,
  // 2 shmpool::registry_error, 3 shmpool::error, 4 std::bad_alloc, 5 other.
  int last_error_type = 0;
};

plugin_state& state() {
  static plugin_state s;
  return s;
}

stable_reference_buffer* find_held(const void* p) {
  for (auto& b : state().held)
    if (b.get() == p) return &b;
  return nullptr;
}

// Records what a call threw; returns the call's result code.
int failed(const std::exception& e, int type, int code) {
  state().last_error = e.what();
  state().last_error_type = type;
  return code;
}

// 0 as f returns it; 1 std::invalid_argument; 2 any other exception.
template <class F>
int guarded(F&& f) {
  std::lock_guard lock(state().mutex);
  try {
    return f();
  } catch (const std::invalid_argument& e) {
    return failed(e, 1, 1);
  } catch (const shmpool::registry_error& e) {
    return failed(e, 2, 2);
  } catch (const shmpool::error& e) {
    return failed(e, 3, 2);
  } catch (const std::bad_alloc& e) {
    return failed(e, 4, 2);
  } catch (const std::exception& e) {
    return failed(e, 5, 2);
  }
}

}  // namespace

SRB_EXPORT const char* srb_plugin_name() { return SRB_PLUGIN_NAME; }

SRB_EXPORT const char* srb_plugin_last_error() { return state().last_error.c_str(); }
SRB_EXPORT int srb_plugin_last_error_type() { return state().last_error_type; }

// Creates a block of n bytes set to fill and holds one reference to it.
SRB_EXPORT void* srb_plugin_create(std::size_t n, unsigned char fill) {
  void* out = nullptr;
  guarded([&] {
    stable_reference_buffer b(n);
    std::memset(b.get(), fill, n);
    out = b.get();
    state().held.push_back(std::move(b));
    return 0;
  });
  return out;
}

// 0: adopted (one more reference held here); 1: invalid_argument; 2: other.
SRB_EXPORT int srb_plugin_adopt(const void* p) {
  return guarded([&] {
    state().held.emplace_back(p);
    return 0;
  });
}

// A reference that outlives the plugin: a heap instance the caller now owns
// (the host deletes it with its own copy of the core).  nullptr if this
// plugin holds no reference to p.
SRB_EXPORT void* srb_plugin_hand_out(const void* p) {
  void* out = nullptr;
  guarded([&] {
    if (stable_reference_buffer* b = find_held(p)) out = new stable_reference_buffer(*b);
    return 0;
  });
  return out;
}

// Copies a reference this plugin holds; 1 if it holds none.
SRB_EXPORT int srb_plugin_copy(const void* p) {
  return guarded([&] {
    stable_reference_buffer* b = find_held(p);
    if (b == nullptr) return 1;
    const stable_reference_buffer copy(*b);
    state().held.push_back(copy);
    return 0;
  });
}

// Drops one reference this plugin holds; 1 if it holds none.
SRB_EXPORT int srb_plugin_release(const void* p) {
  return guarded([&] {
    stable_reference_buffer* b = find_held(p);
    if (b == nullptr) return 1;
    b->reset();
    std::erase_if(state().held, [](const stable_reference_buffer& x) { return x.get() == nullptr; });
    return 0;
  });
}

// The count as this plugin's copy of the core reads it; -1 if it holds no reference.
SRB_EXPORT long srb_plugin_use_count(const void* p) {
  long n = -1;
  guarded([&] {
    if (const stable_reference_buffer* b = find_held(p)) n = static_cast<long>(b->use_count());
    return 0;
  });
  return n;
}

SRB_EXPORT int srb_plugin_is_known(const void* p) {
  int known = 0;
  const int rc = guarded([&] {
    known = stable_reference_buffer::is_known(p) ? 1 : 0;
    return 0;
  });
  return rc == 0 ? known : -rc;
}

// Reads n bytes through the raw pointer (AddressSanitizer checks it is still allocated).
SRB_EXPORT long srb_plugin_sum(const void* p, std::size_t n) {
  long sum = 0;
  for (std::size_t i = 0; i < n; ++i) sum += static_cast<const unsigned char*>(p)[i];
  return sum;
}

// Drops every reference and scope this plugin holds (what unloading it
// does), so that a caller can see the calls it makes before dlclose.
SRB_EXPORT int srb_plugin_drop_all() {
  return guarded([] {
    while (!state().scopes.empty()) {
      delete state().scopes.back();
      state().scopes.pop_back();
    }
    state().held.clear();
    return 0;
  });
}

SRB_EXPORT int srb_plugin_open_scope() {
  return guarded([] {
    state().scopes.push_back(new stable_reference_buffer::delay_deallocation());
    return 0;
  });
}

SRB_EXPORT int srb_plugin_close_scope() {
  return guarded([] {
    if (state().scopes.empty()) return 1;
    delete state().scopes.back();
    state().scopes.pop_back();
    return 0;
  });
}

// live, pending, frees, copies attached: as this plugin's registry reports them.
SRB_EXPORT void srb_plugin_stats(std::uint64_t out[4]) {
  guarded([&] {
    const auto s = shmpool::detail::srb_current_stats();
    out[0] = s.live;
    out[1] = s.pending;
    out[2] = s.frees;
    out[3] = s.copies;
    return 0;
  });
}

SRB_EXPORT const void* srb_plugin_registry() {
  const void* r = nullptr;
  guarded([&] {
    r = &shmpool::detail::srb_current();
    return 0;
  });
  return r;
}

SRB_EXPORT int srb_plugin_local_registry_build() { return shmpool::detail::srb_local_registry_build() ? 1 : 0; }

#if defined(SHMPOOL_FAULTS)
// The fault sweep's plugin (stress/, scenario srb_plugin): this copy of the
// core has its own fault plan, armed and read through these.
SRB_EXPORT void srb_plugin_arm_fault(std::uint64_t nth, int error, int kind, int sticky) {
  namespace sys = shmpool::platform::sys;
  sys::arm_fault({nth, error, nth != 0, static_cast<sys::call>(kind), sticky != 0});
}
// calls counted, failures injected, the kind of the first one (-1: none).
SRB_EXPORT void srb_plugin_fault_counts(std::int64_t out[3]) {
  namespace sys = shmpool::platform::sys;
  out[0] = static_cast<std::int64_t>(sys::calls_counted());
  out[1] = static_cast<std::int64_t>(sys::faults_injected());
  out[2] = sys::first_injected_kind();
}
// The kinds of the calls counted since arming, in order; returns how many.
SRB_EXPORT std::size_t srb_plugin_logged_calls(int* out, std::size_t max) {
  namespace sys = shmpool::platform::sys;
  std::vector<sys::call> kinds(max);
  const std::size_t n = sys::logged_calls(kinds.data(), max);
  for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<int>(kinds[i]);
  return n;
}
#endif
