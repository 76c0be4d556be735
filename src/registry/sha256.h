// SHA-256 (FIPS 180-4), for the content hashes of datasets in the registry's lineage. Streaming:
// update() any number of times, then hex(). Checked against the FIPS test vectors in
// tests/unit/registry_test.cpp.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace qaft {

class Sha256 {
 public:
  Sha256();
  void update(const void* data, size_t size);
  void update(std::string_view s) { update(s.data(), s.size()); }
  std::string hex();  // the digest as 64 lower-case hex digits; the object is then spent

 private:
  void block(const uint8_t* p);
  std::array<uint32_t, 8> h_;      // chaining state
  std::array<uint8_t, 64> buf_{};  // partial block
  size_t buffered_ = 0;            // bytes in buf_
  uint64_t total_ = 0;             // bytes hashed so far
};

std::string sha256_hex(std::string_view data);

}  // namespace qaft
