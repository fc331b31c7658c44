// The "shmpool" error category (error.hpp).  A source of its own, free of
// std::to_string and friends: a plugin that compiles the registry's sources
// needs it, and must stay unloadable (no STB_GNU_UNIQUE symbol).
#include "shmpool/error.hpp"

namespace shmpool {
namespace {

class category : public std::error_category {
 public:
  const char* name() const noexcept override { return "shmpool"; }
  std::string message(int c) const override {
    switch (static_cast<errc>(c)) {
      case errc::bad_magic: return "not a shmpool pool (bad magic)";
      case errc::unsupported_format: return "unsupported format version or layout";
      case errc::wrong_variant: return "wrong pool variant";
      case errc::truncated: return "truncated pool";
      case errc::layout_mismatch: return "layout mismatch";
      case errc::corrupt_header: return "corrupt header";
      case errc::bad_argument: return "bad argument";
      case errc::parameter_mismatch: return "existing pool has other parameters";
      case errc::identity_unavailable: return "this process's identity cannot be determined";
      case errc::exceeds_backing: return "pool larger than its backing can hold";
      case errc::invalid_handle: return "moved-from pool handle";
      case errc::not_owner: return "slot not held by this process";
    }
    return "unknown shmpool error";
  }
};

}  // namespace

const std::error_category& error_category() noexcept {
  static const category c;
  return c;
}

}  // namespace shmpool
