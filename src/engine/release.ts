// Memory of a training step: tfjs keeps every tensor that any gradient saved until the whole backward pass is
// over, and every gradient it computed as well, so a step's peak is (forward activations, several copies per
// layer) + (a gradient of each). On the reference AlexNet that was 1.6 GB of tensors for 32 images. While the
// native backend runs, engine.gradients is wrapped so that:
// - a tape node's saved tensors are disposed as soon as its gradient has run (tfjs disposes the same tensors at
//   the end of the backward pass; this only does it earlier),
// - the gradient of a tensor, and the partial gradients that were summed into it, are disposed once the node
//   that produced the tensor has consumed them (tfjs would dispose them at the end of the backward pass too),
// - kernels whose gradient reads only the shapes of what they saved (Add, Sub, Mean, Sum) keep shapes instead of
//   tensors, and ReLU keeps its output instead of its input (the same mask: x > 0 exactly where relu(x) > 0),
//   so that the forward pass's own tidy frees the intermediate tensors nobody else saved.
// Nothing changes for higher-order gradients (the tape is recording during the backward pass), for a dy the
// caller passed in, or for the gradients returned; other backends run tfjs's engine untouched.
// Batch normalisation fed by its own moments gets its closed-form gradient (src/engine/fusion.ts) here too.
import * as tf from '@tensorflow/tfjs-core';
import type { GradConfig, Tensor } from '@tensorflow/tfjs-core';
import { NATIVE_BACKEND_NAME } from './names.js';
import { fuseBatchNormMoments } from './fusion.js';
import { engineInternals, type EngineInternals, type TapeNode } from './internals.js';

/** Stands in for a saved tensor whose gradient reads only its shape and dtype; touching its data would throw. */
class SavedShape {
  constructor(
    readonly shape: number[],
    readonly dtype: tf.DataType,
  ) {}
  get rank(): number {
    return this.shape.length;
  }
  get size(): number {
    return tf.util.sizeFromShape(this.shape);
  }
  dispose(): void {}
}

/** Kernels whose registered gradient (tfjs's, or this engine's override in gradients.ts) reads saved shapes only. */
const SHAPE_ONLY = ['Add', 'Sub', 'Mean', 'Sum'];
let vetted = new Map<string, GradConfig['gradFunc']>();

/** Records the gradient functions checked to read shapes only; a later re-registration disables the diet. */
export function vetShapeOnlyGradients(): void {
  vetted = new Map(SHAPE_ONLY.flatMap((k) => {
    const g = tf.getGradient(k);
    return g ? [[k, g.gradFunc] as const] : [];
  }));
}

function shapeOnly(kernelName: string): boolean {
  const g = tf.getGradient(kernelName);
  return g !== undefined && vetted.get(kernelName) === g.gradFunc;
}

/** One backward pass's bookkeeping. */
class Session {
  /** Partial gradients returned for each tensor (by id), not yet consumed. */
  private readonly contributions = new Map<number, Tensor[]>();
  /** How many unconsumed partial-gradient lists hold each tensor object. */
  private readonly pendingRefs = new Map<Tensor, number>();
  private previous: { node: TapeNode; dys: (Tensor | null)[] } | null = null;

  constructor(
    private readonly engine: EngineInternals,
    private readonly userDy: Tensor | undefined,
  ) {}

  private readonly dieted = new WeakSet<TapeNode>();

  /** Diets each node as the forward pass records it, so that the tidy of the layer (or op) that made an
   * intermediate tensor frees it when nothing else saved it, instead of the whole forward pass holding it. */
  watch(tape: TapeNode[]): () => void {
    tape.push = (...nodes: TapeNode[]): number => {
      for (const n of nodes) this.diet(n);
      return Array.prototype.push.apply(tape, nodes);
    };
    return () => {
      delete (tape as { push?: unknown }).push;
    };
  }

  /** Called when f() has built the tape, before the forward tidy disposes its intermediates. */
  instrument(tape: TapeNode[], y: Tensor): void {
    fuseBatchNormMoments(tape, y);
    for (const node of tape.slice()) {
      this.diet(node);
      const gradient = node.gradient;
      if (!gradient) continue;
      node.gradient = (dys) => {
        this.finishPrevious();
        const closures = gradient(dys);
        if (this.engine.state.gradientDepth > 0) return closures; // a tape records the backward pass
        const wrapped: Record<string, () => Tensor> = {};
        for (const [name, closure] of Object.entries(closures)) {
          wrapped[name] = () => {
            const dx = closure();
            const input = node.inputs[name];
            if (input) this.contribute(input, dx);
            return dx;
          };
        }
        this.previous = { node, dys };
        return wrapped;
      };
    }
  }

  /** Saves shapes instead of tensors where the gradient reads only shapes, and ReLU's output for its input. */
  private diet(node: TapeNode): void {
    const saved = node.saved;
    if (!saved || saved.length === 0 || this.dieted.has(node)) return;
    this.dieted.add(node);
    if (shapeOnly(node.kernelName)) {
      for (let i = 0; i < saved.length; i++) {
        const t = saved[i];
        if (t instanceof SavedShape) continue;
        saved[i] = new SavedShape(t.shape.slice(), t.dtype) as unknown as Tensor;
        t.dispose();
      }
    } else if (node.kernelName === 'Relu' && saved.length === 1 && node.outputs.length === 1) {
      const [x] = saved;
      const y = node.outputs[0];
      if (!y.isDisposed && x.dtype === 'float32' && y.dtype === 'float32') {
        // A second handle on y's data without a kernel call (which the recording tape would log): one more
        // backend reference, as tfjs's Identity kernel takes.
        (tf.backend() as unknown as { incRef(dataId: object): void }).incRef(y.dataId);
        saved[0] = tf.keep(this.engine.makeTensorFromDataId(y.dataId, y.shape.slice(), y.dtype));
        x.dispose();
      }
    }
  }

  private contribute(input: Tensor, dx: Tensor): void {
    const list = this.contributions.get(input.id);
    if (list) list.push(dx);
    else this.contributions.set(input.id, [dx]);
    this.pendingRefs.set(dx, (this.pendingRefs.get(dx) ?? 0) + 1);
  }

  /** Disposes what the node processed last no longer needs: its saved tensors, its outputs' gradients. */
  finishPrevious(): void {
    const p = this.previous;
    this.previous = null;
    if (!p || this.engine.state.gradientDepth > 0) return;
    const candidates = new Set<Tensor>();
    for (const o of p.node.outputs) {
      for (const dx of this.contributions.get(o.id) ?? []) {
        const refs = (this.pendingRefs.get(dx) ?? 1) - 1;
        if (refs > 0) this.pendingRefs.set(dx, refs);
        else this.pendingRefs.delete(dx);
        candidates.add(dx);
      }
      this.contributions.delete(o.id);
    }
    for (const dy of p.dys) if (dy) candidates.add(dy);
    for (const t of candidates) {
      if (t !== this.userDy && !this.pendingRefs.has(t)) t.dispose();
    }
    for (const s of p.node.saved ?? []) s.dispose();
  }
}

/** Wraps engine.gradients; the wrapper defers to tfjs unless the native backend is active. Returns how to unwrap it. */
export function installEarlyRelease(): () => void {
  vetShapeOnlyGradients();
  const engine = engineInternals();
  const own = Object.prototype.hasOwnProperty.call(engine, 'gradients') ? engine.gradients : undefined;
  const original = engine.gradients.bind(engine);
  engine.gradients = (f, xs, dy, allowNoGradients) => {
    if (tf.getBackend() !== NATIVE_BACKEND_NAME || engine.state.gradientDepth > 0) return original(f, xs, dy, allowNoGradients);
    const session = new Session(engine, dy);
    return original(
      () => {
        const tape = engine.state.gradientDepth === 1 ? engine.state.activeTape : null;
        const unwatch = tape ? session.watch(tape) : undefined;
        let y: Tensor;
        try {
          y = f();
        } finally {
          unwatch?.();
        }
        if (tape) session.instrument(tape, y);
        return y;
      },
      xs,
      dy,
      allowNoGradients,
    );
  };
  return () => {
    if (own) engine.gradients = own;
    else delete (engine as { gradients?: unknown }).gradients;
  };
}
