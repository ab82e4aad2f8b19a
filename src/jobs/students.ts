/**
 * The education commands (issue #5): `maml-native train students` and `eval students`.
 * Placeholder until that work lands.
 */
import { MamlError } from '../errors.js';

export const STUDENTS_USAGE = '';

export async function trainStudentsCommand(_argv: string[]): Promise<number> {
  throw new MamlError('UNSUPPORTED', 'train students is not available in this version');
}

export async function evalStudentsCommand(_argv: string[]): Promise<number> {
  throw new MamlError('UNSUPPORTED', 'eval students is not available in this version');
}
