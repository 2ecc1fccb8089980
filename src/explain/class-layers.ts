import type { CamExplainer, CamInput, CamMethod, CamResult, CamTarget } from './cam.js';
import type { FusedExplainer } from './fusion.js';

type LayerExplainer = CamExplainer | FusedExplainer;

/**
 * Explains each class at its own layer: the classes a model's fundus.json names (`explanation.classes`, e.g. the class
 * a lesion map head feeds, at `lesion_map`) with their explainer, every other class with the model's default one.
 * Targets of one layer share its forward and backward pass; results come back in the targets' order.
 */
export class ClassLayerExplainer {
  readonly numClasses: number;

  constructor(
    readonly base: LayerExplainer,
    readonly byClass: ReadonlyMap<number, LayerExplainer>,
    private readonly classNames: readonly string[],
  ) {
    this.numClasses = base.numClasses;
  }

  /** The explainer that makes class `classIndex`'s maps. */
  explainerOf(classIndex: number): LayerExplainer {
    return this.byClass.get(classIndex) ?? this.base;
  }

  /** The layer class `classIndex`'s maps are made at. */
  layerOf(classIndex: number): string {
    return this.explainerOf(classIndex).layerName;
  }

  /** The default layer, then each class's own, e.g. `block_12_add; diabetic retinopathy: lesion_map`. */
  get layerName(): string {
    return [this.base.layerName, ...[...this.byClass].map(([k, e]) => `${this.classNames[k]}: ${e.layerName}`)].join('; ');
  }

  /** The finest grid among the layers. */
  get cells(): [number, number] {
    return [this.base, ...this.byClass.values()].map((e) => e.cells).reduce((a, b) => (b[0] * b[1] > a[0] * a[1] ? b : a));
  }

  predict(images: CamInput[]): Float32Array {
    return this.base.predict(images);
  }

  explain(images: CamInput[], targets: CamTarget[], method: CamMethod): CamResult[] {
    const groups = new Map<LayerExplainer, number[]>();
    targets.forEach((t, i) => {
      const e = this.explainerOf(t.classIndex);
      groups.set(e, [...(groups.get(e) ?? []), i]);
    });
    const out = new Array<CamResult>(targets.length);
    for (const [e, at] of groups) {
      const results = e.explain(images, at.map((i) => targets[i]), method);
      at.forEach((i, j) => (out[i] = results[j]));
    }
    return out;
  }
}
