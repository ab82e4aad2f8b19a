// bench/RESULTS.md from the results record of bench/run.mjs.
import { TOLERANCE } from './meta.mjs';

const IMPL_NAMES = {
  'maml-native': 'maml-native',
  'pytorch-1t': 'PyTorch, 1 thread',
  'pytorch-all': 'PyTorch, all threads',
  'tfjs-cpu': 'TF.js 4.22 cpu',
  'tfjs-wasm': 'TF.js 4.22 wasm',
  'plain-js': 'plain JavaScript',
};
const MODE_NAMES = { grad: 'meta-gradient', step: 'meta-step (+ Adam)' };

const ms = (x) => (x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x >= 1 ? x.toFixed(2) : x.toFixed(3));
const gfl = (x) => (x >= 10 ? x.toFixed(1) : x >= 0.01 ? x.toFixed(2) : x.toPrecision(2));
const sci = (x) => (x === undefined ? '—' : x.toExponential(1));
const spread = (s) => `${ms(s.p10)}–${ms(s.p90)} (MAD ${ms(s.mad)}, n = ${s.n})`;

function checkCell(c) {
  if (!c) return '—';
  if (c.status === 'agree') return `agrees: grad rel ${sci(c.gradRel)}, loss rel ${sci(c.lossRel)}`;
  if (c.status === 'mismatch') return `**mismatch** (grad rel ${sci(c.gradRel)}, loss rel ${sci(c.lossRel)}${c.reason ? `, ${c.reason}` : ''}): row refused`;
  return `${c.status}: ${c.reason ?? ''}`;
}

/** Issue 3's table: ours against the named baseline, with the target. */
function summaryRows(res) {
  const out = [];
  const meta = (id) => res.cases.find((c) => c.id === id);
  const row = (id, base, target, gflopsTarget = 0, mode = 'step') => {
    const c = meta(id);
    if (!c) return;
    if (c.error) return out.push(`| ${c.id} | ${IMPL_NAMES[base]} | failed: ${c.error.slice(0, 80)} | — | ≥ ${target}× | — |`);
    const o = c.rows.find((r) => r.impl === 'maml-native' && r.mode === mode);
    const b = c.rows.find((r) => r.impl === base && r.mode === mode);
    const check = c.checks[base];
    const status = b ? `${b.speedup.toFixed(1)}×` : check ? check.status + (check.reason ? ` (${check.reason.slice(0, 60)})` : '') : 'not run';
    const met = b ? (b.speedup >= target && o.gflops >= gflopsTarget ? 'yes' : 'no') : '—';
    const goal = `≥ ${target}×${gflopsTarget ? ` and ≥ ${gflopsTarget} GFLOP/s` : ''}`;
    out.push(`| ${c.id} | ${IMPL_NAMES[base]} ${b ? ms(b.stats.median) + ' ms' : ''} | ${ms(o.stats.median)} ms, ${gfl(o.gflops)} GFLOP/s | ${status} | ${goal} | ${met} |`);
  };
  for (const alg of ['maml', 'fomaml', 'reptile'])
    for (const cfg of ['b25-s1', 'b25-s5', 'b100-s5', 'wide-b32-s5'])
      row(`${alg}/${cfg}`, 'pytorch-1t', cfg.startsWith('wide') ? 12 : 20, alg === 'maml' && cfg.startsWith('wide') ? 150 : 0);
  for (const cfg of ['b25-s1', 'b25-s5']) for (const b of ['tfjs-wasm', 'tfjs-cpu']) row(`maml/${cfg}`, b, 100);
  return out;
}

export function renderReport(res) {
  const L = [];
  const m = res.machine;
  L.push('# maml-native benchmark results', '');
  L.push(`Written by \`bench/run.mjs\` (${res.profile} profile). Re-run with the command below; numbers from a shared or busy machine are noisy (see the load averages).`, '');
  L.push('## Machine and run', '');
  L.push(`- Command: \`${res.command}\``);
  L.push(`- Date: ${res.date}; finished ${res.finished}; took ${res.seconds.toFixed(0)} s`);
  L.push(`- CPU: ${m.cpu}, ${m.cores} logical cores; ${m.memGiB} GiB memory; ${m.os}`);
  L.push(`- Node ${m.node}; maml-native ${m.library.version}, addon \`${m.library.path}\`, ${m.library.threads} threads, compiler ${m.library.compiler}; commit ${m.commit}`);
  L.push(`- Load average (1 min) at start ${m.loadStart.toFixed(2)}, at end ${m.loadEnd.toFixed(2)}: anything above 0 means other work shared these cores while this ran`);
  for (const [k, v] of Object.entries(res.baselines)) L.push(`- Baseline ${IMPL_NAMES[k] ?? k}: ${v.notRun ? `not run: ${v.notRun}` : JSON.stringify(v.info)}`);
  L.push('');
  L.push('Timing: tinybench (Node) or a perf_counter loop (Python) per call after warm-up; **median**, spread = p10–p90 and the median absolute deviation, n = samples, all in ms. Meta-step times exclude task sampling (batches pre-sampled, cycled). GFLOP/s by issue 3\'s count with P = Σ d_{l−1}·d_l: MAML B·P·(18·S·K + 6·Q), FOMAML B·P·(6·S·K + 6·Q), Reptile B·P·6·S·K, from the median. "× faster" is the baseline\'s median over ours in the same mode, measured in this run.', '');
  L.push(`Agreement: before any row is timed, each baseline computes the loss and meta-gradient of batch 0 at the initial parameters and must match ours (float32) within relative L2 error ${TOLERANCE.gradRel} on the gradient and ${TOLERANCE.lossRel} on the loss; otherwise the row is refused.`, '');
  L.push('## Issue 3 targets', '');
  L.push('| case | baseline (median meta-step) | ours (median meta-step) | ours faster by | target | met |', '| --- | --- | --- | --- | --- | --- |');
  L.push(...summaryRows(res));
  const ad = res.cases.find((c) => c.id === 'adapt' && !c.error);
  if (ad) L.push(`| adapt() K = 10, S = 10 | — | median ${ad.statsUs.median.toFixed(2)} µs | — | < 25 µs | ${ad.met ? 'yes' : 'no'} |`);
  const th = res.cases.find((c) => c.id === 'adapt-throughput' && !c.error);
  if (th) for (const r of th.rows.slice(2)) L.push(`| ${r.name} | sync loop × ${th.cores} cores: ${Math.round(th.idealUsersPerSecond)} users/s | ${Math.round(r.usersPerSecond)} users/s | ${(r.vsAllCores * 100).toFixed(0)}% of it | ≥ 80% | ${r.vsAllCores >= 0.8 ? 'yes' : 'no'} |`);
  const fr = res.cases.find((c) => c.id === 'sine-70k' && !c.error);
  if (fr) {
    if (fr.ours) {
      const py = fr.pytorch?.seconds;
      L.push(`| full sinusoid run, ${fr.iterations} steps, CLI end to end | ${py ? `PyTorch ${py.toFixed(1)} s` : `PyTorch ${fr.pytorch?.notRun ?? 'not run'}`} | ${fr.ours.wallSeconds.toFixed(2)} s | ${py ? (py / fr.ours.wallSeconds).toFixed(1) + '×' : '—'} | < 10 s | ${fr.iterations === 70000 ? (fr.ours.wallSeconds < 10 ? 'yes' : 'no') : '— (not 70,000)'} |`);
    } else L.push(`| full sinusoid run, 70,000 steps | — | ${fr.notRun} | — | < 10 s | — |`);
  }
  L.push('');
  for (const c of res.cases) {
    if (c.error) {
      L.push(`## ${c.id}`, '', `**Failed**: ${c.error}`, '');
    } else if (c.kind === 'meta') {
      L.push(`## ${c.id}`, '', `${c.description}. ${(c.flops / 1e6).toFixed(2)} MFLOP per meta-step. Our float32 gradient against our float64 core: relative error ${sci(c.oursVsFloat64.gradRel)}. Ours was timed in two halves, before and after the baselines (medians: meta-gradient ${c.rows[0].halves.map(ms).join(' / ')} ms, meta-step ${c.rows[1].halves.map(ms).join(' / ')} ms), samples pooled. Load average at the start of this case ${c.load.toFixed(2)}; the harness process used ${(c.harnessCpuShare * 100).toFixed(1)}% of a core while the baselines ran.`, '');
      L.push('| implementation | what | median ms | p10–p90 (MAD, n) | GFLOP/s | ours faster by |', '| --- | --- | --- | --- | --- | --- |');
      for (const r of c.rows) L.push(`| ${IMPL_NAMES[r.impl] ?? r.impl} | ${MODE_NAMES[r.mode]} | ${ms(r.stats.median)} | ${spread(r.stats)} | ${gfl(r.gflops)} | ${r.speedup ? r.speedup.toFixed(1) + '×' : '—'} |`);
      L.push('', '| baseline | agreement check |', '| --- | --- |');
      for (const [k, v] of Object.entries(c.checks)) L.push(`| ${IMPL_NAMES[k] ?? k} | ${checkCell(v)} |`);
      L.push('');
    } else if (c.kind === 'adapt') {
      const s = c.statsUs;
      L.push(`## adapt`, '', `${c.description}.`, '', '| median µs | p10–p90 µs | MAD µs | n | target |', '| --- | --- | --- | --- | --- |');
      L.push(`| ${s.median.toFixed(2)} | ${s.p10.toFixed(2)}–${s.p90.toFixed(2)} | ${s.mad.toFixed(2)} | ${s.n} | < 25 µs: ${c.met ? 'met' : 'not met'} |`, '');
    } else if (c.kind === 'throughput') {
      L.push('## adapt-throughput', '', `${c.description}. Target: ${c.target}.`, '');
      L.push('| how | users/s (median round) | p10–p90 users/s | round ms (MAD) | vs sync loop, 1 thread | vs sync loop × cores |', '| --- | --- | --- | --- | --- | --- |');
      for (const r of c.rows)
        L.push(`| ${r.name} | ${Math.round(r.usersPerSecond)} | ${Math.round(r.usersPerSecondP10)}–${Math.round(r.usersPerSecondP90)} | ${ms(r.roundMs.median)} (${ms(r.roundMs.mad)}) | ${(r.vsSyncLoop * 100).toFixed(0)}% | ${(r.vsAllCores * 100).toFixed(0)}% |`);
      L.push('');
    } else if (c.kind === 'memory') {
      L.push('## memory', '', `${c.description}`, '');
      L.push('| S | maml-native peak RSS MiB | growth MiB | PyTorch peak RSS MiB | growth MiB | PyTorch growth / ours |', '| --- | --- | --- | --- | --- | --- |');
      for (const r of c.rows) {
        const mib = (k) => (k / 1024).toFixed(1);
        const o = r.ours, p = r.pytorch;
        const og = o.ok ? (o.peakKiB - o.baseKiB) : null, pg = p?.ok ? (p.peakKiB - p.baseKiB) : null;
        L.push(`| ${r.steps} | ${o.ok ? mib(o.peakKiB) : o.error} | ${og !== null ? mib(og) : '—'} | ${p?.ok ? mib(p.peakKiB) : (p?.notRun ?? p?.error ?? 'not run')} | ${pg !== null ? mib(pg) : '—'} | ${og !== null && pg !== null ? (pg / Math.max(og, 4)).toFixed(1) + '×' : '—'} |`);
      }
      L.push('');
    } else if (c.kind === 'full-run') {
      L.push('## sine-70k', '');
      if (!c.ours) {
        L.push(`${c.notRun}`, '');
        continue;
      }
      L.push(`${c.description}`, '', `Command: \`${c.command}\``, '');
      L.push('| implementation | wall s (end to end) | training s | meta-steps/s | test MSE before / after 1 / after 10 steps |', '| --- | --- | --- | --- | --- |');
      const e = c.ours.result.errors ?? {};
      L.push(`| maml-native CLI | ${c.ours.wallSeconds.toFixed(2)} | ${c.ours.result.trainSeconds?.toFixed(2)} | ${Math.round(c.ours.result.stepsPerSecond)} | ${e.before?.toFixed(3)} / ${e.after1?.toFixed(3)} / ${e.after10?.toFixed(3)} |`);
      if (c.pytorch?.ok) L.push(`| PyTorch batched, 1 thread (\`pytorch_maml.py train\`) | ${c.pytorch.wallSeconds.toFixed(2)} | ${c.pytorch.seconds.toFixed(2)} | ${Math.round(c.pytorch.stepsPerSecond)} | — (training only) |`);
      else L.push(`| PyTorch batched | ${c.pytorch?.notRun ?? c.pytorch?.error ?? 'not run'} | | | |`);
      L.push('');
    }
  }
  return L.join('\n') + '\n';
}
