#include "ranks/stage_worker.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/nn/module.h>
#include <torch/optim/adamw.h>
#include <torch/optim/sgd.h>
#include <torch/utils.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <optional>

#include "common/errors.h"
#include "common/splitmix.h"
#include "datasets/dataset.h"
#include "models/stage_model.h"
#include "ranks/executor.h"
#include "ranks/diloco.h"
#include "ranks/grad_sync.h"
#include "ranks/affinity.h"
#include "ranks/messenger.h"
#include "ranks/schedule/dataflow.h"
#include "ranks/schedule/registry.h"
#include "ranks/schedule/stream.h"
#include "ranks/stage_state.h"
#include "ranks/steps.h"
#include "ranks/timing.h"

namespace arceus {

namespace {

// Seeds of stochastic rounding: (seed, step) then chunk * 2048 + micro-batch.
constexpr uint64_t kSeedLanesPerChunk = 2048;

std::unique_ptr<StageModel> make_chunk_model(const Job& job, LayerRange range) {
  if (job.transformer()) return make_gpt_slice(job.gpt_config, range, job.config.training.seed);
  return make_mlp_slice(job.config.model.layer_sizes, range, job.config.training.seed);
}

class StageWorker {
 public:
  StageWorker(const Job& job, Placement::Slot slot, Transport& transport, Group* replicas)
      : job_(job), p_(job.placement), stage_(slot.stage), replica_(slot.replica), transport_(transport),
        msg_(transport, stats_, p_.stages) {
    const auto& c = job.config;
    reset_stats();
    stream_ = !c.training.pipeline_flush;
    std::vector<at::Tensor> params;
    for (int64_t index : p_.chunks_of_stage(stage_)) {
      Chunk ch;
      ch.index = index;
      ch.model = make_chunk_model(job, p_.chunks[size_t(index)]);
      ch.first = index == 0;
      ch.last = index == p_.chunk_count() - 1;
      for (auto& [name, t] : ch.model->named_parameters()) {
        // Without a flush the optimizer steps a master copy; the two versions are copied from it.
        params.push_back(stream_ ? t.detach().clone().requires_grad_(true) : t);
      }
      if (stream_) ch.other = make_chunk_model(job, p_.chunks[size_t(index)]);
      chunks_.push_back(std::move(ch));
    }
    if (stream_) master_ = params;
    if (c.training.optimizer == "adamw") {
      optimizer_ = std::make_unique<torch::optim::AdamW>(
          params, torch::optim::AdamWOptions(c.training.learning_rate).weight_decay(c.training.weight_decay));
    } else {
      optimizer_ = std::make_unique<torch::optim::SGD>(
          params, torch::optim::SGDOptions(c.training.learning_rate)
                      .momentum(c.training.momentum)
                      .weight_decay(c.training.weight_decay));
    }
    if (replicas) {
      std::vector<std::vector<at::Tensor>> per_chunk;
      for (Chunk& ch : chunks_) {
        per_chunk.emplace_back();
        for (auto& [name, t] : ch.model->named_parameters()) per_chunk.back().push_back(t);
      }
      const bool diloco = c.training.sync == "diloco";
      std::vector<at::Tensor> flat;
      for (const auto& k : per_chunk) flat.insert(flat.end(), k.begin(), k.end());
      sync_ = std::make_unique<GradientSync>(std::move(per_chunk), *replicas, msg_, stats_,
                                             diloco ? int(c.diloco.bits) : c.communication.gradient_bits);
      if (diloco) diloco_ = std::make_unique<Diloco>(std::move(flat), *sync_, c.diloco, replica_, p_.replicas);
    }
    bits_ = c.communication.quantization_bits;
    input_bits_ = job.world == 1 ? 32 : bits_;  // the in-process run moves no data over a network
    split_ = find_schedule(c.training.schedule).split_backward;
  }

  // Obeys control messages from rank 0 until Stop.
  void run() {
    uint32_t step = 0;     // train/eval batches: the step field of data messages
    uint32_t control = 0;  // control messages received: the step field of control and stats
    if (job_.resume) {
      const StageState state = unpack_state(msg_.receive_blob(0, 0));
      import_state(state);
      step = static_cast<uint32_t>(state.global_step);
    }
    auto epoch_start = Clock::now();
    double cpu0 = cpu_seconds();
    std::optional<ControlPayload> ended;  // the control that ended a stream, to obey next
    while (true) {
      ControlPayload c;
      if (ended) {
        c = *ended;
        ended.reset();
      } else {
        c = receive_control(control++);
      }
      const uint32_t this_control = control - 1;
      const auto cmd = static_cast<Command>(c.command);
      if (cmd == Command::Stop) return;
      if (cmd == Command::Train && stream_) {
        ended = run_stream(c, step, control);
        continue;
      }
      if (cmd == Command::Train || cmd == Command::Eval) {
        run_batch(c, step, cmd == Command::Train);
        ++step;
      } else if (cmd == Command::Outer) {
        if (!diloco_) throw WireError("[wire] an outer step (training.sync diloco) for a stage without replicas");
        const auto t0 = Clock::now();
        diloco_->outer_step(this_control);
        stats_.sync += seconds_since(t0);
      } else if (cmd == Command::Checkpoint) {
        // Replica 0 sends the state; the others their parameters' hash, which rank 0 checks
        // against replica 0's: every replica must hold the same bits. With DiLoCo the others
        // send their state too: each keeps an inner optimizer state of its own.
        if (replica_ == 0 || diloco_) {
          msg_.send_blob(pack_state(export_state(step)), 0, this_control);
        } else {
          const uint64_t hash = parameter_hash(export_state(step));
          Request r = msg_.send_raw(&hash, 1, 0, MsgKind::Replica, this_control, 0);
          transport_.wait(r);
        }
      } else if (cmd == Command::EpochEnd) {
        stats_.wall = seconds_since(epoch_start);
        stats_.cpu = cpu_seconds() - cpu0;
        // Control waits were counted as idle above; the data waits alone stay in `wait`.
        RankStats copy = stats_;
        Request s = msg_.send_raw(&copy, 1, 0, MsgKind::Stats, this_control, 0);
        transport_.wait(s);
        reset_stats();
        epoch_start = Clock::now();
        cpu0 = cpu_seconds();
      } else {
        throw WireError("[wire] unknown control command " + std::to_string(c.command) + " from rank 0");
      }
    }
  }

 private:
  struct Chunk {
    int64_t index = 0;  // global chunk index
    std::unique_ptr<StageModel> model;
    std::unique_ptr<StageModel> other;  // without a flush: the second weight version
    bool first = false, last = false;   // the model's first / last chunk
    StageModel& version(int v) { return v == 0 ? *model : *other; }
  };
  // One (chunk, micro-batch) of a batch in flight.
  struct Slot {
    Request input, labels, grad;  // posted receives
    at::Tensor local_input;       // the previous chunk's output when it is on this rank
    at::Tensor x, y, loss;        // forward results kept for the backward
    at::Tensor out_grad;          // gradient of y (from the next chunk), kept for W
    WeightOps ops;                        // split backward: each operation's output and parameters
    std::vector<at::Tensor> op_grads;     // the gradients of those outputs (from I)
  };
  // A batch in flight: one, or two without a flush (a step's last backwards and the next
  // step's first forwards).
  struct Batch {
    ControlPayload control;
    uint32_t step = 0;       // the step field of its data messages
    bool train = false;
    int version = 0;         // the chunks' weight version it runs on (Chunk::version)
    int64_t loss_rows = 1;   // the rows its loss is the mean over
    std::vector<int64_t> sizes;
    std::vector<std::vector<Slot>> slots;  // [chunk of this stage][micro-batch]
    std::vector<Request> sends;
    MetricsPayload metrics;
  };

  ControlPayload receive_control(uint32_t index) {
    const double w0 = transport_.wait_seconds();
    const ControlPayload c = msg_.receive_one<ControlPayload>(0, MsgKind::Control, index);
    stats_.idle += transport_.wait_seconds() - w0;
    return c;
  }

  void reset_stats() {
    stats_ = RankStats{};
    stats_.rank = transport_.rank();
    stats_.stage = static_cast<int32_t>(stage_);
    note_cpu_share(stats_, at::get_num_threads());
  }

  Chunk& chunk(int64_t c) { return chunks_[size_t(c / p_.stages)]; }
  Slot& slot(Batch& b, int64_t c, int64_t mb) { return b.slots[size_t(c / p_.stages)][size_t(mb)]; }
  int64_t in_width(const Chunk& ch) const { return ch.model->in_features(); }
  int64_t out_width(const Chunk& ch) const { return ch.model->out_features(); }

  const Program& program(int64_t m, bool train) {
    auto& cache = train ? train_programs_ : eval_programs_;
    auto it = cache.find(m);
    if (it == cache.end()) {
      const PipelineShape shape{p_.stages, p_.chunks_per_rank, m};
      std::vector<Program> all =
          train ? training_programs(job_.config.training.schedule, shape) : forward_programs(shape);
      it = cache.emplace(m, std::move(all[size_t(stage_ - 1)])).first;
    }
    return it->second;
  }

  PipelineShape shape(const Batch& b) const {
    return {p_.stages, p_.chunks_per_rank, static_cast<int64_t>(b.sizes.size())};
  }
  // The transport rank a message comes from or goes to, in this replica (rank 0 for the
  // orchestrator's).
  int rank_of(int64_t chunk) const { return chunk == kOrchestrator ? 0 : p_.rank_of_chunk(chunk, replica_); }

  // Posts every receive of the batch up front (what each chunk's F and, when training, its B
  // consume: dataflow.h): no order of arrival can deadlock, and transfers overlap with compute.
  // Without a flush the next batch's receives follow this one's on the same tags, and MPI
  // matches them in the order posted, as the sender sends them.
  void post_receives(Batch& b) {
    const PipelineShape sh = shape(b);
    b.slots.clear();
    b.slots.resize(chunks_.size());
    for (auto& per_chunk : b.slots) per_chunk.resize(size_t(sh.micro_batches));
    for (const Chunk& ch : chunks_) {
      for (int64_t i = 0; i < sh.micro_batches; ++i) {
        std::vector<Message> in = consumes(Action{ActionKind::Forward, int32_t(ch.index), int32_t(i)}, sh);
        if (b.train) {
          for (const Message& g : consumes(Action{ActionKind::Backward, int32_t(ch.index), int32_t(i)}, sh)) in.push_back(g);
        }
        for (const Message& msg : in) {
          if (!is_local(msg, sh)) post_receive(b, ch, msg);
        }
      }
    }
  }

  void post_receive(Batch& b, const Chunk& ch, const Message& msg) {
    const int64_t i = msg.micro_batch, rows = b.sizes[size_t(i)], seq = job_.seq;
    Slot& s = slot(b, ch.index, i);
    switch (msg.flow) {
      case Flow::Input:
        if (job_.local_feed()) {  // the rows' indices into this stage's own copy of the split
          s.input = msg_.post_raw<int32_t>(0, MsgKind::Input, i, size_t(rows));
        } else if (job_.transformer()) {
          s.input = msg_.post_raw<int32_t>(0, MsgKind::Input, i, size_t(rows * in_width(ch)));
        } else {
          s.input = msg_.post_tensor(0, MsgKind::Input, i, input_bits_, rows, in_width(ch));
        }
        break;
      case Flow::Activation:
        s.input = msg_.post_tensor(rank_of(msg.from), MsgKind::Activation, i, bits_, rows * seq, in_width(ch), msg.to);
        break;
      case Flow::Labels: s.labels = msg_.post_raw<int32_t>(0, MsgKind::Labels, i, size_t(rows * seq)); break;
      case Flow::Gradient:
        s.grad = msg_.post_tensor(rank_of(msg.from), MsgKind::Gradient, i, bits_, rows * seq, out_width(ch), msg.to);
        break;
    }
  }

  // Shapes per micro-batch of `rows` samples, with seq = 1 (MLP) or the context T (GPT):
  // inputs to the first chunk are codec floats [rows, in] (MLP) or raw int32 token ids
  // [rows * T] (GPT); activations and gradients travel as codec [rows * seq, width] (a row per
  // token: one scale per token over n_emb) and are reshaped on arrival; labels are raw int32
  // [rows * seq].
  void forward(Batch& b, int64_t c, int64_t i) {
    Chunk& ch = chunk(c);
    Slot& s = slot(b, c, i);
    const PipelineShape sh = shape(b);
    const int64_t rows = b.sizes[size_t(i)], seq = job_.seq, in_f = in_width(ch);
    const Message in = consumes(Action{ActionKind::Forward, int32_t(c), int32_t(i)}, sh).front();
    at::Tensor x;
    if (in.flow == Flow::Input && job_.local_feed()) {
      auto v = msg_.finish_raw<int32_t>(s.input, MsgKind::Input, b.step, i, size_t(rows));
      const at::Tensor index = at::from_blob(v.data(), {rows}, at::kInt).to(at::kLong);
      const TensorDataset& split = b.train ? job_.local_data->train : job_.local_data->val;
      if (index.numel() > 0 && (index.min().item<int64_t>() < 0 || index.max().item<int64_t>() >= split.size())) {
        throw WireError("[wire] input rows of step " + std::to_string(b.step) + " out of range of the " +
                        std::to_string(split.size()) + " rows of this stage's copy of the data");
      }
      x = split.inputs.index_select(0, index);
    } else if (in.flow == Flow::Input && job_.transformer()) {
      auto v = msg_.finish_raw<int32_t>(s.input, MsgKind::Input, b.step, i, size_t(rows * in_f));
      x = at::from_blob(v.data(), {rows, in_f}, at::kInt).to(at::kLong);
    } else if (in.flow == Flow::Input) {
      x = msg_.finish_tensor(s.input, MsgKind::Input, b.step, i, input_bits_, rows, in_f);
    } else if (is_local(in, sh)) {
      x = s.local_input;
      s.local_input = at::Tensor();
    } else {
      x = msg_.finish_tensor(s.input, MsgKind::Activation, b.step, i, bits_, rows * seq, in_f, c);
      if (job_.transformer()) x = x.view({rows, seq, in_f});
    }
    const auto t0 = Clock::now();
    at::Tensor y;
    {
      at::AutoGradMode grad_mode(b.train);
      if (b.train && !ch.first) x.requires_grad_(true);
      y = ch.version(b.version).forward(x, b.train && split_ ? &s.ops : nullptr);
      if (ch.last) {
        auto v = msg_.finish_raw<int32_t>(s.labels, MsgKind::Labels, b.step, i, size_t(rows * seq));
        const at::Tensor labels = at::from_blob(v.data(), {rows * seq}, at::kInt).to(at::kLong);
        const at::Tensor logits = y.reshape({-1, y.size(-1)});
        const at::Tensor loss_sum = at::cross_entropy_loss(logits, labels, {}, at::Reduction::Sum);
        b.metrics.loss_sum += loss_sum.item<double>();
        b.metrics.correct += logits.argmax(1).eq(labels).sum().item<int64_t>();
        b.metrics.count += rows * seq;
        // Scaled so that the gradients summed over micro-batches equal the full batch's mean.
        if (b.train) s.loss = loss_sum / static_cast<double>(b.loss_rows * seq);
      }
    }
    const double flops = ch.model->forward_flops_per_sample() * static_cast<double>(rows);
    stats_.forward += seconds_since(t0);
    stats_.flops += flops;
    stats_.forward_flops += flops;
    if (const auto out = sends(Action{ActionKind::Forward, int32_t(c), int32_t(i)}, sh)) {
      if (is_local(*out, sh)) {
        slot(b, out->to, i).local_input = y.detach();
      } else {
        b.sends.push_back(msg_.send_tensor(y.reshape({-1, y.size(-1)}), rank_of(out->to), MsgKind::Activation, b.step,
                                           i, bits_, false, 0, out->to));
      }
    }
    if (b.train) {
      s.x = x;
      s.y = y;
    }
  }

  // The gradient of chunk c's output for micro-batch i (undefined on the last chunk, whose
  // output is the loss).
  at::Tensor output_grad(Batch& b, const Chunk& ch, Slot& s, int64_t i) {
    const auto in = consumes(Action{ActionKind::Backward, int32_t(ch.index), int32_t(i)}, shape(b));
    if (in.empty()) return {};
    if (is_local(in.front(), shape(b))) return s.out_grad;
    const int64_t rows = b.sizes[size_t(i)];
    return msg_.finish_tensor(s.grad, MsgKind::Gradient, b.step, i, bits_, rows * job_.seq, out_width(ch), ch.index)
        .view(s.y.sizes());
  }

  // Sends the gradient of chunk c's input to chunk c - 1 (nothing for the first chunk).
  void send_input_grad(Batch& b, int64_t c, int64_t i, const at::Tensor& dx) {
    const auto out = sends(Action{ActionKind::Backward, int32_t(c), int32_t(i)}, shape(b));
    if (!out) return;
    if (is_local(*out, shape(b))) {
      slot(b, out->to, i).out_grad = dx;
      return;
    }
    const uint64_t seed = splitmix64(splitmix64(job_.config.training.seed, b.step),
                                     static_cast<uint64_t>(c) * kSeedLanesPerChunk + static_cast<uint64_t>(i));
    at::Tensor* residual = nullptr;
    if (job_.config.communication.error_feedback && bits_ < 32) residual = &residuals_[{c, i}];
    b.sends.push_back(msg_.send_tensor(dx.reshape({-1, dx.size(-1)}), rank_of(out->to), MsgKind::Gradient, b.step, i,
                                       bits_, job_.config.communication.stochastic_rounding, seed, out->to, residual));
  }

  void count_backward(const Batch& b, const Chunk& ch, int64_t i, double share, Clock::time_point t0) {
    const double flops = share * ch.model->forward_flops_per_sample() * static_cast<double>(b.sizes[size_t(i)]);
    stats_.backward += seconds_since(t0);
    stats_.flops += flops;
    stats_.backward_flops += flops;
  }

  // B: the whole backward of (c, i), into the gradients of the weights its forward used.
  void backward(Batch& b, int64_t c, int64_t i) {
    Chunk& ch = chunk(c);
    Slot& s = slot(b, c, i);
    const at::Tensor g = output_grad(b, ch, s, i);
    const auto t0 = Clock::now();
    if (step_sums()) sync_->before_backward(size_t(c / p_.stages));
    if (ch.last) {
      s.loss.backward();
    } else {
      s.y.backward(g);
    }
    if (step_sums()) sync_->after_backward(size_t(c / p_.stages));
    count_backward(b, ch, i, 2.0, t0);
    if (!ch.first) send_input_grad(b, c, i, s.x.grad());
    s = Slot{};
  }

  // I: the gradients of the chunk's input (sent upstream at once) and of every parameterized
  // operation's output (kept for W); the graph is retained for W.
  void input_grad(Batch& b, int64_t c, int64_t i) {
    Chunk& ch = chunk(c);
    Slot& s = slot(b, c, i);
    s.out_grad = output_grad(b, ch, s, i);
    const auto t0 = Clock::now();
    std::vector<at::Tensor> inputs;
    if (!ch.first) inputs.push_back(s.x);
    for (const auto& op : s.ops.ops) inputs.push_back(op.first);
    const at::Tensor out = ch.last ? s.loss : s.y;
    const std::vector<at::Tensor> grads = torch::autograd::grad(
        {out}, inputs, ch.last ? std::vector<at::Tensor>{} : std::vector<at::Tensor>{s.out_grad}, /*retain_graph=*/true);
    count_backward(b, ch, i, 1.0, t0);
    size_t k = 0;
    if (!ch.first) send_input_grad(b, c, i, grads[k++]);
    s.op_grads.assign(grads.begin() + static_cast<std::ptrdiff_t>(k), grads.end());
  }

  // W: each operation's weight gradients from its own output and that output's gradient (from
  // I), accumulated into .grad as a full backward would; frees the graph.
  void weight_grad(Batch& b, int64_t c, int64_t i) {
    Chunk& ch = chunk(c);
    Slot& s = slot(b, c, i);
    const auto t0 = Clock::now();
    if (step_sums()) sync_->before_backward(size_t(c / p_.stages));
    for (size_t j = s.ops.ops.size(); j-- > 0;) {
      const auto& [out, params] = s.ops.ops[j];
      if (params.empty()) continue;
      torch::autograd::backward({out}, {s.op_grads[j]}, /*retain_graph=*/false, /*create_graph=*/false, params);
    }
    if (step_sums()) sync_->after_backward(size_t(c / p_.stages));
    count_backward(b, ch, i, 1.0, t0);
    s = Slot{};
  }

  // A batch's shares and sizes, its receives posted, its chunks in train or eval mode.
  Batch begin_batch(const ControlPayload& control, uint32_t step, bool train, int version) {
    Batch b;
    b.control = control;
    b.step = step;
    b.train = train;
    b.version = version;
    // This replica's contiguous share of the batch (all of it without replicas), in micro-batches.
    const int64_t share = replica_shares(control.rows, p_.replicas)[size_t(replica_)];
    // Every replica's loss is scaled by the whole batch (the sum over replicas of their gradients
    // is the batch's mean); a DiLoCo replica's by its own share (it learns alone until the round's end).
    b.loss_rows = diloco_ ? share : control.rows;
    b.sizes = share > 0 ? micro_batch_sizes(share, control.micro_batches) : std::vector<int64_t>{};
    post_receives(b);
    for (Chunk& ch : chunks_) ch.version(version).module().train(train);  // dropout and the like: on in training only
    return b;
  }

  // The batch's metrics to rank 0 (the last chunk's stage).
  void send_metrics(Batch& b) {
    if (chunks_.back().last) b.sends.push_back(msg_.send_raw(&b.metrics, 1, 0, MsgKind::Metrics, b.step, 0));
  }

  // The batch's sends finished.
  void end_batch(Batch& b) {
    transport_.wait_all(b.sends);
    b.sends.clear();
    b.slots.clear();
  }

  ActionHandlers handlers(Batch& b) {
    ActionHandlers h;
    h.forward = [this, &b](int64_t c, int64_t i) { forward(b, c, i); };
    h.backward = [this, &b](int64_t c, int64_t i) { backward(b, c, i); };
    h.input_grad = [this, &b](int64_t c, int64_t i) { input_grad(b, c, i); };
    h.weight_grad = [this, &b](int64_t c, int64_t i) { weight_grad(b, c, i); };
    // Free finished send buffers early; this also drives MPI progress.
    h.between = [this, &b] {
      for (auto& s : b.sends) transport_.test(s);
      if (step_sums()) sync_->progress();
    };
    return h;
  }

  // Runs one batch (training or evaluation): the schedule's program for this stage, then the
  // optimizer step (training), then the metrics to rank 0 (the last chunk's stage).
  void run_batch(const ControlPayload& control, uint32_t step, bool train) {
    const auto t_step = Clock::now();
    const double wait0 = transport_.wait_seconds();
    const double busy0 = stats_.busy();
    Batch b = begin_batch(control, step, train, 0);
    if (train) {
      optimizer_->zero_grad();
      for (auto& group : optimizer_->param_groups()) group.options().set_lr(control.learning_rate);
      if (step_sums()) sync_->begin_step(step, static_cast<int64_t>(b.sizes.size()));
    }
    if (!b.sizes.empty()) execute(program(static_cast<int64_t>(b.sizes.size()), train), handlers(b), stage_);

    if (train && step_sums()) sync_->finish();  // the sum over the replicas, before clipping and the step
    if (train) {
      if (job_.config.training.grad_clip > 0) clip_gradients(step);
      const auto t0 = Clock::now();
      optimizer_->step();
      stats_.optimizer += seconds_since(t0);
      if (diloco_) diloco_->count_step(control.rows);
    }
    send_metrics(b);
    end_batch(b);
    stats_.wait += transport_.wait_seconds() - wait0;
    if (train) {
      stats_.train_wall += seconds_since(t_step);
      stats_.train_busy += stats_.busy() - busy0;
    }
  }

  // training.pipeline_flush false: training batches from `first` on as one stream (stream.h),
  // until a control that is not a training step arrives; the stream is then drained, every
  // pending update applied, and that control returned for run() to obey. Step t runs on weight
  // version t % 2, copied from the master weights when it starts, after the master took the
  // update of step t-2's gradient.
  ControlPayload run_stream(const ControlPayload& first, uint32_t& step, uint32_t& control) {
    const auto t_start = Clock::now();
    const double wait0 = transport_.wait_seconds();
    const double busy0 = stats_.busy();
    const int64_t c = chunks_.front().index;  // one chunk per stage rank
    StreamSchedule rule(stream_warmup(job_.config.training.schedule,
                                      {p_.stages, 1, job_.config.training.micro_batches}, stage_ - 1));
    std::deque<Batch> live;            // started and not yet ended, oldest first
    std::deque<std::pair<int, double>> pending;  // ended, update not applied: (version, learning rate)
    int64_t begun = 0, ended = 0;      // the stream's steps begun and ended
    std::optional<ControlPayload> next = first;
    ControlPayload last{};
    for (;;) {
      const StreamAction a = rule.next();
      if (a.kind == StreamAction::Kind::Done) break;
      if (a.kind == StreamAction::Kind::NeedStep) {
        const ControlPayload cp = next ? *next : receive_control(control++);
        next.reset();
        if (static_cast<Command>(cp.command) != Command::Train) {
          last = cp;
          rule.close();
          continue;
        }
        const int version = int(begun % 2);
        while (int64_t(pending.size()) > 0 && begun - (ended - int64_t(pending.size())) >= 2) {
          apply_update(pending.front());  // step begun - 2's gradient (and any before it)
          pending.pop_front();
        }
        load_version(version);
        live.push_back(begin_batch(cp, step++, true, version));
        rule.add_step(int64_t(live.back().sizes.size()));
        ++begun;
        continue;
      }
      Batch& b = live[size_t(a.step - ended)];
      const bool fwd = a.kind == StreamAction::Kind::Forward;
      try {
        if (fwd) forward(b, c, a.micro_batch);
        else backward(b, c, a.micro_batch);
        for (auto& s : b.sends) transport_.test(s);
      } catch (...) {
        rethrow_with("[executor] stage " + std::to_string(stage_) + ", step " + std::to_string(b.step) +
                     " without flush (" + (fwd ? "F" : "B") + std::to_string(c) + "." + std::to_string(a.micro_batch) + "): ");
      }
      rule.done(a);
      // The metrics leave with the step's last forward: rank 0 waits for them before it sends
      // a control that is not a training step (a checkpoint, the evaluation), which this rank
      // may need before the step's last backward.
      if (fwd && a.micro_batch == int64_t(b.sizes.size()) - 1) send_metrics(b);
      if (!fwd && rule.finished(a.step)) {
        pending.emplace_back(b.version, double(b.control.learning_rate));
        end_batch(b);
        live.pop_front();
        ++ended;
      }
    }
    for (const auto& u : pending) apply_update(u);  // the flush
    load_version(0);  // evaluation and checkpoints read version 0 and the master
    stats_.wait += transport_.wait_seconds() - wait0;
    stats_.train_wall += seconds_since(t_start);
    stats_.train_busy += stats_.busy() - busy0;
    return last;
  }

  // Without a flush: the gradient of weight version `u.first` (a whole step's) steps the master
  // weights at learning rate `u.second`, and is cleared.
  void apply_update(const std::pair<int, double>& u) {
    const auto t0 = Clock::now();
    size_t k = 0;
    for (Chunk& ch : chunks_) {
      for (auto& [name, p] : ch.version(u.first).named_parameters()) master_[k++].mutable_grad() = p.grad();
    }
    for (auto& group : optimizer_->param_groups()) group.options().set_lr(u.second);
    optimizer_->step();
    for (at::Tensor& m : master_) m.mutable_grad() = at::Tensor();
    for (Chunk& ch : chunks_) {
      for (auto& [name, p] : ch.version(u.first).named_parameters()) p.mutable_grad() = at::Tensor();
    }
    stats_.optimizer += seconds_since(t0);
  }

  // Without a flush: weight version `v` becomes the master weights, with no gradient.
  void load_version(int v) {
    at::NoGradGuard no_grad;
    size_t k = 0;
    for (Chunk& ch : chunks_) {
      for (auto& [name, p] : ch.version(v).named_parameters()) {
        p.copy_(master_[k++]);
        p.mutable_grad() = at::Tensor();
      }
    }
  }
  // Global-norm clipping across stages: this stage's sum of squared gradients goes to rank 0,
  // which answers with the norm over every stage; all stages then scale by the same factor
  // (torch's clip_grad_norm_: max_norm / (norm + 1e-6) when that is below 1).
  void clip_gradients(uint32_t step) {
    const auto t0 = Clock::now();
    double sq = 0;
    for (Chunk& ch : chunks_)
      for (auto& [name, p] : ch.model->named_parameters())
        if (p.grad().defined()) sq += p.grad().to(at::kDouble).pow(2).sum().item<double>();
    stats_.optimizer += seconds_since(t0);
    Request r = msg_.post_raw<double>(0, MsgKind::Norm, 0, 1);
    Request s = msg_.send_raw(&sq, 1, 0, MsgKind::Norm, step, 0);
    const double norm = msg_.finish_raw<double>(r, MsgKind::Norm, step, 0, 1)[0];
    transport_.wait(s);
    const double coef = job_.config.training.grad_clip / (norm + 1e-6);
    if (coef < 1.0) {
      at::NoGradGuard no_grad;
      for (Chunk& ch : chunks_)
        for (auto& [name, p] : ch.model->named_parameters())
          if (p.grad().defined()) p.grad().mul_(coef);
    }
  }

  // Parameters, optimizer state and RNG state under global names (partition-independent).
  // With DiLoCo each replica's inner optimizer state is its own: replica r > 0 names it
  // "<parameter>:<state>@replica<r>" (the checkpoint keeps them all), and the outer momentum
  // (the same on every replica) is replica 0's "<parameter>:diloco_momentum".
  std::string replica_suffix() const { return diloco_ && replica_ > 0 ? "@replica" + std::to_string(replica_) : ""; }

  StageState export_state(uint64_t global_step) {
    StageState st;
    st.global_step = global_step;
    auto& state = optimizer_->state();
    const std::string tag = replica_suffix();
    size_t k = 0;  // the parameter's index in the stage (Diloco's order)
    for (Chunk& ch : chunks_) {
      for (auto& [name, param] : ch.model->named_parameters()) {
        const at::Tensor& p = stream_ ? master_[k] : param;  // the tensor the optimizer steps
        st.parameters.push_back(to_named(name, p));
        if (diloco_ && replica_ == 0) st.optimizer.push_back(to_named(name + ":diloco_momentum", diloco_->momentum()[k]));
        ++k;
        auto it = state.find(c10::guts::to_string(p.unsafeGetTensorImpl()));
        if (it == state.end()) continue;
        if (auto* sgd = dynamic_cast<torch::optim::SGDParamState*>(it->second.get())) {
          if (sgd->momentum_buffer().defined()) st.optimizer.push_back(to_named(name + ":momentum_buffer" + tag, sgd->momentum_buffer()));
        } else if (auto* adam = dynamic_cast<torch::optim::AdamWParamState*>(it->second.get())) {
          st.optimizer.push_back(to_named(name + ":exp_avg" + tag, adam->exp_avg()));
          st.optimizer.push_back(to_named(name + ":exp_avg_sq" + tag, adam->exp_avg_sq()));
          NamedArray step;
          step.name = name + ":step" + tag;
          step.data = {static_cast<float>(adam->step())};
          st.optimizer.push_back(step);
        }
      }
    }
    at::Tensor rng = at::detail::getDefaultCPUGenerator().get_state();
    NamedBytes b;
    b.name = rng_name();
    b.bytes.assign(rng.data_ptr<uint8_t>(), rng.data_ptr<uint8_t>() + rng.numel());
    st.rng.push_back(std::move(b));
    return st;
  }

  void import_state(const StageState& st) {
    std::map<std::string, const NamedArray*> params, opt;
    for (const auto& a : st.parameters) params[a.name] = &a;
    // A replica's own inner state when the checkpoint has one ("...@replica<r>"), else replica 0's.
    const std::string tag = replica_suffix();
    for (const auto& a : st.optimizer) {
      if (a.name.find('@') == std::string::npos) opt.emplace(a.name, &a);
    }
    if (!tag.empty()) {
      for (const auto& a : st.optimizer) {
        if (a.name.size() > tag.size() && a.name.compare(a.name.size() - tag.size(), tag.size(), tag) == 0)
          opt[a.name.substr(0, a.name.size() - tag.size())] = &a;
      }
    }
    auto& state = optimizer_->state();
    at::NoGradGuard no_grad;
    size_t index = 0;
    for (Chunk& ch : chunks_) {
      for (auto& [name, param] : ch.model->named_parameters()) {
        at::Tensor& p = stream_ ? master_[index] : param;  // the tensor the optimizer steps
        ++index;
        auto it = params.find(name);
        if (it == params.end()) throw StorageError("[checkpoint] no tensor '" + name + "' for stage " + std::to_string(stage_));
        at::Tensor t = from_named(*it->second);
        if (!t.sizes().equals(p.sizes())) {
          throw StorageError("[checkpoint] tensor '" + name + "' has shape " + c10::str(t.sizes()) +
                             ", the model expects " + c10::str(p.sizes()));
        }
        p.copy_(t);
        const std::string key = c10::guts::to_string(p.unsafeGetTensorImpl());
        if (job_.config.training.optimizer == "adamw") {
          auto a = opt.find(name + ":exp_avg"), b = opt.find(name + ":exp_avg_sq"), c = opt.find(name + ":step");
          if (a != opt.end() && b != opt.end() && c != opt.end()) {
            auto ps = std::make_unique<torch::optim::AdamWParamState>();
            ps->exp_avg(from_named(*a->second));
            ps->exp_avg_sq(from_named(*b->second));
            ps->step(static_cast<int64_t>(c->second->data.at(0)));
            state[key] = std::move(ps);
          }
        } else {
          auto m = opt.find(name + ":momentum_buffer");
          if (m != opt.end()) {
            auto ps = std::make_unique<torch::optim::SGDParamState>();
            ps->momentum_buffer(from_named(*m->second));
            state[key] = std::move(ps);
          }
        }
      }
    }
    if (stream_) load_version(0);
    for (const auto& b : st.rng) {
      if (b.name != rng_name()) continue;
      at::Tensor t = at::empty({static_cast<int64_t>(b.bytes.size())}, at::kByte);
      std::memcpy(t.data_ptr<uint8_t>(), b.bytes.data(), b.bytes.size());
      at::Generator gen = at::detail::getDefaultCPUGenerator();
      gen.set_state(t);
    }
    if (diloco_) {  // the round starts from the loaded parameters, with the saved outer momentum
      diloco_->restart_round();
      size_t k = 0;
      for (Chunk& ch : chunks_) {
        for (auto& [name, p] : ch.model->named_parameters()) {
          auto m = opt.find(name + ":diloco_momentum");
          if (m != opt.end()) diloco_->momentum()[k].copy_(from_named(*m->second));
          ++k;
        }
      }
    }
  }

  // The torch generator (dropout) is the process's: one per stage, saved as "stage<s-1>".
  std::string rng_name() const { return "stage" + std::to_string(stage_ - 1); }

  const Job& job_;
  const Placement& p_;
  int64_t stage_;
  int64_t replica_;
  Transport& transport_;
  RankStats stats_;
  Messenger msg_;
  std::vector<Chunk> chunks_;  // ascending chunk index: chunk c is chunks_[c / S]
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
  std::unique_ptr<GradientSync> sync_;  // with replicas
  std::unique_ptr<Diloco> diloco_;      // with training.sync diloco (its outer sums through sync_)
  // The gradients are summed every step (replicas without DiLoCo).
  bool step_sums() const { return sync_ && !diloco_; }
  std::map<int64_t, Program> train_programs_, eval_programs_;  // by micro-batch count
  int bits_ = 32, input_bits_ = 32;
  bool split_ = false;

  // training.pipeline_flush false: the optimizer's own copy of the weights, in the stage's
  // parameter order (the chunks' two versions are loaded from it).
  bool stream_ = false;
  std::vector<at::Tensor> master_;
  // Error feedback: per (chunk, micro-batch) the quantization error of its last gradient
  // message, added to the next step's. Not checkpointed: a resumed run starts them at zero.
  std::map<std::pair<int64_t, int64_t>, at::Tensor> residuals_;
};

}  // namespace

void run_stage(const Job& job, Placement::Slot slot, Transport& transport, Group* replicas) {
  StageWorker worker(job, slot, transport, replicas);
  worker.run();
}

void run_idle(Transport& transport) {
  RankStats stats;
  Messenger msg(transport, stats);
  // Idle for the whole job: no wait limit (it is for peers that should be talking).
  const double limit = transport.wait_limit();
  transport.set_wait_limit(0);
  for (uint32_t step = 0;; ++step) {
    const ControlPayload c = msg.receive_one<ControlPayload>(0, MsgKind::Control, step);
    if (static_cast<Command>(c.command) == Command::Stop) break;
  }
  transport.set_wait_limit(limit);
}

}  // namespace arceus
