// Builds the native addons (the oneDNN engine and the libjpeg-turbo decoder) when their headers are present;
// otherwise says how to get them and exits 0 so that `npm ci` still succeeds and fundus runs on the (slow) JS CPU
// backend and decodes with sharp.
import { existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const force = process.argv.includes('--force');
if (!existsSync(join(root, 'native', 'binding.gyp'))) process.exit(0);
const headers = [
  ['/usr/include/oneapi/dnnl/dnnl.hpp', 'libdnnl-dev'],
  ['/usr/include/jpeglib.h', 'libjpeg62-turbo-dev'],
];
const missing = headers.filter(([h]) => !existsSync(h)).map(([, pkg]) => pkg);
if (missing.length > 0) {
  console.warn(`fundus: native headers not found (apt-get install ${missing.join(' ')}); skipping the native build.`);
  process.exit(force ? 1 : 0);
}
// The checkout's node-gyp (a devDependency), else the one npm ships and names to install scripts (an installed package).
const gyp = [join(root, 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'), process.env.npm_config_node_gyp].find((p) => p && existsSync(p));
const cmd = gyp ? [process.execPath, gyp] : ['npx', 'node-gyp'];
// Use the headers installed next to this node (Debian's nodejs ships them in /usr/include/node) so that the build
// needs no network; node-gyp downloads them otherwise.
const prefix = join(dirname(process.execPath), '..');
const nodedir = existsSync(join(prefix, 'include', 'node', 'node_api.h')) ? [`--nodedir=${prefix}`] : [];
const r = spawnSync(cmd[0], [...cmd.slice(1), 'rebuild', '-j', 'max', ...nodedir], {
  cwd: join(root, 'native'),
  stdio: 'inherit',
});
if (r.status !== 0) {
  console.warn('fundus: the native engine failed to build; fundus will run on the slow JS CPU backend.');
  process.exit(force ? 1 : 0);
}
