// The validator: structural checks on every rank's program, then an event simulation of all
// ranks together. Ranks run their programs strictly in order; an action's start time is fixed
// once its dependencies' finish times are known, so sweeping the ranks until none can advance
// gives the exact times, and no advance before all are done is a deadlock.
#include "ranks/schedule/simulate.h"

#include <algorithm>
#include <cmath>
#include <optional>

#include "ranks/schedule/dataflow.h"

namespace arceus {
namespace {

constexpr ActionKind kKinds[] = {ActionKind::Forward, ActionKind::Backward, ActionKind::InputGrad,
                                 ActionKind::WeightGrad};

int kind_index(ActionKind k) {
  switch (k) {
    case ActionKind::Forward: return 0;
    case ActionKind::Backward: return 1;
    case ActionKind::InputGrad: return 2;
    case ActionKind::WeightGrad: return 3;
  }
  return -1;
}

double cost_of(ActionKind k, const ActionCosts& c) {
  switch (k) {
    case ActionKind::Forward: return c.forward;
    case ActionKind::Backward: return c.backward;
    case ActionKind::InputGrad: return c.input_grad;
    case ActionKind::WeightGrad: return c.weight_grad;
  }
  return 0;
}

// An action's cost: its kind's, scaled by its chunk's (checked by check_shape).
double cost_of(const Action& a, const ActionCosts& c) {
  const double scale = c.chunk_scale.empty() ? 1.0 : c.chunk_scale[static_cast<size_t>(a.chunk)];
  return cost_of(a.kind, c) * scale;
}

struct Position {
  int64_t rank = -1;
  int64_t step = -1;
  bool valid() const { return rank >= 0; }
};

std::string where(const Position& p) {
  return "rank " + std::to_string(p.rank) + " step " + std::to_string(p.step);
}

Action act(ActionKind kind, int64_t chunk, int64_t micro_batch) {
  return Action{kind, static_cast<int32_t>(chunk), static_cast<int32_t>(micro_batch)};
}

// Where each action is in the programs: one table per kind, indexed chunk * M + micro-batch.
class Index {
 public:
  // Only for a valid shape (S, v, M >= 1).
  void reset(const PipelineShape& shape) {
    micro_batches_ = shape.micro_batches;
    table_.assign(4,
                  std::vector<Position>(static_cast<size_t>(shape.chunks() * shape.micro_batches)));
  }

  Position& at(ActionKind kind, int64_t chunk, int64_t micro_batch) {
    return table_[kind_index(kind)][static_cast<size_t>(chunk * micro_batches_ + micro_batch)];
  }
  Position at(const Action& a) { return at(a.kind, a.chunk, a.micro_batch); }

 private:
  int64_t micro_batches_ = 0;
  std::vector<std::vector<Position>> table_;
};

// One row per rank, cells left-aligned in columns of one width; `header` labels the columns,
// `tails` (if given) is free text after a rank's cells.
std::string render(const std::string& corner, const std::vector<std::string>& header,
                   const std::vector<std::vector<std::string>>& rows,
                   const std::vector<std::string>& tails = {}) {
  size_t label_width = corner.size();
  for (size_t r = 0; r < rows.size(); ++r) {
    label_width = std::max(label_width, ("rank " + std::to_string(r)).size());
  }
  size_t width = 1;
  for (const auto& h : header) width = std::max(width, h.size());
  for (const auto& row : rows) {
    for (const auto& cell : row) width = std::max(width, cell.size());
  }
  const auto line = [&](const std::string& label, const std::vector<std::string>& cells,
                        const std::string& tail) {
    std::string out = label + std::string(label_width - label.size(), ' ');
    for (const auto& cell : cells) out += " " + cell + std::string(width - cell.size(), ' ');
    if (!tail.empty()) out += " " + tail;
    while (!out.empty() && out.back() == ' ') out.pop_back();
    return out + "\n";
  };
  std::string out = line(corner, header, "");
  for (size_t r = 0; r < rows.size(); ++r) {
    out += line("rank " + std::to_string(r), rows[r], r < tails.size() ? tails[r] : "");
  }
  return out;
}

std::string marked(const Action& a) { return "[" + to_string(a) + "]"; }

// The programs as written, one column per step, `mark` (if any) in brackets.
std::string program_grid(const std::vector<Program>& programs, std::optional<Position> mark) {
  size_t steps = 0;
  for (const auto& p : programs) steps = std::max(steps, p.size());
  std::vector<std::string> header;
  for (size_t i = 0; i < steps; ++i) header.push_back(std::to_string(i));
  std::vector<std::vector<std::string>> rows;
  for (size_t r = 0; r < programs.size(); ++r) {
    std::vector<std::string> row;
    for (size_t i = 0; i < programs[r].size(); ++i) {
      const bool is_mark =
          mark && mark->rank == static_cast<int64_t>(r) && mark->step == static_cast<int64_t>(i);
      row.push_back(is_mark ? marked(programs[r][i]) : to_string(programs[r][i]));
    }
    rows.push_back(std::move(row));
  }
  return render("step", header, rows);
}

class Validator {
 public:
  Validator(const std::vector<Program>& programs, const PipelineShape& shape,
            const ActionCosts& costs, bool training)
      : programs_(programs), shape_(shape), costs_(costs), training_(training) {}

  Simulation run() {
    if (!check_shape()) return result_;
    index_.reset(shape_);
    if (!check_actions() || !check_complete() || !check_same_rank_order()) {
      return result_;
    }
    simulate_all();
    return result_;
  }

 private:
  bool fail(const std::string& error, std::optional<Position> mark) {
    result_.ok = false;
    result_.error = error;
    result_.grid = program_grid(programs_, mark);
    return false;
  }

  bool check_shape() {
    if (shape_.ranks < 1 || shape_.chunks_per_rank < 1 || shape_.micro_batches < 1) {
      return fail("bad shape " + to_string(shape_) + ": S, v and M must be at least 1", {});
    }
    if (static_cast<int64_t>(programs_.size()) != shape_.ranks) {
      return fail("expected " + std::to_string(shape_.ranks) +
                      " programs (one per stage rank), got " + std::to_string(programs_.size()),
                  {});
    }
    if (!costs_.chunk_scale.empty()) {
      if (static_cast<int64_t>(costs_.chunk_scale.size()) != shape_.chunks()) {
        return fail("chunk_scale has " + std::to_string(costs_.chunk_scale.size()) + " entries for " +
                        std::to_string(shape_.chunks()) + " chunks",
                    {});
      }
      for (double c : costs_.chunk_scale) {
        if (!(c > 0) || !std::isfinite(c)) {
          return fail("a chunk's cost scale must be a positive finite number, got " + std::to_string(c), {});
        }
      }
    }
    for (const ActionKind k : kKinds) {
      const double c = cost_of(k, costs_);
      if (!(c > 0) || !std::isfinite(c)) {
        return fail(std::string("the cost of ") + static_cast<char>(k) +
                        " must be a positive finite number, got " + std::to_string(c),
                    {});
      }
    }
    return true;
  }

  // Kind, range, owner rank and uniqueness of every action; fills the index.
  bool check_actions() {
    const int64_t chunks = shape_.chunks();
    for (int64_t r = 0; r < shape_.ranks; ++r) {
      const Program& p = programs_[r];
      for (int64_t i = 0; i < static_cast<int64_t>(p.size()); ++i) {
        const Action& a = p[i];
        const Position here{r, i};
        const std::string at = where(here) + ": ";
        if (kind_index(a.kind) < 0) {
          return fail(at + "unknown action kind " + std::to_string(static_cast<int>(a.kind)), here);
        }
        if (a.chunk < 0 || a.chunk >= chunks) {
          return fail(at + to_string(a) + ": chunk " + std::to_string(a.chunk) + " out of range (" +
                          std::to_string(chunks) + " chunks: 0.." + std::to_string(chunks - 1) +
                          ")",
                      here);
        }
        if (a.micro_batch < 0 || a.micro_batch >= shape_.micro_batches) {
          return fail(at + to_string(a) + ": micro-batch " + std::to_string(a.micro_batch) +
                          " out of range (0.." + std::to_string(shape_.micro_batches - 1) + ")",
                      here);
        }
        if (rank_of_chunk(a.chunk, shape_.ranks) != r) {
          return fail(at + to_string(a) + " is on the wrong rank: chunk " +
                          std::to_string(a.chunk) + " lives on stage rank " +
                          std::to_string(rank_of_chunk(a.chunk, shape_.ranks)),
                      here);
        }
        if (!training_ && a.kind != ActionKind::Forward) {
          return fail(at + to_string(a) + " in a forward-only program (only F allowed)", here);
        }
        Position& slot = index_.at(a.kind, a.chunk, a.micro_batch);
        if (slot.valid()) {
          return fail(to_string(a) + " appears twice: " + where(slot) + " and " + where(here),
                      here);
        }
        slot = here;
      }
    }
    return true;
  }

  // Exactly one F per (chunk, micro-batch) and, when training, one B or one I and one W.
  bool check_complete() {
    for (int64_t c = 0; c < shape_.chunks(); ++c) {
      for (int64_t m = 0; m < shape_.micro_batches; ++m) {
        const Action f = act(ActionKind::Forward, c, m), b = act(ActionKind::Backward, c, m),
                     in = act(ActionKind::InputGrad, c, m), w = act(ActionKind::WeightGrad, c, m);
        if (!index_.at(f).valid()) return fail("missing " + to_string(f), {});
        if (!training_) continue;
        const Position pb = index_.at(b), pi = index_.at(in), pw = index_.at(w);
        if (pb.valid() && pi.valid()) {
          return fail("both " + to_string(b) + " (" + where(pb) + ") and " + to_string(in) + " (" +
                          where(pi) + "): a backward is either B or I and W",
                      pi);
        }
        if (pb.valid() && pw.valid()) {
          return fail("both " + to_string(b) + " (" + where(pb) + ") and " + to_string(w) + " (" +
                          where(pw) + "): a backward is either B or I and W",
                      pw);
        }
        if (pi.valid() && !pw.valid()) {
          return fail(to_string(in) + " (" + where(pi) + ") without its " + to_string(w), pi);
        }
        if (pw.valid() && !pi.valid()) {
          return fail(to_string(w) + " (" + where(pw) + ") without its " + to_string(in), pw);
        }
        if (!pb.valid() && !pi.valid()) {
          return fail("missing the backward of chunk " + std::to_string(c) + ", micro-batch " +
                          std::to_string(m) + ": " + to_string(b) + " (or " + to_string(in) +
                          " and " + to_string(w) + ")",
                      {});
        }
      }
    }
    return true;
  }

  // The actions `a` waits for (after check_complete every one exists): its own chunk's
  // prerequisite, then the producer of every message it consumes (dataflow.h), the schedule's B
  // or its I for a gradient.
  std::vector<Action> dependencies(const Action& a) {
    std::vector<Action> deps;
    if (const auto before = same_chunk_prerequisite(a)) deps.push_back(*before);
    for (const Message& msg : consumes(a, shape_)) {
      const std::vector<ActionKind> kinds = producers(msg);
      for (size_t k = 0; k < kinds.size(); ++k) {
        const Action p = act(kinds[k], msg.from, msg.micro_batch);
        if (index_.at(p).valid() || k + 1 == kinds.size()) {
          deps.push_back(p);
          break;
        }
      }
    }
    return deps;
  }

  // A dependency later in the same rank's program can never run first: say so directly rather
  // than as a deadlock.
  bool check_same_rank_order() {
    for (int64_t r = 0; r < shape_.ranks; ++r) {
      for (int64_t i = 0; i < static_cast<int64_t>(programs_[r].size()); ++i) {
        const Action& a = programs_[r][i];
        for (const Action& d : dependencies(a)) {
          const Position pd = index_.at(d);
          if (pd.rank == r && pd.step > i) {
            return fail(where({r, i}) + ": " + to_string(a) + " comes before " + to_string(d) +
                            " (step " + std::to_string(pd.step) + "), which it needs",
                        Position{r, i});
          }
        }
      }
    }
    return true;
  }

  void simulate_all() {
    const size_t S = static_cast<size_t>(shape_.ranks);
    next_.assign(S, 0);
    free_.assign(S, 0.0);
    start_.assign(S, {});
    finish_.assign(S, {});
    std::vector<double> busy(S, 0.0);
    size_t remaining = 0;
    for (const auto& p : programs_) remaining += p.size();
    bool advanced = true;
    while (remaining > 0 && advanced) {
      advanced = false;
      for (size_t r = 0; r < S; ++r) {
        const Program& p = programs_[r];
        while (next_[r] < p.size()) {
          const Action& a = p[next_[r]];
          double ready = free_[r];
          bool blocked = false;
          for (const Action& d : dependencies(a)) {
            const Position pd = index_.at(d);
            if (next_[pd.rank] <= static_cast<size_t>(pd.step)) {
              blocked = true;
              break;
            }
            ready = std::max(ready, finish_[pd.rank][pd.step]);
          }
          if (blocked) break;
          const double cost = cost_of(a, costs_);
          start_[r].push_back(ready);
          finish_[r].push_back(ready + cost);
          free_[r] = ready + cost;
          busy[r] += cost;
          ++next_[r];
          --remaining;
          advanced = true;
        }
      }
    }
    if (remaining > 0) {
      result_.ok = false;
      result_.error = deadlock_message();
      result_.grid = time_grid(/*stalled=*/true);
      return;
    }
    result_.ok = true;
    result_.makespan = *std::max_element(free_.begin(), free_.end());
    result_.busy = busy;
    double idle = 0;
    for (const double b : busy) idle += result_.makespan > 0 ? 1.0 - b / result_.makespan : 0.0;
    result_.bubble = idle / static_cast<double>(S);
    result_.grid = time_grid(/*stalled=*/false);
  }

  std::string deadlock_message() {
    std::string out = "deadlock: no rank can run its next action:";
    bool first = true;
    for (int64_t r = 0; r < shape_.ranks; ++r) {
      const Program& p = programs_[r];
      if (next_[r] >= p.size()) continue;
      const Action& a = p[next_[r]];
      std::string waits;
      for (const Action& d : dependencies(a)) {
        const Position pd = index_.at(d);
        if (next_[pd.rank] > static_cast<size_t>(pd.step)) continue;
        waits += (waits.empty() ? "" : " and ") + to_string(d) + " (" + where(pd) + ")";
      }
      out += std::string(first ? " " : "; ") + where({r, static_cast<int64_t>(next_[r])}) + " " +
             to_string(a) + " waits for " + waits;
      first = false;
    }
    return out;
  }

  // Columns are time slots of the smallest cost in use; an action fills as many slots as its
  // cost covers ("~" after its name), "." is idle. With `stalled`, each blocked rank's next
  // action is marked where the rank stopped, followed by how many actions were left.
  std::string time_grid(bool stalled) {
    double unit = 0;
    for (const auto& p : programs_) {
      for (const Action& a : p) {
        const double c = cost_of(a, costs_);
        unit = unit == 0 ? c : std::min(unit, c);
      }
    }
    if (unit == 0) unit = 1;
    const auto slot = [&](double t) { return static_cast<size_t>(std::floor(t / unit + 1e-9)); };
    std::vector<std::vector<std::string>> rows(programs_.size());
    std::vector<std::string> tails(programs_.size());
    size_t columns = 0;
    for (size_t r = 0; r < programs_.size(); ++r) {
      std::vector<std::string>& row = rows[r];
      const auto place = [&](size_t at, const std::string& cell, size_t span) {
        at = std::max(at, row.size());  // never overlap (costs that are not multiples of unit)
        row.resize(at, ".");
        row.push_back(cell);
        for (size_t k = 1; k < span; ++k) row.push_back("~");
      };
      for (size_t i = 0; i < start_[r].size(); ++i) {
        const Action& a = programs_[r][i];
        const double cost = cost_of(a, costs_);
        place(slot(start_[r][i]), to_string(a),
              std::max<size_t>(1, static_cast<size_t>(std::llround(cost / unit))));
      }
      if (stalled && next_[r] < programs_[r].size()) {
        place(slot(free_[r]), marked(programs_[r][next_[r]]), 1);
        const size_t left = programs_[r].size() - next_[r] - 1;
        if (left > 0) tails[r] = "(+" + std::to_string(left) + " more)";
      }
      columns = std::max(columns, row.size());
    }
    std::vector<std::string> header;
    for (size_t i = 0; i < columns; ++i) header.push_back(std::to_string(i));
    return render("slot", header, rows, tails);
  }

  const std::vector<Program>& programs_;
  const PipelineShape& shape_;
  const ActionCosts& costs_;
  const bool training_;
  Index index_;
  Simulation result_;
  std::vector<size_t> next_;                         // per rank: the next step to run
  std::vector<double> free_;                         // per rank: when its last action finished
  std::vector<std::vector<double>> start_, finish_;  // per rank and run step
};

}  // namespace

Simulation simulate(const std::vector<Program>& programs, const PipelineShape& shape,
                    const ActionCosts& costs, bool training) {
  return Validator(programs, shape, costs, training).run();
}

}  // namespace arceus
