// Fuzz target: the REST shim's request bodies, without the network (launcher/request_body.h).
//
// Input: one byte choosing the endpoint, then the body.
//   byte % 6 == 0: POST /api/jobs, Content-Type application/json
//               1: POST /api/jobs, Content-Type application/yaml
//               2: POST /api/network/train/<id> (the train body, applied to a default job)
//               3: POST /api/jobs/<id>/predict (the body, then its pixels for a model of
//                  784 pixel inputs, or 3 or 10 feature inputs: (byte / 6) % 3)
//               4: POST /api/devices/register (the original's {"ip", "port", "job_id"})
//               5: POST /api/jobs/<id>/generate (the body, then its fields)
// The contract checked: a body is accepted or refused with HttpError 400 (serve answers any
// other exception with 500); an accepted job's config re-parses from to_yaml (as train does);
// its data paths are checked against a data root without failing otherwise; its output.dir
// goes through the output-root check (as given, and joined to a sandbox root of symlinks: see
// Sandbox), and a directory accepted really is inside the root; an accepted generate body's
// fields are within their documented ranges.
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>

#include "launcher/request_body.h"
#include "tests/fuzz/fuzz.h"

using namespace arceus;
using rest::HttpError;

namespace {

void check_status(const HttpError& e) {
  if (e.status() != 400) fuzz::violated("status " + std::to_string(e.status()) + " for a bad body: " + e.what());
}

// The output root the target checks output.dir against: <tmp>/arceus-fuzz-out-XXXXXX/root
// (its real path), with outside/ beside it, and in root: in/, a file, and the symlinks
// out -> ../outside, abs-out -> <base>/outside, in-link -> in, up -> .., loop -> loop,
// deep -> in/../../outside. Every symlink leads within the base, so a wrong acceptance makes
// its directories there (or, through '..' alone, where the path names: the failure reported).
// Removed at exit.
class Sandbox {
 public:
  Sandbox() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "arceus-fuzz-out-XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) fuzz::violated("mkdtemp " + tmpl + " failed");
    base_ = std::filesystem::canonical(tmpl);
    root_ = base_ / "root";
    outside_ = base_ / "outside";
    reset();
  }
  ~Sandbox() {
    std::error_code ec;
    std::filesystem::remove_all(base_, ec);
  }
  const std::filesystem::path& root() const { return root_; }
  const std::filesystem::path& outside() const { return outside_; }
  const std::filesystem::path& base() const { return base_; }

  // The fixture as above, whatever an input made in it.
  void reset() {
    namespace fs = std::filesystem;
    std::error_code ec;
    fs::remove_all(root_, ec);
    fs::remove_all(outside_, ec);
    fs::create_directories(root_ / "in");
    fs::create_directories(outside_);
    std::ofstream(root_ / "file") << "x";
    fs::create_directory_symlink("../outside", root_ / "out");
    fs::create_directory_symlink(outside_, root_ / "abs-out");
    fs::create_directory_symlink("in", root_ / "in-link");
    fs::create_directory_symlink("..", root_ / "up");
    fs::create_symlink("loop", root_ / "loop");
    fs::create_directory_symlink("in/../../outside", root_ / "deep");
  }

 private:
  std::filesystem::path base_, root_, outside_;
};

Sandbox& sandbox() {
  static Sandbox s;
  return s;
}

std::string real_path(const std::filesystem::path& p) {
  char buf[PATH_MAX];
  return ::realpath(p.c_str(), buf) ? std::string(buf) : std::string();
}

// The output-root check of `dir`: output_dir_inside and check_output_dir agree (a refusal is a
// 400); an accepted directory's resolution is strictly under the root, free of '.' and '..',
// with no symlink in the part that exists (the kernel's realpath of that part is itself); and
// once made (create_directories, as the trainer does), the kernel puts it where the check said,
// with nothing made outside the root.
void output_dir(const std::string& dir) {
  namespace fs = std::filesystem;
  Sandbox& box = sandbox();
  const fs::path& root = box.root();
  const bool inside = rest::output_dir_inside(root, dir);
  fs::path resolved;
  try {
    resolved = rest::check_output_dir("output.dir", dir, root);
  } catch (const HttpError& e) {
    check_status(e);
    if (inside) fuzz::violated("output_dir_inside accepts '" + dir + "', check_output_dir refuses it: " + e.what());
    return;
  }
  if (!inside) fuzz::violated("check_output_dir accepts '" + dir + "', output_dir_inside refuses it");
  const std::string r = resolved.string();
  if (r.rfind(root.string() + "/", 0) != 0 || r.size() <= root.string().size() + 1)
    fuzz::violated("'" + dir + "' accepted as " + r + ", not strictly under the root " + root.string());
  for (const auto& c : resolved)
    if (c == "." || c == "..") fuzz::violated("'" + dir + "' accepted as " + r + ", which holds . or ..");
  fs::path existing = resolved;
  struct stat st {};
  while (::lstat(existing.c_str(), &st) != 0) existing = existing.parent_path();
  if (real_path(existing) != existing.string())
    fuzz::violated("'" + dir + "' accepted as " + r + ", but " + existing.string() + " is really " + real_path(existing));
  if (::stat(dir.c_str(), &st) == 0 && real_path(dir) != r)
    fuzz::violated("'" + dir + "' accepted as " + r + ", but the kernel resolves it to " + real_path(dir));

  // Made as the trainer makes it: where the check said, and nothing outside the root.
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (!ec && real_path(dir) != r)
    fuzz::violated("'" + dir + "' accepted as " + r + ", but create_directories made " + real_path(dir));
  if (!fs::is_empty(box.outside(), ec)) fuzz::violated("'" + dir + "' accepted as " + r + ": something was made outside");
  std::set<std::string> in_base;
  for (const auto& e : fs::directory_iterator(box.base(), ec)) in_base.insert(e.path().filename().string());
  if (in_base != std::set<std::string>{"root", "outside"})
    fuzz::violated("'" + dir + "' accepted as " + r + ": something was made beside the root");
  box.reset();
}

void job_body(const std::string& body, const char* content_type) {
  rest::JobBody job;
  try {
    job = rest::parse_job_body(body, content_type);
  } catch (const HttpError& e) {
    return check_status(e);
  }
  try {
    parse_config(to_yaml(job.config), {}, "<train request>");
  } catch (const ConfigError& e) {
    fuzz::violated(std::string("an accepted job does not re-parse: ") + e.what());
  }
  const std::vector<std::filesystem::path> roots = {"/nonexistent-arceus-fuzz-root"};
  try {
    if (!job.config.dataset.source.empty()) rest::check_allowed("dataset_config.source", job.config.dataset.source, roots);
    if (!job.config.dataset.root.empty()) rest::check_allowed("dataset_config.root", job.config.dataset.root, roots);
  } catch (const HttpError& e) {
    check_status(e);
  }
  // As given (a relative directory from the working directory, which is outside the root), and
  // a relative one also from the root.
  const std::string& dir = job.config.output.dir;
  output_dir(dir);
  if (!dir.empty() && dir.find('\0') == std::string::npos && std::filesystem::path(dir).is_relative())
    output_dir((sandbox().root() / dir).string());
}

void train_body(const std::string& body) {
  std::vector<Override> overrides;
  try {
    overrides = rest::parse_train_body(body);
  } catch (const HttpError& e) {
    return check_status(e);
  }
  try {
    parse_config(to_yaml(Config{}), overrides, "<train request>");
  } catch (const ConfigError&) {
    // serve answers it with 400 too (e.g. a learning rate below min_learning_rate)
  }
}

void predict_body(const std::string& body, uint8_t selector) {
  static const int64_t kWidths[3] = {784, 3, 10};
  const int64_t width = kWidths[(selector / 6) % 3];
  try {
    const nlohmann::json j = rest::object_body(body, "predict", R"({"pixels": [[28 rows of 28 values in 0..1]]})");
    if (j.contains("pixels")) rest::input_values(j["pixels"], width, width == 784);
  } catch (const HttpError& e) {
    check_status(e);
  }
}

// The device side: a registration, and the same bytes as an agent's heartbeat.
void register_body(const std::string& body) {
  try {
    rest::parse_register_body(body);
  } catch (const HttpError& e) {
    check_status(e);
  }
  try {
    const rest::HeartbeatBody h = rest::parse_heartbeat_body(body);
    if (h.exit_status < -1 || h.exit_status > 255) std::abort();  // accepted only in range
  } catch (const HttpError& e) {
    check_status(e);
  }
}

void generate_body(const std::string& body) {
  rest::GenerateBody g;
  try {
    g = rest::generate_fields(rest::object_body(body, "generate", rest::kGenerateExample));
  } catch (const HttpError& e) {
    return check_status(e);
  }
  if (g.tokens < 1 || g.tokens > rest::kMaxGenerateTokens) fuzz::violated("tokens " + std::to_string(g.tokens) + " accepted");
  if (!(g.temperature >= 0 && g.temperature <= 10)) fuzz::violated("temperature " + std::to_string(g.temperature) + " accepted");
  if (g.prompt.size() > rest::kMaxPromptBytes) fuzz::violated("a prompt of " + std::to_string(g.prompt.size()) + " bytes accepted");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string body = fuzz::text(data + 1, size - 1);
  switch (data[0] % 6) {
    case 0: job_body(body, "application/json"); break;
    case 1: job_body(body, "application/yaml"); break;
    case 2: train_body(body); break;
    case 3: predict_body(body, data[0]); break;
    case 4: register_body(body); break;
    default: generate_body(body); break;
  }
  return 0;
}
