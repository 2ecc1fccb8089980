// The import graph of src/ and the layering it must keep: data flows one way, from data up to the CLI, and no two
// modules import each other, directly or around a circle (type-only imports count: they tie the modules' designs).
// Usage: npx tsx scripts/import-graph.ts [root]   (exit 1 and one line per problem when the rules are broken)
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

/**
 * Layers from the bottom up; a module may import its own layer and those below. A folder of src/ gets its layer
 * here (a new folder must be placed); the files at the top of src/ (cli.ts, index.ts) are the top.
 */
export const LAYERS: readonly (readonly string[])[] = [
  ['util'],
  ['data', 'metrics'],
  ['engine'],
  ['models'],
  ['train'],
  ['eval', 'explain', 'selflearn', 'audit'],
  ['serve', 'queue'],
  ['(top)'],
];

export interface ImportGraph {
  /** Module (path relative to the root, with `/`) → the modules it imports, in src/ or outside it. */
  edges: Map<string, string[]>;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir)
    .sort()
    .flatMap((name) => {
      const p = join(dir, name);
      if (statSync(p).isDirectory()) return sourceFiles(p);
      return /\.(ts|mts|mjs)$/.test(name) && !name.endsWith('.d.ts') ? [p] : [];
    });
}

const posix = (p: string) => p.split(sep).join('/');

/** Where a relative specifier leads: `./x.js` names the source `./x.ts` (NodeNext's convention). */
function resolveSpecifier(from: string, spec: string): string {
  const target = resolve(dirname(from), spec);
  for (const candidate of [target, target.replace(/\.js$/, '.ts'), target.replace(/\.mjs$/, '.mts'), `${target}.ts`, join(target, 'index.ts')]) {
    try {
      if (statSync(candidate).isFile()) return candidate;
    } catch {
      // try the next form
    }
  }
  return target;
}

/** Every relative import of every module under `root` (static, type-only, re-exports and dynamic `import()`). */
export function importGraph(root: string): ImportGraph {
  const edges = new Map<string, string[]>();
  for (const file of sourceFiles(root)) {
    const info = ts.preProcessFile(readFileSync(file, 'utf8'), true, true);
    const targets = info.importedFiles
      .map((f) => f.fileName)
      .filter((spec) => spec.startsWith('.'))
      .map((spec) => posix(relative(root, resolveSpecifier(file, spec))));
    edges.set(posix(relative(root, file)), [...new Set(targets)]);
  }
  return { edges };
}

/** The layer index of a module path relative to src/, or undefined for a folder that has none. */
export function layerOf(module: string): number | undefined {
  const folder = module.includes('/') ? module.slice(0, module.indexOf('/')) : '(top)';
  const i = LAYERS.findIndex((l) => l.includes(folder));
  return i < 0 ? undefined : i;
}

/** Circles of imports: the strongly connected components with more than one module, or a module importing itself. */
export function importCycles(graph: ImportGraph): string[][] {
  // Tarjan's algorithm, iterative so that a deep graph cannot overflow the stack.
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const onStack = new Set<string>();
  const stack: string[] = [];
  const cycles: string[][] = [];
  let next = 0;
  for (const start of graph.edges.keys()) {
    if (index.has(start)) continue;
    const work: { node: string; i: number }[] = [{ node: start, i: 0 }];
    index.set(start, next);
    low.set(start, next++);
    stack.push(start);
    onStack.add(start);
    while (work.length > 0) {
      const top = work[work.length - 1];
      const out = (graph.edges.get(top.node) ?? []).filter((t) => graph.edges.has(t));
      if (top.i < out.length) {
        const t = out[top.i++];
        if (!index.has(t)) {
          index.set(t, next);
          low.set(t, next++);
          stack.push(t);
          onStack.add(t);
          work.push({ node: t, i: 0 });
        } else if (onStack.has(t)) low.set(top.node, Math.min(low.get(top.node)!, index.get(t)!));
        continue;
      }
      work.pop();
      if (work.length > 0) {
        const parent = work[work.length - 1].node;
        low.set(parent, Math.min(low.get(parent)!, low.get(top.node)!));
      }
      if (low.get(top.node) === index.get(top.node)) {
        const component: string[] = [];
        let m: string;
        do {
          m = stack.pop()!;
          onStack.delete(m);
          component.push(m);
        } while (m !== top.node);
        const selfLoop = (graph.edges.get(top.node) ?? []).includes(top.node);
        if (component.length > 1 || selfLoop) cycles.push(component.sort());
      }
    }
  }
  return cycles;
}

/** Every breach of the rules, one line each: imports leaving the root, upward imports, folders without a layer, circles. */
export function layeringProblems(graph: ImportGraph): string[] {
  const problems: string[] = [];
  const unplaced = new Set<string>();
  for (const [from, targets] of graph.edges) {
    const lf = layerOf(from);
    if (lf === undefined) unplaced.add(from.slice(0, from.indexOf('/')));
    for (const to of targets) {
      if (to.startsWith('../')) {
        problems.push(`${from} imports ${to}, outside src/`);
        continue;
      }
      const lt = layerOf(to);
      if (lf !== undefined && lt !== undefined && lt > lf) problems.push(`${from} imports ${to}: an upward import (${LAYERS[lf].join('/')} below ${LAYERS[lt].join('/')})`);
    }
  }
  for (const f of unplaced) problems.push(`src/${f}/ has no layer: place it in LAYERS (scripts/import-graph.ts)`);
  for (const c of importCycles(graph)) problems.push(`import cycle: ${c.join(' <-> ')}`);
  // Folders of one layer must not lean on each other both ways either (eval -> explain -> eval through other files).
  const folderOf = (m: string) => (m.includes('/') ? m.slice(0, m.indexOf('/')) : '(top)');
  const folders = new Map<string, Set<string>>();
  for (const [from, targets] of graph.edges) {
    const set = folders.get(folderOf(from)) ?? new Set<string>();
    for (const to of targets) if (!to.startsWith('../') && folderOf(to) !== folderOf(from)) set.add(folderOf(to));
    folders.set(folderOf(from), set);
  }
  const folderGraph: ImportGraph = { edges: new Map([...folders].map(([f, t]) => [f, [...t]])) };
  for (const c of importCycles(folderGraph)) problems.push(`folders import each other: ${c.map((f) => `${f}/`).join(' <-> ')}`);
  return problems;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === resolve(process.argv[1])) {
  const root = resolve(process.argv[2] ?? join(dirname(fileURLToPath(import.meta.url)), '..', 'src'));
  const problems = layeringProblems(importGraph(root));
  for (const p of problems) console.log(p);
  if (problems.length > 0) process.exit(1);
  console.log(`import graph of ${root}: no cycle, no upward import`);
}
