// Contact sheet of explain outputs for a quick look: npx tsx benchmarks/explain-montage.ts out.png tile-px a.png b.png ...
// (original photos may be listed too). Tiles are resized to tile-px wide, four per row, labelled by file name.
import sharp from 'sharp';
import { basename } from 'node:path';

const [out, tileArg, ...files] = process.argv.slice(2);
const tile = Number(tileArg);
const perRow = 4;
const label = 18;
const tiles = await Promise.all(
  files.map(async (f) => {
    const img = await sharp(f).resize(tile, tile, { fit: 'contain', background: 'white' }).png().toBuffer();
    const text = Buffer.from(
      `<svg width="${tile}" height="${label}"><text x="2" y="13" font-size="11" font-family="sans-serif">${basename(f).slice(0, 48)}</text></svg>`,
    );
    return { img, text };
  }),
);
const rows = Math.ceil(tiles.length / perRow);
await sharp({ create: { width: perRow * tile, height: rows * (tile + label), channels: 3, background: 'white' } })
  .composite(
    tiles.flatMap((t, i) => [
      { input: t.text, left: (i % perRow) * tile, top: Math.floor(i / perRow) * (tile + label) },
      { input: t.img, left: (i % perRow) * tile, top: Math.floor(i / perRow) * (tile + label) + label },
    ]),
  )
  .png()
  .toFile(out);
