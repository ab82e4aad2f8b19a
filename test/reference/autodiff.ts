/**
 * A tiny scalar reverse-mode automatic differentiation in float64, written for the test
 * reference only (slow, simple, tiny networks).
 *
 * Every operation creates a `Node` holding its value, its parents and a backward rule that
 * maps the gradient flowing into the node to the gradients of its parents. The backward
 * rules are themselves written with the same operations, so a backward pass run with
 * `createGraph = true` builds new graph nodes (like PyTorch's `create_graph=True`) and its
 * results can be differentiated again: that is how Hessian-vector products and the exact
 * second-order MAML meta-gradient are obtained.
 *
 * A node whose parents are all constants (or that is built while gradients are disabled)
 * is itself a constant: no graph is kept for it (like `requires_grad=False`).
 */

export type Backward = (g: Node) => (Node | null)[];

export class Node {
  v: number;
  req: boolean;
  parents: Node[] | null;
  bw: Backward | null;
  /** scratch for the backward pass */
  mark = 0;
  acc: Node[] | null = null;
  constructor(v: number, req: boolean, parents: Node[] | null, bw: Backward | null) {
    this.v = v;
    this.req = req;
    this.parents = parents;
    this.bw = bw;
  }
}

let gradEnabled = true;

/** Runs `f` with graph building disabled (every node created inside is a constant). */
export function noGrad<T>(f: () => T): T {
  const prev = gradEnabled;
  gradEnabled = false;
  try {
    return f();
  } finally {
    gradEnabled = prev;
  }
}

export function constant(v: number): Node {
  return new Node(v, false, null, null);
}

/** A leaf that requires a gradient (a parameter, a learning rate). */
export function leaf(v: number): Node {
  return new Node(v, true, null, null);
}

/** A constant copy of `a` (stop-gradient). */
export function detach(a: Node): Node {
  return constant(a.v);
}

function make(v: number, parents: Node[], bw: Backward): Node {
  if (gradEnabled) {
    for (const p of parents) {
      if (p.req) return new Node(v, true, parents, bw);
    }
  }
  return constant(v);
}

const ZERO = constant(0);
const ONE = constant(1);

export function add(a: Node, b: Node): Node {
  return make(a.v + b.v, [a, b], (g) => [g, g]);
}

export function sub(a: Node, b: Node): Node {
  return make(a.v - b.v, [a, b], (g) => [g, b.req ? neg(g) : null]);
}

export function neg(a: Node): Node {
  return make(-a.v, [a], (g) => [neg(g)]);
}

export function mul(a: Node, b: Node): Node {
  return make(a.v * b.v, [a, b], (g) => [a.req ? mul(g, b) : null, b.req ? mul(g, a) : null]);
}

/** a * c for a plain number c */
export function scale(a: Node, c: number): Node {
  return make(a.v * c, [a], (g) => [scale(g, c)]);
}

/** Sum of any number of nodes (one node, so that long sums do not make deep graphs). */
export function sum(xs: Node[]): Node {
  if (xs.length === 0) return ZERO;
  if (xs.length === 1) return xs[0]!;
  let v = 0;
  for (const x of xs) v += x.v;
  const parents = xs.slice();
  return make(v, parents, (g) => parents.map(() => g));
}

/** b + sum_i w_i * x_i as one node */
export function affine(ws: Node[], xs: Node[], b: Node): Node {
  const k = ws.length;
  if (xs.length !== k) throw new Error('affine: length mismatch');
  let v = b.v;
  for (let i = 0; i < k; i++) v += ws[i]!.v * xs[i]!.v;
  const parents = [...ws, ...xs, b];
  return make(v, parents, (g) => {
    const out: (Node | null)[] = new Array(2 * k + 1);
    for (let i = 0; i < k; i++) {
      out[i] = ws[i]!.req ? mul(g, xs[i]!) : null;
      out[k + i] = xs[i]!.req ? mul(g, ws[i]!) : null;
    }
    out[2 * k] = g;
    return out;
  });
}

export function tanh(a: Node): Node {
  const out: Node = make(Math.tanh(a.v), [a], (g) => [mul(g, sub(ONE, mul(out, out)))]);
  return out;
}

/** ReLU; its derivative at exactly 0 is 0 (as PyTorch), its second derivative is 0. */
export function relu(a: Node): Node {
  return make(a.v > 0 ? a.v : 0, [a], (g) => [a.v > 0 ? g : ZERO]);
}

export function exp(a: Node): Node {
  const out: Node = make(Math.exp(a.v), [a], (g) => [mul(g, out)]);
  return out;
}

export function recip(a: Node): Node {
  const out: Node = make(1 / a.v, [a], (g) => [mul(g, neg(mul(out, out)))]);
  return out;
}

export function log(a: Node): Node {
  return make(Math.log(a.v), [a], (g) => [mul(g, recip(a))]);
}

function sigmoidValue(z: number): number {
  if (z >= 0) return 1 / (1 + Math.exp(-z));
  const e = Math.exp(z);
  return e / (1 + e);
}

export function sigmoid(a: Node): Node {
  const out: Node = make(sigmoidValue(a.v), [a], (g) => [mul(g, mul(out, sub(ONE, out)))]);
  return out;
}

/** log(1 + exp(z)) computed stably as max(z, 0) + log1p(exp(-|z|)) */
export function softplus(a: Node): Node {
  const z = a.v;
  return make(Math.max(z, 0) + Math.log1p(Math.exp(-Math.abs(z))), [a], (g) => [mul(g, sigmoid(a))]);
}

/** log(sum_i exp(z_i)), stably: m + log(sum exp(z_i - m)) with m a constant (the max). */
export function logSumExp(zs: Node[]): Node {
  let m = -Infinity;
  for (const z of zs) m = Math.max(m, z.v);
  const mc = constant(m);
  return add(mc, log(sum(zs.map((z) => exp(sub(z, mc))))));
}

let epoch = 0;

/**
 * Gradients of the scalar `out` with respect to the nodes `wrt` (partial derivatives of
 * `out` viewed as a function of the vector `wrt`: the traversal stops at the `wrt` nodes
 * and does not follow their own history). With `createGraph` the results are graph nodes
 * that can be differentiated again; without it they are constants.
 * Nodes of `wrt` that `out` does not depend on get 0.
 */
export function grad(out: Node, wrt: Node[], createGraph: boolean): Node[] {
  const result: Node[] = wrt.map(() => ZERO);
  if (!out.req) return result;
  const ep = ++epoch;
  const wrtMark = ++epoch;
  for (const w of wrt) w.mark = wrtMark;
  const isWrt = (n: Node) => n.mark === wrtMark;
  // post-order DFS (iterative), marking visited nodes with `ep`; wrt nodes keep a
  // separate mark and are never expanded
  const order: Node[] = [];
  const wrtReached = new Set<Node>();
  const stack: { n: Node; i: number }[] = [];
  const visit = (n: Node) => {
    if (!n.req) return;
    if (isWrt(n)) {
      wrtReached.add(n);
      return;
    }
    if (n.mark === ep) return;
    n.mark = ep;
    stack.push({ n, i: 0 });
  };
  visit(out);
  while (stack.length > 0) {
    const top = stack[stack.length - 1]!;
    const ps = top.n.parents;
    if (ps !== null && top.i < ps.length) {
      visit(ps[top.i++]!);
    } else {
      stack.pop();
      order.push(top.n);
    }
  }
  const prev = gradEnabled;
  gradEnabled = createGraph;
  try {
    if (isWrt(out)) {
      // d out / d out
      for (let i = 0; i < wrt.length; i++) if (wrt[i] === out) result[i] = ONE;
      return result;
    }
    out.acc = [ONE];
    for (const w of wrtReached) w.acc = null;
    for (let k = order.length - 1; k >= 0; k--) {
      const n = order[k]!;
      const acc = n.acc;
      n.acc = null;
      if (acc === null || n.bw === null || n.parents === null) continue;
      const g = sum(acc);
      const contribs = n.bw(g);
      const ps = n.parents;
      for (let i = 0; i < ps.length; i++) {
        const p = ps[i]!;
        const c = contribs[i];
        if (c === null || c === undefined || !p.req) continue;
        if (p.mark !== ep && !isWrt(p)) continue;
        if (p.acc === null) p.acc = [c];
        else p.acc.push(c);
      }
    }
    const gradOf = new Map<Node, Node>();
    for (const w of wrtReached) {
      if (w.acc !== null) gradOf.set(w, sum(w.acc));
      w.acc = null;
    }
    for (let i = 0; i < wrt.length; i++) {
      const gi = gradOf.get(wrt[i]!);
      if (gi !== undefined) result[i] = gi;
    }
    return result;
  } finally {
    gradEnabled = prev;
    for (const w of wrt) w.mark = 0;
  }
}
