// Character-level text data: a vocabulary of UTF-8 code points, token-id tensors, and
// context-length windows (inputs and next-character targets) for a GPT-style model.
//
// CharVocab is header-only and torch-free on purpose: models/gpt.cpp (gpt_generate) encodes
// prompts and decodes samples with it, and arceus_models does not link arceus_datasets.
// load_text / sample_windows / fixed_windows (text.cpp, arceus_datasets) build tensors.
#pragma once

#include <ATen/Tensor.h>  // declares at::Generator (ATen/core/Generator.h defines it)

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace arceus {

namespace utf8 {

// Why the bytes at some offset are not UTF-8 (empty when they are).
struct DecodeError {
  size_t offset = 0;  // byte offset of the first byte of the bad sequence
  std::string reason;
  bool ok() const { return reason.empty(); }
};

// Strict UTF-8 (RFC 3629): no overlong forms, no surrogates (U+D800..U+DFFF), nothing above
// U+10FFFF, no stray continuation bytes, no truncated sequences. Appends the code points to
// `out`; on the first invalid sequence stops and returns where and why.
inline DecodeError decode(const std::string& s, std::vector<char32_t>& out) {
  const auto* b = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    const unsigned c = b[i];
    if (c < 0x80) {
      out.push_back(c);
      ++i;
      continue;
    }
    int len;
    char32_t cp, min;
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2, cp = c & 0x1F, min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3, cp = c & 0x0F, min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4, cp = c & 0x07, min = 0x10000;
    } else if (c >= 0x80 && c <= 0xBF) {
      return {i, "a continuation byte where a character should start"};
    } else {
      return {i, "a byte that never occurs in UTF-8"};  // C0, C1, F5..FF
    }
    if (n - i < static_cast<size_t>(len)) return {i, "a character truncated by the end of the text"};
    for (int k = 1; k < len; ++k) {
      const unsigned cc = b[i + static_cast<size_t>(k)];
      if ((cc & 0xC0) != 0x80) return {i, "a character cut short (byte " + std::to_string(k + 1) + " of " +
                                               std::to_string(len) + " is not a continuation byte)"};
      cp = (cp << 6) | (cc & 0x3F);
    }
    if (cp < min) return {i, "an overlong encoding"};
    if (cp >= 0xD800 && cp <= 0xDFFF) return {i, "an encoded UTF-16 surrogate"};
    if (cp > 0x10FFFF) return {i, "a code point above U+10FFFF"};
    out.push_back(cp);
    i += static_cast<size_t>(len);
  }
  return {};
}

inline void append(char32_t cp, std::string& out) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// "U+00E9 'é'" (control characters and space without the quoted glyph, e.g. "U+000A").
inline std::string describe(char32_t cp) {
  static const char* hex = "0123456789ABCDEF";
  std::string h;
  for (char32_t v = cp; v > 0 || h.size() < 4; v >>= 4) h.insert(h.begin(), hex[v & 0xF]);
  std::string s = "U+" + h;
  if (cp > 0x20 && cp != 0x7F) {
    s += " '";
    append(cp, s);
    s += "'";
  }
  return s;
}

}  // namespace utf8

// The distinct code points of a text, sorted ascending; token id = index (so the vocabulary
// is a function of the set of characters only, the same on every machine).
struct CharVocab {
  std::vector<char32_t> chars;

  int64_t size() const { return static_cast<int64_t>(chars.size()); }

  // Vocabulary of `text` (must be valid UTF-8; std::invalid_argument otherwise).
  static CharVocab from_text(const std::string& text) {
    std::vector<char32_t> cps;
    const utf8::DecodeError e = utf8::decode(text, cps);
    if (!e.ok()) throw std::invalid_argument(invalid_message(e));
    return from_code_points(cps);
  }
  static CharVocab from_code_points(std::vector<char32_t> cps) {
    std::sort(cps.begin(), cps.end());
    cps.erase(std::unique(cps.begin(), cps.end()), cps.end());
    return CharVocab{std::move(cps)};
  }

  // Token id of a code point, -1 when it is not in the vocabulary.
  int64_t id_of(char32_t cp) const {
    auto it = std::lower_bound(chars.begin(), chars.end(), cp);
    return it != chars.end() && *it == cp ? static_cast<int64_t>(it - chars.begin()) : -1;
  }

  // UTF-8 text -> token ids. std::invalid_argument for invalid UTF-8 (naming the byte offset)
  // or a character outside the vocabulary (naming it and its position).
  std::vector<int64_t> encode(const std::string& text) const {
    std::vector<char32_t> cps;
    const utf8::DecodeError e = utf8::decode(text, cps);
    if (!e.ok()) throw std::invalid_argument(invalid_message(e));
    std::vector<int64_t> ids;
    ids.reserve(cps.size());
    for (size_t i = 0; i < cps.size(); ++i) {
      const int64_t id = id_of(cps[i]);
      if (id < 0) {
        throw std::invalid_argument("[text] character " + utf8::describe(cps[i]) + " at position " +
                                    std::to_string(i) + " is not in the vocabulary (" +
                                    std::to_string(chars.size()) + " characters)");
      }
      ids.push_back(id);
    }
    return ids;
  }

  // Token ids -> UTF-8 text. std::out_of_range for an id outside [0, size()).
  std::string decode(const std::vector<int64_t>& ids) const {
    std::string s;
    for (int64_t id : ids) utf8::append(at(id), s);
    return s;
  }
  // One token as UTF-8.
  std::string symbol(int64_t id) const {
    std::string s;
    utf8::append(at(id), s);
    return s;
  }

 private:
  char32_t at(int64_t id) const {
    if (id < 0 || id >= size()) {
      throw std::out_of_range("[text] token id " + std::to_string(id) + " is outside the vocabulary [0, " +
                              std::to_string(size()) + ")");
    }
    return chars[static_cast<size_t>(id)];
  }
  static std::string invalid_message(const utf8::DecodeError& e) {
    return "[text] not valid UTF-8 at byte offset " + std::to_string(e.offset) + ": " + e.reason;
  }
};

struct TextData {
  CharVocab vocab;
  at::Tensor train;         // int64 [n_train] token ids: the first 90% of the file
  at::Tensor val;           // int64 [n_val] token ids: the last 10%
  int64_t characters = 0;   // n_train + n_val
  std::string description;  // e.g. "text '/x.txt': 35149 characters, vocabulary 76, 31634 train, 3515 val"
};

// Reads a UTF-8 text file and splits it into train (first floor(0.9 n) characters) and
// validation (the rest). Throws DataError (datasets/idx.h), naming the file, when it is
// missing, not a regular file, unreadable, empty, not valid UTF-8 (with the byte offset and
// the byte), has fewer than context + 1 characters, or is too short for its validation
// split to hold context + 1 characters (that needs n >= 10 * context + 1).
// std::invalid_argument when context < 1.
TextData load_text(const std::string& path, int64_t context);

// `batch` random windows of a 1-D int64 token tensor: inputs [batch, context] starting at
// offsets uniform in [0, n - context - 1] drawn from `gen` (deterministic for its seed), and
// targets [batch, context] = the same windows shifted by one token. Needs n >= context + 1.
std::pair<at::Tensor, at::Tensor> sample_windows(const at::Tensor& tokens, int64_t batch, int64_t context,
                                                 at::Generator& gen);

// Consecutive non-overlapping windows from the start: window k has inputs
// tokens[k*context, (k+1)*context) and targets shifted by one. floor((n - 1) / context)
// windows, at most `max_windows` of them when max_windows > 0. For a deterministic
// validation pass. Needs n >= context + 1.
std::pair<at::Tensor, at::Tensor> fixed_windows(const at::Tensor& tokens, int64_t context, int64_t max_windows = 0);

}  // namespace arceus
