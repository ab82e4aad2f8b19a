/**
 * A learner's queue of asynchronous operations: each runs after the previous one settles, in
 * call order, whether it resolved or rejected. `pending` counts the operations queued or
 * running, so that synchronous methods can refuse with BUSY while one is in flight.
 */
export class SerialQueue {
  /** Operations queued or running. */
  pending = 0;
  #tail: Promise<unknown> = Promise.resolve();

  /** Runs `fn` after every operation queued before it; the result is `fn`'s. */
  run<R>(fn: () => Promise<R>): Promise<R> {
    this.pending++;
    const run = this.#tail.then(fn).finally(() => {
      this.pending--;
    });
    this.#tail = run.catch(() => undefined);
    return run;
  }
}
