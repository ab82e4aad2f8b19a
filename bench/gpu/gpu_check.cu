// gpu_check.cu: the GPU checks without Node.js, for bench/gpu.sh (the GPU machine may have no
// Node). Links the CUDA learner (native/cuda) and the float64 reference core (native/core).
//
//   gpu_check parity            CUDA meta-gradients vs the float64 reference: every algorithm,
//                               loss, activation, B in {1, 7, 25, 130}, odd widths, the wide net,
//                               ragged tasks, each run twice (bit-identical or FAIL); 5 training
//                               steps vs the core's optimizer. Exit 1 on
//                               any failure. Tolerance: rel 1e-4 per inner step (gradients),
//                               1e-3 per step (rate gradients), 1e-3 (parameters after 5 steps).
//   gpu_check sanitize          a few small parity cases, to run under compute-sanitizer
//   gpu_check bench OUT.json    median wall time of CudaLearner::step (batch upload, kernels,
//                               read-back, update) for the issue's cases, with 128 and 256
//                               threads per task block and kernel variants 3 and 4
//                               (MAML_CUDA_KERNEL) at 256, and the kernels' device time (CUDA events); JSON lines
//                               to OUT.json, the fastest configuration last
//   MAML_CUDA_KERNEL=3 gpu_check parity    the parity checks with kernel variant 3 (4: the
//                               cluster kernel, on the cases too large for one block)
//   gpu_check profile           two meta-steps of each bench case (256 threads), for ncu
//   gpu_check clusters          kernel variant 4's cluster sizes for the wide net: shared memory
//                               per block, clusters the device holds at once
//
// Build (bench/gpu.sh does it):
//   nvcc -std=c++17 -O3 -arch=sm_90 -I native bench/gpu/gpu_check.cu native/cuda/meta_kernels.cu \
//        native/cuda/cuda_learner.cu native/cpu/thread_pool.cc -o gpu_check
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/batch.hpp"
#include "core/optim.hpp"
#include "cuda/cuda_learner.hpp"
#include "cuda/meta_kernels.hpp"
#include "cuda/plan.hpp"

using namespace maml;

namespace {

struct Case {
  std::vector<int64_t> dims;
  int act = 0, loss = 0;
  Algorithm algo = Algorithm::MAML;
  int steps = 1;
  int rate_kind = 0;  // 0 scalar per step, 1 per parameter, 2 per step and parameter
  bool multi_weights = false;
};

std::string name_of(const Case& c) {
  static const char* algos[] = {"maml", "fomaml", "reptile", "meta-sgd", "anil"};
  std::string s = std::string(algos[static_cast<int>(c.algo)]) + " [";
  for (size_t i = 0; i < c.dims.size(); ++i) s += (i ? "-" : "") + std::to_string(c.dims[i]);
  s += std::string("] ") + (c.act ? "tanh " : "relu ") + (c.loss == 0 ? "mse" : c.loss == 1 ? "ce" : "bce");
  return s + " S=" + std::to_string(c.steps);
}

// A batch with its own storage; rows per task drawn in [lo, hi] (uniform when lo == hi).
struct Batch {
  int64_t tasks = 0;
  std::vector<int64_t> s_off, q_off;
  std::vector<double> xs, ys, xq, yq;
  std::vector<int32_t> ysl, yql;
  std::vector<float> fxs, fys, fxq, fyq;
};

Batch make_batch(std::mt19937& rng, const ModelSpec& s, int64_t B, int lo, int hi, bool empty_first) {
  std::uniform_real_distribution<double> u(-1, 1);
  std::uniform_int_distribution<int> rows(lo, hi), lab(0, static_cast<int>(s.out_dim()) - 1), bit(0, 1);
  Batch b;
  b.tasks = B;
  b.s_off.assign(B + 1, 0);
  b.q_off.assign(B + 1, 0);
  for (int64_t t = 0; t < B; ++t) {
    b.s_off[t + 1] = b.s_off[t] + ((empty_first && t == 0) ? 0 : rows(rng));
    b.q_off[t + 1] = b.q_off[t] + rows(rng);
  }
  const auto fill = [&](int64_t n, std::vector<double>& x, std::vector<double>& y, std::vector<int32_t>& l) {
    x.resize(n * s.in_dim());
    for (double& v : x) v = u(rng) * 5;
    if (s.loss == Loss::CrossEntropy) {
      l.resize(n);
      for (int32_t& v : l) v = lab(rng);
    } else {
      y.resize(n * s.out_dim());
      for (double& v : y) v = s.loss == Loss::MSE ? u(rng) * 3 : bit(rng);
    }
  };
  fill(b.s_off[B], b.xs, b.ys, b.ysl);
  fill(b.q_off[B], b.xq, b.yq, b.yql);
  const auto f = [](const std::vector<double>& v) { return std::vector<float>(v.begin(), v.end()); };
  b.fxs = f(b.xs), b.fys = f(b.ys), b.fxq = f(b.xq), b.fyq = f(b.yq);
  return b;
}

cuda::HostBatch host_of(const Batch& b) {
  cuda::HostBatch h;
  h.tasks = b.tasks;
  h.s_off = b.s_off.data();
  h.q_off = b.q_off.data();
  h.xs = b.fxs.data();
  h.ys = b.fys.empty() ? nullptr : b.fys.data();
  h.ys_lab = b.ysl.empty() ? nullptr : b.ysl.data();
  h.xq = b.fxq.data();
  h.yq = b.fyq.empty() ? nullptr : b.fyq.data();
  h.yq_lab = b.yql.empty() ? nullptr : b.yql.data();
  return h;
}

template <class T>
BatchData<T> data_of(const Batch& b, const std::vector<T>& xs, const std::vector<T>& ys, const std::vector<T>& xq,
                     const std::vector<T>& yq) {
  BatchData<T> d;
  d.tasks = b.tasks;
  d.s_off = b.s_off.data();
  d.q_off = b.q_off.data();
  d.xs = xs.data();
  d.xq = xq.data();
  if (!b.ysl.empty()) {
    d.ys.labels = b.ysl.data();
    d.yq.labels = b.yql.data();
  } else {
    d.ys.y = ys.data();
    d.yq.y = yq.data();
  }
  return d;
}

std::vector<double> init_params(const ModelSpec& s, std::mt19937& rng) {
  std::vector<double> p(s.n_params);
  for (int l = 1; l <= s.layers(); ++l) {
    std::uniform_real_distribution<double> u(-1 / std::sqrt(double(s.dims[l - 1])), 1 / std::sqrt(double(s.dims[l - 1])));
    for (int64_t i = s.w_off[l]; i < s.b_off[l] + s.dims[l]; ++i) p[i] = u(rng);
  }
  return p;
}

double rel(const float* a, const double* b, int64_t n) {
  double d = 0, na = 0, nb = 0;
  for (int64_t i = 0; i < n; ++i) {
    d += (a[i] - b[i]) * (a[i] - b[i]);
    na += double(a[i]) * a[i];
    nb += b[i] * b[i];
  }
  if (!std::isfinite(d)) return INFINITY;
  return std::sqrt(d) / std::max({std::sqrt(na), std::sqrt(nb), 1e-12});
}

struct Setup {
  ModelSpec spec;
  MetaConfig cfg;
  std::vector<double> rates;
  int64_t ss = 0, ps = 0;
};

Setup setup_of(const Case& c, std::mt19937& rng, bool learn) {
  Setup st;
  st.spec = make_spec(c.dims, c.act, c.loss);
  st.cfg.algo = c.algo;
  st.cfg.steps = c.steps;
  st.cfg.weights.assign(c.steps + 1, 0.0);
  st.cfg.weights[c.steps] = 1.0;
  if (c.multi_weights && c.algo != Algorithm::Reptile)
    for (int s = 0; s < c.steps; ++s) st.cfg.weights[s] = 0.3;
  st.cfg.want_rate_grad = learn && st.cfg.second_order();
  const int64_t P = st.spec.n_params;
  std::uniform_real_distribution<double> u(0.01, 0.06);
  if (c.rate_kind == 0) st.rates.resize(std::max(c.steps, 1)), st.ss = 1, st.ps = 0;
  else if (c.rate_kind == 1) st.rates.resize(P), st.ss = 0, st.ps = 1;
  else st.rates.resize(std::max(c.steps, 1) * P), st.ss = P, st.ps = 1;
  for (double& r : st.rates) r = u(rng);
  return st;
}

cuda::LearnerConfig learner_config(const Setup& st, const std::vector<double>& p) {
  cuda::LearnerConfig lc;
  lc.spec = st.spec;
  lc.cfg = st.cfg;
  lc.state.assign(p.begin(), p.end());
  if (st.cfg.want_rate_grad) lc.state.insert(lc.state.end(), st.rates.begin(), st.rates.end());
  else lc.fixed_rates.assign(st.rates.begin(), st.rates.end());
  lc.rate_step_stride = st.ss;
  lc.rate_param_stride = st.ps;
  return lc;
}

int failures = 0;

void parity_gradient(const Case& c, int64_t B, int lo, int hi, bool ragged, std::mt19937& rng) {
  const Setup st = setup_of(c, rng, true);
  const std::vector<double> p = init_params(st.spec, rng);
  // the float64 reference sees the float32-rounded values the GPU sees
  std::vector<double> p32(p.begin(), p.end()), r32(st.rates.begin(), st.rates.end());
  for (double& v : p32) v = float(v);
  for (double& v : r32) v = float(v);
  Batch b = make_batch(rng, st.spec, B, lo, hi, ragged);
  for (auto* v : {&b.xs, &b.ys, &b.xq, &b.yq})
    for (double& x : *v) x = float(x);
  Rates<double> rr;
  rr.data = r32.data();
  rr.step_stride = st.ss;
  rr.param_stride = st.ps;
  rr.length = static_cast<int64_t>(r32.size());
  std::vector<double> g(st.spec.n_params), rg(r32.size(), 0.0);
  const double ref_loss =
      meta_gradient_batch<double>(st.spec, st.cfg, p32.data(), rr, data_of(b, b.xs, b.ys, b.xq, b.yq), g.data(), rg.data());
  cuda::CudaLearner learner(learner_config(st, p32));
  std::vector<float> gg(st.spec.n_params), grg(r32.size());
  const double loss = learner.meta_gradient(host_of(b), gg.data(), grg.data());
  // the same call again must give the same bits (a race would show as a difference)
  std::vector<float> gg2(gg.size()), grg2(grg.size());
  const double loss2 = learner.meta_gradient(host_of(b), gg2.data(), grg2.data());
  const bool same = gg == gg2 && grg == grg2 && loss == loss2;
  const double tol = 1e-4 * std::max(1, c.steps);
  const double eg = rel(gg.data(), g.data(), st.spec.n_params);
  const double er = st.cfg.want_rate_grad ? rel(grg.data(), rg.data(), static_cast<int64_t>(rg.size())) : 0;
  const double el = std::fabs(loss - ref_loss) / std::max(1.0, std::fabs(ref_loss));
  const bool ok = eg <= tol && er <= 10 * tol && el <= tol && same;
  failures += !ok;
  std::printf("%s %-52s B=%-4lld%s grad %.1e rate %.1e loss %.1e (%s memory)%s\n", ok ? "ok  " : "FAIL",
              name_of(c).c_str(), static_cast<long long>(B), ragged ? " ragged" : "", eg, er, el, learner.last_memory(),
              same ? "" : " NOT REPRODUCIBLE");
}

void parity_training(const Case& c, OptimConfig opt, std::mt19937& rng) {
  const Setup st = setup_of(c, rng, c.algo == Algorithm::MetaSGD);
  std::vector<double> p = init_params(st.spec, rng);
  for (double& v : p) v = float(v);
  cuda::LearnerConfig lc = learner_config(st, p);
  lc.opt = opt;
  cuda::CudaLearner learner(lc);
  // the CPU learner: float32 reference core and optimizer, as ops.cc's StepJob does
  std::vector<float> state = lc.state, m(state.size()), v(state.size());
  const int64_t P = st.spec.n_params;
  for (int t = 1; t <= 5; ++t) {
    const Batch b = make_batch(rng, st.spec, 25, 10, 10, false);
    learner.step(host_of(b), t);
    Rates<float> rr;
    std::vector<float> fixed(st.rates.begin(), st.rates.end());
    rr.data = st.cfg.want_rate_grad ? state.data() + P : fixed.data();
    rr.step_stride = st.ss;
    rr.param_stride = st.ps;
    rr.length = static_cast<int64_t>(st.rates.size());
    std::vector<float> grad(state.size(), 0.0f);
    meta_gradient_batch<float>(st.spec, st.cfg, state.data(), rr, data_of(b, b.fxs, b.fys, b.fxq, b.fyq), grad.data(),
                               grad.data() + P);
    clip_grad_norm(grad.data(), static_cast<int64_t>(grad.size()), opt.clip_norm);
    optimizer_step(opt, state.data(), grad.data(), m.data(), v.data(), static_cast<int64_t>(state.size()), t);
  }
  std::vector<float> got(state.size());
  learner.get_state(got.data());
  const std::vector<double> want(state.begin(), state.end());
  const double e = rel(got.data(), want.data(), static_cast<int64_t>(got.size()));
  const bool ok = e <= 1e-3;
  failures += !ok;
  std::printf("%s %-52s 5 steps (%s), state rel %.1e\n", ok ? "ok  " : "FAIL", name_of(c).c_str(),
              opt.kind == 0 ? "adam" : "sgd", e);
}

// A few small cases for compute-sanitizer (memcheck, racecheck): every algorithm once,
// shared and global memory (the wide net, and a wide layer off every tile size), ragged tasks
// with an empty support set, one training step.
int sanitize() {
  std::mt19937 rng(99);
  const Algorithm algos[] = {Algorithm::MAML, Algorithm::FOMAML, Algorithm::Reptile, Algorithm::MetaSGD, Algorithm::ANIL};
  for (const Algorithm a : algos) {
    Case c;
    c.dims = {3, 20, 9, 3};
    c.loss = static_cast<int>(a) % 3;
    c.act = static_cast<int>(a) % 2;
    c.algo = a;
    c.steps = 2;
    c.rate_kind = a == Algorithm::MetaSGD ? 2 : 0;
    c.multi_weights = true;
    parity_gradient(c, 3, 0, 6, true, rng);
  }
  Case wide;
  wide.dims = {1, 256, 256, 1};
  parity_gradient(wide, 2, 10, 10, false, rng);
  // global memory, widths off every tile, sets of 1 to 20 rows (row chunks, padded rows)
  Case odd_wide;
  odd_wide.dims = {3, 300, 77, 2};
  odd_wide.act = 1;
  odd_wide.algo = Algorithm::MetaSGD;
  odd_wide.rate_kind = 1;
  parity_gradient(odd_wide, 3, 1, 20, true, rng);
  OptimConfig adam;
  Case sine;
  sine.dims = {1, 40, 40, 1};
  parity_training(sine, adam, rng);
  std::printf("sanitize cases: %d failure(s)\n", failures);
  return failures ? 1 : 0;
}

int parity() {
  std::mt19937 rng(12345);
  const std::vector<std::vector<int64_t>> shapes = {{1, 40, 40, 1}, {5, 33, 7, 3}, {9, 17, 45, 4}, {3, 70, 2}};
  const Algorithm algos[] = {Algorithm::MAML, Algorithm::FOMAML, Algorithm::Reptile, Algorithm::MetaSGD, Algorithm::ANIL};
  for (int loss = 0; loss < 3; ++loss)
    for (int act = 0; act < 2; ++act)
      for (const Algorithm a : algos)
        for (const int64_t B : {1, 7, 25, 130}) {
          Case c;
          c.dims = shapes[(loss * 2 + act + static_cast<int>(a)) % shapes.size()];
          if (loss == 1 && c.dims.back() < 2) c.dims.back() = 3;
          c.act = act, c.loss = loss, c.algo = a, c.steps = B == 7 ? 3 : 1;
          c.rate_kind = a == Algorithm::MetaSGD ? 1 : 0;
          c.multi_weights = B == 25;
          parity_gradient(c, B, 5, 10, false, rng);
        }
  for (const int kind : {0, 1, 2}) {
    Case c;
    c.dims = {4, 19, 3};
    c.loss = 1;
    c.act = 1;
    c.algo = kind == 0 ? Algorithm::MAML : Algorithm::MetaSGD;
    c.steps = 2;
    c.rate_kind = kind;
    parity_gradient(c, 9, 1, 12, true, rng);
  }
  Case sine;
  sine.dims = {1, 40, 40, 1};
  sine.steps = 5;
  parity_gradient(sine, 1024, 10, 10, false, rng);
  Case wide;
  wide.dims = {1, 256, 256, 1};
  wide.steps = 2;
  parity_gradient(wide, 9, 10, 10, false, rng);
  wide.algo = Algorithm::MetaSGD;
  wide.rate_kind = 1;
  parity_gradient(wide, 3, 10, 10, false, rng);
  // global memory with a wide layer whose widths are not multiples of any tile (300 inputs, 77
  // outputs: fewer than the block's threads) and ragged sets of 1 to 20 rows, one support set
  // empty: the edges of the tiled paths (kernel variant 3: row chunks, padded rows)
  Case odd_wide;
  odd_wide.dims = {3, 300, 77, 2};
  odd_wide.act = 1;
  odd_wide.loss = 1;
  odd_wide.steps = 2;
  odd_wide.multi_weights = true;
  parity_gradient(odd_wide, 6, 1, 20, true, rng);
  odd_wide.act = 0;
  odd_wide.loss = 2;
  odd_wide.algo = Algorithm::ANIL;
  parity_gradient(odd_wide, 5, 1, 20, true, rng);
  // a wide layer with more outputs (300) than the block's threads
  Case tall;
  tall.dims = {4, 64, 300, 2};
  tall.act = 1;
  tall.steps = 2;
  parity_gradient(tall, 5, 10, 14, false, rng);
  OptimConfig adam, sgd;
  adam.clip_norm = 10;
  sgd.kind = 1;
  sgd.lr = 1e-2;
  sgd.momentum = 0.9;
  sine.steps = 2;
  parity_training(sine, adam, rng);
  sine.algo = Algorithm::MetaSGD;
  sine.rate_kind = 1;
  parity_training(sine, adam, rng);
  Case anil;
  anil.dims = {4, 30, 3};
  anil.loss = 1;
  anil.algo = Algorithm::ANIL;
  parity_training(anil, sgd, rng);
  std::printf("parity: %d failure(s)\n", failures);
  return failures ? 1 : 0;
}

struct BenchCase {
  const char* name;
  std::vector<int64_t> dims;
  int64_t B;
  int steps;
};
const BenchCase kBenchCases[] = {
    {"sine_B1024_S5", {1, 40, 40, 1}, 1024, 5},
    {"sine_B25_S5", {1, 40, 40, 1}, 25, 5},
    {"wide_B256_S5", {1, 256, 256, 1}, 256, 5},
    {"sine_B25_S1", {1, 40, 40, 1}, 25, 1},
};

// The learner configuration of a bench case: MAML, fixed inner rate 0.01, Adam.
cuda::LearnerConfig bench_config(const BenchCase& bc, std::mt19937& rng) {
  Case c;
  c.dims = bc.dims;
  c.steps = bc.steps;
  const Setup st = setup_of(c, rng, false);
  cuda::LearnerConfig lc = learner_config(st, init_params(st.spec, rng));
  for (float& r : lc.fixed_rates) r = 0.01f;
  return lc;
}

int profile() {
  std::mt19937 rng(7);
  for (const BenchCase& bc : kBenchCases) {
    const cuda::LearnerConfig lc = bench_config(bc, rng);
    cuda::CudaLearner learner(lc);
    for (int t = 1; t <= 2; ++t) learner.step(host_of(make_batch(rng, lc.spec, bc.B, 10, 10, false)), t);
    std::printf("profile %s: 2 steps (%s memory)\n", bc.name, learner.last_memory());
  }
  return 0;
}

int bench(const char* out_path) {
  FILE* out = std::fopen(out_path, "w");
  if (!out) {
    std::perror(out_path);
    return 1;
  }
  std::mt19937 rng(7);
  // the wide case last: a device fault in an experimental kernel (variant 4 runs only there)
  // leaves the context unusable, and would take the cases after it down too
  for (const int which : {0, 1, 3, 2}) {
    const BenchCase& bc = kBenchCases[which];
    // FLOPs per meta-step (MAML): F = 2 n Σ d_{l-1} d_l per pass; inner steps 3F each, reverse
    // steps 9F each (forward, R-forward, backward, R-backward), query 3F: (12 S + 3) F per task.
    double sum = 0;
    for (size_t l = 1; l < bc.dims.size(); ++l) sum += double(bc.dims[l - 1]) * bc.dims[l];
    const double flops = (12.0 * bc.steps + 3) * 2 * 10 * sum * bc.B;
    std::string best;
    double best_us = INFINITY;
    // (threads per block, kernel variant): 64 threads was the slowest in every case and run
    // (bench/GPU-RESULTS.md), so 128 and 256 with the default kernel, and 256 with variants 3 and
    // 4 (variant 4 changes only networks that do not fit one block: the wide net's clusters)
    const std::pair<int, int> configs[] = {{128, 1}, {256, 1}, {256, 3}, {256, 4}};
    std::string memory_v1;  // where the default kernel at 256 threads kept the tasks
    for (const auto& [threads, variant] : configs) {
      if (variant == 4 && memory_v1 == "shared") {
        std::printf("bench %-16s %3d threads, kernel 4: the same kernel as 1 here (a task fits one block)\n", bc.name, threads);
        continue;
      }
      try {
        const cuda::LearnerConfig lc = bench_config(bc, rng);
        std::vector<Batch> batches;
        for (int i = 0; i < 8; ++i) batches.push_back(make_batch(rng, lc.spec, bc.B, 10, 10, false));
        setenv("MAML_CUDA_THREADS", std::to_string(threads).c_str(), 1);
        setenv("MAML_CUDA_KERNEL", std::to_string(variant).c_str(), 1);
        unsetenv("MAML_CUDA_TIMING");
        std::vector<double> us;
        std::string memory;
        {
          cuda::CudaLearner learner(lc);  // wall clock of whole steps (upload, kernels, read-back, update)
          int64_t t = 1;
          for (int i = 0; i < 20; ++i) learner.step(host_of(batches[i % 8]), t++);
          const auto start = std::chrono::steady_clock::now();
          while (us.size() < 50 || (us.size() < 2000 && std::chrono::steady_clock::now() - start < std::chrono::seconds(2))) {
            const auto a = std::chrono::steady_clock::now();
            learner.step(host_of(batches[us.size() % 8]), t++);
            us.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - a).count());
          }
          memory = learner.last_memory();
          if (threads == 256 && variant == 1) memory_v1 = memory;
        }
        std::vector<double> kus;
        setenv("MAML_CUDA_TIMING", "1", 1);
        {
          cuda::CudaLearner learner(lc);  // device time of the kernels alone (CUDA events)
          for (int i = 0; i < 60; ++i) {
            learner.step(host_of(batches[i % 8]), i + 1);
            if (i >= 10) kus.push_back(learner.kernel_us());
          }
        }
        unsetenv("MAML_CUDA_TIMING");
        std::sort(us.begin(), us.end());
        std::sort(kus.begin(), kus.end());
        const double med = us[us.size() / 2], kmed = kus[kus.size() / 2];
        char line[512];
        std::snprintf(line, sizeof line,
                      "\"impl\":\"maml-native-cuda\",\"threads\":%d,\"variant\":%d,\"median_us\":%.2f,\"p10_us\":%.2f,"
                      "\"p90_us\":%.2f,\"n\":%zu,\"kernel_us\":%.2f,\"flops\":%.0f,\"tflops\":%.3f,\"memory\":\"%s\"}",
                      threads, variant, med, us[us.size() / 10], us[us.size() * 9 / 10], us.size(), kmed, flops,
                      flops / med * 1e-6, memory.c_str());
        std::fprintf(out, "{\"case\":\"%s@%d/v%d\",%s\n", bc.name, threads, variant, line);
        if (med < best_us) best_us = med, best = line;
        std::printf("bench %-16s %3d threads, kernel %d: median %9.1f us per step (p10 %.1f, p90 %.1f, n %zu), kernels %.1f us, "
                    "%.2f TFLOP/s, %s memory\n",
                    bc.name, threads, variant, med, us[us.size() / 10], us[us.size() * 9 / 10], us.size(), kmed,
                    flops / med * 1e-6, memory.c_str());
      } catch (const std::exception& e) {
        std::string msg = e.what();
        std::replace(msg.begin(), msg.end(), '"', '\'');
        std::replace(msg.begin(), msg.end(), '\\', '/');
        std::fprintf(out, "{\"case\":\"%s@%d/v%d\",\"impl\":\"maml-native-cuda\",\"error\":\"%s\"}\n", bc.name, threads,
                     variant, msg.c_str());
        if (best.empty()) best = "\"impl\":\"maml-native-cuda\",\"error\":\"" + msg + "\"}";
        std::printf("bench %-16s %3d threads, kernel %d: FAILED: %s\n", bc.name, threads, variant, e.what());
      }
      std::fflush(out);
    }
    unsetenv("MAML_CUDA_KERNEL");
    std::fprintf(out, "{\"case\":\"%s\",%s\n", bc.name, best.c_str());  // the fastest configuration
    std::fflush(out);
  }
  std::fclose(out);
  return 0;
}

// Kernel variant 4's cluster plans for the wide net (S = 5, 10-row sets, 256 threads): shared
// memory per block, and how many clusters the device holds at once (cudaOccupancyMaxActiveClusters).
int clusters() {
  const cuda::KModel m = cuda::make_kmodel(make_spec({1, 256, 256, 1}, 0, 0));
  cuda::KConfig c;
  c.steps = 5;
  for (int size = 2; size <= cuda::kMaxCluster; size *= 2) {
    const cuda::KCluster k = cuda::plan_cluster(m, c, 10, 256, size);
    std::printf("wide net, clusters of %d blocks: %.1f KB of shared memory per block, %d clusters at once\n", size,
                k.total * 4 / 1024.0, cuda::cluster_capacity(k, 256));
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  try {
    if (mode == "parity") return parity();
    if (mode == "sanitize") return sanitize();
    if (mode == "profile") return profile();
    if (mode == "clusters") return clusters();
    if (mode == "bench" && argc > 2) return bench(argv[2]);
  } catch (const std::exception& e) {
    std::printf("FAILED: %s\n", e.what());
    return 2;
  }
  std::fprintf(stderr, "usage: gpu_check parity | gpu_check sanitize | gpu_check profile | gpu_check clusters | gpu_check bench OUT.json\n");
  return 2;
}
