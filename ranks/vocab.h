// A transformer checkpoint's vocabulary (its code points in the `vocab_code_points`
// attribute) and the check that a text matches it.
#pragma once

#include <string>

#include "datasets/text.h"
#include "storage/storage.h"

namespace arceus {

// The code points in decimal, space-separated.
std::string vocab_attribute(const CharVocab& vocab);
// Throws StorageError naming `path` and the bad item.
CharVocab vocab_from_attribute(const std::string& text, const std::string& path);
// A transformer checkpoint must come from a text with the same characters (token ids are
// indices into the sorted vocabulary): StorageError naming a character that differs.
void check_vocab_matches(const CheckpointData& ck, const CharVocab& vocab, const std::string& path);

}  // namespace arceus
