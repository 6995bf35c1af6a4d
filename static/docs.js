// The API reference page: renders /openapi.json in the browser.
"use strict";
const el = (tag, attrs = {}, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  for (const k of kids) e.append(k);
  return e;
};
const refName = (s) => s && s.$ref ? s.$ref.split("/").pop() : null;
function typeOf(s) {
  if (!s) return "";
  if (s.$ref) return refName(s);
  if (s.oneOf || s.anyOf) return (s.oneOf || s.anyOf).map(typeOf).join(" | ");
  if (s.type === "array") return typeOf(s.items) + "[]";
  if (Array.isArray(s.type)) return s.type.join(" | ");
  if (s.enum) return s.enum.map((v) => JSON.stringify(v)).join(" | ");
  return s.type || "object";
}
function schemaTable(s) {
  const props = (s && s.properties) || {};
  const req = new Set((s && s.required) || []);
  const t = el("table", {}, el("tr", {}, el("th", {}, "field"), el("th", {}, "type"), el("th", {}, "description")));
  for (const [name, p] of Object.entries(props)) {
    t.append(el("tr", {}, el("td", {}, el("code", {}, name + (req.has(name) ? " *" : ""))), el("td", {}, typeOf(p)), el("td", {}, p.description || "")));
  }
  return t;
}
fetch("/openapi.json").then((r) => r.json()).then((doc) => {
  document.getElementById("title").textContent = doc.info.title + " " + doc.info.version;
  document.getElementById("desc").textContent = doc.info.description || "";
  const ops = document.getElementById("ops");
  for (const [path, item] of Object.entries(doc.paths || {})) {
    for (const [method, op] of Object.entries(item)) {
      const body = el("div", { class: "body" });
      if (op.description) body.append(el("p", {}, op.description));
      if (op.parameters && op.parameters.length) {
        body.append(el("h3", {}, "Parameters"));
        const t = el("table");
        for (const p of op.parameters) t.append(el("tr", {}, el("td", {}, el("code", {}, p.name)), el("td", {}, p.in), el("td", {}, p.description || "")));
        body.append(t);
      }
      const rb = op.requestBody && op.requestBody.content;
      if (rb) {
        for (const [mime, c] of Object.entries(rb)) body.append(el("h3", {}, "Request body " + mime + ": " + typeOf(c.schema)));
      }
      body.append(el("h3", {}, "Responses"));
      const rt = el("table");
      for (const [code, r] of Object.entries(op.responses || {})) {
        const c = r.content && Object.values(r.content)[0];
        rt.append(el("tr", {}, el("td", {}, el("code", {}, code)), el("td", {}, c ? typeOf(c.schema) : ""), el("td", {}, r.description || "")));
      }
      body.append(rt);
      const sum = el("summary", {}, el("span", { class: "method " + method }, method), el("span", { class: "path" }, path), el("span", { class: "summary" }, op.summary || ""), el("span", { class: "tag" }, (op.tags || []).join(", ")));
      ops.append(el("details", { class: "op" }, sum, body));
    }
  }
  const schemas = document.getElementById("schemas");
  for (const [name, s] of Object.entries((doc.components && doc.components.schemas) || {})) {
    const d = el("details", { class: "op", id: "schema-" + name }, el("summary", {}, el("span", { class: "path" }, name), el("span", { class: "summary" }, s.description || "")));
    const b = el("div", { class: "body" });
    b.append(s.properties ? schemaTable(s) : el("pre", {}, JSON.stringify(s, null, 2)));
    d.append(b);
    schemas.append(d);
  }
}).catch((e) => { document.getElementById("error").textContent = "Could not load /openapi.json: " + e; });
