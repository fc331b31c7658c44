// A plugin that adopts a raw address made by another plugin's copy of the core.
#include <cstring>

#include <shmpool/stable_reference_buffer.hpp>

namespace {
shmpool::stable_reference_buffer held;
}

// Adopts the block and returns the use count this copy of the core sees
// (-1 if the text differs).
extern "C" __attribute__((visibility("default"))) long consumer_adopt(const void* address, const char* expected) {
  held = shmpool::stable_reference_buffer(address);
  if (std::strcmp(static_cast<const char*>(held.get()), expected) != 0) return -1;
  return static_cast<long>(held.use_count());
}

extern "C" __attribute__((visibility("default"))) void consumer_release() { held.reset(); }
