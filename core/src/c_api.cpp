// The C API (shmpool/shmpool.h) on top of the C++ API: every function is one
// call into pool.hpp inside `guarded`, which turns every exception into a
// status and an optional shmpool_error.  No exception crosses the boundary
// and no system call is made here (the core's own calls go through the
// platform seam, as for C++ callers).
#include "shmpool/shmpool.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <variant>
#include <vector>

#include "shmpool/pool.hpp"

// The handle: one C++ pool of the variant it was opened as.  Nothing but
// data, so that the library exports no C++ symbol for it.
struct shmpool_handle {
  std::variant<shmpool::pool, shmpool::i64_pool, shmpool::i32_pool, shmpool::f64_pool, shmpool::str_pool> pool;
};

// The C variants are the values of shmpool::pool_variant (the header's
// variant field, core/FORMAT.md).
static_assert(SHMPOOL_VARIANT_RAW == static_cast<int>(shmpool::pool_variant::raw));
static_assert(SHMPOOL_VARIANT_I64 == static_cast<int>(shmpool::pool_variant::i64));
static_assert(SHMPOOL_VARIANT_I32 == static_cast<int>(shmpool::pool_variant::i32));
static_assert(SHMPOOL_VARIANT_F64 == static_cast<int>(shmpool::pool_variant::f64));
static_assert(SHMPOOL_VARIANT_STR == static_cast<int>(shmpool::pool_variant::str));
// shmpool_stats is filled field by field, whole 64-bit fields only.
static_assert(sizeof(shmpool_stats) == 12 * sizeof(std::uint64_t));

namespace {

shmpool::detail::pool_base& base_of_handle(shmpool_handle& h) {
  return std::visit([](auto& p) -> shmpool::detail::pool_base& { return p; }, h.pool);
}

using shmpool::errc;

// A status with its message, thrown inside a guarded body for the C API's own
// refusals (NULL arguments, wrong variant, ...).
struct c_status {
  int code;
  std::string message;
};

int code_of(errc e) noexcept {
  switch (e) {
    case errc::bad_magic: return SHMPOOL_EBADMAGIC;
    case errc::unsupported_format: return SHMPOOL_EUNSUPPORTED;
    case errc::wrong_variant: return SHMPOOL_EWRONGVARIANT;
    case errc::truncated: return SHMPOOL_ETRUNCATED;
    case errc::layout_mismatch: return SHMPOOL_ELAYOUT;
    case errc::corrupt_header: return SHMPOOL_ECORRUPT;
    case errc::bad_argument: return SHMPOOL_EBADARG;
    case errc::parameter_mismatch: return SHMPOOL_EPARAMMISMATCH;
    case errc::identity_unavailable: return SHMPOOL_EIDENTITY;
    case errc::exceeds_backing: return SHMPOOL_EEXCEEDS;
    case errc::invalid_handle: return SHMPOOL_EINVAL;
    case errc::not_owner: return SHMPOOL_ENOTOWNER;
  }
  return SHMPOOL_EUNKNOWN;
}

int report(shmpool_error* err, int code, int sys_errno, const char* message) noexcept {
  if (err != nullptr) {
    err->code = code;
    err->sys_errno = sys_errno;
    const std::size_t n = std::min(std::strlen(message), sizeof err->message - 1);
    std::memcpy(err->message, message, n);
    err->message[n] = '\0';
  }
  return code;
}

// Runs body (which returns a status) and turns every exception into one.
// Order matters: out_of_range and invalid_argument are logic_errors too.
template <class F>
int guarded(shmpool_error* err, F&& body) noexcept {
  try {
    const int code = body();
    return report(err, code, 0, code == SHMPOOL_OK ? "" : shmpool_strerror(code));
  } catch (const c_status& s) {
    return report(err, s.code, 0, s.message.c_str());
  } catch (const shmpool::error& e) {
    if (e.code().category() == shmpool::error_category())
      return report(err, code_of(static_cast<errc>(e.code().value())), 0, e.what());
    return report(err, SHMPOOL_ESYSTEM, e.code().value(), e.what());
  } catch (const std::out_of_range& e) {
    return report(err, SHMPOOL_ERANGE, 0, e.what());
  } catch (const std::invalid_argument& e) {
    return report(err, SHMPOOL_EINVAL, 0, e.what());
  } catch (const std::logic_error& e) {
    return report(err, SHMPOOL_ENOTALLOC, 0, e.what());
  } catch (const std::bad_alloc&) {
    return report(err, SHMPOOL_ENOMEM, 0, "out of memory");
  } catch (const std::system_error& e) {
    return report(err, SHMPOOL_ESYSTEM, e.code().value(), e.what());
  } catch (const std::exception& e) {
    return report(err, SHMPOOL_EUNKNOWN, 0, e.what());
  } catch (...) {
    return report(err, SHMPOOL_EUNKNOWN, 0, "an unknown exception");
  }
}

// Refuses a NULL pointer argument.
void need_nonnull(const void* p, const char* what) {
  if (p == nullptr) throw c_status{SHMPOOL_EINVAL, std::string(what) + " is NULL"};
}

template <class T>
T& need(T* p, const char* what) {
  need_nonnull(p, what);
  return *p;
}

shmpool::detail::pool_base& base_of(shmpool_t* h) { return base_of_handle(need(h, "the pool handle")); }

const char* variant_name(int v) noexcept {
  switch (v) {
    case SHMPOOL_VARIANT_RAW: return "raw";
    case SHMPOOL_VARIANT_I64: return "i64";
    case SHMPOOL_VARIANT_I32: return "i32";
    case SHMPOOL_VARIANT_F64: return "f64";
    case SHMPOOL_VARIANT_STR: return "str";
  }
  return "unknown";
}

// The handle's pool as P, or SHMPOOL_EWRONGVARIANT.
template <class P>
P& as(shmpool_t* h, const char* function) {
  auto* p = std::get_if<P>(&need(h, "the pool handle").pool);
  if (p == nullptr)
    throw c_status{SHMPOOL_EWRONGVARIANT,
                   std::string(function) + ": the handle is a " +
                       variant_name(static_cast<int>(base_of_handle(*h).variant())) + " pool"};
  return *p;
}

// The elem size argument of a fixed-size variant: 0 or its natural size.
void check_natural_size(std::uint64_t given, std::uint64_t natural, int variant) {
  if (given != 0 && given != natural)
    throw c_status{SHMPOOL_EINVAL, std::string("a ") + variant_name(variant) + " pool's elem size is " +
                                       std::to_string(natural) + ", not " + std::to_string(given) + " (pass 0)"};
}

// Builds a handle of the given variant; make(type_tag, size) calls the
// matching factory.
template <class Make>
shmpool_t* construct(int variant, std::uint64_t size, shmpool_error* err, Make make) noexcept {
  shmpool_t* out = nullptr;
  guarded(err, [&] {
    switch (variant) {
      case SHMPOOL_VARIANT_RAW:
        out = new shmpool_handle{make(std::type_identity<shmpool::pool>{}, size)};
        break;
      case SHMPOOL_VARIANT_I64:
        check_natural_size(size, 8, variant);
        out = new shmpool_handle{make(std::type_identity<shmpool::i64_pool>{}, 0)};
        break;
      case SHMPOOL_VARIANT_I32:
        check_natural_size(size, 4, variant);
        out = new shmpool_handle{make(std::type_identity<shmpool::i32_pool>{}, 0)};
        break;
      case SHMPOOL_VARIANT_F64:
        check_natural_size(size, 8, variant);
        out = new shmpool_handle{make(std::type_identity<shmpool::f64_pool>{}, 0)};
        break;
      case SHMPOOL_VARIANT_STR:
        out = new shmpool_handle{make(std::type_identity<shmpool::str_pool>{}, size)};
        break;
      default:
        throw c_status{SHMPOOL_EINVAL, "unknown variant " + std::to_string(variant)};
    }
    return SHMPOOL_OK;
  });
  return out;
}

// Whether P's factories take a size (elem_size or max_len).
template <class P>
constexpr bool sized = std::is_same_v<P, shmpool::pool> || std::is_same_v<P, shmpool::str_pool>;

}  // namespace

// Every definition below has C linkage from its declaration in shmpool.h.

const char* shmpool_strerror(int code) noexcept {
  switch (code) {
    case SHMPOOL_OK: return "SHMPOOL_OK: success";
    case SHMPOOL_EINVAL: return "SHMPOOL_EINVAL: a NULL or invalid argument";
    case SHMPOOL_ERANGE: return "SHMPOOL_ERANGE: slot index out of range";
    case SHMPOOL_ENOTALLOC: return "SHMPOOL_ENOTALLOC: the slot is not allocated";
    case SHMPOOL_EFULL: return "SHMPOOL_EFULL: the pool is full";
    case SHMPOOL_ETIMEDOUT: return "SHMPOOL_ETIMEDOUT: no slot became free in time";
    case SHMPOOL_ENOTOWNER: return "SHMPOOL_ENOTOWNER: this process does not hold the slot";
    case SHMPOOL_ESYSTEM: return "SHMPOOL_ESYSTEM: a system call failed";
    case SHMPOOL_ENOMEM: return "SHMPOOL_ENOMEM: out of memory";
    case SHMPOOL_EFAILED: return "SHMPOOL_EFAILED: the operation failed";
    case SHMPOOL_EBADMAGIC: return "SHMPOOL_EBADMAGIC: not a shmpool region";
    case SHMPOOL_EUNSUPPORTED: return "SHMPOOL_EUNSUPPORTED: another format version or layout";
    case SHMPOOL_EWRONGVARIANT: return "SHMPOOL_EWRONGVARIANT: the pool is of another variant";
    case SHMPOOL_ETRUNCATED: return "SHMPOOL_ETRUNCATED: smaller than its header says";
    case SHMPOOL_ELAYOUT: return "SHMPOOL_ELAYOUT: header fields disagree";
    case SHMPOOL_ECORRUPT: return "SHMPOOL_ECORRUPT: the header fails its checks";
    case SHMPOOL_EBADARG: return "SHMPOOL_EBADARG: capacity, elem_size, max_len or name out of range";
    case SHMPOOL_EPARAMMISMATCH: return "SHMPOOL_EPARAMMISMATCH: the existing pool has other parameters";
    case SHMPOOL_EIDENTITY: return "SHMPOOL_EIDENTITY: this process's identity cannot be determined";
    case SHMPOOL_EEXCEEDS: return "SHMPOOL_EEXCEEDS: larger than its backing can hold";
    case SHMPOOL_EUNKNOWN: return "SHMPOOL_EUNKNOWN: an unexpected error";
  }
  return "an unknown shmpool status code";
}

// ---- open and close ----

shmpool_t* shmpool_open(const char* path, int variant, std::uint64_t capacity, std::uint64_t size,
                        shmpool_error* err) noexcept {
  if (path == nullptr) {
    report(err, SHMPOOL_EINVAL, 0, "shmpool_open: the path is NULL");
    return nullptr;
  }
  return construct(variant, size, err, [&]<class P>(std::type_identity<P>, std::uint64_t s) {
    if constexpr (sized<P>) return P::open(path, capacity, s);
    else return P::open(path, capacity);
  });
}

shmpool_t* shmpool_anonymous(int variant, std::uint64_t capacity, std::uint64_t size, shmpool_error* err) noexcept {
  return construct(variant, size, err, [&]<class P>(std::type_identity<P>, std::uint64_t s) {
    if constexpr (sized<P>) return P::anonymous(capacity, s);
    else return P::anonymous(capacity);
  });
}

shmpool_t* shmpool_memfd(const char* name, int variant, std::uint64_t capacity, std::uint64_t size,
                         shmpool_error* err) noexcept {
  if (name == nullptr) {
    report(err, SHMPOOL_EINVAL, 0, "shmpool_memfd: the name is NULL");
    return nullptr;
  }
  return construct(variant, size, err, [&]<class P>(std::type_identity<P>, std::uint64_t s) {
    if constexpr (sized<P>) return P::memfd(name, capacity, s);
    else return P::memfd(name, capacity);
  });
}

shmpool_t* shmpool_from_fd(int fd, int variant, shmpool_error* err) noexcept {
  // The fixed-size variants take 0; construct() checks nothing else here.
  return construct(variant, 0, err, [&]<class P>(std::type_identity<P>, std::uint64_t) { return P::from_fd(fd); });
}

int shmpool_close(shmpool_t* pool) noexcept {
  if (pool == nullptr) return SHMPOOL_EINVAL;
  delete pool;  // the C++ destructors never throw
  return SHMPOOL_OK;
}

// ---- allocation ----

int shmpool_alloc(shmpool_t* pool, std::uint64_t* slot, shmpool_error* err) noexcept {
  return guarded(err, [&] {
    auto& out = need(slot, "slot");
    out = *base_of(pool).alloc();
    return SHMPOOL_OK;
  });
}

int shmpool_alloc_timeout(shmpool_t* pool, std::int64_t timeout_ns, std::uint64_t* slot, shmpool_error* err) noexcept {
  return guarded(err, [&] {
    auto& out = need(slot, "slot");
    auto& p = base_of(pool);
    const auto got = timeout_ns < 0 ? p.alloc() : p.alloc(std::chrono::nanoseconds(timeout_ns));
    if (!got) return timeout_ns == 0 ? SHMPOOL_EFULL : SHMPOOL_ETIMEDOUT;
    out = *got;
    return SHMPOOL_OK;
  });
}

int shmpool_try_alloc(shmpool_t* pool, std::uint64_t* slot, shmpool_error* err) noexcept {
  return shmpool_alloc_timeout(pool, 0, slot, err);
}

int shmpool_free(shmpool_t* pool, std::uint64_t slot, shmpool_error* err) noexcept {
  return guarded(err, [&] { return base_of(pool).free(slot) ? SHMPOOL_OK : SHMPOOL_ENOTALLOC; });
}

int shmpool_free_if_mine(shmpool_t* pool, std::uint64_t slot, shmpool_error* err) noexcept {
  return guarded(err, [&] { return base_of(pool).free_if_mine(slot) ? SHMPOOL_OK : SHMPOOL_ENOTOWNER; });
}

int shmpool_alloc_n(shmpool_t* pool, std::size_t n, std::uint64_t* slots, std::int64_t timeout_ns,
                    shmpool_error* err) noexcept {
  return guarded(err, [&] {
    auto& p = base_of(pool);
    if (n == 0) return SHMPOOL_OK;
    need(slots, "slots");
    const auto got = timeout_ns < 0 ? p.alloc_n(n) : p.alloc_n(n, std::chrono::nanoseconds(timeout_ns));
    if (!got) return timeout_ns == 0 ? SHMPOOL_EFULL : SHMPOOL_ETIMEDOUT;
    std::copy(got->begin(), got->end(), slots);
    return SHMPOOL_OK;
  });
}

int shmpool_free_n(shmpool_t* pool, const std::uint64_t* slots, std::size_t n, std::size_t* freed,
                   shmpool_error* err) noexcept {
  return guarded(err, [&] {
    auto& p = base_of(pool);
    if (n != 0) need(slots, "slots");
    const std::size_t count = n == 0 ? 0 : p.free_n(std::span<const std::uint64_t>(slots, n));
    if (freed != nullptr) *freed = count;
    return SHMPOOL_OK;
  });
}

// ---- raw bytes and strings ----

int shmpool_get(shmpool_t* pool, std::uint64_t slot, void* buf, std::size_t size, shmpool_error* err) noexcept {
  return guarded(err, [&] {
    auto& p = as<shmpool::pool>(pool, "shmpool_get");
    if (size != 0) need_nonnull(buf, "buf");
    const auto bytes = p.get(slot);
    const std::size_t n = std::min<std::size_t>(size, bytes.size());
    if (n != 0) std::memcpy(buf, bytes.data(), n);
    return SHMPOOL_OK;
  });
}

int shmpool_set(shmpool_t* pool, std::uint64_t slot, const void* bytes, std::size_t size, shmpool_error* err) noexcept {
  return guarded(err, [&] {
    auto& p = as<shmpool::pool>(pool, "shmpool_set");
    if (size != 0) need_nonnull(bytes, "bytes");
    p.set(slot, std::span<const std::byte>(static_cast<const std::byte*>(bytes), size));
    return SHMPOOL_OK;
  });
}

int shmpool_get_str(shmpool_t* pool, std::uint64_t slot, char* buf, std::size_t size, std::size_t* length,
                    shmpool_error* err) noexcept {
  return guarded(err, [&] {
    auto& p = as<shmpool::str_pool>(pool, "shmpool_get_str");
    if (size != 0) need_nonnull(buf, "buf");
    const std::string s = p.get(slot);
    const std::size_t n = std::min(size, s.size());
    if (n != 0) std::memcpy(buf, s.data(), n);
    if (n < size) buf[n] = '\0';
    if (length != nullptr) *length = s.size();
    return SHMPOOL_OK;
  });
}

int shmpool_set_str(shmpool_t* pool, std::uint64_t slot, const char* s, std::size_t len, shmpool_error* err) noexcept {
  return guarded(err, [&] {
    auto& p = as<shmpool::str_pool>(pool, "shmpool_set_str");
    if (len != 0) need(s, "s");
    p.set(slot, len == 0 ? std::string_view() : std::string_view(s, len));
    return SHMPOOL_OK;
  });
}

int shmpool_max_len(shmpool_t* pool, std::uint64_t* max_len, shmpool_error* err) noexcept {
  return guarded(err, [&] {
    auto& p = as<shmpool::str_pool>(pool, "shmpool_max_len");
    need(max_len, "max_len") = p.max_len();
    return SHMPOOL_OK;
  });
}

// ---- numbers ----

// The integer functions of both widths, as one template each.
namespace {
template <class P, class T>
int int_get(shmpool_t* pool, std::uint64_t slot, T* value, shmpool_error* err, const char* fn) {
  return guarded(err, [&] {
    auto& p = as<P>(pool, fn);
    auto& out = need(value, "value");
    out = p.get(slot);
    return SHMPOOL_OK;
  });
}
template <class P, class T>
int int_set(shmpool_t* pool, std::uint64_t slot, T value, shmpool_error* err, const char* fn) {
  return guarded(err, [&] {
    as<P>(pool, fn).set(slot, value);
    return SHMPOOL_OK;
  });
}
template <class P, class T>
int int_cas(shmpool_t* pool, std::uint64_t slot, T expected, T desired, int* swapped, shmpool_error* err,
            const char* fn) {
  return guarded(err, [&] {
    auto& p = as<P>(pool, fn);
    auto& out = need(swapped, "swapped");
    out = p.cas(slot, expected, desired) ? 1 : 0;
    return SHMPOOL_OK;
  });
}
template <class P, class T>
int int_cmpxchg(shmpool_t* pool, std::uint64_t slot, T expected, T desired, T* old, shmpool_error* err,
                const char* fn) {
  return guarded(err, [&] {
    auto& p = as<P>(pool, fn);
    auto& out = need(old, "old");
    out = p.cmpxchg(slot, expected, desired);
    return SHMPOOL_OK;
  });
}
template <class P, class T>
int int_xchg(shmpool_t* pool, std::uint64_t slot, T value, T* old, shmpool_error* err, const char* fn) {
  return guarded(err, [&] {
    const T was = as<P>(pool, fn).xchg(slot, value);
    if (old != nullptr) *old = was;
    return SHMPOOL_OK;
  });
}
template <class P, class T>
int int_add(shmpool_t* pool, std::uint64_t slot, T delta, T* new_value, shmpool_error* err, const char* fn) {
  return guarded(err, [&] {
    const T now = as<P>(pool, fn).add(slot, delta);
    if (new_value != nullptr) *new_value = now;
    return SHMPOOL_OK;
  });
}
}  // namespace

#define SHMPOOL_C_INTEGER_FUNCTIONS(W, P, T)                                                                   \
  int shmpool_get_##W(shmpool_t* pool, std::uint64_t slot, T* value, shmpool_error* err) noexcept {           \
    return int_get<P>(pool, slot, value, err, "shmpool_get_" #W);                                             \
  }                                                                                                           \
  int shmpool_set_##W(shmpool_t* pool, std::uint64_t slot, T value, shmpool_error* err) noexcept {            \
    return int_set<P>(pool, slot, value, err, "shmpool_set_" #W);                                             \
  }                                                                                                           \
  int shmpool_cas_##W(shmpool_t* pool, std::uint64_t slot, T expected, T desired, int* swapped,               \
                      shmpool_error* err) noexcept {                                                          \
    return int_cas<P>(pool, slot, expected, desired, swapped, err, "shmpool_cas_" #W);                        \
  }                                                                                                           \
  int shmpool_cmpxchg_##W(shmpool_t* pool, std::uint64_t slot, T expected, T desired, T* old,                 \
                          shmpool_error* err) noexcept {                                                      \
    return int_cmpxchg<P>(pool, slot, expected, desired, old, err, "shmpool_cmpxchg_" #W);                    \
  }                                                                                                           \
  int shmpool_xchg_##W(shmpool_t* pool, std::uint64_t slot, T value, T* old, shmpool_error* err) noexcept {   \
    return int_xchg<P>(pool, slot, value, old, err, "shmpool_xchg_" #W);                                      \
  }                                                                                                           \
  int shmpool_add_##W(shmpool_t* pool, std::uint64_t slot, T delta, T* new_value, shmpool_error* err) noexcept {       \
    return int_add<P>(pool, slot, delta, new_value, err, "shmpool_add_" #W);                                  \
  }                                                                                                           \
  int shmpool_incr_##W(shmpool_t* pool, std::uint64_t slot, T* new_value, shmpool_error* err) noexcept {      \
    return int_add<P>(pool, slot, T{1}, new_value, err, "shmpool_incr_" #W);                                  \
  }                                                                                                           \
  int shmpool_decr_##W(shmpool_t* pool, std::uint64_t slot, T* new_value, shmpool_error* err) noexcept {      \
    return int_add<P>(pool, slot, T{-1}, new_value, err, "shmpool_decr_" #W);                                 \
  }

SHMPOOL_C_INTEGER_FUNCTIONS(i64, shmpool::i64_pool, std::int64_t)
SHMPOOL_C_INTEGER_FUNCTIONS(i32, shmpool::i32_pool, std::int32_t)
#undef SHMPOOL_C_INTEGER_FUNCTIONS

int shmpool_get_f64(shmpool_t* pool, std::uint64_t slot, double* value, shmpool_error* err) noexcept {
  return int_get<shmpool::f64_pool>(pool, slot, value, err, "shmpool_get_f64");
}

int shmpool_set_f64(shmpool_t* pool, std::uint64_t slot, double value, shmpool_error* err) noexcept {
  return int_set<shmpool::f64_pool>(pool, slot, value, err, "shmpool_set_f64");
}

// ---- zero-copy ----

int shmpool_slot_ptr(shmpool_t* pool, std::uint64_t slot, void** ptr, shmpool_error* err) noexcept {
  return guarded(err, [&] {
    auto& p = base_of(pool);
    auto& out = need(ptr, "ptr");
    out = p.ptr(slot);
    return SHMPOOL_OK;
  });
}

int shmpool_data_ptr(shmpool_t* pool, void** ptr, shmpool_error* err) noexcept {
  return guarded(err, [&] {
    auto& p = base_of(pool);
    need(ptr, "ptr") = p.data_ptr();
    return SHMPOOL_OK;
  });
}

// ---- status ----

namespace {
// *out = read(pool_base) for the status functions.
template <class T, class Read>
int status_of(shmpool_t* pool, T* out, shmpool_error* err, Read read) {
  return guarded(err, [&] {
    auto& p = base_of(pool);
    auto& o = need(out, "the result pointer");
    o = static_cast<T>(read(p));
    return SHMPOOL_OK;
  });
}
}  // namespace

int shmpool_is_allocated(shmpool_t* pool, std::uint64_t slot, int* allocated, shmpool_error* err) noexcept {
  return status_of(pool, allocated, err, [&](auto& p) { return p.is_allocated(slot) ? 1 : 0; });
}

int shmpool_owner(shmpool_t* pool, std::uint64_t slot, pid_t* pid, shmpool_error* err) noexcept {
  return status_of(pool, pid, err, [&](auto& p) { return p.owner(slot); });
}

int shmpool_used(shmpool_t* pool, std::uint64_t* used, shmpool_error* err) noexcept {
  return status_of(pool, used, err, [](auto& p) { return p.used(); });
}

int shmpool_available(shmpool_t* pool, std::uint64_t* available, shmpool_error* err) noexcept {
  return status_of(pool, available, err, [](auto& p) { return p.available(); });
}

int shmpool_capacity(shmpool_t* pool, std::uint64_t* capacity, shmpool_error* err) noexcept {
  return status_of(pool, capacity, err, [](auto& p) { return p.capacity(); });
}

int shmpool_elem_size(shmpool_t* pool, std::uint64_t* elem_size, shmpool_error* err) noexcept {
  return status_of(pool, elem_size, err, [](auto& p) { return p.elem_size(); });
}

int shmpool_variant(shmpool_t* pool, int* variant, shmpool_error* err) noexcept {
  return status_of(pool, variant, err, [](auto& p) { return static_cast<int>(p.variant()); });
}

int shmpool_get_stats(shmpool_t* pool, shmpool_stats* stats, shmpool_error* err) noexcept {
  return guarded(err, [&] {
    auto& p = base_of(pool);
    auto& out = need(stats, "stats");
    if (out.size < sizeof(std::uint64_t))
      throw c_status{SHMPOOL_EINVAL, "shmpool_get_stats: stats->size is " + std::to_string(out.size) +
                                         ", less than the size field itself"};
    const shmpool::pool_stats s = p.stats();
    shmpool_stats full{};
    full.capacity = s.capacity;
    full.elem_size = s.elem_size;
    full.used = s.used;
    full.available = s.available;
    full.waiters = s.waiters;
    full.mmap_size = s.mmap_size;
    full.allocs = s.allocs;
    full.frees = s.frees;
    full.waits = s.waits;
    full.timeouts = s.timeouts;
    full.recoveries = s.recoveries;
    // Whole fields only, never past the caller's size.
    const std::size_t fields = std::min<std::uint64_t>(out.size, sizeof full) / sizeof(std::uint64_t);
    const std::size_t bytes = fields * sizeof(std::uint64_t);
    full.size = bytes;
    std::memcpy(&out, &full, bytes);
    return SHMPOOL_OK;
  });
}

// ---- recovery and health ----

int shmpool_recover_stale(shmpool_t* pool, std::size_t* freed, shmpool_error* err) noexcept {
  return guarded(err, [&] {
    const std::size_t n = base_of(pool).recover_stale();
    if (freed != nullptr) *freed = n;
    return SHMPOOL_OK;
  });
}

int shmpool_release_owner(shmpool_t* pool, pid_t pid, std::size_t* freed, shmpool_error* err) noexcept {
  return guarded(err, [&] {
    const std::size_t n = base_of(pool).release_owner(pid);
    if (freed != nullptr) *freed = n;
    return SHMPOOL_OK;
  });
}

int shmpool_reset(shmpool_t* pool, shmpool_error* err) noexcept {
  return guarded(err, [&] {
    base_of(pool).reset();
    return SHMPOOL_OK;
  });
}

int shmpool_check(shmpool_t* pool, shmpool_problem_fn fn, void* context, std::size_t* problems,
                  shmpool_error* err) noexcept {
  return guarded(err, [&] {
    const std::vector<std::string> found = base_of(pool).check();
    if (fn != nullptr)
      for (const std::string& problem : found) fn(problem.c_str(), context);
    if (problems != nullptr) *problems = found.size();
    return SHMPOOL_OK;
  });
}

// ---- backing ----

int shmpool_memfd_fd(shmpool_t* pool, int* fd, shmpool_error* err) noexcept {
  return status_of(pool, fd, err, [](auto& p) { return p.memfd(); });
}

int shmpool_sync(shmpool_t* pool, shmpool_error* err) noexcept {
  return guarded(err, [&] {
    base_of(pool).sync();
    return SHMPOOL_OK;
  });
}

int shmpool_unlink(shmpool_t* pool, shmpool_error* err) noexcept {
  return guarded(err, [&] {
    auto& p = base_of(pool);
    if (p.unlink()) return SHMPOOL_OK;
    throw c_status{SHMPOOL_EFAILED, p.path() ? "shmpool_unlink: unlink of " + p.path()->string() + " failed"
                                             : std::string("shmpool_unlink: the pool has no path")};
  });
}

// ---- eventfd ----

int shmpool_eventfd(shmpool_t* pool, int* fd, shmpool_error* err) noexcept {
  return guarded(err, [&] {
    auto& p = base_of(pool);
    auto& out = need(fd, "fd");
    out = p.eventfd();
    return SHMPOOL_OK;
  });
}

int shmpool_eventfd_set(shmpool_t* pool, int fd, shmpool_error* err) noexcept {
  return guarded(err, [&] {
    base_of(pool).eventfd_set(fd);
    return SHMPOOL_OK;
  });
}

int shmpool_fileno(shmpool_t* pool, int* fd, shmpool_error* err) noexcept {
  return status_of(pool, fd, err, [](auto& p) { return p.fileno(); });
}

int shmpool_notify(shmpool_t* pool, shmpool_error* err) noexcept {
  return guarded(err, [&] {
    if (base_of(pool).notify()) return SHMPOOL_OK;
    throw c_status{SHMPOOL_EFAILED, "shmpool_notify: no eventfd, or writing it failed"};
  });
}

int shmpool_eventfd_consume(shmpool_t* pool, std::uint64_t* count, shmpool_error* err) noexcept {
  return status_of(pool, count, err, [](auto& p) { return p.eventfd_consume(); });
}

