// Character-level text: strict UTF-8 loading, vocabulary, 90/10 split, context windows.
#include "datasets/text.h"

#include <ATen/ATen.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>

#include "datasets/idx.h"

namespace arceus {

namespace {

std::string quoted(const std::string& s) { return "'" + s + "'"; }

std::string hex_byte(unsigned char b) {
  static const char* hex = "0123456789ABCDEF";
  return std::string("0x") + hex[b >> 4] + hex[b & 0xF];
}

std::string read_whole_file(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  if (!fs::exists(st)) {
    throw DataError("[data] text file " + quoted(path) + " does not exist");
  }
  if (fs::is_directory(st)) throw DataError("[data] text file " + quoted(path) + " is a directory, not a file");
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw DataError("[data] text file " + quoted(path) + " cannot be opened: " + std::strerror(errno));
  }
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw DataError("[data] text file " + quoted(path) + " could not be read completely");
  return bytes;
}

void check_tokens(const at::Tensor& tokens, int64_t context, const char* what) {
  if (!tokens.defined() || tokens.dim() != 1 || tokens.scalar_type() != at::kLong) {
    throw std::invalid_argument(std::string("[text] ") + what + ": tokens must be a 1-D int64 tensor");
  }
  if (context < 1) {
    throw std::invalid_argument(std::string("[text] ") + what + ": context must be >= 1 (got " +
                                std::to_string(context) + ")");
  }
  if (tokens.size(0) < context + 1) {
    throw std::invalid_argument(std::string("[text] ") + what + ": " + std::to_string(tokens.size(0)) +
                                " tokens are fewer than context + 1 = " + std::to_string(context + 1));
  }
}

// inputs = tokens[starts[b] + t], targets = tokens[starts[b] + t + 1], t in [0, context).
std::pair<at::Tensor, at::Tensor> gather_windows(const at::Tensor& tokens, const at::Tensor& starts, int64_t context) {
  const at::Tensor idx = starts.unsqueeze(1) + at::arange(context, at::kLong).unsqueeze(0);  // [B, T]
  const at::Tensor flat = idx.reshape({-1});
  at::Tensor x = tokens.index_select(0, flat).view(idx.sizes());
  at::Tensor y = tokens.index_select(0, flat + 1).view(idx.sizes());
  return {x, y};
}

}  // namespace

TextData load_text(const std::string& path, int64_t context) {
  if (context < 1) {
    throw std::invalid_argument("[data] context length must be >= 1 (got " + std::to_string(context) + ")");
  }
  const std::string bytes = read_whole_file(path);
  if (bytes.empty()) {
    throw DataError("[data] text file " + quoted(path) +
                    " is empty (0 bytes): a character-level model needs text to train on");
  }

  std::vector<char32_t> cps;
  cps.reserve(bytes.size());
  const utf8::DecodeError e = utf8::decode(bytes, cps);
  if (!e.ok()) {
    const int64_t line = 1 + std::count(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(e.offset), '\n');
    throw DataError("[data] text file " + quoted(path) + " is not valid UTF-8: byte " +
                    hex_byte(static_cast<unsigned char>(bytes[e.offset])) + " at byte offset " +
                    std::to_string(e.offset) + " (line " + std::to_string(line) + "): " + e.reason +
                    "; convert the file to UTF-8 (e.g. iconv -f LATIN1 -t UTF-8)");
  }

  const int64_t n = static_cast<int64_t>(cps.size());
  if (n < context + 1) {
    throw DataError("[data] text file " + quoted(path) + " has " + std::to_string(n) +
                    " characters, fewer than context length + 1 = " + std::to_string(context + 1) +
                    " (one window of " + std::to_string(context) +
                    " characters and the next one as its target); use a longer file or a shorter context");
  }
  // First floor(0.9 n) characters train, the remaining ceil(0.1 n) validate.
  const int64_t n_train = n * 9 / 10;
  const int64_t n_val = n - n_train;
  if (n_val < context + 1) {
    throw DataError("[data] text file " + quoted(path) + " is too short for a 10% validation split at context length " +
                    std::to_string(context) + ": its " + std::to_string(n) + " characters leave " +
                    std::to_string(n_val) + " for validation, which needs at least context + 1 = " +
                    std::to_string(context + 1) + " (a file of at least " + std::to_string(10 * context + 1) +
                    " characters); use a longer file or a shorter context");
  }

  TextData data;
  data.vocab = CharVocab::from_code_points(cps);
  at::Tensor ids = at::empty({n}, at::kLong);
  int64_t* p = ids.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i) p[i] = data.vocab.id_of(cps[static_cast<size_t>(i)]);
  data.train = ids.narrow(0, 0, n_train).clone();
  data.val = ids.narrow(0, n_train, n_val).clone();
  data.characters = n;
  std::ostringstream desc;
  desc << "text " << quoted(path) << ": " << n << " characters (" << bytes.size() << " bytes), vocabulary "
       << data.vocab.size() << ", " << n_train << " train, " << n_val << " val";
  data.description = desc.str();
  return data;
}

std::pair<at::Tensor, at::Tensor> sample_windows(const at::Tensor& tokens, int64_t batch, int64_t context,
                                                 at::Generator& gen) {
  check_tokens(tokens, context, "sample_windows");
  if (batch < 1) {
    throw std::invalid_argument("[text] sample_windows: batch must be >= 1 (got " + std::to_string(batch) + ")");
  }
  // Start offsets uniform in [0, n - context - 1]: the last target is tokens[n - 1].
  const at::Tensor starts = at::randint(tokens.size(0) - context, {batch}, gen, at::TensorOptions().dtype(at::kLong));
  return gather_windows(tokens, starts, context);
}

std::pair<at::Tensor, at::Tensor> fixed_windows(const at::Tensor& tokens, int64_t context, int64_t max_windows) {
  check_tokens(tokens, context, "fixed_windows");
  int64_t w = (tokens.size(0) - 1) / context;
  if (max_windows > 0) w = std::min(w, max_windows);
  const at::Tensor starts = at::arange(w, at::kLong) * context;
  return gather_windows(tokens, starts, context);
}

}  // namespace arceus
