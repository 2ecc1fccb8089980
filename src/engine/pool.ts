import { totalmem } from 'node:os';

// Recycling of large tensor buffers. A fresh 40 MB Float32Array costs a zero-filled page fault per 4 KiB the
// first time it is written; in a training step that cost three times the arithmetic of an element-wise kernel.
// The native backend allocates kernel outputs here and gets them back when tfjs disposes the tensor (not when V8
// eventually collects it), so the next step reuses warm memory.
//
// Safety: a buffer returns to the pool only when no tensor refers to it any more, counted per ArrayBuffer so
// that views (e.g. a contiguous Slice) keep it alive; and the backend hands out copies of pooled data from
// readSync/read, so user code never holds a reference into a recycled buffer.

export class BufferPool {
  private readonly free = new Map<number, Float32Array[]>();
  private readonly owners = new WeakMap<ArrayBufferLike, { array: Float32Array; refs: number }>();
  private freeBytes = 0;

  constructor(
    private readonly limitBytes: number,
    /** Smaller arrays are cheap to allocate; pooling them would only add bookkeeping. */
    private readonly minLength = 1 << 16,
  ) {}

  /** An array of n floats with undefined contents (the caller overwrites all of it). */
  alloc(n: number): Float32Array {
    if (n < this.minLength) return new Float32Array(n);
    let a = this.free.get(n)?.pop();
    if (a) this.freeBytes -= a.byteLength;
    else a = new Float32Array(n);
    this.owners.set(a.buffer, { array: a, refs: 0 });
    return a;
  }

  isPooled(values: unknown): values is Float32Array {
    return ArrayBuffer.isView(values) && this.owners.has(values.buffer);
  }

  /** Whether values are a whole recycled buffer that exactly one tensor data entry refers to. */
  isSoleOwner(values: unknown): boolean {
    if (!ArrayBuffer.isView(values)) return false;
    const o = this.owners.get(values.buffer);
    return o !== undefined && o.refs === 1 && o.array === values;
  }

  /** A tensor now refers to these values. */
  retain(values: unknown): void {
    if (!ArrayBuffer.isView(values)) return;
    const o = this.owners.get(values.buffer);
    if (o) o.refs++;
  }

  /** A tensor that referred to these values is gone; the last one returns the buffer. */
  release(values: unknown): void {
    if (!ArrayBuffer.isView(values)) return;
    const o = this.owners.get(values.buffer);
    if (!o || --o.refs > 0) return;
    this.owners.delete(values.buffer);
    if (this.freeBytes + o.array.byteLength > this.limitBytes) return;
    const list = this.free.get(o.array.length);
    if (list) list.push(o.array);
    else this.free.set(o.array.length, [o.array]);
    this.freeBytes += o.array.byteLength;
  }

  stats(): { freeBytes: number; limitBytes: number } {
    return { freeBytes: this.freeBytes, limitBytes: this.limitBytes };
  }

  clear(): void {
    this.free.clear();
    this.freeBytes = 0;
  }
}

/**
 * What the pool may keep by default: a quarter of the machine's memory, between 1 and 8 GiB. A training step must find
 * every buffer of the previous one here, or it writes fresh memory: MobileNetV2 at 448 px and batch 16 trained at 1.5
 * images/s with a 1 GiB pool against 12.0 with 4 GiB, ResNet-50 at 224 px at 3.0-3.4 against 7.4-7.8 (a virtual
 * machine, where memory written for the first time costs about 2.5 ms per MB: docs/backbones.md). The pool holds
 * only buffers tensors have released, never more than the limit; FUNDUS_POOL_MB sets the limit.
 */
export function defaultPoolBytes(totalBytes = totalmem()): number {
  return Math.min(8 * 2 ** 30, Math.max(2 ** 30, Math.floor(totalBytes / 4)));
}

const limitMb = Number(process.env.FUNDUS_POOL_MB);
export const bufferPool = new BufferPool(process.env.FUNDUS_POOL_MB !== undefined && Number.isFinite(limitMb) && limitMb >= 0 ? limitMb * 2 ** 20 : defaultPoolBytes());
