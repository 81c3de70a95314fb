// Streaming read of a large buffer: the inner loop of the memory-bandwidth probe
// (measure_read_bandwidth in runtime/bench.h). AVX-512 when the CPU has it (stream_read_avx512.cpp,
// chosen once at run time from cpu_features()), a portable loop otherwise.
//
// This header is included by the AVX-512 file, so it holds declarations only (docs/kernels.md).
#pragma once

#include <cstdint>

namespace dseek {

// Reads every byte of [p, p + bytes) once, as fast as the CPU streams it from memory, and returns
// the wrapping sum of its 64-bit little-endian words (so the reads cannot be optimised away and a
// test can check that every word was read exactly once). p must be 64-byte aligned and bytes a
// multiple of 64.
uint64_t stream_read(const void* p, int64_t bytes);
uint64_t stream_read_ref(const void* p, int64_t bytes);  // portable: eight scalar accumulators
// The AVX-512 F kernel; call it only when cpu_features().avx512f (throws where not compiled in).
uint64_t stream_read_avx512(const void* p, int64_t bytes);

// What stream_read runs on this CPU, e.g. "avx512 (4 streams)".
const char* stream_read_kernel_name();

}  // namespace dseek
