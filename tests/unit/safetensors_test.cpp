// safetensors: every malformed input is a clear qaft::Error; valid files round-trip bit-exactly
// through SafetensorsWriter / SafetensorsFile; writes are atomic.
#include "io/safetensors.h"
#include "core/error.h"
#include "temp_dir.h"

#include <gtest/gtest.h>
#include <sys/resource.h>

#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>

using namespace qaft;
namespace fs = std::filesystem;

namespace {

using Bytes = std::vector<uint8_t>;

// A file image: 8-byte little-endian `declared` length (default: the header's size), the header
// text, then `buffer` bytes (default: none).
Bytes image(std::string_view header, size_t buffer = 0, std::optional<uint64_t> declared = {}) {
  uint64_t n = declared.value_or(header.size());
  Bytes out(8 + header.size() + buffer);
  for (size_t i = 0; i < 8; ++i) out[i] = static_cast<uint8_t>(n >> (8 * i));
  for (size_t i = 0; i < header.size(); ++i) out[8 + i] = static_cast<uint8_t>(header[i]);
  for (size_t i = 0; i < buffer; ++i) out[8 + header.size() + i] = static_cast<uint8_t>(i * 7 + 1);
  return out;
}

// One well-formed entry.
std::string entry(const std::string& name, const std::string& dtype, const std::string& shape,
                  uint64_t begin, uint64_t end) {
  return fmt::format(R"("{}":{{"dtype":"{}","shape":{},"data_offsets":[{},{}]}})", name, dtype,
                     shape, begin, end);
}

Bytes read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(in), {});
}

void write_raw(const std::string& path, const Bytes& b) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

struct BadCase {
  std::string label;   // what is wrong
  Bytes bytes;         // the file image
  ErrorKind kind;      // expected error kind
  std::string needle;  // expected substring of the message
};

std::vector<BadCase> bad_cases() {
  const auto F = ErrorKind::kInvalidFile;
  const std::string a4 = entry("a", "F32", "[1]", 0, 4);
  std::vector<BadCase> c = {
      {"empty file", {}, F, "only 0 bytes"},
      {"7 bytes", Bytes(7, 0), F, "only 7 bytes"},
      {"header cut", image("{\"a\":{\"dtype\":\"F32\"", 0, 60), F, "runs past the end"},
      {"header length larger than file", image("{}", 0, 1000), F, "runs past the end"},
      {"header > 100MB claimed", image("{}", 0, 100'000'001), F, "exceeds the limit"},
      {"header length zero", image("{}", 2, 0), F, "does not start with '{'"},
      {"header starts with a space", image(" {}"), F, "does not start with '{'"},
      {"JSON not an object", image("[1, 2]"), F, "does not start with '{'"},
      {"non-JSON", image("{not json}"), F, "not valid JSON"},
      {"truncated JSON", image("{\"a\":"), F, "not valid JSON"},
      {"trailing garbage", image("{} x"), F, "not valid JSON"},
      {"NUL padding", image(std::string("{}\0\0", 4)), F, "not valid JSON"},
      {"NUL then garbage", image(std::string("{}\0garbage", 10)), F, "NUL byte"},
      {"comment", image("{/* c */}"), F, "not valid JSON"},
      {"invalid UTF-8 in a key", image("{\"\xff\":1}"), F, "not valid JSON"},
      {"overlong UTF-8 in metadata", image("{\"__metadata__\":{\"k\":\"\xc0\x80\"}}"), F,
       "not valid JSON"},
      {"UTF-8 surrogate", image("{\"__metadata__\":{\"k\":\"\xed\xa0\x80\"}}"), F,
       "not valid JSON"},
      {"too deep", image("{\"a\":{\"shape\":[[[1]]]}}"), F, "nested deeper"},
      {"duplicate tensor", image("{" + a4 + "," + a4 + "}", 4), F, "duplicate key \"a\""},
      {"duplicate field",
       image(R"({"a":{"dtype":"F32","dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 4), F,
       "duplicate key \"dtype\""},
      {"entry not an object", image("{\"a\":5}"), F, "tensor \"a\": entry must be an object"},
      {"missing dtype", image(R"({"a":{"shape":[1],"data_offsets":[0,4]}})", 4), F,
       "missing field \"dtype\""},
      {"missing shape", image(R"({"a":{"dtype":"F32","data_offsets":[0,4]}})", 4), F,
       "missing field \"shape\""},
      {"missing data_offsets", image(R"({"a":{"dtype":"F32","shape":[1]}})", 4), F,
       "missing field \"data_offsets\""},
      {"extra field", image(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":1}})", 4),
       F, "unexpected field \"x\""},
      {"dtype not a string", image(R"({"a":{"dtype":5,"shape":[1],"data_offsets":[0,4]}})", 4), F,
       "\"dtype\" must be a string"},
      {"shape not an array", image(R"({"a":{"dtype":"F32","shape":"1","data_offsets":[0,4]}})", 4),
       F, "\"shape\" must be an array"},
      {"float dimension", image(R"({"a":{"dtype":"F32","shape":[1.0],"data_offsets":[0,4]}})", 4),
       F, "holds 1.0, not a non-negative integer"},
      {"negative dimension", image(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4),
       F, "holds -1"},
      {"dimension beyond u64",
       image("{" + entry("a", "F32", "[18446744073709551616]", 0, 4) + "}", 4), F,
       "not a non-negative integer"},
      {"shape overflows", image("{" + entry("a", "U8", "[4294967296,4294967296]", 0, 4) + "}", 4),
       F, "overflows"},
      {"offsets not an array", image(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":4}})", 4), F,
       "must be an array [begin, end]"},
      {"three offsets", image(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}})", 4), F,
       "an array of 3"},
      {"negative offset", image(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}})", 4), F,
       "two non-negative integers"},
      {"float offset", image(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4.0]}})", 4), F,
       "two non-negative integers"},
      {"begin > end", image("{" + entry("a", "F32", "[1]", 4, 0) + "}", 4), F, "begin 4 > end 0"},
      {"size != numel * elsize", image("{" + entry("a", "F32", "[2]", 0, 4) + "}", 4), F,
       "size != numel * element size"},
      {"sub-byte not whole bytes", image("{" + entry("a", "F4", "[3]", 0, 1) + "}", 1), F,
       "not a whole number of bytes"},
      {"overlap",
       image("{" + entry("a", "F32", "[1]", 0, 4) + "," + entry("b", "F32", "[1]", 2, 6) + "}", 6),
       F, "overlaps tensor \"a\""},
      {"zero-size inside another",
       image("{" + entry("a", "F32", "[2]", 0, 8) + "," + entry("z", "F32", "[0]", 4, 4) + "}", 8),
       F, "overlaps"},
      {"hole",
       image("{" + entry("a", "F32", "[1]", 0, 4) + "," + entry("b", "F32", "[1]", 8, 12) + "}",
             12),
       F, "hole of 4 bytes"},
      {"hole at start", image("{" + entry("a", "F32", "[1]", 4, 8) + "}", 8), F, "hole of 4 bytes"},
      {"buffer shorter than declared", image("{" + entry("a", "F32", "[2]", 0, 8) + "}", 4), F,
       "buffer has only 4 bytes"},
      {"buffer longer than declared", image("{" + a4 + "}", 8), F, "4 trailing bytes"},
      {"buffer without tensors", image("{}", 3), F, "3 trailing bytes"},
      {"unknown dtype", image("{" + entry("a", "F7", "[1]", 0, 4) + "}", 4), F,
       "unknown dtype \"F7\""},
      {"unsupported dtype", image("{" + entry("w", "U32", "[1]", 0, 4) + "}", 4),
       ErrorKind::kUnsupported, "tensor \"w\" has dtype U32"},
      {"unsupported fnuz", image("{" + entry("w", "F8_E4M3FNUZ", "[2]", 0, 2) + "}", 2),
       ErrorKind::kUnsupported, "F8_E4M3FNUZ"},
      {"metadata value not a string", image(R"({"__metadata__":{"k":1}})"), F,
       "value for key \"k\" must be a string"},
      {"metadata not an object", image(R"({"__metadata__":"x"})"), F,
       "\"__metadata__\" must be an object"},
      {"metadata null", image(R"({"__metadata__":null})"), F, "\"__metadata__\" must be an object"},
  };
  return c;
}

}  // namespace

TEST(Safetensors, BadInputsGiveClearErrors) {
  for (const auto& c : bad_cases()) {
    SCOPED_TRACE(c.label);
    try {
      (void)SafetensorsFile::parse(c.bytes, "case.safetensors");
      ADD_FAILURE() << c.label << ": parsed without error";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), c.kind) << e.what();
      EXPECT_NE(e.message().find(c.needle), std::string::npos) << e.message();
      EXPECT_NE(e.message().find("case.safetensors"), std::string::npos) << e.message();
      if (c.kind == ErrorKind::kInvalidFile) {
        EXPECT_FALSE(e.hint().empty());
      }
    }
  }
}

TEST(Safetensors, FuzzSeedCorpusAgrees) {
  // The seed files are written by an independent Python script (tests/fuzz/); their names say
  // whether they are valid.
  const fs::path corpus = fs::path(QAFT_TEST_DATA_DIR) / ".." / "fuzz" / "corpus" / "safetensors";
  int seen = 0;
  for (const auto& de : fs::directory_iterator(corpus)) {
    const std::string name = de.path().filename();
    SCOPED_TRACE(name);
    ++seen;
    if (name.starts_with("valid_")) {
      EXPECT_NO_THROW((void)SafetensorsFile::open(de.path().string()));
    } else {
      EXPECT_THROW((void)SafetensorsFile::open(de.path().string()), Error);
    }
  }
  EXPECT_GE(seen, 5);
}

TEST(Safetensors, BadFilesOnDiskNameThePath) {
  test::TempDir dir;
  const std::string path = dir.file("bad.safetensors");
  write_raw(path, image("{" + entry("a", "F32", "[2]", 0, 8) + "}", 4));
  try {
    (void)SafetensorsFile::open(path);
    FAIL() << "opened";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidFile);
    EXPECT_NE(e.message().find(path), std::string::npos);
    EXPECT_NE(e.message().find("tensor \"a\""), std::string::npos);
  }
  write_raw(path, Bytes(3, 0));
  EXPECT_THROW((void)SafetensorsFile::open(path), Error);
  try {
    (void)SafetensorsFile::open(dir.file("absent.safetensors"));
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kIo);
    EXPECT_NE(e.message().find("No such file"), std::string::npos) << e.message();
  }
  try {
    (void)SafetensorsFile::open(dir.path().string());
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kIo);
    EXPECT_NE(e.message().find("not a regular file"), std::string::npos) << e.message();
  }
}

TEST(Safetensors, ValidEdgeCases) {
  {  // only "{}", empty buffer
    auto f = SafetensorsFile::parse(image("{}"));
    EXPECT_EQ(f.size(), 0u);
    EXPECT_TRUE(f.metadata().empty());
  }
  {  // trailing-space padding
    auto f = SafetensorsFile::parse(image("{}      "));
    EXPECT_EQ(f.header_bytes(), 8u);
  }
  {  // metadata, a 0-rank scalar and zero-size tensors sharing an offset
    const std::string h = R"({"__metadata__":{"format":"pt","note":"é"},)" +
                          entry("s", "F64", "[]", 0, 8) + "," + entry("z1", "BF16", "[0,5]", 8, 8) +
                          "," + entry("z2", "I8", "[0]", 8, 8) + "," +
                          entry("b", "BOOL", "[2]", 8, 10) + "}";
    Bytes img = image(h, 10);
    auto f = SafetensorsFile::parse(img, "edge");
    EXPECT_EQ(f.metadata().at("format"), "pt");
    EXPECT_EQ(f.metadata().at("note"), "é");
    EXPECT_EQ(f.names(), (std::vector<std::string>{"s", "z1", "z2", "b"}));
    EXPECT_TRUE(f.info("s").shape.empty());
    EXPECT_EQ(f.info("s").numel(), 1);
    EXPECT_EQ(f.info("z1").numel(), 0);
    EXPECT_EQ(f.info("b").file_offset, 8 + h.size() + 8);
    EXPECT_EQ(f.bytes("b").size(), 2u);
    EXPECT_EQ(f.bytes("b").data(), img.data() + 8 + h.size() + 8);
    EXPECT_EQ(f.bytes("z2").size(), 0u);
    EXPECT_EQ(f.path(), "edge");
    EXPECT_FALSE(f.contains("nope"));
    try {
      (void)f.info("nope");
      FAIL();
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
      EXPECT_NE(e.message().find("no tensor named \"nope\""), std::string::npos);
    }
  }
}

TEST(Safetensors, DTypeStrings) {
  EXPECT_EQ(safetensors_dtype_string(DType::kE4M3), "F8_E4M3");
  EXPECT_EQ(safetensors_dtype_string(DType::kE8M0), "F8_E8M0");
  EXPECT_EQ(safetensors_dtype_string(DType::kBool), "BOOL");
  EXPECT_EQ(safetensors_dtype_from_string("BF16", "t", "f"), DType::kBF16);
  EXPECT_EQ(safetensors_dtype_from_string("F8_E5M2", "t", "f"), DType::kE5M2);
  for (const char* s :
       {"F4", "F6_E2M3", "F6_E3M2", "F8_E4M3FNUZ", "F8_E5M2FNUZ", "U16", "U32", "U64", "C64"}) {
    try {
      (void)safetensors_dtype_from_string(s, "w", "x.safetensors");
      ADD_FAILURE() << s;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kUnsupported) << s;
      EXPECT_NE(e.message().find(s), std::string::npos);
      EXPECT_NE(e.message().find("\"w\""), std::string::npos);
      EXPECT_NE(e.message().find("x.safetensors"), std::string::npos);
    }
  }
  try {
    (void)safetensors_dtype_from_string("f32", "w", "x");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidFile);
    EXPECT_NE(e.message().find("unknown dtype"), std::string::npos);
  }
  EXPECT_THROW((void)safetensors_dtype_string(DType::kNF4), Error);
  EXPECT_THROW((void)safetensors_dtype_string(DType::kE5M6), Error);
}

TEST(Safetensors, RoundTripEveryDType) {
  const std::vector<DType> dtypes = {
      DType::kE4M3, DType::kE5M2, DType::kE8M0, DType::kBF16, DType::kF16, DType::kF32, DType::kF64,
      DType::kI8,   DType::kI16,  DType::kI32,  DType::kI64,  DType::kU8,  DType::kBool};
  std::vector<Bytes> storage;
  SafetensorsWriter w;
  struct Expect {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
    size_t slot;
  };
  std::vector<Expect> expect;
  for (DType t : dtypes) {
    const std::string base(safetensors_dtype_string(t));
    for (const auto& shape : std::vector<std::vector<int64_t>>{{3, 5}, {}, {0}, {2, 0, 7}, {7}}) {
      const int64_t numel =
          std::accumulate(shape.begin(), shape.end(), int64_t{1}, std::multiplies<>());
      Bytes data(dtype_bytes(t, static_cast<size_t>(numel)));
      for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i * 31 + data.size());
      storage.push_back(std::move(data));
      const std::string name = fmt::format("{}.r{}.n{}", base, shape.size(), numel);
      w.add(name, t, shape, storage.back());
      expect.push_back({name, t, shape, storage.size() - 1});
    }
  }
  w.set_metadata("format", "pt");
  test::TempDir dir;
  const std::string path = dir.file("all.safetensors");
  w.write(path);
  EXPECT_EQ(read_file(path), w.serialize());  // deterministic, and write == serialize

  auto f = SafetensorsFile::open(path);
  EXPECT_EQ(f.path(), path);
  EXPECT_EQ((8 + f.header_bytes()) % 8, 0u);
  EXPECT_EQ(f.metadata().at("format"), "pt");
  ASSERT_EQ(f.size(), expect.size());
  for (const auto& e : expect) {
    SCOPED_TRACE(e.name);
    const TensorInfo& i = f.info(e.name);
    EXPECT_EQ(i.dtype, e.dtype);
    EXPECT_EQ(i.shape, e.shape);
    auto b = f.bytes(e.name);
    EXPECT_TRUE(std::equal(b.begin(), b.end(), storage[e.slot].begin(), storage[e.slot].end()));
    EXPECT_TRUE(f.is_aligned(e.name));
    EXPECT_EQ(i.file_offset % static_cast<uint64_t>(dtype_bits(e.dtype) / 8), 0u);
    Tensor t = f.tensor(e.name);
    EXPECT_EQ(t.dtype(), e.dtype);
    EXPECT_EQ(t.rank(), static_cast<int>(e.shape.size()));
    EXPECT_EQ(static_cast<const void*>(t.raw()), static_cast<const void*>(b.data()));
  }
  // Data order: descending element size, then name.
  for (size_t k = 1; k < f.size(); ++k) {
    const auto& p = f.infos()[k - 1];
    const auto& q = f.infos()[k];
    EXPECT_TRUE(dtype_bits(p.dtype) > dtype_bits(q.dtype) ||
                (dtype_bits(p.dtype) == dtype_bits(q.dtype) && p.name < q.name))
        << p.name << " before " << q.name;
  }
  // In-memory parse sees the same thing.
  Bytes image_bytes = w.serialize();
  auto g = SafetensorsFile::parse(image_bytes);
  EXPECT_EQ(g.names(), f.names());
}

TEST(Safetensors, TensorViewsReadValues) {
  std::vector<float> v = {1.5f, -2.0f, 3.25f, 0.0f, 7.0f, 8.0f};
  SafetensorsWriter w;
  w.add("m", Tensor(v.data(), DType::kF32, {2, 3}));
  Bytes img = w.serialize();
  auto f = SafetensorsFile::parse(img);
  Tensor t = f.tensor("m");
  EXPECT_EQ(t.shape(), (Shape{2, 3}));
  EXPECT_EQ(t.data<float>()[2], 3.25f);
  // Rank 7 is valid in the file but not as a qaft Tensor; bytes() still works.
  SafetensorsWriter w7;
  uint8_t one = 9;
  w7.add("deep", DType::kU8, {1, 1, 1, 1, 1, 1, 1}, &one, 1);
  Bytes img7 = w7.serialize();
  auto f7 = SafetensorsFile::parse(img7);
  EXPECT_EQ(f7.bytes("deep")[0], 9);
  try {
    (void)f7.tensor("deep");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kUnsupported);
  }
}

TEST(Safetensors, MisalignedTensorIsRefusedButBytesWork) {
  // Header of 3 bytes -> buffer starts at offset 11; a F32 there is misaligned.
  const std::string h = "{" + entry("a", "F32", "[1]", 0, 4) + "}";
  Bytes img = image(h, 4);
  // Find a base address so that 8 + h.size() is odd relative to 4-byte alignment.
  Bytes shifted(img.size() + 8);
  size_t pad = 0;
  while ((reinterpret_cast<uintptr_t>(shifted.data() + pad) + 8 + h.size()) % 4 == 0) ++pad;
  std::memcpy(shifted.data() + pad, img.data(), img.size());
  auto f = SafetensorsFile::parse(std::span<const uint8_t>(shifted.data() + pad, img.size()));
  EXPECT_FALSE(f.is_aligned("a"));
  EXPECT_EQ(f.bytes("a").size(), 4u);
  try {
    (void)f.tensor("a");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kUnsupported);
    EXPECT_NE(e.message().find("not aligned"), std::string::npos);
  }
}

TEST(SafetensorsWriter, RejectsBadAdds) {
  SafetensorsWriter w;
  float x[2] = {};
  w.add("x", DType::kF32, {2}, x, sizeof x);
  auto expect_error = [](auto&& fn, ErrorKind kind, const std::string& needle) {
    try {
      fn();
      ADD_FAILURE() << "no error for " << needle;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), kind) << e.what();
      EXPECT_NE(e.message().find(needle), std::string::npos) << e.message();
    }
  };
  expect_error([&] { w.add("x", DType::kF32, {2}, x, sizeof x); }, ErrorKind::kInvalidArgument,
               "added twice");
  expect_error([&] { w.add("", DType::kF32, {2}, x, sizeof x); }, ErrorKind::kInvalidArgument,
               "must not be empty");
  expect_error([&] { w.add("__metadata__", DType::kF32, {2}, x, sizeof x); },
               ErrorKind::kInvalidArgument, "reserved");
  expect_error([&] { w.add("y", DType::kF32, {3}, x, sizeof x); }, ErrorKind::kInvalidArgument,
               "needs 12 bytes, got 8");
  expect_error([&] { w.add("y", DType::kF32, {-2}, x, sizeof x); }, ErrorKind::kInvalidArgument,
               "negative dimension");
  expect_error([&] { w.add("\xff", DType::kF32, {2}, x, sizeof x); }, ErrorKind::kInvalidArgument,
               "UTF-8");
  expect_error([&] { w.add("n", DType::kNF4, {4}, x, 2); }, ErrorKind::kUnsupported,
               "no safetensors representation");
  EXPECT_EQ(w.size(), 1u);
  EXPECT_TRUE(w.contains("x"));
}

TEST(SafetensorsWriter, MissingDirectoryFailsWithIoAndLeavesNothing) {
  test::TempDir dir;
  const std::string path = dir.file("no/such/dir/x.safetensors");
  SafetensorsWriter w;
  uint8_t b = 1;
  w.add("b", DType::kU8, {1}, &b, 1);
  try {
    w.write(path);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kIo);
    EXPECT_NE(e.message().find("No such file or directory"), std::string::npos) << e.message();
    EXPECT_NE(e.message().find("x.safetensors.tmp."), std::string::npos) << e.message();
  }
  EXPECT_FALSE(fs::exists(path));
  EXPECT_TRUE(fs::is_empty(dir.path()));
}

TEST(SafetensorsWriter, FailedWritesLeaveTheDestinationIntact) {
  test::TempDir dir;
  const std::string path = dir.file("ckpt.safetensors");
  uint8_t old_data[3] = {1, 2, 3};
  SafetensorsWriter old_writer;
  old_writer.add("old", DType::kU8, {3}, old_data, 3);
  old_writer.write(path);
  const Bytes before = read_file(path);

  // A rejected add never reaches the disk.
  SafetensorsWriter dup;
  dup.add("t", DType::kU8, {3}, old_data, 3);
  EXPECT_THROW(dup.add("t", DType::kU8, {3}, old_data, 3), Error);
  EXPECT_EQ(read_file(path), before);

  // A write that fails half-way (file size limit -> EFBIG) leaves the old file and no temporary.
  std::vector<uint8_t> big(1 << 16, 0xAB);
  SafetensorsWriter w;
  w.add("big", DType::kU8, {static_cast<int64_t>(big.size())}, big.data(), big.size());
  rlimit saved{};
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &saved), 0);
  auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
  rlimit small = saved;
  small.rlim_cur = 4096;
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);
  bool threw = false;
  try {
    w.write(path);
  } catch (const Error& e) {
    threw = true;
    EXPECT_EQ(e.kind(), ErrorKind::kIo);
    EXPECT_NE(e.message().find("cannot write"), std::string::npos) << e.message();
  }
  setrlimit(RLIMIT_FSIZE, &saved);
  std::signal(SIGXFSZ, old_handler);
  EXPECT_TRUE(threw);
  EXPECT_EQ(read_file(path), before);

  // Renaming over a non-empty directory fails after the data was written: still no temporary.
  const std::string blocker = dir.file("blocker");
  fs::create_directories(fs::path(blocker) / "inside");
  try {
    w.write(blocker);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kIo);
    EXPECT_NE(e.message().find("cannot rename"), std::string::npos) << e.message();
  }
  EXPECT_TRUE(fs::is_directory(fs::path(blocker) / "inside"));

  std::vector<std::string> left;
  for (const auto& de : fs::directory_iterator(dir.path())) left.push_back(de.path().filename());
  std::sort(left.begin(), left.end());
  EXPECT_EQ(left, (std::vector<std::string>{"blocker", "ckpt.safetensors"}));

  // A successful write replaces the file completely.
  w.write(path);
  auto f = SafetensorsFile::open(path);
  EXPECT_EQ(f.names(), std::vector<std::string>{"big"});
}
