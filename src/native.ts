/**
 * Calls into the native addon, turning its coded errors into MamlErrors. For asynchronous
 * calls the JavaScript stack is captured before the call, so that an error points at the
 * user's line rather than at the event loop.
 */
import { fromNative } from './errors.js';
import { loadNative } from './loader.js';
import type { NativeAddon } from './native-types.js';
import { checkInt } from './validate.js';

export function callNative<R>(fn: (addon: NativeAddon) => R): R {
  const addon = loadNative();
  try {
    return fn(addon);
  } catch (err) {
    throw fromNative(err);
  }
}

export async function callNativeAsync<R>(fn: (addon: NativeAddon) => Promise<R>): Promise<R> {
  const stack = new Error().stack;
  const addon = loadNative();
  try {
    return await fn(addon);
  } catch (err) {
    throw fromNative(err, stack);
  }
}

/** Sets the number of native worker threads (1 = the calling thread only). */
export function setThreads(n: number): void {
  checkInt(n, 'setThreads', 'n', 1, 1024);
  callNative((a) => a.setThreads(n));
}

/** The number of native worker threads in use. */
export function getThreads(): number {
  return callNative((a) => a.getThreads());
}
