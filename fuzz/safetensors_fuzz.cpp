// libFuzzer target: arbitrary bytes as a whole safetensors file image.
//
// parse_safetensors_header must either return a header whose tensors all lie inside the input or
// throw dseek::Error; any other exception, crash or sanitizer report is a bug.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>

#include "dseek/core/error.h"
#include "dseek/core/tensor.h"
#include "dseek/io/safetensors.h"

static volatile uint8_t sink;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> file(data, size);
  try {
    const dseek::SafetensorsHeader h = dseek::parse_safetensors_header(file, "fuzz.safetensors");
    // The promises callers rely on for zero-copy views.
    uint64_t prev_end = h.data_begin;
    for (const dseek::TensorInfo& t : h.tensors) {
      if (t.begin < h.data_begin || t.begin > size || t.nbytes > size - t.begin) std::abort();
      if (t.nbytes != uint64_t(dseek::shape_numel(t.shape)) * dseek::dtype_size(t.dtype)) std::abort();
      if (t.nbytes > 0) {
        if (t.begin < prev_end) std::abort();  // overlap slipped through
        prev_end = t.begin + t.nbytes;
      }
      // Touch first and last byte so ASan checks the range really is inside the input.
      if (t.nbytes > 0) sink = data[t.begin] ^ data[t.begin + t.nbytes - 1];
    }
  } catch (const dseek::Error&) {
    // Rejected input: the expected outcome for almost everything.
  }
  return 0;
}
