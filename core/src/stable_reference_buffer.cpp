// stable_reference_buffer: the instance side.  An instance is {entry, data,
// size, adopted}; every count lives in the registry entry (registry_protocol.hpp).
#include "shmpool/stable_reference_buffer.hpp"

#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>
#include <utility>

#include "shmpool/detail/srb_registry.hpp"

namespace shmpool {
namespace {

using registry = detail::srb_process_registry;

std::string address_text(const void* address) {
  char text[32];
  std::snprintf(text, sizeof text, "0x%" PRIxPTR, reinterpret_cast<std::uintptr_t>(address));
  return text;
}

std::size_t checked_product(std::size_t count, std::size_t size_of_type) {
  if (size_of_type != 0 && count > std::numeric_limits<std::size_t>::max() / size_of_type)
    throw std::length_error("stable_reference_buffer: count * size_of_type overflows");
  return count * size_of_type;
}

// Registers block (count 1); frees it and throws if the registry cannot.
// Takes ownership of block: on any failure (no registry, no memory for an
// entry) it is freed before the exception leaves (found by LeakSanitizer:
// a registry_error used to leak the block).
registry::entry* register_block(void* block) {
  registry::entry* e = nullptr;
  try {
    e = detail::srb_current().insert(block);
  } catch (...) {
    std::free(block);
    throw;
  }
  if (e == nullptr) {
    std::free(block);
    throw std::bad_alloc();
  }
  return e;
}

// Drops one reference; the last one retires the block in its own registry.
void drop(registry::entry* e) noexcept {
  if (e != nullptr && registry::drop_ref(*e)) registry::home_of(*e).retire(*e, detail::srb_free_block);
}

}  // namespace

stable_reference_buffer::stable_reference_buffer(std::size_t count, std::size_t size_of_type) {
  const std::size_t bytes = checked_product(count, size_of_type);
  if (bytes == 0) return;
  void* block = std::calloc(1, bytes);
  if (block == nullptr) throw std::bad_alloc();
  take_over(block, bytes, register_block(block));
}

stable_reference_buffer::stable_reference_buffer(const void* address) {
  registry::entry* e = nullptr;
  const detail::srb_adopt r =
      address == nullptr ? detail::srb_adopt::unknown : detail::srb_current().adopt(address, e);
  if (r != detail::srb_adopt::adopted)
    throw std::invalid_argument("stable_reference_buffer: " + address_text(address) +
                                (r == detail::srb_adopt::released
                                     ? " was released (its last reference is gone, outside any delay scope)"
                                     : " is not a block known to this process's registry "
                                       "(never created by stable_reference_buffer, already freed, or interior)"));
  take_over(const_cast<void*>(address), 0, e);
  adopted_ = true;
}

stable_reference_buffer::stable_reference_buffer(const stable_reference_buffer& other) noexcept
    : entry_(other.entry_), data_(other.data_), size_(other.size_), adopted_(other.adopted_) {
  if (entry_ != nullptr) registry::add_ref(*entry_);
}

stable_reference_buffer::stable_reference_buffer(stable_reference_buffer&& other) noexcept
    : entry_(std::exchange(other.entry_, nullptr)),
      data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      adopted_(std::exchange(other.adopted_, false)) {}

stable_reference_buffer& stable_reference_buffer::operator=(const stable_reference_buffer& other) noexcept {
  if (this != &other) stable_reference_buffer(other).swap(*this);
  return *this;
}

stable_reference_buffer& stable_reference_buffer::operator=(stable_reference_buffer&& other) noexcept {
  if (this != &other) stable_reference_buffer(std::move(other)).swap(*this);
  return *this;
}

stable_reference_buffer::~stable_reference_buffer() { drop(entry_); }

void stable_reference_buffer::reset() noexcept {
  drop(std::exchange(entry_, nullptr));
  data_ = nullptr;
  size_ = 0;
  adopted_ = false;
}

void stable_reference_buffer::swap(stable_reference_buffer& other) noexcept {
  std::swap(entry_, other.entry_);
  std::swap(data_, other.data_);
  std::swap(size_, other.size_);
  std::swap(adopted_, other.adopted_);
}

std::size_t stable_reference_buffer::use_count() const noexcept {
  return entry_ == nullptr ? 0 : static_cast<std::size_t>(registry::use_count(*entry_));
}

void* stable_reference_buffer::safe_get() const noexcept {
  if (entry_ == nullptr) return nullptr;
  const bool kept = registry::use_count(*entry_) > 1 || registry::home_of(*entry_).delaying();
  return kept ? data_ : nullptr;
}

bool stable_reference_buffer::is_known(const void* address) {
  return address != nullptr && detail::srb_current().known(address);
}

void stable_reference_buffer::append(const void* data, std::size_t len) {
  if (adopted_) throw std::logic_error("stable_reference_buffer: append to an adopted buffer (its size is unknown)");
  if (len == 0) return;
  if (data == nullptr) throw std::invalid_argument("stable_reference_buffer: append of null data");
  if (len > std::numeric_limits<std::size_t>::max() - size_)
    throw std::length_error("stable_reference_buffer: append overflows size_t");
  if (entry_ == nullptr)
    append_copy(data, len);
  else
    append_exclusive_or_shared(data, len);
}

void stable_reference_buffer::take_over(void* data, std::size_t size, entry* e) noexcept {
  entry_ = e;
  data_ = data;
  size_ = size;
  adopted_ = false;
}

// Exclusive: realloc under the registry's lock (no adopter can take the old
// address meanwhile).  Shared, or inside a delay scope: copy-on-write.
void stable_reference_buffer::append_exclusive_or_shared(const void* data, std::size_t len) {
  const auto src = reinterpret_cast<std::uintptr_t>(data);
  const auto old = reinterpret_cast<std::uintptr_t>(data_);
  const bool from_self = src >= old && src - old < size_;  // appending our own bytes: realloc may move them
  const std::size_t offset = from_self ? static_cast<std::size_t>(src - old) : 0;
  void* grown = nullptr;
  const detail::srb_grow outcome = registry::home_of(*entry_).grow_exclusive(*entry_, [&](void* block) {
    grown = std::realloc(block, size_ + len);
    return grown;
  });
  if (outcome == detail::srb_grow::shared) return append_copy(data, len);
  if (outcome == detail::srb_grow::failed) throw std::bad_alloc();
  auto* bytes = static_cast<char*>(grown);
  std::memmove(bytes + size_, from_self ? bytes + offset : data, len);
  data_ = grown;
  size_ += len;
}

// A new block holding our bytes and the appended ones, with its own entry;
// then this instance lets go of the old block (others keep it).
void stable_reference_buffer::append_copy(const void* data, std::size_t len) {
  auto* block = static_cast<char*>(std::malloc(size_ + len));
  if (block == nullptr) throw std::bad_alloc();
  if (size_ != 0) std::memcpy(block, data_, size_);
  std::memcpy(block + size_, data, len);
  registry::entry* e = register_block(block);
  const std::size_t new_size = size_ + len;
  drop(entry_);
  take_over(block, new_size, e);
}

}  // namespace shmpool

// ---- delay_deallocation --------------------------------------------------------
namespace shmpool {

stable_reference_buffer::delay_deallocation::delay_deallocation() : scope_(detail::srb_enter_delay_scope()) {}

stable_reference_buffer::delay_deallocation::~delay_deallocation() { detail::srb_exit_delay_scope(scope_); }

}  // namespace shmpool
