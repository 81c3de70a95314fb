// dseek init: a checkpoint with random weights (std 0.02) in the HF layout, for any config.
#include <chrono>
#include <cstdio>

#include "args.h"
#include "commands.h"
#include "dseek/core/error.h"
#include "dseek/core/mapped_file.h"
#include "dseek/model/init_checkpoint.h"

namespace dseek::cli {

int cmd_init(int argc, char** argv) {
  Args a(argc, argv, {"config", "out", "seed", "dtype", "std", "shard-gb"}, {"no-mtp"});
  const std::string config = a.require("config");
  const std::string out = a.require("out");
  InitOptions o;
  o.seed = uint64_t(a.get_int("seed", 0));
  const std::string dt = a.get_or("dtype", "f32");
  if (dt == "f32")
    o.dtype = DType::kF32;
  else if (dt == "bf16")
    o.dtype = DType::kBF16;
  else if (dt == "fp8")
    o.dtype = DType::kF8E4M3;
  else
    throw Error("--dtype: expected f32, bf16 or fp8, got '" + dt + "'");
  o.std = float(a.get_double("std", 0.02));
  o.with_mtp = !a.has("no-mtp");
  o.shard_bytes = int64_t(a.get_double("shard-gb", 2.0) * double(1 << 30));
  if (o.shard_bytes <= 0) throw Error("--shard-gb: must be positive");
  const auto t0 = std::chrono::steady_clock::now();
  init_checkpoint(read_text_file(config), config, out, o, [](const std::string& line) {
    std::fprintf(stderr, "%s\n", line.c_str());
  });
  std::fprintf(stderr, "initialised %s from %s (dtype %s, seed %llu) in %.1f s\n", out.c_str(), config.c_str(),
               dt.c_str(), (unsigned long long)o.seed,
               std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  return 0;
}

}  // namespace dseek::cli
