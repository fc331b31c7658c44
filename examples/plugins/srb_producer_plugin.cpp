// A plugin that makes a buffer and hands its raw address out through C.
#include <cstring>

#include <shmpool/stable_reference_buffer.hpp>

namespace {
shmpool::stable_reference_buffer kept;  // the producer's own reference
}

extern "C" __attribute__((visibility("default"))) const void* producer_make(const char* text) {
  const std::size_t n = std::strlen(text) + 1;
  kept = shmpool::stable_reference_buffer(n);
  std::memcpy(kept.get(), text, n);
  return kept.get();
}

extern "C" __attribute__((visibility("default"))) void producer_release() { kept.reset(); }
