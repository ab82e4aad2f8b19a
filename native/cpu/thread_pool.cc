// thread_pool.cc: see thread_pool.hpp for the contract.
//
// A meta-step takes about 0.1 ms, so waking sleeping threads through the kernel for each one
// would cost a large share of it. Workers therefore spin for a short while (kSpin pauses, some
// tens of microseconds) on the generation counter before they sleep on a condition variable,
// and the caller spins on the count of finished jobs before it sleeps. Between the meta-steps
// of a training loop the workers are usually still spinning and start at once.
#include "thread_pool.hpp"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#include <immintrin.h>
#define MAML_PAUSE() _mm_pause()
#else
#define MAML_PAUSE() std::this_thread::yield()
#endif

namespace maml {
namespace {

constexpr int kSpin = 4000;

class Pool {
 public:
  explicit Pool(int n) { start(n); }
  ~Pool() { stop(); }

  int size() const { return size_; }

  void resize(int n) {
    std::lock_guard<std::mutex> run(run_mutex_);
    stop();
    start(n);
  }

  void run(int64_t n_jobs, const std::function<void(int64_t, int)>& fn) {
    if (n_jobs <= 0) return;
    // One job, or a pool busy with another caller's work (a second Node thread): run on the
    // calling thread, so that concurrent small calls proceed in parallel instead of queueing.
    std::unique_lock<std::mutex> run(run_mutex_, std::try_to_lock);
    if (!run.owns_lock() || size_ <= 1 || n_jobs == 1) {
      if (run.owns_lock()) run.unlock();
      for (int64_t j = 0; j < n_jobs; ++j) fn(j, 0);
      return;
    }
    for (int64_t first = 0; first < n_jobs; first += kMaxJobs) run_chunk(first, std::min(kMaxJobs, n_jobs - first), fn);
  }

 private:
  // The claim word: (jobs of the current call << 32) | next unclaimed job. A worker takes job
  // j by moving the word from (n, j) to (n, j + 1), and reads fn_ and first_ only after that
  // succeeded: the caller of that call cannot return (and the next call cannot publish other
  // values) before job j is done. So a worker that wakes late, even during a later call,
  // takes only jobs of the call in progress, and the caller waits for the jobs that were
  // taken, never for a worker that took none (one descheduled by another process used to
  // stall every call until it ran again).
  static constexpr int64_t kMaxJobs = (INT64_C(1) << 31) - 1;
  static uint64_t pack(int64_t n, int64_t next) { return (static_cast<uint64_t>(n) << 32) | static_cast<uint64_t>(next); }

  void run_chunk(int64_t first, int64_t n, const std::function<void(int64_t, int)>& fn) {
    fn_ = &fn;
    first_ = first;
    error_ = nullptr;
    done_.store(0, std::memory_order_relaxed);
    claim_.store(pack(n, 0), std::memory_order_release);
    {
      std::lock_guard<std::mutex> lk(mutex_);
      generation_.fetch_add(1, std::memory_order_release);
    }
    wake_.notify_all();
    work(0);
    for (int i = 0; i < kSpin && done_.load(std::memory_order_acquire) != n; ++i) MAML_PAUSE();
    if (done_.load(std::memory_order_acquire) != n) {
      std::unique_lock<std::mutex> lk(mutex_);
      all_done_.wait(lk, [&] { return done_.load(std::memory_order_acquire) == n; });
    }
    fn_ = nullptr;
    if (error_) {
      std::exception_ptr e = error_;
      error_ = nullptr;
      std::rethrow_exception(e);
    }
  }

  void start(int n) {
    size_ = n < 1 ? 1 : n;
    quit_.store(false);
    // Workers start from the generation current now, so that a run posted before a worker
    // first looks is not missed.
    const uint64_t start_gen = generation_.load();
    for (int w = 1; w < size_; ++w) workers_.emplace_back([this, w, start_gen] { loop(w, start_gen); });
  }

  void stop() {
    {
      std::lock_guard<std::mutex> lk(mutex_);
      quit_.store(true);
      generation_.fetch_add(1, std::memory_order_release);
    }
    wake_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
  }

  // Counts `count` jobs as done; wakes the caller when they were the last ones.
  void finished(int64_t n, int64_t count) {
    if (done_.fetch_add(count, std::memory_order_acq_rel) + count == n) {
      std::lock_guard<std::mutex> lk(mutex_);
      all_done_.notify_one();
    }
  }

  void work(int worker) {
    for (;;) {
      uint64_t c = claim_.load(std::memory_order_acquire);
      int64_t n, j;
      for (;;) {
        n = static_cast<int64_t>(c >> 32);
        j = static_cast<int64_t>(c & 0xffffffffu);
        if (j >= n) return;
        if (claim_.compare_exchange_weak(c, c + 1, std::memory_order_acq_rel, std::memory_order_acquire)) break;
      }
      try {
        (*fn_)(first_ + j, worker);
      } catch (...) {
        {
          std::lock_guard<std::mutex> lk(mutex_);
          if (!error_) error_ = std::current_exception();
        }
        // skip the jobs nobody has taken yet, counting them as done
        uint64_t w = claim_.load(std::memory_order_acquire);
        while (static_cast<int64_t>(w & 0xffffffffu) < n &&
               !claim_.compare_exchange_weak(w, pack(n, n), std::memory_order_acq_rel, std::memory_order_acquire)) {
        }
        const int64_t taken = static_cast<int64_t>(w & 0xffffffffu);
        if (taken < n) finished(n, n - taken);
      }
      finished(n, 1);
    }
  }

  void loop(int worker, uint64_t seen) {
    for (;;) {
      bool posted = false;
      for (int i = 0; i < kSpin; ++i) {
        if (generation_.load(std::memory_order_acquire) != seen) {
          posted = true;
          break;
        }
        MAML_PAUSE();
      }
      if (!posted) {
        std::unique_lock<std::mutex> lk(mutex_);
        wake_.wait(lk, [&] { return generation_.load(std::memory_order_acquire) != seen; });
      }
      seen = generation_.load(std::memory_order_acquire);
      if (quit_.load()) return;
      work(worker);
    }
  }

  int size_ = 1;
  std::vector<std::thread> workers_;
  std::mutex run_mutex_;  // one parallel_for at a time
  std::mutex mutex_;
  std::condition_variable wake_, all_done_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<bool> quit_{false};
  const std::function<void(int64_t, int)>* fn_ = nullptr;
  int64_t first_ = 0;
  std::atomic<uint64_t> claim_{0};
  std::atomic<int64_t> done_{0};
  std::exception_ptr error_;
};

Pool& pool() {
  static Pool p(default_thread_count());
  return p;
}

}  // namespace

int default_thread_count() {
  if (const char* env = std::getenv("MAML_NUM_THREADS")) {
    const int n = std::atoi(env);
    if (n >= 1 && n <= 1024) return n;
  }
  const unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(hw > 256 ? 256 : hw);
}

void set_thread_count(int n) { pool().resize(n); }
int thread_count() { return pool().size(); }

void parallel_for(int64_t n_jobs, const std::function<void(int64_t, int)>& fn) { pool().run(n_jobs, fn); }

}  // namespace maml
