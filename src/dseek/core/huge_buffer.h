// Large working memory on transparent huge pages.
//
// An anonymous mapping that starts on a 2 MiB boundary and is advised MADV_HUGEPAGE, so that with
// Linux's THP setting "madvise" (Debian's default) each 2 MiB of it can be one huge page: one TLB
// entry instead of 512, and one page fault instead of 512 on first touch (on a virtual machine a
// fault costs microseconds: 1 GB of training activations on 4 KiB pages took ~2.4 s to fault in).
// The memory starts zeroed (fresh anonymous pages). The advice is a hint: with THP "never", or no
// free huge pages, it is ordinary memory. Elsewhere than Linux/macOS: aligned operator new, zeroed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>

namespace dseek {

class HugeBuffer {
 public:
  static constexpr size_t kHugePage = size_t(2) << 20;

  HugeBuffer() = default;
  // `bytes` rounded up to whole huge pages; throws dseek::Error naming `what` if it cannot map them.
  HugeBuffer(size_t bytes, const char* what);
  ~HugeBuffer();
  HugeBuffer(HugeBuffer&& o) noexcept : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}
  HugeBuffer& operator=(HugeBuffer&& o) noexcept;
  HugeBuffer(const HugeBuffer&) = delete;
  HugeBuffer& operator=(const HugeBuffer&) = delete;

  uint8_t* data() const { return data_; }
  size_t capacity() const { return size_; }  // bytes mapped (whole huge pages)

 private:
  void release();
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// n values of a trivial type T in a HugeBuffer, zero-initialized: what std::vector<T>(n) gives,
// without the zeroing pass (and its page faults) and on huge pages.
template <class T>
class HugeArray {
 public:
  HugeArray() = default;
  HugeArray(size_t n, const char* what) : buf_(n * sizeof(T), what), n_(n) {}
  T* data() const { return reinterpret_cast<T*>(buf_.data()); }
  size_t size() const { return n_; }
  T* begin() const { return data(); }
  T* end() const { return data() + n_; }
  T& operator[](size_t i) const { return data()[i]; }

 private:
  HugeBuffer buf_;
  size_t n_ = 0;
};

}  // namespace dseek
