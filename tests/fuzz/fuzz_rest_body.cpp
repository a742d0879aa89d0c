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
// its data paths are checked against a data root without failing otherwise; an accepted
// generate body's fields are within their documented ranges.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "launcher/request_body.h"
#include "tests/fuzz/fuzz.h"

using namespace arceus;
using rest::HttpError;

namespace {

void check_status(const HttpError& e) {
  if (e.status() != 400) fuzz::violated("status " + std::to_string(e.status()) + " for a bad body: " + e.what());
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
