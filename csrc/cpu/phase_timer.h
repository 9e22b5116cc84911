// Opt-in wall-clock timers for the phases of a kernel call (developer tool, see benchmarks/decoder_phases.sh).
// Compiled in only when the build defines SAMFAST_PHASE_TIMERS (CMake -DSAMFAST_PHASE_TIMERS=ON); otherwise the
// macros expand to nothing. With it, every SAMFAST_PHASE_REPORT calls (environment, default 500) the mean time of
// each phase over those calls goes to stderr, one "phase  ms" line each, and the sums restart.
//   SAMFAST_PHASE_BEGIN("cached_decoder");   // at the call's start (one timed call site per function)
//   SAMFAST_PHASE("layer 0 token side");     // the time since the previous mark goes to this phase
#pragma once

#ifdef SAMFAST_PHASE_TIMERS
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <vector>

namespace samfast::cpu {

class PhaseTimer {
 public:
  struct Sums {
    std::mutex mu;
    std::vector<std::string> names;
    std::vector<double> seconds;
    long calls = 0;
  };
  PhaseTimer(const char* call, Sums& sums) : call_(call), sums_(sums), last_(now()) {}
  void mark(const char* phase) {
    const double t = now();
    marks_.emplace_back(phase, t - last_);
    last_ = now();  // the bookkeeping above is not charged to the next phase
  }
  ~PhaseTimer() {
    std::lock_guard<std::mutex> lock(sums_.mu);
    for (size_t i = 0; i < marks_.size(); ++i) {
      if (i >= sums_.names.size()) sums_.names.push_back(marks_[i].first), sums_.seconds.push_back(0.0);
      sums_.seconds[i] += marks_[i].second;
    }
    const char* env = std::getenv("SAMFAST_PHASE_REPORT");
    const long every = env ? std::max(1L, std::atol(env)) : 500L;
    if (++sums_.calls % every == 0) {
      std::fprintf(stderr, "[samfast phases] %s, mean of %ld calls\n", call_, every);
      for (size_t i = 0; i < sums_.names.size(); ++i) {
        std::fprintf(stderr, "  %-56s %8.3f ms\n", sums_.names[i].c_str(), 1e3 * sums_.seconds[i] / double(every));
        sums_.seconds[i] = 0.0;
      }
    }
  }

 private:
  static double now() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
  }
  const char* call_;
  Sums& sums_;
  double last_;
  std::vector<std::pair<std::string, double>> marks_;
};

}  // namespace samfast::cpu

#define SAMFAST_PHASE_BEGIN(call)                            \
  static ::samfast::cpu::PhaseTimer::Sums samfast_phase_sums_; \
  ::samfast::cpu::PhaseTimer samfast_phase_timer_(call, samfast_phase_sums_)
#define SAMFAST_PHASE(phase) samfast_phase_timer_.mark(phase)
#else
#define SAMFAST_PHASE_BEGIN(call) static_cast<void>(0)
#define SAMFAST_PHASE(phase) static_cast<void>(0)
#endif
