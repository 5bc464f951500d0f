// The audience builder: edits the audience as JSON (the same structure as the YAML file)
// and asks the server for size, sample, SQL, breakdown, overlap and tests as it changes.
// Values the user does not touch are never rewritten, so an unchanged file saves as it was.
(function () {
  "use strict";
  const S = JSON.parse(document.getElementById("builder-state").textContent);
  const root = document.getElementById("builder");
  const csrf = root.dataset.csrf;
  const cat = S.catalog;
  const aud = S.audience;
  const GROUPS = ["all", "any", "none"];
  const COUNTS = ["at_least", "at_most", "exactly"];
  const NO_VALUE = ["is_null", "is_not_null"];
  const DAYS = ["within_last", "not_within_last"];
  const LIST = ["in", "not_in"];
  const LABELS = { all: "all of", any: "any of", none: "none of", at_least: "at least",
    at_most: "at most", exactly: "exactly", did_not: "never", first: "first time",
    last: "last time", equals: "is", not_equals: "is not", in: "is one of",
    not_in: "is none of", contains: "contains", starts_with: "starts with",
    is_null: "is empty", is_not_null: "is not empty", gt: ">", gte: "≥", lt: "<", lte: "≤",
    between: "between", before: "before", after: "after", within_last: "within the last",
    not_within_last: "not within the last" };
  let state = { breakdown: "", overlap: "", priority: [], seq: 0, timer: null };

  // -- small DOM helpers -------------------------------------------------------------------
  const { h, call, cell } = window.Backhaul;
  function select(options, value, onchange, attrs) {
    const el = h("select", Object.assign({ onchange: (e) => onchange(e.target.value) }, attrs));
    for (const o of options) {
      const [v, label] = Array.isArray(o) ? o : [o, LABELS[o] || o];
      el.append(h("option", { value: v, selected: v === value }, label));
    }
    return el;
  }
  const byId = (id) => document.getElementById(id);
  const changed = () => { render(); refresh(); };

  // -- values: JSON as in the file, shown as text ---------------------------------------
  function show(v) {
    if (v === null || v === undefined) return "";
    if (typeof v === "object" && !Array.isArray(v)) return v.$date || v.$ts || "";
    return String(v);
  }
  function parse(text, type) {
    const t = text.trim();
    if (type === "number" || (!type && /^-?\d+(\.\d+)?$/.test(t))) {
      return t !== "" && !isNaN(Number(t)) ? Number(t) : t;
    }
    if (type === "boolean" || (!type && /^(true|false)$/.test(t))) return t === "true";
    if (type === "date" || type === "timestamp" || !type) {
      if (/^\d{4}-\d{2}-\d{2}$/.test(t)) return { $date: t };
      if (/^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2})?$/.test(t)) {
        const ts = t.replace("T", " ");
        return { $ts: ts.length === 16 ? ts + ":00" : ts };
      }
    }
    return t;
  }
  function columnsOf(table) {
    if (table === "parent") return cat.parent.columns;
    return (cat.related[table] || cat.events[table] || { columns: [] }).columns;
  }
  function typeOf(table, column) {
    const found = columnsOf(table).find((c) => c.name === column);
    return found ? found.type : null;
  }

  // -- suggestions for low-cardinality columns ------------------------------------------
  const suggestions = {};
  function datalist(table, column) {
    const id = "values-" + table + "-" + column;
    let list = byId(id);
    if (!list) {
      list = h("datalist", { id });
      document.body.append(list);
      const url = `/api/v1/audience-schemas/${encodeURIComponent(S.schema)}/values?table=` +
        encodeURIComponent(table) + "&column=" + encodeURIComponent(column);
      suggestions[id] = fetch(url, { headers: { Accept: "application/json" } })
        .then((r) => r.json())
        .then((d) => { for (const v of d.values || []) list.append(h("option", { value: String(v) })); });
    }
    return id;
  }

  // -- one test on a column: {column, op, value|days} ------------------------------------
  function valueInput(c, table, type, index) {
    const attrs = { class: "value", "aria-label": "value" };
    if (type === "boolean") {
      const cur = index === undefined ? c.value : c.value[index];
      return select([["true", "true"], ["false", "false"]], String(cur), (v) => {
        setValue(c, v === "true", index); refresh();
      }, attrs);
    }
    const cur = index === undefined ? c.value : (c.value || [])[index];
    attrs.value = show(cur);
    if (type === "number") attrs.inputmode = "decimal";
    if (type === "date" || type === "timestamp") attrs.placeholder = type === "date" ? "2024-06-01" : "2024-06-01 10:30:00";
    if (type === "string" || !type) attrs.list = datalist(table, c.column);
    attrs.oninput = (e) => { setValue(c, parse(e.target.value, type), index); refresh(); };
    return h("input", attrs);
  }
  function setValue(c, v, index) {
    if (index === undefined) c.value = v;
    else c.value[index] = v;
  }
  function columnTest(c, table, key) {
    const cols = columnsOf(table);
    const type = typeOf(table, c.column);
    const ops = cat.ops[type || ""];
    const parts = [
      select(cols.map((x) => [x.name, x.label]), c.column, (v) => {
        c.column = v;
        const t = typeOf(table, v);
        if (!cat.ops[t || ""].includes(c.op)) { c.op = "is_not_null"; delete c.value; delete c.days; }
        changed();
      }, { class: "column", "aria-label": "column" }),
      select(ops, c.op, (op) => {
        reshape(c, op);
        if (type === "boolean" && "value" in c && typeof c.value !== "boolean") c.value = true;
        changed();
      }, { class: "op", "aria-label": "operator" }),
    ];
    if (DAYS.includes(c.op)) {
      parts.push(h("input", { class: "days", type: "number", min: "0", value: show(c.days), "aria-label": "days",
        oninput: (e) => { c.days = Number(e.target.value); refresh(); } }), h("span", {}, " days"));
    } else if (LIST.includes(c.op)) {
      parts.push(h("input", { class: "value list", value: (c.value || []).map(show).join(", "),
        placeholder: "a, b, c", "aria-label": "values", list: type === "string" || !type ? datalist(table, c.column) : null,
        oninput: (e) => { c.value = e.target.value.split(",").map((x) => x.trim()).filter((x) => x).map((x) => parse(x, type)); refresh(); } }));
    } else if (c.op === "between") {
      parts.push(valueInput(c, table, type, 0), h("span", {}, " and "), valueInput(c, table, type, 1));
    } else if (!NO_VALUE.includes(c.op)) {
      parts.push(valueInput(c, table, type));
    }
    return h("span", { class: "test", "data-key": key }, parts);
  }
  function reshape(c, op) {
    const was = c.value;
    c.op = op;
    if (NO_VALUE.includes(op)) { delete c.value; delete c.days; return; }
    if (DAYS.includes(op)) { delete c.value; c.days = c.days || 30; return; }
    delete c.days;
    const first = Array.isArray(was) ? was[0] : was;
    if (LIST.includes(op)) c.value = Array.isArray(was) ? was : (first === undefined ? [] : [first]);
    else if (op === "between") c.value = [first === undefined ? "" : first, Array.isArray(was) && was[1] !== undefined ? was[1] : (first === undefined ? "" : first)];
    else c.value = first === undefined ? "" : first;
  }
  function whereList(c, table, key) {
    c.where = c.where || [];
    const rows = c.where.map((w, i) => h("div", { class: "where-row" },
      columnTest(w, table, `${key}.where.${i}`),
      h("button", { type: "button", class: "icon", title: "Remove this filter", "aria-label": "remove filter",
        onclick: () => { c.where.splice(i, 1); if (!c.where.length) delete c.where; changed(); } }, "×")));
    const cols = columnsOf(table);
    return h("div", { class: "where" }, rows, cols.length ? h("button", { type: "button", class: "link add-filter",
      onclick: () => { c.where = c.where || []; c.where.push({ column: cols[0].name, op: "is_not_null" }); changed(); } }, "+ filter") : null);
  }

  // -- each kind of condition ---------------------------------------------------------------
  function kindOf(c) {
    for (const k of ["column", "related", "event", "in_audience", "not_in_audience", "sql"]) if (k in c) return k;
    return "group";
  }
  function countKey(c) { return COUNTS.find((k) => k in c); }
  function countEditor(c, kinds) {
    const k = countKey(c) || (c.did_not ? "did_not" : (c.first ? "first" : (c.last ? "last" : "at_least")));
    const n = COUNTS.includes(k) && c[k] !== undefined ? c[k] : 1;
    const parts = [select(kinds, k, (v) => {
      for (const x of [...COUNTS, "did_not", "first", "last"]) delete c[x];
      if (COUNTS.includes(v)) c[v] = n;
      else if (v === "did_not") c.did_not = true;
      else { delete c.within_last_days; delete c.between; c[v] = { op: "within_last", days: 30 }; }
      changed();
    }, { class: "count-kind", "aria-label": "how many" })];
    if (COUNTS.includes(k)) {
      parts.push(h("input", { class: "count", type: "number", min: "0", value: String(n), "aria-label": "count",
        oninput: (e) => { c[k] = Number(e.target.value); refresh(); } }));
    }
    return parts;
  }
  function relatedEditor(c, key) {
    const names = Object.keys(cat.related);
    return [h("span", { class: "kind" }, "has"),
      ...countEditor(c, COUNTS),
      select(names, c.related, (v) => { c.related = v; delete c.where; changed(); }, { class: "related", "aria-label": "related model" }),
      h("span", { class: "muted" }, " where "), whereList(c, c.related, key)];
  }
  function windowEditor(c) {
    const w = c.within_last_days !== undefined ? "within" : (c.between ? "between" : "ever");
    const parts = [select([["ever", "at any time"], ["within", "within the last"], ["between", "between"]], w, (v) => {
      delete c.within_last_days; delete c.between;
      if (v === "within") c.within_last_days = 30;
      if (v === "between") { const d = new Date().toISOString().slice(0, 10); c.between = [{ $date: d }, { $date: d }]; }
      changed();
    }, { class: "window", "aria-label": "when" })];
    if (w === "within") parts.push(h("input", { class: "days", type: "number", min: "0", value: String(c.within_last_days), "aria-label": "days",
      oninput: (e) => { c.within_last_days = Number(e.target.value); refresh(); } }), h("span", {}, " days"));
    if (w === "between") for (const i of [0, 1]) parts.push(h("input", { class: "value", value: show(c.between[i]), placeholder: "2024-06-01", "aria-label": i ? "to" : "from",
      oninput: (e) => { c.between[i] = parse(e.target.value, "date"); refresh(); } }));
    return parts;
  }
  function eventEditor(c, key) {
    const names = Object.keys(cat.events);
    const parts = [h("span", { class: "kind" }, "did"),
      select(names, c.event, (v) => { c.event = v; delete c.where; changed(); }, { class: "event", "aria-label": "event" }),
      ...countEditor(c, [...COUNTS, "did_not", "first", "last"])];
    const timed = c.first ? "first" : (c.last ? "last" : null);
    if (timed) {
      const t = c[timed];
      parts.push(select(cat.time_ops, t.op, (op) => { reshape(t, op); changed(); }, { class: "op", "aria-label": "time operator" }));
      if (DAYS.includes(t.op)) parts.push(h("input", { class: "days", type: "number", value: show(t.days), "aria-label": "days",
        oninput: (e) => { t.days = Number(e.target.value); refresh(); } }), h("span", {}, " days"));
      else if (t.op === "between") for (const i of [0, 1]) parts.push(h("input", { class: "value", value: show(t.value[i]), "aria-label": "date",
        oninput: (e) => { t.value[i] = parse(e.target.value, "timestamp"); refresh(); } }));
      else parts.push(h("input", { class: "value", value: show(t.value), placeholder: "2024-06-01", "aria-label": "date",
        oninput: (e) => { t.value = parse(e.target.value, "timestamp"); refresh(); } }));
    } else {
      if (countKey(c)) parts.push(h("span", {}, " times"));
      parts.push(...windowEditor(c));
    }
    parts.push(h("span", { class: "muted" }, " where "), whereList(c, c.event, key));
    return parts;
  }
  function audienceEditor(c) {
    const neg = "not_in_audience" in c;
    const name = c.in_audience || c.not_in_audience;
    return [select([["in", "is in audience"], ["not", "is not in audience"]], neg ? "not" : "in", (v) => {
      delete c.in_audience; delete c.not_in_audience; c[v === "not" ? "not_in_audience" : "in_audience"] = name; changed();
    }, { "aria-label": "membership" }),
    select(S.audiences.includes(name) ? S.audiences : [name, ...S.audiences], name, (v) => {
      c[neg ? "not_in_audience" : "in_audience"] = v; changed();
    }, { class: "audience", "aria-label": "audience" })];
  }
  function sqlEditor(c) {
    return [h("span", { class: "kind" }, "SQL"), h("textarea", { class: "sql", rows: "2", "aria-label": "SQL condition",
      readonly: !S.can_sql, oninput: (e) => { c.sql = e.target.value; refresh(); } }, c.sql)];
  }

  // -- the tree ---------------------------------------------------------------------------
  function addMenu(list, key) {
    const options = [["", "+ add condition…"], ["column", "a column of " + cat.parent.model]];
    for (const r of Object.keys(cat.related)) options.push(["related:" + r, "has related " + r]);
    for (const e of Object.keys(cat.events)) options.push(["event:" + e, "did event " + e]);
    if (S.audiences.length) options.push(["audience", "in another audience"]);
    options.push(["group", "a group (any of…)"]);
    if (S.can_sql) options.push(["sql", "raw SQL (editors)"]);
    return select(options, "", (v) => {
      const first = cat.parent.columns.find((c) => c.name !== cat.parent.key) || cat.parent.columns[0];
      if (v === "column") list.push({ column: first.name, op: "is_not_null" });
      else if (v.startsWith("related:")) list.push({ related: v.slice(8) });
      else if (v.startsWith("event:")) list.push({ event: v.slice(6), at_least: 1, within_last_days: 30 });
      else if (v === "audience") list.push({ in_audience: S.audiences[0] });
      else if (v === "group") list.push({ any: [{ column: first.name, op: "is_not_null" }] });
      else if (v === "sql") list.push({ sql: "1 = 1" });
      else return;
      changed();
    }, { class: "add", "aria-label": "add a condition", "data-add": key });
  }
  function condition(c, list, i, key) {
    const kind = kindOf(c);
    const badge = h("span", { class: "size-badge", "data-size": key });
    const remove = h("button", { type: "button", class: "icon remove", title: "Remove", "aria-label": "remove condition",
      onclick: () => { list.splice(i, 1); changed(); } }, "×");
    if (kind === "group") {
      const match = GROUPS.find((g) => g in c);
      return h("div", { class: "cond group", "data-key": key, "data-kind": kind },
        h("div", { class: "cond-line" }, h("span", { class: "kind" }, "people matching"),
          select(GROUPS, match, (m) => { const items = c[match]; delete c[match]; c[m] = items; changed(); }, { class: "match", "aria-label": "group match" }),
          badge, remove),
        conditionList(c[match], `${key}.${match}`), h("div", { class: "errors" }));
    }
    let body;
    if (kind === "column") body = [columnTest(c, "parent", key)];
    else if (kind === "related") body = relatedEditor(c, key);
    else if (kind === "event") body = eventEditor(c, key);
    else if (kind === "sql") body = sqlEditor(c);
    else body = audienceEditor(c);
    return h("div", { class: "cond " + kind, "data-key": key, "data-kind": kind },
      h("div", { class: "cond-line" }, body, badge, remove), h("div", { class: "errors" }));
  }
  function conditionList(list, key) {
    return h("div", { class: "cond-list" }, list.map((c, i) => condition(c, list, i, `${key}.${i}`)), addMenu(list, key));
  }
  const hadConditions = "conditions" in aud;
  function payload() {
    // An audience written without `conditions` stays so while it has none.
    const out = Object.assign({}, aud);
    if (!hadConditions && !out.conditions.length) delete out.conditions;
    return out;
  }
  function render() {
    aud.conditions = aud.conditions || [];
    const tree = byId("tree");
    tree.replaceChildren(h("div", { class: "cond group top", "data-key": "conditions" },
      h("div", { class: "cond-line" }, h("span", { class: "kind" }, "People of " + cat.parent.model + " matching"),
        select(GROUPS, aud.match || "all", (m) => { aud.match = m; changed(); }, { id: "top-match", "aria-label": "match" })),
      conditionList(aud.conditions, "conditions"), h("div", { class: "errors" })));
    renderColumns();
    renderSplits();
  }
  function renderColumns() {
    const chosen = aud.columns || cat.parent.columns.map((c) => c.name);
    byId("columns-choice").replaceChildren(...cat.parent.columns.filter((c) => c.name !== cat.parent.key).map((c) =>
      h("label", { class: "check" }, h("input", { type: "checkbox", checked: chosen.includes(c.name), value: c.name,
        onchange: () => {
          aud.columns = [...byId("columns-choice").querySelectorAll("input:checked")].map((x) => x.value);
          refresh();
        } }), " " + c.label + (c.personal ? " (personal)" : ""))));
  }
  function renderSplits() {
    const box = byId("splits");
    if (!aud.splits) {
      box.replaceChildren(h("button", { type: "button", id: "add-splits", onclick: () => {
        aud.splits = { holdout: 10, groups: [{ name: "group_a", percent: 45 }, { name: "group_b", percent: 45 }] };
        byId("splits-panel").open = true; changed(); } }, "Add splits and a holdout"));
      return;
    }
    const sp = aud.splits;
    sp.groups = sp.groups || [];
    box.replaceChildren(h("div", { "data-key": "splits" },
      h("label", {}, "Holdout % ", h("input", { id: "holdout", type: "number", min: "0", max: "99", step: "any", value: show(sp.holdout),
        oninput: (e) => { sp.holdout = Number(e.target.value); refresh(); } })),
      h("label", {}, " Seed ", h("input", { id: "seed", value: sp.seed || "", placeholder: "the audience name",
        oninput: (e) => { if (e.target.value) sp.seed = e.target.value; else delete sp.seed; refresh(); } })),
      h("table", { class: "split-groups" }, sp.groups.map((g, i) => h("tr", { "data-key": "splits.groups." + i },
        h("td", {}, h("input", { class: "split-name", value: g.name, "aria-label": "group name", oninput: (e) => { g.name = e.target.value; refresh(); } })),
        h("td", {}, h("input", { class: "split-percent", type: "number", step: "any", value: show(g.percent), "aria-label": "percent",
          oninput: (e) => { g.percent = Number(e.target.value); refresh(); } }), " %"),
        h("td", { class: "split-size", "data-split": g.name }),
        h("td", {}, h("button", { type: "button", class: "icon", "aria-label": "remove group", onclick: () => { sp.groups.splice(i, 1); changed(); } }, "×"))))),
      h("button", { type: "button", class: "link", onclick: () => { sp.groups.push({ name: "group_" + (sp.groups.length + 1), percent: 0 }); changed(); } }, "+ split group"),
      h("button", { type: "button", class: "link", id: "remove-splits", onclick: () => { delete aud.splits; changed(); } }, "remove splits"),
      h("div", { class: "errors" })));
  }

  // -- results ------------------------------------------------------------------------------
  function audienceName() {
    const input = byId("audience-name");
    return S.name || (input && /^[A-Za-z_][A-Za-z0-9_-]*$/.test(input.value) ? input.value : "new_audience");
  }
  function refresh() {
    root.dataset.pending = "1";
    clearTimeout(state.timer);
    state.timer = setTimeout(preview, 250);
  }
  function preview() {
    state.timer = null;
    const seq = ++state.seq;
    root.classList.add("loading");
    const body = { name: audienceName(), schema: S.schema, audience: payload(), sample: true, tests: S.has_tests,
      breakdown: state.breakdown || null, overlap: state.overlap || null,
      priority: state.priority.map((p) => (p === "(this audience)" ? audienceName() : p)) };
    call("POST", "/api/v1/audiences/preview", csrf, body).then(({ status, data: d }) => {
      if (seq !== state.seq) return;
      if (!state.timer) delete root.dataset.pending; // no newer change is waiting
      root.classList.remove("loading");
      root.dataset.previewed = String(seq);
      const err = byId("preview-error");
      showProblems(d.errors || [], false);
      if (status !== 200 || (d.errors && d.errors.length)) {
        err.hidden = false;
        err.textContent = d.error ? d.error.message : "Fix the conditions marked in red to see the audience.";
        return;
      }
      err.hidden = true;
      showResults(d);
    }).catch((e) => {
      if (seq !== state.seq) return;
      delete root.dataset.pending;
      root.classList.remove("loading");
      const err = byId("preview-error");
      err.hidden = false;
      err.textContent = "The server did not answer (" + e + "); try again.";
    });
  }
  function fmt(n) { return Number(n).toLocaleString("en-US"); }
  function showResults(d) {
    const s = d.size;
    byId("size-members").textContent = fmt(s.members);
    byId("size-detail").textContent = `${fmt(s.matched)} of ${fmt(s.parent)} people match` + (s.holdout ? `, ${fmt(s.holdout)} held out` : "");
    byId("size-splits").replaceChildren(...Object.entries(s.splits).map(([g, n]) => h("span", { class: "badge never split-count", "data-split": g }, `${g}: ${fmt(n)}`)));
    for (const el of root.querySelectorAll("[data-size]")) {
      const n = d.groups[el.dataset.size];
      el.textContent = n === undefined ? "" : fmt(n);
      el.title = "people matching this condition on its own";
    }
    for (const c of s.conditions) {
      const el = root.querySelector(`[data-size="${c.key}"]`);
      if (el && (aud.match || "all") === "all") el.title = `${fmt(c.alone)} on its own, ${fmt(c.cumulative)} with the conditions above`;
    }
    for (const el of root.querySelectorAll("td.split-size")) el.textContent = s.splits[el.dataset.split] !== undefined ? fmt(s.splits[el.dataset.split]) + " members" : "";
    byId("sql").textContent = d.sql;
    const table = byId("sample");
    table.tHead.replaceChildren(h("tr", {}, d.sample.columns.map((c) => h("th", {}, c))));
    table.tBodies[0].replaceChildren(...d.sample.rows.map((r) => h("tr", {}, r.map((v) => h("td", { class: v === null ? "muted" : "" }, cell(v))))));
    const bd = byId("breakdown");
    if (d.breakdown) {
      // Built on the server, where every text in it is escaped.
      bd.innerHTML = d.breakdown.svg;
    } else bd.replaceChildren(h("p", { class: "muted" }, "Choose a column to see members by value."));
    const ov = byId("overlap");
    if (d.overlap) {
      const o = d.overlap;
      ov.replaceChildren(h("p", { id: "overlap-numbers" }, `${fmt(o.both)} in both · ${fmt(o.only_first)} only in this audience · ${fmt(o.only_second)} only in ${o.with}`));
    } else ov.replaceChildren();
    byId("priority").replaceChildren(...(d.priority || []).map(([n, c]) => h("li", {}, `${n}: ${fmt(c)}`)));
    const tests = byId("tests");
    byId("tests-card").hidden = !d.tests;
    tests.replaceChildren(...(d.tests || []).map((t) => h("li", { class: t.passed ? "pass" : "fail" },
      h("span", { class: "badge " + (t.passed ? "ok" : "failed") }, t.passed ? "PASS" : "FAIL"), " " + t.case,
      t.missing.length ? h("div", { class: "muted" }, "expected in, not selected: " + t.missing.join(", ")) : null,
      t.unexpected.length ? h("div", { class: "muted" }, "expected out, but selected: " + t.unexpected.join(", ")) : null,
      t.error ? h("div", { class: "muted" }, t.error) : null)));
  }
  function showProblems(problems, saving) {
    for (const el of root.querySelectorAll(".errors")) el.replaceChildren();
    for (const el of root.querySelectorAll(".has-error")) el.classList.remove("has-error");
    const left = byId("save-problems");
    if (left) left.replaceChildren();
    const keyed = [...root.querySelectorAll("[data-key]")];
    for (const p of problems) {
      let best = null;
      for (const el of keyed) {
        const k = el.dataset.key;
        if (p.key && (p.key === k || p.key.startsWith(k + ".")) && (!best || k.length > best.dataset.key.length)) best = el;
      }
      const holder = best && (best.querySelector(":scope > .errors") || best.closest("[data-key] > .cond-line, .cond")?.querySelector(".errors"));
      const line = h("p", { class: "field-error", role: "alert" }, p.message);
      if (best) best.classList.add("has-error");
      if (holder) holder.append(line);
      else if (best) best.after(line);
      else if (left) left.append(h("li", { class: "field-error" }, p.text || p.message));
    }
    if (saving && !problems.length && left) left.replaceChildren();
  }

  // -- saving -------------------------------------------------------------------------------
  function save() {
    const name = S.name || byId("audience-name").value.trim();
    const status = byId("save-status");
    if (!/^[A-Za-z_][A-Za-z0-9_-]*$/.test(name)) { status.textContent = "Give the audience a name: letters, digits, _ and -."; return; }
    status.textContent = "Saving…";
    call("PUT", "/api/v1/audiences/" + encodeURIComponent(name), csrf, { name, schema: S.schema, audience: payload(), base: S.base }).then(({ status: code, data: d }) => {
      if (code === 200) {
        S.base = d.base;
        status.textContent = d.changed ? (d.commit ? `Saved ${d.path} · commit ${d.commit.slice(0, 10)}` : `Saved ${d.path}`) : "No change to save.";
        status.className = "ok";
        if (d.warning) status.textContent += " · " + d.warning;
        const pre = byId("audience-yaml");
        if (pre) pre.textContent = d.yaml;
        showProblems([], true);
        if (!S.name) { window.location.assign("/audiences/" + encodeURIComponent(name) + "?saved=1"); }
        return;
      }
      status.className = "error";
      const e = d.error || {};
      status.textContent = e.message || "Not saved.";
      showProblems(e.problems || [], true);
    });
  }

  // -- the side panels ----------------------------------------------------------------
  function setupPanels() {
    const desc = byId("audience-description");
    desc.value = aud.description || "";
    desc.addEventListener("input", () => { if (desc.value) aud.description = desc.value; else delete aud.description; refresh(); });
    const bsel = byId("breakdown-column");
    for (const c of cat.parent.columns) if (!c.personal) bsel.append(h("option", { value: c.name }, c.label));
    bsel.addEventListener("change", () => { state.breakdown = bsel.value; refresh(); });
    const osel = byId("overlap-with");
    for (const n of S.audiences) osel.append(h("option", { value: n }, n));
    osel.addEventListener("change", () => { state.overlap = osel.value; refresh(); });
    const pick = byId("priority-pick");
    for (const n of ["(this audience)", ...S.audiences]) {
      pick.append(h("label", { class: "check" }, h("input", { type: "checkbox", value: n, onchange: (e) => {
        if (e.target.checked) state.priority.push(n); else state.priority = state.priority.filter((x) => x !== n);
        refresh();
      } }), " " + n));
    }
    setupPriorityLists(pick);
    const saveButton = byId("save");
    if (saveButton) saveButton.addEventListener("click", save);
    const nameInput = byId("audience-name");
    if (nameInput) nameInput.addEventListener("input", refresh);
  }

  // A saved priority list: choosing one ticks its audiences in its order; editors save the
  // ticked order as priority_lists/NAME.yml.
  function setupPriorityLists(pick) {
    const lists = S.priority_lists || [];
    const toBox = (n) => (n === S.name ? "(this audience)" : n);
    const saved = byId("priority-saved");
    if (saved) saved.addEventListener("change", () => {
      const found = lists.find((p) => p.name === saved.value);
      state.priority = found ? found.audiences.map(toBox) : [];
      for (const box of pick.querySelectorAll("input[type=checkbox]")) box.checked = state.priority.includes(box.value);
      const input = byId("priority-name");
      if (input && found) input.value = found.name;
      refresh();
    });
    const button = byId("priority-save");
    if (!button) return;
    button.addEventListener("click", () => {
      const status = byId("priority-status");
      const name = byId("priority-name").value.trim();
      if (!/^[A-Za-z_][A-Za-z0-9_-]*$/.test(name)) { status.textContent = "Give the list a name: letters, digits, _ and -."; return; }
      const audiences = state.priority.map((p) => (p === "(this audience)" ? S.name : p));
      if (audiences.some((a) => !a)) { status.textContent = "Save this audience first: a list names saved audiences."; return; }
      if (!audiences.length) { status.textContent = "Tick at least one audience."; return; }
      const known = lists.find((p) => p.name === name);
      status.textContent = "Saving…";
      call("PUT", "/api/v1/priority-lists/" + encodeURIComponent(name), csrf, { audiences, base: known ? known.base : "" }).then(({ status: code, data: d }) => {
        if (code === 200) {
          if (known) known.base = d.base; else lists.push({ name, audiences, base: d.base });
          if (known) known.audiences = audiences;
          status.className = "ok";
          status.textContent = d.changed ? (d.commit ? `Saved ${d.path} · commit ${d.commit.slice(0, 10)}` : `Saved ${d.path}`) : "No change to save.";
          return;
        }
        const e = d.error || {};
        status.className = "error";
        status.textContent = (e.message || "Not saved.") + ((e.problems || []).length ? ": " + e.problems.map((p) => p.message).join("; ") : "");
      });
    });
  }

  setupPanels();
  render();
  refresh();
})();
