#include "ranks/schedule/dataflow.h"

namespace arceus {

std::vector<Message> consumes(const Action& a, const PipelineShape& shape) {
  const int64_t c = a.chunk, m = a.micro_batch, last = shape.chunks() - 1;
  std::vector<Message> out;
  switch (a.kind) {
    case ActionKind::Forward:
      out.push_back(c == 0 ? Message{Flow::Input, kOrchestrator, 0, m} : Message{Flow::Activation, c - 1, c, m});
      if (c == last) out.push_back(Message{Flow::Labels, kOrchestrator, last, m});
      break;
    case ActionKind::Backward:
    case ActionKind::InputGrad:
      if (c < last) out.push_back(Message{Flow::Gradient, c + 1, c, m});
      break;
    case ActionKind::WeightGrad: break;
  }
  return out;
}

std::optional<Message> sends(const Action& a, const PipelineShape& shape) {
  const int64_t c = a.chunk, m = a.micro_batch;
  switch (a.kind) {
    case ActionKind::Forward:
      if (c + 1 < shape.chunks()) return Message{Flow::Activation, c, c + 1, m};
      break;
    case ActionKind::Backward:
    case ActionKind::InputGrad:
      if (c > 0) return Message{Flow::Gradient, c, c - 1, m};
      break;
    case ActionKind::WeightGrad: break;
  }
  return std::nullopt;
}

std::vector<Message> orchestrator_sends(int64_t micro_batch, const PipelineShape& shape) {
  return {Message{Flow::Input, kOrchestrator, 0, micro_batch},
          Message{Flow::Labels, kOrchestrator, shape.chunks() - 1, micro_batch}};
}

std::vector<ActionKind> producers(const Message& m) {
  switch (m.flow) {
    case Flow::Activation: return {ActionKind::Forward};
    case Flow::Gradient: return {ActionKind::Backward, ActionKind::InputGrad};
    case Flow::Input:
    case Flow::Labels: break;
  }
  return {};
}

std::optional<Action> same_chunk_prerequisite(const Action& a) {
  switch (a.kind) {
    case ActionKind::Backward:
    case ActionKind::InputGrad: return Action{ActionKind::Forward, a.chunk, a.micro_batch};
    case ActionKind::WeightGrad: return Action{ActionKind::InputGrad, a.chunk, a.micro_batch};
    case ActionKind::Forward: break;
  }
  return std::nullopt;
}

}  // namespace arceus
