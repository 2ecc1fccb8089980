import { test } from 'node:test';
import assert from 'node:assert/strict';
import { crc32c, eventFileBytes, maskedCrc32c, tfRecord } from '../../src/train/tensorboard.js';

// An independent reader of the TFRecord framing and the Event/Summary protobufs, written from the specs, so that the
// bytes are checked by something other than the writer.
function readRecords(bytes: Uint8Array): Uint8Array[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: Uint8Array[] = [];
  let o = 0;
  while (o < bytes.length) {
    const len = Number(view.getBigUint64(o, true));
    assert.equal(view.getUint32(o + 8, true), maskedCrc32c(bytes.subarray(o, o + 8)), 'length CRC');
    const data = bytes.subarray(o + 12, o + 12 + len);
    assert.equal(view.getUint32(o + 12 + len, true), maskedCrc32c(data), 'data CRC');
    out.push(data);
    o += 16 + len;
  }
  assert.equal(o, bytes.length);
  return out;
}

type Field = { field: number; wire: number; value: bigint | Uint8Array | number };

function parseProto(b: Uint8Array): Field[] {
  const fields: Field[] = [];
  let o = 0;
  const varint = (): bigint => {
    let x = 0n;
    let shift = 0n;
    for (;;) {
      const byte = b[o++];
      x |= BigInt(byte & 0x7f) << shift;
      if (!(byte & 0x80)) return x;
      shift += 7n;
    }
  };
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  while (o < b.length) {
    const key = Number(varint());
    const field = key >> 3;
    const wire = key & 7;
    if (wire === 0) fields.push({ field, wire, value: varint() });
    else if (wire === 1) {
      fields.push({ field, wire, value: view.getFloat64(o, true) });
      o += 8;
    } else if (wire === 5) {
      fields.push({ field, wire, value: view.getFloat32(o, true) });
      o += 4;
    } else if (wire === 2) {
      const len = Number(varint());
      fields.push({ field, wire, value: b.subarray(o, o + len) });
      o += len;
    } else throw new Error(`unexpected wire type ${wire}`);
  }
  return fields;
}

test('CRC-32C matches the standard check values', () => {
  assert.equal(crc32c(new TextEncoder().encode('123456789')), 0xe3069283);
  assert.equal(crc32c(new Uint8Array(32)), 0x8a9136aa); // RFC 3720 B.4: 32 bytes of zeros
  assert.equal(crc32c(new Uint8Array(32).fill(0xff)), 0x62a8ab43); // 32 bytes of 0xff
  assert.equal(crc32c(Uint8Array.from({ length: 32 }, (_, i) => i)), 0x46dd794e); // ascending
});

test('TFRecord framing: length, masked CRCs, payload', () => {
  const rec = tfRecord(new TextEncoder().encode('hello'));
  assert.equal(rec.length, 8 + 4 + 5 + 4);
  assert.deepEqual([...rec.subarray(0, 8)], [5, 0, 0, 0, 0, 0, 0, 0]);
  const crc = crc32c(new TextEncoder().encode('hello'));
  const masked = ((((crc >>> 15) | (crc << 17)) >>> 0) + 0xa282ead8) >>> 0;
  assert.equal(new DataView(rec.buffer).getUint32(17, true), masked);
});

test('event file: version event, then one Event per epoch with tagged scalars', () => {
  const bytes = eventFileBytes(1700000000.5, [
    { step: 1, wallTime: 1700000010, scalars: { 'loss/train': 0.75, 'auc/validation': 0.5 } },
    { step: 2, wallTime: 1700000020, scalars: { 'loss/train': 0.5 } },
  ]);
  const records = readRecords(bytes);
  assert.equal(records.length, 3);
  const first = parseProto(records[0]);
  assert.deepEqual(first[0], { field: 1, wire: 1, value: 1700000000.5 });
  assert.equal(new TextDecoder().decode(first.find((f) => f.field === 3)!.value as Uint8Array), 'brain.Event:2');

  const second = parseProto(records[1]);
  assert.equal(second.find((f) => f.field === 1)!.value, 1700000010);
  assert.equal(second.find((f) => f.field === 2)!.value, 1n);
  const summary = parseProto(second.find((f) => f.field === 5)!.value as Uint8Array);
  const values = summary.filter((f) => f.field === 1).map((f) => parseProto(f.value as Uint8Array));
  const scalars = Object.fromEntries(
    values.map((v) => [new TextDecoder().decode(v.find((f) => f.field === 1)!.value as Uint8Array), v.find((f) => f.field === 2)!.value]),
  );
  assert.deepEqual(scalars, { 'loss/train': 0.75, 'auc/validation': 0.5 });
  assert.equal(parseProto(records[2]).find((f) => f.field === 2)!.value, 2n);
});
