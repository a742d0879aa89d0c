#include "ranks/schedule/action.h"

namespace arceus {

std::string to_string(const Action& a) {
  return static_cast<char>(a.kind) + std::to_string(a.chunk) + "." + std::to_string(a.micro_batch);
}

std::string to_string(const PipelineShape& shape) {
  return "S=" + std::to_string(shape.ranks) + ", v=" + std::to_string(shape.chunks_per_rank) +
         ", M=" + std::to_string(shape.micro_batches);
}

std::vector<int64_t> chunks_of_rank(int64_t rank, const PipelineShape& shape) {
  std::vector<int64_t> chunks;
  if (shape.ranks < 1 || rank < 0 || rank >= shape.ranks) return chunks;
  for (int64_t c = rank; c < shape.chunks(); c += shape.ranks) chunks.push_back(c);
  return chunks;
}

}  // namespace arceus
