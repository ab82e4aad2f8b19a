// host_block.hpp: blocks and clusters of host threads that run the CUDA task kernels' templates
// (native/cuda/task_kernel.hpp, task_cluster.hpp) on the CPU, the way a GPU runs them: every
// sync() is a barrier of the block's threads (ThreadBlock), or of all the threads of all the
// blocks of a cluster (HostCluster), and a cluster's blocks reach each other's "shared memory"
// through peer(). Used by binding/cuda_host.cc (the test entries) and by
// test/native/cluster_race.cc (the cluster kernel under ThreadSanitizer). No Node-API here.
#pragma once
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "cuda/hd.hpp"

namespace maml::binding {

class HostBarrier {
 public:
  explicit HostBarrier(int n) : n_(n) {}
  // The split form (a cluster's arrive and wait): arrive() returns the round it arrived in;
  // wait(round) returns once every thread has arrived in that round.
  unsigned arrive() {
    std::unique_lock<std::mutex> lock(mu_);
    const unsigned gen = gen_;
    if (++count_ == n_) {
      count_ = 0;
      ++gen_;
      cv_.notify_all();
    }
    return gen;
  }
  void wait(unsigned round) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return round != gen_; });
  }
  void wait() { wait(arrive()); }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int n_, count_ = 0;
  unsigned gen_ = 0;
};

// A block of host threads: thread t of n, sync() = a barrier of all n.
struct ThreadBlock {
  int t, n;
  HostBarrier* bar;
  int tid() const { return t; }
  int size() const { return n; }
  void sync() const { bar->wait(); }
};

// Runs fn(block) on a SerialBlock, or on `threads` host threads sharing one barrier.
template <class Fn>
void run_block(int threads, const Fn& fn) {
  if (threads <= 1) return fn(cuda::SerialBlock{});
  HostBarrier bar(threads);
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) pool.emplace_back([&, t] { fn(ThreadBlock{t, threads, &bar}); });
  for (std::thread& th : pool) th.join();
}

// Block r of an emulated cluster of c blocks: sync() = a barrier of all the cluster's threads;
// peer(p, q) = the same offset in block q's buffer (its "shared memory").
template <class T>
struct HostCluster {
  int r, c;
  HostBarrier* bar;
  T* const* bases;
  int rank() const { return r; }
  void sync() const { bar->wait(); }
  void arrive() const { round = bar->arrive(); }
  void wait() const { bar->wait(round); }
  T* peer(T* p, int q) const { return bases[q] + (p - bases[r]); }
  mutable unsigned round = 0;  // this thread's last arrival
};

// Runs fn(block, cluster) for every block of a cluster of `blocks` blocks of `threads` host
// threads each; block b's shared memory is mem[b].
template <class T, class Fn>
void run_cluster(int blocks, int threads, std::vector<std::vector<T>>& mem, const Fn& fn) {
  HostBarrier cluster_bar(blocks * threads);
  std::vector<T*> bases;
  std::vector<std::unique_ptr<HostBarrier>> block_bars;
  for (int b = 0; b < blocks; ++b) {
    bases.push_back(mem[static_cast<size_t>(b)].data());
    block_bars.push_back(std::make_unique<HostBarrier>(threads));
  }
  std::vector<std::thread> pool;
  for (int b = 0; b < blocks; ++b)
    for (int t = 0; t < threads; ++t)
      pool.emplace_back([&, b, t] {
        const HostCluster<T> cl{b, blocks, &cluster_bar, bases.data()};
        if (threads == 1) fn(cuda::SerialBlock{}, cl);
        else fn(ThreadBlock{t, threads, block_bars[static_cast<size_t>(b)].get()}, cl);
      });
  for (std::thread& th : pool) th.join();
}

}  // namespace maml::binding
