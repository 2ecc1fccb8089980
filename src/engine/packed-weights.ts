// Convolution weights packed once (native/src/conv.cc's conv2dPack). oneDNN wants a filter in a blocked layout of
// its own; an ordinary call reorders the tfjs filter into it every time. An inference plan's filters are constants,
// so the plan registers them here and the forward kernels hand the native side the filter's pack, which keeps the
// primitive and the filter already in the primitive's layout from the first call on.
// A pack is keyed by the filter's data (its tfjs dataId): tensor data is never written in place, and a variable's
// dataId changes when it is assigned, so a pack can never serve weights other than those it was made from. Packs are
// counted, so that two plans sharing a layer share one.
import type * as tf from '@tensorflow/tfjs-core';
import { loadAddon } from './addon.js';

const packs = new WeakMap<object, { id: number; refs: number }>();

function release(keys: readonly object[]): void {
  const addon = loadAddon();
  for (const key of keys) {
    const p = packs.get(key);
    if (!p || --p.refs > 0) continue;
    packs.delete(key);
    addon?.conv2dReleasePack?.(p.id);
  }
}

// Plans that are dropped without being released (a model garbage-collected undisposed) free their packs here.
const finalizer = new FinalizationRegistry<readonly object[]>(release);

/**
 * Registers filters whose data stays constant while `owner` uses them; returns the function that releases them
 * (also run when owner is garbage-collected first). Without the native addon (or with one built before packs)
 * nothing is packed.
 */
export function packWeights(filters: readonly tf.Tensor[], owner: object): () => void {
  const addon = loadAddon();
  if (!addon?.conv2dPack || filters.length === 0) return () => {};
  const keys = [...new Set(filters.map((f) => f.dataId as object))];
  for (const key of keys) {
    const p = packs.get(key);
    if (p) p.refs++;
    else packs.set(key, { id: addon.conv2dPack(), refs: 1 });
  }
  const token = {};
  finalizer.register(owner, keys, token);
  let released = false;
  return () => {
    if (released) return;
    released = true;
    finalizer.unregister(token);
    release(keys);
  };
}

/** The pack of a filter's data, if it is registered (for the forward convolution kernels). */
export function packOf(dataId: object): number | undefined {
  return packs.get(dataId)?.id;
}
