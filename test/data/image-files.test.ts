import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { after, before, test } from 'node:test';
import { collectImages, isImageName, type SkippedEntry } from '../../src/data/image-files.js';
import { InputError } from '../../src/util/errors.js';

let work: string;

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'fundus-image-files-'));
  const tree = join(work, 'tree');
  await mkdir(join(tree, 'b-sub', 'deeper'), { recursive: true });
  await mkdir(join(tree, '.hidden'), { recursive: true });
  for (const f of ['z.JPG', 'a.png', 'scan.bmp', 'notes.txt', 'b-sub/x.tif', 'b-sub/deeper/y.webp', '.hidden/h.jpg', '.dot.jpg']) {
    await writeFile(join(tree, f), 'not really a photo');
  }
  await symlink(join(work, 'nowhere.jpg'), join(tree, 'dangling.jpg'));
  await symlink(tree, join(tree, 'b-sub', 'loop'));
  await symlink(join(tree, 'a.png'), join(tree, 'c-link.jpg'));
  await mkdir(join(work, 'empty'));
  await writeFile(join(work, 'empty', 'readme.txt'), 'no photos here');
});

after(async () => {
  await rm(work, { recursive: true, force: true });
});

const rel = (paths: string[]) => paths.map((p) => relative(work, p));

test('one list of extensions, .bmp included, case-insensitive', () => {
  for (const n of ['a.jpg', 'a.JPEG', 'a.png', 'a.tif', 'a.tiff', 'a.webp', 'a.bmp']) assert.ok(isImageName(n), n);
  for (const n of ['a.txt', 'a', 'a.jpg.json']) assert.ok(!isImageName(n), n);
});

test('folders are walked recursively in name order; dangling links and loops are skipped with a reason', async () => {
  const skipped: SkippedEntry[] = [];
  const found = await collectImages([join(work, 'tree')], { onSkip: (s) => skipped.push(s) });
  assert.deepEqual(rel(found), ['tree/a.png', 'tree/b-sub/deeper/y.webp', 'tree/b-sub/x.tif', 'tree/c-link.jpg', 'tree/scan.bmp', 'tree/z.JPG']);
  assert.deepEqual(rel(skipped.map((s) => s.path)).sort(), ['tree/b-sub/loop', 'tree/dangling.jpg']);
  assert.match(skipped.find((s) => s.path.endsWith('dangling.jpg'))!.reason, /symbolic link to .*nowhere\.jpg, which does not exist/);
  assert.match(skipped.find((s) => s.path.endsWith('loop'))!.reason, /loop/);
});

test('recursive: false keeps the images directly inside; named files are kept whatever their extension, once', async () => {
  const tree = join(work, 'tree');
  const found = await collectImages([tree, join(tree, 'notes.txt'), join(tree, 'a.png')], { recursive: false, onSkip: () => {} });
  assert.deepEqual(rel(found), ['tree/a.png', 'tree/c-link.jpg', 'tree/scan.bmp', 'tree/z.JPG', 'tree/notes.txt']);
});

test('a missing path, a dangling link named explicitly and a folder without images are input errors naming them', async () => {
  await assert.rejects(collectImages([join(work, 'missing')]), (e: unknown) => e instanceof InputError && /missing: no such file or folder/.test(e.message));
  await assert.rejects(
    collectImages([join(work, 'tree', 'dangling.jpg')]),
    (e: unknown) => e instanceof InputError && /dangling\.jpg: a symbolic link to .*nowhere\.jpg, which does not exist/.test(e.message),
  );
  await assert.rejects(collectImages([join(work, 'empty')]), (e: unknown) => e instanceof InputError && /empty: no images \(.*\.bmp .dcm .dicom\) in this folder/.test(e.message));
  assert.deepEqual(await collectImages([join(work, 'empty')], { emptyFolder: 'allow' }), []);
});
