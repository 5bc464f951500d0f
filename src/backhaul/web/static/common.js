// What the audience builder and the editors share: building DOM nodes, and calling the JSON
// API with the page's CSRF token. Loaded before either page's own script.
(function () {
  "use strict";

  // h("a", {href, text, onclick}, ...children): an element, its attributes and listeners.
  function h(tag, attrs, ...kids) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else if (k === "text") el.textContent = v;
      else el.setAttribute(k, v === true ? "" : v);
    }
    for (const kid of kids.flat()) if (kid !== null && kid !== undefined) el.append(kid);
    return el;
  }

  // One call of the JSON API (the body, if any, sent as JSON): resolves to {status, data}.
  function call(method, url, csrf, body) {
    const headers = { Accept: "application/json", "X-CSRF-Token": csrf };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    return fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) })
      .then((r) => r.json().then((data) => ({ status: r.status, data })));
  }

  // A value of a preview or sample row as a table cell's text: null as "null", a list or
  // an object (a struct or MAP column) as JSON, anything else as its text.
  function cell(v) {
    if (v === null || v === undefined) return "null";
    return typeof v === "object" ? JSON.stringify(v) : String(v);
  }

  window.Backhaul = Object.freeze({ h, call, cell });
})();
