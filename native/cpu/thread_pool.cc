// thread_pool.cc: see thread_pool.hpp for the contract.
//
// A meta-step takes about 0.1 ms, so waking sleeping threads through the kernel for each one
// would cost a large share of it. Workers therefore spin for a short while (kSpin pauses, some
// tens of microseconds) on the generation counter before they sleep on a condition variable,
// and the caller spins on the count of active workers before it sleeps. Between the meta-steps
// of a training loop the workers are usually still spinning and start at once.
#include "thread_pool.hpp"

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
    fn_ = &fn;
    n_jobs_ = n_jobs;
    next_job_.store(0, std::memory_order_relaxed);
    error_ = nullptr;
    active_.store(static_cast<int>(workers_.size()), std::memory_order_relaxed);
    {
      std::lock_guard<std::mutex> lk(mutex_);
      generation_.fetch_add(1, std::memory_order_release);
    }
    wake_.notify_all();
    work(0);
    for (int i = 0; i < kSpin && active_.load(std::memory_order_acquire) != 0; ++i) MAML_PAUSE();
    if (active_.load(std::memory_order_acquire) != 0) {
      std::unique_lock<std::mutex> lk(mutex_);
      done_.wait(lk, [&] { return active_.load(std::memory_order_acquire) == 0; });
    }
    fn_ = nullptr;
    if (error_) {
      std::exception_ptr e = error_;
      error_ = nullptr;
      std::rethrow_exception(e);
    }
  }

 private:
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

  void work(int worker) {
    for (;;) {
      const int64_t j = next_job_.fetch_add(1, std::memory_order_relaxed);
      if (j >= n_jobs_) break;
      try {
        (*fn_)(j, worker);
      } catch (...) {
        std::lock_guard<std::mutex> lk(mutex_);
        if (!error_) error_ = std::current_exception();
        next_job_.store(n_jobs_);  // skip the remaining jobs
      }
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
      if (active_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        std::lock_guard<std::mutex> lk(mutex_);
        done_.notify_one();
      }
    }
  }

  int size_ = 1;
  std::vector<std::thread> workers_;
  std::mutex run_mutex_;  // one parallel_for at a time
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<bool> quit_{false};
  const std::function<void(int64_t, int)>* fn_ = nullptr;
  int64_t n_jobs_ = 0;
  std::atomic<int64_t> next_job_{0};
  std::atomic<int> active_{0};
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
