// The REST shim's request bodies (launcher/request_body.h): inputs tests/fuzz/fuzz_rest_body
// found answered with 500 (an exception other than HttpError) are refused with 400; the output
// root's check of a job's output.dir against a directory of symlinks made here.
#include "launcher/request_body.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <string>

#include "support/files.h"

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

// ---------------------------------------------------------------------------------------------
// The output root (rest::output_dir_inside, rest::check_output_dir).

namespace fs = std::filesystem;

// A scratch directory (its real path): root/ with in/ and a file, outside/ beside it, and in
// root the symlinks out -> ../outside, abs-out -> <outside>, in-link -> in, up -> .. and
// loop -> loop.
class RequestBodyOutputRoot : public ::testing::Test {
 protected:
  void SetUp() override {
    base_ = fs::canonical(scratch_.path());
    root_ = base_ / "root";
    outside_ = base_ / "outside";
    fs::create_directories(root_ / "in");
    fs::create_directories(outside_);
    std::ofstream(root_ / "file") << "x";
    fs::create_directory_symlink("../outside", root_ / "out");
    fs::create_directory_symlink(outside_, root_ / "abs-out");
    fs::create_directory_symlink("in", root_ / "in-link");
    fs::create_directory_symlink("..", root_ / "up");
    fs::create_symlink("loop", root_ / "loop");
  }

  // The message check_output_dir refuses `dir` with (a failure when it accepts it).
  std::string refused(const std::string& dir) {
    EXPECT_FALSE(rest::output_dir_inside(root_, dir)) << dir;
    const auto [status, message] = refusal([&] { rest::check_output_dir("output.dir", dir, root_); });
    EXPECT_EQ(status, 400) << dir;
    EXPECT_NE(message.find("output.dir = '" + dir + "'"), std::string::npos) << "names the value: " << message;
    EXPECT_NE(message.find("(" + root_.string() + ")"), std::string::npos) << "names the root: " << message;
    return message;
  }
  // The path check_output_dir accepts `dir` as (a failure when it refuses it).
  fs::path accepted(const std::string& dir) {
    EXPECT_TRUE(rest::output_dir_inside(root_, dir)) << dir;
    try {
      return rest::check_output_dir("output.dir", dir, root_);
    } catch (const rest::HttpError& e) {
      ADD_FAILURE() << dir << " refused: " << e.what();
      return {};
    }
  }

  test::TempDir scratch_{"arceus-output-root-"};
  fs::path base_, root_, outside_;
};

TEST_F(RequestBodyOutputRoot, DotDotOutOfTheRootIsRefused) {
  const std::string dir = (root_ / "../outside/run").string();
  const std::string message = refused(dir);
  EXPECT_NE(message.find("(" + (outside_ / "run").string() + ") is outside the output root"), std::string::npos)
      << "names the resolved path: " << message;
  EXPECT_NE(message.find("--output-root DIR"), std::string::npos) << message;
  refused((root_ / "in/../../outside").string());
  refused((root_ / "new/../../outside/run").string());  // '..' out of a directory not made yet
}

TEST_F(RequestBodyOutputRoot, AbsolutePathOutsideIsRefused) {
  refused((outside_ / "run").string());
  refused("/etc");
  refused("/");
  refused(base_.string());                    // the root's parent
  refused((base_ / "root-sibling").string());  // shares the root's name as a prefix, not as a directory
}

TEST_F(RequestBodyOutputRoot, SymlinkOutOfTheRootIsRefused) {
  for (const char* via : {"out", "abs-out"}) {
    const std::string message = refused((root_ / via / "run").string());
    EXPECT_NE(message.find("(" + (outside_ / "run").string() + ")"), std::string::npos) << message;
  }
  refused((root_ / "out").string());
  refused((root_ / "up/outside").string());
  refused((root_ / "in-link/../out/run").string());
  // A directory not made yet, then '..', then the symlink: create_directories makes new/, so
  // "new/.." is root/ and "out" leads out. (resolve_path's weakly_canonical reads it as
  // root/out/run without following `out`: inside, wrongly.)
  const std::string hole = (root_ / "new/../out/run").string();
  EXPECT_TRUE(rest::is_under(rest::resolve_path(hole), root_)) << "weakly_canonical no longer has the hole";
  refused(hole);
  EXPECT_FALSE(fs::exists(root_ / "new")) << "the check makes nothing";
}

TEST_F(RequestBodyOutputRoot, TheRootItselfIsRefused) {
  for (const std::string& dir : {root_.string(), root_.string() + "/", (root_ / "in/..").string(),
                                 (root_ / "in-link/..").string(), (root_ / "new/..").string()}) {
    const std::string message = refused(dir);
    EXPECT_NE(message.find("is the output root itself"), std::string::npos) << message;
  }
}

TEST_F(RequestBodyOutputRoot, DirectoriesInsideAreAcceptedResolved) {
  EXPECT_EQ(accepted((root_ / "in").string()), root_ / "in");
  EXPECT_EQ(accepted((root_ / "in/a/b").string()), root_ / "in/a/b");
  EXPECT_EQ(accepted((root_ / "./in//a/").string()), root_ / "in/a");
  EXPECT_EQ(accepted((root_ / "in-link/run").string()), root_ / "in/run");
  EXPECT_EQ(accepted((root_ / "out/../root/in").string()), root_ / "in") << "out/.. is outside_'s parent: base_";
  EXPECT_EQ(accepted((root_ / "up/root/in").string()), root_ / "in");
  EXPECT_EQ(accepted((root_ / "in/../new").string()), root_ / "new");
}

TEST_F(RequestBodyOutputRoot, ANotYetExistingDirectoryInsideIsAccepted) {
  EXPECT_EQ(accepted((root_ / "job-7").string()), root_ / "job-7");
  EXPECT_EQ(accepted((root_ / "a/b/../c").string()), root_ / "a/c");
  EXPECT_FALSE(fs::exists(root_ / "job-7"));
  EXPECT_FALSE(fs::exists(root_ / "a"));
  // The root itself need not exist yet (runs/serve before the first job).
  const fs::path later = base_ / "later";
  EXPECT_TRUE(rest::output_dir_inside(later, (later / "job-1").string()));
  EXPECT_FALSE(rest::output_dir_inside(later, (later / "../outside").string()));
}

TEST_F(RequestBodyOutputRoot, RelativeDirIsTakenFromTheWorkingDirectory) {
  const fs::path cwd = fs::current_path();
  EXPECT_EQ(accepted(fs::relative(root_ / "in/run", cwd).string()), root_ / "in/run");
  refused(fs::relative(outside_ / "run", cwd).string());
  refused("runs/serve/job-1");  // the working directory is not under the root
}

TEST_F(RequestBodyOutputRoot, UnresolvablePathsAreRefused) {
  EXPECT_NE(refused((root_ / "loop/run").string()).find("symlinks on the way"), std::string::npos);
  EXPECT_NE(refused((root_ / "file/run").string()).find("is not a directory"), std::string::npos);
  EXPECT_NE(refused((root_ / "in/a/").string() + std::string(rest::kMaxOutputPath, 'a')).find("longer than"),
            std::string::npos);
  EXPECT_FALSE(rest::output_dir_inside(root_, ""));
  EXPECT_FALSE(rest::output_dir_inside(root_, (root_ / "in").string() + std::string(1, '\0') + "/../../outside"));
  EXPECT_EQ(rest::resolve_for_writing((root_ / "loop").string()).path, fs::path());
}

}  // namespace
}  // namespace arceus
