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

template <class F>
int guarded(F&& f) {
  std::lock_guard lock(state().mutex);
  try {
    return f();
  } catch (const std::invalid_argument& e) {
    state().last_error = e.what();
    return 1;
  } catch (const std::exception& e) {
    state().last_error = e.what();
    return 2;
  }
}

}  // namespace

SRB_EXPORT const char* srb_plugin_name() { return SRB_PLUGIN_NAME; }

SRB_EXPORT const char* srb_plugin_last_error() { return state().last_error.c_str(); }

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
