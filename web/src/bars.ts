import type { GradedResponse } from './api.js';

/** A probability as a percentage; never "0%" or "100%", which a model's output never is and a reader takes as certainty. */
export function percent(p: number): string {
  if (p < 0.001) return '<0.1%';
  if (p > 0.999) return '>99.9%';
  return `${(p * 100).toFixed(1)}%`;
}

function el<K extends keyof HTMLElementTagNameMap>(tag: K, cls?: string, text?: string): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

/**
 * One row per class: the probability as a bar with the decision threshold marked on it, the number, and the
 * decision. Each row is a button that shows that class's heatmap in the first panel.
 */
export function renderBars(list: HTMLElement, r: GradedResponse, selected: string, onSelect: (cls: string) => void): void {
  list.replaceChildren();
  r.classes.forEach((cls, i) => {
    const p = r.probabilities[cls];
    const t = r.thresholds[i];
    const positive = r.decisions[cls];
    const li = el('li', `bar-row${positive ? ' positive' : ''}${cls === selected ? ' selected' : ''}`);
    li.dataset.class = cls;
    const button = el('button', 'bar-button');
    button.type = 'button';
    button.setAttribute('aria-pressed', String(cls === selected));
    button.setAttribute(
      'aria-label',
      `${cls}: probability ${percent(p)}, threshold ${percent(t)}, ${positive ? 'positive' : 'negative'}. Show heatmap.`,
    );
    const head = el('span', 'bar-head');
    head.append(el('span', 'bar-name', cls), el('span', 'bar-value', percent(p)));
    const track = el('span', 'bar-track');
    track.setAttribute('role', 'meter');
    track.setAttribute('aria-valuemin', '0');
    track.setAttribute('aria-valuemax', '1');
    track.setAttribute('aria-valuenow', p.toFixed(4));
    track.setAttribute('aria-hidden', 'true');
    const fill = el('span', 'bar-fill');
    fill.style.width = `${(p * 100).toFixed(2)}%`;
    const mark = el('span', 'bar-threshold');
    mark.style.left = `${(t * 100).toFixed(2)}%`;
    mark.title = `threshold ${percent(t)}`;
    track.append(fill, mark);
    const foot = el('span', 'bar-foot');
    foot.append(
      el('span', 'bar-decision', positive ? 'Positive' : 'Below threshold'),
      el('span', 'bar-threshold-label', `threshold ${percent(t)}`),
    );
    button.append(head, track, foot);
    button.addEventListener('click', () => onSelect(cls));
    li.append(button);
    list.append(li);
  });
}
