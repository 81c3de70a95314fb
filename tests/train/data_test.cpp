// Token shards, the tokenization cache, the validation split and deterministic batches.
#include "dseek/train/data.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "dseek/core/error.h"
#include "dseek/train/train_config.h"
#include "common/test_util.h"

namespace dseek {
namespace {

using test::make_temp_dir;
using test::error_of;
using test::write_text;

namespace fs = std::filesystem;

class DataTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = make_temp_dir(); }
  void TearDown() override { fs::remove_all(dir_); }
  std::string dir_;
};

TEST_F(DataTest, ShardRoundTripBothIdWidths) {
  for (uint32_t vocab : {300u, 70000u}) {
    TokenShard s;
    s.vocab_size = vocab;
    s.tokens = {0, 5, int32_t(vocab - 1), 17, 299, 1};
    s.doc_offsets = {0, 2, 2, 6};  // includes an empty document
    const std::string path = dir_ + "/s" + std::to_string(vocab) + ".bin";
    write_shard(path, s);
    EXPECT_EQ(fs::file_size(path), 40 + 8 * 4 + (vocab <= 65536 ? 2 : 4) * 6);
    const TokenShard r = read_shard(path);
    EXPECT_EQ(r.vocab_size, vocab);
    EXPECT_EQ(r.tokens, s.tokens);
    EXPECT_EQ(r.doc_offsets, s.doc_offsets);
    EXPECT_EQ(r.doc_count(), 3);
  }
}

TEST_F(DataTest, ShardRejectsCorruptFiles) {
  TokenShard s;
  s.vocab_size = 256;
  s.tokens = {1, 2, 3};
  s.doc_offsets = {0, 3};
  const std::string path = dir_ + "/s.bin";
  write_shard(path, s);
  fs::resize_file(path, fs::file_size(path) - 1);
  EXPECT_NE(error_of([&] { read_shard(path); }).find("does not match the header"), std::string::npos);
  write_text(path, "NOTASHARD-------------------------------------------");
  EXPECT_NE(error_of([&] { read_shard(path); }).find("magic"), std::string::npos);
}

TEST_F(DataTest, ByteTokenizerIsUtf8Bytes) {
  const TextEncoder enc = TextEncoder::byte_level();
  std::vector<int32_t> ids;
  enc.encode_document("a\xc3\xa9", ids);  // "aé"
  EXPECT_EQ(ids, (std::vector<int32_t>{97, 0xc3, 0xa9}));
  EXPECT_EQ(enc.vocab_size(), 256u);
}

TEST_F(DataTest, CacheHitThenInvalidatedByAnyInputChange) {
  write_text(dir_ + "/a.txt", "hello world");
  write_text(dir_ + "/b.txt", "second doc");
  DataConfig d;
  const TextEncoder enc = TextEncoder::byte_level();
  std::vector<std::string> logs;
  auto log = [&](const std::string& l) { logs.push_back(l); };
  const auto files = expand_globs({dir_ + "/*.txt"}, "data.train");
  ASSERT_EQ(files.size(), 2u);
  const std::string p1 = build_shard(files, d, enc, dir_ + "/cache", log);
  ASSERT_EQ(logs.size(), 1u);
  EXPECT_NE(logs[0].find("tokenized 2 files, 2 documents"), std::string::npos) << logs[0];
  const std::string p2 = build_shard(files, d, enc, dir_ + "/cache", log);
  EXPECT_EQ(p1, p2);
  EXPECT_NE(logs[1].find("cached"), std::string::npos);
  const TokenShard s = read_shard(p1);
  EXPECT_EQ(s.doc_count(), 2);
  EXPECT_EQ(s.tokens.size(), 21u);

  write_text(dir_ + "/b.txt", "second doc!");  // content change
  const std::string p3 = build_shard(files, d, enc, dir_ + "/cache", log);
  EXPECT_NE(p3, p1);
  EXPECT_EQ(read_shard(p3).tokens.size(), 22u);
  DataConfig j = d;
  j.format = "jsonl";  // format change
  write_text(dir_ + "/c.jsonl", "{\"text\": \"x\"}\n");
  const std::string p4 = build_shard({dir_ + "/c.jsonl"}, j, enc, dir_ + "/cache", log);
  j.jsonl_field = "body";
  write_text(dir_ + "/c.jsonl", "{\"body\": \"x\"}\n");
  // Same bytes as before would be a hit; here both the field and the bytes changed.
  EXPECT_NE(build_shard({dir_ + "/c.jsonl"}, j, enc, dir_ + "/cache", log), p4);
}

TEST_F(DataTest, JsonlDocumentsAndErrors) {
  write_text(dir_ + "/d.jsonl", "{\"text\": \"ab\"}\n\n{\"text\": \"cde\", \"id\": 2}\n");
  DataConfig d;
  d.format = "jsonl";
  const TextEncoder enc = TextEncoder::byte_level();
  const TokenShard s = read_shard(build_shard({dir_ + "/d.jsonl"}, d, enc, dir_ + "/cache"));
  EXPECT_EQ(s.doc_offsets, (std::vector<uint64_t>{0, 2, 5}));
  write_text(dir_ + "/bad.jsonl", "{\"text\": \"ok\"}\n{\"txt\": 1}\n");
  const std::string e = error_of([&] { build_shard({dir_ + "/bad.jsonl"}, d, enc, dir_ + "/cache"); });
  EXPECT_NE(e.find("bad.jsonl:2"), std::string::npos) << e;
  EXPECT_NE(e.find("\"text\""), std::string::npos) << e;
  EXPECT_NE(error_of([&] { expand_globs({dir_ + "/*.nothing"}, "data.train"); }).find("data.train"), std::string::npos);
}

TEST_F(DataTest, ValidationSplitByDocumentIsDeterministic) {
  TokenShard s;
  s.vocab_size = 256;
  s.doc_offsets = {0};
  for (int d = 0; d < 40; ++d) {
    for (int i = 0; i < 10; ++i) s.tokens.push_back(d);  // document d is ten tokens of value d
    s.doc_offsets.push_back(s.tokens.size());
  }
  const DataSplit a = split_by_document(s, 0.1, 7), b = split_by_document(s, 0.1, 7), c = split_by_document(s, 0.1, 8);
  EXPECT_EQ(a.val_docs, 4);
  EXPECT_EQ(a.train_docs, 36);
  EXPECT_EQ(a.val, b.val);
  EXPECT_EQ(a.train, b.train);
  EXPECT_NE(a.val, c.val);  // another seed, another split
  std::set<int32_t> tv(a.train.begin(), a.train.end()), vv(a.val.begin(), a.val.end());
  EXPECT_EQ(tv.size() + vv.size(), 40u);  // whole documents, disjoint
  for (int32_t v : vv) EXPECT_EQ(tv.count(v), 0u);
  EXPECT_EQ(split_by_document(s, 0.001, 1).val_docs, 1);  // at least one
  EXPECT_EQ(split_by_document(s, 0.0, 1).val_docs, 0);
  TokenShard one;
  one.vocab_size = 256;
  one.tokens = {1, 2};
  one.doc_offsets = {0, 2};
  EXPECT_NE(error_of([&] { split_by_document(one, 0.05, 1); }).find("val_fraction"), std::string::npos);
}

TEST_F(DataTest, BatchesDependOnlyOnSeedStepMicro) {
  std::vector<int32_t> stream(1000);
  for (int i = 0; i < 1000; ++i) stream[size_t(i)] = i;
  const int64_t B = 4, T = 16;
  std::vector<int32_t> x(size_t(B * (T + 1))), y(x.size()), z(x.size());
  sample_batch(stream, B, T, 1, 5, 0, x.data());
  sample_batch(stream, B, T, 1, 5, 0, y.data());
  EXPECT_EQ(x, y);
  sample_batch(stream, B, T, 1, 6, 0, z.data());
  EXPECT_NE(x, z);
  sample_batch(stream, B, T, 1, 5, 1, z.data());
  EXPECT_NE(x, z);
  sample_batch(stream, B, T, 2, 5, 0, z.data());
  EXPECT_NE(x, z);
  for (int64_t b = 0; b < B; ++b)  // each row is a window of consecutive tokens
    for (int64_t t = 1; t <= T; ++t) EXPECT_EQ(x[size_t(b * (T + 1) + t)], x[size_t(b * (T + 1))] + t);
  // Windows reach both ends of the stream over many draws.
  int32_t lo = 1 << 30, hi = 0;
  for (uint64_t s = 0; s < 2000; ++s) {
    sample_batch(stream, 1, T, 3, s, 0, x.data());
    lo = std::min(lo, x[0]);
    hi = std::max(hi, x[0]);
  }
  EXPECT_EQ(lo, 0);
  EXPECT_EQ(hi, 1000 - T - 1);
  std::vector<int32_t> tiny(T);
  EXPECT_NE(error_of([&] { sample_batch(tiny, 1, T, 0, 0, 0, x.data(), "data.train"); }).find("data.train"), std::string::npos);
}

TEST_F(DataTest, PrepareDataWithSeparateValFiles) {
  write_text(dir_ + "/t1.txt", std::string(100, 'a'));
  write_text(dir_ + "/t2.txt", std::string(100, 'b'));
  write_text(dir_ + "/v.txt", std::string(50, 'c'));
  DataConfig d;
  d.train = {dir_ + "/t*.txt"};
  d.val = {dir_ + "/v.txt"};
  d.val_fraction = 0;
  const TrainingData td = prepare_data(d, TextEncoder::byte_level(), dir_ + "/cache", 0);
  EXPECT_EQ(td.split.train.size(), 200u);
  EXPECT_EQ(td.split.val.size(), 50u);
  EXPECT_EQ(td.split.train_docs, 2);
  EXPECT_EQ(td.split.val_docs, 1);
}

}  // namespace
}  // namespace dseek
