#include "dseek/io/safetensors.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "common/shared_dir.h"
#include "dseek/core/error.h"
#include "common/test_util.h"

namespace dseek {
namespace {

using test::make_temp_dir;
using test::expect_error;

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
}

// A safetensors image built by hand: u64-LE header length, the header text verbatim, then data.
std::vector<uint8_t> raw_file(const std::string& header, size_t data_bytes = 0, uint64_t header_len_override = 0) {
  const uint64_t n = header_len_override ? header_len_override : header.size();
  std::vector<uint8_t> out(8);
  for (int i = 0; i < 8; ++i) out[size_t(i)] = uint8_t(n >> (8 * i));
  out.insert(out.end(), header.begin(), header.end());
  out.resize(out.size() + data_bytes, 0xab);
  return out;
}

// Runs fn, which must throw dseek::Error whose message contains every one of `parts`.
void expect_parse_error(const std::vector<uint8_t>& bytes, const std::vector<std::string>& parts) {
  std::vector<std::string> all = {"bad.safetensors: "};
  all.insert(all.end(), parts.begin(), parts.end());
  expect_error([&] { parse_safetensors_header(bytes, "bad.safetensors"); }, all);
}

TEST(Safetensors, RoundTripAllDtypes) {
  const std::string dir = make_temp_dir();
  const std::string path = dir + "/all.safetensors";
  std::vector<std::vector<uint8_t>> payloads;
  std::vector<TensorToWrite> in;
  for (int i = 0; i < int(DType::kSentinel); ++i) {
    const DType t = DType(i);
    // Odd element counts make some byte sizes non-multiples of 8, exercising alignment padding.
    const Shape shape = {3, int64_t(i + 1)};
    std::vector<uint8_t> bytes(size_t(shape_numel(shape)) * dtype_size(t));
    for (size_t k = 0; k < bytes.size(); ++k) bytes[k] = uint8_t(k * 7 + size_t(i));
    payloads.push_back(std::move(bytes));
    in.push_back({"t." + std::string(dtype_name(t)), t, shape, nullptr});
  }
  for (size_t k = 0; k < in.size(); ++k) in[k].data = payloads[k].data();
  in.push_back({"scalar", DType::kF32, {}, payloads[0].data()});
  in.push_back({"empty", DType::kBF16, {0, 5}, nullptr});
  // Sized in whole 64-byte lines, given after the odd ones: written first, each on a line.
  std::vector<uint8_t> lines(3 * 64 * 2);
  for (size_t k = 0; k < lines.size(); ++k) lines[k] = uint8_t(k * 13 + 1);
  in.push_back({"lines.bf16", DType::kBF16, {3, 64}, lines.data()});
  in.push_back({"lines.u8", DType::kU8, {2, 64}, lines.data() + 64});
  write_safetensors(path, in, {{"format", "pt"}, {"note", "caf\xc3\xa9 \"quoted\""}});

  const SafetensorsFile f = SafetensorsFile::open(path);
  EXPECT_EQ(f.path(), path);
  EXPECT_EQ(f.file_size(), std::filesystem::file_size(path));
  ASSERT_EQ(f.tensors().size(), in.size());
  EXPECT_EQ(f.metadata().at("format"), "pt");
  EXPECT_EQ(f.metadata().at("note"), "caf\xc3\xa9 \"quoted\"");
  for (size_t k = 0; k < in.size(); ++k) {
    const TensorInfo* t = f.find(in[k].name);
    ASSERT_NE(t, nullptr) << in[k].name;
    EXPECT_EQ(t->dtype, in[k].dtype);
    EXPECT_EQ(t->shape, in[k].shape);
    EXPECT_EQ(t->begin % std::max<size_t>(1, dtype_size(t->dtype)), 0u) << in[k].name;  // natural alignment
    EXPECT_EQ(t->nbytes, uint64_t(shape_numel(in[k].shape)) * dtype_size(in[k].dtype));
    if (t->nbytes % 64 == 0) EXPECT_EQ(t->begin % 64, 0u) << in[k].name << ": whole lines start on a line";
    if (t->nbytes) {
      EXPECT_EQ(std::memcmp(f.data(*t), in[k].data, t->nbytes), 0) << in[k].name;
    }
    const TensorView v = f.view(*t);
    EXPECT_EQ(v.data, f.data(*t));
    EXPECT_EQ(v.dtype, t->dtype);
    EXPECT_EQ(v.shape, t->shape);
  }
  // tensors() is in data order: the line-sized tensors first, then the others, with no gap between
  // any two (the Rust safetensors library refuses gaps).
  uint64_t end = 0;
  bool odd_seen = false;
  for (const TensorInfo& t : f.tensors()) {
    if (t.nbytes == 0) continue;
    if (end) EXPECT_EQ(t.begin, end) << t.name << ": gap or overlap";
    end = t.begin + t.nbytes;
    if (t.nbytes % 64 != 0) odd_seen = true;
    else EXPECT_FALSE(odd_seen) << t.name << ": a line-sized tensor after an odd-sized one";
  }
  EXPECT_EQ(end, f.file_size());
  EXPECT_EQ(f.find("absent"), nullptr);
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp." + std::to_string(::getpid())));

  // The header is padded with spaces (as HF pads to 8) so the data section starts on a 64-byte line.
  const auto bytes = read_bytes(path);
  const SafetensorsHeader h = parse_safetensors_header(bytes, path);
  EXPECT_EQ(h.data_begin % 64, 0u);
  const std::string text(bytes.begin() + 8, bytes.begin() + std::ptrdiff_t(h.data_begin));
  EXPECT_EQ(text.find_last_not_of(' '), text.rfind('}'));
  std::filesystem::remove_all(dir);
}

TEST(Safetensors, RoundTripValuesAndMove) {
  const std::string dir = make_temp_dir();
  const std::string path = dir + "/m.safetensors";
  std::vector<float> w(64 * 32);
  for (size_t i = 0; i < w.size(); ++i) w[i] = std::sin(float(i));
  write_safetensors(path, {{"w", DType::kF32, {64, 32}, w.data()}});
  SafetensorsFile a = SafetensorsFile::open(path);
  const TensorInfo* t = a.find("w");
  const uint8_t* p = a.data(*t);
  SafetensorsFile b = std::move(a);
  EXPECT_EQ(b.find("w"), t);  // TensorInfo addresses and data pointers survive moves
  EXPECT_EQ(b.data(*t), p);
  EXPECT_EQ(std::memcmp(p, w.data(), w.size() * 4), 0);
  // Overwriting an existing file goes through rename too.
  write_safetensors(path, {{"w", DType::kF32, {2}, w.data()}});
  EXPECT_EQ(SafetensorsFile::open(path).tensors()[0].shape, Shape({2}));
  std::filesystem::remove_all(dir);
}

TEST(Safetensors, EmptyFileHeader) {
  const std::string dir = make_temp_dir();
  write_safetensors(dir + "/e.safetensors", {});
  const auto f = SafetensorsFile::open(dir + "/e.safetensors");
  EXPECT_TRUE(f.tensors().empty());
  EXPECT_TRUE(f.metadata().empty());
  std::filesystem::remove_all(dir);
}

TEST(Safetensors, WriterRejectsBadInput) {
  const std::string dir = make_temp_dir();
  const std::string path = dir + "/w.safetensors";
  float x[4] = {};
  expect_error([&] { write_safetensors(path, {{"a", DType::kF32, {1}, x}, {"a", DType::kF32, {1}, x}}); },
               {path, "\"a\"", "duplicate"});
  expect_error([&] { write_safetensors(path, {{"a", DType::kF32, {-1, 2}, x}}); }, {path, "\"a\"", "negative"});
  expect_error([&] { write_safetensors(path, {{"a", DType::kF32, {4}, nullptr}}); }, {path, "\"a\"", "null"});
  expect_error([&] { write_safetensors(path, {{"__metadata__", DType::kF32, {1}, x}}); }, {path, "reserved"});
  expect_error([&] { write_safetensors(path, {{"bad\xff", DType::kF32, {1}, x}}); }, {path, "UTF-8"});
  expect_error([&] { write_safetensors(dir + "/no/such/dir/w.safetensors", {}); }, {"no/such/dir/w.safetensors"});
  EXPECT_FALSE(std::filesystem::exists(path));  // nothing half-written is left behind
  EXPECT_TRUE(std::filesystem::is_empty(dir));
  std::filesystem::remove_all(dir);
}

TEST(Safetensors, OpenNamesPathOnError) {
  const std::string dir = make_temp_dir();
  const std::string path = dir + "/model.safetensors";
  write_bytes(path, raw_file(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", 8));
  expect_error([&] { SafetensorsFile::open(path); }, {path + ": ", "tensor \"w\"", "hold 4 bytes", "needs 8"});
  expect_error([&] { SafetensorsFile::open(dir + "/missing.safetensors"); }, {dir + "/missing.safetensors"});
  std::filesystem::remove_all(dir);
}

TEST(Safetensors, AcceptsGapsEmptyTensorsAndUnknownEntryKeys) {
  // HF itself rejects gaps; we accept them (aligned writers) but still bound-check every tensor.
  const auto bytes = raw_file(
      R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},)"
      R"("b":{"dtype":"U8","shape":[2],"data_offsets":[6,8],"extra":1},)"
      R"("e1":{"dtype":"F32","shape":[0],"data_offsets":[1,1]},)"
      R"("e2":{"dtype":"F32","shape":[0,3],"data_offsets":[1,1]},)"
      R"("__metadata__":{"format":"pt"}}   )",
      8);
  const SafetensorsHeader h = parse_safetensors_header(bytes, "gap.safetensors");
  ASSERT_EQ(h.tensors.size(), 4u);
  EXPECT_EQ(h.tensors[0].name, "a");
  EXPECT_EQ(h.tensors[1].name, "e1");
  EXPECT_EQ(h.tensors[2].name, "e2");
  EXPECT_EQ(h.tensors[3].name, "b");
  EXPECT_EQ(h.tensors[3].begin, h.data_begin + 6);
  EXPECT_EQ(h.metadata.at("format"), "pt");
}

// One test per validation rule: the message names the file, the tensor and the problem.
TEST(SafetensorsMalformed, FileTooShort) {
  expect_parse_error({}, {"0 bytes", "shorter than"});
  expect_parse_error({1, 2, 3, 4, 5, 6, 7}, {"7 bytes", "shorter than"});
}

TEST(SafetensorsMalformed, HeaderLongerThanFile) {
  expect_parse_error(raw_file("{}", 0, 3), {"header length 3", "larger than the file"});
  expect_parse_error(raw_file("{}", 0, uint64_t(-1)), {"exceeds the 100 MB limit"});
  expect_parse_error(raw_file("{}", 0, 100'000'001), {"header length 100000001", "100 MB"});
}

TEST(SafetensorsMalformed, NotJson) {
  expect_parse_error(raw_file(R"({"a": )"), {"not valid JSON", "header byte"});
  expect_parse_error(raw_file(""), {"not valid JSON"});
  expect_parse_error(raw_file("{} x"), {"not valid JSON", "(header byte 3)"});
  expect_parse_error(raw_file(R"({"a":1e999})"), {"not valid JSON"});
  expect_parse_error(raw_file(std::string("{}\0\0", 4)), {"not valid JSON", "(header byte 2)", "NUL"});
}

TEST(SafetensorsMalformed, NotObject) {
  expect_parse_error(raw_file("[1, 2]"), {"not a JSON object"});
  expect_parse_error(raw_file("\"str\""), {"not a JSON object"});
}

TEST(SafetensorsMalformed, NotUtf8) {
  expect_parse_error(raw_file("{\"w\xff\":{}}"), {"not valid UTF-8", "(header byte 3)"});
  expect_parse_error(raw_file("{\"\xc0\xaf\":{}}"), {"not valid UTF-8"});      // overlong '/'
  expect_parse_error(raw_file("{\"\xed\xa0\x80\":{}}"), {"not valid UTF-8"});  // surrogate
  expect_parse_error(raw_file("{\"\xe2\x82\":{}}"), {"not valid UTF-8"});      // truncated sequence
}

TEST(SafetensorsMalformed, EntryNotObject) {
  expect_parse_error(raw_file(R"({"w": [1]})"), {"tensor \"w\"", "entry is not an object", "(header byte 1)"});
}

TEST(SafetensorsMalformed, MissingFields) {
  expect_parse_error(raw_file(R"({"w":{"shape":[1],"data_offsets":[0,4]}})", 4), {"tensor \"w\"", "missing \"dtype\""});
  expect_parse_error(raw_file(R"({"w":{"dtype":"F32","data_offsets":[0,4]}})", 4), {"tensor \"w\"", "missing \"shape\""});
  expect_parse_error(raw_file(R"({"w":{"dtype":"F32","shape":[1]}})", 4), {"tensor \"w\"", "missing \"data_offsets\""});
}

TEST(SafetensorsMalformed, WrongTypedFields) {
  expect_parse_error(raw_file(R"({"w":{"dtype":7,"shape":[1],"data_offsets":[0,4]}})", 4),
                     {"tensor \"w\"", "\"dtype\" is not a string"});
  expect_parse_error(raw_file(R"({"w":{"dtype":"F32","shape":"1","data_offsets":[0,4]}})", 4),
                     {"tensor \"w\"", "\"shape\" is not an array"});
  expect_parse_error(raw_file(R"({"w":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}})", 4),
                     {"tensor \"w\"", "shape[0] is not a non-negative integer"});
  expect_parse_error(raw_file(R"({"w":{"dtype":"F32","shape":[null],"data_offsets":[0,4]}})", 4),
                     {"tensor \"w\"", "shape[0]"});
  expect_parse_error(raw_file(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":{"a":0}}})", 4),
                     {"tensor \"w\"", "\"data_offsets\" is not an array of 2 integers"});
  expect_parse_error(raw_file(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}})", 8),
                     {"tensor \"w\"", "\"data_offsets\" is not an array of 2 integers"});
  expect_parse_error(raw_file(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,"4"]}})", 4),
                     {"tensor \"w\"", "\"data_offsets\" is not an array of 2 integers"});
  expect_parse_error(raw_file(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4.0]}})", 4),
                     {"tensor \"w\"", "\"data_offsets\" is not an array of 2 integers"});
  expect_parse_error(raw_file(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}})", 4),
                     {"tensor \"w\"", "negative"});
}

TEST(SafetensorsMalformed, UnknownDtype) {
  expect_parse_error(raw_file(R"({"w":{"dtype":"F8_E4M3FN","shape":[1],"data_offsets":[0,1]}})", 1),
                     {"tensor \"w\"", "unknown dtype \"F8_E4M3FN\""});
  expect_parse_error(raw_file(R"({"w":{"dtype":"f32","shape":[1],"data_offsets":[0,4]}})", 4),
                     {"tensor \"w\"", "unknown dtype \"f32\""});
}

TEST(SafetensorsMalformed, NegativeDim) {
  expect_parse_error(raw_file(R"({"w":{"dtype":"F32","shape":[2,-1],"data_offsets":[0,0]}})"),
                     {"tensor \"w\"", "shape[1] is negative"});
}

TEST(SafetensorsMalformed, ElementCountOverflow) {
  expect_parse_error(raw_file(R"({"w":{"dtype":"U8","shape":[4294967296,4294967296],"data_offsets":[0,0]}})"),
                     {"tensor \"w\"", "element count", "overflows"});
  expect_parse_error(raw_file(R"({"w":{"dtype":"U8","shape":[18446744073709551615],"data_offsets":[0,0]}})"),
                     {"tensor \"w\"", "shape[0]", "overflows int64"});
  expect_parse_error(raw_file(R"({"w":{"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,0]}})"),
                     {"tensor \"w\"", "byte size", "overflows"});
  // Beyond uint64: nlohmann turns it into a float, which is not an integer dimension.
  expect_parse_error(raw_file(R"({"w":{"dtype":"U8","shape":[99999999999999999999999],"data_offsets":[0,0]}})"),
                     {"tensor \"w\"", "shape[0]"});
}

TEST(SafetensorsMalformed, ByteCountMismatch) {
  expect_parse_error(raw_file(R"({"w":{"dtype":"BF16","shape":[3],"data_offsets":[0,4]}})", 4),
                     {"tensor \"w\"", "data_offsets [0, 4] hold 4 bytes but BF16 [3] needs 6"});
}

TEST(SafetensorsMalformed, OffsetsOutOfDataSection) {
  expect_parse_error(raw_file(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 7),
                     {"tensor \"w\"", "data_offsets [0, 8] end past the data section (7 bytes)"});
  expect_parse_error(
      raw_file(R"({"w":{"dtype":"U8","shape":[1],"data_offsets":[18446744073709551615,18446744073709551615]}})", 4),
      {"tensor \"w\"", "past the data section"});
}

TEST(SafetensorsMalformed, ReversedOffsets) {
  expect_parse_error(raw_file(R"({"x":1,"model.layers.0.mlp.gate.weight":)"
                              R"({"dtype":"F32","shape":[0],"data_offsets":[100,50]}})",
                              200),
                     {"tensor \"model.layers.0.mlp.gate.weight\": data_offsets [100, 50] are reversed",
                      "(header byte 7)"});
}

TEST(SafetensorsMalformed, OverlappingTensors) {
  expect_parse_error(raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                              R"("b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                              8),
                     {"tensor \"b\"", "overlap tensor \"a\" [", "header byte"});
  // Containment of a later tensor inside an earlier, longer one.
  expect_parse_error(raw_file(R"({"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]},)"
                              R"("b":{"dtype":"U8","shape":[1],"data_offsets":[2,3]},)"
                              R"("c":{"dtype":"U8","shape":[1],"data_offsets":[5,6]}})",
                              8),
                     {"tensor \"b\"", "overlap tensor \"a\""});
  // Identical ranges.
  expect_parse_error(raw_file(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                              R"("b":{"dtype":"I8","shape":[4],"data_offsets":[0,4]}})",
                              4),
                     {"overlap"});
}

TEST(SafetensorsMalformed, DuplicateNames) {
  expect_parse_error(raw_file(R"({"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                              R"("w":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})",
                              2),
                     {"duplicate tensor name \"w\"", "(header byte 53)"});
  expect_parse_error(raw_file(R"({"w":{"dtype":"U8","dtype":"U8","shape":[1],"data_offsets":[0,1]}})", 1),
                     {"duplicate key \"dtype\""});
  expect_parse_error(raw_file(R"({"__metadata__":{"k":"a","k":"b"}})"), {"duplicate key \"k\""});
}

TEST(SafetensorsMalformed, MetadataNotStrings) {
  expect_parse_error(raw_file(R"({"__metadata__":{"format":"pt","step":5}})"),
                     {"\"__metadata__\" value of \"step\" is not a string", "header byte"});
  expect_parse_error(raw_file(R"({"__metadata__":["pt"]})"), {"\"__metadata__\" is not an object"});
}

TEST(SafetensorsMalformed, TensorNamesWithEscapesAreQuoted) {
  expect_parse_error(raw_file("{\"a\\n\\\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,3]}}", 4),
                     {"tensor \"a\\n\\\"b\""});
}

// --- golden checkpoints from the reference implementation --------------------------------------

const char* const kGoldenCases[] = {"v2lite", "v2", "v3", "v32", "v3-fp8"};

TEST(SafetensorsGolden, OpensEveryModel) {
  for (const char* c : kGoldenCases) {
    const std::string path = test::golden_model_dir(c) + "/model.safetensors";
    SCOPED_TRACE(path);
    const SafetensorsFile f = SafetensorsFile::open(path);
    EXPECT_GT(f.tensors().size(), 50u);
    EXPECT_EQ(f.metadata().at("format"), "pt");
    const TensorInfo* emb = f.find("model.embed_tokens.weight");
    ASSERT_NE(emb, nullptr);
    EXPECT_EQ(emb->dtype, DType::kF32);
    ASSERT_EQ(emb->shape.size(), 2u);
    EXPECT_EQ(emb->shape[1], 64);  // hidden_size of every golden case
    uint64_t end = 0;
    for (const TensorInfo& t : f.tensors()) {
      EXPECT_GE(t.begin, end) << t.name;
      end = t.begin + t.nbytes;
    }
    EXPECT_EQ(end, f.file_size());  // HF layout: contiguous, nothing after the last tensor
  }
}

TEST(SafetensorsGolden, Fp8WeightsHaveBlockScales) {
  const SafetensorsFile f = SafetensorsFile::open(test::golden_model_dir("v3-fp8") + "/model.safetensors");
  int n_fp8 = 0;
  for (const TensorInfo& t : f.tensors()) {
    if (t.dtype != DType::kF8E4M3) continue;
    ++n_fp8;
    ASSERT_EQ(t.shape.size(), 2u) << t.name;
    const TensorInfo* s = f.find(t.name + "_scale_inv");
    ASSERT_NE(s, nullptr) << t.name;
    EXPECT_EQ(s->dtype, DType::kF32) << s->name;
    // One inverse scale per 128x128 block (DeepSeek-V3 inference/convert.py).
    EXPECT_EQ(s->shape, Shape({(t.shape[0] + 127) / 128, (t.shape[1] + 127) / 128})) << s->name;
    const float* scale = reinterpret_cast<const float*>(f.data(*s));
    EXPECT_TRUE(std::isfinite(scale[0]) && scale[0] > 0) << s->name;
  }
  EXPECT_GT(n_fp8, 10);
  for (const TensorInfo& t : f.tensors()) {
    if (t.name.ends_with("_scale_inv")) {
      const TensorInfo* w = f.find(t.name.substr(0, t.name.size() - std::strlen("_scale_inv")));
      ASSERT_NE(w, nullptr) << t.name;
      EXPECT_EQ(w->dtype, DType::kF8E4M3) << w->name;
    }
  }
}

TEST(SafetensorsGolden, TruncatedFilesFailCleanly) {
  const std::string src = test::golden_model_dir("v3") + "/model.safetensors";
  const std::vector<uint8_t> full = read_bytes(src);
  ASSERT_GT(full.size(), 1000u);
  const SafetensorsHeader h = parse_safetensors_header(full, src);
  const std::string dir = make_temp_dir();
  const std::string path = dir + "/model.safetensors";
  for (size_t len : {size_t(0), size_t(1), size_t(7), size_t(8), size_t(9), size_t(100), size_t(h.data_begin - 1),
                     size_t(h.data_begin), size_t(h.data_begin + 1), size_t(h.data_begin + 4096), full.size() / 2,
                     full.size() - 1}) {
    SCOPED_TRACE(len);
    // An exact-size heap copy, so a read past the end would be caught by ASan builds.
    const std::vector<uint8_t> cut(full.begin(), full.begin() + std::ptrdiff_t(len));
    expect_parse_error(cut, {});
    write_bytes(path, cut);
    expect_error([&] { SafetensorsFile::open(path); }, {path + ": "});
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace dseek
