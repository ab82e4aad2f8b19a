// A worker_thread of the adapt-throughput case: its own learner, the synchronous adapt() loop
// over its share of the users on each 'go'; replies when done.
import { parentPort, workerData } from 'node:worker_threads';
import { MetaLearner } from '../../lib/index.js';

const { opts, params, xs, ys, shots, users, steps } = workerData;
const learner = new MetaLearner({ ...opts, params });
const loop = () => {
  for (let k = 0; k < users; k++) learner.adapt({ x: xs.subarray(k * shots, (k + 1) * shots), y: ys.subarray(k * shots, (k + 1) * shots) }, { steps });
};
loop(); // warm-up
parentPort.postMessage('ready');
parentPort.on('message', () => {
  loop();
  parentPort.postMessage('done');
});
