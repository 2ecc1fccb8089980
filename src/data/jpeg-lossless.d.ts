// jpeg-lossless-decoder-js ships JavaScript without declarations: the part dicom.ts uses.
declare module 'jpeg-lossless-decoder-js' {
  export class Decoder {
    /** The decoded samples (interleaved components; 1 or 2 bytes each) of a JPEG Lossless stream. */
    decompress(buffer: ArrayBuffer, offset?: number, length?: number): ArrayBuffer;
  }
}
