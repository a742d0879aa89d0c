// What an exception says, for tests that compare error messages. Header-only.
#pragma once

#include <gtest/gtest.h>

#include <string>

namespace arceus::test {

// The message of the E that f() throws; `none` when f() throws nothing (an exception of another
// type goes through, and the test fails on it).
template <class E, class F>
std::string error_message(F&& f, const std::string& none = "") {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  return none;
}

// The message of the E that f() throws; a test failure (and "") when f() throws nothing.
template <class E, class F>
std::string expected_error(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected an exception, none was thrown";
  return "";
}

}  // namespace arceus::test
