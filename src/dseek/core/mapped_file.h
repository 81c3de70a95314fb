// Read-only memory mapping of a whole file (weights are never copied: STYLE.md "mmap weights").
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace dseek {

class MappedFile {
 public:
  MappedFile() = default;
  // Maps `path` read-only; throws dseek::Error naming the path on failure.
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(MappedFile&& o) noexcept;
  MappedFile& operator=(MappedFile&& o) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  std::span<const uint8_t> bytes() const { return {data_, size_}; }
  const std::string& path() const { return path_; }

 private:
  void reset();
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// Reads a whole (small) file into a string; throws dseek::Error naming the path.
std::string read_text_file(const std::string& path);

}  // namespace dseek
