// The editors of sources, models, destinations, syncs and alert channels: collect the form's values, save
// them through /api/v1/edit (one Git commit per save), show each problem beside its field;
// model preview with a primary-key picker, the mapping editor, test connection (of the form
// as it stands, before it is saved), delete.
(function () {
  "use strict";
  const { h, call, cell } = window.Backhaul;
  const byId = (id) => document.getElementById(id);
  const API = "/api/v1/edit";
  let S = null; // the editor page's state (none on the delete page)

  function showProblems(problems) {
    document.querySelectorAll(".field-problems").forEach((ul) => ul.replaceChildren());
    const general = byId("save-problems");
    general.replaceChildren();
    for (const p of problems || []) {
      const top = (p.key || "").split(".")[0];
      const own = top && document.querySelector(`.field-problems[data-key="${CSS.escape(top)}"]`);
      const mine = !p.file || !S || p.file === S.file || p.file === S.sql_file;
      if (own && mine) own.append(h("li", { text: p.message }));
      else general.append(h("li", { text: p.text || p.message }));
    }
  }

  // -- delete confirmation page ------------------------------------------------------------
  const box = byId("delete-box");
  if (box) {
    byId("confirm-delete").addEventListener("click", () => {
      const d = box.dataset;
      const url = `${API}/${d.kind}/${encodeURIComponent(d.name)}?base=${d.base}`;
      byId("save-status").textContent = "Deleting…";
      call("DELETE", url, d.csrf).then(({ status, data }) => {
        if (status === 200) {
          byId("save-status").textContent = `Deleted (${data.commit ? "commit " + data.commit.slice(0, 10) : "no Git"}).`;
          window.location.assign("/edit");
        } else {
          byId("save-status").textContent = data.error.message;
          showProblems(data.error.problems || []);
        }
      });
    });
    return;
  }

  const root = byId("editor");
  if (!root) return;
  S = JSON.parse(byId("editor-state").textContent);
  const csrf = root.dataset.csrf;
  let base = S.base;
  let sqlBase = S.sql_base || "";

  const typeSelect = byId("f-type");
  if (typeSelect && S.is_new) {
    typeSelect.addEventListener("change", () => {
      const name = byId("f-name").value;
      window.location.assign(`/edit/${S.kind}/new?type=${encodeURIComponent(typeSelect.value)}` +
        (name ? `#${encodeURIComponent(name)}` : ""));
    });
    if (window.location.hash) byId("f-name").value = decodeURIComponent(window.location.hash.slice(1));
  }

  function values() {
    const out = {};
    document.querySelectorAll(".edit-field[data-widget]").forEach((div) => {
      const key = div.dataset.key;
      const input = byId(`f-${key}`);
      if (!input) return;
      const widget = div.dataset.widget;
      if (widget === "bool") out[key] = input.value === "" ? null : input.value === "true";
      else if (widget === "list") out[key] = input.value.split(",").map((s) => s.trim()).filter(Boolean);
      else out[key] = input.value;
    });
    return out;
  }

  // -- model: preview and primary-key picker ----------------------------------------------
  function renderPreview(data) {
    const table = byId("preview-table");
    table.tHead.replaceChildren(h("tr", {}, data.columns.map((c) => h("th", { title: c.type, text: c.name }))));
    table.tBodies[0].replaceChildren(...data.rows.map((r) => h("tr", {}, r.map((v) => h("td", { text: cell(v) })))));
    const pkInput = byId("f-primary_key");
    const chosen = new Set(pkInput.value.split(",").map((s) => s.trim()).filter(Boolean));
    const picker = byId("pk-picker");
    picker.replaceChildren(h("span", { class: "muted small", text: "Primary key: " }));
    for (const c of data.columns) {
      const box = h("input", { type: "checkbox", value: c.name, "data-pk": c.name, checked: chosen.has(c.name) });
      box.addEventListener("change", () => {
        const picked = [...picker.querySelectorAll("input:checked")].map((b) => b.value);
        pkInput.value = picked.join(", ");
      });
      picker.append(h("label", {}, box, ` ${c.name} `, h("span", { class: "muted small", text: c.type })));
    }
  }
  const previewButton = byId("preview-run");
  if (previewButton) {
    previewButton.addEventListener("click", () => {
      const err = byId("preview-error");
      err.hidden = true;
      call("POST", `${API}/models/preview`, csrf, { source: byId("f-source").value, sql: byId("f-sql").value })
        .then(({ status, data }) => {
          if (status === 200) renderPreview(data);
          else { err.textContent = data.error.message; err.hidden = false; }
        });
    });
  }

  // -- sync: the mapping editor ----------------------------------------------------------
  const mapping = byId("mapping-editor");
  let columns = [];
  let fields = null;
  let match = new Set(S.match || []);
  function fieldInfo(name) {
    return (fields || []).find((f) => f.name === name);
  }
  function hint(name) {
    const f = fieldInfo(name);
    if (!f) return fields ? (name ? "not a field of the destination" : "") : "";
    const parts = [f.type || ""];
    if (f.required) parts.push("required");
    if (f.unique) parts.push("unique");
    if (f.read_only) parts.push("read-only");
    return parts.filter(Boolean).join(", ");
  }
  // Where a mapping's value comes from: a model column, one value for every record, or a
  // Liquid template over the row's columns; the same three kinds the files have.
  const KINDS = [["column", "column"], ["value", "value"], ["template", "template"]];
  const OWN = ["column", "value", "template", "field", "cast", "nulls"];
  function kindOf(m) {
    if ("template" in m) return "template";
    return "value" in m && !("column" in m) ? "value" : "column";
  }
  // A static value as typed: a number, true, false, null or a "quoted" text is read as
  // JSON, as YAML reads `value: 42`; anything else is text.
  function readValue(text) {
    const t = text.trim();
    if (/^(-?\d+(\.\d+)?([eE][+-]?\d+)?|true|false|null|".*")$/.test(t)) {
      try { return JSON.parse(t); } catch (e) { return text; }
    }
    return text;
  }
  function showValue(v) {
    if (v === undefined) return "";
    if (typeof v !== "string") return JSON.stringify(v);
    return readValue(v) === v ? v : JSON.stringify(v);  // text that would read as a number keeps its quotes
  }
  function mappingRow(m) {
    const kind = kindOf(m);
    const kindSelect = h("select", { class: "map-kind", "aria-label": "value from" },
      ...KINDS.map(([v, label]) => h("option", { value: v, selected: v === kind, text: label })));
    const colSelect = h("select", { class: "map-column" }, h("option", { value: "", text: "column…" }));
    const names = columns.map((c) => c.name);
    if (m.column && !names.includes(m.column)) names.push(m.column);
    for (const n of names) colSelect.append(h("option", { value: n, selected: n === m.column, text: n }));
    const valueInput = h("input", { class: "map-value", value: showValue(m.value), placeholder: 'text, 42, true, null or "42"' });
    const templateInput = h("input", { class: "map-template mono", value: m.template || "", placeholder: "{{ first_name }} {{ last_name }}" });
    const castSelect = h("select", { class: "map-cast", "aria-label": "cast" }, h("option", { value: "", text: "as is" }),
      ...(S.casts || []).map((c) => h("option", { value: c, selected: c === m.cast, text: c })));
    const nullsSelect = h("select", { class: "map-nulls", "aria-label": "nulls" }, h("option", { value: "", text: "sync default" }),
      h("option", { value: "send", selected: m.nulls === "send", text: "send" }),
      h("option", { value: "skip", selected: m.nulls === "skip", text: "skip" }));
    const fieldInput = h("input", { class: "map-field", list: "dest-fields", value: m.field || "", placeholder: "field" });
    const hintCell = h("td", { class: "map-hint muted small", text: hint(m.field) });
    const matchBox = h("input", { type: "checkbox", class: "map-match", checked: match.has(m.field) });
    function showKind() {
      const k = kindSelect.value;
      colSelect.hidden = k !== "column";
      valueInput.hidden = k !== "value";
      templateInput.hidden = k !== "template";
      castSelect.disabled = k === "value";  // a static value has no cast
    }
    kindSelect.addEventListener("change", showKind);
    showKind();
    fieldInput.addEventListener("input", () => { hintCell.textContent = hint(fieldInput.value); requiredNote(); });
    colSelect.addEventListener("change", () => {
      if (!fieldInput.value && fields && fieldInfo(colSelect.value)) fieldInput.value = colSelect.value;
      hintCell.textContent = hint(fieldInput.value);
    });
    const row = h("tr", { class: "mapping" }, h("td", { class: "map-source" }, kindSelect, " ", colSelect, valueInput, templateInput),
      h("td", {}, fieldInput), hintCell, h("td", {}, castSelect), h("td", {}, nullsSelect),
      h("td", {}, matchBox), h("td", {}, h("button", { type: "button", class: "map-remove", onclick: () => row.remove(), text: "remove" })));
    row._extra = Object.fromEntries(Object.entries(m).filter(([k]) => !OWN.includes(k)));
    return row;
  }
  // Every row as it stands, the ones still being filled in too.
  function rowsNow() {
    return [...mapping.tBodies[0].rows].map((row) => {
      const m = Object.assign({}, row._extra);
      const kind = row.querySelector(".map-kind").value;
      if (kind === "column") {
        const col = row.querySelector(".map-column").value;
        if (col) m.column = col;
      } else if (kind === "value") {
        m.value = readValue(row.querySelector(".map-value").value);
      } else {
        m.template = row.querySelector(".map-template").value;
      }
      m.field = row.querySelector(".map-field").value.trim();
      const cast = row.querySelector(".map-cast").value;
      if (cast && kind !== "value") m.cast = cast;
      const nulls = row.querySelector(".map-nulls").value;
      if (nulls) m.nulls = nulls;
      return m;
    });
  }
  function mappings() {
    return rowsNow().filter((m) => m.field);
  }
  function matchFields() {
    return [...mapping.tBodies[0].rows].filter((r) => r.querySelector(".map-match").checked)
      .map((r) => r.querySelector(".map-field").value.trim()).filter(Boolean);
  }
  function redraw() {
    // A row added while the columns and fields were loading stays, empty as it is.
    const current = mapping.tBodies[0].rows.length ? rowsNow() : S.mappings;
    match = new Set(mapping.tBodies[0].rows.length ? matchFields() : S.match || []);
    mapping.tBodies[0].replaceChildren(...current.map(mappingRow));
    requiredNote();
    const list = byId("dest-fields");
    list.replaceChildren(...(fields || []).filter((f) => !f.read_only).map((f) =>
      h("option", { value: f.name, text: [f.label, f.type, f.required ? "required" : "", f.unique ? "unique" : ""].filter(Boolean).join(" · ") })));
  }
  // Fields the destination needs on a new record that no mapping fills yet.
  function requiredNote() {
    const mapped = new Set(mappings().map((m) => m.field));
    const missing = (fields || []).filter((f) => f.required && !mapped.has(f.name)).map((f) => f.name);
    const note = byId("required-note");
    note.textContent = missing.length ? `Required by the destination and not mapped: ${missing.join(", ")}` : "";
    note.hidden = !missing.length;
  }
  let sides = 0;  // the latest loadSides: an answer to an earlier one is dropped
  function loadSides() {
    const turn = ++sides;
    const model = byId("f-model").value;
    const dest = byId("f-destination").value;
    const object = byId("f-object").value;
    const note = byId("fields-note");
    const asks = [];
    asks.push(model ? call("GET", `${API}/models/${encodeURIComponent(model)}/columns`, csrf)
      .then(({ status, data }) => { if (turn === sides) columns = status === 200 ? data.columns : []; }) : Promise.resolve());
    asks.push(dest ? call("GET", `${API}/destinations/${encodeURIComponent(dest)}/fields?object=${encodeURIComponent(object)}`, csrf)
      .then(({ status, data }) => {
        if (turn !== sides) return;
        fields = status === 200 ? data.fields : null;
        note.textContent = fields ? `${fields.length} fields listed by the destination.` :
          `The destination cannot list its fields${data.message ? " (" + data.message + ")" : ""}: type them.`;
      }) : Promise.resolve());
    return Promise.all(asks).then(() => { if (turn === sides) redraw(); });
  }
  if (mapping) {
    for (const id of ["f-model", "f-destination", "f-object"]) byId(id).addEventListener("change", loadSides);
    byId("add-mapping").addEventListener("click", () => mapping.tBodies[0].append(mappingRow({})));
    mapping.tBodies[0].replaceChildren(...(S.mappings || []).map(mappingRow));
    loadSides();
  }

  // The name being edited and the form as a save sends it (null: no name given yet).
  function edited() {
    const name = S.is_new ? byId("f-name").value.trim() : S.name;
    if (!name) { showProblems([{ key: "name", message: "give it a name" }]); return null; }
    const body = { values: values(), base: base };
    if (typeSelect) body.type = typeSelect.value || null;
    if (S.kind === "models") { body.sql = byId("f-sql").value; body.sql_base = sqlBase; }
    if (mapping) { body.mappings = mappings(); body.match = matchFields(); }
    return { name, body };
  }

  // -- test connection: the form as it stands, saved or not --------------------------------
  const testButton = byId("test-connection");
  if (testButton) {
    testButton.addEventListener("click", () => {
      const out = byId("test-result");
      const it = edited();
      if (!it) return;
      out.className = "";
      out.textContent = "Testing…";
      call("POST", `${API}/${S.kind}/${encodeURIComponent(it.name)}/check`, csrf, it.body).then(({ data }) => {
        showProblems(data.error ? data.error.problems || [] : []);
        out.className = data.ok ? "badge ok" : "badge failed";
        out.textContent = data.ok ? `reachable${data.version ? " · " + data.version : ""} · ${data.latency_ms} ms` : data.message || data.error.message;
      });
    });
  }

  // -- save ------------------------------------------------------------------------------
  byId("editor-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const status = byId("save-status");
    const it = edited();
    if (!it) return;
    const { name, body } = it;
    status.textContent = "Saving…";
    call("PUT", `${API}/${S.kind}/${encodeURIComponent(name)}`, csrf, body).then(({ status: code, data }) => {
      if (code === 200) {
        showProblems([]);
        status.textContent = data.changed ? `Saved${data.commit ? " · commit " + data.commit.slice(0, 10) : ""}: ${data.message}` : "No change.";
        if (data.warning) status.textContent += " · " + data.warning;
        if (S.is_new) { window.location.assign(`/edit/${S.kind}/${encodeURIComponent(name)}?saved=1`); return; }
        base = data.files[0].base;
        if (data.files[1]) sqlBase = data.files[1].base;
      } else {
        status.textContent = data.error.message;
        showProblems(data.error.problems || []);
      }
    });
  });
  if (new URLSearchParams(window.location.search).get("saved")) byId("save-status").textContent = "Saved.";
})();
