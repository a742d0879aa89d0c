// The REST shim's request bodies (launcher/request_body.h): inputs tests/fuzz/fuzz_rest_body
// found answered with 500 (an exception other than HttpError) are refused with 400.
#include "launcher/request_body.h"

#include <gtest/gtest.h>

#include <functional>
#include <string>

namespace arceus {
namespace {

// The status and message of the HttpError f throws.
std::pair<int, std::string> refusal(const std::function<void()>& f) {
  try { f(); } catch (const rest::HttpError& e) { return {e.status(), e.what()}; }
  ADD_FAILURE() << "no HttpError thrown";
  return {0, ""};
}

TEST(RequestBody, KeysAreComparedAsTextNotAsRegexes) {
  const std::string example = R"({"pixels": [[28 rows of 28 values in 0..1]]})";
  const auto [status, message] = refusal([&] { rest::object_body(R"({"(": 1})", "predict", example); });
  EXPECT_EQ(status, 400);
  EXPECT_EQ(message, "[serve] unknown key '(' in the predict body: expected " + example);
  EXPECT_TRUE(rest::object_body(R"({"pixels": [0.5]})", "predict", example).contains("pixels"));
  EXPECT_EQ(refusal([&] { rest::object_body(R"({"pix.*": 1})", "predict", example); }).first, 400);
}

TEST(RequestBody, NumbersBeyondDoubleAreMalformedJson) {
  for (const std::string body : {R"({"model_config": {"layer_sizes": [1E400]}})", "2222222222E2222"}) {
    SCOPED_TRACE(body);
    const auto [status, message] = refusal([&] { rest::parse_job_body(body, "application/json"); });
    EXPECT_EQ(status, 400);
    EXPECT_NE(message.find("[serve] malformed JSON body: [json.exception.out_of_range.406] number overflow"),
              std::string::npos) << message;
  }
  EXPECT_EQ(refusal([] { rest::parse_train_body(R"({"epochs": 1E400})"); }).first, 400);
  EXPECT_EQ(refusal([] { rest::object_body(R"({"tokens": -1E400})", "generate", R"({"tokens": 1})"); }).first, 400);
}

TEST(RequestBody, YamlBodyOfAStrayCommaIsRefused) {
  const auto [status, message] = refusal([] { rest::parse_job_body(",", "application/yaml"); });
  EXPECT_EQ(status, 400);
  EXPECT_NE(message.find("single YAML document"), std::string::npos) << message;
}

TEST(RequestBody, HeartbeatBody) {
  EXPECT_FALSE(rest::parse_heartbeat_body("").worker_running);
  const rest::HeartbeatBody h = rest::parse_heartbeat_body(R"({"worker": "running", "exit_status": 137})");
  EXPECT_TRUE(h.worker_running);
  EXPECT_EQ(h.exit_status, 137);
  EXPECT_EQ(rest::parse_heartbeat_body(R"({"worker": "none"})").exit_status, -1);
  for (const std::string body : {R"({"worker": "maybe"})", R"({"worker": 1})", R"({"exit_status": 256})",
                                 R"({"exit_status": -1})", R"({"exit_status": "0"})", "[1]", "not json"}) {
    SCOPED_TRACE(body);
    const auto [status, message] = refusal([&] { rest::parse_heartbeat_body(body); });
    EXPECT_EQ(status, 400);
    EXPECT_NE(message.find("heartbeat"), std::string::npos) << message;
  }
}

}  // namespace
}  // namespace arceus
