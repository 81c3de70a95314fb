// Instruction-set extensions of the CPU we run on, probed once with CPUID/XGETBV.
//
// The only process-wide state of the kernels: a const struct initialised on first use (thread-safe
// function-local static) and never changed, so every caller sees the same answer.
#pragma once

#include <string>

namespace dseek {

struct CpuFeatures {
  bool avx2 = false;        // with OS support for the YMM state
  bool fma = false;
  bool f16c = false;
  bool avx512f = false;     // with OS support for the ZMM and opmask state
  bool avx512bw = false;
  bool avx512vl = false;
  bool avx512vnni = false;  // vpdpbusd
  bool avx512bf16 = false;  // vdpbf16ps, vcvtne2ps2bf16
  bool avx512vbmi = false;  // vpermb
  bool amx_bf16 = false;    // AMX-TILE + AMX-BF16 with OS support for the tile state (XCR0)
  // AVX-512 F/BW/VL and FMA: what the *_avx512.cpp kernel files are compiled with.
  bool avx512_fma() const { return avx512f && avx512bw && avx512vl && fma; }
};

const CpuFeatures& cpu_features();

// Linux hands out the AMX tile data state per process on request (arch_prctl
// ARCH_REQ_XCOMP_PERM); without it the first tile instruction faults. Asks once (thread-safe) and
// returns whether this process may use AMX: false when the CPU lacks it or the kernel refuses.
bool amx_permitted();

// "avx2 fma f16c avx512f ..." for logs and benchmark headers.
std::string cpu_features_str(const CpuFeatures& f);

}  // namespace dseek
