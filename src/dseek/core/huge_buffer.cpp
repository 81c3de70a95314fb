#include "dseek/core/huge_buffer.h"

#if defined(__unix__) || defined(__APPLE__)
#include <sys/mman.h>
#define DSEEK_HUGE_BUFFER_MMAP 1
#endif

#include <cerrno>
#include <cstring>
#include <new>
#include <string>

#include "dseek/core/error.h"

namespace dseek {

HugeBuffer::HugeBuffer(size_t bytes, const char* what) {
  if (bytes == 0) return;
  const size_t size = (bytes + kHugePage - 1) / kHugePage * kHugePage;
#ifdef DSEEK_HUGE_BUFFER_MMAP
  // Over-map by one huge page and unmap the unaligned head and the rest of the tail.
  void* raw = ::mmap(nullptr, size + kHugePage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED)
    throw Error(std::string(what) + ": cannot map " + std::to_string(size) + " bytes: " + std::strerror(errno));
  const uintptr_t r = reinterpret_cast<uintptr_t>(raw);
  const uintptr_t a = (r + kHugePage - 1) & ~uintptr_t(kHugePage - 1);
  if (a > r) ::munmap(raw, a - r);
  if (const uintptr_t tail = r + size + kHugePage - (a + size); tail > 0) ::munmap(reinterpret_cast<void*>(a + size), tail);
  data_ = reinterpret_cast<uint8_t*>(a);
#ifdef MADV_HUGEPAGE
  (void)::madvise(data_, size, MADV_HUGEPAGE);  // a hint (see the header)
#endif
#else
  try {
    data_ = static_cast<uint8_t*>(::operator new(size, std::align_val_t(kHugePage)));
  } catch (const std::bad_alloc&) {
    throw Error(std::string(what) + ": cannot allocate " + std::to_string(size) + " bytes");
  }
  std::memset(data_, 0, size);
#endif
  size_ = size;
}

void HugeBuffer::release() {
  if (!data_) return;
#ifdef DSEEK_HUGE_BUFFER_MMAP
  ::munmap(data_, size_);
#else
  ::operator delete(data_, std::align_val_t(kHugePage));
#endif
  data_ = nullptr;
  size_ = 0;
}

HugeBuffer::~HugeBuffer() { release(); }

HugeBuffer& HugeBuffer::operator=(HugeBuffer&& o) noexcept {
  if (this != &o) {
    release();
    data_ = std::exchange(o.data_, nullptr);
    size_ = std::exchange(o.size_, 0);
  }
  return *this;
}

}  // namespace dseek
