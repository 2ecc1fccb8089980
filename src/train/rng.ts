/**
 * mulberry32 (the generator of src/data/random.ts) with its 32-bit state exposed, so that a training checkpoint can
 * store where the augmentation stream was and a resumed run draws the very same numbers.
 */
export class Rng {
  constructor(public state: number) {
    this.state = state >>> 0;
  }

  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** A plain function view for APIs that take `() => number`. */
  fn(): () => number {
    return () => this.next();
  }
}

/** The order of the training examples in `epoch`: a function of seed and epoch only, so resuming needs no state. */
export function epochOrder(n: number, seed: number, epoch: number): number[] {
  const rng = new Rng((Math.imul(seed ^ 0x9e3779b9, 31) + Math.imul(epoch + 1, 0x85ebca6b)) >>> 0);
  const order = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rng.next() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  return order;
}
