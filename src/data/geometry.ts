/**
 * Where the network input came from in the original photo: the square crop, in original pixel coordinates. The
 * square may extend past the photo's edges where it was padded (x or y negative, x + side > width, ...). A pixel
 * (u, v) of the `size`×`size` input maps back to (x + (u + 0.5) * side / size - 0.5, y + ...) in the photo.
 */
export interface CropGeometry {
  /** Size of the original photo. */
  width: number;
  height: number;
  /** Top-left corner and side of the square crop in original pixel coordinates. */
  x: number;
  y: number;
  side: number;
}

/** Maps a point of the network input (pixel centres, 0..size) back to original photo coordinates. */
export function toPhotoCoordinates(g: CropGeometry, size: number, u: number, v: number): [number, number] {
  const s = g.side / size;
  return [g.x + u * s, g.y + v * s];
}
