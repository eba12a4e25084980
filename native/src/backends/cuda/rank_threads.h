// One host thread per GPU of a tensor-parallel group. Each thread keeps its device current for its
// whole life (CUDA's current device is per thread), and runs the same job for its rank when asked.
// With one rank the job runs on the caller's thread: tensor parallelism 1 pays nothing for this.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace pagoda::cuda {

class RankThreads {
 public:
  explicit RankThreads(int ranks) : ranks_(ranks) {
    if (ranks_ > 1)
      for (int r = 0; r < ranks_; r++) threads_.emplace_back([this, r] { loop(r); });
  }
  ~RankThreads() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
      generation_.fetch_add(1);
    }
    wake_.notify_all();
    for (auto& t : threads_) t.join();
  }
  RankThreads(const RankThreads&) = delete;
  RankThreads& operator=(const RankThreads&) = delete;

  int size() const { return ranks_; }

  // Runs job(rank) for every rank at once and waits for all; rethrows the first rank's exception.
  void run(const std::function<void(int)>& job) {
    if (ranks_ == 1) {
      job(0);
      return;
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      job_ = &job;
      errors_.assign(ranks_, nullptr);
      pending_.store(ranks_);
      generation_.fetch_add(1);
    }
    wake_.notify_all();
    // Steps take milliseconds: yield-spin rather than sleep, so the answer is seen at once.
    while (pending_.load(std::memory_order_acquire) > 0) std::this_thread::yield();
    job_ = nullptr;
    for (auto& e : errors_)
      if (e) std::rethrow_exception(e);
  }

 private:
  void loop(int rank) {
    uint64_t seen = 0;
    for (;;) {
      // Spin briefly (back-to-back steps arrive within microseconds), then block.
      for (int i = 0; i < 20000 && generation_.load(std::memory_order_acquire) == seen; i++) std::this_thread::yield();
      {
        std::unique_lock<std::mutex> lock(mu_);
        wake_.wait(lock, [&] { return generation_.load() != seen; });
        seen = generation_.load();
        if (stop_) return;
      }
      try {
        (*job_)(rank);
      } catch (...) {
        errors_[rank] = std::current_exception();
      }
      pending_.fetch_sub(1, std::memory_order_release);
    }
  }

  const int ranks_;
  std::vector<std::thread> threads_;
  std::mutex mu_;
  std::condition_variable wake_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  const std::function<void(int)>* job_ = nullptr;
  std::vector<std::exception_ptr> errors_;
  bool stop_ = false;
};

}  // namespace pagoda::cuda
