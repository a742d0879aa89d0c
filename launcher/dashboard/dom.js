// @ts-check
// Building the page's elements: h() for HTML, s() for SVG, with attributes and children in one
// call. No state: every other module builds its part of the page with these.

/**
 * Attribute values: false, null and undefined leave the attribute out, true sets it empty.
 * `class` and `text` (the text content) are special, `on<event>` with a function adds a listener.
 * @typedef {Record<string, unknown> | null | undefined} Attrs
 */
/** @typedef {Node | string | number | null | undefined | false} Leaf  null, undefined and false add nothing */
/** @typedef {Leaf | Leaf[]} Child */

// the SVG namespace, as the HTML parser assigns it (no URL literal in these files)
export const SVGNS = (() => {
  const d = document.createElement('div');
  d.innerHTML = '<svg>';
  return /** @type {Element} */ (d.firstChild).namespaceURI || '';
})();

/**
 * An HTML element.
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {Attrs} attrs
 * @param {...Child} children
 * @returns {HTMLElementTagNameMap[K]}
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

/**
 * An SVG element.
 * @template {keyof SVGElementTagNameMap} K
 * @param {K} tag
 * @param {Attrs} attrs
 * @param {...Child} children
 * @returns {SVGElementTagNameMap[K]}
 */
export function s(tag, attrs, ...children) {
  const el = /** @type {SVGElementTagNameMap[K]} */ (document.createElementNS(SVGNS, tag));
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

/**
 * @param {Element} el
 * @param {Attrs} attrs
 */
function setAttrs(el, attrs) {
  if (!attrs) return;
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') el.setAttribute('class', String(v));
    else if (k === 'text') el.textContent = String(v);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), /** @type {EventListener} */ (v));
    else el.setAttribute(k, v === true ? '' : String(v));
  }
}

/**
 * @param {Element} el
 * @param {Child[]} children
 */
function append(el, children) {
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.appendChild(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : /** @type {Node} */ (c));
  }
}

/** @param {Element} el */
export function clear(el) { while (el.firstChild) el.removeChild(el.firstChild); }

/**
 * An SVG tooltip.
 * @param {string} text
 */
export function tip(text) { return s('title', null, text); }

/**
 * A card of the page's grid.
 * @param {string | null} title
 * @param {Child} body
 * @param {{wide?: boolean, id?: string, extra?: Child}} [opts]
 */
export function card(title, body, opts = {}) {
  return h('section', { class: 'card' + (opts.wide ? ' wide' : ''), id: opts.id },
    title ? h('h3', { class: 'card-title' }, title, opts.extra || null) : null,
    body);
}
