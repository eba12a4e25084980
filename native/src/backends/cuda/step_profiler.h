// Where a rank's GPU time goes, per kind of work (PAGODA_PROFILE=1): CUDA events between the operations of
// each step, their elapsed times summed per kind, printed as a table when the rank is torn down. The
// steps then run eagerly (no decode graphs), so the kernel times are real but the gaps between kernels
// include launch gaps a graph would not have. Host time before a step's first GPU work and after its last
// (input preparation, waiting for the result) is printed apart.
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "backends/cuda/device_memory.h"
#include "backends/cuda/env_choice.h"

namespace pagoda::cuda {

class StepProfiler {
 public:
  StepProfiler() : enabled_(env_choice("PAGODA_PROFILE", {"0", "1"}) == "1") {}
  ~StepProfiler() {
    for (cudaEvent_t e : events_) cudaEventDestroy(e);
  }
  StepProfiler(const StepProfiler&) = delete;
  StepProfiler& operator=(const StepProfiler&) = delete;

  bool enabled() const { return enabled_; }

  // The work enqueued on `s` from now until the next mark (or the end of the step) is charged to `what`
  // (a string literal). Nothing happens unless profiling.
  void mark(const char* what, cudaStream_t s) {
    if (!enabled_) return;
    if (used_ == 0) step_start_ = std::chrono::steady_clock::now();
    if (used_ == events_.size()) {
      cudaEvent_t e;
      check(cudaEventCreate(&e), "cudaEventCreate(profile)");
      events_.push_back(e);
    }
    check(cudaEventRecord(events_[used_], s), "cudaEventRecord(profile)");
    kinds_.resize(used_ + 1);
    kinds_[used_++] = what;
  }

  // Forgets the marks since the last step (work that is not a step: connecting the GPUs).
  void discard() { used_ = 0; }

  // After the step's work is complete (its stream synchronised): adds the step's times to the totals.
  void end_step(cudaStream_t s) {
    if (!enabled_ || used_ == 0) return;
    mark("(end)", s);
    check(cudaEventSynchronize(events_[used_ - 1]), "cudaEventSynchronize(profile)");
    for (size_t i = 0; i + 1 < used_; i++) {
      float ms = 0;
      check(cudaEventElapsedTime(&ms, events_[i], events_[i + 1]), "cudaEventElapsedTime(profile)");
      Total& t = totals_[kinds_[i]];
      t.ms += ms;
      t.calls++;
      gpu_ms_ += ms;
    }
    wall_ms_ += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - step_start_).count();
    steps_++;
    used_ = 0;
  }

  // The table, to stderr in one write (ranks report from their own threads at once).
  void report(int rank) const {
    if (!enabled_ || steps_ == 0) return;
    std::string text;
    char line[200];
    std::snprintf(line, sizeof line, "pagoda: profile of rank %d over %lld steps (eager; ms per step, share of the step's wall time)\n",
                  rank, static_cast<long long>(steps_));
    text += line;
    std::vector<std::pair<double, std::string>> rows;
    for (const auto& [kind, t] : totals_) rows.emplace_back(t.ms, kind);
    std::sort(rows.rbegin(), rows.rend());
    const double per = static_cast<double>(steps_);
    for (const auto& [ms, kind] : rows) {
      std::snprintf(line, sizeof line, "  %-28s %9.3f ms  %5.1f%%  (%lld calls)\n", kind.c_str(), ms / per, 100.0 * ms / wall_ms_,
                    static_cast<long long>(totals_.at(kind).calls));
      text += line;
    }
    std::snprintf(line, sizeof line, "  %-28s %9.3f ms  %5.1f%%\n  %-28s %9.3f ms\n", "host, outside the GPU work",
                  (wall_ms_ - gpu_ms_) / per, 100.0 * (wall_ms_ - gpu_ms_) / wall_ms_, "step (wall)", wall_ms_ / per);
    text += line;
    std::fputs(text.c_str(), stderr);
  }

 private:
  struct Total {
    double ms = 0;
    int64_t calls = 0;
  };
  bool enabled_ = false;
  std::vector<cudaEvent_t> events_;
  std::vector<const char*> kinds_;
  size_t used_ = 0;
  std::map<std::string, Total> totals_;
  double gpu_ms_ = 0, wall_ms_ = 0;
  int64_t steps_ = 0;
  std::chrono::steady_clock::time_point step_start_;
};

}  // namespace pagoda::cuda
