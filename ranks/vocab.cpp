#include "ranks/vocab.h"

#include <sstream>

namespace arceus {

std::string vocab_attribute(const CharVocab& vocab) {
  std::string s;
  for (char32_t c : vocab.chars) s += (s.empty() ? "" : " ") + std::to_string(static_cast<uint32_t>(c));
  return s;
}

void check_vocab_matches(const CheckpointData& ck, const CharVocab& vocab, const std::string& path) {
  auto it = ck.attributes.find("vocab_code_points");
  if (it == ck.attributes.end()) {
    throw StorageError("[checkpoint] '" + path + "' has no vocab_code_points attribute: not a transformer checkpoint");
  }
  const CharVocab saved = vocab_from_attribute(it->second, path);
  if (saved.chars != vocab.chars) {
    std::string diff;
    for (char32_t c : vocab.chars)
      if (saved.id_of(c) < 0) { diff = "the text has " + utf8::describe(c) + ", the checkpoint's vocabulary does not"; break; }
    if (diff.empty())
      for (char32_t c : saved.chars)
        if (vocab.id_of(c) < 0) { diff = "the checkpoint's vocabulary has " + utf8::describe(c) + ", the text does not"; break; }
    throw StorageError("[checkpoint] '" + path + "' was trained on a different vocabulary (" +
                       std::to_string(saved.size()) + " characters vs the text's " + std::to_string(vocab.size()) +
                       "; " + diff + ")");
  }
}

CharVocab vocab_from_attribute(const std::string& text, const std::string& path) {
  std::vector<char32_t> cps;
  std::istringstream in(text);
  for (std::string item; in >> item;) {
    try {
      cps.push_back(static_cast<char32_t>(std::stoul(item)));
    } catch (const std::exception&) {
      throw StorageError("[checkpoint] '" + path + "': attribute vocab_code_points holds '" + item +
                         "', expected decimal code points");
    }
  }
  return CharVocab::from_code_points(std::move(cps));
}

}  // namespace arceus
