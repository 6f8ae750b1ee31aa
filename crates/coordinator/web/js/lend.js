// #/lend: lending this device to the pool from the browser. main.js loads this module only
// when the page is opened and calls render(container, api); `api` is the object of api.js
// (get, post, request, getBlob, putBlob, hasBlob, health, token…). A function returned is
// called when the user leaves the page.
//
// For now it only introduces the page; running tasks here (WASI through the vendored
// ../vendor/browser_wasi_shim/) comes next.

import { h, fill } from './dom.js';

export function render(container, api) {
  void api;
  fill(container,
    h('h1', null, 'Lend this device'),
    h('p', null,
      'While this page is open, this device can run tasks of the pool in the browser, in the ' +
      'same WebAssembly sandbox as a node, and stop the moment you leave the page.'));
  return undefined;
}
