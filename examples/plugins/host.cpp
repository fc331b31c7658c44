// The seed's "delay deallocation" story: plugin A makes a buffer, plugin B
// adopts its raw address; A is unloaded while B still reads the memory,
// inside a delay_deallocation scope; the block is freed when the scope ends.
#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include <shmpool/stable_reference_buffer.hpp>

#include "../check.hpp"

template <class F>
F symbol(void* lib, const char* name) {
  void* s = ::dlsym(lib, name);
  CHECK(s != nullptr);
  return reinterpret_cast<F>(s);
}

int main() {
  void* producer = ::dlopen(PRODUCER_PLUGIN, RTLD_NOW | RTLD_LOCAL);
  void* consumer = ::dlopen(CONSUMER_PLUGIN, RTLD_NOW | RTLD_LOCAL);
  CHECK(producer != nullptr && consumer != nullptr);
  auto make = symbol<const void* (*)(const char*)>(producer, "producer_make");
  auto release_a = symbol<void (*)()>(producer, "producer_release");
  auto adopt = symbol<long (*)(const void*, const char*)>(consumer, "consumer_adopt");
  auto release_b = symbol<void (*)()>(consumer, "consumer_release");

  const void* block = make("made by plugin A");
  CHECK(adopt(block, "made by plugin A") == 2);  // one count, seen by both copies
  CHECK(shmpool::stable_reference_buffer::is_known(block));
  {
    shmpool::stable_reference_buffer::delay_deallocation scope;
    release_a();
    ::dlclose(producer);  // plugin A is gone
    release_b();          // the count reaches zero, but the scope delays the free
    CHECK(std::strcmp(static_cast<const char*>(block), "made by plugin A") == 0);
    std::printf("after unloading plugin A, the memory still reads: %s\n", static_cast<const char*>(block));
  }
  CHECK(!shmpool::stable_reference_buffer::is_known(block));  // freed exactly once, at scope end
  ::dlclose(consumer);
  std::printf("srb_two_plugins: ok\n");
  return 0;
}
