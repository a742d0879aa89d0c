// The REST shim's request bodies, without the network: a job body (JSON or YAML) -> Config and
// flags, a train body -> --set overrides, a register body -> its fields, a predict body ->
// input values, a generate body -> its fields, the data-root check of a path a job reads and
// the output-root check of the directory it writes. Every
// refusal is an HttpError carrying the status the shim (launcher/serve/routes.cpp) answers with
// and the message of its {"error": ...} body. Torch-free, MPI-free and httplib-free, so that
// tests/fuzz/fuzz_rest_body.cpp drives exactly the code the server runs.
#pragma once

#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "config/config.h"
#include "config/limits.h"

namespace arceus::rest {

// A request that cannot be served: answered with `status` and {"error": message}.
class HttpError : public std::runtime_error {
 public:
  HttpError(int status, const std::string& message) : std::runtime_error(message), status_(status) {}
  int status() const { return status_; }

 private:
  int status_;
};

// Small text helpers the shim's messages share.
std::string lower(std::string s);
bool blank(const std::string& s);
std::string join(const std::vector<std::string>& items, const std::string& sep = ", ");
std::string fixed(double v, int digits);  // "%.*f"
// How a JSON value reads in a message: "an array", "a string (\"x\")", "null", 3, ...
std::string json_type(const nlohmann::json& j);

// The deepest nesting of [ and { in JSON text, outside strings.
int json_nesting(const std::string& text);

// A job body as it came.
struct JobBody {
  Config config;
  std::string format;            // "json" or "yaml"
  bool sets_output_dir = false;  // output.dir given
  bool has_training = false;     // a training section given
};

// A job body: JSON (the original's) or YAML (a Content-Type containing "yaml": a `train`
// file). 400 for an empty, malformed, too deeply nested (limits.max_nesting) or invalid body,
// or a dataset name this build has no loader for.
JobBody parse_job_body(const std::string& body, const std::string& content_type,
                       const Limits& limits = operator_limits());

// The train body: {"epochs": N, "learning_rate": x}, both optional (an empty body keeps the
// job's), as overrides of training.epochs and training.learning_rate. 400 otherwise.
std::vector<Override> parse_train_body(const std::string& body, const Limits& limits = operator_limits());

// A small JSON object body (predict, generate) whose keys all appear in `example` (the expected
// form, quoted in messages). 400 otherwise.
nlohmann::json object_body(const std::string& body, const std::string& what, const std::string& example,
                           const Limits& limits = operator_limits());

// The original's register body {"ip", "port", "job_id"}: each a string, or an integer taken as
// its decimal text; other keys are ignored. 400 for anything else.
struct RegisterBody {
  std::string ip, port, job_id;
};
RegisterBody parse_register_body(const std::string& body);

// A device agent's heartbeat {"worker": "running" | "none", "exit_status": 0..255 (optional)}:
// an empty body is {"worker": "none"}. 400 for anything else, naming the field.
struct HeartbeatBody {
  bool worker_running = false;
  int exit_status = -1;  // -1: none reported
};
HeartbeatBody parse_heartbeat_body(const std::string& body);

// A generate body: object_body(body, "generate", kGenerateExample), then its fields, each
// optional. 400 for a field of the wrong type or out of range.
inline constexpr const char* kGenerateExample = R"({"prompt": "text", "tokens": 200, "temperature": 0.8, "seed": 1})";
inline constexpr int64_t kMaxGenerateTokens = 2000;  // characters per request
inline constexpr size_t kMaxPromptBytes = 4096;      // prompt length
struct GenerateBody {
  std::string prompt;        // "" = from nothing
  int64_t tokens = 200;      // 1..kMaxGenerateTokens characters after the prompt
  double temperature = 0.8;  // [0, 10]; 0 = argmax
  uint64_t seed = 1;
};
GenerateBody generate_fields(const nlohmann::json& body);

// The input values of a predict body: `pixels` as rows of columns or one flat list of the
// model's input width; pixels in [0, 1] for an MNIST-format job, else finite features within
// +-kMaxFeature. 400 otherwise.
inline constexpr double kMaxFeature = 1e6;
std::vector<double> input_values(const nlohmann::json& pixels, int64_t width, bool are_pixels);

// Data roots: a dataset directory or text file must lie under one of them (symlinks and '..'
// resolved).
std::filesystem::path resolve_path(const std::string& p);
bool is_under(const std::filesystem::path& path, const std::filesystem::path& root);
std::string roots_text(const std::vector<std::filesystem::path>& roots);
// 400 unless `path` (the value of `key`), resolved, lies under one of `roots`.
void check_allowed(const std::string& key, const std::string& path, const std::vector<std::filesystem::path>& roots);

// The output root: a job's output.dir (where it writes summary.json, checkpoint.h5, metrics.h5
// and reads checkpoint.h5 back for resume, predict and generate) must lie strictly inside it.
//
// `path` as writing there would reach it now: made absolute against the working directory,
// then walked component by component from /, each symlink replaced by its target (at most
// kMaxSymlinks), each '..' leaving the directory reached so far. A component that does not
// exist is taken as the directory create_directories would make there, so that a later '..'
// leaves it again and a later existing component is still resolved (resolve_path's
// weakly_canonical would read "new/../link/x" as "link/x" without following `link`). The result
// has no symlink, '.' or '..' in the part that exists. `error` says why there is none: an empty
// path, a NUL byte, longer than kMaxOutputPath, a symlink loop, a component that is a file or
// cannot be examined.
inline constexpr int kMaxSymlinks = 40;          // Linux's limit on the symlinks of one lookup
inline constexpr size_t kMaxOutputPath = 4096;   // PATH_MAX
struct WritePath {
  std::filesystem::path path;  // absolute; empty when `error` is set
  std::string error;
};
WritePath resolve_for_writing(const std::string& path);
// Whether `dir`, resolved (resolve_for_writing), lies strictly inside `root` (resolved the same
// way; the root itself is not inside). What check_output_dir decides.
bool output_dir_inside(const std::filesystem::path& root, const std::string& dir);
// `path` (the value of `key`: output.dir, or a file in it) resolved, when output_dir_inside;
// else 400 naming the value, its resolution and the root.
std::filesystem::path check_output_dir(const std::string& key, const std::string& path,
                                       const std::filesystem::path& root);

}  // namespace arceus::rest
