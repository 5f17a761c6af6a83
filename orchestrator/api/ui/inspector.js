// The run inspector: plain DOM, no build step. Every value from the API is inserted as text, never HTML.
// This file: helpers, the key, navigation, threads and runs, following a stream; responses.js: the
// Responses face's views (responses and conversations).
"use strict";

const ACTIVE = new Set(["queued", "in_progress", "requires_action", "cancelling"]);
// `shown`: the id whose detail the right-hand pane shows (run_…, resp_… or conv_…).
const state = { key: null, view: "threads", threadId: null, shown: null, stream: null, detail: null, timeZero: 0 };
// Each list pane: loaded once per visit of its tab, paged by the id of its oldest entry.
const lists = {
  threads: { loaded: false, oldest: null },
  responses: { loaded: false, oldest: null },
  conversations: { loaded: false, oldest: null },
};

// --- small helpers ------------------------------------------------------------------------------

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props || {})) {
    if (name === "class") node.className = value;
    else if (name === "on") for (const [ev, fn] of Object.entries(value)) node.addEventListener(ev, fn);
    else node.setAttribute(name, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}
const $ = (id) => document.getElementById(id);
const pill = (status) => el("span", { class: "pill " + status, "data-status": status }, status);
const when = (unix) => (unix ? new Date(unix * 1000).toLocaleString() : "—");
const json = (value) => (typeof value === "string" ? value : JSON.stringify(value, null, 2));
function pretty(text) {
  try { return JSON.stringify(JSON.parse(text), null, 2); } catch { return text; }
}
function link(hash, text) {
  return el("a", { href: "#" + hash, class: "mono" }, text);
}
function messageText(message) {
  return (message.content || []).filter((p) => p.type === "text").map((p) => p.text.value).join("\n");
}

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(path) {
  const response = await fetch(path, { headers: { Authorization: "Bearer " + state.key } });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new ApiError(response.status, (body.error && body.error.message) || response.statusText);
  return body;
}

// --- the key ------------------------------------------------------------------------------------

function takeKeyFromFragment() {
  const params = new URLSearchParams(location.hash.slice(1));
  const key = params.get("key");
  if (!key) return;
  sessionStorage.setItem("orchestrator-key", key);
  params.delete("key");
  history.replaceState(null, "", location.pathname + (params.toString() ? "#" + params : ""));
}

function showLogin(message) {
  $("app").hidden = true;
  $("goto").hidden = true;
  $("logout").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message || "";
  $("who").textContent = "";
}

async function start() {
  state.key = sessionStorage.getItem("orchestrator-key");
  if (!state.key) return showLogin();
  try {
    await loadList("threads", true);
  } catch (error) {
    if (error.status === 401) {
      sessionStorage.removeItem("orchestrator-key");
      return showLogin(error.message);
    }
    throw error;
  }
  $("login").hidden = true;
  $("app").hidden = false;
  $("goto").hidden = false;
  $("logout").hidden = false;
  $("who").textContent = "key " + state.key.slice(0, 7) + "…";
  await route();
}

// --- navigation: the fragment holds thread= and run=, response=, conversation= or view= (never the key) --

function navigate(threadId, runId) {
  const params = new URLSearchParams();
  if (threadId) params.set("thread", threadId);
  if (runId) params.set("run", runId);
  location.hash = params.toString();
}

function viewOf(params) {
  if (params.get("response")) return "responses";
  if (params.get("conversation")) return "conversations";
  return lists[params.get("view")] ? params.get("view") : "threads";
}

async function route() {
  const params = new URLSearchParams(location.hash.slice(1));
  const view = viewOf(params);
  await showView(view);
  if (view === "threads") {
    const threadId = params.get("thread");
    if (threadId && threadId !== state.threadId) await loadRuns(threadId);
    await show(params.get("run"), loadRun, "Pick a run.");
  } else if (view === "responses") await show(params.get("response"), loadResponse, "Pick a response.");
  else await show(params.get("conversation"), loadConversation, "Pick a conversation.");
  markSelected();
}

// The detail pane shows `id` (loading it unless it already does), or a hint when nothing is picked.
async function show(id, load, hint) {
  if (id && id === state.shown) return;
  stopStream();
  state.shown = null;
  if (id) return load(id);
  $("run").replaceChildren(el("p", { class: "muted" }, hint));
}

async function showView(view) {
  state.view = view;
  for (const tab of document.querySelectorAll("#tabs [data-view]")) {
    const on = tab.dataset.view === view;
    tab.classList.toggle("selected", on);
    tab.setAttribute("aria-selected", String(on));
  }
  for (const name of Object.keys(lists)) $("pane-" + name).hidden = name !== view;
  $("runs").hidden = view !== "threads";
  $("app").classList.toggle("wide", view !== "threads");
  if (!lists[view].loaded) await loadList(view, true);
}

// A tab shows its list afresh (what was created since the page loaded, too).
function openView(view) {
  lists[view].loaded = false;
  const hash = "view=" + view;
  if (location.hash.slice(1) === hash) route().catch(report);
  else location.hash = hash;
}

function markSelected() {
  const picked = { "thread-list": state.threadId, "run-list": state.shown, "response-list": state.shown, "conversation-list": state.shown };
  for (const [list, id] of Object.entries(picked))
    for (const li of document.querySelectorAll(`#${list} li[data-id]`)) li.classList.toggle("selected", li.dataset.id === id);
}

// --- the lists: each kind's page of entries, newest first ----------------------------------------------

// (responses.js defines the entries of the last two: called, not named, so its loading later is fine.)
const LISTS = {
  threads: { path: "threads", list: "thread-list", more: "more-threads", none: "No threads yet.", entry: threadEntry },
  responses: { path: "responses", list: "response-list", more: "more-responses", none: "No responses yet.", entry: (r) => responseEntry(r) },
  conversations: { path: "conversations", list: "conversation-list", more: "more-conversations", none: "No conversations yet.", entry: (c) => conversationEntry(c) },
};

async function loadList(view, fresh) {
  const kind = LISTS[view];
  const seen = lists[view];
  const query = fresh || !seen.oldest ? "" : "&before=" + encodeURIComponent(seen.oldest);
  const page = await api(`/ui/api/${kind.path}?limit=50` + query);
  const list = $(kind.list);
  if (fresh) list.replaceChildren();
  if (fresh && !page.data.length) list.append(el("li", { class: "muted" }, kind.none));
  for (const entry of page.data) list.append(kind.entry(entry));
  seen.oldest = page.data.length ? page.data[page.data.length - 1].id : fresh ? null : seen.oldest;
  seen.loaded = true;
  $(kind.more).hidden = !page.has_more;
  markSelected();
}

// --- threads and runs -----------------------------------------------------------------------------

function threadEntry(thread) {
  const last = thread.last_run;
  return el("li", { "data-id": thread.id, on: { click: () => navigate(thread.id) } },
    el("div", { class: "id" }, thread.id),
    el("div", { class: "sub" }, thread.preview || "(no messages)"),
    el("div", { class: "meta" }, when(thread.created_at), " · ", `${thread.runs} ${thread.runs === 1 ? "run" : "runs"}`,
      last ? pill(last.status) : null));
}

async function loadRuns(threadId) {
  state.threadId = threadId;
  const body = await api("/ui/api/threads/" + encodeURIComponent(threadId) + "/runs?limit=100");
  $("runs-thread").textContent = threadId;
  const list = $("run-list");
  list.replaceChildren();
  if (!body.runs.length) list.append(el("li", { class: "muted" }, "No runs."));
  for (const run of body.runs) {
    list.append(
      el("li", { "data-id": run.id, on: { click: () => navigate(threadId, run.id) } },
        el("div", { class: "id" }, run.id),
        el("div", { class: "meta" }, pill(run.status), run.model, " · ", when(run.created_at)))
    );
  }
  markSelected();
}

// --- one run ----------------------------------------------------------------------------------------

async function loadRun(runId) {
  stopStream();
  state.shown = runId;
  const detail = await api("/ui/api/runs/" + encodeURIComponent(runId));
  if (detail.run.thread_id !== state.threadId) await loadRuns(detail.run.thread_id);
  state.detail = detail;
  renderRun(detail);
  markSelected();
  if (ACTIVE.has(detail.run.status)) follow(runSource(detail));
}

function renderRun(detail) {
  const run = detail.run;
  const root = $("run");
  root.replaceChildren(
    el("div", { class: "runhead" }, el("span", { class: "id", id: "run-id" }, run.id), pill(run.status),
      el("span", { class: "muted" }, "thread ", run.thread_id)),
    summary(detail),
    el("div", { id: "live", hidden: "" }),
    el("h3", {}, "Timeline"),
    timeline(detail),
    el("h3", {}, "Steps"),
    steps(detail.steps),
    el("h3", {}, "Messages"),
    messages(detail.messages, run.id),
  );
  if (run.instructions) root.append(el("h3", {}, "Instructions"), el("pre", {}, run.instructions));
}

function summary(detail) {
  const run = detail.run;
  const inside = detail.internals;
  const usage = run.usage;
  const ended = run.completed_at || run.failed_at || run.cancelled_at;
  const item = (label, ...value) => el("div", {}, el("span", {}, label), ...value);
  return el("div", { class: "summary", id: "summary" },
    item("model", run.model),
    item("created", when(run.created_at)),
    item("started", when(run.started_at)),
    item("ended", when(ended)),
    item("duration", ended && run.created_at ? ended - run.created_at + " s" : "—"),
    item("usage", usage ? `${usage.prompt_tokens} prompt + ${usage.completion_tokens} completion = ${usage.total_tokens}` : "—"),
    item("tools", (run.tools || []).map((t) => (t.function ? t.function.name : t.type)).join(", ") || "none"),
    ...internals(inside, item),
    run.last_error ? item("last error", el("span", { class: "error" }, run.last_error.code + ": " + run.last_error.message)) : null,
    run.incomplete_details ? item("incomplete", json(run.incomplete_details)) : null,
  );
}

// The engine's side of a run or a response: turns, fencing version, events numbered, takeovers, lease.
function internals(inside, item) {
  return [
    item("turns", String(inside.turn)),
    item("version", String(inside.version)),
    item("events numbered", String(inside.event_seq)),
    item("lease takeovers", String(inside.takeovers)),
    item("lease", inside.lease_held ? `held, ${inside.lease_expires_in} s left` : "free"),
  ];
}

function timeline(detail) {
  const first = detail.events.length ? detail.events[0].at : 0;
  const body = el("tbody", { id: "timeline-body" });
  state.timeZero = first;
  for (const event of detail.events) body.append(eventRow(event, first, false));
  return el("table", { id: "timeline" },
    el("thead", {}, el("tr", {}, el("th", {}, "seq"), el("th", {}, "t"), el("th", {}, "event"), el("th", {}, "details"))),
    body);
}

function eventRow(event, zero, live) {
  const since = (at) => "+" + (at - zero).toFixed(3) + " s";
  if (event.count) return stretchRow(event, since, live);
  const offset = event.at !== undefined ? since(event.at) : "live";
  return el("tr", { class: live ? "live" : "", "data-event": event.event, "data-seq": String(event.seq) },
    el("td", { class: "seq" }, String(event.seq)),
    el("td", { class: "t" }, offset),
    el("td", { class: "ev" }, event.event),
    el("td", {}, describe(event.event, event.data)));
}

// A stretch of deltas of one kind, collapsed into one row: its numbers, times and count.
function stretchRow(event, since, live) {
  const row = el("tr", { class: "stretch" + (live ? " live" : ""), "data-event": event.event, "data-seq": String(event.seq) });
  fillStretch(row, event, since);
  return row;
}

function fillStretch(row, event, since) {
  const start = event.at !== undefined ? since(event.at) : "live";
  const end = event.until !== undefined ? since(event.until) : "live";
  const times = start === end ? start : `${start} … ${end}`;
  if (event.at !== undefined) row.dataset.at = String(event.at);
  row.dataset.count = String(event.count);
  row.dataset.last = String(event.last_seq);
  row.replaceChildren(
    el("td", { class: "seq" }, event.count > 1 ? `${event.seq}–${event.last_seq}` : String(event.seq)),
    el("td", { class: "t" }, times),
    el("td", { class: "ev" }, event.event),
    el("td", { class: "muted count" }, `× ${event.count}`));
}

function describe(name, data) {
  if (!data) return "";
  if (name.startsWith("response.")) return describeResponseEvent(name, data);
  if (name.startsWith("thread.run.step.")) {
    const parts = [data.type.replace("_", " "), " ", pill(data.status)];
    const calls = (data.step_details && data.step_details.tool_calls) || [];
    for (const call of calls) {
      const fn = call.function || {};
      parts.push(el("div", { class: "mono" }, `${fn.name}(${fn.arguments})`, fn.output !== null && fn.output !== undefined ? " → " + fn.output : ""));
    }
    if (data.usage) parts.push(el("div", { class: "muted" }, `usage ${data.usage.total_tokens} tokens`));
    return el("div", {}, parts);
  }
  if (name.startsWith("thread.run.")) {
    const parts = [pill(data.status)];
    const action = data.required_action && data.required_action.submit_tool_outputs;
    if (action) for (const call of action.tool_calls) parts.push(el("div", { class: "mono" }, `asks ${call.function.name}(${call.function.arguments}) [${call.id}]`));
    if (data.last_error) parts.push(el("div", { class: "error" }, `${data.last_error.code}: ${data.last_error.message}`));
    if (data.usage && !ACTIVE.has(data.status)) parts.push(el("div", { class: "muted" }, `usage ${data.usage.total_tokens} tokens`));
    return el("div", {}, parts);
  }
  if (name.startsWith("thread.message.")) {
    const text = messageText(data);
    return el("div", {}, data.role, " ", pill(data.status), text ? el("div", { class: "mono" }, text.length > 300 ? text.slice(0, 300) + "…" : text) : null);
  }
  if (name === "thread.created") return el("span", { class: "mono" }, data.id);
  return "";
}

function steps(list) {
  if (!list.length) return el("p", { class: "muted", id: "steps" }, "No steps yet.");
  return el("div", { id: "steps" }, list.map((step) => {
    const calls = (step.step_details.tool_calls || []).map((call) => el("div", { class: "call", "data-tool": call.function.name },
      el("span", { class: "muted" }, "tool call"), el("b", {}, call.function.name + "  ", el("span", { class: "muted" }, call.id)),
      el("span", { class: "muted" }, "arguments"), el("pre", { class: "args" }, pretty(call.function.arguments)),
      el("span", { class: "muted" }, "output"), el("pre", { class: "output" }, call.function.output === null ? "(waiting for output)" : call.function.output)));
    const created = step.step_details.message_creation;
    return el("div", { class: "card step", "data-type": step.type },
      el("div", { class: "head" }, el("b", {}, step.type.replace("_", " ")), pill(step.status), el("span", { class: "mono muted" }, step.id)),
      created ? el("div", { class: "muted" }, "message ", created.message_id) : null,
      calls,
      step.usage ? el("div", { class: "muted" }, `usage: ${step.usage.prompt_tokens} prompt + ${step.usage.completion_tokens} completion`) : null,
      step.last_error ? el("div", { class: "error" }, step.last_error.message) : null);
  }));
}

function messages(list, runId) {
  if (!list.length) return el("p", { class: "muted", id: "messages" }, "No messages.");
  return el("div", { id: "messages" }, list.map((message) => el("div", { class: `msg ${message.role}` + (message.run_id === runId ? " this-run" : "") },
    el("div", { class: "who" }, message.role, " · ", message.id, " · ", when(message.created_at), message.run_id === runId ? " · this run" : ""),
    el("pre", {}, messageText(message) || "(empty)"))));
}

// --- live events: an SSE stream read with fetch(), so the key can go in a header ----------------------

function stopStream() {
  if (state.stream) state.stream.abort();
  state.stream = null;
}

// How to follow a run: its events stream from after the last stored event (Last-Event-ID); each leg (a
// terminal status or requires_action) ends with a `done` frame.
function runSource(detail) {
  const events = detail.events;
  const run = detail.run;
  return {
    id: run.id,
    url: `/v1/threads/${encodeURIComponent(run.thread_id)}/runs/${encodeURIComponent(run.id)}/events`,
    headers: { "Last-Event-ID": String(events.length ? events[events.length - 1].seq : 0) },
    onFrame: (frame, box) => { if (frame.event === "done") return true; onLive(frame, box.text, box.status); box.count(); return false; },
    ended: "leg ended",
    load: loadRun,
  };
}

// Follow `source` live in the #live box until its stream ends, then reload it from the log.
async function follow(source) {
  const live = $("live");
  const status = el("span", { class: "state", id: "live-state" }, "listening…");
  const text = el("pre", { id: "live-text" });
  const counter = el("span", { id: "live-count" }, "0");
  live.replaceChildren(el("div", {}, "Live: ", status, " · events received: ", counter), text);
  live.hidden = false;
  const controller = new AbortController();
  state.stream = controller;
  let received = 0;
  const box = { text, status, count: () => { received += 1; counter.textContent = String(received); } };
  let ended = false;
  try {
    const response = await fetch(source.url, {
      headers: { Authorization: "Bearer " + state.key, Accept: "text/event-stream", ...source.headers },
      signal: controller.signal,
    });
    if (!response.ok) throw new Error("stream answered " + response.status);
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const frame = parseFrame(buffer.slice(0, cut));
        buffer = buffer.slice(cut + 2);
        if (frame && source.onFrame(frame, box)) ended = true;
      }
    }
  } catch (error) {
    if (controller.signal.aborted) return;
    status.textContent = "stream error: " + error.message;
  }
  if (state.stream !== controller) return;
  state.stream = null;
  status.textContent = ended ? source.ended : "disconnected; reloading";
  setTimeout(() => { if (state.shown === source.id) reload(source); }, ended ? 100 : 1000);
}

async function reload(source) {
  state.shown = null;
  await source.load(source.id);
}

function parseFrame(block) {
  const frame = { id: 0, event: "message", data: "" };
  const data = [];
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "id") frame.id = Number(value);
    else if (field === "event") frame.event = value;
    else if (field === "data") data.push(value);
  }
  if (!data.length) return null;
  frame.data = data.join("\n");
  return frame;
}

function onLive(frame, text, status) {
  let data = null;
  try { data = JSON.parse(frame.data); } catch { /* [DONE] */ }
  if (frame.event === "thread.message.delta" && data) {
    for (const part of data.delta.content || []) if (part.text) text.textContent += part.text.value;
    return;
  }
  if (frame.event === "thread.run.step.delta") return;
  if (data && data.status && frame.event.startsWith("thread.run.") && !frame.event.startsWith("thread.run.step")) status.textContent = data.status;
  $("timeline-body").append(eventRow({ seq: frame.id, event: frame.event, data }, state.timeZero, true));
}

// --- wiring ---------------------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  takeKeyFromFragment();
  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem("orchestrator-key", $("key").value.trim());
    $("key").value = "";
    start().catch(report);
  });
  $("logout").addEventListener("click", () => {
    stopStream();
    sessionStorage.removeItem("orchestrator-key");
    state.key = null;
    showLogin();
  });
  for (const view of Object.keys(LISTS)) $(LISTS[view].more).addEventListener("click", () => loadList(view, false).catch(report));
  for (const tab of document.querySelectorAll("#tabs [data-view]")) tab.addEventListener("click", () => openView(tab.dataset.view));
  $("goto").addEventListener("submit", (event) => {
    event.preventDefault();
    const id = $("goto-id").value.trim();
    if (id.startsWith("run_")) {
      showView("threads").then(() => { state.shown = null; return loadRun(id); }).then(() => navigate(state.threadId, id)).catch(report);
    } else if (id.startsWith("thread")) navigate(id);
    else if (id.startsWith("resp_")) location.hash = new URLSearchParams({ response: id });
    else if (id.startsWith("conv_")) location.hash = new URLSearchParams({ conversation: id });
  });
  window.addEventListener("hashchange", () => route().catch(report));
  start().catch(report);
});

function report(error) {
  const box = $("run");
  box.replaceChildren(el("p", { class: "error", id: "error" }, error.message || String(error)));
}
