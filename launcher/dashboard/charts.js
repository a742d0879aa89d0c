// @ts-check
// The charts, drawn by hand as inline SVG (line charts) and HTML (horizontal bars). They know
// nothing of jobs: views.js gives them points and labels. Every chart is redrawn whole from its
// points. What keeps that cheap for a long run: one path per series of at most 4 vertices per
// half viewBox unit (linePath), hover points for at most ~160 points, no argument spreading
// over the points (Math.min(...ys) throws past ~125,000 of them).

import { clear, h, s, tip } from 'dashboard/dom.js';
import { fmtNum, isNum } from 'dashboard/format.js';

export const CHART_W = 480, CHART_H = 270;  // the charts' viewBox
const COLUMNS_PER_UNIT = 2;  // a long line's columns per viewBox unit (its stroke is 2 units wide)

/** @typedef {[number, number | null | undefined]} Point  [x, y]; a y that is not a number breaks the line */
/**
 * @typedef {Object} Series
 * @property {string} label
 * @property {string} color
 * @property {Point[]} points
 * @property {boolean} [line]  false: dots only
 * @property {boolean} [dots]  a dot at every point
 * @property {(y: number) => string} [fmt]  a y in its tooltip (fmtNum)
 * @property {(x: number) => string} [tipX]  an x in its tooltip
 */
/**
 * @typedef {Object} LineChart
 * @property {string} title
 * @property {string} [subtitle]
 * @property {string} [xLabel]
 * @property {number[] | null} [xDomain]  [lo, hi], else the points'
 * @property {number[]} [yDomain]  at least [lo, hi]
 * @property {boolean} [yZero]  the y axis includes 0
 * @property {(y: number) => string} [yFmt]
 * @property {{x: number, label: string}[]} [markers]  vertical lines (epoch boundaries)
 * @property {string} [empty]  the text of a chart with no point
 * @property {boolean} [legendAlways]
 * @property {Series[]} series  on the left axis
 * @property {{fmt?: (y: number) => string, domain?: number[], series: Series[]}} [right]  on a right axis of their own
 */

/**
 * An empty chart's <svg>.
 * @param {string} id
 */
export function chartSvg(id) {
  return s('svg', { id, class: 'chart', viewBox: '0 0 ' + CHART_W + ' ' + CHART_H, role: 'img', 'data-values': '[]' });
}

/**
 * Nice ticks over [lo, hi], about `count` of them.
 * @param {number} lo
 * @param {number} hi
 * @param {number} count
 */
export function niceScale(lo, hi, count) {
  if (!isNum(lo) || !isNum(hi)) { lo = 0; hi = 1; }
  if (hi - lo < 1e-12) {
    const d = Math.abs(lo) > 1e-12 ? Math.abs(lo) * 0.1 : 0.5;
    lo -= d; hi += d;
  }
  const raw = (hi - lo) / count;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const norm = raw / mag;
  const step = (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * mag;
  const nlo = Math.floor(lo / step + 1e-9) * step;
  const nhi = Math.ceil(hi / step - 1e-9) * step;
  const ticks = [];
  for (let v = nlo; v <= nhi + step * 1e-6; v += step) ticks.push(Number(v.toPrecision(12)));
  return { lo: nlo, hi: nhi, ticks, step };
}

/** @param {number[]} values */
const lowest = (values) => values.reduce((a, b) => Math.min(a, b), Infinity);
/** @param {number[]} values */
const highest = (values) => values.reduce((a, b) => Math.max(a, b), -Infinity);

/**
 * Draws a line chart into svg (emptied first).
 * @param {SVGSVGElement} svg
 * @param {LineChart} o
 */
export function lineChart(svg, o) {
  clear(svg);
  const W = CHART_W, H = CHART_H;
  const right = o.right && o.right.series.some((r) => r.points.some((p) => isNum(p[1]))) ? o.right : null;
  const m = { t: 56, r: right ? 50 : 16, b: 44, l: 54 };
  const pw = W - m.l - m.r, ph = H - m.t - m.b;
  svg.append(s('rect', { x: 0, y: 0, width: W, height: H, class: 'chart-bg' }));
  svg.append(s('text', { x: 10, y: 20, class: 'chart-title' }, o.title));
  if (o.subtitle) svg.append(s('text', { x: W - 10, y: 20, class: 'chart-sub', 'text-anchor': 'end' }, o.subtitle));

  const all = o.series.flatMap((r) => r.points);
  const ys = all.map((p) => p[1]).filter(isNum);
  const xs = all.map((p) => p[0]).filter(isNum);
  // legend
  let lx = m.l;
  const legendItems = o.series.concat(right ? right.series : []).filter((r) => r.points.some((p) => isNum(p[1])));
  if (legendItems.length) {
    for (const r of legendItems) {
      const g = s('g', { class: 'chart-legend', transform: `translate(${lx},${m.t - 16})` });
      if (r.line === false) g.append(s('circle', { cx: 6, cy: -3, r: 3.5, fill: r.color }));
      else g.append(s('line', { x1: 0, y1: -3, x2: 14, y2: -3, stroke: r.color, 'stroke-width': 2.5 }));
      g.append(s('text', { x: 19, y: 1 }, r.label));
      svg.append(g);
      lx += 30 + r.label.length * 6.6;
    }
  }
  if (!ys.length) {
    svg.append(s('rect', { x: m.l, y: m.t, width: pw, height: ph, class: 'plot-frame' }));
    svg.append(s('text', { x: m.l + pw / 2, y: m.t + ph / 2 + 4, class: 'chart-empty', 'text-anchor': 'middle' }, o.empty || 'no data yet'));
    return;
  }
  let ylo = lowest(ys), yhi = highest(ys);
  if (o.yDomain) { ylo = Math.min(ylo, o.yDomain[0]); yhi = Math.max(yhi, o.yDomain[1]); }
  if (o.yZero) ylo = Math.min(ylo, 0);
  const ysc = niceScale(ylo, yhi, 4);
  let xlo = o.xDomain ? o.xDomain[0] : lowest(xs);
  let xhi = o.xDomain ? o.xDomain[1] : highest(xs);
  if (xhi <= xlo) { xlo -= 0.5; xhi += 0.5; }
  /** @param {number} x */
  const X = (x) => m.l + ((x - xlo) / (xhi - xlo)) * pw;
  /** @param {number} y */
  const Y = (y) => m.t + ph - ((y - ysc.lo) / (ysc.hi - ysc.lo)) * ph;

  // grid and y ticks
  const axes = s('g', { class: 'axes' });
  for (const t of ysc.ticks) {
    const y = Y(t);
    axes.append(s('line', { x1: m.l, x2: m.l + pw, y1: y, y2: y, class: 'grid-line' }));
    axes.append(s('text', { x: m.l - 7, y: y + 4, 'text-anchor': 'end', class: 'tick' }, (o.yFmt || fmtNum)(t)));
  }
  // x ticks (integers)
  const xsc = niceScale(xlo, xhi, Math.max(2, Math.min(6, Math.round(xhi - xlo))));
  const xstep = Math.max(1, xsc.step);
  for (let t = Math.ceil(xlo / xstep) * xstep; t <= xhi + 1e-9; t += xstep) {
    const tv = Number(t.toPrecision(12));
    if (Math.abs(tv - Math.round(tv)) > 1e-9) continue;
    const x = X(tv);
    axes.append(s('line', { x1: x, x2: x, y1: m.t + ph, y2: m.t + ph + 5, class: 'tick-mark' }));
    axes.append(s('text', { x, y: m.t + ph + 19, 'text-anchor': 'middle', class: 'tick' }, String(tv)));
  }
  axes.append(s('line', { x1: m.l, x2: m.l + pw, y1: m.t + ph, y2: m.t + ph, class: 'axis-line' }));
  axes.append(s('line', { x1: m.l, x2: m.l, y1: m.t, y2: m.t + ph, class: 'axis-line' }));
  axes.append(s('text', { x: m.l + pw / 2, y: H - 6, 'text-anchor': 'middle', class: 'axis-label' }, o.xLabel || ''));
  svg.append(axes);

  // markers (epoch boundaries)
  if (o.markers && o.markers.length && o.markers.length <= 30) {
    const mg = s('g', { class: 'markers' });
    for (const mk of o.markers) {
      const x = X(mk.x);
      if (x < m.l - 0.5 || x > m.l + pw + 0.5) continue;
      mg.append(s('line', { x1: x, x2: x, y1: m.t, y2: m.t + ph, class: 'marker-line' }, tip(mk.label)));
      if (o.markers.length <= 12) mg.append(s('text', { x: x + 4, y: m.t + 11, class: 'marker-text' }, mk.label));
    }
    svg.append(mg);
  }

  // right axis
  let YR = Y;
  if (right) {
    const rys = right.series.flatMap((r) => r.points.map((p) => p[1])).filter(isNum);
    const d = right.domain || [lowest(rys), highest(rys)];
    const rsc = niceScale(Math.min(d[0], lowest(rys)), Math.max(d[1], highest(rys)), 4);
    YR = (y) => m.t + ph - ((y - rsc.lo) / (rsc.hi - rsc.lo)) * ph;
    const rg = s('g', { class: 'axes' });
    for (const t of rsc.ticks) rg.append(s('text', { x: m.l + pw + 7, y: YR(t) + 4, class: 'tick' }, (right.fmt || fmtNum)(t)));
    rg.append(s('line', { x1: m.l + pw, x2: m.l + pw, y1: m.t, y2: m.t + ph, class: 'axis-line' }));
    svg.append(rg);
  }

  /**
   * @param {Series} r
   * @param {(y: number) => number} Yf
   */
  const drawSeries = (r, Yf) => {
    const g = s('g', { class: 'series' });
    if (r.line !== false) {
      const d = linePath(r.points, X, Yf, pw);
      if (d) g.append(s('path', { d, fill: 'none', stroke: r.color, 'stroke-width': 2, 'stroke-linejoin': 'round', 'stroke-linecap': 'round' }));
    }
    // points with tooltips: all of them when few, else a sample (plus the last one)
    const pts = /** @type {[number, number][]} */ (r.points.filter((p) => isNum(p[1]) && isNum(p[0])));
    const every = Math.max(1, Math.ceil(pts.length / 160));
    pts.forEach((p, i) => {
      const visible = r.line === false || r.dots || i === pts.length - 1;
      if (!visible && i % every !== 0) return;
      const c = s('circle', {
        cx: X(p[0]).toFixed(2), cy: Yf(p[1]).toFixed(2), r: visible ? 3.5 : 5,
        class: visible ? 'dot' : 'hover-dot', fill: visible ? r.color : 'transparent', stroke: visible ? '#fff' : 'none',
      }, tip((r.tipX || ((x) => String(x)))(p[0]) + ' · ' + r.label + ' ' + (r.fmt || fmtNum)(p[1])));
      g.append(c);
    });
    svg.append(g);
  };
  for (const r of o.series) drawSeries(r, Y);
  if (right) for (const r of right.series) drawSeries(r, YR);
}

/**
 * A line's path ("d"): M, then L through the points in order; a point without a number starts a
 * new M. A series of more points than the plot has columns keeps, of each column's run of
 * points, the first, the lowest, the highest and the last: the line covers the same pixels, and
 * the browser paints at most 4 vertices per column. (Measured in Chromium: a path through all of
 * 10,000 points took ~0.3 s to paint at every redraw.)
 * @param {Point[]} points
 * @param {(x: number) => number} X  viewBox x of a point's x
 * @param {(y: number) => number} Y  viewBox y of a point's y
 * @param {number} width  the plot's, in viewBox units
 */
function linePath(points, X, Y, width) {
  let d = '', pen = false;
  /**
   * @param {number} x
   * @param {number} y
   */
  const vertex = (x, y) => {
    d += (pen ? 'L' : 'M') + x.toFixed(2) + ' ' + y.toFixed(2);
    pen = true;
  };
  if (points.length <= width * COLUMNS_PER_UNIT) {
    for (const [x, y] of points) {
      if (!isNum(y) || !isNum(x)) { pen = false; continue; }
      vertex(X(x), Y(y));
    }
    return d;
  }
  /** @type {{i: number, x: number, y: number}[]} */
  let run = [];  // the current column's first, lowest, highest and last vertex
  let column = 0;
  const endRun = () => {
    let prev = -1;
    for (const v of run.slice().sort((a, b) => a.i - b.i)) {
      if (v.i !== prev) vertex(v.x, v.y);
      prev = v.i;
    }
    run = [];
  };
  points.forEach(([x, y], i) => {
    if (!isNum(y) || !isNum(x)) { endRun(); pen = false; return; }
    const v = { i, x: X(x), y: Y(y) };
    const c = Math.floor(v.x * COLUMNS_PER_UNIT);
    if (run.length && c !== column) endRun();
    if (!run.length) { run = [v, v, v, v]; column = c; return; }
    if (v.y < run[1].y) run[1] = v;
    if (v.y > run[2].y) run[2] = v;
    run[3] = v;
  });
  endRun();
  return d;
}

/**
 * @typedef {Object} BarSegment
 * @property {number | undefined} value  drawn when > 0
 * @property {string} color
 * @property {string} title
 * @property {string} [key]  its data-seg
 */

/**
 * One row of horizontal bars: a label, stacked segments (scale: the value of a full track), a value.
 * @param {Record<string, unknown>} attrs
 * @param {string} label
 * @param {string | null} sublabel
 * @param {BarSegment[]} segments
 * @param {number} scale
 * @param {string} valueText
 */
export function hbarRow(attrs, label, sublabel, segments, scale, valueText) {
  const track = h('div', { class: 'hbar-track' });
  for (const seg of segments) {
    const v = seg.value ?? 0;
    if (!(v > 0)) continue;
    track.append(h('div', {
      class: 'hbar-seg', 'data-seg': seg.key || null,
      style: `width:${((v / scale) * 100).toFixed(3)}%;background:${seg.color}`,
      title: seg.title,
    }));
  }
  return h('div', Object.assign({ class: 'hbar' }, attrs),
    h('div', { class: 'hbar-label' }, h('span', { class: 'hbar-name' }, label), sublabel ? h('span', { class: 'hbar-sub' }, sublabel) : null),
    track,
    h('div', { class: 'hbar-value' }, valueText));
}
