/**
 * ASSISTments-style CSV logs: a streaming loader (csv-parse) and a writer of the same format.
 *
 * The 2009 skill-builder export, as it is:
 * - columns are found by name in the header (case and surrounding spaces ignored); needed:
 *   `user_id`, `problem_id`, `correct`; used when present: `order_id` (chronological order;
 *   without it, file order), `skill_id`, `original`; every other column is ignored;
 * - ISO-8859-1 text (`skill_name` has accented letters): decoded as latin1 by default, which
 *   never fails and leaves the numeric ids untouched; a UTF-8 byte-order mark is skipped;
 * - one row per skill for multi-skill problems: rows with the same `user_id` and `order_id`
 *   are one answer, with the union of their skills (the "collapsed" exports' `10_13` style of
 *   skill id counts as skills 10 and 13 too);
 * - empty `skill_id`: the answer is kept, with no skill;
 * - scaffolding rows (`original` = 0, the sub-questions of a problem the student missed) are
 *   dropped by default: they are not the student's own first attempts at the problem, and
 *   they would let a model "predict" a scaffold from the miss that triggered it. Pass
 *   `keepScaffolding: true` to keep them.
 * A malformed row (wrong number of fields, empty user or problem id, `correct` not 0 or 1, a
 * non-numeric `order_id`) stops the load with a CsvFormatError (code CORRUPT_FILE) that names
 * the file, the line and the column.
 */
import { createReadStream, statSync } from 'node:fs';
import { parse, CsvError } from 'csv-parse';
import { MamlError, describe } from '../errors.js';
import { writeFileAtomic } from '../safetensors.js';
import type { ResponseLog } from './log.js';

/** A data file that cannot be read as the format says: code CORRUPT_FILE, with where. */
export class CsvFormatError extends MamlError {
  readonly file: string;
  /** 1-based line of the file (the header is line 1) */
  readonly line: number;
  readonly column: string | undefined;
  constructor(file: string, line: number, message: string, column?: string, options?: { cause?: unknown }) {
    super('CORRUPT_FILE', `${file}:${line}: ${message}`, options);
    this.name = 'CsvFormatError';
    this.file = file;
    this.line = line;
    this.column = column;
  }
}

export interface LoadOptions {
  /** 'latin1' (ISO-8859-1, the default: never fails) or 'utf8' */
  encoding?: 'latin1' | 'utf8';
  /** keep rows with original = 0 (default false: drop them) */
  keepScaffolding?: boolean;
  /** called with the rows read so far, every 65,536 rows (for progress bars) */
  onProgress?: (rows: number, bytes: number, totalBytes: number) => void;
}

/** What the loader read, dropped and merged. */
export interface LoadStats {
  /** data rows (lines after the header that hold a record) */
  rows: number;
  /** answers kept (after merging multi-skill rows and dropping scaffolding) */
  interactions: number;
  scaffoldingDropped: number;
  /** rows merged into an earlier row of the same answer (one row per skill) */
  multiSkillRows: number;
  /** answers with no skill id */
  emptySkill: number;
  /** rows merged into an answer whose `correct` differed (the first one is kept) */
  conflicts: number;
  seconds: number;
}

export interface LoadedLog extends ResponseLog {
  /** [n] the line of the file where each answer was first seen */
  lines: Int32Array;
  stats: LoadStats;
}

const REQUIRED = ['user_id', 'problem_id', 'correct'] as const;

/**
 * Loads an ASSISTments-style CSV file (see the file header for the rules), streaming.
 *
 * @example
 * const log = await loadAssistmentsCsv('skill_builder_data.csv');
 * console.log(log.stats); // { rows, interactions, scaffoldingDropped, multiSkillRows, ... }
 */
export async function loadAssistmentsCsv(file: string, options: LoadOptions = {}): Promise<LoadedLog> {
  if (typeof file !== 'string' || file.length === 0)
    throw new MamlError('INVALID_ARGUMENT', `loadAssistmentsCsv: file must be a path, got ${describe(file)}`);
  const encoding = options.encoding ?? 'latin1';
  if (encoding !== 'latin1' && encoding !== 'utf8')
    throw new MamlError('INVALID_ARGUMENT', `loadAssistmentsCsv: options.encoding must be 'latin1' or 'utf8', got ${describe(encoding)}`);
  const keepScaffolding = options.keepScaffolding ?? false;
  const onProgress = options.onProgress;
  let totalBytes: number;
  try {
    totalBytes = statSync(file).size;
  } catch (err) {
    throw new MamlError('IO_ERROR', `cannot read ${file}: ${(err as Error).message}`, { cause: err });
  }
  const t0 = performance.now();

  const studentIndex = new Map<string, number>(), itemIndex = new Map<string, number>(), skillIndex = new Map<string, number>();
  const studentIds: string[] = [], itemIds: string[] = [], skillIds: string[] = [];
  const idOf = (map: Map<string, number>, list: string[], key: string): number => {
    let v = map.get(key);
    if (v === undefined) {
      v = list.length;
      map.set(key, v);
      list.push(key);
    }
    return v;
  };
  const student: number[] = [], item: number[] = [], correct: number[] = [], order: number[] = [], lines: number[] = [];
  const skillsOf: number[][] = []; // per answer; merged rows add to it
  const byKey = new Map<string, number>(); // `${user}\0${order_id}` -> answer
  const stats: LoadStats = { rows: 0, interactions: 0, scaffoldingDropped: 0, multiSkillRows: 0, emptySkill: 0, conflicts: 0, seconds: 0 };
  let col: Record<(typeof REQUIRED)[number] | 'order_id' | 'skill_id' | 'original', number> | null = null;
  let width = 0;

  const onRecord = (rec: string[], line: number): void => {
    if (col === null) {
      const names = rec.map((h) => h.trim().toLowerCase());
      const find = (name: string) => names.indexOf(name);
      for (const name of REQUIRED)
        if (find(name) < 0)
          throw new CsvFormatError(file, line, `the header has no column '${name}' (needed: ${REQUIRED.join(', ')}; found: ${names.slice(0, 12).join(', ')}${names.length > 12 ? ', …' : ''})`, name);
      col = { user_id: find('user_id'), problem_id: find('problem_id'), correct: find('correct'), order_id: find('order_id'), skill_id: find('skill_id'), original: find('original') };
      width = rec.length;
      return;
    }
    if (rec.length === 1 && rec[0]!.trim() === '') return; // a blank line
    stats.rows++;
    if (rec.length !== width)
      throw new CsvFormatError(file, line, `expected ${width} fields as in the header, got ${rec.length}`);
    const c = col;
    const user = rec[c.user_id]!.trim();
    if (user === '') throw new CsvFormatError(file, line, 'user_id is empty', 'user_id');
    const problem = rec[c.problem_id]!.trim();
    if (problem === '') throw new CsvFormatError(file, line, 'problem_id is empty', 'problem_id');
    const cv = rec[c.correct]!.trim();
    const y = cv === '1' ? 1 : cv === '0' ? 0 : Number(cv);
    if (cv === '' || (y !== 0 && y !== 1))
      throw new CsvFormatError(file, line, `correct must be 0 or 1, got ${JSON.stringify(cv.slice(0, 40))}`, 'correct');
    let ord = stats.rows; // file order when there is no order_id
    if (c.order_id >= 0) {
      const ov = rec[c.order_id]!.trim();
      ord = Number(ov);
      if (ov === '' || !Number.isFinite(ord))
        throw new CsvFormatError(file, line, `order_id must be a number, got ${JSON.stringify(ov.slice(0, 40))}`, 'order_id');
    }
    if (c.original >= 0) {
      const orig = rec[c.original]!.trim();
      if (orig !== '' && orig !== '0' && orig !== '1')
        throw new CsvFormatError(file, line, `original must be 0 or 1, got ${JSON.stringify(orig.slice(0, 40))}`, 'original');
      if (orig === '0' && !keepScaffolding) {
        stats.scaffoldingDropped++;
        return;
      }
    }
    const skillText = c.skill_id >= 0 ? rec[c.skill_id]!.trim() : '';
    const skills: number[] = [];
    if (skillText !== '')
      for (const part of skillText.split('_')) {
        const s = part.trim();
        if (s !== '') skills.push(idOf(skillIndex, skillIds, s));
      }
    if (c.order_id >= 0) {
      const key = `${user}\u0000${ord}`;
      const prev = byKey.get(key);
      if (prev !== undefined && itemIds[item[prev]!] === problem) {
        stats.multiSkillRows++;
        if (correct[prev] !== y) stats.conflicts++;
        const have = skillsOf[prev]!;
        for (const s of skills) if (!have.includes(s)) have.push(s);
        return;
      }
      if (prev !== undefined)
        throw new CsvFormatError(file, line, `order_id ${ord} of user ${user} was already used by line ${lines[prev]} for problem ${itemIds[item[prev]!]}, here it is problem ${problem}`, 'order_id');
      byKey.set(key, student.length);
    }
    student.push(idOf(studentIndex, studentIds, user));
    item.push(idOf(itemIndex, itemIds, problem));
    correct.push(y);
    order.push(ord);
    lines.push(line);
    skillsOf.push(skills);
  };

  let lastLine = 0; // the line where the last complete record ended
  const parser = createReadStream(file).pipe(
    parse({
      encoding,
      bom: true,
      relax_column_count: true, // checked per row above, with the line
      skip_empty_lines: true,
      on_record: (rec: string[], ctx: { lines: number; bytes: number }) => {
        onRecord(rec, ctx.lines);
        lastLine = ctx.lines;
        if (onProgress && (stats.rows & 65535) === 0 && stats.rows > 0) onProgress(stats.rows, ctx.bytes, totalBytes);
        return null; // nothing is emitted: the rows are stored as they come
      },
    }),
  );
  try {
    for await (const _ of parser) void _; // on_record stores the rows; this waits for the end
  } catch (err) {
    if (err instanceof MamlError) throw err;
    if (err instanceof CsvError) {
      const e = err as CsvError & { lines?: number };
      if (e.code === 'CSV_QUOTE_NOT_CLOSED')
        throw new CsvFormatError(file, lastLine + 1, `a quoted field opened in the record starting here is never closed (the file ends at line ${e.lines ?? '?'})`, undefined, { cause: err });
      throw new CsvFormatError(file, e.lines ?? lastLine + 1, `the CSV cannot be parsed: ${err.message}`, undefined, { cause: err });
    }
    throw new MamlError('IO_ERROR', `cannot read ${file}: ${(err as Error).message}`, { cause: err });
  }
  if (col === null) throw new CsvFormatError(file, 1, 'the file is empty: no header line');

  const n = student.length;
  const skillOffsets = new Int32Array(n + 1);
  let total = 0;
  for (let i = 0; i < n; i++) {
    total += skillsOf[i]!.length;
    if (skillsOf[i]!.length === 0) stats.emptySkill++;
    skillOffsets[i + 1] = total;
  }
  const skills = new Int32Array(total);
  for (let i = 0; i < n; i++) skills.set(skillsOf[i]!, skillOffsets[i]!);
  stats.interactions = n;
  stats.seconds = (performance.now() - t0) / 1000;
  onProgress?.(stats.rows, totalBytes, totalBytes);
  return {
    student: Int32Array.from(student),
    item: Int32Array.from(item),
    correct: Uint8Array.from(correct),
    order: Float64Array.from(order),
    skillOffsets,
    skills,
    studentIds,
    itemIds,
    skillIds,
    lines: Int32Array.from(lines),
    stats,
  };
}

/** A field as CSV writes it: quoted when it holds a comma, a quote or a line break. */
function field(text: string): string {
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

/**
 * Writes a log as an ASSISTments skill-builder CSV (columns order_id, user_id, problem_id,
 * original, correct, skill_id, skill_name; one row per skill, an empty skill_id for an answer
 * without skills), atomically. loadAssistmentsCsv reads it back to the same answers.
 */
export function writeAssistmentsCsv(file: string, log: ResponseLog, options: { skillNames?: readonly string[] } = {}): void {
  const names = options.skillNames ?? log.skillIds.map((s) => `Skill ${s}`);
  const chunks: Buffer[] = [];
  let lines: string[] = ['order_id,user_id,problem_id,original,correct,skill_id,skill_name'];
  const n = log.student.length;
  for (let i = 0; i < n; i++) {
    const head = `${log.order[i]},${field(log.studentIds[log.student[i]!]!)},${field(log.itemIds[log.item[i]!]!)},1,${log.correct[i]},`;
    const a = log.skillOffsets[i]!, b = log.skillOffsets[i + 1]!;
    if (a === b) lines.push(`${head},`);
    for (let k = a; k < b; k++) lines.push(`${head}${field(log.skillIds[log.skills[k]!]!)},${field(names[log.skills[k]!] ?? '')}`);
    if (lines.length >= 65536) {
      chunks.push(Buffer.from(lines.join('\n') + '\n', 'latin1'));
      lines = [];
    }
  }
  if (lines.length) chunks.push(Buffer.from(lines.join('\n') + '\n', 'latin1'));
  writeFileAtomic(file, new Uint8Array(Buffer.concat(chunks)));
}
