// The NCCL communicators of a tensor-parallel group in one process (one per GPU), and the watchdog
// that turns a failed or hung collective into a process exit with a message: a pod whose GPUs can no
// longer agree must be restarted by Kubernetes, never left hanging.
#pragma once
#include <nccl.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "engine/errors.h"

namespace pagoda::cuda {

// A collective that failed after startup leaves the group's state unknown: report and exit.
[[noreturn]] inline void collective_failed(const std::string& why) {
  std::fprintf(stderr, "pagoda: tensor-parallel collective failed: %s; exiting so the pod is restarted\n", why.c_str());
  std::fflush(stderr);
  std::_Exit(1);
}

inline void check_nccl(ncclResult_t r, const char* what) {
  if (r != ncclSuccess && r != ncclInProgress) collective_failed(std::string(what) + ": " + ncclGetErrorString(r));
}

class NcclGroup {
 public:
  // Communicators for devices 0..n-1 (n > 1), made from one thread.
  explicit NcclGroup(int n) : comms_(n, nullptr) {
    std::vector<int> devs(n);
    for (int i = 0; i < n; i++) devs[i] = i;
    ncclResult_t r = ncclCommInitAll(comms_.data(), n, devs.data());
    if (r != ncclSuccess)
      throw EngineError(std::string("tensor parallelism: NCCL could not join the GPUs: ") + ncclGetErrorString(r));
  }
  ~NcclGroup() {
    for (ncclComm_t c : comms_)
      if (c) ncclCommDestroy(c);
  }
  NcclGroup(const NcclGroup&) = delete;
  NcclGroup& operator=(const NcclGroup&) = delete;

  ncclComm_t comm(int rank) const { return comms_[rank]; }
  const std::vector<ncclComm_t>& comms() const { return comms_; }

 private:
  std::vector<ncclComm_t> comms_;
};

// Armed around every phase that waits on collectives. If a phase outlives the timeout, or NCCL reports
// an asynchronous error on any communicator, the process exits non-zero with the reason.
class CollectiveWatchdog {
 public:
  CollectiveWatchdog(std::vector<ncclComm_t> comms, double timeout_s) : comms_(std::move(comms)), timeout_s_(timeout_s) {
    thread_ = std::thread([this] { loop(); });
  }
  ~CollectiveWatchdog() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  CollectiveWatchdog(const CollectiveWatchdog&) = delete;
  CollectiveWatchdog& operator=(const CollectiveWatchdog&) = delete;

  double timeout_s() const { return timeout_s_; }

  // `what` must outlive the phase (a string literal).
  void arm(const char* what, double timeout_s) {
    std::lock_guard<std::mutex> lock(mu_);
    what_ = what;
    phase_s_ = timeout_s;
    deadline_ = std::chrono::steady_clock::now() + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                                       std::chrono::duration<double>(timeout_s));
    armed_ = true;
  }
  void arm(const char* what) { arm(what, timeout_s_); }
  void disarm() {
    std::lock_guard<std::mutex> lock(mu_);
    armed_ = false;
  }

 private:
  void loop() {
    std::unique_lock<std::mutex> lock(mu_);
    while (!stop_) {
      cv_.wait_for(lock, std::chrono::milliseconds(100));
      if (stop_) return;
      for (ncclComm_t c : comms_) {
        ncclResult_t async = ncclSuccess;
        if (ncclCommGetAsyncError(c, &async) == ncclSuccess && async != ncclSuccess && async != ncclInProgress)
          collective_failed(std::string("NCCL reported ") + ncclGetErrorString(async));
      }
      if (armed_ && std::chrono::steady_clock::now() > deadline_) {
        char msg[160];
        std::snprintf(msg, sizeof msg, "%s did not finish within %.1f s (PAGODA_TP_TIMEOUT_S)", what_, phase_s_);
        collective_failed(msg);
      }
    }
  }

  std::vector<ncclComm_t> comms_;
  double timeout_s_, phase_s_ = 0;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false, armed_ = false;
  const char* what_ = "";
  std::chrono::steady_clock::time_point deadline_;
};

}  // namespace pagoda::cuda
