// Hugging Face safetensors files: a validating, zero-copy reader and an atomic writer.
//
// Layout: u64 little-endian header length N, N bytes of UTF-8 JSON (an object mapping tensor
// name -> {"dtype", "shape", "data_offsets": [begin, end]} plus an optional "__metadata__"
// object of string -> string), then the data section. data_offsets are relative to the start of
// the data section (byte 8 + N). Every structural rule is checked before any tensor is exposed,
// so a TensorInfo always describes bytes that lie inside the file (docs/safetensors.md).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "dseek/core/dtype.h"
#include "dseek/core/mapped_file.h"
#include "dseek/core/tensor.h"

namespace dseek {

struct TensorInfo {
  std::string name;
  DType dtype;
  Shape shape;
  uint64_t begin = 0;   // absolute byte offset in the file (8 + header_len + data_offsets[0])
  uint64_t nbytes = 0;  // == numel * dtype_size(dtype)
};

struct SafetensorsHeader {
  std::vector<TensorInfo> tensors;              // in file order of their data
  std::map<std::string, std::string> metadata;  // "__metadata__" (string -> string only)
  uint64_t data_begin = 0;                      // 8 + header_len
};

// Parses and validates the header of a complete file image. `label` (the path) starts every error
// message. Throws dseek::Error. Never reads outside `file`.
SafetensorsHeader parse_safetensors_header(std::span<const uint8_t> file, const std::string& label);

// A memory-mapped, validated safetensors file. Movable; data pointers and TensorInfo addresses
// stay valid across moves (the mapping and the tensor vector's buffer do not move).
class SafetensorsFile {
 public:
  static SafetensorsFile open(const std::string& path);  // mmap + parse; throws dseek::Error

  const std::string& path() const { return map_.path(); }
  const std::vector<TensorInfo>& tensors() const { return header_.tensors; }
  const TensorInfo* find(std::string_view name) const;  // nullptr if absent; O(log n)
  const uint8_t* data(const TensorInfo& t) const;       // pointer into the mapping
  TensorView view(const TensorInfo& t) const;
  const std::map<std::string, std::string>& metadata() const { return header_.metadata; }
  size_t file_size() const { return map_.size(); }

 private:
  MappedFile map_;
  SafetensorsHeader header_;
  // name -> index into header_.tensors, for find(); std::less<> allows string_view lookups.
  std::map<std::string, size_t, std::less<>> by_name_;
};

struct TensorToWrite {
  std::string name;
  DType dtype;
  Shape shape;
  const void* data;  // numel * dtype_size(dtype) bytes, little-endian
};

// Writes a safetensors file atomically (write PATH.tmp.<pid>, fsync, rename). The header is
// padded with spaces (as HF does) so that the data section starts 64-byte aligned; tensors sized in
// whole 64-byte lines come first, in the given order (so each starts on a cache line), then the
// others by element size, largest first; no gaps between tensors.
// Throws dseek::Error naming the path.
void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace dseek
