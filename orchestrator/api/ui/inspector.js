// The run inspector: plain DOM, no build step. Every value from the API is inserted as text, never HTML.
"use strict";

const ACTIVE = new Set(["queued", "in_progress", "requires_action", "cancelling"]);
const state = { key: null, threadId: null, runId: null, oldest: null, stream: null, detail: null };

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
    await loadThreads(true);
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

// --- navigation: the fragment holds thread= and run= (never the key) ------------------------------

function navigate(threadId, runId) {
  const params = new URLSearchParams();
  if (threadId) params.set("thread", threadId);
  if (runId) params.set("run", runId);
  location.hash = params.toString();
}

async function route() {
  const params = new URLSearchParams(location.hash.slice(1));
  const threadId = params.get("thread");
  const runId = params.get("run");
  if (threadId && threadId !== state.threadId) await loadRuns(threadId);
  if (runId && runId !== state.runId) await loadRun(runId);
  markSelected();
}

function markSelected() {
  for (const li of document.querySelectorAll("#thread-list li[data-id]"))
    li.classList.toggle("selected", li.dataset.id === state.threadId);
  for (const li of document.querySelectorAll("#run-list li[data-id]"))
    li.classList.toggle("selected", li.dataset.id === state.runId);
}

// --- threads and runs -----------------------------------------------------------------------------

async function loadThreads(fresh) {
  const query = fresh || !state.oldest ? "" : "&before=" + encodeURIComponent(state.oldest);
  const page = await api("/ui/api/threads?limit=50" + query);
  const list = $("thread-list");
  if (fresh) list.replaceChildren();
  if (fresh && !page.data.length) list.append(el("li", { class: "muted" }, "No threads yet."));
  for (const thread of page.data) {
    const last = thread.last_run;
    list.append(
      el("li", { "data-id": thread.id, on: { click: () => navigate(thread.id) } },
        el("div", { class: "id" }, thread.id),
        el("div", { class: "sub" }, thread.preview || "(no messages)"),
        el("div", { class: "meta" }, when(thread.created_at), " · ", `${thread.runs} ${thread.runs === 1 ? "run" : "runs"}`,
          last ? pill(last.status) : null))
    );
  }
  state.oldest = page.data.length ? page.data[page.data.length - 1].id : state.oldest;
  $("more-threads").hidden = !page.has_more;
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
  state.runId = runId;
  const detail = await api("/ui/api/runs/" + encodeURIComponent(runId));
  if (detail.run.thread_id !== state.threadId) await loadRuns(detail.run.thread_id);
  state.detail = detail;
  renderRun(detail);
  markSelected();
  if (ACTIVE.has(detail.run.status)) follow(detail);
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
    item("turns", String(inside.turn)),
    item("lease takeovers", String(inside.takeovers)),
    item("lease", inside.lease_held ? `held, ${inside.lease_expires_in} s left` : "free"),
    run.last_error ? item("last error", el("span", { class: "error" }, run.last_error.code + ": " + run.last_error.message)) : null,
    run.incomplete_details ? item("incomplete", json(run.incomplete_details)) : null,
  );
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
  const offset = event.at !== undefined ? "+" + (event.at - zero).toFixed(3) + " s" : "live";
  return el("tr", { class: live ? "live" : "", "data-event": event.event, "data-seq": String(event.seq) },
    el("td", { class: "seq" }, String(event.seq)),
    el("td", { class: "t" }, offset),
    el("td", { class: "ev" }, event.event),
    el("td", {}, describe(event.event, event.data)));
}

function describe(name, data) {
  if (!data) return "";
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

// --- live events: the run's SSE stream read with fetch(), so the key can go in a header --------------

function stopStream() {
  if (state.stream) state.stream.abort();
  state.stream = null;
}

async function follow(detail) {
  const events = detail.events;
  let cursor = events.length ? events[events.length - 1].seq : 0;
  const live = $("live");
  const status = el("span", { class: "state", id: "live-state" }, "listening…");
  const text = el("pre", { id: "live-text" });
  const counter = el("span", { id: "live-count" }, "0");
  live.replaceChildren(el("div", {}, "Live: ", status, " · events received: ", counter), text);
  live.hidden = false;
  const controller = new AbortController();
  state.stream = controller;
  let received = 0;
  let ended = false;
  try {
    const response = await fetch(`/v1/threads/${encodeURIComponent(detail.run.thread_id)}/runs/${encodeURIComponent(detail.run.id)}/events`, {
      headers: { Authorization: "Bearer " + state.key, "Last-Event-ID": String(cursor), Accept: "text/event-stream" },
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
        if (!frame) continue;
        if (frame.event === "done") { ended = true; continue; }
        cursor = frame.id || cursor;
        received += 1;
        counter.textContent = String(received);
        onLive(frame, text, status);
      }
    }
  } catch (error) {
    if (controller.signal.aborted) return;
    status.textContent = "stream error: " + error.message;
  }
  if (state.stream !== controller) return;
  state.stream = null;
  status.textContent = ended ? "leg ended" : "disconnected; reloading";
  // The stream ends with each leg (a terminal status or requires_action): reload the run from the log.
  setTimeout(() => { if (state.runId === detail.run.id) reloadRun(); }, ended ? 100 : 1000);
}

async function reloadRun() {
  const runId = state.runId;
  state.runId = null;
  await loadRun(runId);
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
  $("more-threads").addEventListener("click", () => loadThreads(false).catch(report));
  $("goto").addEventListener("submit", (event) => {
    event.preventDefault();
    const id = $("goto-id").value.trim();
    if (id.startsWith("run_")) { state.runId = null; loadRun(id).then(() => navigate(state.threadId, id)).catch(report); }
    else if (id.startsWith("thread")) navigate(id);
  });
  window.addEventListener("hashchange", () => route().catch(report));
  start().catch(report);
});

function report(error) {
  const box = $("run");
  box.replaceChildren(el("p", { class: "error", id: "error" }, error.message || String(error)));
}
