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

// ---- page state in the URL ----------------------------------------------------------------------------
// /?q=…&label=…&min=…&where=…&group=0&like=CLIP&pos=…&neg=…&clip=CLIP&t=S&view=tags: the query, its filters, the
// open clip and its time. Every search and every clip opened is a history entry (pushState); reload, Back /
// Forward (popstate) and a shared link restore them. A search by an uploaded video cannot be put in a URL.
const PAGE = 30;             // results (or videos) asked for per page; more load on scroll (offset=)
const MAX_RESULTS = 1000;    // how deep paging goes (the server's Limits.max_results)
let current = null;          // the result shown in the player
let lastResults = [];        // every hit shown (the best of each video and its other moments)
// Relevance feedback: the clips marked 👍 / 👎 for the query shown; each mark re-runs that query at once with
// positive=/negative= (docs/serve.md). A new query starts with none.
const feedback = { pos: new Set(), neg: new Set() };
let lastQuery = null;        // { kind, value } of the results shown
let paging = null;           // { params, opts, label, shown, hasMore, loading, group, seq }
let searchSeq = 0;           // a newer search makes older answers void

function readUrl() {
  const u = new URLSearchParams(location.search);
  const t = parseFloat(u.get("t"));
  return { q: u.get("q") || "", like: u.get("like") || "", label: u.get("label") || "", min: u.get("min") || "",
           where: u.get("where") || "", group: u.get("group") !== "0", pos: (u.get("pos") || "").split(",").filter(Boolean),
           neg: (u.get("neg") || "").split(",").filter(Boolean), clip: u.get("clip") || "",
           t: Number.isFinite(t) ? t : null, view: u.get("view") === "tags" ? "tags" : "search" };
}

// The URL of what is shown now (the query in the form when shown, the player's clip and time).
function urlNow() {
  const u = new URLSearchParams();
  if ($("view-tags").hidden === false) u.set("view", "tags");
  if (lastQuery && lastQuery.kind === "text") u.set("q", lastQuery.value);
  if (lastQuery && lastQuery.kind === "clip") u.set("like", lastQuery.value);
  if (lastQuery && lastQuery.kind !== "video") {
    const f = lastQuery.filters;
    if (f.label) u.set("label", f.label);
    if (f.min) u.set("min", f.min);
    if (f.where) u.set("where", f.where);
    if (!f.group) u.set("group", "0");
    if (feedback.pos.size) u.set("pos", [...feedback.pos].join(","));
    if (feedback.neg.size) u.set("neg", [...feedback.neg].join(","));
  }
  if (current && !$("player-panel").hidden) {
    u.set("clip", current.clip_id);
    const t = $("player").readyState >= 1 ? $("player").currentTime : current.moment_s;
    u.set("t", t.toFixed(1));
  }
  const s = u.toString();
  return s ? "/?" + s : "/";
}

function saveUrl(push) {
  const url = urlNow();
  if (url === location.pathname + location.search) return;
  if (push) history.pushState(null, "", url); else history.replaceState(null, "", url);
}

function searchKey(st) {
  return JSON.stringify([st.q, st.like, st.label, st.min, st.where, st.group, [...st.pos].sort(), [...st.neg].sort()]);
}
function shownKey() {
  if (!lastQuery || lastQuery.kind === "video") return null;
  const f = lastQuery.filters;
  return searchKey({ q: lastQuery.kind === "text" ? lastQuery.value : "", like: lastQuery.kind === "clip" ? lastQuery.value : "",
                     label: f.label, min: f.min, where: f.where, group: f.group, pos: [...feedback.pos], neg: [...feedback.neg] });
}

// Show what a URL describes: its search (run again unless it is the one shown), then its clip at its time.
async function applyUrl() {
  const st = readUrl();
  if (st.q || st.like) {
    if (searchKey(st) !== shownKey()) {
      $("q").value = st.q;
      $("f-label").value = st.label; $("f-min").value = st.min; $("f-where").value = st.where;
      $("f-group").checked = st.group;
      if (st.label || st.min || st.where || !st.group) $("filters").open = true;
      feedback.pos = new Set(st.pos); feedback.neg = new Set(st.neg);
      await runSearch(st.like ? "clip" : "text", st.like || st.q, { keepFeedback: true, push: false, keepPlayer: true });
    }
  } else if (lastQuery) {
    clearResults();
  }
  showView(st.view, false);
  if (st.clip) {
    if (!current || current.clip_id !== st.clip || $("player-panel").hidden) await openClipById(st.clip, st.t, false);
    else if (st.t != null) seekVideo(st.t);
  } else if (current) {
    closePlayer(false);
  }
}
window.addEventListener("popstate", () => { applyUrl(); });

// ---- search ---------------------------------------------------------------------------------------------
function formFilters() {
  return { label: $("f-label").value.trim(), min: $("f-min").value.trim(), where: $("f-where").value.trim(),
           group: $("f-group").checked };
}

function searchParams(filters) {
  const p = new URLSearchParams();
  p.set("k", String(PAGE));
  p.set("group", filters.group ? "video" : "clip");
  if (filters.label) p.set("label", filters.label);
  if (filters.min) p.set("min_score", filters.min);
  if (filters.where) p.set("where", filters.where);
  return p;
}

function clearResults() {
  lastResults = [];
  paging = null;
  $("results").replaceChildren();
  $("status").textContent = "";
  $("more-status").textContent = "";
  $("more-btn").hidden = true;
  if (current) closePlayer(false);
}

// kind: "text" (value: the words), "clip" (more like this clip id), "video" (an uploaded File). A new search
// closes the player (no old clip or curve beside new results) unless it only re-ranks with 👍 / 👎, which
// refreshes the open clip's curve when the clip is still among the results.
async function runSearch(kind, value, { keepFeedback = false, push = true, keepPlayer = false } = {}) {
  const filters = formFilters();
  const p = searchParams(filters);
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
  const seq = ++searchSeq;
  $("status").textContent = `searching ${label}…`;
  showError($("error"), null);
  if (!keepPlayer && !keepFeedback && current) closePlayer(false);
  lastQuery = { kind, value, filters };
  showFeedbackBar();
  if (push) saveUrl(true);
  paging = { params: p, opts, label, shown: 0, hasMore: false, loading: true, group: filters.group, seq };
  try {
    const res = await api("/api/search?" + p.toString(), opts);
    if (seq !== searchSeq) return;
    render(res, label);
  } catch (err) {
    if (seq !== searchSeq) return;
    clearResults();                        // a refused search leaves no stale results behind
    showError($("error"), err);
  }
}

// The next page of the results shown (infinite scroll: offset = what is shown; bounded by MAX_RESULTS).
async function loadMore() {
  if (!paging || paging.loading || !paging.hasMore || paging.opts) return;
  const seq = paging.seq, p = new URLSearchParams(paging.params);
  const k = Math.min(PAGE, MAX_RESULTS - paging.shown);
  if (k < 1) return;
  p.set("offset", String(paging.shown));
  p.set("k", String(k));
  paging.loading = true;
  $("more-status").textContent = "loading more…";
  try {
    const res = await api("/api/search?" + p.toString());
    if (!paging || seq !== paging.seq) return;
    appendResults(res.results);
    paging.hasMore = res.has_more && paging.shown < MAX_RESULTS;
    moreStatus();
  } catch (err) {
    if (paging && seq === paging.seq) { paging.hasMore = false; $("more-status").textContent = ""; showError($("error"), err); }
  } finally {
    if (paging && seq === paging.seq) paging.loading = false;
  }
}

function moreStatus() {
  const unit = paging.group ? "video" : "result";
  $("more-btn").hidden = !paging.hasMore;
  $("more-status").textContent = paging.hasMore ? "" : paging.shown >= MAX_RESULTS
    ? `showing the best ${MAX_RESULTS} ${unit}s; add words or filters to see others` : paging.shown ? `all ${paging.shown} ${unit}${paging.shown === 1 ? "" : "s"} shown` : "";
}

const moreObserver = new IntersectionObserver((entries) => {
  if (entries.some((e) => e.isIntersecting)) loadMore();
}, { rootMargin: "600px" });
moreObserver.observe($("more-sentinel"));
$("more-btn").addEventListener("click", loadMore);

function render(res, label) {
  lastResults = [];
  const banner = $("banner");
  banner.hidden = !res.warning;
  banner.textContent = res.warning ? `⚠ ${res.warning} (model: ${res.model})` : "";
  const notes = (res.page_notes || []).length ? " · " + res.page_notes.join(" · ") : "";
  const n = res.results.length, unit = paging.group ? "video" : "result";
  $("status").textContent = `${n}${res.has_more ? "+" : ""} ${unit}${n === 1 && !res.has_more ? "" : "s"} for ${label}` +
    (paging.group ? ", best moment first" : "") + ` · ${(res.seconds * 1000).toFixed(0)} ms${notes}`;
  $("results").replaceChildren();
  paging.shown = 0;
  appendResults(res.results);
  paging.hasMore = res.has_more && !paging.opts;     // an uploaded example is not sent again for a next page
  paging.loading = false;
  moreStatus();
  if (current) {                           // refresh the open clip with its new curve, or close it
    const hit = lastResults.find((r) => r.clip_id === current.clip_id);
    if (hit) openResult(hit, { push: false, seek: false }); else closePlayer(false);
  }
  if (!n) $("results").append(el("p", { class: "muted", text: "No result. Try other words or fewer filters." }));
}

// A file name keeps its distinguishing end: the start is cut with an ellipsis in the middle (CSS), the last
// characters always show; the full path is the title.
function nameEl(r) {
  const name = base(r.path) || r.video_id, cut = Math.max(0, name.length - 11);
  return el("span", { class: "name", title: r.path || r.video_id },
    el("span", { class: "head", text: name.slice(0, cut) }), el("span", { class: "tail", text: name.slice(cut) }));
}

const fmtShort = (s) => `${Math.floor(s / 60)}:${String(Math.floor(s % 60)).padStart(2, "0")}`;

function badgeText(r) {
  const [ms, me] = momentSpan(r);
  return `${fmtShort(r.moment_s)} · ${fmtShort(ms)}–${fmtShort(me)}`;
}

function appendResults(results) {
  const grid = $("results");
  for (const r of results) {
    lastResults.push(r, ...(r.more || []));
    grid.append(resultCard(r));
  }
  paging.shown += results.length;
}

function resultCard(r) {
  const grid = $("results");
  const labels = r.labels.slice(0, 3).map((l) => l.label).join(", ");
  const [ms, me] = momentSpan(r);
  const card = el("button", { type: "button", class: "card", "data-clip": r.clip_id,
                              "aria-label": `result ${r.rank}: ${base(r.path) || r.video_id} at ${fmt(r.moment_s)}, score ${r.score.toFixed(3)}` },
    el("span", { class: "thumb" },
      el("img", { src: `${clipUrl(r.clip_id)}/thumb.jpg?t=${r.moment_s.toFixed(1)}`, alt: "", loading: "lazy" }),
      el("span", { class: "badge", title: `moment at ${fmt(r.moment_s)}, its span ${fmt(ms)}–${fmt(me)}`, text: badgeText(r) })),
    el("span", { class: "body" },
      el("span", { class: "top" }, nameEl(r), el("span", { class: "score", text: r.score.toFixed(3) })),
      el("span", { class: "span", text: `clip ${fmt(r.start_s)}–${fmt(r.end_s)} · moment ${fmt(ms)}–${fmt(me)}` }),
      el("span", { class: "labels", text: labels || "no labels" })));
  if (r.text) {                          // a text channel matched: its words (textContent: escaped) and where
    card.querySelector(".body").append(el("span", { class: "said", title: r.text,
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
  if (r.more_count) {                    // "n more moments in this video", expandable
    const list = el("ol", { class: "moments", hidden: "" },
      ...r.more.map((m) => el("li", {}, el("button", {
        type: "button", class: "moment-btn", "data-clip": m.clip_id, onclick: () => openResult(m),
        "aria-label": `moment at ${fmt(m.moment_s)}, score ${m.score.toFixed(3)}`,
      }, el("span", { text: badgeText(m) }), el("span", { class: "score", text: m.score.toFixed(3) })))));
    if (r.more_count > r.more.length) list.append(el("li", { class: "muted", text: `and ${r.more_count - r.more.length} more` }));
    const n = r.more_count;
    const toggle = el("button", { type: "button", class: "more-toggle", "aria-expanded": "false",
                                  text: `+ ${n} more moment${n === 1 ? "" : "s"} in this video` });
    toggle.addEventListener("click", () => {
      const open = list.hidden;
      list.hidden = !open;
      toggle.setAttribute("aria-expanded", String(open));
    });
    wrap.append(toggle, list);
  }
  card.addEventListener("keydown", (e) => {
    const cards = [...grid.querySelectorAll(".card")], i = cards.indexOf(card);
    const cols = Math.max(1, Math.round(grid.clientWidth / card.clientWidth));
    const step = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: cols, ArrowUp: -cols }[e.key];
    if (step) { e.preventDefault(); (cards[i + step] || card).focus(); }
  });
  return wrap;
}

// ---- relevance feedback and "Save as tag" ----------------------------------------------------------------
function rerank() {
  if (lastQuery) runSearch(lastQuery.kind, lastQuery.value, { keepFeedback: true, keepPlayer: true });
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
// opts.push: a history entry (clip and time in the URL); opts.seek: go to the moment (or opts.t).
function openResult(r, { push = true, seek = true, t = null } = {}) {
  current = r;
  document.querySelectorAll(".card, .moment-btn").forEach((c) => c.setAttribute("aria-current", String(c.dataset.clip === r.clip_id)));
  const panel = $("player-panel");
  panel.hidden = false;
  document.body.classList.add("playing");
  $("p-title").replaceChildren(nameEl(r));
  const [ms, me] = momentSpan(r);
  $("p-save").href = `${clipUrl(r.clip_id)}/export.mp4`;
  $("p-meta").textContent = (r.score != null ? `score ${r.score.toFixed(4)} · ` : "") +
    `clip ${fmt(r.start_s)}–${fmt(r.end_s)} · moment ${fmt(ms)}–${fmt(me)}` +
    (r.joined ? ` (continues into ${r.joined.clip_ids.filter((c) => c !== r.clip_id).join(", ")})` : "") + ` · ${r.clip_id}` +
    (r.text ? ` · ${(r.matched || []).join(" + ")}: “${r.text}”` : "");
  $("p-labels").replaceChildren(...r.labels.map((l) => el("li", {}, `${l.label} `, el("span", { text: l.score.toFixed(3) }))));
  $("p-attrs").replaceChildren(...r.attributes.map((a) => el("li", {}, `${a.attribute} `, el("span", { text: a.score.toFixed(3) }))));
  if (!r.attributes.length) $("p-attrs").append(el("li", { class: "muted", text: "none stored" }));
  $("p-play").disabled = !(me > ms);
  const video = $("player");
  const src = "/api/videos/" + encodeURIComponent(r.video_id) + "/media";
  const at = t != null ? t : r.moment_s;
  if (video.dataset.src !== src) {
    video.dataset.src = src;
    video.dataset.ready = "";
    video.src = src;
    video.addEventListener("loadedmetadata", () => { video.dataset.ready = "1"; if (seek) seekVideo(at); }, { once: true });
  } else if (seek) {
    seekVideo(at);
  }
  spanEnd = null;
  drawCurve(r);
  drawScrub();
  if (push) saveUrl(true);
  // In view: on a phone the panel is an overlay (CSS); on a narrow window it sits above the results.
  const box = panel.getBoundingClientRect();
  if (box.top < 0 || box.top > window.innerHeight - 80) panel.scrollIntoView({ block: "start" });
}

function seekVideo(t) {
  const video = $("player");
  if (video.readyState >= 1) video.currentTime = t;
  else video.addEventListener("loadedmetadata", () => { video.currentTime = t; }, { once: true });
}

// A clip that is not among the results shown (a shared link, a clip id in SQL results): its stored details,
// without a query's curve; the player opens at t (default: the clip's middle).
function hitFromClip(c, t) {
  const mid = t != null ? Math.min(Math.max(t, c.start_s), c.end_s) : (c.start_s + c.end_s) / 2;
  return { clip_id: c.clip_id, video_id: c.video_id, path: c.path, start_s: c.start_s, end_s: c.end_s,
           moment_s: mid, moment_start_s: mid, moment_end_s: mid, saliency: [], frame_times: c.frame_times || [],
           labels: c.labels.map((l) => ({ label: l.label, score: l.score })), attributes: c.attributes.map((a) =>
             ({ attribute: a.attribute, score: a.score })), score: null, rank: null, stored: true };
}

async function openClipById(clipId, t = null, push = true) {
  const hit = lastResults.find((r) => r.clip_id === clipId);
  if (hit) { openResult(hit, { push, t }); return; }
  try {
    const c = await api(clipUrl(clipId));
    openResult(hitFromClip(c, t), { push, t });
  } catch (err) {
    showError($("error"), err);
  }
}

// The moment's span: the joined span when it crosses into a neighbouring result clip (docs/search.md).
function momentSpan(r) {
  if (r.joined) return [r.joined.start_s, r.joined.end_s];
  return [r.moment_start_s ?? r.moment_s, r.moment_end_s ?? r.moment_s];
}

function curveX(r, t) { return Math.min(1000, Math.max(0, 1000 * (t - r.start_s) / Math.max(1e-6, r.end_s - r.start_s))); }

// The saliency curve: the share of the clip's match at each sampled frame (it sums to 100 % over the frames).
// Each frame's value holds halfway to its neighbours, the first from the clip's start and the last to its end
// (no blank tail read as "missing"); the y
// scale runs from 0 to at least twice an even share, so a flat curve is drawn flat, halfway up.
function drawCurve(r) {
  const c = $("curve");
  c.replaceChildren();
  const [ms, me] = momentSpan(r);
  $("c-title").textContent = r.stored ? "The clip (open it from a search to see how each moment matches)"
    : lastQuery && lastQuery.kind === "text" ? "How well each moment matches your words"
    : "How well each moment matches the example";
  $("c-start").textContent = fmt(r.start_s);
  $("c-end").textContent = fmt(r.end_s);
  const label = $("c-moment");
  label.textContent = r.stored ? `opened at ${fmt(r.moment_s)}` : ms < me ? `moment ${fmt(ms)}–${fmt(me)}` : `moment ${fmt(r.moment_s)}`;
  label.style.left = `${(curveX(r, r.moment_s) / 10).toFixed(1)}%`;
  c.setAttribute("aria-valuemin", r.start_s);
  c.setAttribute("aria-valuemax", r.end_s);
  c.setAttribute("aria-valuenow", r.moment_s);
  const n = r.saliency.length;
  $("c-ymax").textContent = ""; $("c-ymid").textContent = "";
  if (n) {
    const ymax = Math.max(...r.saliency, 2 / n);
    const y = (v) => (118 - 112 * v / ymax).toFixed(1);
    const pts = [];
    const ft = r.frame_times;                // frame i stands for the time around it, up to halfway to its neighbours
    ft.forEach((t, i) => {
      const x0 = i === 0 ? 0 : curveX(r, (ft[i - 1] + t) / 2), x1 = i + 1 < n ? curveX(r, (t + ft[i + 1]) / 2) : 1000;
      pts.push(`${x0.toFixed(1)},${y(r.saliency[i])}`, `${x1.toFixed(1)},${y(r.saliency[i])}`);
    });
    c.append(svg("line", { class: "grid", x1: 0, x2: 1000, y1: y(ymax / 2), y2: y(ymax / 2) }));
    if (me > ms) c.append(svg("rect", { class: "span", x: curveX(r, ms), y: 0, width: Math.max(2, curveX(r, me) - curveX(r, ms)), height: 120 }));
    c.append(svg("polygon", { class: "area", points: `0,120 ${pts.join(" ")} 1000,120` }));
    $("c-ymax").textContent = `${Math.round(100 * ymax)}%`;
    $("c-ymid").textContent = `${Math.round(50 * ymax)}%`;
  }
  const mx = curveX(r, r.moment_s);
  c.append(svg("line", { class: "moment", x1: mx, x2: mx, y1: 0, y2: 120 }));
  c.append(svg("line", { class: "head", id: "playhead", x1: mx, x2: mx, y1: 0, y2: 120 }));
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
// The time in the URL follows the player when it stops moving (replaceState: no history entry per seek).
for (const ev of ["pause", "seeked"]) $("player").addEventListener(ev, () => { if (current && !$("player-panel").hidden) saveUrl(false); });
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
$("p-close").addEventListener("click", () => closePlayer(true));
function closePlayer(push = true) {
  $("player").pause();
  $("player-panel").hidden = true;
  document.body.classList.remove("playing");
  const card = current && document.querySelector(`.card[data-clip="${CSS.escape(current.clip_id)}"]`);
  current = null;
  spanEnd = null;
  $("curve").replaceChildren();
  $("scrub").replaceChildren();
  if (push) { saveUrl(true); if (card) card.focus(); }
}

// ---- search form, drop, keys ----------------------------------------------------------------------------
$("search-form").addEventListener("submit", (e) => { e.preventDefault(); runSearch("text", $("q").value); });
$("f-group").addEventListener("change", () => { if (lastQuery && lastQuery.kind !== "video") runSearch(lastQuery.kind, lastQuery.value, { keepFeedback: true }); });
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
  if (e.key === "Escape" && !$("player-panel").hidden) closePlayer(true);
});

// ---- tags view ------------------------------------------------------------------------------------------
function showView(name, push = true) {
  const was = $("view-tags").hidden ? "search" : "tags";
  $("view-search").hidden = name !== "search";
  $("view-tags").hidden = name !== "tags";
  $("tab-search").setAttribute("aria-pressed", String(name === "search"));
  $("tab-tags").setAttribute("aria-pressed", String(name === "tags"));
  if (name === "tags" && was !== "tags") loadStats();
  if (push && was !== name) saveUrl(true);
}
$("tab-search").addEventListener("click", () => showView("search"));
$("tab-tags").addEventListener("click", () => showView("tags"));

const CLIP_ID = /^[0-9a-f]{8,64}\/\d{1,9}$/;
function table(columns, rows) {
  return el("div", { class: "table-wrap" }, el("table", {},
    el("thead", {}, el("tr", {}, ...columns.map((c) => el("th", { text: c, scope: "col" })))),
    el("tbody", {}, ...rows.map((row) => el("tr", {}, ...row.map((v) => {
      const s = v == null ? "NULL" : typeof v === "object" ? JSON.stringify(v) : String(v);
      if (typeof v === "string" && CLIP_ID.test(v)) {        // a clip id: opens the player
        return el("td", {}, el("button", { type: "button", class: "clip-link", "data-clip": v, title: "open this clip",
          text: v, onclick: () => { showView("search"); openClipById(v); } }));
      }
      return el("td", { text: s.length > 200 ? s.slice(0, 199) + "…" : s, title: s.length > 60 ? s.slice(0, 2000) : "" });
    }))))));
}

function fillBar(share) {            // width set through the CSSOM: the page's CSP allows no inline styles
  const f = el("span", { class: "fill" });
  f.style.width = `${(100 * share).toFixed(1)}%`;
  return f;
}

// A bar counts the clips whose TOP label is that label: clicking it lists exactly those (the filter
// top_label = '…', one card per clip, all of them as you scroll).
function showLabel(label) {
  $("q").value = label;
  $("f-label").value = "";
  $("f-min").value = "";
  $("f-where").value = `top_label = '${label.replace(/'/g, "''")}'`;
  $("f-group").checked = false;
  $("filters").open = true;
  showView("search", false);
  runSearch("text", label);
}

let statsLoaded = false;
async function loadStats() {
  try {
    const s = await api("/api/stats");
    $("store-info").textContent = `${s.videos} videos · ${s.clips} clips · ${s.errors} errors · model ${s.model_id || "none yet"}`;
    // Nothing searchable yet: said in the page's words (the server's own line names a command to run).
    const unsearchable = !s.searchable ? (s.errors
      ? `nothing searchable yet: every video failed to tag (${s.errors}); the errors are listed under Tags & SQL. ` +
        "Videos tagged from now on appear here as they are done."
      : "nothing searchable yet: no video has been tagged into this store. Videos appear here as they are tagged.") : null;
    const banner = unsearchable || s.warning;        // nothing searchable yet (every file failed, no batch) first
    $("banner").hidden = !banner;
    $("banner").textContent = unsearchable ? `⚠ ${unsearchable}` : s.warning ? `⚠ ${s.warning} (model: ${s.model})` : "";
    $("label-list").replaceChildren(...s.labels.map((l) => el("option", { value: l.label })));
    $("t-counts").textContent = `${s.labels.length} top labels over ${s.clips} clips`;
    const max = Math.max(1, ...s.labels.map((l) => l.clips));
    $("histogram").replaceChildren(...s.labels.map((l) => el("button", {
      type: "button", class: "bar", title: `show the ${l.clips} clip(s) whose top label is ${l.label}`, "data-label": l.label,
      onclick: () => showLabel(l.label),
    }, el("span", { text: l.label }), fillBar(l.clips / max), el("span", { class: "n", text: String(l.clips) }))));
    if (!s.labels.length) $("histogram").replaceChildren(el("p", { class: "muted", text: "no labels yet" }));
    $("errors").replaceChildren(s.error_report.length
      ? table(["path", "error", "tagged at"], s.error_report.map((e) => [e.path, e.error, e.tagged_at]))
      : el("p", { class: "muted", text: "No video failed to tag." }));
    $("sql-columns").replaceChildren(...Object.entries(s.tables || {}).map(([name, cols]) => el("p", {},
      el("strong", { text: name }), ": ", cols.map((c) => c[0]).join(", "))));
    // A store with nothing to search (empty, or only errors) opens on this view, unless a link asks otherwise.
    if (!statsLoaded && !s.searchable && !readUrl().q && !readUrl().like && !readUrl().clip) showView("tags", false);
    statsLoaded = true;
  } catch (err) {
    $("store-info").textContent = "";
    showError($("error"), err);
    showError($("sql-error"), err);
  }
}

// The README's example queries (the SQL box's "Examples" menu).
const SQL_EXAMPLES = [
  ["Label histogram (how often each label is a clip's top label)",
   "SELECT label, count(*) AS clips, round(avg(score), 3) AS mean_score\nFROM labels WHERE rank = 0 GROUP BY label ORDER BY clips DESC LIMIT 20"],
  ["Clips with a label, and the moment it happens",
   "SELECT l.clip_id, v.path, c.start_s, c.end_s, l.peak_s AS moment_s, round(l.score, 3) AS score\nFROM labels l\n" +
   "JOIN clips c ON c.clip_id = l.clip_id AND c.model_id = l.model_id\nJOIN videos v ON v.video_id = l.video_id AND v.model_id = l.model_id\n" +
   "WHERE l.label = 'surfing water' AND l.rank < 3 ORDER BY l.score DESC"],
  ["Clips whose top label changed between two models",
   "WITH a AS (SELECT clip_id, label FROM labels WHERE rank = 0 AND model_id = 'MODEL_ID_A'),\n     b AS (SELECT clip_id, label FROM labels WHERE rank = 0 AND model_id = 'MODEL_ID_B')\n" +
   "SELECT a.clip_id, a.label AS before, b.label AS after FROM a JOIN b USING (clip_id) WHERE a.label <> b.label"],
  ["Error report", "SELECT error, count(DISTINCT video_id) AS videos, min(path) AS example\nFROM videos WHERE status = 'error' GROUP BY error ORDER BY videos DESC"],
  ["The models of this store", "SELECT model_id, name, random_init, frames, window_s, label_set, created_at FROM models"],
];
$("sql-examples").append(...SQL_EXAMPLES.map(([title], i) => el("option", { value: String(i), text: title })));
$("sql-examples").addEventListener("change", (e) => {
  const ex = SQL_EXAMPLES[+e.target.value];
  if (ex) { $("sql").value = ex[1]; $("sql").focus(); }
});

const csvCell = (v) => {
  const s = v == null ? "" : typeof v === "object" ? JSON.stringify(v) : String(v);
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
};
let csvUrl = null;
function offerCsv(columns, rows) {
  if (csvUrl) URL.revokeObjectURL(csvUrl);
  const text = [columns, ...rows].map((row) => row.map(csvCell).join(",")).join("\r\n") + "\r\n";
  csvUrl = URL.createObjectURL(new Blob([text], { type: "text/csv;charset=utf-8" }));
  $("sql-csv").href = csvUrl;
  $("sql-csv").hidden = false;
}

async function runSql() {
  showError($("sql-error"), null);
  $("sql-csv").hidden = true;
  $("sql-out").replaceChildren(el("p", { class: "muted", text: "running…" }));
  try {
    const r = await api("/api/sql?q=" + encodeURIComponent($("sql").value));
    const note = `${r.rows.length} row(s) in ${(r.seconds * 1000).toFixed(0)} ms` + (r.truncated ? ` — cut at ${r.row_limit} rows` : "");
    $("sql-out").replaceChildren(el("p", { class: "muted", text: note }), table(r.columns, r.rows));
    offerCsv(r.columns, r.rows);
  } catch (err) {
    $("sql-out").replaceChildren();
    showError($("sql-error"), err);
  }
}
$("sql-form").addEventListener("submit", (e) => { e.preventDefault(); runSql(); });
$("sql").addEventListener("keydown", (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); runSql(); } });

loadStats();
applyUrl();
