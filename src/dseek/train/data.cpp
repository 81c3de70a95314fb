#include "dseek/train/data.h"

#include <glob.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <set>

#include "dseek/core/error.h"
#include "dseek/core/mapped_file.h"
#include "dseek/tokenizer/tokenizer.h"

namespace dseek {

namespace fs = std::filesystem;

namespace {

constexpr char kMagic[8] = {'D', 'S', 'E', 'E', 'K', 'T', 'O', 'K'};
constexpr uint32_t kShardVersion = 1;
constexpr size_t kHeaderBytes = 40;

template <class T>
void put(std::string& out, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));  // little-endian hosts only (x86-64, aarch64)
  out.append(b, sizeof(T));
}

template <class T>
T get(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

std::string hex16(uint64_t h) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", (unsigned long long)h);
  return buf;
}

uint64_t hash_str(const std::string& s, uint64_t h) {
  const uint64_t n = s.size();
  h = fnv1a64(&n, sizeof n, h);
  return fnv1a64(s.data(), s.size(), h);
}

// The documents of one input file.
void read_documents(const std::string& path, const DataConfig& data, const std::function<void(std::string&&)>& emit) {
  std::string text = read_text_file(path);
  if (data.format == "text") {
    emit(std::move(text));
    return;
  }
  size_t line_no = 0, pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    ++line_no;
    std::string_view line(text.data() + pos, end - pos);
    pos = end + 1;
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      throw Error(path + ":" + std::to_string(line_no) + ": invalid JSON: " + e.what());
    }
    auto it = j.is_object() ? j.find(data.jsonl_field) : j.end();
    if (!j.is_object() || it == j.end() || !it->is_string())
      throw Error(path + ":" + std::to_string(line_no) + ": field \"" + data.jsonl_field + "\": missing or not a string");
    emit(it->get<std::string>());
  }
}

}  // namespace

uint64_t fnv1a64(const void* data, size_t n, uint64_t h) {
  const auto* p = static_cast<const uint8_t*>(data);
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 0x100000001b3ull;
  return h;
}

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

void write_shard(const std::string& path, const TokenShard& shard) {
  DSEEK_CHECK(!shard.doc_offsets.empty() && shard.doc_offsets.back() == shard.tokens.size(), "write_shard: bad doc_offsets");
  const uint32_t id_bytes = shard.vocab_size <= 65536 ? 2 : 4;
  std::string out;
  out.reserve(kHeaderBytes + 8 * shard.doc_offsets.size() + id_bytes * shard.tokens.size());
  out.append(kMagic, 8);
  put<uint32_t>(out, kShardVersion);
  put<uint32_t>(out, id_bytes);
  put<uint32_t>(out, shard.vocab_size);
  put<uint32_t>(out, 0);
  put<uint64_t>(out, shard.tokens.size());
  put<uint64_t>(out, uint64_t(shard.doc_count()));
  for (uint64_t o : shard.doc_offsets) put<uint64_t>(out, o);
  for (int32_t id : shard.tokens) {
    DSEEK_CHECK(id >= 0 && uint32_t(id) < shard.vocab_size, "write_shard: id out of range");
    if (id_bytes == 2)
      put<uint16_t>(out, uint16_t(id));
    else
      put<uint32_t>(out, uint32_t(id));
  }
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) throw Error(tmp + ": cannot create");
    f.write(out.data(), std::streamsize(out.size()));
    if (!f) throw Error(tmp + ": write failed");
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) throw Error(path + ": rename failed: " + ec.message());
}

TokenShard read_shard(const std::string& path) {
  MappedFile f(path);
  const uint8_t* p = f.data();
  const size_t n = f.size();
  if (n < kHeaderBytes || std::memcmp(p, kMagic, 8) != 0) throw Error(path + ": not a dseek token shard (magic)");
  const uint32_t version = get<uint32_t>(p + 8), id_bytes = get<uint32_t>(p + 12);
  if (version != kShardVersion)
    throw Error(path + ": shard version " + std::to_string(version) + ", expected " + std::to_string(kShardVersion) +
                " (delete the cache file to re-tokenize)");
  if (id_bytes != 2 && id_bytes != 4) throw Error(path + ": id_bytes " + std::to_string(id_bytes) + " (expected 2 or 4)");
  TokenShard s;
  s.vocab_size = get<uint32_t>(p + 16);
  const uint64_t tokens = get<uint64_t>(p + 24), docs = get<uint64_t>(p + 32);
  if (docs > (n - kHeaderBytes) / 8 || tokens > n ||
      kHeaderBytes + 8 * (docs + 1) + id_bytes * tokens != n)
    throw Error(path + ": size " + std::to_string(n) + " does not match the header (" + std::to_string(tokens) +
                " tokens, " + std::to_string(docs) + " documents)");
  s.doc_offsets.resize(docs + 1);
  std::memcpy(s.doc_offsets.data(), p + kHeaderBytes, 8 * (docs + 1));
  for (size_t i = 0; i <= docs; ++i)
    if ((i > 0 && s.doc_offsets[i] < s.doc_offsets[i - 1]) || s.doc_offsets[i] > tokens || (i == docs && s.doc_offsets[i] != tokens) ||
        (i == 0 && s.doc_offsets[0] != 0))
      throw Error(path + ": doc_offsets[" + std::to_string(i) + "] out of order");
  const uint8_t* ids = p + kHeaderBytes + 8 * (docs + 1);
  s.tokens.resize(tokens);
  for (uint64_t i = 0; i < tokens; ++i) {
    const uint32_t id = id_bytes == 2 ? get<uint16_t>(ids + 2 * i) : get<uint32_t>(ids + 4 * i);
    if (id >= s.vocab_size)
      throw Error(path + ": token " + std::to_string(i) + " = " + std::to_string(id) + " >= vocab_size " + std::to_string(s.vocab_size));
    s.tokens[i] = int32_t(id);
  }
  return s;
}

TextEncoder::TextEncoder(TextEncoder&&) noexcept = default;
TextEncoder::~TextEncoder() = default;

TextEncoder TextEncoder::byte_level() {
  TextEncoder e;
  e.vocab_size_ = 256;
  e.fingerprint_ = hash_str("byte-level v1", 0xcbf29ce484222325ull);
  return e;
}

TextEncoder TextEncoder::from_dir(const std::string& dir) {
  TextEncoder e;
  e.tok_ = std::make_unique<Tokenizer>(Tokenizer::load(dir));
  e.dir_ = dir;
  e.vocab_size_ = uint32_t(e.tok_->vocab_size());
  uint64_t h = hash_str("tokenizer.json v1", 0xcbf29ce484222325ull);
  for (const char* name : {"tokenizer.json", "tokenizer_config.json"}) {
    const fs::path p = fs::path(dir) / name;
    h = hash_str(fs::exists(p) ? read_text_file(p.string()) : std::string("<absent>"), h);
  }
  e.fingerprint_ = h;
  return e;
}

void TextEncoder::encode_document(const std::string& text, std::vector<int32_t>& out) const {
  if (!tok_) {
    for (unsigned char c : text) out.push_back(int32_t(c));
    return;
  }
  tok_->encode_into(text, /*add_special_tokens=*/true, out);
  if (tok_->eos_id() >= 0) out.push_back(tok_->eos_id());  // document boundary, as in pre-training
}

std::vector<std::string> expand_globs(const std::vector<std::string>& patterns, const std::string& field) {
  std::vector<std::string> out;
  std::set<std::string> seen;
  for (const std::string& pat : patterns) {
    glob_t g{};
    const int rc = ::glob(pat.c_str(), GLOB_ERR, nullptr, &g);
    std::vector<std::string> found;
    if (rc == 0)
      for (size_t i = 0; i < g.gl_pathc; ++i)
        if (fs::is_regular_file(g.gl_pathv[i])) found.push_back(g.gl_pathv[i]);
    ::globfree(&g);
    if (found.empty()) throw Error(field + ": \"" + pat + "\" matches no file");
    std::sort(found.begin(), found.end());
    for (auto& f : found)
      if (seen.insert(f).second) out.push_back(std::move(f));
  }
  return out;
}

std::string build_shard(const std::vector<std::string>& files, const DataConfig& data, const TextEncoder& enc,
                        const std::string& cache_dir, const std::function<void(const std::string&)>& log) {
  uint64_t h = hash_str("dseek shard v" + std::to_string(kShardVersion), 0xcbf29ce484222325ull);
  h = hash_str(data.format, h);
  h = hash_str(data.format == "jsonl" ? data.jsonl_field : std::string(), h);
  const uint64_t fp = enc.fingerprint();
  h = fnv1a64(&fp, sizeof fp, h);
  for (const std::string& f : files) {
    h = hash_str(fs::absolute(f).lexically_normal().string(), h);
    h = hash_str(read_text_file(f), h);
  }
  fs::create_directories(cache_dir);
  const std::string path = (fs::path(cache_dir) / ("tokens-" + hex16(h) + ".bin")).string();
  if (fs::exists(path)) {
    if (log) log("data: cached shard " + path);
    return path;
  }
  const auto t0 = std::chrono::steady_clock::now();
  TokenShard s;
  s.vocab_size = enc.vocab_size();
  s.doc_offsets.push_back(0);
  size_t bytes = 0;
  for (const std::string& f : files)
    read_documents(f, data, [&](std::string&& doc) {
      bytes += doc.size();
      enc.encode_document(doc, s.tokens);
      s.doc_offsets.push_back(s.tokens.size());
    });
  write_shard(path, s);
  if (log) {
    char buf[256];
    std::snprintf(buf, sizeof buf, "data: tokenized %zu files, %lld documents, %zu bytes -> %zu tokens in %.2f s: %s", files.size(),
                  (long long)s.doc_count(), bytes, s.tokens.size(),
                  std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), path.c_str());
    log(buf);
  }
  return path;
}

DataSplit split_by_document(const TokenShard& shard, double val_fraction, uint64_t seed) {
  const int64_t n = shard.doc_count();
  int64_t n_val = val_fraction > 0 ? std::max<int64_t>(1, int64_t(std::llround(val_fraction * double(n)))) : 0;
  if (n_val >= n && n_val > 0)
    throw Error("data.val_fraction: " + std::to_string(n) + " document(s) cannot give both a training and a validation split " +
                "(text: one document per file, jsonl: one per line); give more files or \"val\" files");
  // Fisher-Yates with a splitmix64 stream: the same documents for the same seed on every machine.
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  uint64_t state = splitmix64(seed ^ 0x7661'6c5f'7370'6c74ull);  // "val_splt"
  for (int64_t i = n - 1; i > 0; --i) {
    state = splitmix64(state);
    std::swap(order[size_t(i)], order[size_t(state % uint64_t(i + 1))]);
  }
  std::vector<char> is_val(static_cast<size_t>(n), 0);
  for (int64_t i = 0; i < n_val; ++i) is_val[size_t(order[size_t(i)])] = 1;
  DataSplit d;
  for (int64_t i = 0; i < n; ++i) {
    auto& dst = is_val[size_t(i)] ? d.val : d.train;
    dst.insert(dst.end(), shard.tokens.begin() + int64_t(shard.doc_offsets[size_t(i)]),
               shard.tokens.begin() + int64_t(shard.doc_offsets[size_t(i) + 1]));
    ++(is_val[size_t(i)] ? d.val_docs : d.train_docs);
  }
  return d;
}

TrainingData prepare_data(const DataConfig& data, const TextEncoder& enc, const std::string& cache_dir, uint64_t seed,
                          const std::function<void(const std::string&)>& log) {
  TrainingData td;
  td.vocab_size = enc.vocab_size();
  td.train_shard = build_shard(expand_globs(data.train, "data.train"), data, enc, cache_dir, log);
  const TokenShard train = read_shard(td.train_shard);
  if (data.val.empty()) {
    td.split = split_by_document(train, data.val_fraction, seed);
  } else {
    td.val_shard = build_shard(expand_globs(data.val, "data.val"), data, enc, cache_dir, log);
    TokenShard val = read_shard(td.val_shard);
    td.split.train = train.tokens;
    td.split.train_docs = train.doc_count();
    td.split.val = std::move(val.tokens);
    td.split.val_docs = val.doc_count();
  }
  return td;
}

void sample_batch(const std::vector<int32_t>& stream, int64_t B, int64_t T, uint64_t seed, uint64_t step, uint64_t micro,
                  int32_t* out, const char* what) {
  const int64_t n = int64_t(stream.size());
  if (n < T + 1)
    throw Error(std::string(what) + ": " + std::to_string(n) + " tokens, fewer than seq + 1 = " + std::to_string(T + 1));
  const uint64_t starts = uint64_t(n - T);  // windows [s, s + T] with s in [0, n - T - 1]
  const uint64_t key = splitmix64(splitmix64(splitmix64(seed) ^ step) ^ (micro * 0x9e3779b97f4a7c15ull));
  for (int64_t b = 0; b < B; ++b) {
    const uint64_t s = splitmix64(key + uint64_t(b)) % starts;
    std::memcpy(out + b * (T + 1), stream.data() + s, size_t(T + 1) * sizeof(int32_t));
  }
}

}  // namespace dseek
