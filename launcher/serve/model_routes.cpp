// The trained model answering: predict (an MLP's class probabilities) and generate (a
// transformer's text), from the job's latest checkpoint (see routes.h). They run on the HTTP
// thread that received them, with the server's CheckpointModel (one model, one request at a
// time), never on the trainer's thread.
#include <filesystem>
#include <mutex>
#include <stdexcept>

#include "launcher/request_body.h"
#include "launcher/serve/handlers.h"
#include "launcher/serve/state.h"
#include "launcher/serve/views.h"

namespace arceus::serve::handlers {

namespace fs = std::filesystem;
using json = nlohmann::json;
using rest::HttpError;

namespace {

// A job's id, config and latest checkpoint path: as the job names it (`path`, what the reply
// shows) and resolved, inside the output root (`resolved`, what is read).
struct JobCheckpoint {
  int id = 0;
  Config config;
  std::string path;
  std::string resolved;
};

// 400 when the checkpoint, resolved now, is not inside the output root: the job's directory or
// the file itself may have become a symlink out since the job was created.
JobCheckpoint job_checkpoint(ServeState& s, const std::string& id_text) {
  JobCheckpoint ck;
  {
    std::lock_guard<std::mutex> lock(s.mu);
    const auto job = s.jobs.find(id_text);
    ck.id = job->id;
    ck.config = effective_config(*job);
  }
  ck.path = (fs::path(ck.config.output.dir) / "checkpoint.h5").string();
  rest::check_output_dir("output.dir", ck.config.output.dir, s.output_root);
  ck.resolved = rest::check_output_dir("job " + std::to_string(ck.id) + "'s checkpoint", ck.path, s.output_root).string();
  return ck;
}

// Loads the checkpoint's model: 409 while the job has none yet.
CheckpointModel::Info load_model(ServeState& s, int id, const std::string& path) {
  try {
    return s.models.load(path);
  } catch (const std::exception& e) {
    throw HttpError(409, "[serve] job " + std::to_string(id) + " has no usable checkpoint: " + e.what());
  }
}

}  // namespace

// POST /api/jobs/<id>/predict: class probabilities from the job's latest checkpoint.
Response predict(ServeState& s, const Request& req) {
  const json body = rest::object_body(req.body, "predict", R"({"pixels": [[28 rows of 28 values in 0..1]]})");
  const JobCheckpoint ck = job_checkpoint(s, req.params.at(0));
  const int id = ck.id;
  if (is_transformer(ck.config)) {
    throw HttpError(400, "[serve] job " + std::to_string(id) + " is a transformer: POST /api/jobs/" + std::to_string(id) +
                             "/generate with {\"prompt\": ..., \"tokens\": N} instead");
  }
  if (!body.contains("pixels")) throw HttpError(400, "[serve] the predict body has no 'pixels'");
  const std::vector<double> input =
      rest::input_values(body["pixels"], ck.config.model.layer_sizes.front(), input_is_pixels(ck.config));
  const CheckpointModel::Info info = load_model(s, id, ck.resolved);
  Prediction p;
  try {
    p = s.models.predict(ck.resolved, input);
  } catch (const std::invalid_argument& e) {
    throw HttpError(400, std::string("[serve] pixels: ") + e.what());
  }
  return json_reply(200, {{"job_id", job_id_json(id)},
                          {"probabilities", p.probabilities},
                          {"class", p.label},
                          {"checkpoint", {{"path", ck.path}, {"epoch", info.epoch}, {"step", info.step}}}});
}

// POST /api/jobs/<id>/generate: text from the job's latest transformer checkpoint.
Response generate(ServeState& s, const Request& req) {
  const json body = rest::object_body(req.body, "generate", rest::kGenerateExample);
  const JobCheckpoint ck = job_checkpoint(s, req.params.at(0));
  const int id = ck.id;
  if (!is_transformer(ck.config)) {
    throw HttpError(400, "[serve] job " + std::to_string(id) + " is an MLP: POST /api/jobs/" + std::to_string(id) +
                             "/predict with {\"pixels\": ...} instead");
  }
  const rest::GenerateBody g = rest::generate_fields(body);
  const CheckpointModel::Info info = load_model(s, id, ck.resolved);
  std::string text;
  try {
    text = s.models.generate(ck.resolved, g.prompt, g.tokens, g.temperature, g.seed);
  } catch (const std::invalid_argument& e) {
    throw HttpError(400, std::string("[serve] prompt: ") + e.what());
  }
  return json_reply(200, {{"job_id", job_id_json(id)},
                          {"prompt", g.prompt},
                          {"text", text},
                          {"tokens", g.tokens},
                          {"temperature", g.temperature},
                          {"seed", g.seed},
                          {"checkpoint", {{"path", ck.path}, {"epoch", info.epoch}, {"step", info.step}}}});
}

}  // namespace arceus::serve::handlers
