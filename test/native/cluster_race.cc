// cluster_race.cc: the cluster kernel (native/cuda/task_cluster.hpp) on host-emulated clusters
// (binding/host_block.hpp), built with -fsanitize=thread by test/cluster-race.test.ts: every
// access a block makes to a peer's memory, and every reuse of a buffer a peer writes, must be
// ordered by a sync() (ThreadSanitizer reports the pairs that are not). Also prints, per
// configuration, whether 2 and 3 threads per block gave the same meta-gradient bits (they must;
// the losses and rate gradients are block sums, whose order depends on the block size).
// Usage: cluster_race   (exit 0, one "ok" line per configuration; TSan exits 66 on a race)
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "binding/host_block.hpp"
#include "cuda/task_cluster.hpp"

using namespace maml;

namespace {

struct Setup {
  std::vector<int> dims;
  int act, loss, algo, rate_kind;  // rate_kind: 0 scalar, 1 per step, 2 per parameter
  int c;
};

// The meta-gradients [B, P], then the rate gradients [B, R] and the losses [B] (block sums: their
// order depends on the block size).
struct Result {
  std::vector<double> grad, rest;
};

Result run(const Setup& su, int threads) {
  cuda::KModel m;
  m.L = static_cast<int>(su.dims.size()) - 1;
  m.act = su.act;
  m.loss = su.loss;
  int off = 0;
  for (int l = 0; l <= m.L; ++l) m.dims[l] = su.dims[static_cast<size_t>(l)];
  for (int l = 1; l <= m.L; ++l) {
    m.w_off[l] = off;
    off += m.dims[l] * m.dims[l - 1];
    m.b_off[l] = off;
    off += m.dims[l];
    m.sum_width += m.dims[l];
    m.max_width = m.dims[l] > m.max_width ? m.dims[l] : m.max_width;
  }
  m.P = off;
  m.head_begin = m.w_off[m.L];
  const int S = 2, B = 3, d0 = m.dims[0], dL = m.dims[m.L];
  cuda::KConfig k;
  k.algo = su.algo;
  k.steps = S;
  const bool second = su.algo == cuda::kMAML || su.algo == cuda::kMetaSGD || su.algo == cuda::kANIL;
  k.want_rate_grad = second ? 1 : 0;
  k.rate_step_stride = su.rate_kind == 0 ? 0 : su.rate_kind == 1 ? 1 : 0;
  k.rate_param_stride = su.rate_kind == 2 ? 1 : 0;
  const int n_rates = su.rate_kind == 0 ? 1 : su.rate_kind == 1 ? S : m.P;
  k.R = k.want_rate_grad ? n_rates : 0;
  std::mt19937 rng(11);
  std::normal_distribution<double> N(0.0, 0.5);
  std::vector<double> theta(static_cast<size_t>(m.P)), rates(static_cast<size_t>(n_rates)), weights{0.2, 0.3, 1.0};
  for (double& x : theta) x = N(rng);
  for (double& x : rates) x = 0.05 + std::fabs(N(rng)) * 0.1;
  // task 0 has an empty support set; sets of 5 and 7 rows
  const std::vector<int64_t> so{0, 0, 5, 12}, qo{0, 4, 9, 16};
  std::vector<double> xs(12 * d0), ys(12 * dL), xq(16 * d0), yq(16 * dL);
  std::vector<int32_t> ls(12), lq(16);
  for (std::vector<double>* v : {&xs, &xq})
    for (double& x : *v) x = N(rng);
  for (std::vector<double>* v : {&ys, &yq})  // binary cross-entropy: 0/1 targets
    for (double& x : *v) x = su.loss == 2 ? (N(rng) > 0 ? 1.0 : 0.0) : N(rng);
  for (int32_t& y : ls) y = static_cast<int32_t>(rng() % static_cast<unsigned>(dL));
  for (int32_t& y : lq) y = static_cast<int32_t>(rng() % static_cast<unsigned>(dL));
  cuda::KArgs<double> a;
  a.theta = theta.data();
  a.rates = rates.data();
  a.weights = weights.data();
  a.s_off = so.data();
  a.q_off = qo.data();
  a.xs = xs.data();
  a.xq = xq.data();
  if (su.loss == 1) {
    a.ys_lab = ls.data();
    a.yq_lab = lq.data();
  } else {
    a.ys = ys.data();
    a.yq = yq.data();
  }
  const cuda::KCluster kc = cuda::plan_cluster(m, k, 7, threads, su.c);
  const int64_t slot = m.P + k.R;
  std::vector<double> out(static_cast<size_t>(B * slot + B)), gw(static_cast<size_t>(kc.g_total));
  for (int t = 0; t < B; ++t) {
    std::vector<std::vector<double>> mem(static_cast<size_t>(su.c), std::vector<double>(static_cast<size_t>(kc.total), 0.0));
    binding::run_cluster<double>(su.c, threads, mem, [&](const auto& blk, const auto& cl) {
      cuda::task_meta_step_cluster(blk, cl, m, k, kc, a, t, mem[static_cast<size_t>(cl.rank())].data(), gw.data(),
                                   out.data() + t * slot, out.data() + B * slot + t);
    });
  }
  Result r;
  for (int t = 0; t < B; ++t) {
    r.grad.insert(r.grad.end(), out.begin() + t * slot, out.begin() + t * slot + m.P);
    r.rest.insert(r.rest.end(), out.begin() + t * slot + m.P, out.begin() + (t + 1) * slot);
  }
  r.rest.insert(r.rest.end(), out.begin() + B * slot, out.end());
  return r;
}

}  // namespace

int main() {
  const Setup setups[] = {
      {{3, 20, 17, 2}, 1, 0, cuda::kMAML, 0, 3},
      {{3, 40, 33, 1}, 0, 0, cuda::kMAML, 1, 4},  // the last layer split in two input ranges
      {{4, 9, 11, 5}, 1, 1, cuda::kMetaSGD, 2, 3},
      {{2, 13, 1}, 0, 2, cuda::kANIL, 0, 2},
      {{3, 8, 8, 2}, 1, 0, cuda::kFOMAML, 0, 5},
      {{3, 8, 8, 2}, 0, 0, cuda::kReptile, 0, 3},
  };
  int bad = 0;
  for (const Setup& su : setups) {
    const Result two = run(su, 2), three = run(su, 3);
    bool finite = true, close = true;
    for (double x : two.grad) finite = finite && std::isfinite(x);
    for (size_t i = 0; i < two.rest.size(); ++i) {
      finite = finite && std::isfinite(two.rest[i]);
      close = close && std::fabs(two.rest[i] - three.rest[i]) <= 1e-12 * (1 + std::fabs(two.rest[i]));
    }
    const bool same = std::memcmp(two.grad.data(), three.grad.data(), two.grad.size() * sizeof(double)) == 0;
    const bool ok = same && finite && close;
    std::printf("%s algo %d, cluster of %d: %s, %s, rate gradients and losses %s\n", ok ? "ok" : "FAIL", su.algo, su.c,
                finite ? "finite" : "NOT FINITE", same ? "same gradient bits for 2 and 3 threads" : "DIFFERENT gradient bits",
                close ? "within 1e-12" : "DIFFER");
    bad += !ok;
  }
  return bad ? 1 : 0;
}
