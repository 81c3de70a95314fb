// Tokenizer throughput on shared/golden/tokenizer/bench_corpus.txt (single thread):
// the whole file as one encode call, then paragraph by paragraph (split on "\n\n",
// separators dropped, as the README's HF anchor does). Prints MB/s (median of 3 runs after
// one warm-up) and the token count, which must be 1,917,500 and 1,886,124.
//
//   tokenizer_bench [CORPUS] [TOKENIZER_DIR]
// Defaults: $DSEEK_SHARED_DIR (else ../shared)/golden/tokenizer/bench_corpus.txt and
// .../data/tokenizers/deepseek-v3.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "dseek/core/error.h"
#include "dseek/core/mapped_file.h"
#include "dseek/tokenizer/tokenizer.h"

namespace {

std::string shared_dir() {
  if (const char* env = std::getenv("DSEEK_SHARED_DIR"); env && *env) return env;
  return "../shared";
}

std::string cpu_name() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  }
  return "unknown";
}

struct Result {
  double mb_per_s;
  double seconds;
  size_t tokens;
  double first_seconds;  // the warm-up run: word cache cold for the first mode
};

template <class F>
Result measure(size_t bytes, F&& run) {
  // Warm-up (also fills the word cache, as HF's own cache is warm in its runs).
  const auto w0 = std::chrono::steady_clock::now();
  run();
  const double first = std::chrono::duration<double>(std::chrono::steady_clock::now() - w0).count();
  std::vector<double> secs;
  size_t tokens = 0;
  for (int r = 0; r < 3; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    tokens = run();
    secs.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(secs.begin(), secs.end());
  return {double(bytes) / 1e6 / secs[1], secs[1], tokens, first};
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const std::string corpus_path = argc > 1 ? argv[1] : shared_dir() + "/golden/tokenizer/bench_corpus.txt";
    const std::string tok_dir = argc > 2 ? argv[2] : shared_dir() + "/data/tokenizers/deepseek-v3";
    const std::string text = dseek::read_text_file(corpus_path);

    const auto t0 = std::chrono::steady_clock::now();
    const dseek::Tokenizer tok = dseek::Tokenizer::load(tok_dir);
    const double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

    std::vector<std::string_view> paragraphs;
    size_t para_bytes = 0;
    for (size_t pos = 0;;) {
      const size_t next = text.find("\n\n", pos);
      const std::string_view p = std::string_view(text).substr(pos, next == std::string::npos ? std::string::npos : next - pos);
      paragraphs.push_back(p);
      para_bytes += p.size();
      if (next == std::string::npos) break;
      pos = next + 2;
    }

    std::printf("# tokenizer_bench: %s (%zu bytes), tokenizer %s (load %.2f s)\n", corpus_path.c_str(), text.size(),
                tok_dir.c_str(), load_s);
    std::printf("# cpu: %s, nproc %u, 1 thread, add_special_tokens=false, median of 3 after 1 warm-up\n",
                cpu_name().c_str(), std::thread::hardware_concurrency());
#ifdef __OPTIMIZE__
    std::printf("# build: optimized (%s)\n", __VERSION__);
#else
    std::printf("# build: NOT optimized (%s)\n", __VERSION__);
#endif
    std::printf("| %-28s | %10s | %8s | %8s | %10s |\n", "mode", "bytes", "seconds", "MB/s", "tokens");
    std::printf("|%s|%s|%s|%s|%s|\n", std::string(30, '-').c_str(), std::string(12, '-').c_str(),
                std::string(10, '-').c_str(), std::string(10, '-').c_str(), std::string(12, '-').c_str());

    std::vector<int32_t> ids;
    Result whole = measure(text.size(), [&] {
      ids.clear();
      tok.encode_into(text, false, ids);
      return ids.size();
    });
    std::printf("| %-28s | %10zu | %8.3f | %8.2f | %10zu |\n", "whole file, one string", text.size(), whole.seconds,
                whole.mb_per_s, whole.tokens);
    std::printf("| %-28s | %10zu | %8.3f | %8.2f | %10zu |\n", "  first run (cold cache)", text.size(),
                whole.first_seconds, double(text.size()) / 1e6 / whole.first_seconds, whole.tokens);

    Result para = measure(para_bytes, [&] {
      size_t n = 0;
      for (std::string_view p : paragraphs) {
        ids.clear();
        tok.encode_into(p, false, ids);
        n += ids.size();
      }
      return n;
    });
    char label[64];
    std::snprintf(label, sizeof label, "%zu paragraphs (\\n\\n)", paragraphs.size());
    std::printf("| %-28s | %10zu | %8.3f | %8.2f | %10zu |\n", label, para_bytes, para.seconds, para.mb_per_s,
                para.tokens);

    ids.clear();
    tok.encode_into(text, false, ids);
    Result dec = measure(text.size(), [&] { return tok.decode(ids, false).size(); });
    std::printf("| %-28s | %10zu | %8.3f | %8.2f | %10zu |\n", "decode (whole file ids)", text.size(), dec.seconds,
                dec.mb_per_s, ids.size());
    return 0;
  } catch (const dseek::Error& e) {
    std::fprintf(stderr, "tokenizer_bench: %s\n", e.what());
    return 1;
  }
}
