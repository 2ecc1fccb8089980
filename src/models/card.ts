// What a model's written card (MODEL_CARD.md, which `fundus train` writes and people edit) says about its limits,
// for the places that show a model to a specialist (the viewer's "About this model").
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

export const MODEL_CARD = 'MODEL_CARD.md';

/**
 * The items of the card's "Limitations" section as plain text (Markdown emphasis and code marks removed, wrapped
 * lines joined); empty when the model has no card or the card no such section.
 */
export async function modelLimitations(dir: string): Promise<string[]> {
  let text: string;
  try {
    text = await readFile(join(dir, MODEL_CARD), 'utf8');
  } catch {
    return [];
  }
  const section = /^##\s+Limitations\s*$([\s\S]*?)(?=^##\s|(?![\s\S]))/m.exec(text)?.[1] ?? '';
  const items: string[] = [];
  for (const line of section.split('\n')) {
    if (/^\s*[-*]\s+/.test(line)) items.push(line.replace(/^\s*[-*]\s+/, ''));
    else if (items.length > 0 && line.trim() !== '') items[items.length - 1] += ` ${line.trim()}`;
  }
  return items.map((s) => s.replace(/\*\*|__|`/g, '').replace(/\[([^\]]+)\]\([^)]*\)/g, '$1').trim());
}
