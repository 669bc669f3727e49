// Requests over time by status class, drawn with uPlot (vendor/uplot, loaded as
// a classic script that defines the global `uPlot`). Failure spikes are drawn
// as red vertical bands; clicking a time opens Search for that step.

import { statusClass, tsMillis } from './dom.js';

export const CLASSES = [
  ['s2xx', '2xx'],
  ['s3xx', '3xx'],
  ['s4xx', '4xx'],
  ['s5xx', '5xx'],
  ['other', 'other'],
];

function cssVar(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || '#888';
}

/**
 * Draws `ts` (the /api/timeseries answer) into `container`.
 * onPick(fromMs, toMs) is called when the user clicks a time step.
 * Returns {addRecord(rec), destroy()}.
 */
export function statusChart(container, ts, onPick) {
  const step = (ts.step_seconds || 60);
  const xs = [];
  const ys = CLASSES.map(() => []);
  for (const p of ts.points || []) {
    xs.push(Math.floor(tsMillis(p.t) / 1000));
    CLASSES.forEach(([k], i) => ys[i].push(p[k] || 0));
  }
  const spikes = (ts.spikes || []).map((t) => Math.floor(tsMillis(t) / 1000));
  const data = [xs, ...ys];

  // 24-hour UTC labels; the date is added when the range spans days.
  const span = xs.length ? xs[xs.length - 1] - xs[0] : 0;
  const fmtTick = (t) => {
    const iso = new Date(t * 1000).toISOString();
    return span > 86400 ? `${iso.slice(5, 10)} ${iso.slice(11, 16)}` : iso.slice(11, 16);
  };
  const axis = { stroke: cssVar('--fg-muted'), grid: { stroke: cssVar('--grid'), width: 1 }, ticks: { stroke: cssVar('--grid') } };
  const spikePlugin = {
    hooks: {
      drawClear: (u) => {
        const ctx = u.ctx;
        ctx.save();
        ctx.fillStyle = cssVar('--spike');
        for (const s of spikes) {
          const x0 = u.valToPos(s, 'x', true);
          const x1 = u.valToPos(s + step, 'x', true);
          ctx.fillRect(x0, u.bbox.top, Math.max(2, x1 - x0), u.bbox.height);
        }
        ctx.restore();
      },
    },
  };

  const opts = {
    width: Math.max(300, container.clientWidth),
    height: 280,
    tzDate: (t) => uPlot.tzDate(new Date(t * 1e3), 'Etc/UTC'),
    scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(1, max)] } },
    axes: [{ ...axis, values: (u, splits) => splits.map(fmtTick) }, { ...axis, size: 60 }],
    cursor: { drag: { x: false, y: false } },
    legend: { live: true },
    series: [
      { label: 'time (UTC)', value: (u, t) => (t === null || t === undefined ? '–' : new Date(t * 1000).toISOString().slice(0, 16).replace('T', ' ')) },
      ...CLASSES.map(([k, label]) => ({
        label,
        stroke: cssVar(`--${k}`),
        width: 2,
        points: { show: false },
        value: (u, v) => (v === null || v === undefined ? '–' : String(v)),
      })),
    ],
    plugins: [spikePlugin],
  };

  const u = new uPlot(opts, data, container);

  // Click a step: open Search for it.
  u.over.addEventListener('click', () => {
    const idx = u.cursor.idx;
    if (idx === null || idx === undefined || !onPick) return;
    const t = data[0][idx];
    onPick(t * 1000, (t + step) * 1000);
  });
  u.over.classList.add('clickable');

  const ro = new ResizeObserver(() => {
    const w = Math.max(300, container.clientWidth);
    if (Math.abs(w - u.width) > 2) u.setSize({ width: w, height: 280 });
  });
  ro.observe(container);

  return {
    /** Counts one live record in its step, appending steps as time moves on. */
    addRecord(rec) {
      const t = Math.floor(tsMillis(rec.ts) / 1000);
      if (!Number.isFinite(t) || !xs.length) return;
      if (t < xs[0]) return;
      // Steps are aligned on xs[0]; the hub may leave empty steps out.
      const start = xs[0] + Math.floor((t - xs[0]) / step) * step;
      let idx = xs.length;
      while (idx > 0 && xs[idx - 1] > start) idx--;
      if (idx === 0 || xs[idx - 1] !== start) {
        xs.splice(idx, 0, start);
        ys.forEach((col) => col.splice(idx, 0, 0));
      } else {
        idx -= 1;
      }
      const ci = CLASSES.findIndex(([k]) => k === statusClass(rec.status));
      ys[ci][idx] += 1;
      u.setData([xs, ...ys]);
    },
    destroy() {
      ro.disconnect();
      u.destroy();
    },
  };
}
