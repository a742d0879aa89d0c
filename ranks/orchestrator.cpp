#include "ranks/orchestrator.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <random>
#include <sstream>

#include "common/errors.h"
#include "common/splitmix.h"
#include "datasets/dataset.h"
#include "datasets/text.h"
#include "models/gpt.h"
#include "models/stage_model.h"
#include "ranks/affinity.h"
#include "ranks/messenger.h"
#include "ranks/report.h"
#include "ranks/schedule/dataflow.h"
#include "ranks/stage_state.h"
#include "ranks/steps.h"
#include "ranks/vocab.h"

namespace arceus {

using json = nlohmann::json;

class Orchestrator::Impl {
 public:
  Impl(Job& job, DataSplits& data, Transport& transport, const TrainOptions& options, std::vector<std::string> hosts,
       JobObserver* observer)
      : job_(job), p_(job.placement), data_(data), transport_(transport), options_(options), hosts_(std::move(hosts)),
        msg_(transport, stats_, p_.stages), progress_(options.quiet, options.progress, job.transformer() ? "tokens" : "samples"),
        observer_(observer) {
    reset_stats();
    summary_ = initial_summary(job, options.blas, hosts_);
    input_bits_ = job.world == 1 ? 32 : job.config.communication.quantization_bits;
  }

  RunState run() {
    const auto& t = job_.config.training;
    const auto& o = job_.config.output;
    {
      const int64_t n = job_.transformer() ? text_windows_per_epoch(*data_.text, job_.config.dataset.windows_per_epoch, job_.seq)
                                 : data_.train.size();
      const int64_t b = job_.config.dataset.batch_size;
      steps_per_epoch_ = (n + b - 1) / b;
      if (t.max_steps > 0) steps_per_epoch_ = std::min(steps_per_epoch_, t.max_steps);
    }
    if (resume_) restore(*resume_);
    if (o.metrics) {
      metrics_ = std::make_unique<MetricsFile>((std::filesystem::path(o.dir) / "metrics.h5").string(), resume_.has_value());
      // The interrupted run may have written rows past its checkpoint (later steps, a stopped
      // epoch's epoch and rank rows): this run writes them again.
      if (resume_) {
        const int64_t dropped = metrics_->truncate_after(resume_->epoch, resume_->step);
        if (dropped > 0) {
          log(format("  metrics.h5: dropped %lld row(s) written after the checkpoint (epoch %lld, step %lld)",
                     (long long)dropped, (long long)resume_->epoch, (long long)resume_->step));
        }
      }
    }
    write_summary(RunState::Running);
    const auto run_start = Clock::now();
    transport_.reset_wait_seconds();  // the set-up's waits (broadcasts, data checks) are not epoch 1's
    try {
      for (int64_t epoch = resume_epoch_; epoch <= t.epochs && !stopped_; ++epoch) {
        epoch_ = epoch;
        run_epoch(epoch);
        if (stopped_) {
          checkpoint(epoch - 1, epoch_steps_done_);
        } else if (epoch == t.epochs || (o.checkpoint_every > 0 && epoch % o.checkpoint_every == 0)) {
          checkpoint(epoch, 0);
        }
      }
    } catch (const TransportError&) {  // a peer gone: say where the job was (the error stays nested)
      rethrow_with("", " (epoch " + std::to_string(epoch_) + ", global step " + std::to_string(step_) + ")");
    }
    stop_workers();
    if (metrics_) metrics_->flush();
    summary_["seconds"] = seconds_since(run_start);
    const RunState state = stopped_ ? RunState::Stopped : RunState::Completed;
    write_summary(state);
    return state;
  }

  void set_resume(CheckpointData data) { resume_ = std::move(data); }

  std::pair<double, double> evaluate(const CheckpointData& weights) {
    restore_weights(weights);
    step_ = static_cast<uint32_t>(weights.global_step);  // the stages number messages from it
    double loss = 0;
    int64_t correct = 0, count = 0;
    const int64_t vb = job_.config.dataset.val_batch_size, vn = data_.val.size();
    pump(data_.val, at::arange(vn, at::kLong), vb, 0, (vn + vb - 1) / vb, false, [&](int64_t, const MetricsPayload& m) {
      loss += m.loss_sum;
      correct += m.correct;
      count += m.count;
    });
    stop_workers();
    return {count ? loss / count : 0.0, count ? double(correct) / count : 0.0};
  }

  const json& summary() const { return summary_; }

  void fail(const std::string& error) {
    summary_["error"] = error;
    write_summary(RunState::Failed);
  }

 private:
  // One batch issued to the pipeline, awaiting its metrics from the last stage.
  struct InFlight {
    std::vector<Request> metrics;  // from each replica's last stage
    uint32_t step = 0;
    int64_t rows = 0;
    bool train = false;
    double lr = 0;  // training: this step's learning rate
  };

  void reset_stats() {
    stats_ = RankStats{};
    stats_.rank = transport_.rank();
    stats_.stage = -1;
    note_cpu_share(stats_, at::get_num_threads());
  }

  std::vector<int> worker_ranks() const {
    std::vector<int> r;
    for (int i = 1; i < transport_.size(); ++i) r.push_back(i);
    return r;
  }

  void stop_workers() {
    send_control(Command::Stop, 0, 0, worker_ranks());
    drain_sends();
  }

  // Gathers every stage's state and writes <output.dir>/checkpoint.h5 (atomically).
  void checkpoint(int64_t epochs_done, int64_t step_in_epoch) {
    const auto t0 = Clock::now();
    CheckpointData ck;
    ck.config_yaml = job_.config_yaml;
    ck.epoch = epochs_done;
    ck.step = step_in_epoch;
    ck.global_step = step_;
    ck.attributes = {{"optimizer", job_.config.training.optimizer},
                     {"world_size", std::to_string(job_.world)},
                     {"stages", std::to_string(job_.stages())},
                     {"chunks_per_rank", std::to_string(p_.chunks_per_rank)},
                     {"schedule", job_.config.training.schedule}};
    if (p_.replicas > 1) ck.attributes["replicas"] = std::to_string(p_.replicas);
    if (job_.transformer()) ck.attributes["vocab_code_points"] = vocab_attribute(data_.text->vocab);
    for (StageState& st : gather_states()) {
      for (auto& a : st.parameters) ck.parameters.push_back(std::move(a));
      for (auto& a : st.optimizer) ck.optimizer.push_back(std::move(a));
      for (auto& b : st.rng) ck.rng.push_back(std::move(b));
    }
    const std::string path = (std::filesystem::path(job_.config.output.dir) / "checkpoint.h5").string();
    // The metrics rows first: a kill between the two then leaves rows past the checkpoint
    // (a resume drops them), never a checkpoint past the rows (its steps' rows would be lost).
    if (metrics_) metrics_->flush();
    write_checkpoint(path, ck);
    summary_["checkpoint"] = {{"path", path}, {"epoch", epochs_done}, {"step", step_in_epoch}};
    log(format("  checkpoint: %s (epoch %lld, step %lld, %.2f s)", path.c_str(), (long long)epochs_done,
               (long long)step_in_epoch, seconds_since(t0)));
  }

  // Every stage's state (parameters, optimizer, RNG), in stage order.
  // With replicas: replica 0's, each checked against the other replicas' hash of their
  // parameters (a reduction whose result differs by rank would show here).
  std::vector<StageState> gather_states() {
    send_control(Command::Checkpoint, 0, 0, p_.stage_ranks());
    std::vector<StageState> states;
    for (int64_t s = 1; s <= p_.stages; ++s) {
      const int r = p_.rank_of_stage(s, 0);
      states.push_back(unpack_state(msg_.receive_blob(r, control_step_[r] - 1)));
      const uint64_t expected = p_.replicas > 1 ? parameter_hash(states.back()) : 0;
      std::string differ;
      for (int64_t replica = 1; replica < p_.replicas; ++replica) {
        const int q = p_.rank_of_stage(s, replica);
        uint64_t hash = 0;
        if (diloco()) {  // its whole state: its inner optimizer's is its own ("...@replica<r>")
          StageState other = unpack_state(msg_.receive_blob(q, control_step_[q] - 1));
          hash = parameter_hash(other);
          for (auto& a : other.optimizer) states.back().optimizer.push_back(std::move(a));
        } else {
          hash = msg_.receive_one<uint64_t>(q, MsgKind::Replica, control_step_[q] - 1);
        }
        if (hash != expected) {
          differ += (differ.empty() ? "" : ", ") + std::to_string(replica) + " (rank " + std::to_string(q) + ")";
        }
      }
      if (!differ.empty()) {
        throw WireError("[replicas] stage " + std::to_string(s) + ": the parameters of replica " + differ +
                        " differ from replica 0's (rank " + std::to_string(r) + ") at global step " +
                        std::to_string(step_) + ": the replicas' gradient sums disagreed");
      }
    }
    return states;
  }

  // A transformer's sample after an epoch: the whole model assembled on rank 0 from the
  // stages' parameters, then `sample_tokens` characters from an empty prompt. Printed, written
  // to <output.dir>/samples.txt (appended) and returned for summary.json.
  std::string sample_text(int64_t epoch) {
    const auto& o = job_.config.output;
    const auto t0 = Clock::now();
    std::vector<NamedArray> parameters;
    for (StageState& st : gather_states())
      for (auto& a : st.parameters) parameters.push_back(std::move(a));
    auto whole = whole_gpt(job_.gpt_config, job_.config.training.seed, parameters);
    const std::string text = gpt_generate(*whole, data_.text->vocab, "", o.sample_tokens, o.sample_temperature,
                                          splitmix64(job_.config.training.seed, static_cast<uint64_t>(epoch)));
    std::ofstream out(std::filesystem::path(o.dir) / "samples.txt", std::ios::app);
    out << "=== epoch " << epoch << " ===\n" << text << "\n";
    log(format("  sample after epoch %lld (%lld characters, temperature %g, %.1f s):", (long long)epoch,
               (long long)o.sample_tokens, o.sample_temperature, seconds_since(t0)));
    std::istringstream lines(text);
    for (std::string line; std::getline(lines, line);) log("  | " + line);
    return text;
  }

  // Sends every stage the tensors of its layers (by global name): the stages are waiting for
  // them (job.resume).
  void restore_weights(const CheckpointData& ck) {
    for (int64_t s = 1; s <= p_.stages; ++s) {
      StageState st;
      st.global_step = ck.global_step;
      for (const auto& a : ck.parameters)
        if (p_.holds_layer(s, layer_of(job_, a.name))) st.parameters.push_back(a);
      for (const auto& a : ck.optimizer)
        if (p_.holds_layer(s, layer_of(job_, a.name))) st.optimizer.push_back(a);
      for (const auto& b : ck.rng)
        if (b.name == "stage" + std::to_string(s - 1)) st.rng.push_back(b);
      // Every replica starts from the same state (replica 0's RNG too: the replicas draw their
      // dropout seeds in step with it).
      const std::vector<uint8_t> bytes = pack_state(st);
      for (int64_t replica = 0; replica < p_.replicas; ++replica) msg_.send_blob(bytes, p_.rank_of_stage(s, replica), 0);
    }
  }

  // restore_weights, and the counters: the global step (seeds, message numbers) and the data
  // position (epoch, step within it).
  void restore(const CheckpointData& ck) {
    restore_weights(ck);
    step_ = static_cast<uint32_t>(ck.global_step);
    resume_epoch_ = ck.epoch + 1;
    resume_step_ = ck.step;
    log(format("  resumed from epoch %lld, step %lld (global step %llu)", (long long)ck.epoch, (long long)ck.step,
               (unsigned long long)ck.global_step));
    // Keep the finished epochs of the interrupted run's summary.
    std::ifstream in(std::filesystem::path(job_.config.output.dir) / "summary.json");
    if (in) {
      try {
        json old = json::parse(in);
        for (const auto& e : old.value("epochs", json::array()))
          if (e.value("epoch", int64_t{0}) <= ck.epoch) summary_["epochs"].push_back(e);
      } catch (const std::exception&) {
      }
    }
  }

  void send_control(Command cmd, int64_t rows, int64_t m, const std::vector<int>& ranks, double lr = 0) {
    ControlPayload c;
    c.command = static_cast<uint32_t>(cmd);
    c.rows = rows;
    c.micro_batches = m;
    c.learning_rate = lr;
    for (int r : ranks) {
      uint32_t& s = control_step_[r];
      pending_sends_.push_back(msg_.send_raw(&c, 1, r, MsgKind::Control, s, 0));
      ++s;
    }
    reap_sends();
  }

  void drain_sends() {
    while (!pending_sends_.empty()) {
      transport_.wait(pending_sends_.front());
      pending_sends_.pop_front();
    }
  }

  void reap_sends() {
    while (!pending_sends_.empty() && transport_.test(pending_sends_.front())) pending_sends_.pop_front();
  }

  void log(const std::string& line) {
    std::printf("%s\n", line.c_str());
    std::fflush(stdout);
    if (observer_) observer_->on_log(line);
  }

  // Issues one batch: Control to every stage, each replica's share of the rows (all of them
  // without replicas) as micro-batch inputs to its first chunk's stage and labels to its last's
  // (dataflow.h), and the receives of every replica's metrics.
  // With dataset_config.feed local, `inputs` is undefined and the first stages get the rows'
  // indices in the split (`index`) instead, raw int32: they hold the data themselves.
  InFlight issue(const at::Tensor& inputs, const at::Tensor& labels, const at::Tensor& index, bool train, double lr) {
    const int64_t rows = labels.size(0);
    const int64_t m = static_cast<int64_t>(micro_batch_sizes(rows, job_.config.training.micro_batches).size());
    InFlight f;
    f.rows = rows;
    f.train = train;
    f.lr = lr;
    f.step = step_;
    send_control(train ? Command::Train : Command::Eval, rows, m, p_.stage_ranks(), lr);
    const std::vector<int64_t> shares = replica_shares(rows, p_.replicas);
    int64_t off = 0;
    for (int64_t r = 0; r < p_.replicas; ++r) {
      const int64_t share = shares[size_t(r)];
      const std::vector<int64_t> sizes = share > 0 ? micro_batch_sizes(share, m) : std::vector<int64_t>{};
      const PipelineShape shape{p_.stages, p_.chunks_per_rank, static_cast<int64_t>(sizes.size())};
      for (int64_t i = 0; i < shape.micro_batches; ++i) {
        const int64_t n = sizes[static_cast<size_t>(i)];
        for (const Message& msg : orchestrator_sends(i, shape)) {  // dataflow.h: the input, then the labels
          const int to = p_.rank_of_chunk(msg.to, r);
          if (msg.flow == Flow::Labels) {
            at::Tensor l = labels.narrow(0, off, n).to(at::kInt).contiguous();
            pending_sends_.push_back(msg_.send_raw(l.data_ptr<int32_t>(), static_cast<size_t>(l.numel()), to, MsgKind::Labels, step_, i));
          } else if (job_.local_feed()) {  // the rows' indices: the stage reads its own copy
            at::Tensor x = index.narrow(0, off, n).to(at::kInt).contiguous();
            pending_sends_.push_back(msg_.send_raw(x.data_ptr<int32_t>(), static_cast<size_t>(x.numel()), to, MsgKind::Input, step_, i));
          } else if (job_.transformer()) {  // token ids, exact: raw int32
            at::Tensor x = inputs.narrow(0, off, n).to(at::kInt).contiguous();
            pending_sends_.push_back(msg_.send_raw(x.data_ptr<int32_t>(), static_cast<size_t>(x.numel()), to, MsgKind::Input, step_, i));
          } else {
            pending_sends_.push_back(msg_.send_tensor(inputs.narrow(0, off, n), to, MsgKind::Input, step_, i, input_bits_, false, 0));
          }
        }
        off += n;
      }
      f.metrics.push_back(msg_.post_raw<MetricsPayload>(p_.rank_of_chunk(p_.chunk_count() - 1, r), MsgKind::Metrics, 0, 1));
    }
    ++step_;
    reap_sends();
    return f;
  }

  MetricsPayload complete(InFlight& f) {
    if (f.train && job_.config.training.grad_clip > 0) exchange_norms(f.step);
    MetricsPayload m;
    for (Request& r : f.metrics) {
      const MetricsPayload part = msg_.finish_raw<MetricsPayload>(r, MsgKind::Metrics, f.step, 0, 1)[0];
      m.loss_sum += part.loss_sum;
      m.correct += part.correct;
      m.count += part.count;
    }
    reap_sends();
    if (m.count != f.rows * job_.seq) {
      throw WireError("[wire] metrics of step " + std::to_string(f.step) + " count " + std::to_string(m.count) +
                      " targets, expected " + std::to_string(f.rows * job_.seq));
    }
    return m;
  }

  // Gradient clipping: the stages' squared norms in, the global norm back out.
  // Per replica (with summed gradients every replica's is the same; a DiLoCo replica clips its
  // own); the epoch's mean records replica 0's.
  void exchange_norms(uint32_t step) {
    std::vector<double> sq(size_t(p_.replicas), 0.0);
    for (int r : p_.stage_ranks()) sq[size_t(p_.slot_of_rank(r).replica)] += msg_.receive_one<double>(r, MsgKind::Norm, step);
    std::vector<double> norm(sq.size());
    for (size_t k = 0; k < sq.size(); ++k) norm[k] = std::sqrt(sq[k]);
    for (int r : p_.stage_ranks()) {
      pending_sends_.push_back(msg_.send_raw(&norm[size_t(p_.slot_of_rank(r).replica)], 1, r, MsgKind::Norm, step, 0));
    }
    grad_norms_.push_back(norm[0]);
  }

  // training.sync diloco: a round ends every diloco.inner_steps training steps, and before a
  // checkpoint, the epoch's validation and a stop, so that these see equal replicas.
  bool diloco() const { return job_.config.training.sync == "diloco"; }
  void end_round() {
    if (!diloco() || steps_in_round_ == 0) return;
    send_control(Command::Outer, 0, 0, p_.stage_ranks());
    steps_in_round_ = 0;
  }

  // Runs batches of `set` through the pipeline, keeping one batch in flight ahead so the
  // first stage never waits for rank 0. Calls on_done(k, metrics) per finished batch.
  template <typename OnDone>
  void pump(const TensorDataset& set, const at::Tensor& order, int64_t batch, int64_t first, int64_t steps,
            bool train, OnDone on_done) {
    std::deque<InFlight> flight;
    const int64_t n = set.size();
    int64_t done = first;
    auto finish_one = [&] {
      MetricsPayload m = complete(flight.front());
      if (flight.front().train) last_lr_ = flight.front().lr;  // the finished step's rate
      flight.pop_front();
      on_done(++done, m);
    };
    const int64_t every = job_.config.output.checkpoint_every_steps;
    for (int64_t k = first; k < steps; ++k) {
      if (train && observer_ && observer_->stop_requested()) {
        stopped_ = true;
        break;
      }
      if (train && every > 0 && k > first && k % every == 0) {
        end_round();
        while (!flight.empty()) finish_one();  // a checkpoint needs an empty pipeline
        checkpoint(epoch_ - 1, k);
      }
      const int64_t start = k * batch, len = std::min(batch, n - start);
      at::Tensor idx = order.narrow(0, start, len);
      double lr = 0;
      if (train) {
        const auto& t = job_.config.training;
        lr = learning_rate_at(t.lr_schedule, t.learning_rate, t.min_learning_rate, t.warmup_steps,
                              (epoch_ - 1) * steps_per_epoch_ + k, t.epochs * steps_per_epoch_);
      }
      const at::Tensor inputs = job_.local_feed() ? at::Tensor() : set.inputs.index_select(0, idx);
      flight.push_back(issue(inputs, set.labels.index_select(0, idx), idx, train, lr));
      if (train && diloco() && ++steps_in_round_ == job_.config.diloco.inner_steps) end_round();
      if (flight.size() > 1) finish_one();
    }
    if (train) end_round();
    while (!flight.empty()) finish_one();
    if (train) epoch_steps_done_ = done;
  }

  // Data order: a permutation from (seed, epoch), independent of the partition.
  at::Tensor epoch_order(int64_t n, int64_t epoch) const {
    const auto& c = job_.config;
    if (!c.dataset.shuffle || job_.transformer()) return at::arange(n, at::kLong);
    std::vector<int64_t> perm(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) perm[static_cast<size_t>(i)] = i;
    std::mt19937_64 rng(splitmix64(c.training.seed, static_cast<uint64_t>(epoch)));
    for (int64_t i = n - 1; i > 0; --i) {
      const int64_t j = static_cast<int64_t>(rng() % static_cast<uint64_t>(i + 1));
      std::swap(perm[static_cast<size_t>(i)], perm[static_cast<size_t>(j)]);
    }
    return at::tensor(perm, at::kLong);
  }

  // Every worker's statistics of the epoch (after rank 0's own).
  std::vector<RankStats> collect_stats(Clock::time_point epoch_start, double cpu0) {
    stats_.wall = seconds_since(epoch_start);
    stats_.cpu = cpu_seconds() - cpu0;
    stats_.wait = transport_.wait_seconds();
    std::vector<RankStats> all{stats_};
    send_control(Command::EpochEnd, 0, 0, p_.stage_ranks());
    for (int r : p_.stage_ranks()) {
      const uint32_t s = control_step_[r] - 1;  // the index of the EpochEnd control just sent
      all.push_back(msg_.receive_one<RankStats>(r, MsgKind::Stats, s));
    }
    drain_sends();
    transport_.reset_wait_seconds();
    reset_stats();
    if (job_.world == 1) {  // in-process: nothing crossed a network
      for (auto& s : all) s.bytes_raw = s.bytes_wire = s.messages = 0;
    }
    return all;
  }

  void run_epoch(int64_t epoch);
  void report_epoch(int64_t epoch, const std::vector<RankStats>& all, json entry);

  void write_summary(RunState state) {
    summary_["bytes_raw"] = total_raw_;
    summary_["bytes_wire"] = total_wire_;
    summary_["wire_ratio"] = total_raw_ ? double(total_wire_) / double(total_raw_) : 1.0;
    write_summary_file(job_.config.output.dir, summary_, state);
  }

  Job& job_;
  const Placement& p_;
  DataSplits& data_;
  Transport& transport_;
  const TrainOptions& options_;
  std::vector<std::string> hosts_;
  RankStats stats_;
  Messenger msg_;
  Progress progress_;
  JobObserver* observer_ = nullptr;
  int input_bits_ = 32;
  bool stopped_ = false;
  std::optional<CheckpointData> resume_;
  int64_t resume_epoch_ = 1, resume_step_ = 0;
  int64_t epoch_steps_done_ = 0;
  std::unique_ptr<MetricsFile> metrics_;
  ProgressFile progress_file_;
  std::deque<Request> pending_sends_;
  std::map<int, uint32_t> control_step_;
  std::vector<double> grad_norms_;  // this epoch's global gradient norms (when clipping)
  int64_t steps_per_epoch_ = 0;
  int64_t steps_in_round_ = 0;  // training.sync diloco: steps since the last outer step
  double last_lr_ = 0;
  uint32_t step_ = 0;
  int64_t epoch_ = 0;
  uint64_t total_raw_ = 0, total_wire_ = 0;
  json summary_;
};

void Orchestrator::Impl::run_epoch(int64_t epoch) {
  const auto& c = job_.config;
  const auto epoch_start = Clock::now();
  const double cpu0 = cpu_seconds();
  const int64_t steps = steps_per_epoch_;
  // A text's training windows are drawn afresh each epoch (from seed and epoch).
  const TensorDataset train_set =
      job_.transformer() ? text_epoch_windows(*data_.text, c.dataset.windows_per_epoch, job_.seq, c.training.seed, epoch)
               : data_.train;
  grad_norms_.clear();

  double loss_sum = 0;
  int64_t correct = 0, count = 0;
  std::vector<double> step_losses;
  const auto train_start = Clock::now();
  const int64_t first = epoch == resume_epoch_ ? resume_step_ : 0;
  const double seq = static_cast<double>(job_.seq);
  pump(train_set, epoch_order(train_set.size(), epoch), c.dataset.batch_size, first, steps, true,
       [&](int64_t k, const MetricsPayload& m) {
         loss_sum += m.loss_sum;
         correct += m.correct;
         count += m.count;
         const double loss = m.loss_sum / static_cast<double>(m.count);
         const double acc = static_cast<double>(m.correct) / static_cast<double>(m.count);
         step_losses.push_back(loss);
         const double sps = count / seq / seconds_since(train_start);
         progress_.update(epoch, c.training.epochs, k, steps, sps * seq, loss_sum / count,
                          static_cast<double>(correct) / count);
         if (metrics_) {
           const auto bytes = step_message_bytes(job_, m.count / job_.seq);
           metrics_->append(StepRow{epoch, k, loss, acc, sps, bytes.first, bytes.second});
         }
         progress_file_.step(epoch, k, steps);
         if (observer_) {
           observer_->on_step({{"epoch", epoch},
                               {"step", k},
                               {"steps", steps},
                               {"loss", loss},
                               {"accuracy", acc},
                               {"samples_per_second", sps},
                               {"tokens_per_second", sps * seq},
                               {"learning_rate", last_lr_}});
         }
       });
  const double train_seconds = seconds_since(train_start);

  // Validation: forward only, the whole validation split.
  double vloss = 0;
  int64_t vcorrect = 0, vcount = 0;
  const int64_t vb = c.dataset.val_batch_size, vn = data_.val.size();
  pump(data_.val, at::arange(vn, at::kLong), vb, 0, (vn + vb - 1) / vb, false, [&](int64_t, const MetricsPayload& m) {
    vloss += m.loss_sum;
    vcorrect += m.correct;
    vcount += m.count;
  });

  const std::vector<RankStats> all = collect_stats(epoch_start, cpu0);
  const double train_loss = count ? loss_sum / count : 0, train_acc = count ? double(correct) / count : 0;
  const double val_loss = vcount ? vloss / vcount : 0, val_acc = vcount ? double(vcorrect) / vcount : 0;
  json entry = {{"epoch", epoch},
                {"steps", static_cast<int64_t>(step_losses.size())},
                {"train_loss", train_loss},
                {"train_accuracy", train_acc},
                {"val_loss", val_loss},
                {"val_accuracy", val_acc},
                {"train_samples", static_cast<int64_t>(count / job_.seq)},
                {"val_samples", static_cast<int64_t>(vcount / job_.seq)},
                {"seconds", seconds_since(epoch_start)},
                {"train_seconds", train_seconds},
                {"samples_per_second", train_seconds > 0 ? count / seq / train_seconds : 0},
                {"step_losses", step_losses}};
  if (job_.transformer()) {
    entry["train_tokens"] = count;
    entry["tokens_per_second"] = train_seconds > 0 ? count / train_seconds : 0;
  }
  report_epoch(epoch, all, std::move(entry));
}

// Prints the epoch line, the timing table and the bubble; appends the epoch to summary.json
// and metrics.h5; tells the observer.
void Orchestrator::Impl::report_epoch(int64_t epoch, const std::vector<RankStats>& all, json entry) {
  const auto& c = job_.config;
  uint64_t raw = 0, wire = 0;
  for (const auto& s : all) {
    raw += s.bytes_raw;
    wire += s.bytes_wire;
  }
  total_raw_ += raw;
  total_wire_ += wire;
  const double seconds = entry["seconds"], sps = entry["samples_per_second"];
  const double rate = job_.transformer() ? entry["tokens_per_second"].get<double>() : sps;
  log(format("epoch %lld/%lld: train loss %.4f acc %.2f%% | val loss %.4f acc %.2f%% | %.1f s, %.0f %s/s | sent %s raw, %s on the wire (%.3f)",
             (long long)epoch, (long long)c.training.epochs, entry["train_loss"].get<double>(),
             100 * entry["train_accuracy"].get<double>(), entry["val_loss"].get<double>(),
             100 * entry["val_accuracy"].get<double>(), seconds, rate, job_.transformer() ? "tokens" : "samples",
             human_bytes(double(raw)).c_str(), human_bytes(double(wire)).c_str(), raw ? double(wire) / double(raw) : 1.0));

  json timing = json::array();
  for (const auto& s : all) timing.push_back(stats_to_json(s, hosts_[size_t(s.rank)], reported_rank(job_, s), replica_of(job_, s)));
  if (!options_.quiet)
    for (const auto& line : timing_table(job_, all, hosts_)) log(line);
  const int64_t m = std::min<int64_t>(c.training.micro_batches, c.dataset.batch_size);
  const double bubble = measured_bubble(all);
  const double simulated = simulated_bubble(job_, m);
  if (!options_.quiet && p_.stages > 1) {
    log(format("  pipeline bubble: measured %.1f%%, simulated %.1f%% (%s, S=%lld, v=%lld, M=%lld)", 100 * bubble,
               100 * simulated, c.training.schedule.c_str(), (long long)p_.stages, (long long)p_.chunks_per_rank,
               (long long)m));
  }
  entry["bytes_raw"] = raw;
  entry["bytes_wire"] = wire;
  entry["bubble_measured"] = bubble;
  entry["bubble_simulated"] = simulated;
  entry["bubble_theoretical"] = simulated;  // the name before schedules were simulated
  entry["timing"] = timing;
  if (!grad_norms_.empty()) {
    double mean = 0;
    for (double g : grad_norms_) mean += g / static_cast<double>(grad_norms_.size());
    entry["grad_norm_mean"] = mean;
  }
  entry["learning_rate"] = last_lr_;
  if (job_.transformer() && c.output.sample_tokens > 0) entry["sample"] = sample_text(epoch);
  summary_["epochs"].push_back(entry);
  summary_["final"] = {{"val_loss", entry["val_loss"]},
                       {"val_accuracy", entry["val_accuracy"]},
                       {"train_loss", entry["train_loss"]},
                       {"train_accuracy", entry["train_accuracy"]}};
  if (metrics_) {
    metrics_->append(EpochRow{epoch, entry["train_loss"], entry["train_accuracy"], entry["val_loss"],
                              entry["val_accuracy"], seconds, sps, double(raw), double(wire)});
    for (const auto& r : all) {
      metrics_->append(RankRow{epoch, reported_rank(job_, r), r.stage, r.forward, r.backward, r.optimizer, r.codec,
                               r.wait, r.idle, r.wall, r.cpu, r.wall > 0 ? r.flops / r.wall / 1e9 : 0.0,
                               replica_of(job_, r), r.sync});
    }
    metrics_->flush();
  }
  write_summary(RunState::Running);
  if (observer_) observer_->on_epoch(summary_["epochs"].back());
}

Orchestrator::Orchestrator(Job& job, DataSplits& data, Transport& transport, const TrainOptions& options,
                           std::vector<std::string> hosts, JobObserver* observer)
    : impl_(std::make_unique<Impl>(job, data, transport, options, std::move(hosts), observer)) {}
Orchestrator::~Orchestrator() = default;
RunState Orchestrator::run() { return impl_->run(); }
void Orchestrator::set_resume(CheckpointData checkpoint) { impl_->set_resume(std::move(checkpoint)); }
std::pair<double, double> Orchestrator::evaluate(const CheckpointData& weights) { return impl_->evaluate(weights); }
const nlohmann::json& Orchestrator::summary() const { return impl_->summary(); }
void Orchestrator::fail(const std::string& error) { impl_->fail(error); }

}  // namespace arceus
