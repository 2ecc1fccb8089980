/**
 * Whether inference plans fuse beyond single convolutions: MobileNetV2's inverted-residual blocks as one kernel, a
 * ZeroPadding2D layer as the next convolution's or max pooling's own padding, and a residual block's result written
 * into its shortcut's memory. FUNDUS_BLOCK_FUSION=off runs each as separate operations (for comparisons: fusing
 * paid at every size and batch measured, docs/backbones.md, fourth and fifth passes). Read at every call, so that a
 * process can compare both.
 */
export const blockFusionOn = (): boolean => process.env.FUNDUS_BLOCK_FUSION !== 'off';
