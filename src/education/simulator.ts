/**
 * A student-response simulator with a known truth: multidimensional item response theory.
 *
 *   student u:  ability θ_u ∈ R^D ~ N(0, σ²·((1 − ρ)·I + ρ·11ᵀ))   (skills correlate through ρ)
 *   item j:     loads on one skill, or two (weights 0.8 and 0.6: q_j has unit length),
 *               discrimination a_j ~ LogNormal(0, s_a), difficulty b_j ~ N(0, s_b)
 *   answer:     P(correct) = σ(a_j · (q_j · θ_u(t)) − b_j)
 *   learning:   θ_u(t) = θ_u + γ · Σ over earlier answers of q_(their item)   (γ = learningRate)
 *
 * Learning depends on practice only, not on correctness, so the ability at every answer is
 * θ_u plus a known shift, and the Bayes-optimal predictor (bayes.ts) stays exact.
 *
 * Sessions look like ASSISTments skill builders: each student works through `blocks` skills,
 * one after another, answering `blockLength` distinct items of each, so that the answers that
 * follow a student's first K usually share skills with them.
 */
import { MamlError } from '../errors.js';
import { Rng } from '../rng.js';
import { checkInt, checkNumber, checkObject } from '../validate.js';
import type { ResponseLog } from './log.js';

export interface SimulatorConfig {
  /** default 8000 */
  students: number;
  /** D, default 10 */
  skills: number;
  /** items whose first skill is each skill (default 30) */
  itemsPerSkill: number;
  /** fraction of items that also load on a second skill (default 0.2) */
  secondSkillFraction: number;
  /** σ, default 1 */
  abilitySd: number;
  /** ρ, the correlation of a student's abilities on two skills (default 0.5) */
  abilityCorrelation: number;
  /** s_a: log-discriminations ~ N(0, s_a²) (default 0.3) */
  discriminationLogSd: number;
  /** s_b (default 1) */
  difficultySd: number;
  /** skills practised per student, uniform in [min, max] (default 3..5) */
  blocksMin: number;
  blocksMax: number;
  /** answers per skill block, uniform in [min, max] (default 5..15; at most itemsPerSkill) */
  blockLengthMin: number;
  blockLengthMax: number;
  /** γ: ability gained on a skill per answer practising it (default 0: no learning) */
  learningRate: number;
  /** default 1 */
  seed: number;
}

export const SIMULATOR_DEFAULTS: Readonly<SimulatorConfig> = Object.freeze({
  students: 8000,
  skills: 10,
  itemsPerSkill: 30,
  secondSkillFraction: 0.2,
  abilitySd: 1,
  abilityCorrelation: 0.5,
  discriminationLogSd: 0.3,
  difficultySd: 1,
  blocksMin: 3,
  blocksMax: 5,
  blockLengthMin: 5,
  blockLengthMax: 15,
  learningRate: 0,
  seed: 1,
});

/** What generated the answers: the parameters of the model above, and each answer's probability. */
export interface SimulatorTruth {
  config: SimulatorConfig;
  /** θ: [students × D] */
  ability: Float64Array;
  /** a: [items] */
  discrimination: Float64Array;
  /** b: [items] */
  difficulty: Float64Array;
  /** q: [items × D], unit-length rows with one or two non-zeros */
  loadings: Float64Array;
  /** [n] the true P(correct) of each answer, at the time it was given */
  probability: Float32Array;
}

export interface SimulatedData {
  log: ResponseLog;
  truth: SimulatorTruth;
}

/** The loadings of an item on its second skill, and on its first when it has two. */
export const SECOND_SKILL_WEIGHTS = [0.8, 0.6] as const;

/** Validates a partial config and fills in the defaults. */
export function simulatorConfig(partial: Partial<SimulatorConfig> = {}): SimulatorConfig {
  const where = 'simulateStudents';
  const o = checkObject(partial, where, 'config');
  for (const key of Object.keys(o))
    if (!(key in SIMULATOR_DEFAULTS)) throw new MamlError('INVALID_ARGUMENT', `${where}: unknown option config.${key}`);
  const c: SimulatorConfig = { ...SIMULATOR_DEFAULTS, ...(o as Partial<SimulatorConfig>) };
  checkInt(c.students, where, 'config.students', 1, 10_000_000);
  checkInt(c.skills, where, 'config.skills', 1, 10_000);
  checkInt(c.itemsPerSkill, where, 'config.itemsPerSkill', 1, 1_000_000);
  checkNumber(c.secondSkillFraction, where, 'config.secondSkillFraction', { min: 0, max: 1 });
  if (c.skills < 2 && c.secondSkillFraction > 0) c.secondSkillFraction = 0;
  checkNumber(c.abilitySd, where, 'config.abilitySd', { min: 0 });
  checkNumber(c.abilityCorrelation, where, 'config.abilityCorrelation', { min: 0, max: 1 });
  checkNumber(c.discriminationLogSd, where, 'config.discriminationLogSd', { min: 0 });
  checkNumber(c.difficultySd, where, 'config.difficultySd', { min: 0 });
  checkInt(c.blocksMin, where, 'config.blocksMin', 1, 1_000_000);
  checkInt(c.blocksMax, where, 'config.blocksMax', c.blocksMin, 1_000_000);
  checkInt(c.blockLengthMin, where, 'config.blockLengthMin', 1, c.itemsPerSkill);
  checkInt(c.blockLengthMax, where, 'config.blockLengthMax', c.blockLengthMin, c.itemsPerSkill);
  checkNumber(c.learningRate, where, 'config.learningRate', {});
  checkInt(c.seed, where, 'config.seed', 0, 2 ** 32 - 1);
  return c;
}

const sigmoid = (z: number): number => 1 / (1 + Math.exp(-z));

/**
 * Simulates students answering items. Seeded: a config reproduces its data bit for bit.
 * About 10 million answers a second (a million in a fraction of a second).
 *
 * @example
 * const { log, truth } = simulateStudents({ students: 1000, seed: 7 });
 * log.correct.length;          // number of answers
 * truth.probability[0];        // P(correct) of the first answer under the true parameters
 */
export function simulateStudents(partial: Partial<SimulatorConfig> = {}): SimulatedData {
  const c = simulatorConfig(partial);
  const D = c.skills;
  const J = D * c.itemsPerSkill;
  const rng = new Rng(c.seed);
  const itemRng = rng.fork();
  const studentRng = rng.fork();

  // items: item j's first skill is floor(j / itemsPerSkill)
  const discrimination = new Float64Array(J);
  const difficulty = new Float64Array(J);
  const loadings = new Float64Array(J * D);
  const itemSkills: number[][] = [];
  for (let j = 0; j < J; j++) {
    const k = Math.floor(j / c.itemsPerSkill);
    discrimination[j] = Math.exp(c.discriminationLogSd * itemRng.normal());
    difficulty[j] = c.difficultySd * itemRng.normal();
    if (itemRng.uniform() < c.secondSkillFraction) {
      let k2 = itemRng.int(D - 1);
      if (k2 >= k) k2++;
      loadings[j * D + k] = SECOND_SKILL_WEIGHTS[0];
      loadings[j * D + k2] = SECOND_SKILL_WEIGHTS[1];
      itemSkills.push([k, k2]);
    } else {
      loadings[j * D + k] = 1;
      itemSkills.push([k]);
    }
  }

  // students: θ = σ(√ρ·g·1 + √(1−ρ)·e), g ~ N(0, 1), e ~ N(0, I)
  const U = c.students;
  const ability = new Float64Array(U * D);
  const sg = Math.sqrt(c.abilityCorrelation), se = Math.sqrt(1 - c.abilityCorrelation);
  const student: number[] = [], item: number[] = [], correct: number[] = [], prob: number[] = [];
  const shift = new Float64Array(D);
  const skillOrder = Int32Array.from({ length: D }, (_, k) => k);
  const pool = Int32Array.from({ length: c.itemsPerSkill }, (_, i) => i);
  for (let u = 0; u < U; u++) {
    const g = studentRng.normal();
    const th = ability.subarray(u * D, (u + 1) * D);
    for (let k = 0; k < D; k++) th[k] = c.abilitySd * (sg * g + se * studentRng.normal());
    shift.fill(0);
    const blocks = Math.min(D, c.blocksMin + studentRng.int(c.blocksMax - c.blocksMin + 1));
    // the first `blocks` entries of a partial Fisher-Yates shuffle: distinct skills
    for (let b = 0; b < blocks; b++) {
      const pick = b + studentRng.int(D - b);
      const k = skillOrder[pick]!;
      skillOrder[pick] = skillOrder[b]!;
      skillOrder[b] = k;
      const len = c.blockLengthMin + studentRng.int(c.blockLengthMax - c.blockLengthMin + 1);
      for (let i = 0; i < len; i++) {
        const pi = i + studentRng.int(c.itemsPerSkill - i);
        const jj = pool[pi]!;
        pool[pi] = pool[i]!;
        pool[i] = jj;
        const j = k * c.itemsPerSkill + jj;
        let z = 0;
        const q = loadings.subarray(j * D, (j + 1) * D);
        for (const s of itemSkills[j]!) z += q[s]! * (th[s]! + shift[s]!);
        const p = sigmoid(discrimination[j]! * z - difficulty[j]!);
        student.push(u);
        item.push(j);
        prob.push(p);
        correct.push(studentRng.uniform() < p ? 1 : 0);
        if (c.learningRate !== 0) for (const s of itemSkills[j]!) shift[s]! += c.learningRate * q[s]!;
      }
    }
  }

  const n = student.length;
  const skillOffsets = new Int32Array(n + 1);
  const skillsFlat: number[] = [];
  for (let i = 0; i < n; i++) {
    for (const s of itemSkills[item[i]!]!) skillsFlat.push(s);
    skillOffsets[i + 1] = skillsFlat.length;
  }
  const log: ResponseLog = {
    student: Int32Array.from(student),
    item: Int32Array.from(item),
    correct: Uint8Array.from(correct),
    order: Float64Array.from({ length: n }, (_, i) => i + 1),
    skillOffsets,
    skills: Int32Array.from(skillsFlat),
    studentIds: Array.from({ length: U }, (_, u) => `s${u + 1}`),
    itemIds: Array.from({ length: J }, (_, j) => `${j + 1}`),
    skillIds: Array.from({ length: D }, (_, k) => `${k + 1}`),
  };
  return { log, truth: { config: c, ability, discrimination, difficulty, loadings, probability: Float32Array.from(prob) } };
}
