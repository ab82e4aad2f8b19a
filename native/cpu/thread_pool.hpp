// thread_pool.hpp: one persistent pool of worker threads for the whole process.
//
// parallel_for(n, fn) runs fn(job, worker) for every job in [0, n) and returns when all are
// done; the calling thread works too (as worker 0). One caller at a time uses the pool; a
// caller that finds it busy (another Node thread's call) runs its jobs on its own thread, so
// concurrent calls are safe and proceed in parallel. Jobs keep scratch memory thread_local.
// An exception thrown by any job is caught and the first one is rethrown to the caller after
// all workers have stopped. Results must not depend on which worker runs a job: callers give
// each job its own output slot and reduce the slots in a fixed order.
#pragma once
#include <cstdint>
#include <functional>

namespace maml {

// Number of worker threads used by default: MAML_NUM_THREADS if set, else the hardware's.
int default_thread_count();

// Sets the number of threads (1 = run on the caller only). Waits for work in flight.
void set_thread_count(int n);
int thread_count();

void parallel_for(int64_t n_jobs, const std::function<void(int64_t job, int worker)>& fn);

}  // namespace maml
