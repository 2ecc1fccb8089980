#!/usr/bin/env node
// In a checkout (src/ present) the CLI runs from the TypeScript sources through tsx, a development dependency, so that
// an edit needs no build step; an installed package holds only the compiled dist/ (`npm run build`).
import { existsSync } from 'node:fs';

const sources = new URL('../src/cli.ts', import.meta.url);
if (existsSync(sources)) {
  const { register } = await import('tsx/esm/api');
  register();
  await import(sources.href);
} else {
  await import('../dist/cli.js');
}
