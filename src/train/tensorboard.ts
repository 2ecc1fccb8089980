import { hostname } from 'node:os';
import { join } from 'node:path';
import { writeFileAtomic } from '../util/atomic.js';

/*
 * TensorBoard event files written by hand: a TFRecord stream of `tensorflow.Event` protobufs. The formats are small
 * and stable, which is cheaper than a protobuf dependency:
 *   TFRecord record = uint64 length (LE) | uint32 masked_crc32c(length bytes) | data | uint32 masked_crc32c(data)
 *   Event   { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5; }
 *   Summary { repeated Value value = 1; }   Value { string tag = 1; float simple_value = 2; }
 */

const CRC32C_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[i] = c >>> 0;
  }
  return t;
})();

/** CRC-32C (Castagnoli), as TFRecord uses. */
export function crc32c(data: Uint8Array): number {
  let crc = 0xffffffff;
  for (let i = 0; i < data.length; i++) crc = CRC32C_TABLE[(crc ^ data[i]) & 0xff] ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

/** TFRecord's masking of a CRC, so that CRCs of data containing CRCs stay well distributed. */
export function maskedCrc32c(data: Uint8Array): number {
  const crc = crc32c(data);
  return ((((crc >>> 15) | (crc << 17)) >>> 0) + 0xa282ead8) >>> 0;
}

/** One TFRecord: the framing around `data`. */
export function tfRecord(data: Uint8Array): Uint8Array {
  const out = new Uint8Array(8 + 4 + data.length + 4);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, BigInt(data.length), true);
  view.setUint32(8, maskedCrc32c(out.subarray(0, 8)), true);
  out.set(data, 12);
  view.setUint32(12 + data.length, maskedCrc32c(data), true);
  return out;
}

/** A minimal protobuf writer: just the wire types the Event messages need. */
class ProtoWriter {
  private bytes: number[] = [];

  private varint(v: number | bigint): void {
    let x = BigInt(v);
    if (x < 0n) x += 1n << 64n; // negative int64 are ten-byte two's complement varints
    do {
      let b = Number(x & 0x7fn);
      x >>= 7n;
      if (x > 0n) b |= 0x80;
      this.bytes.push(b);
    } while (x > 0n);
  }

  private key(field: number, wire: number): void {
    this.varint((field << 3) | wire);
  }

  double(field: number, v: number): this {
    this.key(field, 1);
    const b = new Uint8Array(8);
    new DataView(b.buffer).setFloat64(0, v, true);
    this.bytes.push(...b);
    return this;
  }

  float(field: number, v: number): this {
    this.key(field, 5);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, v, true);
    this.bytes.push(...b);
    return this;
  }

  int64(field: number, v: number): this {
    this.key(field, 0);
    this.varint(v);
    return this;
  }

  bytesField(field: number, v: Uint8Array): this {
    this.key(field, 2);
    this.varint(v.length);
    this.bytes.push(...v);
    return this;
  }

  string(field: number, v: string): this {
    return this.bytesField(field, new TextEncoder().encode(v));
  }

  finish(): Uint8Array {
    return Uint8Array.from(this.bytes);
  }
}

/** The first event of every file: the file format version. */
export function fileVersionEvent(wallTime: number): Uint8Array {
  return new ProtoWriter().double(1, wallTime).string(3, 'brain.Event:2').finish();
}

/** An Event carrying scalar summaries (`tag` → value) at `step`. */
export function scalarEvent(wallTime: number, step: number, scalars: Record<string, number>): Uint8Array {
  const summary = new ProtoWriter();
  for (const [tag, value] of Object.entries(scalars)) {
    summary.bytesField(1, new ProtoWriter().string(1, tag).float(2, value).finish());
  }
  return new ProtoWriter().double(1, wallTime).int64(2, step).bytesField(5, summary.finish()).finish();
}

export interface ScalarRecord {
  step: number;
  wallTime: number;
  scalars: Record<string, number>;
}

/** The bytes of a whole event file holding `records`. */
export function eventFileBytes(createdAt: number, records: ScalarRecord[]): Uint8Array {
  const parts = [tfRecord(fileVersionEvent(createdAt)), ...records.map((r) => tfRecord(scalarEvent(r.wallTime, r.step, r.scalars)))];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** The conventional event file name, `events.out.tfevents.<seconds>.<host>`, which `tensorboard --logdir` looks for. */
export function eventFileName(createdAt: number): string {
  return `events.out.tfevents.${Math.floor(createdAt)}.${hostname().replace(/[^A-Za-z0-9_.-]/g, '_')}`;
}

/**
 * Writes the whole event file again (atomically) from all records so far: files stay tiny (one event per epoch) and
 * a resumed run never leaves duplicated or torn events behind.
 */
export async function writeEventFile(logDir: string, fileName: string, createdAt: number, records: ScalarRecord[]): Promise<string> {
  const path = join(logDir, fileName);
  await writeFileAtomic(path, eventFileBytes(createdAt, records));
  return path;
}
