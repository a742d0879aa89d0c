// Character-level text data: UTF-8 vocabulary, file errors, the 90/10 split, windows.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "datasets/idx.h"
#include "datasets/text.h"
#include "support/files.h"

namespace fs = std::filesystem;

namespace arceus {
namespace {

class TextFile : public ::testing::Test {
 protected:
  std::string write(const std::string& name, const std::string& bytes) {
    const std::string path = tmp_.file(name);
    test::write_text(path, bytes);
    return path;
  }

  // The DataError message of load_text(path, context); fails the test when it does not throw.
  static std::string error_of(const std::string& path, int64_t context) {
    try {
      load_text(path, context);
    } catch (const DataError& e) {
      return e.what();
    }
    ADD_FAILURE() << "load_text(" << path << ", " << context << ") did not throw DataError";
    return "";
  }

  test::TempDir tmp_{"arceus_text_"};
};

#define EXPECT_HAS(haystack, needle) \
  EXPECT_NE(std::string(haystack).find(needle), std::string::npos) << "'" << (needle) << "' not in: " << (haystack)

TEST(TextVocab, RoundTripMultiByteUtf8) {
  const std::string text = "héllo 日本\nhé";
  const CharVocab v = CharVocab::from_text(text);
  // h é l o ' ' 日 本 '\n', sorted by code point.
  EXPECT_EQ(v.size(), 8);
  EXPECT_EQ(v.chars, (std::vector<char32_t>{U'\n', U' ', U'h', U'l', U'o', U'é', U'日', U'本'}));
  const std::vector<int64_t> ids = v.encode(text);
  EXPECT_EQ(ids.size(), 11u);  // code points, not bytes (15 bytes)
  EXPECT_EQ(ids[1], v.id_of(U'é'));
  EXPECT_EQ(v.decode(ids), text);
  EXPECT_EQ(v.symbol(v.id_of(U'日')), "日");
  EXPECT_EQ(v.decode(v.encode("本日 oh")), "本日 oh");
  EXPECT_EQ(CharVocab::from_text("😀a").chars, (std::vector<char32_t>{U'a', U'😀'}));  // 4-byte sequence
  EXPECT_THROW(v.decode({8}), std::out_of_range);
  try {
    v.encode("hol x");
    FAIL() << "expected an error";
  } catch (const std::invalid_argument& e) {
    EXPECT_HAS(e.what(), "U+0078 'x' at position 4 is not in the vocabulary");
  }
  try {
    v.encode("hé\xff");
    FAIL() << "expected an error";
  } catch (const std::invalid_argument& e) {
    EXPECT_HAS(e.what(), "byte offset 3");
  }
}

TEST(TextVocab, StrictUtf8) {
  struct Case {
    std::string bytes;
    size_t offset;
    const char* reason;
  };
  const std::vector<Case> bad{
      {"ab\xff", 2, "never occurs"},
      {"\x80", 0, "continuation byte"},
      {"a\xc0\x80", 1, "never occurs"},           // C0: only ever an overlong lead
      {"a\xe0\x80\x80", 1, "overlong"},           // 3-byte NUL
      {"\xed\xa0\x80", 0, "surrogate"},           // U+D800
      {"\xf4\x90\x80\x80", 0, "above U+10FFFF"},  // U+110000
      {"xy\xe6\x97", 2, "truncated"},             // 日 without its last byte
      {"caf\xe9 au lait", 3, "cut short"},        // Latin-1 é
  };
  for (const auto& c : bad) {
    std::vector<char32_t> out;
    const utf8::DecodeError e = utf8::decode(c.bytes, out);
    EXPECT_FALSE(e.ok()) << c.reason;
    EXPECT_EQ(e.offset, c.offset) << c.reason;
    EXPECT_HAS(e.reason, c.reason);
  }
  std::vector<char32_t> out;
  EXPECT_TRUE(utf8::decode("\xef\xbb\xbfok \xf4\x8f\xbf\xbf", out).ok());  // BOM, U+10FFFF
  EXPECT_EQ(out.size(), 5u);
}

TEST_F(TextFile, MissingFile) {
  const std::string path = tmp_.file("nope.txt");
  const std::string e = error_of(path, 8);
  EXPECT_HAS(e, path);
  EXPECT_HAS(e, "does not exist");
  EXPECT_HAS(error_of(tmp_.str(), 8), "is a directory");
}

TEST_F(TextFile, EmptyFile) {
  const std::string path = write("empty.txt", "");
  const std::string e = error_of(path, 8);
  EXPECT_HAS(e, path);
  EXPECT_HAS(e, "is empty");
}

TEST_F(TextFile, ShorterThanTheContext) {
  const std::string path = write("short.txt", "héllo");  // 5 characters, 6 bytes
  const std::string e = error_of(path, 8);
  EXPECT_HAS(e, path);
  EXPECT_HAS(e, "has 5 characters");
  EXPECT_HAS(e, "context length + 1 = 9");
  // Exactly context characters is still one too few.
  EXPECT_HAS(error_of(write("eight.txt", "12345678"), 8), "has 8 characters");
}

TEST_F(TextFile, TooShortForTheValidationSplit) {
  // 80 characters at context 8: the last 10% is 8 characters, one fewer than a window needs.
  const std::string path = write("eighty.txt", std::string(80, 'a'));
  const std::string e = error_of(path, 8);
  EXPECT_HAS(e, path);
  EXPECT_HAS(e, "too short for a 10% validation split at context length 8");
  EXPECT_HAS(e, "leave 8 for validation");
  EXPECT_HAS(e, "at least 81 characters");
  const TextData d = load_text(write("eighty-one.txt", std::string(81, 'a')), 8);
  EXPECT_EQ(d.train.size(0), 72);
  EXPECT_EQ(d.val.size(0), 9);
}

TEST_F(TextFile, NotUtf8) {
  const std::string path = write("latin1.txt", "first line\nna\xefve\n");  // Latin-1 ï
  const std::string e = error_of(path, 2);
  EXPECT_HAS(e, path);
  EXPECT_HAS(e, "not valid UTF-8");
  EXPECT_HAS(e, "byte 0xEF at byte offset 13 (line 2)");
  EXPECT_HAS(error_of(write("ff.txt", std::string(100, 'a') + "\xff"), 2), "byte 0xFF at byte offset 100");
}

TEST_F(TextFile, SplitSizesAndContents) {
  std::string text;
  for (int i = 0; i < 100; ++i) text += "日本語 é!\n";  // 7 characters, 14 bytes
  const std::string path = write("ja.txt", text);
  const TextData d = load_text(path, 16);
  EXPECT_EQ(d.characters, 700);
  EXPECT_EQ(d.train.size(0), 630);
  EXPECT_EQ(d.val.size(0), 70);
  EXPECT_EQ(d.train.scalar_type(), at::kLong);
  EXPECT_EQ(d.vocab.size(), 7);
  const at::Tensor all = at::cat({d.train, d.val});
  const std::vector<int64_t> ids(all.data_ptr<int64_t>(), all.data_ptr<int64_t>() + all.numel());
  EXPECT_EQ(d.vocab.decode(ids), text);
  EXPECT_HAS(d.description, path);
  EXPECT_HAS(d.description, "630 train, 70 val");
  // Odd sizes: train is floor(0.9 n).
  const TextData odd = load_text(write("odd.txt", std::string(999, 'z')), 16);
  EXPECT_EQ(odd.train.size(0), 899);
  EXPECT_EQ(odd.val.size(0), 100);
}

TEST(TextWindows, TargetsAreInputsShiftedByOne) {
  const at::Tensor tokens = at::arange(100, at::kLong) * 3;
  at::Generator gen = at::detail::createCPUGenerator(1);
  const auto [x, y] = sample_windows(tokens, 64, 10, gen);
  ASSERT_EQ(x.sizes(), (at::IntArrayRef{64, 10}));
  ASSERT_EQ(y.sizes(), (at::IntArrayRef{64, 10}));
  EXPECT_TRUE(at::equal(y, x + 3));                                    // the next token
  EXPECT_TRUE(at::equal(x.narrow(1, 1, 9), y.narrow(1, 0, 9)));        // shifted by one
  EXPECT_TRUE(at::equal(x.narrow(1, 1, 9) - x.narrow(1, 0, 9), at::full({64, 9}, 3, at::kLong)));  // consecutive
  EXPECT_GE(x.min().item<int64_t>(), 0);
  EXPECT_LE(y.max().item<int64_t>(), 99 * 3);
  // Every start offset 0..89 is possible; 64 draws should not all be the same.
  EXPECT_GT(std::get<0>(at::_unique(x.select(1, 0))).size(0), 10);
}

TEST(TextWindows, DeterministicPerSeed) {
  const at::Tensor tokens = at::arange(1000, at::kLong);
  at::Generator a = at::detail::createCPUGenerator(5), b = at::detail::createCPUGenerator(5),
                c = at::detail::createCPUGenerator(6);
  const auto wa = sample_windows(tokens, 8, 16, a);
  const auto wb = sample_windows(tokens, 8, 16, b);
  const auto wc = sample_windows(tokens, 8, 16, c);
  EXPECT_TRUE(at::equal(wa.first, wb.first));
  EXPECT_TRUE(at::equal(wa.second, wb.second));
  EXPECT_FALSE(at::equal(wa.first, wc.first));
  // The generator advances: the next batch differs.
  EXPECT_FALSE(at::equal(sample_windows(tokens, 8, 16, a).first, wa.first));
}

TEST(TextWindows, SmallestTokenTensor) {
  const at::Tensor tokens = at::arange(11, at::kLong);  // context + 1
  at::Generator gen = at::detail::createCPUGenerator(2);
  const auto [x, y] = sample_windows(tokens, 4, 10, gen);
  EXPECT_TRUE(at::equal(x, at::arange(10, at::kLong).expand({4, 10})));
  EXPECT_TRUE(at::equal(y, at::arange(1, 11, at::kLong).expand({4, 10})));
  EXPECT_THROW(sample_windows(at::arange(10, at::kLong), 4, 10, gen), std::invalid_argument);
  EXPECT_THROW(sample_windows(tokens.to(at::kFloat), 4, 10, gen), std::invalid_argument);
}

TEST(TextWindows, FixedWindows) {
  const at::Tensor tokens = at::arange(35, at::kLong);
  const auto [x, y] = fixed_windows(tokens, 10);
  ASSERT_EQ(x.sizes(), (at::IntArrayRef{3, 10}));  // (35 - 1) / 10
  EXPECT_TRUE(at::equal(x.select(1, 0), at::tensor(std::vector<int64_t>{0, 10, 20}, at::kLong)));
  EXPECT_TRUE(at::equal(y, x + 1));
  EXPECT_EQ(fixed_windows(tokens, 10, 2).first.size(0), 2);
  EXPECT_EQ(fixed_windows(at::arange(31, at::kLong), 10).first.size(0), 3);  // the last target is token 30
  EXPECT_EQ(fixed_windows(at::arange(30, at::kLong), 10).first.size(0), 2);
}

TEST(TextGpl3, LoadsTheDebianLicenseText) {
  const std::string path = "/usr/share/common-licenses/GPL-3";
  if (!fs::exists(path)) GTEST_SKIP() << path << " is not on this machine";
  const TextData d = load_text(path, 128);
  EXPECT_GT(d.vocab.size(), 40);
  EXPECT_LT(d.vocab.size(), 100);
  EXPECT_GT(d.characters, 30000);
  EXPECT_LT(d.characters, 40000);
  EXPECT_EQ(d.train.size(0), d.characters * 9 / 10);
  EXPECT_EQ(d.train.size(0) + d.val.size(0), d.characters);
  EXPECT_LT(d.train.max().item<int64_t>(), d.vocab.size());
  EXPECT_EQ(d.vocab.symbol(d.train[0].item<int64_t>()), " ");  // the file starts with spaces before the title
  std::printf("[ GPL-3 ] %s\n", d.description.c_str());
}

}  // namespace
}  // namespace arceus
