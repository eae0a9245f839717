// Small SVG chart primitives for the HTML report: grouped bars, lines, a heat map and stacked histograms.
// Written here rather than pulled from a charting library because the report must be one self-contained
// file with no network and no script needed to draw: the charts are plain SVG markup made at build time.

export const PALETTE = ['#4e79a7', '#f28e2b', '#59a14f', '#e15759', '#76b7b2', '#edc948', '#b07aa1', '#ff9da7', '#9c755f', '#bab0ac'];

export const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

function niceMax(v: number): number {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

const fmt = (v: number) => (Math.abs(v) >= 1e4 || (Math.abs(v) < 1e-2 && v !== 0) ? v.toExponential(1) : Number(v.toPrecision(3)).toString());

interface Frame {
  width: number;
  height: number;
  left: number;
  right: number;
  top: number;
  bottom: number;
}

function frame(w = 640, h = 260): Frame {
  return { width: w, height: h, left: 56, right: 16, top: 28, bottom: 44 };
}

function svgOpen(f: Frame, title: string, id: string): string {
  return `<svg class="plot" id="${esc(id)}" viewBox="0 0 ${f.width} ${f.height}" width="${f.width}" height="${f.height}" role="img" aria-label="${esc(title)}"><title>${esc(title)}</title>` +
    `<text x="8" y="15" class="ttl">${esc(title)}</text>`;
}

/** Legend items laid out left to right, wrapping into rows; returns the markup and the rows used. */
function legendRows(f: Frame, names: string[], colors: string[]): { svg: string; rows: number } {
  let x = f.left, row = 0, svg = '';
  names.forEach((n, i) => {
    const w = 24 + n.length * 6.2;
    if (x + w > f.width - 4 && x > f.left) { row++; x = f.left; }
    const y = 22 + row * 14;
    svg += `<rect x="${x}" y="${y}" width="10" height="10" fill="${colors[i]}"/><text x="${x + 14}" y="${y + 9}" class="lg">${esc(n)}</text>`;
    x += w;
  });
  return { svg, rows: row + 1 };
}

/** Reserve room at the top for the title and the legend rows. */
function withLegend(f: Frame, names: string[]): Frame {
  const rows = legendRows(f, names, names.map(() => '')).rows;
  return { ...f, top: 30 + rows * 14, height: f.height + (rows - 1) * 14 };
}

function legend(f: Frame, names: string[], colors: string[]): string {
  return legendRows(f, names, colors).svg;
}

function yAxis(f: Frame, min: number, max: number, log: boolean, label: string): string {
  const ticks: number[] = [];
  if (log) for (let e = Math.floor(Math.log10(min)); e <= Math.ceil(Math.log10(max)); e++) ticks.push(10 ** e);
  else for (let i = 0; i <= 4; i++) ticks.push(min + ((max - min) * i) / 4);
  const y = (v: number) => yScale(f, min, max, log)(v);
  const lines = ticks
    .filter((t) => t >= min * (1 - 1e-9) && t <= max * (1 + 1e-9))
    .map((t) => `<line x1="${f.left}" x2="${f.width - f.right}" y1="${y(t)}" y2="${y(t)}" class="grid"/><text x="${f.left - 6}" y="${y(t) + 4}" class="tick" text-anchor="end">${fmt(t)}</text>`)
    .join('');
  return lines + `<text class="axis" transform="translate(12 ${(f.top + f.height - f.bottom) / 2}) rotate(-90)" text-anchor="middle">${esc(label)}</text>`;
}

function yScale(f: Frame, min: number, max: number, log: boolean) {
  const h = f.height - f.top - f.bottom;
  if (log) {
    const a = Math.log10(min), b = Math.log10(max);
    return (v: number) => f.top + h - ((Math.log10(Math.max(v, min)) - a) / (b - a || 1)) * h;
  }
  return (v: number) => f.top + h - ((v - min) / (max - min || 1)) * h;
}

/** Grouped bars: categories on x, one bar per series. */
export function groupedBars(id: string, title: string, categories: string[], series: { name: string; values: number[] }[], yLabel: string, o: { width?: number; log?: boolean } = {}): string {
  const f = withLegend(frame(o.width ?? Math.max(420, 60 + categories.length * (14 * series.length + 18))), series.map((s) => s.name));
  const all = series.flatMap((s) => s.values).filter((v) => Number.isFinite(v));
  const log = o.log ?? false;
  const min = log ? 10 ** Math.floor(Math.log10(Math.max(1e-12, Math.min(...all.filter((v) => v > 0))))) : Math.min(0, ...all);
  const max = log ? 10 ** Math.ceil(Math.log10(Math.max(...all))) : niceMax(Math.max(...all));
  const y = yScale(f, min, max, log);
  const slot = (f.width - f.left - f.right) / categories.length;
  const bw = Math.min(28, (slot - 8) / series.length);
  let body = '';
  categories.forEach((c, ci) => {
    const x0 = f.left + ci * slot + (slot - bw * series.length) / 2;
    series.forEach((s, si) => {
      const v = s.values[ci];
      if (!Number.isFinite(v)) return;
      const top = y(v), base = y(log ? min : 0);
      body += `<rect class="bar" x="${x0 + si * bw}" y="${Math.min(top, base)}" width="${bw - 1}" height="${Math.max(0.5, Math.abs(base - top))}" fill="${PALETTE[si % PALETTE.length]}"><title>${esc(`${s.name} · ${c}: ${fmt(v)}`)}</title></rect>`;
    });
    body += `<text x="${f.left + ci * slot + slot / 2}" y="${f.height - f.bottom + 16}" class="tick" text-anchor="middle">${esc(c)}</text>`;
  });
  return svgOpen(f, title, id) + yAxis(f, min, max, log, yLabel) + body + legend(f, series.map((s) => s.name), series.map((_, i) => PALETTE[i % PALETTE.length])) + '</svg>';
}

/** Lines over a numeric x axis (e.g. perplexity against pruning ratio, one line per method). */
export function lineChart(id: string, title: string, xLabel: string, yLabel: string, series: { name: string; points: [number, number][] }[], o: { log?: boolean } = {}): string {
  const f = withLegend(frame(520, 280), series.map((s) => s.name));
  const xs = series.flatMap((s) => s.points.map((p) => p[0]));
  const ys = series.flatMap((s) => s.points.map((p) => p[1])).filter((v) => Number.isFinite(v));
  const log = o.log ?? false;
  const ymin = log ? 10 ** Math.floor(Math.log10(Math.min(...ys))) : Math.min(0, ...ys);
  const ymax = log ? 10 ** Math.ceil(Math.log10(Math.max(...ys))) : niceMax(Math.max(...ys));
  const xmin = Math.min(...xs), xmax = Math.max(...xs);
  const x = (v: number) => f.left + ((v - xmin) / (xmax - xmin || 1)) * (f.width - f.left - f.right);
  const y = yScale(f, ymin, ymax, log);
  let body = [...new Set(xs)].map((v) => `<text x="${x(v)}" y="${f.height - f.bottom + 16}" class="tick" text-anchor="middle">${fmt(v)}</text>`).join('');
  body += `<text x="${(f.left + f.width - f.right) / 2}" y="${f.height - 6}" class="axis" text-anchor="middle">${esc(xLabel)}</text>`;
  series.forEach((s, i) => {
    const pts = s.points.filter((p) => Number.isFinite(p[1]));
    const c = PALETTE[i % PALETTE.length];
    body += `<polyline class="line" fill="none" stroke="${c}" stroke-width="2" points="${pts.map((p) => `${x(p[0])},${y(p[1])}`).join(' ')}"/>`;
    body += pts.map((p) => `<circle cx="${x(p[0])}" cy="${y(p[1])}" r="3.5" fill="${c}"><title>${esc(`${s.name} @ ${fmt(p[0])}: ${fmt(p[1])}`)}</title></circle>`).join('');
  });
  return svgOpen(f, title, id) + yAxis(f, ymin, ymax, log, yLabel) + body + legend(f, series.map((s) => s.name), series.map((_, i) => PALETTE[i % PALETTE.length])) + '</svg>';
}

/** Heat map: rows × columns of values in [0, 1] (e.g. share of each head / channel bin kept), null = absent. */
export function heatMap(id: string, title: string, rowLabels: string[], colCount: number, values: (number | null)[][], o: { colLabel: string; cellTitle?: (r: number, c: number, v: number | null) => string }): string {
  const cell = Math.max(4, Math.min(22, Math.floor(560 / Math.max(1, colCount))));
  const rowH = Math.max(14, cell);
  const f: Frame = { width: 70 + colCount * cell + 130, height: 30 + rowLabels.length * rowH + 36, left: 70, right: 130, top: 30, bottom: 36 };
  const color = (v: number | null) => (v === null ? '#eeeeee' : `hsl(${Math.round(10 + v * 200)}, 65%, ${Math.round(88 - v * 48)}%)`);
  let body = '';
  rowLabels.forEach((r, ri) => {
    body += `<text x="${f.left - 6}" y="${f.top + ri * rowH + rowH * 0.72}" class="tick" text-anchor="end">${esc(r)}</text>`;
    for (let c = 0; c < colCount; c++) {
      const v = values[ri]?.[c] ?? null;
      body += `<rect class="cell" x="${f.left + c * cell}" y="${f.top + ri * rowH}" width="${cell - 1}" height="${rowH - 1}" fill="${color(v)}"><title>${esc(o.cellTitle ? o.cellTitle(ri, c, v) : `${r}, ${c}: ${v === null ? '-' : fmt(v)}`)}</title></rect>`;
    }
  });
  body += `<text x="${f.left + (colCount * cell) / 2}" y="${f.height - 10}" class="axis" text-anchor="middle">${esc(o.colLabel)}</text>`;
  const lx = f.left + colCount * cell + 16;
  body += [0, 0.5, 1].map((v, i) => `<rect x="${lx}" y="${f.top + i * 18}" width="14" height="14" fill="${color(v)}"/><text x="${lx + 20}" y="${f.top + i * 18 + 11}" class="lg">${['removed', '50 % kept', 'kept'][i]}</text>`).join('');
  return svgOpen(f, title, id) + body + '</svg>';
}

/** Histogram of values, bars stacked by group (e.g. channel entropies coloured by K-means cluster). */
export function stackedHistogram(id: string, title: string, values: number[], groups: number[], groupNames: string[], o: { bins?: number; xLabel: string; width?: number; height?: number }): string {
  const f = withLegend({ ...frame(o.width ?? 300, o.height ?? 190), left: 40, bottom: 36 }, groupNames);
  const bins = o.bins ?? 24;
  const lo = Math.min(...values), hi = Math.max(...values);
  const span = hi - lo || 1;
  const counts = Array.from({ length: bins }, () => new Array<number>(groupNames.length).fill(0));
  values.forEach((v, i) => counts[Math.min(bins - 1, Math.floor(((v - lo) / span) * bins))][groups[i]]++);
  const max = niceMax(Math.max(...counts.map((c) => c.reduce((a, b) => a + b, 0))));
  const y = yScale(f, 0, max, false);
  const bw = (f.width - f.left - f.right) / bins;
  let body = '';
  counts.forEach((c, b) => {
    let acc = 0;
    c.forEach((n, g) => {
      if (!n) return;
      body += `<rect class="bar" x="${f.left + b * bw}" y="${y(acc + n)}" width="${Math.max(1, bw - 1)}" height="${y(acc) - y(acc + n)}" fill="${PALETTE[g % PALETTE.length]}"><title>${esc(`${groupNames[g]}: ${n} in [${fmt(lo + (b * span) / bins)}, ${fmt(lo + ((b + 1) * span) / bins)})`)}</title></rect>`;
      acc += n;
    });
  });
  body += `<text x="${f.left}" y="${f.height - f.bottom + 14}" class="tick">${fmt(lo)}</text><text x="${f.width - f.right}" y="${f.height - f.bottom + 14}" class="tick" text-anchor="end">${fmt(hi)}</text>`;
  body += `<text x="${(f.left + f.width - f.right) / 2}" y="${f.height - 6}" class="axis" text-anchor="middle">${esc(o.xLabel)}</text>`;
  return svgOpen(f, title, id) + yAxis(f, 0, max, false, 'count') + body + legend(f, groupNames, groupNames.map((_, i) => PALETTE[i % PALETTE.length])) + '</svg>';
}
