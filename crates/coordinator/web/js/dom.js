// Building the page. Every string that reaches the DOM goes in as text (textContent or a text
// node), never as markup: job names, arguments, labels, node names and program output are
// other people's words. Attributes are set one by one through setAttribute, and neither inline
// styles nor inline event handlers are ever set (the page's Content-Security-Policy forbids
// them); listeners are added with addEventListener.

const SVG_NS = 'http://www.w3.org/2000/svg';

// Properties set as properties rather than attributes.
const PROPERTIES = new Set(['hidden', 'disabled', 'checked', 'value', 'selected', 'multiple',
  'required', 'readOnly', 'open', 'indeterminate', 'max', 'min', 'step']);

function checkAttribute(name, value) {
  if (!/^[a-zA-Z][a-zA-Z0-9_:-]*$/.test(name)) throw new Error(`bad attribute name ${name}`);
  const lower = name.toLowerCase();
  if (lower.startsWith('on') || lower === 'style' || lower === 'srcdoc') {
    throw new Error(`attribute ${name} is not set from data`);
  }
  if ((lower === 'href' || lower === 'src' || lower === 'action' || lower === 'xlink:href') &&
      /^\s*(javascript|data|vbscript):/i.test(String(value))) {
    throw new Error(`refused ${name} ${value}`);
  }
}

function apply(el, props) {
  if (!props) return;
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false && !PROPERTIES.has(key)) continue;
    if (key === 'class') {
      const names = Array.isArray(value) ? value.filter(Boolean).join(' ') : String(value);
      if (el instanceof SVGElement) el.setAttribute('class', names); else el.className = names;
    } else if (key === 'data') {
      for (const [k, v] of Object.entries(value)) {
        if (v !== undefined && v !== null) el.dataset[k] = String(v);
      }
    } else if (key === 'on') {
      for (const [event, listener] of Object.entries(value)) el.addEventListener(event, listener);
    } else if (key === 'text') {
      el.textContent = String(value);
    } else if (PROPERTIES.has(key) && !(el instanceof SVGElement)) {
      el[key] = value;
    } else {
      checkAttribute(key, value);
      el.setAttribute(key, value === true ? '' : String(value));
    }
  }
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else if (child instanceof Node) el.append(child);
    else el.append(document.createTextNode(String(child)));
  }
}

// h('p', {class: 'muted'}, 'text', otherNode, ['more', 'children'])
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  apply(el, props);
  append(el, children);
  return el;
}

// The same for SVG elements, made with createElementNS.
export function svg(tag, props, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  apply(el, props);
  append(el, children);
  return el;
}

export function text(value) {
  return document.createTextNode(value === null || value === undefined ? '' : String(value));
}

export function setText(el, value) {
  const next = value === null || value === undefined ? '' : String(value);
  if (el.textContent !== next) el.textContent = next;
}

// Replaces an element's children (nodes or strings, as for h).
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

// A table cell that shows its column name above its value when the table is stacked into
// cards on a narrow screen (app.css, `table.stack`).
export function cell(label, ...children) {
  return h('td', { data: { label } }, h('div', { class: 'v' }, ...children));
}

// The same for a short value that should not wrap (a number, a duration).
export function numCell(label, ...children) {
  return h('td', { class: 'num', data: { label } }, h('div', { class: 'v' }, ...children));
}

// Sets a width in percent from script: allowed by the CSP, unlike a style attribute.
export function setWidth(el, fraction) {
  const pct = Math.max(0, Math.min(1, Number.isFinite(fraction) ? fraction : 0)) * 100;
  el.style.width = pct.toFixed(3) + '%';
}

// Saves a Blob under a file name: an object URL and a temporary <a download>.
export function saveBlob(blob, filename) {
  const url = URL.createObjectURL(blob);
  const a = h('a', { href: url, download: filename, class: 'offscreen' });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}
