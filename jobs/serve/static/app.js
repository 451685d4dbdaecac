// The bike search page: plain DOM, no framework, no build step. Every text from the store goes through
// textContent (never innerHTML). The API is described in docs/serve.md.
"use strict";

const $ = (id) => document.getElementById(id);
const el = (tag, attrs = {}, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const kid of kids) e.append(kid);
  return e;
};
const SVG = "http://www.w3.org/2000/svg";
const svg = (tag, attrs) => {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
};
const fmt = (s) => (s == null ? "?" : `${Math.floor(s / 60)}:${(s % 60).toFixed(1).padStart(4, "0")}`);
const base = (p) => (p ? p.split(/[\\/]/).pop() : "");
const clipUrl = (id) => "/api/clips/" + id.split("/").map(encodeURIComponent).join("/");

// Every API call carries "X-Bike: 1": the server refuses POSTs without it (or a same-origin Origin), which no
// page on another site can send without a CORS preflight that the server never grants (docs/serve.md).
async function api(url, opts = {}) {
  let res;
  try {
    res = await fetch(url, { ...opts, headers: { ...(opts.headers || {}), "X-Bike": "1" } });
  } catch (e) {
    throw new Error("the server cannot be reached (" + e.message + ")");
  }
  let body = null;
  try { body = await res.json(); } catch (e) { /* not JSON */ }
  if (!res.ok) throw new Error((body && body.error) || `HTTP ${res.status}`);
  return body;
}

function showError(box, err) {
  box.hidden = !err;
  box.textContent = err ? err.message || String(err) : "";
}

// ---- search ---------------------------------------------------------------------------------------------
let current = null;          // the result shown in the player
let lastResults = [];
// Relevance feedback: the clips marked 👍 / 👎 for the query shown; each mark re-runs that query at once with
// positive=/negative= (docs/serve.md). A new query starts with none.
const feedback = { pos: new Set(), neg: new Set() };
let lastQuery = null;        // { kind, value } of the results shown

function searchParams() {
  const p = new URLSearchParams();
  p.set("k", $("k").value);
  const label = $("f-label").value.trim(), min = $("f-min").value.trim(), where = $("f-where").value.trim();
  if (label) p.set("label", label);
  if (min) p.set("min_score", min);
  if (where) p.set("where", where);
  return p;
}

async function runSearch(kind, value, keepFeedback = false) {
  const p = searchParams();
  if (!keepFeedback) { feedback.pos.clear(); feedback.neg.clear(); }
  if (feedback.pos.size) p.set("positive", [...feedback.pos].join(","));
  if (feedback.neg.size) p.set("negative", [...feedback.neg].join(","));
  let opts;
  if (kind === "text") {
    if (!value.trim()) { showError($("error"), new Error("type what to look for")); return; }
    p.set("q", value);
  } else if (kind === "clip") {
    p.set("clip", value);
  } else {
    opts = { method: "POST", body: value, headers: { "Content-Type": value.type || "application/octet-stream" } };
  }
  const label = (kind === "text" ? `“${value}”` : kind === "clip" ? "more like this clip" : `like ${value.name}`) +
    (feedback.pos.size || feedback.neg.size ? ` with 👍 ${feedback.pos.size} · 👎 ${feedback.neg.size}` : "");
  $("status").textContent = `searching ${label}…`;
  showError($("error"), null);
  lastQuery = { kind, value };
  showFeedbackBar();
  try {
    const res = await api("/api/search?" + p.toString(), opts);
    render(res, label);
  } catch (err) {
    $("status").textContent = "";
    showError($("error"), err);
  }
}

function render(res, label) {
  lastResults = res.results;
  const banner = $("banner");
  banner.hidden = !res.warning;
  banner.textContent = res.warning ? `⚠ ${res.warning} (model: ${res.model})` : "";
  const notes = res.notes.length ? " · " + res.notes.join(" · ") : "";
  $("status").textContent = `${res.results.length} result(s) for ${label} in ${(res.seconds * 1000).toFixed(0)} ms` +
    ` from ${res.candidates} candidates${notes}`;
  const grid = $("results");
  grid.replaceChildren();
  res.results.forEach((r, i) => {
    const labels = r.labels.slice(0, 3).map((l) => l.label).join(", ");
    const card = el("button", { type: "button", class: "card", "data-clip": r.clip_id,
                                "aria-label": `result ${r.rank}: ${base(r.path) || r.video_id} at ${fmt(r.moment_s)}, score ${r.score.toFixed(3)}` },
      el("img", { src: `${clipUrl(r.clip_id)}/thumb.jpg?t=${r.moment_s.toFixed(1)}`, alt: "", loading: "lazy" }),
      el("div", { class: "body" },
        el("div", { class: "top" }, el("span", { class: "name", text: base(r.path) || r.video_id, title: r.path || "" }),
           el("span", { class: "score", text: r.score.toFixed(3) })),
        el("div", { class: "span", text: `${fmt(r.start_s)}–${fmt(r.end_s)} · moment ${fmt(momentSpan(r)[0])}–${fmt(momentSpan(r)[1])}` }),
        el("div", { class: "labels", text: labels || "no labels" })));
    if (r.text) {                          // a text channel matched: its words (textContent: escaped) and where
      card.querySelector(".body").append(el("div", { class: "said", title: r.text,
        text: `${(r.matched || []).join(" + ")} at ${fmt(r.moment_s)}: “${r.text}”` }));
    }
    card.addEventListener("click", () => openResult(r));
    const mark = (set, other, sign, name) => el("button", {
      type: "button", class: "fb-btn", "data-fb": sign, "aria-pressed": String(set.has(r.clip_id)),
      title: `${name}: re-rank with this clip as a${sign === "up" ? " positive" : " negative"} example`,
      "aria-label": `${name} result ${r.rank}`, text: sign === "up" ? "👍" : "👎",
      onclick: () => { if (!set.delete(r.clip_id)) { set.add(r.clip_id); other.delete(r.clip_id); } rerank(); },
    });
    const wrap = el("div", { class: "card-wrap" }, card,
      el("div", { class: "fb", role: "group", "aria-label": "relevance feedback" },
        mark(feedback.pos, feedback.neg, "up", "more like this"), mark(feedback.neg, feedback.pos, "down", "less like this")));
    card.addEventListener("keydown", (e) => {
      const cards = [...grid.querySelectorAll(".card")];
      const cols = Math.max(1, Math.round(grid.clientWidth / card.clientWidth));
      const step = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: cols, ArrowUp: -cols }[e.key];
      if (step) { e.preventDefault(); (cards[i + step] || card).focus(); }
    });
    grid.append(wrap);
  });
  if (!res.results.length) grid.append(el("p", { class: "muted", text: "No result. Try other words or fewer filters." }));
}

// ---- relevance feedback and "Save as tag" ----------------------------------------------------------------
function rerank() {
  if (lastQuery) runSearch(lastQuery.kind, lastQuery.value, true);
}

function showFeedbackBar() {
  const n = feedback.pos.size + feedback.neg.size;
  $("feedback-bar").hidden = !n;
  $("fb-count").textContent = `👍 ${feedback.pos.size} · 👎 ${feedback.neg.size}`;
  $("fb-save").disabled = !feedback.pos.size;
}

async function saveTag() {
  const name = (window.prompt("Name of the tag (every stored clip is scored for it; see user_labels in SQL):") || "").trim();
  if (!name) return;
  const p = new URLSearchParams({ name, positive: [...feedback.pos].join(",") });
  if (feedback.neg.size) p.set("negative", [...feedback.neg].join(","));
  if (lastQuery && lastQuery.kind === "text") p.set("q", lastQuery.value);
  $("fb-status").textContent = "scoring every clip…";
  try {
    const r = await api("/api/labels?" + p.toString(), { method: "POST" });
    $("fb-status").textContent = `saved “${r.label}”: ${r.tagged} of ${r.clips} clips tagged`;
    $("sql").value = r.sql;
  } catch (err) {
    $("fb-status").textContent = "";
    showError($("error"), err);
  }
}
$("fb-clear").addEventListener("click", () => { feedback.pos.clear(); feedback.neg.clear(); rerank(); });
$("fb-save").addEventListener("click", saveTag);

// ---- player and saliency curve --------------------------------------------------------------------------
function openResult(r) {
  current = r;
  document.querySelectorAll(".card").forEach((c) => c.setAttribute("aria-current", String(c.dataset.clip === r.clip_id)));
  $("player-panel").hidden = false;
  $("p-title").textContent = base(r.path) || r.video_id;
  $("p-title").title = r.path || "";
  const [ms, me] = momentSpan(r);
  $("p-save").href = `/api/clips/${r.clip_id.split("/").map(encodeURIComponent).join("/")}/export.mp4`;
  $("p-meta").textContent = `score ${r.score.toFixed(4)} · clip ${fmt(r.start_s)}–${fmt(r.end_s)} · moment ${fmt(ms)}–${fmt(me)}` +
    (r.joined ? ` (continues into ${r.joined.clip_ids.filter((c) => c !== r.clip_id).join(", ")})` : "") + ` · ${r.clip_id}` +
    (r.text ? ` · ${(r.matched || []).join(" + ")}: “${r.text}”` : "");
  $("p-labels").replaceChildren(...r.labels.map((l) => el("li", {}, `${l.label} `, el("span", { text: l.score.toFixed(3) }))));
  $("p-attrs").replaceChildren(...r.attributes.map((a) => el("li", {}, `${a.attribute} `, el("span", { text: a.score.toFixed(3) }))));
  if (!r.attributes.length) $("p-attrs").append(el("li", { class: "muted", text: "none stored" }));
  const video = $("player");
  const src = "/api/videos/" + encodeURIComponent(r.video_id) + "/media";
  const seek = () => { video.currentTime = r.moment_s; };
  if (video.dataset.src !== src) {
    video.dataset.src = src;
    video.dataset.ready = "";
    video.src = src;
    video.addEventListener("loadedmetadata", () => { video.dataset.ready = "1"; seek(); }, { once: true });
  } else {
    seek();
  }
  drawCurve(r);
}

// The moment's span: the joined span when it crosses into a neighbouring result clip (docs/search.md).
function momentSpan(r) {
  if (r.joined) return [r.joined.start_s, r.joined.end_s];
  return [r.moment_start_s ?? r.moment_s, r.moment_end_s ?? r.moment_s];
}

function curveX(r, t) { return 1000 * (t - r.start_s) / Math.max(1e-6, r.end_s - r.start_s); }

function drawCurve(r) {
  const c = $("curve");
  c.replaceChildren();
  if (!r.saliency.length) {                // a text-only hit: no saliency curve, only its moment
    const m = curveX(r, r.moment_s);
    c.append(svg("line", { class: "moment", x1: m, x2: m, y1: 0, y2: 120 }));
    return;
  }
  const max = Math.max(...r.saliency, 1e-9);
  const pts = r.frame_times.map((t, i) => `${curveX(r, t).toFixed(1)},${(115 - 105 * r.saliency[i] / max).toFixed(1)}`);
  const first = curveX(r, r.frame_times[0]).toFixed(1), last = curveX(r, r.frame_times[r.frame_times.length - 1]).toFixed(1);
  const [ms, me] = momentSpan(r);
  const sx = Math.max(0, curveX(r, ms)), ex = Math.min(1000, curveX(r, me));
  c.append(svg("rect", { class: "span", x: sx, y: 0, width: Math.max(2, ex - sx), height: 120 }));
  c.append(svg("polygon", { class: "area", points: `${first},120 ${pts.join(" ")} ${last},120` }));
  const mx = curveX(r, r.moment_s);
  c.append(svg("line", { class: "moment", x1: mx, x2: mx, y1: 0, y2: 120 }));
  c.append(svg("line", { class: "head", id: "playhead", x1: mx, x2: mx, y1: 0, y2: 120 }));
  c.setAttribute("aria-valuemin", r.start_s);
  c.setAttribute("aria-valuemax", r.end_s);
  c.setAttribute("aria-valuenow", r.moment_s);
  $("c-start").textContent = fmt(r.start_s);
  $("c-moment").textContent = `moment ${fmt(ms)}–${fmt(me)}`;
  $("c-end").textContent = fmt(r.end_s);
  drawScrub();
}

// The scrubber under the player: the whole video, the clip (light) and the moment's span (orange), the
// playhead; click to seek anywhere in the video.
function drawScrub() {
  const bar = $("scrub"), video = $("player");
  if (!bar || !current) return;
  const d = video.duration;
  bar.replaceChildren();
  if (!(d > 0)) return;
  const x = (t) => Math.min(1000, Math.max(0, 1000 * t / d));
  const [ms, me] = momentSpan(current);
  bar.append(svg("rect", { class: "clip", x: x(current.start_s), y: 0, width: Math.max(2, x(current.end_s) - x(current.start_s)), height: 12 }));
  bar.append(svg("rect", { class: "span", x: x(ms), y: 0, width: Math.max(2, x(me) - x(ms)), height: 12 }));
  bar.append(svg("line", { class: "head", id: "scrubhead", x1: x(video.currentTime), x2: x(video.currentTime), y1: 0, y2: 12 }));
}

// Play the moment's span once: from its start, pausing at its end.
let spanEnd = null;
function playMoment() {
  if (!current) return;
  const [ms, me] = momentSpan(current);
  const video = $("player");
  video.currentTime = ms;
  spanEnd = me;
  video.play().catch(() => { spanEnd = null; });
}

function seekTo(t) {
  if (!current) return;
  const video = $("player");
  video.currentTime = Math.min(Math.max(t, current.start_s), current.end_s);
}

$("curve").addEventListener("click", (e) => {
  if (!current) return;
  const box = e.currentTarget.getBoundingClientRect();
  seekTo(current.start_s + (e.clientX - box.left) / box.width * (current.end_s - current.start_s));
});
$("curve").addEventListener("keydown", (e) => {
  if (!current) return;
  const times = current.frame_times, now = $("player").currentTime;
  if (e.key === "ArrowRight") { e.preventDefault(); seekTo(times.find((t) => t > now + 0.01) ?? current.end_s); }
  if (e.key === "ArrowLeft") { e.preventDefault(); seekTo([...times].reverse().find((t) => t < now - 0.01) ?? current.start_s); }
  if (e.key === "Home") { e.preventDefault(); seekTo(current.moment_s); }
});
$("player").addEventListener("timeupdate", () => {
  const h = $("playhead");
  if (!current || !h) return;
  const now = $("player").currentTime;
  const x = curveX(current, now);
  h.setAttribute("x1", x); h.setAttribute("x2", x);
  if (spanEnd != null && now >= spanEnd) { spanEnd = null; $("player").pause(); }
  const sh = $("scrubhead"), d = $("player").duration;
  if (sh && d > 0) { const sx = Math.min(1000, 1000 * now / d); sh.setAttribute("x1", sx); sh.setAttribute("x2", sx); }
  $("curve").setAttribute("aria-valuenow", $("player").currentTime.toFixed(2));
});
$("p-like").addEventListener("click", () => current && runSearch("clip", current.clip_id));
$("p-play").addEventListener("click", playMoment);
$("player").addEventListener("loadedmetadata", drawScrub);
$("player").addEventListener("seeking", () => { if (spanEnd != null && current && $("player").currentTime < momentSpan(current)[0] - 0.05) spanEnd = null; });
$("scrub").addEventListener("click", (e) => {
  const video = $("player"), box = e.currentTarget.getBoundingClientRect();
  if (!current || !(video.duration > 0)) return;
  spanEnd = null;
  video.currentTime = (e.clientX - box.left) / box.width * video.duration;
});
$("p-close").addEventListener("click", closePlayer);
function closePlayer() {
  $("player").pause();
  $("player-panel").hidden = true;
  const card = current && document.querySelector(`.card[data-clip="${CSS.escape(current.clip_id)}"]`);
  current = null;
  if (card) card.focus();
}

// ---- search form, drop, keys ----------------------------------------------------------------------------
$("search-form").addEventListener("submit", (e) => { e.preventDefault(); runSearch("text", $("q").value); });
$("upload").addEventListener("change", (e) => { const f = e.target.files[0]; if (f) runSearch("video", f); e.target.value = ""; });
let dragDepth = 0;
window.addEventListener("dragenter", (e) => { if ([...e.dataTransfer.types].includes("Files")) { dragDepth++; $("drop").hidden = false; } });
window.addEventListener("dragleave", () => { dragDepth = Math.max(0, dragDepth - 1); if (!dragDepth) $("drop").hidden = true; });
window.addEventListener("dragover", (e) => e.preventDefault());
window.addEventListener("drop", (e) => {
  e.preventDefault(); dragDepth = 0; $("drop").hidden = true;
  const f = e.dataTransfer.files[0];
  if (f) { showView("search"); runSearch("video", f); }
});
document.addEventListener("keydown", (e) => {
  const typing = /^(INPUT|TEXTAREA|SELECT)$/.test(document.activeElement.tagName);
  if (e.key === "/" && !typing) { e.preventDefault(); showView("search"); $("q").focus(); $("q").select(); }
  if (e.key === "Escape" && !$("player-panel").hidden) closePlayer();
});

// ---- tags view ------------------------------------------------------------------------------------------
function showView(name) {
  $("view-search").hidden = name !== "search";
  $("view-tags").hidden = name !== "tags";
  $("tab-search").setAttribute("aria-pressed", String(name === "search"));
  $("tab-tags").setAttribute("aria-pressed", String(name === "tags"));
  if (name === "tags") loadStats();
}
$("tab-search").addEventListener("click", () => showView("search"));
$("tab-tags").addEventListener("click", () => showView("tags"));

function table(columns, rows) {
  return el("div", { class: "table-wrap" }, el("table", {},
    el("thead", {}, el("tr", {}, ...columns.map((c) => el("th", { text: c, scope: "col" })))),
    el("tbody", {}, ...rows.map((row) => el("tr", {}, ...row.map((v) => {
      const s = v == null ? "NULL" : typeof v === "object" ? JSON.stringify(v) : String(v);
      return el("td", { text: s.length > 200 ? s.slice(0, 199) + "…" : s, title: s.length > 60 ? s.slice(0, 2000) : "" });
    }))))));
}

function fillBar(share) {            // width set through the CSSOM: the page's CSP allows no inline styles
  const f = el("span", { class: "fill" });
  f.style.width = `${(100 * share).toFixed(1)}%`;
  return f;
}

async function loadStats() {
  try {
    const s = await api("/api/stats");
    $("store-info").textContent = `${s.videos} videos · ${s.clips} clips · ${s.errors} errors · model ${s.model_id || "none yet"}`;
    const banner = s.unsearchable || s.warning;      // nothing searchable yet (every file failed, no batch) first
    $("banner").hidden = !banner;
    $("banner").textContent = s.unsearchable ? `⚠ ${s.unsearchable}` : s.warning ? `⚠ ${s.warning} (model: ${s.model})` : "";
    $("label-list").replaceChildren(...s.labels.map((l) => el("option", { value: l.label })));
    $("t-counts").textContent = `${s.labels.length} top labels over ${s.clips} clips`;
    const max = Math.max(1, ...s.labels.map((l) => l.clips));
    $("histogram").replaceChildren(...s.labels.map((l) => el("button", {
      type: "button", class: "bar", title: `search clips labelled ${l.label}`,
      onclick: () => { $("f-label").value = l.label; $("filters").open = true; showView("search"); runSearch("text", $("q").value || l.label); },
    }, el("span", { text: l.label }), fillBar(l.clips / max), el("span", { class: "n", text: String(l.clips) }))));
    if (!s.labels.length) $("histogram").replaceChildren(el("p", { class: "muted", text: "no labels yet" }));
    $("errors").replaceChildren(s.error_report.length
      ? table(["path", "error", "tagged at"], s.error_report.map((e) => [e.path, e.error, e.tagged_at]))
      : el("p", { class: "muted", text: "No video failed to tag." }));
  } catch (err) {
    $("store-info").textContent = "";
    showError($("error"), err);
    showError($("sql-error"), err);
  }
}

async function runSql() {
  showError($("sql-error"), null);
  $("sql-out").replaceChildren(el("p", { class: "muted", text: "running…" }));
  try {
    const r = await api("/api/sql?q=" + encodeURIComponent($("sql").value));
    const note = `${r.rows.length} row(s) in ${(r.seconds * 1000).toFixed(0)} ms` + (r.truncated ? ` — cut at ${r.row_limit} rows` : "");
    $("sql-out").replaceChildren(el("p", { class: "muted", text: note }), table(r.columns, r.rows));
  } catch (err) {
    $("sql-out").replaceChildren();
    showError($("sql-error"), err);
  }
}
$("sql-form").addEventListener("submit", (e) => { e.preventDefault(); runSql(); });
$("sql").addEventListener("keydown", (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); runSql(); } });

loadStats();
