/**
 * Stroke data of Chinese characters from the npm package `hanzi-writer-data` (derived from
 * the Make Me a Hanzi project, Arphic Public License): one JSON file per character,
 * `<package>/<char>.json`, whose `medians` are the median lines of the strokes in writing
 * order, as points in a 1024 × 1024 box with the y axis pointing up (the package's SVG paths
 * are drawn with `translate(0, 900) scale(1, -1)`, so y runs from −124 at the bottom to 900
 * at the top).
 *
 * The package is a devDependency, needed only by the glyph benchmark and its CLI command: it
 * is resolved lazily here, and a missing package is a MamlError('MISSING_DEPENDENCY').
 */
import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { MamlError } from '../errors.js';
import { checkInt, checkObject } from '../validate.js';

/** The version the benchmark was built and measured with. */
export const HANZI_PACKAGE = 'hanzi-writer-data@2.0.1';

/** One character: medians[stroke][point] = [x, y] in the 1024 box, y up. */
export interface HanziCharacter {
  char: string;
  medians: [number, number][][];
}

/** Options of loadHanziCharacters: the package and the stroke-count filter. */
export interface HanziLoadOptions {
  /** the package to resolve (default 'hanzi-writer-data'; tests point it elsewhere) */
  module?: string;
  /** keep characters with at least / at most this many strokes (default 1 / no limit) */
  minStrokes?: number;
  maxStrokes?: number;
}

/** The folder of the installed package, or MISSING_DEPENDENCY with the command that installs it. */
export function hanziDataDir(module = 'hanzi-writer-data'): string {
  const require = createRequire(import.meta.url);
  try {
    return dirname(require.resolve(`${module}/package.json`));
  } catch (err) {
    throw new MamlError(
      'MISSING_DEPENDENCY',
      `the glyph benchmark needs the character stroke data of the npm package '${module}', which is not installed; ` +
        `run \`npm install ${module === 'hanzi-writer-data' ? HANZI_PACKAGE : module}\` (it is a devDependency of maml-native, not needed by the library itself)`,
      { cause: err },
    );
  }
}

function parseCharacter(file: string, char: string): HanziCharacter {
  let data: unknown;
  try {
    data = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new MamlError('CORRUPT_FILE', `loadHanziCharacters: ${file} is not valid JSON`, { cause: err });
  }
  const medians = (data as { medians?: unknown })?.medians;
  const ok =
    Array.isArray(medians) &&
    medians.length > 0 &&
    medians.every(
      (s) => Array.isArray(s) && s.length > 0 && s.every((p) => Array.isArray(p) && p.length === 2 && Number.isFinite(p[0]) && Number.isFinite(p[1])),
    );
  if (!ok) throw new MamlError('CORRUPT_FILE', `loadHanziCharacters: ${file} has no valid 'medians' (a list of strokes, each a list of [x, y] points)`);
  return { char, medians: medians as [number, number][][] };
}

/**
 * Every character of the package whose stroke count lies in [minStrokes, maxStrokes], in
 * code-point order (so that a seeded choice among them is reproducible).
 */
export function loadHanziCharacters(options: HanziLoadOptions = {}): HanziCharacter[] {
  const where = 'loadHanziCharacters';
  const o = checkObject(options, where, 'options');
  const minStrokes = o.minStrokes === undefined ? 1 : checkInt(o.minStrokes, where, 'options.minStrokes', 1, 1000);
  const maxStrokes = o.maxStrokes === undefined ? 1000 : checkInt(o.maxStrokes, where, 'options.maxStrokes', minStrokes, 1000);
  const dir = hanziDataDir(o.module === undefined ? undefined : String(o.module));
  const names = readdirSync(dir)
    .filter((f) => f.endsWith('.json') && f !== 'package.json')
    .map((f) => f.slice(0, -5))
    .filter((c) => [...c].length === 1)
    .sort((a, b) => a.codePointAt(0)! - b.codePointAt(0)!);
  const out: HanziCharacter[] = [];
  for (const c of names) {
    const ch = parseCharacter(join(dir, `${c}.json`), c);
    if (ch.medians.length >= minStrokes && ch.medians.length <= maxStrokes) out.push(ch);
  }
  return out;
}
