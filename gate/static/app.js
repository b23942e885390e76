// OVR-ALPR gate dashboard: live decisions (server-sent events), history search, and the
// per-gate allow/deny lists. Plain JS, no build step, nothing loaded from the internet.
//
// Every string that comes from the API (plates, labels, camera names, patterns) is
// untrusted: the DOM is built with createElement + textContent only, never innerHTML, and
// the page's Content-Security-Policy forbids inline script.
"use strict";

(function () {
  const LIVE_MAX = 50;
  const CAMERAS_EVERY_MS = 2000;
  const STATS_EVERY_MS = 10000;
  const PAGE_SIZE = 50;
  const TOKEN_KEY = "ovr-alpr.api-token";
  const DELETE_CONFIRM_MS = 4000;
  const CROP_RETRY_MS = 1500;

  const $ = (sel) => document.querySelector(sel);

  // --- DOM helpers ------------------------------------------------------------------------
  // el("span", {class: "x", dataset: {plate: p}}, "text", childNode, ...): text children
  // become text nodes, so data never turns into markup.
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "dataset") Object.assign(node.dataset, value);
      else if (key === "class") node.className = value;
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function pad(n) {
    return String(n).padStart(2, "0");
  }

  function formatTime(date) {
    if (!(date instanceof Date) || isNaN(date.getTime())) return "";
    return (
      `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ` +
      `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`
    );
  }

  const fromEpoch = (s) => (typeof s === "number" ? formatTime(new Date(s * 1000)) : "");
  const fromIso = (s) => (s ? formatTime(new Date(s)) : "");

  // A datetime-local value (local time) as ISO-8601 UTC, or null when empty.
  function localToIso(value) {
    if (!value) return null;
    const d = new Date(value);
    return isNaN(d.getTime()) ? null : d.toISOString();
  }

  function badge(decision) {
    const d = decision || "undecided";
    return el("span", { class: `badge badge-${d}`, dataset: { decision: d } }, d);
  }

  function vehicleText(cls, color) {
    return [color, cls].filter((x) => x).join(" ") || "—";
  }

  function cropImage(url, cls) {
    if (!url) return el("div", { class: `${cls} crop-missing` }, "no crop");
    const img = el("img", { class: cls, src: url, alt: "plate crop", decoding: "async" });
    // A live decision can arrive just before its record is stored: try once more.
    let retried = false;
    img.addEventListener("error", () => {
      if (retried) {
        img.classList.add("crop-broken");
        return;
      }
      retried = true;
      setTimeout(() => {
        img.src = `${url}${url.includes("?") ? "&" : "?"}retry=1`;
      }, CROP_RETRY_MS);
    });
    return img;
  }

  function showError(node, message) {
    node.textContent = message || "";
    node.hidden = !message;
  }

  // --- API --------------------------------------------------------------------------------
  function token() {
    return localStorage.getItem(TOKEN_KEY) || "";
  }

  async function api(path, options) {
    const opts = Object.assign({ headers: {} }, options || {});
    opts.headers = Object.assign({ Accept: "application/json" }, opts.headers);
    const response = await fetch(path, opts);
    if (response.status === 204) return null;
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      body = null;
    }
    if (!response.ok) {
      let message = `${response.status} ${response.statusText}`;
      if (body && typeof body.message === "string") message = body.message;
      else if (body && typeof body.detail === "string") message = body.detail;
      const err = new Error(message);
      err.status = response.status;
      throw err;
    }
    return body;
  }

  const cropUrl = (recordId) => `/api/records/${encodeURIComponent(recordId)}/crop`;

  // --- header: cameras and stats ----------------------------------------------------------
  async function refreshCameras() {
    const box = $("#cameras");
    try {
      const cams = await api("/api/cameras");
      box.replaceChildren(
        ...cams.map((c) =>
          el(
            "span",
            {
              class: `camera camera-${c.status}`,
              dataset: { camera: c.camera, status: c.status, role: c.role },
              title: `${c.camera} (${c.role} camera, gate ${c.gate || "—"}): ` +
                `${c.frames ?? 0} frames, ${c.events ?? 0} events` +
                (c.updated_at ? `, updated ${fromEpoch(c.updated_at)}` : ""),
            },
            el("span", { class: "dot" }),
            el("span", { class: "camera-name" }, c.camera),
            el("span", { class: "camera-fps" },
               typeof c.fps === "number" ? `${c.fps.toFixed(1)} fps` : c.status),
          ),
        ),
      );
      if (!cams.length) box.replaceChildren(el("span", { class: "muted" }, "no cameras"));
      fillSelect($("#search-camera"), cams.map((c) => c.camera), "any");
    } catch (err) {
      box.replaceChildren(el("span", { class: "error-inline" }, `cameras: ${err.message}`));
    }
  }

  async function refreshStats() {
    try {
      const s = await api("/api/stats");
      const by = s.by_decision || {};
      $("#stats").textContent =
        `${s.records} records · ${by.allow || 0} allowed · ${by.deny || 0} denied · ` +
        `${by.unknown || 0} unknown`;
    } catch (_) {
      $("#stats").textContent = "";
    }
  }

  // Replace a <select>'s options with `values` (keeping the selection when still offered).
  function fillSelect(select, values, anyLabel) {
    const current = select.value;
    const wanted = (anyLabel !== undefined ? [""] : []).concat(values);
    const have = Array.from(select.options).map((o) => o.value);
    if (have.length === wanted.length && have.every((v, i) => v === wanted[i])) return;
    const options = values.map((v) => el("option", { value: v }, v));
    if (anyLabel !== undefined) options.unshift(el("option", { value: "" }, anyLabel));
    select.replaceChildren(...options);
    if (wanted.includes(current)) select.value = current;
  }

  // --- live view --------------------------------------------------------------------------
  function liveItems() {
    return Array.from($("#live").children);
  }

  function findLive(recordId) {
    return liveItems().find((li) => li.dataset.recordId === recordId) || null;
  }

  function field(name, text) {
    return el("span", { class: `field field-${name}`, dataset: { field: name } }, text);
  }

  function renderDecision(d) {
    const rec = d.record || {};
    const recordId = d.record_id || rec.record_id || "";
    const hasCrop = Boolean(rec.crop_path || d.crop_path);
    const latency = typeof d.latency_ms === "number" ? `${Math.round(d.latency_ms)} ms` : "";
    const item = el(
      "li",
      {
        class: `live-item decision-${d.decision}`,
        dataset: { plate: d.plate || "", decision: d.decision || "", recordId, gate: d.gate || "" },
        "data-testid": "live-item",
      },
      cropImage(hasCrop && recordId ? cropUrl(recordId) : null, "crop"),
      el(
        "div",
        { class: "live-body" },
        el("div", { class: "live-top" },
           el("span", { class: "plate" }, d.plate || "—"), badge(d.decision)),
        el("div", { class: "live-meta" },
           field("gate", `gate ${d.gate || "—"}`),
           field("camera", d.camera || "—"),
           field("direction", d.direction || rec.direction || "—")),
        el("div", { class: "live-meta" },
           field("vehicle", vehicleText(d.vehicle_class || rec.vehicle_class,
                                        d.color || rec.color)),
           field("latency", latency),
           field("time", fromEpoch(d.decided_at))),
        d.label || d.matched
          ? el("div", { class: "live-match" },
               d.label ? el("span", { class: "label" }, d.label) : null,
               d.matched ? el("span", { class: "matched" }, `matched ${d.matched}`) : null)
          : null,
      ),
    );
    return item;
  }

  function addDecision(d) {
    const list = $("#live");
    const old = findLive(d.record_id);
    if (old) old.remove();
    list.prepend(renderDecision(d));
    while (list.children.length > LIVE_MAX) list.lastElementChild.remove();
    $("#live-empty").hidden = list.children.length > 0;
  }

  // A record update (e.g. the overview camera's class, colour or direction arriving after
  // the decision) refreshes the matching live item in place.
  function updateRecord(rec) {
    const item = findLive(rec.record_id);
    if (!item) return;
    const set = (name, text) => {
      const node = item.querySelector(`[data-field="${name}"]`);
      if (node && text) node.textContent = text;
    };
    set("direction", rec.direction);
    if (rec.vehicle_class || rec.color) set("vehicle", vehicleText(rec.vehicle_class, rec.color));
    const crop = item.querySelector(".crop-missing");
    if (crop && rec.crop_path) crop.replaceWith(cropImage(cropUrl(rec.record_id), "crop"));
  }

  function connectLive() {
    const conn = $("#conn");
    const setConn = (state, text) => {
      conn.dataset.state = state;
      conn.textContent = text;
    };
    const source = new EventSource("/api/live/stream");
    source.addEventListener("open", () => setConn("live", "live"));
    source.addEventListener("error", () =>
      setConn(source.readyState === EventSource.CLOSED ? "down" : "connecting", "reconnecting"));
    const parse = (ev) => {
      try {
        return JSON.parse(ev.data);
      } catch (_) {
        return null;
      }
    };
    source.addEventListener("decision", (ev) => {
      const d = parse(ev);
      if (d) addDecision(d);
    });
    source.addEventListener("record", (ev) => {
      const r = parse(ev);
      if (r) updateRecord(r);
    });
  }

  // --- history search ---------------------------------------------------------------------
  const search = { offset: 0, total: null, count: 0 };

  function searchParams() {
    const p = new URLSearchParams();
    const plate = $("#search-plate").value.trim();
    if (plate) p.set("plate", plate);
    if ($("#search-fuzzy").checked) p.set("fuzzy", "true");
    for (const [id, key] of [["#search-gate", "gate"], ["#search-camera", "camera"],
                             ["#search-decision", "decision"]]) {
      if ($(id).value) p.set(key, $(id).value);
    }
    const since = localToIso($("#search-from").value);
    const until = localToIso($("#search-to").value);
    if (since) p.set("since", since);
    if (until) p.set("until", until);
    p.set("limit", String(PAGE_SIZE));
    p.set("offset", String(search.offset));
    return p;
  }

  function resultRow(r) {
    return el(
      "tr",
      { class: "result", dataset: { plate: r.plate, recordId: r.record_id,
                                    decision: r.decision || "" } },
      el("td", {}, cropImage(r.crop_url, "thumb")),
      el("td", { class: "plate" }, r.plate || "—"),
      el("td", {}, badge(r.decision)),
      el("td", {}, r.gate),
      el("td", { class: "nowrap",
                 title: r.overview_camera ? `overview camera: ${r.overview_camera}` : null },
         r.plate_camera || r.overview_camera || "—"),
      el("td", {}, r.direction || "—"),
      el("td", {}, vehicleText(r.vehicle_class, r.color)),
      el("td", { class: "nowrap" }, fromEpoch(r.first_seen)),
      el("td", { class: "num" },
         typeof r.decision_latency_ms === "number" ? `${Math.round(r.decision_latency_ms)} ms`
                                                    : "—"),
    );
  }

  async function runSearch() {
    const errorBox = $("#search-error");
    showError(errorBox, "");
    $("#results").setAttribute("aria-busy", "true");
    try {
      const page = await api(`/api/records?${searchParams()}`);
      search.total = page.total;
      search.count = page.items.length;
      $("#results tbody").replaceChildren(...page.items.map(resultRow));
      const from = page.items.length ? search.offset + 1 : 0;
      const to = search.offset + page.items.length;
      $("#results-summary").textContent =
        page.total === null
          ? `${from}–${to} (fuzzy matches)`
          : `${from}–${to} of ${page.total} record${page.total === 1 ? "" : "s"}`;
      $("#results-prev").disabled = search.offset === 0;
      $("#results-next").disabled =
        page.total === null ? page.items.length < PAGE_SIZE : to >= page.total;
    } catch (err) {
      showError(errorBox, `Search failed: ${err.message}`);
    } finally {
      $("#results").removeAttribute("aria-busy");
    }
  }

  // --- lists ------------------------------------------------------------------------------
  const gates = { list: [] };

  async function loadGates() {
    try {
      gates.list = await api("/api/gates");
    } catch (err) {
      showError($("#entry-error"), `Gates: ${err.message}`);
      return;
    }
    const ids = gates.list.map((g) => g.gate);
    fillSelect($("#search-gate"), ids, "any");
    fillSelect($("#list-gate"), ids);
    showListInfo();
  }

  function showListInfo() {
    const g = gates.list.find((x) => x.gate === $("#list-gate").value);
    $("#list-info").textContent = g
      ? `plate camera ${g.plate_camera}` +
        (g.overview_camera ? `, overview ${g.overview_camera}` : "") +
        ` · ${g.allow} allowed, ${g.deny} denied`
      : "";
  }

  function deleteButton(gate, entry) {
    const button = el("button", { type: "button", class: "entry-delete danger",
                                  "data-testid": "entry-delete" }, "Delete");
    let armed = null;
    button.addEventListener("click", async () => {
      // Two clicks: a stray click never silently lifts a deny entry.
      if (!armed) {
        button.textContent = "Confirm";
        button.classList.add("armed");
        armed = setTimeout(() => {
          armed = null;
          button.textContent = "Delete";
          button.classList.remove("armed");
        }, DELETE_CONFIRM_MS);
        return;
      }
      clearTimeout(armed);
      armed = null;
      button.disabled = true;
      try {
        await api(`/api/gates/${encodeURIComponent(gate)}/lists/${entry.id}`, {
          method: "DELETE",
          headers: authHeaders(),
        });
        showError($("#entry-error"), "");
      } catch (err) {
        showError($("#entry-error"), `Delete failed: ${err.message}`);
      }
      await Promise.all([loadEntries(), loadGates()]);
    });
    return button;
  }

  function entryRow(gate, s) {
    const e = s.entry;
    const what = e.plate
      ? el("span", { class: "plate" }, e.plate)
      : el("span", { class: "pattern", title: "regular expression" }, `/${e.pattern}/`);
    return el(
      "tr",
      {
        class: `entry entry-${s.kind}`,
        dataset: { entryId: String(s.id), kind: s.kind, plate: e.plate || "",
                   pattern: e.pattern || "" },
      },
      el("td", {}, badge(s.kind)),
      el("td", {}, what),
      el("td", {}, e.label || ""),
      el("td", { class: "nowrap" }, fromIso(e.valid_from) || "—"),
      el("td", { class: "nowrap" }, fromIso(e.valid_until) || "—"),
      el("td", { class: "nowrap" }, fromIso(s.created_at)),
      el("td", {}, deleteButton(gate, s)),
    );
  }

  async function loadEntries() {
    const gate = $("#list-gate").value;
    const body = $("#entries tbody");
    if (!gate) {
      body.replaceChildren();
      return;
    }
    try {
      const lists = await api(`/api/gates/${encodeURIComponent(gate)}/lists`);
      if ($("#list-gate").value !== gate) return; // the operator switched gates meanwhile
      body.replaceChildren(...lists.entries.map((s) => entryRow(gate, s)));
      $("#entries").dataset.version = String(lists.version);
    } catch (err) {
      showError($("#entry-error"), `Lists: ${err.message}`);
    }
  }

  function authHeaders() {
    const t = token();
    return t ? { Authorization: `Bearer ${t}` } : {};
  }

  async function addEntry() {
    const errorBox = $("#entry-error");
    const gate = $("#list-gate").value;
    const plate = $("#entry-plate").value.trim();
    const pattern = $("#entry-pattern").value.trim();
    if (!gate) return showError(errorBox, "Choose a gate first.");
    if (Boolean(plate) === Boolean(pattern)) {
      return showError(errorBox, "Enter either a plate or a pattern (not both).");
    }
    const body = { label: $("#entry-label").value.trim() };
    if (plate) body.plate = plate;
    else body.pattern = pattern;
    const from = localToIso($("#entry-from").value);
    const until = localToIso($("#entry-until").value);
    if (from) body.valid_from = from;
    if (until) body.valid_until = until;
    const kind = $("#entry-kind").value;
    $("#entry-add").disabled = true;
    try {
      await api(`/api/gates/${encodeURIComponent(gate)}/lists/${encodeURIComponent(kind)}`, {
        method: "POST",
        headers: Object.assign({ "Content-Type": "application/json" }, authHeaders()),
        body: JSON.stringify(body),
      });
      showError(errorBox, "");
      for (const id of ["#entry-plate", "#entry-pattern", "#entry-label", "#entry-from",
                        "#entry-until"]) {
        $(id).value = "";
      }
    } catch (err) {
      const hint = err.status === 401 ? " (enter the gate's API token above)" : "";
      showError(errorBox, `Not added: ${err.message}${hint}`);
    } finally {
      $("#entry-add").disabled = false;
    }
    await Promise.all([loadEntries(), loadGates()]);
  }

  // --- start ------------------------------------------------------------------------------
  function start() {
    const tokenInput = $("#api-token");
    tokenInput.value = token();
    tokenInput.addEventListener("input", () => {
      const v = tokenInput.value.trim();
      if (v) localStorage.setItem(TOKEN_KEY, v);
      else localStorage.removeItem(TOKEN_KEY);
    });

    $("#search-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      search.offset = 0;
      runSearch();
    });
    $("#search-form").addEventListener("reset", () => {
      showError($("#search-error"), "");
    });
    $("#results-prev").addEventListener("click", () => {
      search.offset = Math.max(0, search.offset - PAGE_SIZE);
      runSearch();
    });
    $("#results-next").addEventListener("click", () => {
      search.offset += PAGE_SIZE;
      runSearch();
    });

    $("#list-gate").addEventListener("change", () => {
      showError($("#entry-error"), "");
      showListInfo();
      loadEntries();
    });
    $("#entry-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      addEntry();
    });

    connectLive();
    refreshCameras();
    refreshStats();
    setInterval(refreshCameras, CAMERAS_EVERY_MS);
    setInterval(refreshStats, STATS_EVERY_MS);
    loadGates().then(loadEntries);
    runSearch();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
