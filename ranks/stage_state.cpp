#include "ranks/stage_state.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/utils.h>

#include <cstring>
#include <map>

#include "models/gpt.h"
#include "models/stage_model.h"
#include "ranks/wire.h"

namespace arceus {

namespace {

class ByteWriter {
 public:
  template <typename T>
  void put(const T& v) {
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    out.insert(out.end(), p, p + sizeof(T));
  }
  void put_bytes(const void* data, size_t n) {
    put<uint64_t>(n);
    const auto* p = static_cast<const uint8_t*>(data);
    out.insert(out.end(), p, p + n);
  }
  void put_string(const std::string& str) { put_bytes(str.data(), str.size()); }
  std::vector<uint8_t> out;
};

class ByteReader {
 public:
  explicit ByteReader(const std::vector<uint8_t>& in) : in_(in) {}
  template <typename T>
  T get() {
    need(sizeof(T));
    T v;
    std::memcpy(&v, in_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::vector<uint8_t> get_bytes() {
    const uint64_t n = get<uint64_t>();
    need(n);
    std::vector<uint8_t> v(in_.begin() + static_cast<std::ptrdiff_t>(pos_), in_.begin() + static_cast<std::ptrdiff_t>(pos_ + n));
    pos_ += n;
    return v;
  }
  std::string get_string() {
    auto b = get_bytes();
    return std::string(b.begin(), b.end());
  }

 private:
  void need(uint64_t n) const {
    if (pos_ + n > in_.size()) {
      throw WireError("[wire] state message truncated: need " + std::to_string(n) + " bytes at offset " +
                      std::to_string(pos_) + " of " + std::to_string(in_.size()));
    }
  }
  const std::vector<uint8_t>& in_;
  size_t pos_ = 0;
};

void put_arrays(ByteWriter& w, const std::vector<NamedArray>& arrays) {
  w.put<uint64_t>(arrays.size());
  for (const auto& a : arrays) {
    w.put_string(a.name);
    w.put<uint64_t>(a.shape.size());
    for (int64_t d : a.shape) w.put<int64_t>(d);
    w.put_bytes(a.data.data(), a.data.size() * sizeof(float));
  }
}

std::vector<NamedArray> get_arrays(ByteReader& r) {
  std::vector<NamedArray> arrays(r.get<uint64_t>());
  for (auto& a : arrays) {
    a.name = r.get_string();
    a.shape.resize(r.get<uint64_t>());
    for (auto& d : a.shape) d = r.get<int64_t>();
    const auto bytes = r.get_bytes();
    a.data.resize(bytes.size() / sizeof(float));
    std::memcpy(a.data.data(), bytes.data(), a.data.size() * sizeof(float));
  }
  return arrays;
}

}  // namespace

std::vector<uint8_t> pack_state(const StageState& st) {
  ByteWriter w;
  w.put<uint64_t>(st.global_step);
  put_arrays(w, st.parameters);
  put_arrays(w, st.optimizer);
  w.put<uint64_t>(st.rng.size());
  for (const auto& b : st.rng) {
    w.put_string(b.name);
    w.put_bytes(b.bytes.data(), b.bytes.size());
  }
  return std::move(w.out);
}

StageState unpack_state(const std::vector<uint8_t>& bytes) {
  ByteReader r(bytes);
  StageState st;
  st.global_step = r.get<uint64_t>();
  st.parameters = get_arrays(r);
  st.optimizer = get_arrays(r);
  st.rng.resize(r.get<uint64_t>());
  for (auto& b : st.rng) {
    b.name = r.get_string();
    b.bytes = r.get_bytes();
  }
  return st;
}

uint64_t parameter_hash(const StageState& state) {
  uint64_t h = 1469598103934665603ULL;  // FNV-1a, 64 bits
  const auto mix = [&h](const void* data, size_t n) {
    const auto* p = static_cast<const uint8_t*>(data);
    for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ULL;
  };
  for (const NamedArray& a : state.parameters) {
    mix(a.name.data(), a.name.size());
    for (int64_t d : a.shape) mix(&d, sizeof d);
    mix(a.data.data(), a.data.size() * sizeof(float));
  }
  return h;
}

NamedArray to_named(const std::string& name, const at::Tensor& t) {
  NamedArray a;
  a.name = name;
  at::Tensor c = t.detach().to(at::kFloat).contiguous();
  a.shape.assign(c.sizes().begin(), c.sizes().end());
  a.data.assign(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
  return a;
}

at::Tensor from_named(const NamedArray& a) {
  return at::from_blob(const_cast<float*>(a.data.data()), a.shape, at::kFloat).clone();
}

std::unique_ptr<StageModel> whole_gpt(const GptConfig& config, uint64_t seed, const std::vector<NamedArray>& parameters) {
  at::Generator global = at::detail::getDefaultCPUGenerator();
  const at::Tensor rng_state = global.get_state();
  auto model = make_gpt_slice(config, {0, gpt_layer_count(config)}, seed);
  global.set_state(rng_state);
  std::map<std::string, at::Tensor> by_name;
  for (auto& [name, p] : model->named_parameters()) by_name[name] = p;
  at::NoGradGuard no_grad;
  for (const auto& a : parameters) by_name.at(a.name).copy_(from_named(a));
  return model;
}

}  // namespace arceus
