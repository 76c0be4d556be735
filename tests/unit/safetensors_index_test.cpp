// Sharded checkpoints: index parsing and validation, missing shards, the greedy shard writer and
// the multi-shard reader, all on temporary directories.
#include "io/safetensors_index.h"
#include "core/error.h"
#include "temp_dir.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

using namespace qaft;
namespace fs = std::filesystem;

namespace {

void write_text(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Runs fn, expecting a qaft::Error of `kind` whose message contains every needle.
template <typename Fn>
void expect_error(Fn&& fn, ErrorKind kind, std::initializer_list<std::string> needles) {
  try {
    fn();
    ADD_FAILURE() << "no error; expected " << *needles.begin();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), kind) << e.what();
    for (const auto& n : needles) EXPECT_NE(e.message().find(n), std::string::npos) << e.message();
  }
}

// A one-tensor shard file.
void write_shard(const std::string& path, const std::string& name, const std::vector<uint8_t>& d) {
  SafetensorsWriter w;
  w.add(name, DType::kU8, {static_cast<int64_t>(d.size())}, d.data(), d.size());
  w.write(path);
}

}  // namespace

TEST(SafetensorsIndex, ParsesTheUsualShapes) {
  auto a = parse_safetensors_index(
      R"({"metadata": {"total_size": 1234},
          "weight_map": {"x": "s1.safetensors", "y": "s2.safetensors", "z": "s1.safetensors"}})",
      "idx");
  EXPECT_EQ(a.total_size, 1234u);
  EXPECT_EQ(a.weight_map.at("y"), "s2.safetensors");
  EXPECT_EQ(a.shards(), (std::vector<std::string>{"s1.safetensors", "s2.safetensors"}));
  // DeepSeek fp8_cast_bf16 writes an empty metadata object; others omit it.
  EXPECT_FALSE(parse_safetensors_index(R"({"metadata": {}, "weight_map": {}})", "i").total_size);
  EXPECT_FALSE(parse_safetensors_index(R"({"weight_map": {"a": "b"}})", "i").total_size);
  EXPECT_EQ(parse_safetensors_index(R"({"metadata": {"total_size": 8.0, "format": {"x": 1}},
                                        "weight_map": {}})",
                                    "i")
                .total_size,
            8u);
}

TEST(SafetensorsIndex, RejectsMalformedIndexes) {
  const auto F = ErrorKind::kInvalidFile;
  struct Case {
    std::string json;    // index text
    std::string needle;  // expected message fragment
  };
  const std::vector<Case> cases = {
      {"[1]", "not an object"},
      {"{", "not valid JSON"},
      {R"({"metadata": {}})", "missing \"weight_map\""},
      {R"({"weight_map": []})", "\"weight_map\" must be an object"},
      {R"({"metadata": 3, "weight_map": {}})", "\"metadata\" must be an object"},
      {R"({"metadata": {"total_size": -1}, "weight_map": {}})", "total_size"},
      {R"({"metadata": {"total_size": "12"}, "weight_map": {}})", "total_size"},
      {R"({"metadata": {"total_size": 1.5}, "weight_map": {}})", "total_size"},
      {R"({"weight_map": {"a": 1}})", "must be a shard file name"},
      {R"({"weight_map": {"a": "../evil.safetensors"}})", "not a bare file name"},
      {R"({"weight_map": {"a": "sub/x.safetensors"}})", "not a bare file name"},
      {R"({"weight_map": {"a": "/abs.safetensors"}})", "not a bare file name"},
      {R"({"weight_map": {"a": ".."}})", "not a bare file name"},
      {R"({"weight_map": {"a": ""}})", "not a bare file name"},
      {R"({"weight_map": {"a": "s", "a": "t"}})", "duplicate key \"a\""},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.json);
    expect_error([&] { (void)parse_safetensors_index(c.json, "my.index.json"); }, F,
                 {c.needle, "my.index.json"});
  }
  EXPECT_FALSE(is_valid_shard_name(std::string("a\0b", 3)));
  EXPECT_TRUE(is_valid_shard_name("model-00001-of-00002.safetensors"));
}

TEST(SafetensorsIndex, ListsAllMissingShards) {
  test::TempDir dir;
  write_shard(dir.file("present.safetensors"), "p", {1});
  write_text(dir.file(kSafetensorsIndexName),
             R"({"metadata": {}, "weight_map": {"p": "present.safetensors",
                 "a": "gone-1.safetensors", "b": "gone-2.safetensors"}})");
  expect_error([&] { (void)read_safetensors_index(dir.file(kSafetensorsIndexName)); },
               ErrorKind::kInvalidFile,
               {"2 of 3 shards missing", "gone-1.safetensors", "gone-2.safetensors"});
  expect_error([&] { (void)ShardedCheckpoint::open(dir.path().string()); }, ErrorKind::kInvalidFile,
               {"gone-1.safetensors", "gone-2.safetensors"});
  expect_error([&] { (void)read_safetensors_index(dir.file("absent.json")); }, ErrorKind::kIo,
               {"absent.json"});
}

TEST(SafetensorsIndex, WriteReadRoundTrip) {
  test::TempDir dir;
  SafetensorsIndex idx;
  idx.total_size = 42;
  idx.weight_map = {{"b", "s2"}, {"a", "s1"}};
  write_safetensors_index(dir.file("i.json"), idx);
  const std::string text = read_text(dir.file("i.json"));
  EXPECT_LT(text.find("\"metadata\""), text.find("\"weight_map\""));
  EXPECT_LT(text.find("\"a\""), text.find("\"b\""));
  auto back = parse_safetensors_index(text, "i.json");
  EXPECT_EQ(back.total_size, 42u);
  EXPECT_EQ(back.weight_map, idx.weight_map);
  idx.weight_map["c"] = "../x";
  expect_error([&] { write_safetensors_index(dir.file("j.json"), idx); },
               ErrorKind::kInvalidArgument, {"invalid shard name"});
  EXPECT_FALSE(fs::exists(dir.file("j.json")));
}

TEST(ShardedWriter, PlansGreedilyInInsertionOrder) {
  std::vector<uint8_t> buf(200, 7);
  ShardedWriter w(100);
  w.add("d1", DType::kU8, {40}, buf.data(), 40);
  w.add("c2", DType::kU8, {40}, buf.data(), 40);
  w.add("b3", DType::kU8, {40}, buf.data(), 40);
  w.add("a4", DType::kU8, {200}, buf.data(), 200);  // larger than the budget: alone
  w.add("e5", DType::kU8, {10}, buf.data(), 10);
  w.add("f6", DType::kU8, {0}, buf.data(), 0);
  using Plan = std::vector<std::vector<std::string>>;
  EXPECT_EQ(w.plan(), (Plan{{"d1", "c2"}, {"b3"}, {"a4"}, {"e5", "f6"}}));
  EXPECT_EQ(ShardedWriter::shard_name(0, 3), "model-00001-of-00003.safetensors");
  EXPECT_EQ(ShardedWriter::shard_name(2, 3), "model-00003-of-00003.safetensors");
  EXPECT_THROW(w.add("d1", DType::kU8, {1}, buf.data(), 1), Error);
  EXPECT_THROW(w.add("g", DType::kU8, {2}, buf.data(), 3), Error);
  EXPECT_THROW(ShardedWriter(0), Error);
}

TEST(ShardedCheckpoint, WritesAndReadsShards) {
  test::TempDir dir;
  std::vector<float> w1(30), w2(10);
  std::vector<uint8_t> q(50);
  for (size_t i = 0; i < w1.size(); ++i) w1[i] = static_cast<float>(i) * 0.5f;
  for (size_t i = 0; i < w2.size(); ++i) w2[i] = -static_cast<float>(i);
  for (size_t i = 0; i < q.size(); ++i) q[i] = static_cast<uint8_t>(i);
  ShardedWriter writer(150);
  writer.add("layer.0.weight", Tensor(w1.data(), DType::kF32, {5, 6}));  // 120 bytes
  writer.add("layer.0.bias", Tensor(w2.data(), DType::kF32, {10}));      // 40: new shard
  writer.add("layer.0.q", DType::kE4M3, {5, 10}, q.data(), q.size());    // 50: same shard
  writer.set_metadata("format", "pt");
  auto files = writer.write(dir.path().string());
  EXPECT_EQ(files, (std::vector<std::string>{"model-00001-of-00002.safetensors",
                                             "model-00002-of-00002.safetensors"}));
  auto idx = read_safetensors_index(dir.file(kSafetensorsIndexName));
  EXPECT_EQ(idx.total_size, 210u);
  EXPECT_EQ(idx.weight_map.at("layer.0.q"), files[1]);

  auto ck = ShardedCheckpoint::open(dir.path().string());
  EXPECT_TRUE(ck.is_sharded());
  EXPECT_EQ(ck.names(), (std::vector<std::string>{"layer.0.bias", "layer.0.q", "layer.0.weight"}));
  EXPECT_EQ(ck.shard_of("layer.0.weight"), files[0]);
  EXPECT_EQ(ck.tensor("layer.0.weight").data<float>()[7], 3.5f);
  EXPECT_EQ(ck.tensor("layer.0.bias").data<float>()[3], -3.0f);
  EXPECT_EQ(ck.info("layer.0.q").dtype, DType::kE4M3);
  EXPECT_EQ(ck.bytes("layer.0.q")[49], 49);
  EXPECT_EQ(&ck.file_of("layer.0.q"), &ck.file_of("layer.0.bias"));  // each shard opened once
  EXPECT_EQ(ck.file_of("layer.0.q").metadata().at("format"), "pt");
  ck.open_all();

  ck.require(std::vector<std::string>{"layer.0.q", "layer.0.bias"});
  expect_error(
      [&] {
        ck.require(std::vector<std::string>{"a", "layer.0.q", "b"});
      },
      ErrorKind::kInvalidFile, {"lacks 2 of 3", "a, b"});
  expect_error([&] { (void)ck.tensor("nope"); }, ErrorKind::kInvalidArgument,
               {"no tensor named \"nope\""});
}

TEST(ShardedCheckpoint, SingleFileAndErrors) {
  test::TempDir dir;
  expect_error([&] { (void)ShardedCheckpoint::open(dir.path().string()); }, ErrorKind::kIo,
               {"neither"});
  expect_error([&] { (void)ShardedCheckpoint::open(dir.file("absent")); }, ErrorKind::kIo,
               {"does not exist"});

  write_shard(dir.file(kSafetensorsSingleName), "only", {4, 5, 6});
  auto ck = ShardedCheckpoint::open(dir.path().string());
  EXPECT_FALSE(ck.is_sharded());
  EXPECT_EQ(ck.names(), std::vector<std::string>{"only"});
  EXPECT_EQ(ck.bytes("only")[2], 6);
  ck.open_all();

  // An index that assigns a tensor to a shard that lacks it.
  write_shard(dir.file("s.safetensors"), "x", {1});
  write_text(dir.file(kSafetensorsIndexName),
             R"({"weight_map": {"x": "s.safetensors", "ghost": "s.safetensors"}})");
  auto bad = ShardedCheckpoint::open(dir.path().string());
  EXPECT_TRUE(bad.is_sharded());  // the index takes precedence over model.safetensors
  expect_error([&] { (void)bad.tensor("x"); }, ErrorKind::kInvalidFile,
               {"does not hold", "ghost", "s.safetensors"});
}
