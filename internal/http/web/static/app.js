// WasmWiz web page: a client of the REST API (docs/API.md). No framework, no
// inline code (the page's CSP allows scripts from this origin only), every
// value from the API written with textContent, never as HTML.
"use strict";

(function () {
  const KEY_STORAGE = "wasmwiz.apiKey";
  const PAGE = 20;
  const authOn = document.body.dataset.auth !== "off";
  const $ = (id) => document.getElementById(id);

  // ---- API access -------------------------------------------------------

  let apiKey = "";
  try { apiKey = localStorage.getItem(KEY_STORAGE) || ""; } catch (e) { apiKey = ""; }

  // ApiError is a failed API call: the error shape's code and message.
  class ApiError extends Error {
    constructor(code, message, status, requestId) {
      super(message);
      this.code = code;
      this.status = status;
      this.requestId = requestId || "";
    }
  }

  // api calls method path with an optional body (FormData or an object sent
  // as JSON) and resolves to the decoded answer, or rejects with ApiError.
  async function api(method, path, body, meta) {
    const headers = {};
    if (apiKey) headers["Authorization"] = "Bearer " + apiKey;
    let payload;
    if (body instanceof FormData) {
      payload = body;
    } else if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      payload = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(path, { method, headers, body: payload, credentials: "omit", cache: "no-store" });
    } catch (e) {
      throw new ApiError("NETWORK", "the server could not be reached (" + e.message + ")", 0);
    }
    const rid = res.headers.get("X-Request-Id");
    if (meta) meta.headers = res.headers;
    if (res.status === 204) return null;
    const text = await res.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
    if (!res.ok) {
      if (data && data.error && data.error.code) {
        let msg = data.error.message;
        const retry = res.headers.get("Retry-After");
        if (retry && !/retry/i.test(msg)) msg += " (retry after " + retry + " s)";
        throw new ApiError(data.error.code, msg, res.status, rid);
      }
      throw new ApiError("HTTP " + res.status, res.statusText || "unexpected answer", res.status, rid);
    }
    if (data === null) throw new ApiError("HTTP " + res.status, "the answer is not JSON", res.status, rid);
    return data;
  }

  // ---- small helpers ----------------------------------------------------

  // labelCells gives every cell of a table of cards (class "cards") its
  // column's name, which the narrow layout shows beside the value.
  function labelCells(table) {
    const heads = [...table.tHead.rows[0].cells].map((th) => (th.querySelector(".sr") ? "" : th.textContent.trim()));
    for (const tr of table.tBodies[0].rows) {
      [...tr.cells].forEach((td, i) => { td.dataset.label = heads[i] || ""; });
    }
  }

  function el(tag, props, ...children) {
    const e = document.createElement(tag);
    if (props) {
      for (const [k, v] of Object.entries(props)) {
        if (k === "class") e.className = v;
        else if (k === "dataset") Object.assign(e.dataset, v);
        else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
        else if (v !== undefined && v !== null && v !== false) e.setAttribute(k, v === true ? "" : v);
      }
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      e.append(c instanceof Node ? c : String(c));
    }
    return e;
  }

  function showError(box, err) {
    box.replaceChildren();
    if (err instanceof ApiError) {
      box.append(el("code", null, err.code), err.message);
      if (err.code === "EUNAUTHORIZED" && !apiKey) box.append(" — paste an API key above.");
      if (err.requestId && err.code === "EINTERNAL") box.append(el("span", { class: "hint" }, " (request id " + err.requestId + ")"));
    } else {
      box.append(el("code", null, "ERROR"), err && err.message ? err.message : String(err));
    }
    box.hidden = false;
  }

  function clearError(box) { box.hidden = true; box.replaceChildren(); }

  // loading marks region busy (aria-busy) while fn loads it, for assistive
  // technology and for tests that must not act on a list being replaced.
  // fn gets a function that says whether its load is still the latest one,
  // so that a slow answer never overwrites a newer one.
  async function loading(region, fn) {
    const seq = (region.loadSeq || 0) + 1;
    region.loadSeq = seq;
    region.loadsInFlight = (region.loadsInFlight || 0) + 1;
    region.setAttribute("aria-busy", "true");
    try {
      return await fn(() => region.loadSeq === seq);
    } finally {
      region.loadsInFlight--;
      if (region.loadsInFlight === 0) region.removeAttribute("aria-busy");
    }
  }

  function fmtBytes(n) {
    if (n === null || n === undefined) return "";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0, v = Number(n);
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return (i === 0 ? String(v) : v.toFixed(v >= 10 ? 0 : 1)) + " " + units[i];
  }

  function fmtMS(ms) {
    if (ms === null || ms === undefined) return "";
    if (ms >= 1000) return (ms % 1000 === 0 ? String(ms / 1000) : (ms / 1000).toFixed(2)) + " s";
    return (Math.round(ms * 1000) / 1000) + " ms";
  }

  function fmtTime(s) {
    if (!s) return "";
    const d = new Date(s);
    return isNaN(d) ? s : d.toLocaleString();
  }

  async function busy(button, fn) {
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
    try { return await fn(); } finally { button.disabled = false; button.removeAttribute("aria-busy"); }
  }

  // onSubmit handles a form's submit on the page, without navigating: its
  // errBox is cleared, then fn(errBox) runs.
  function onSubmit(form, errBox, fn) {
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      clearError(errBox);
      fn(errBox);
    });
  }

  // required returns input's trimmed value, or "" once it said in errBox
  // that the field is needed (message) and focused it.
  function required(input, errBox, message) {
    const v = input.value.trim();
    if (!v) { showError(errBox, new Error(message)); input.focus(); }
    return v;
  }

  // act runs fn while button is busy; a failure shows in errBox.
  function act(button, errBox, fn) {
    return busy(button, async () => {
      try { await fn(); } catch (err) { showError(errBox, err); }
    });
  }

  // SHOW_TEXT and SHOW_HEX bound what the page puts on screen: a tier may
  // allow tens of MiB of output, which the Download button gives whole.
  const SHOW_TEXT = 256 << 10;
  const SHOW_HEX = 64 << 10;

  // decodeOutput turns an API output field into its bytes and what to show:
  // UTF-8 as text, anything else as a hex dump, both cut at a screenful.
  function decodeOutput(text, encoding) {
    let bytes;
    if (encoding === "base64") {
      try {
        bytes = Uint8Array.from(atob(text || ""), (c) => c.charCodeAt(0));
      } catch (e) {
        return { bytes: new Uint8Array(0), text: text, note: "(base64 that does not decode)" };
      }
    } else {
      bytes = new TextEncoder().encode(text || "");
    }
    let shown;
    try {
      shown = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    } catch (e) {
      const cut = bytes.length > SHOW_HEX;
      return {
        bytes, text: hexDump(bytes.subarray(0, SHOW_HEX)),
        note: "(binary, " + bytes.length + " bytes, shown as hex" + (cut ? "; the first " + SHOW_HEX + " bytes" : "") + ")",
      };
    }
    if (shown.length > SHOW_TEXT) {
      return { bytes, text: shown.slice(0, SHOW_TEXT), note: "(" + bytes.length + " bytes; the first " + SHOW_TEXT + " characters shown)" };
    }
    return { bytes, text: shown, note: "" };
  }

  // download offers bytes (or a Blob) as a file, without a round trip to
  // the server.
  function download(bytes, name) {
    const blob = bytes instanceof Blob ? bytes : new Blob([bytes], { type: "application/octet-stream" });
    const url = URL.createObjectURL(blob);
    const a = el("a", { href: url, download: name });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
  }

  function hexDump(bytes) {
    const lines = [];
    for (let off = 0; off < bytes.length; off += 16) {
      const row = bytes.subarray(off, off + 16);
      const hex = Array.from(row, (b) => b.toString(16).padStart(2, "0")).join(" ");
      const ascii = Array.from(row, (b) => (b >= 32 && b < 127 ? String.fromCharCode(b) : ".")).join("");
      lines.push(off.toString(16).padStart(8, "0") + "  " + hex.padEnd(48, " ") + " |" + ascii + "|");
    }
    return lines.join("\n");
  }

  // renderPager shows where a page is in its list. A capped total (the
  // server counts at most 10000 matches) reads "of more than 10000"; the
  // pages past it are out of reach (offset at most 10000) until a filter
  // narrows the list.
  function renderPager(box, offset, total, capped, onPage) {
    box.replaceChildren();
    if (total <= PAGE && offset === 0) {
      if (total > 0) box.append(total + (total === 1 ? " item" : " items"));
      return;
    }
    const last = Math.min(offset + PAGE, total);
    const prev = el("button", { type: "button", class: "secondary", onclick: () => onPage(Math.max(0, offset - PAGE)) }, "Previous");
    const next = el("button", { type: "button", class: "secondary", onclick: () => onPage(offset + PAGE) }, "Next");
    prev.disabled = offset === 0;
    next.disabled = last >= total;
    const of = capped ? "more than " + total : String(total);
    box.append(prev, el("span", null, (total === 0 ? 0 : offset + 1) + "–" + last + " of " + of), next);
  }

  // pagedTable shows a list route (path, its items in the answer's member
  // items) page by page in a table: a row made by row for each item, the
  // empty note when there are none, and the pager. filters returns the
  // query's filters (an empty one is left out). A page that emptied (after a
  // delete) steps back to the one before; only the latest load is shown
  // (see loading). A failure goes to errBox, which a load that succeeds
  // clears unless keepError (a box that other actions share).
  function pagedTable({ table, empty, pager, errBox, keepError, path, items, filters, row }) {
    const t = { offset: 0 };
    t.load = () => loading(table, loadNow);
    t.first = () => { t.offset = 0; return t.load(); };
    async function loadNow(current) {
      const q = new URLSearchParams({ limit: PAGE, offset: t.offset });
      for (const [k, v] of Object.entries(filters ? filters() : {})) if (v) q.set(k, v);
      try {
        const data = await api("GET", path + "?" + q);
        if (!current()) return;
        if (data[items].length === 0 && t.offset > 0) {
          t.offset = Math.max(0, t.offset - PAGE);
          return loadNow(current);
        }
        if (!keepError) clearError(errBox);
        table.tBodies[0].replaceChildren(...data[items].map(row));
        labelCells(table);
        empty.hidden = data.total !== 0;
        renderPager(pager, t.offset, data.total, data.total_capped, (o) => { t.offset = o; t.load(); });
      } catch (err) {
        if (current()) showError(errBox, err);
      }
    }
    return t;
  }

  // ---- who am I ---------------------------------------------------------

  let me = null;

  async function loadMe() {
    try { await loadMeNow(); } finally { showAdminTab(me && me.user.role === "admin"); }
  }

  function showAdminTab(on) {
    const tab = $("tab-admin");
    tab.hidden = !on;
    if (!on && tab.getAttribute("aria-selected") === "true") activate($("tab-run"), false);
  }

  async function loadMeNow() {
    const who = $("whoami");
    me = null;
    if (!apiKey) {
      who.textContent = authOn
        ? "Paste an API key to start."
        : "No key: uploaded files run anonymously under the free tier; a key unlocks modules, history, usage and keys.";
      return;
    }
    try {
      me = await api("GET", "/api/v1/me");
      const u = me.user;
      who.textContent = "Signed in as " + u.email + " · tier " + u.tier + (u.role === "admin" ? " · admin" : "");
    } catch (err) {
      who.textContent = "Key not accepted: " + err.code + " " + err.message;
    }
  }

  $("api-key").value = apiKey;
  $("key-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    setKey($("api-key").value.trim());
  });
  $("key-forget").addEventListener("click", () => { $("api-key").value = ""; setKey(""); });

  function setKey(k) {
    apiKey = k;
    try {
      if (k) localStorage.setItem(KEY_STORAGE, k); else localStorage.removeItem(KEY_STORAGE);
    } catch (e) { /* storage refused (private mode): the key lasts for this page */ }
    loadMe().then(refreshActive);
  }

  // ---- tabs -------------------------------------------------------------

  const tabs = Array.from(document.querySelectorAll("[role=tab]"));
  const loaders = {};

  function activate(tab, focus) {
    for (const t of tabs) {
      const on = t === tab;
      t.setAttribute("aria-selected", on ? "true" : "false");
      t.tabIndex = on ? 0 : -1;
      $(t.getAttribute("aria-controls")).hidden = !on;
    }
    if (focus) tab.focus();
    // The open panel is in the URL, so a reload or a bookmark comes back to it.
    history.replaceState(null, "", "#" + tab.id.slice("tab-".length));
    const load = loaders[tab.id];
    if (load) load();
  }

  function refreshActive() {
    const t = tabs.find((x) => x.getAttribute("aria-selected") === "true");
    if (t && loaders[t.id]) loaders[t.id]();
  }

  tabs.forEach((t) => {
    t.addEventListener("click", () => activate(t, false));
    t.addEventListener("keydown", (ev) => {
      const shown = tabs.filter((x) => !x.hidden);
      const i = shown.indexOf(t);
      let j = null;
      if (ev.key === "ArrowRight") j = (i + 1) % shown.length;
      else if (ev.key === "ArrowLeft") j = (i - 1 + shown.length) % shown.length;
      else if (ev.key === "Home") j = 0;
      else if (ev.key === "End") j = shown.length - 1;
      if (j !== null) { ev.preventDefault(); activate(shown[j], true); }
    });
  });

  // ---- Run ----------------------------------------------------------------

  function sourceIsStored() { return $("source-stored").checked; }

  function syncSource() {
    $("file-field").hidden = sourceIsStored();
    $("stored-field").hidden = !sourceIsStored();
    if (sourceIsStored()) loadModuleOptions();
  }
  $("source-file").addEventListener("change", syncSource);
  $("source-stored").addEventListener("change", syncSource);

  async function loadModuleOptions(select) {
    const sel = $("run-module");
    const want = select || sel.value;
    try {
      const data = await api("GET", "/api/v1/modules?limit=1000");
      sel.replaceChildren();
      if (data.modules.length === 0) sel.append(el("option", { value: "" }, "(no modules yet)"));
      for (const m of data.modules) {
        sel.append(el("option", { value: m.id }, m.name + " — " + m.id));
      }
      if (want) sel.value = want;
      clearError($("run-error"));
    } catch (err) {
      showError($("run-error"), err);
    }
  }

  // lines splits a textarea into its non-empty lines.
  function lines(text) {
    return text.split("\n").map((l) => l.replace(/\r$/, "")).filter((l) => l !== "");
  }

  function buildRunForm() {
    const fd = new FormData();
    if (sourceIsStored()) {
      const id = $("run-module-id").value.trim() || $("run-module").value;
      if (!id) throw new Error("choose a stored module (upload one in Modules) or give a module id");
      fd.append("module_id", id);
    } else {
      const f = $("run-wasm").files[0];
      if (!f) throw new Error("choose a .wasm file to run");
      fd.append("wasm", f, f.name);
    }
    const stdin = $("run-stdin").value;
    const stdinFile = $("run-stdin-file").files[0];
    if (stdinFile && stdin !== "") throw new Error("give standard input as text or as a file, not both");
    if (stdinFile) fd.append("stdin", stdinFile, stdinFile.name);
    else if (stdin !== "") fd.append("stdin", stdin);
    const args = lines($("run-args").value);
    if (args.length) fd.append("args", JSON.stringify(args));
    const env = {};
    for (const l of lines($("run-env").value)) {
      const i = l.indexOf("=");
      if (i <= 0) throw new Error("environment line \"" + l + "\" is not KEY=value");
      env[l.slice(0, i)] = l.slice(i + 1);
    }
    if (Object.keys(env).length) fd.append("env", JSON.stringify(env));
    for (const [id, name] of [["run-function", "function"], ["run-params", "params"], ["run-timeout", "timeout"], ["run-memory", "memory"]]) {
      const v = $(id).value.trim();
      if (v !== "") fd.append(name, v);
    }
    if ($("run-async").checked) fd.append("async", "true");
    // The run's files: each file part's filename is its path in the run's
    // directory; the archive is unpacked there.
    for (const f of $("run-files").files) fd.append("file", f, f.name);
    const archive = $("run-archive").files[0];
    if (archive) fd.append("archive", archive, archive.name);
    const mount = $("run-mount").value.trim();
    if (mount !== "") fd.append("mount", mount);
    const outs = lines($("run-outputs").value).map((l) => l.trim()).filter((l) => l !== "");
    if (outs.length) fd.append("outputs", JSON.stringify(outs));
    return fd;
  }

  // submitRun sends an execute form: a synchronous run shows its result; a
  // background one (202) opens its record in History, followed live.
  async function submitRun(fd) {
    const errBox = $("run-error");
    $("run-state").textContent = fd.get("async") ? "Queueing…" : "Running…";
    const meta = {};
    try {
      const r = await api("POST", "/api/v1/execute", fd, meta);
      if (r.state === "queued") {
        $("run-result").hidden = true;
        $("run-state").textContent = "Queued in the background: " + r.id + ".";
        activate($("tab-history"), false);
        showRun(r.id);
        return;
      }
      showResult(r, meta.headers);
      $("run-state").textContent = "Finished: " + r.status + ".";
    } catch (err) {
      $("run-result").hidden = true;
      $("run-state").textContent = "Failed.";
      showError(errBox, err);
    }
  }

  // Samples run in one click: the module comes from the page's own static
  // files, with the stdin, args and limits its button names.
  for (const b of document.querySelectorAll("#samples button[data-sample]")) {
    b.addEventListener("click", () => act(b, $("run-error"), async () => {
      clearError($("run-error"));
      const res = await fetch("/static/sample-" + b.dataset.sample + ".wasm", { cache: "force-cache" });
      if (!res.ok) throw new Error("sample " + b.dataset.sample + " is missing");
      const fd = new FormData();
      fd.append("wasm", await res.blob(), b.dataset.sample + ".wasm");
      if (b.dataset.stdin) fd.append("stdin", b.dataset.stdin);
      if (b.dataset.args) fd.append("args", JSON.stringify(b.dataset.args.split(" ")));
      if (b.dataset.timeout) fd.append("timeout", b.dataset.timeout);
      if (b.dataset.memory) fd.append("memory", b.dataset.memory);
      if (b.dataset.async) fd.append("async", "true");
      await submitRun(fd);
    }));
  }

  onSubmit($("run-form"), $("run-error"), (errBox) => {
    let fd;
    try { fd = buildRunForm(); } catch (err) { showError(errBox, err); return; }
    busy($("run-submit"), () => submitRun(fd));
  });

  $("run-stdin-clear").addEventListener("click", () => { $("run-stdin-file").value = ""; });

  // Ctrl+Enter (Cmd+Enter) anywhere in the form runs it.
  $("run-form").addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) {
      ev.preventDefault();
      if (!$("run-submit").disabled) $("run-form").requestSubmit();
    }
  });

  // outputs holds the shown result's stdout and stderr bytes, for Download.
  const outputs = { stdout: new Uint8Array(0), stderr: new Uint8Array(0) };
  for (const name of ["stdout", "stderr"]) {
    $("result-" + name + "-download").addEventListener("click", () => {
      const id = $("result-id").textContent || "run";
      download(outputs[name], id + "." + name);
    });
  }

  // filesView lays out the files a run sent back in box (X-files-box, its
  // parts named X-files, X-files-note and X-files-zip): each file's path,
  // size and digest, and a Download button for its content, or omitted (why
  // it has none); "Download all" zips those with content, named after
  // runId(). It returns the function that shows a run's files (an API
  // "files" array: absent hides the box, empty says that nothing matched).
  function filesView(box, omitted, runId) {
    const prefix = box.id.replace(/-box$/, "");
    let shown = [];
    const note = el("span", { id: prefix + "-note", class: "hint" });
    const zip = el("button", { type: "button", id: prefix + "-zip", class: "secondary small" }, "Download all (zip)");
    zip.addEventListener("click", () => {
      const files = shown.filter((f) => !f.omitted).map((f) => ({ name: f.path, bytes: f.bytes }));
      download(zipStore(files), (runId() || "run") + "-files.zip");
    });
    const table = el("table", { id: prefix, class: "files" },
      el("thead", null, el("tr", null, el("th", null, "Path"), el("th", { class: "num" }, "Size"), el("th", null, "sha256"),
        el("th", null, el("span", { class: "sr" }, "Download")))),
      el("tbody"));
    box.append(el("div", { class: "outhead" }, el("h4", null, "Files ", note), zip), table);
    return (files) => {
      shown = (files || []).map((f) => ({
        path: f.path, size: f.size, sha256: f.sha256, omitted: !!f.omitted,
        bytes: f.omitted ? new Uint8Array(0) : decodeOutput(f.content_base64 || "", "base64").bytes,
      }));
      table.tBodies[0].replaceChildren(...shown.map((f) => el("tr", null,
        el("td", { class: "mono" }, f.path), el("td", { class: "num" }, fmtBytes(f.size)),
        el("td", { class: "mono", title: f.sha256 }, f.sha256.slice(0, 12) + "…"),
        f.omitted
          ? el("td", { class: "hint" }, omitted)
          : el("td", null, el("button", { type: "button", class: "secondary small", onclick: () => download(f.bytes, f.path.split("/").pop()) }, "Download")))));
      note.textContent = shown.length === 0 ? "(no file matched the outputs)" : "";
      zip.hidden = !shown.some((f) => !f.omitted);
      box.hidden = files === undefined || files === null;
    };
  }

  const showFiles = filesView($("result-files-box"), "not sent: over your tier's files out", () => $("result-id").textContent);

  // zipStore builds a zip of files ({name, bytes}) without compression,
  // for "Download all": the files are already here, no second run.
  function zipStore(files) {
    const enc = new TextEncoder();
    const parts = [], central = [];
    let offset = 0;
    for (const f of files) {
      const name = enc.encode(f.name), crc = crc32(f.bytes), n = f.bytes.length;
      const h = new DataView(new ArrayBuffer(30));
      h.setUint32(0, 0x04034b50, true); h.setUint16(4, 20, true); h.setUint16(6, 0x0800, true);
      h.setUint32(14, crc, true); h.setUint32(18, n, true); h.setUint32(22, n, true); h.setUint16(26, name.length, true);
      parts.push(new Uint8Array(h.buffer), name, f.bytes);
      const c = new DataView(new ArrayBuffer(46));
      c.setUint32(0, 0x02014b50, true); c.setUint16(4, 20, true); c.setUint16(6, 20, true); c.setUint16(8, 0x0800, true);
      c.setUint32(16, crc, true); c.setUint32(20, n, true); c.setUint32(24, n, true); c.setUint16(28, name.length, true);
      c.setUint32(42, offset, true);
      central.push(new Uint8Array(c.buffer), name);
      offset += 30 + name.length + n;
    }
    const size = central.reduce((sum, p) => sum + p.length, 0);
    const e = new DataView(new ArrayBuffer(22));
    e.setUint32(0, 0x06054b50, true); e.setUint16(8, files.length, true); e.setUint16(10, files.length, true);
    e.setUint32(12, size, true); e.setUint32(16, offset, true);
    return new Blob([...parts, ...central, new Uint8Array(e.buffer)], { type: "application/zip" });
  }

  function crc32(bytes) {
    let crc = 0xFFFFFFFF;
    for (let i = 0; i < bytes.length; i++) {
      crc ^= bytes[i];
      for (let k = 0; k < 8; k++) crc = (crc >>> 1) ^ (0xEDB88320 & -(crc & 1));
    }
    return (crc ^ 0xFFFFFFFF) >>> 0;
  }

  function showResult(r, headers) {
    const status = $("result-status");
    status.textContent = r.status;
    status.className = "badge " + r.status;
    $("result-exit").textContent = r.exit_code === null ? "—" : String(r.exit_code);
    $("result-duration").textContent = fmtMS(r.duration_ms);
    $("result-memory").textContent = fmtBytes(r.memory_peak_bytes);
    $("result-cached").textContent = r.compile_cached ? "yes" : "no";
    $("result-entry").textContent = (r.module && r.module.entry) || "";
    $("result-id").textContent = r.id || "";
    $("result-sha").textContent = (r.module && r.module.sha256) || "";
    const left = headers && headers.get("X-RateLimit-Remaining");
    const limit = headers && headers.get("X-RateLimit-Limit");
    const reset = headers && headers.get("X-RateLimit-Reset");
    $("result-quota").textContent = left !== null && left !== undefined && limit
      ? left + " of " + limit + (reset ? " (full again in " + reset + " s)" : "")
      : "—";
    const values = (r.results || []).map((v) => v.type + " " + JSON.stringify(v.value));
    $("result-values").textContent = values.join("\n");
    $("result-values-box").hidden = values.length === 0;
    $("result-trap").textContent = r.trap || "";
    $("result-trap-box").hidden = !r.trap;
    for (const name of ["stdout", "stderr"]) {
      const out = decodeOutput(r[name], r[name + "_encoding"]);
      outputs[name] = out.bytes;
      $("result-" + name + "-download").hidden = out.bytes.length === 0;
      $("result-" + name).textContent = out.text;
      let note = out.note;
      if (r[name + "_truncated"]) note = (note ? note + " " : "") + "(truncated at the limit)";
      if (!out.text && !note) note = "(empty)";
      $("result-" + name + "-note").textContent = note;
    }
    showFiles(r.files);
    $("run-result").hidden = false;
  }

  // ---- Modules --------------------------------------------------------------

  const moduleList = pagedTable({
    table: $("modules-table"), empty: $("modules-empty"), pager: $("modules-pager"), errBox: $("modules-error"),
    path: "/api/v1/modules", items: "modules",
    row: (m) => {
      const entry = m.inspection ? (m.inspection.entry || "(none)") + (m.inspection.wasi ? " · WASI" : "") : "";
      return el("tr", { dataset: { id: m.id } },
        el("td", null, m.name, m.description ? el("div", { class: "hint" }, m.description) : null, m.public ? el("div", { class: "hint" }, "public") : null),
        el("td", { class: "mono" }, m.id),
        el("td", { class: "num" }, fmtBytes(m.size_bytes)),
        el("td", null, entry),
        el("td", { class: "num" }, String(m.run_count)),
        el("td", null, fmtTime(m.created_at)),
        el("td", null, el("div", { class: "rowactions" },
          el("button", { type: "button", class: "secondary", "aria-label": "Run " + m.name, onclick: () => runStored(m.id) }, "Run"),
          el("button", { type: "button", class: "danger", "aria-label": "Delete " + m.name, onclick: (ev) => deleteModule(m, ev.currentTarget) }, "Delete"))));
    },
  });
  const loadModules = moduleList.load;
  loaders["tab-modules"] = loadModules;
  $("modules-refresh").addEventListener("click", loadModules);

  function runStored(id) {
    $("run-module-id").value = "";
    $("source-stored").checked = true;
    $("file-field").hidden = true;
    $("stored-field").hidden = false;
    activate($("tab-run"), false);
    loadModuleOptions(id).then(() => $("run-module").focus());
  }

  async function deleteModule(m, button) {
    if (!window.confirm("Delete module " + m.name + " (" + m.id + ")? Its run records stay.")) return;
    await act(button, $("modules-error"), async () => {
      await api("DELETE", "/api/v1/modules/" + encodeURIComponent(m.id));
      await loadModules();
    });
  }

  onSubmit($("upload-form"), $("modules-error"), (errBox) => {
    const f = $("upload-wasm").files[0];
    if (!f) { showError(errBox, new Error("choose a .wasm file to upload")); return; }
    const fd = new FormData();
    fd.append("wasm", f, f.name);
    const name = $("upload-name").value.trim();
    if (name) fd.append("name", name);
    fd.append("description", $("upload-description").value.trim());
    fd.append("public", $("upload-public").checked ? "true" : "false");
    $("upload-result").hidden = true;
    act($("upload-submit"), errBox, async () => {
      showInspection(await api("POST", "/api/v1/modules", fd));
      $("upload-form").reset();
      await moduleList.first();
    });
  });

  function sig(s) {
    if (!s) return "";
    return " (" + (s.params || []).join(", ") + ") -> (" + (s.results || []).join(", ") + ")";
  }

  function showInspection(m) {
    const box = $("upload-result");
    const ins = m.inspection || {};
    const exports = (ins.exports || []).map((e) => el("li", null, el("code", null, e.name), " " + e.kind + sig(e.signature)));
    const imports = (ins.imports || []).map((i) => el("li", null, el("code", null, i.module + "." + i.name), " " + i.kind + sig(i.signature)));
    // Long lists are cut by the server, which counts what it left out.
    if (ins.exports_omitted) exports.push(el("li", null, "… and " + ins.exports_omitted + " more"));
    if (ins.imports_omitted) imports.push(el("li", null, "… and " + ins.imports_omitted + " more"));
    let mem = "none";
    if (ins.memory) {
      mem = ins.memory.min_pages + " pages minimum (" + fmtBytes(ins.memory.min_pages * 65536) + ")";
      if (ins.memory.max_pages !== undefined) mem += ", " + ins.memory.max_pages + " maximum";
    }
    box.replaceChildren(
      el("h3", null, "Stored ", el("code", null, m.name)),
      el("dl", { class: "facts" },
        el("div", null, el("dt", null, "Id"), el("dd", { class: "mono", id: "upload-id" }, m.id)),
        el("div", null, el("dt", null, "Size"), el("dd", null, fmtBytes(m.size_bytes))),
        el("div", null, el("dt", null, "WASI"), el("dd", null, ins.wasi ? "yes" : "no")),
        el("div", null, el("dt", null, "Entry"), el("dd", null, ins.entry || "(none: call a function by name)")),
        el("div", null, el("dt", null, "Memory"), el("dd", null, mem)),
        el("div", { class: "full" }, el("dt", null, "sha256"), el("dd", { class: "mono" }, m.sha256))),
      el("div", { class: "inspection" },
        el("h4", null, "Exports"), exports.length ? el("ul", null, ...exports) : el("p", { class: "empty" }, "none"),
        el("h4", null, "Imports"), imports.length ? el("ul", null, ...imports) : el("p", { class: "empty" }, "none")),
      el("div", { class: "actions" }, el("button", { type: "button", onclick: () => runStored(m.id) }, "Run it")));
    box.hidden = false;
  }

  // ---- History ------------------------------------------------------------

  const runList = pagedTable({
    table: $("history-table"), empty: $("history-empty"), pager: $("history-pager"), errBox: $("history-error"),
    path: "/api/v1/runs", items: "runs", filters: () => ({ status: $("history-status").value }),
    row: (r) => {
      const st = r.status || (r.state === "done" ? "refused" : "");
      return el("tr", { dataset: { id: r.id } },
        el("td", null, fmtTime(r.created_at)),
        el("td", { class: "mono" }, r.id),
        el("td", null, el("span", { class: "badge state-" + r.state }, r.state)),
        el("td", null, st ? el("span", { class: "badge " + st }, st) : ""),
        el("td", { class: "num" }, r.exit_code === null ? "—" : String(r.exit_code)),
        el("td", { class: "num" }, fmtMS(r.duration_ms)),
        el("td", { class: "num" }, fmtBytes(r.memory_peak_bytes)),
        el("td", { class: "num" }, fmtBytes(r.stdin_bytes) + " / " + fmtBytes(r.output_bytes)),
        el("td", { class: "mono", title: r.module_sha256 }, r.module_id || (r.module_sha256 || "").slice(0, 12)),
        el("td", null, r.error_code || ""),
        el("td", null, el("button", { type: "button", class: "secondary small", "aria-label": "Open run " + r.id,
          onclick: () => showRun(r.id) }, "Open")));
    },
  });
  const loadHistory = runList.load;
  loaders["tab-history"] = loadHistory;

  // ---- One run: its record, followed live while it runs --------------------

  let detailRun = null;   // the record shown
  let follower = null;    // AbortController of the event stream being read
  const FINAL = ["done", "cancelled", "failed"];

  function setBadge(node, text, cls) {
    node.textContent = text || "";
    node.className = "badge " + (cls || "");
    node.hidden = !text;
  }

  function showOutput(name, text, encoding, truncated) {
    const out = decodeOutput(text, encoding);
    $("detail-" + name).textContent = out.text;
    let note = out.note;
    if (truncated) note = (note ? note + " " : "") + "(cut: by the run's limit or the stored-output cap)";
    $("detail-" + name + "-note").textContent = note || (out.text ? "" : "(empty)");
  }

  // A record's files within the tier's stored output, the rest listed.
  const showRunFiles = filesView($("detail-files-box"), "not kept: over your tier's stored output or files out", () => detailRun && detailRun.id);

  function renderRun(r) {
    detailRun = r;
    $("detail-id").textContent = r.id;
    setBadge($("detail-state"), r.state, "state-" + r.state);
    setBadge($("detail-status"), r.status, r.status);
    const lim = r.limits || {};
    const facts = [
      ["Created", fmtTime(r.created_at)], ["Started", r.started_at ? fmtTime(r.started_at) : "—"],
      ["Finished", r.finished_at ? fmtTime(r.finished_at) : "—"], ["Background", r.async ? "yes" : "no"],
      ["Exit code", r.exit_code === null ? "—" : String(r.exit_code)], ["Duration", fmtMS(r.duration_ms)], ["Compile", fmtMS(r.compile_ms || 0)],
      ["CPU", fmtMS(r.cpu_ms || 0)], ["Memory peak", fmtBytes(r.memory_peak_bytes)],
      ["Module", r.module_id || (r.module_sha256 || "").slice(0, 16)], ["Name", r.name || ""],
      ["Arguments", (r.args || []).join(" ") || "—"], ["Env names", (r.env_names || []).join(", ") || "—"],
      ["Function", r.function ? r.function + "(" + (r.params || []).join(", ") + ")" : "—"],
      ["Stdin", fmtBytes(r.stdin_bytes) + (r.stdin_sha256 ? " sha256 " + r.stdin_sha256.slice(0, 16) + "…" : "")],
      ["Time limit", lim.timeout_ms ? fmtMS(lim.timeout_ms) : "—"], ["Memory limit", lim.max_memory_bytes ? fmtBytes(lim.max_memory_bytes) : "—"],
      ["Output cap", lim.max_output_bytes ? fmtBytes(lim.max_output_bytes) : "—"], ["Error", r.error_code || "—"],
      ["Callback", r.callback_url || "—"],
    ];
    const dl = $("detail-facts");
    dl.replaceChildren(...facts.map(([k, v]) => el("div", null, el("dt", null, k), el("dd", null, v))));
    $("detail-message").textContent = r.message || "";
    $("detail-message-box").hidden = !r.message;
    $("detail-trap").textContent = r.trap || "";
    $("detail-trap-box").hidden = !r.trap;
    if (r.stdout !== undefined) showOutput("stdout", r.stdout, r.stdout_encoding, r.stdout_truncated);
    if (r.stderr !== undefined) showOutput("stderr", r.stderr, r.stderr_encoding, r.stderr_truncated);
    showRunFiles(r.files);
    const hooks = r.webhook_deliveries || [];
    $("detail-hooks").tBodies[0].replaceChildren(...hooks.map((d) => el("tr", null,
      el("td", { class: "num" }, String(d.attempt)), el("td", null, fmtTime(d.at)),
      el("td", null, d.status_code ? String(d.status_code) : "no answer"), el("td", null, d.error || ""),
      el("td", { class: "num" }, fmtMS(d.duration_ms)))));
    $("detail-hooks-box").hidden = hooks.length === 0;
    $("detail-cancel").hidden = FINAL.includes(r.state);
    $("run-detail").hidden = false;
  }

  async function showRun(id) {
    if (follower) follower.abort();
    follower = null;
    const errBox = $("detail-error");
    clearError(errBox);
    $("detail-live").textContent = "";
    try {
      const r = await api("GET", "/api/v1/runs/" + encodeURIComponent(id));
      renderRun(r);
      $("run-detail").scrollIntoView({ block: "nearest" });
      if (!FINAL.includes(r.state)) followRun(r);
    } catch (err) {
      $("run-detail").hidden = false;
      showError(errBox, err);
    }
  }

  // followRun reads the run's Server-Sent Events (fetch, so that the key
  // goes in a header) and shows output as it comes.
  async function followRun(r) {
    const ctl = new AbortController();
    follower = ctl;
    const text = { stdout: "", stderr: "" };
    const seen = { stdout: 0, stderr: 0 };
    // What the record already showed counts as received.
    for (const name of ["stdout", "stderr"]) {
      const out = decodeOutput(r[name], r[name + "_encoding"]);
      text[name] = new TextDecoder().decode(out.bytes);
      seen[name] = out.bytes.length;
    }
    const headers = { Accept: "text/event-stream" };
    if (apiKey) headers["Authorization"] = "Bearer " + apiKey;
    headers["Last-Event-ID"] = "o" + seen.stdout + ".e" + seen.stderr;
    $("detail-live").textContent = "Following live…";
    try {
      const res = await fetch("/api/v1/runs/" + encodeURIComponent(r.id) + "/events",
        { headers, signal: ctl.signal, credentials: "omit", cache: "no-store" });
      if (!res.ok || !res.body) throw new Error("the event stream answered " + res.status);
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let i;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          let kind = "", data = "";
          for (const line of block.split("\n")) {
            if (line.startsWith("event: ")) kind = line.slice(7);
            else if (line.startsWith("data: ")) data += line.slice(6);
          }
          if (!kind || !data) continue;
          const ev = JSON.parse(data);
          if (kind === "stdout" || kind === "stderr") {
            const bytes = decodeOutput(ev.data, ev.encoding).bytes;
            text[kind] += new TextDecoder().decode(bytes);
            seen[kind] = ev.offset + bytes.length;
            $("detail-" + kind).textContent = text[kind];
            $("detail-" + kind + "-note").textContent = "";
          } else if (kind === "state") {
            setBadge($("detail-state"), ev.state, "state-" + ev.state);
          } else if (kind === "result") {
            renderRun(ev);
            $("detail-live").textContent = "Finished.";
            follower = null;
            return;
          }
        }
      }
      $("detail-live").textContent = "";
    } catch (err) {
      if (ctl.signal.aborted) return;
      $("detail-live").textContent = "";
      showError($("detail-error"), err);
    }
  }

  $("detail-close").addEventListener("click", () => {
    if (follower) follower.abort();
    follower = null;
    $("run-detail").hidden = true;
  });

  $("detail-cancel").addEventListener("click", () => act($("detail-cancel"), $("detail-error"), async () => {
    const r = await api("POST", "/api/v1/runs/" + encodeURIComponent(detailRun.id) + "/cancel");
    // A run still stopping keeps what the event stream showed: its record
    // holds only the output its heartbeats stored so far. The result event
    // brings the final record.
    if (FINAL.includes(r.state)) renderRun(r);
    else setBadge($("detail-state"), r.state, "state-" + r.state);
    $("detail-live").textContent = r.state === "cancelled" ? "Cancelled." : "Stopping…";
  }));

  // Re-run fills the Run form with what the record keeps: the stored module
  // (an uploaded file is not kept: choose it again), arguments, function,
  // params and limits, and the env names. Stdin and env values are never
  // kept, so they are asked for again.
  $("detail-rerun").addEventListener("click", () => {
    const r = detailRun;
    if (!r) return;
    if (r.module_id) {
      $("source-stored").checked = true;
      syncSource();
      $("run-module-id").value = r.module_id;
    } else {
      $("source-file").checked = true;
      syncSource();
    }
    $("run-args").value = (r.args || []).join("\n");
    $("run-env").value = (r.env_names || []).map((n) => n + "=").join("\n");
    $("run-function").value = r.function || "";
    $("run-params").value = (r.params || []).join(",");
    const lim = r.limits || {};
    $("run-timeout").value = lim.timeout_ms ? lim.timeout_ms + "ms" : "";
    $("run-memory").value = "";
    $("run-stdin").value = "";
    $("run-async").checked = !!r.async;
    $("run-advanced").open = !!(r.function || lim.timeout_ms);
    activate($("tab-run"), true);
    const missing = [];
    if (!r.module_id) missing.push("the module file");
    if (r.stdin_bytes > 0) missing.push("stdin (" + fmtBytes(r.stdin_bytes) + ")");
    if ((r.env_names || []).length) missing.push("the env values");
    $("run-state").textContent = missing.length
      ? "Re-run of " + r.id + ": give " + missing.join(", ") + " again (not kept), then Run."
      : "Re-run of " + r.id + ": press Run.";
  });
  $("history-refresh").addEventListener("click", loadHistory);
  $("history-status").addEventListener("change", runList.first);

  // ---- Usage ----------------------------------------------------------------

  function loadUsage() { return loading($("usage-body"), loadUsageNow); }

  async function loadUsageNow(current) {
    const errBox = $("usage-error");
    try {
      const u = await api("GET", "/api/v1/usage");
      if (!current()) return;
      clearError(errBox);
      $("usage-tier").textContent = u.tier;
      meter("usage-day", u.runs_today, u.runs_per_day);
      meter("usage-minute", u.runs_this_minute, u.runs_per_minute);
      meter("usage-modules", u.stored_modules, u.max_stored_modules);
      meter("usage-module-bytes", u.stored_module_bytes, u.max_stored_module_bytes, fmtBytes);
      meter("usage-run-bytes", u.stored_run_bytes, u.max_stored_run_bytes, fmtBytes);
      const dl = $("usage-limits");
      dl.replaceChildren();
      // Every limit of the tier, as the server describes it (/api/v1/me),
      // so that a new tier field shows without a change here.
      for (const l of (me && me.limits) || []) {
        const label = l.help.charAt(0).toUpperCase() + l.help.slice(1);
        dl.append(el("div", null, el("dt", null, label), el("dd", null, l.text)));
      }
      $("usage-body").hidden = false;
      try {
        const d = await api("GET", "/api/v1/usage/daily?days=30");
        if (!current()) return;
        drawRunsChart($("usage-chart-runs"), d.days);
        drawDurationChart($("usage-chart-durations"), d.days);
      } catch (err) {
        if (current()) showError(errBox, err);
      }
    } catch (err) {
      if (!current()) return;
      $("usage-body").hidden = true;
      showError(errBox, err);
    }
  }
  loaders["tab-usage"] = loadUsage;

  // ---- Charts, drawn as SVG by the page itself ------------------------------

  const SVGNS = "http://www.w3.org/2000/svg";
  const OUTCOMES = ["ok", "exit", "trap", "timeout", "memory_limit", "output_limit"];

  function svg(tag, attrs, ...children) {
    const n = document.createElementNS(SVGNS, tag);
    for (const [k, v] of Object.entries(attrs || {})) n.setAttribute(k, String(v));
    for (const c of children) n.append(c);
    return n;
  }

  // chartFrame draws the axes of a chart of days and returns its geometry.
  function chartFrame(box, days, maxY, label) {
    const W = 640, H = 220, L = 48, R = 8, T = 10, B = 28;
    const root = svg("svg", { viewBox: "0 0 " + W + " " + H, role: "img", "aria-label": label, class: "chartsvg" });
    const x = (i) => L + (i + 0.5) * (W - L - R) / days.length;
    const y = (v) => T + (H - T - B) * (1 - v / (maxY || 1));
    root.append(svg("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, class: "axis" }));
    root.append(svg("line", { x1: L, y1: T, x2: L, y2: H - B, class: "axis" }));
    for (const f of [0, 0.5, 1]) {
      const v = maxY * f;
      root.append(svg("text", { x: L - 4, y: y(v) + 4, "text-anchor": "end", class: "tick" }, fmtTick(v)));
    }
    days.forEach((d, i) => {
      if (i % 5 === 0 || i === days.length - 1) {
        root.append(svg("text", { x: x(i), y: H - 8, "text-anchor": "middle", class: "tick" }, d.day.slice(5)));
      }
    });
    box.replaceChildren(root);
    return { root, x, y, bar: (W - L - R) / days.length * 0.7, base: H - B };
  }

  function fmtTick(v) { return v >= 100 ? String(Math.round(v)) : String(Math.round(v * 10) / 10); }

  function drawRunsChart(box, days) {
    const totals = days.map((d) => OUTCOMES.reduce((n, o) => n + ((d.by_status || {})[o] || 0), 0));
    const max = Math.max(1, ...totals);
    const g = chartFrame(box, days, max, "Runs per day by outcome");
    days.forEach((d, i) => {
      let acc = 0;
      for (const o of OUTCOMES) {
        const n = (d.by_status || {})[o] || 0;
        if (!n) continue;
        const top = g.y(acc + n), bottom = g.y(acc);
        g.root.append(svg("rect", { x: g.x(i) - g.bar / 2, y: top, width: g.bar, height: Math.max(bottom - top, 0.5),
          class: "seg " + o }, svg("title", null, d.day + ": " + n + " " + o)));
        acc += n;
      }
    });
    box.append(legend(OUTCOMES.map((o) => [o, "seg " + o])));
  }

  function drawDurationChart(box, days) {
    const series = [["p50", "p50_duration_ms"], ["p95", "p95_duration_ms"], ["p99", "p99_duration_ms"]];
    const max = Math.max(1, ...days.map((d) => d.p99_duration_ms || 0));
    const g = chartFrame(box, days, max, "Duration percentiles per day, in milliseconds");
    for (const [name, key] of series) {
      const pts = days.map((d, i) => [i, d[key] || 0]).filter(([i]) => OUTCOMES.some((o) => (days[i].by_status || {})[o]));
      if (pts.length === 0) continue;
      g.root.append(svg("polyline", { points: pts.map(([i, v]) => g.x(i) + "," + g.y(v)).join(" "), class: "line " + name }));
      for (const [i, v] of pts) {
        g.root.append(svg("circle", { cx: g.x(i), cy: g.y(v), r: 2.5, class: "dot " + name },
          svg("title", null, days[i].day + " " + name + ": " + fmtMS(v))));
      }
    }
    box.append(legend(series.map(([n]) => [n, "line " + n])));
  }

  function legend(items) {
    return el("p", { class: "legend" }, ...items.map(([name, cls]) =>
      el("span", null, (() => { const s = svg("svg", { width: 12, height: 12, "aria-hidden": "true" }, svg("rect", { width: 12, height: 12, class: cls })); return s; })(), " " + name)));
  }
  $("usage-refresh").addEventListener("click", loadUsage);

  function meter(id, used, quota, fmt = String) {
    const p = $(id);
    p.max = Math.max(1, quota);
    p.value = Math.min(used, p.max);
    $(id + "-text").textContent = fmt(used) + " of " + fmt(quota) + " (" + fmt(Math.max(0, quota - used)) + " left)";
  }

  // ---- Keys -----------------------------------------------------------------

  const keyList = pagedTable({
    table: $("keys-table"), empty: $("keys-empty"), pager: $("keys-pager"), errBox: $("keys-error"),
    path: "/api/v1/keys", items: "keys", filters: () => ({ include_revoked: $("keys-revoked").checked ? "true" : "" }),
    row: (k) => {
      const current = apiKey && k.prefix && apiKey.startsWith(k.prefix);
      let state = "active";
      if (k.revoked_at) state = "revoked " + fmtTime(k.revoked_at);
      else if (k.expires_at && new Date(k.expires_at) <= new Date()) state = "expired";
      const actions = el("div", { class: "rowactions" });
      if (!k.revoked_at) {
        actions.append(el("button", { type: "button", class: "danger", "aria-label": "Revoke key " + k.name, onclick: (ev) => revokeKey(k, current, ev.currentTarget) }, "Revoke"));
      }
      return el("tr", { dataset: { id: String(k.id) } },
        el("td", null, k.name, current ? el("div", { class: "hint" }, "used by this page") : null),
        el("td", { class: "mono" }, k.prefix + "…"),
        el("td", null, fmtTime(k.created_at)),
        el("td", null, fmtTime(k.last_used_at) || "never"),
        el("td", null, fmtTime(k.expires_at) || "never"),
        el("td", null, state),
        el("td", null, actions));
    },
  });
  const loadKeys = keyList.load;
  loaders["tab-keys"] = loadKeys;
  $("keys-refresh").addEventListener("click", loadKeys);
  $("keys-revoked").addEventListener("change", keyList.first);

  async function revokeKey(k, current, button) {
    let q = "Revoke key " + k.name + " (" + k.prefix + "…)? Programs using it stop working.";
    if (current) q += " This page uses it: you will need another key.";
    if (!window.confirm(q)) return;
    await act(button, $("keys-error"), async () => {
      await api("DELETE", "/api/v1/keys/" + encodeURIComponent(k.id));
      if (current) setKey("");
      await loadKeys();
    });
  }

  onSubmit($("key-create-form"), $("keys-error"), (errBox) => {
    const name = required($("key-name"), errBox, "give the key a name");
    if (!name) return;
    const body = { name };
    const exp = $("key-expires").value;
    if (exp) body.expires_at = exp + "T00:00:00Z";
    act($("key-create"), errBox, async () => {
      const res = await api("POST", "/api/v1/keys", body);
      $("key-secret").textContent = res.secret;
      $("key-secret-box").hidden = false;
      $("key-create-form").reset();
      $("key-copy").focus();
      await keyList.first();
    });
  });

  $("key-copy").addEventListener("click", async () => {
    const secret = $("key-secret").textContent;
    try {
      await navigator.clipboard.writeText(secret);
      $("key-copy").textContent = "Copied";
    } catch (e) {
      // No clipboard outside secure contexts: select it for Ctrl+C.
      const range = document.createRange();
      range.selectNodeContents($("key-secret"));
      const sel = window.getSelection();
      sel.removeAllRanges();
      sel.addRange(range);
      $("key-copy").textContent = "Selected: press Ctrl+C";
    }
  });
  $("key-use").addEventListener("click", () => {
    const secret = $("key-secret").textContent;
    $("api-key").value = secret;
    setKey(secret);
  });
  $("key-dismiss").addEventListener("click", () => {
    // Shown once: forget it when dismissed.
    $("key-secret").textContent = "";
    $("key-secret-box").hidden = true;
    $("key-copy").textContent = "Copy";
  });

  // ---- Admin (admins only; the API refuses others with EFORBIDDEN) ----------

  function loadAdmin() { return loading($("admin-stats"), loadAdminNow); }

  async function loadAdminNow(current) {
    const errBox = $("admin-error");
    try {
      const st = await api("GET", "/api/v1/admin/stats");
      if (!current()) return;
      clearError(errBox);
      const dl = $("admin-stats");
      dl.replaceChildren();
      const facts = [
        ["Users", st.users], ["Active keys", st.active_keys], ["Runs today", st.runs_today],
        ["Active users today", st.active_users_today], ["Success rate", (st.success_rate * 100).toFixed(1) + " %"],
        ["Mean duration", fmtMS(st.mean_duration_ms)], ["p95 duration", fmtMS(st.p95_duration_ms)],
      ];
      for (const [k, v] of facts) dl.append(el("div", null, el("dt", null, k), el("dd", { dataset: { stat: k } }, String(v))));
      // Newest first, and only the days that had runs.
      const days = (st.runs_per_day || []).filter((d) => d.runs > 0).reverse();
      $("admin-days-empty").hidden = days.length > 0;
      const most = Math.max(1, ...days.map((d) => d.runs));
      const dbody = $("admin-days").tBodies[0];
      dbody.replaceChildren();
      for (const d of days) {
        const bar = el("div", { class: "bar" });
        bar.style.width = (100 * d.runs / most) + "%";
        dbody.append(el("tr", null, el("td", null, d.day), el("td", { class: "num" }, String(d.runs)), el("td", { class: "barcell" }, bar)));
      }
      const mbody = $("admin-modules").tBodies[0];
      mbody.replaceChildren();
      $("admin-modules-empty").hidden = (st.top_modules || []).length > 0;
      for (const m of st.top_modules || []) {
        mbody.append(el("tr", null,
          el("td", { class: "mono", title: m.module_sha256 }, m.module_id || m.module_sha256.slice(0, 16)),
          el("td", { class: "num" }, String(m.runs))));
      }
    } catch (err) {
      if (current()) showError(errBox, err);
    }
    await loadTiers();
    await loadUsers();
  }
  loaders["tab-admin"] = loadAdmin;
  $("admin-refresh").addEventListener("click", loadAdmin);

  const userList = pagedTable({
    table: $("admin-users"), empty: $("admin-users-empty"), pager: $("admin-users-pager"), errBox: $("admin-error"), keepError: true,
    path: "/api/v1/admin/users", items: "users", filters: () => ({ email: $("admin-email").value.trim() }),
    row: (u) => {
      const self = me && me.user.id === u.id;
      const tier = el("select", { "aria-label": "Tier of " + u.email });
      for (const name of new Set([...tierNames, u.tier])) tier.append(el("option", { value: name }, name));
      tier.value = u.tier;
      tier.addEventListener("change", () => updateUser(u, { tier: tier.value }, tier));
      const state = el("td", null, u.disabled ? "disabled " : "active ");
      if (!self) {
        state.append(el("button", {
          type: "button", class: u.disabled ? "secondary" : "danger",
          "aria-label": (u.disabled ? "Enable " : "Disable ") + u.email,
          onclick: (ev) => {
            if (!u.disabled && !window.confirm("Disable " + u.email + "? Their keys stop working until you enable them again.")) return;
            updateUser(u, { disabled: !u.disabled }, ev.currentTarget);
          },
        }, u.disabled ? "Enable" : "Disable"));
      }
      return el("tr", { dataset: { id: String(u.id) } },
        el("td", null, u.email, self ? el("div", { class: "hint" }, "you") : null), el("td", { class: "num" }, String(u.id)),
        el("td", null, u.role), el("td", null, tier), el("td", null, fmtTime(u.created_at)), state);
    },
  });
  const loadUsers = userList.load;
  // tierNames are the tiers an admin can choose, loaded with the panel.
  let tierNames = [];

  async function loadTiers() {
    try {
      const data = await api("GET", "/api/v1/admin/tiers");
      tierNames = data.tiers.map((t) => t.name);
      const sel = $("user-tier");
      const keep = sel.value;
      sel.replaceChildren(...tierNames.map((n) => el("option", { value: n }, n)));
      sel.value = tierNames.includes(keep) ? keep : (tierNames.includes("free") ? "free" : tierNames[0] || "");
    } catch (err) {
      showError($("admin-error"), err);
    }
  }

  async function updateUser(u, change, control) {
    control.disabled = true;
    try {
      await api("PATCH", "/api/v1/admin/users/" + encodeURIComponent(u.id), change);
      clearError($("admin-error"));
    } catch (err) {
      showError($("admin-error"), err);
    } finally {
      control.disabled = false;
      await loadUsers();
    }
  }

  onSubmit($("user-create-form"), $("admin-error"), (errBox) => {
    const email = required($("user-email"), errBox, "give the user's email");
    if (!email) return;
    const body = { email, role: $("user-role").value, tier: $("user-tier").value, create_key: $("user-key").checked };
    act($("user-create"), errBox, async () => {
      const res = await api("POST", "/api/v1/admin/users", body);
      if (res.secret) {
        $("user-secret").textContent = res.secret;
        $("user-secret-box").hidden = false;
      }
      $("user-email").value = "";
      userList.offset = 0;
      await loadAdmin();
    });
  });
  $("user-secret-dismiss").addEventListener("click", () => {
    $("user-secret").textContent = "";
    $("user-secret-box").hidden = true;
  });

  $("admin-find").addEventListener("submit", (ev) => {
    ev.preventDefault();
    userList.first();
  });

  // An expiry date must lie in the future: tomorrow at the earliest.
  const tomorrow = new Date(Date.now() + 86400000);
  $("key-expires").min = tomorrow.toISOString().slice(0, 10);

  // A reload may restore the form's radio buttons: show the matching field.
  $("file-field").hidden = sourceIsStored();
  $("stored-field").hidden = !sourceIsStored();

  loadMe().then(() => {
    if (sourceIsStored() && apiKey) loadModuleOptions();
    const initial = tabs.find((t) => "#" + t.id.slice("tab-".length) === location.hash);
    if (initial) activate(initial, false);
  });
})();
