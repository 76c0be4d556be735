// libFuzzer target for the safetensors reader: arbitrary bytes go to SafetensorsFile::parse.
//
// Contract under test: any input either parses into a structurally sound file or throws
// qaft::Error — never a crash, a sanitizer report, a hang or any other exception. When parsing
// succeeds, every tensor's bytes are read (so ASan checks they lie inside the input), the views
// are checked against the infos, and the file is re-written with SafetensorsWriter and parsed
// again, which must reproduce the same tensors.
#include "core/error.h"
#include "io/safetensors.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <vector>

namespace {

// Aborts (a crash libFuzzer records) when an invariant does not hold.
void require(bool ok) {
  if (!ok) std::abort();
}

void check_file(const qaft::SafetensorsFile& f, const uint8_t* data, size_t size) {
  require(f.names().size() == f.infos().size());
  uint64_t sum = 0;
  for (const auto& name : f.names()) {
    require(f.contains(name));
    const qaft::TensorInfo& info = f.info(name);
    const auto bytes = f.bytes(name);
    require(bytes.size() == info.nbytes);
    require(bytes.data() >= data && bytes.data() + bytes.size() <= data + size);
    for (uint8_t b : bytes) sum += b;  // every byte touched: ASan checks the bounds
    require(info.numel() >= 0);
    if (info.shape.size() <= static_cast<size_t>(qaft::kMaxDims) && f.is_aligned(name)) {
      qaft::Tensor t = f.tensor(name);
      require(t.numel() == info.numel());
      require(t.nbytes() == info.nbytes);
      require(t.raw() == static_cast<const void*>(bytes.data()));
    }
  }
  for (const auto& [k, v] : f.metadata()) sum += k.size() + v.size();
  volatile uint64_t sink = sum;
  (void)sink;
}

// Writes what was parsed and parses it again: the tensors must survive unchanged.
void check_round_trip(const qaft::SafetensorsFile& f) {
  // The reader accepts an empty tensor name (the format does); the writer refuses to create one.
  if (std::any_of(f.names().begin(), f.names().end(), [](const auto& n) { return n.empty(); }))
    return;
  qaft::SafetensorsWriter w;
  for (const auto& info : f.infos()) w.add(info.name, info.dtype, info.shape, f.bytes(info.name));
  for (const auto& [k, v] : f.metadata()) w.set_metadata(k, v);
  const std::vector<uint8_t> image = w.serialize();
  auto g = qaft::SafetensorsFile::parse(image, "round trip");  // a throw here is a bug: not caught
  require(g.size() == f.size());
  require(g.metadata() == f.metadata());
  require((8 + g.header_bytes()) % 8 == 0);
  for (const auto& info : f.infos()) {
    const qaft::TensorInfo& back = g.info(info.name);
    require(back.dtype == info.dtype && back.shape == info.shape && back.nbytes == info.nbytes);
    require(std::ranges::equal(g.bytes(info.name), f.bytes(info.name)));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::optional<qaft::SafetensorsFile> file;
  try {
    file.emplace(qaft::SafetensorsFile::parse({data, size}, "fuzz input"));
  } catch (const qaft::Error&) {
    return 0;  // rejected cleanly: the expected outcome for most inputs
  }
  check_file(*file, data, size);
  check_round_trip(*file);
  return 0;
}
