// The run inspector's views of the Responses face: responses and conversations (inspector.js holds the
// helpers, navigation and the stream reader). Every value from the API is inserted as text, never HTML.
"use strict";

const RESPONSE_ENDS = new Set(["response.completed", "response.failed", "response.incomplete", "response.cancelled"]);

// --- list entries --------------------------------------------------------------------------------------

function responseEntry(response) {
  return el("li", { "data-id": response.id, on: { click: () => { location.hash = new URLSearchParams({ response: response.id }); } } },
    el("div", { class: "id" }, response.id),
    el("div", { class: "sub" }, response.preview || "(no input text)"),
    el("div", { class: "meta" }, when(response.created_at), " · ", response.model, pill(response.status), ...flags(response)));
}

function flags(response) {
  return [
    response.background ? el("span", { class: "tag" }, "background") : null,
    response.store ? null : el("span", { class: "tag" }, "not stored"),
    response.conversation_id ? el("span", { class: "mono" }, "in " + response.conversation_id) : null,
    response.previous_response_id ? el("span", { class: "mono" }, "after " + response.previous_response_id) : null,
  ];
}

function conversationEntry(conversation) {
  const count = conversation.items;
  return el("li", { "data-id": conversation.id, on: { click: () => { location.hash = new URLSearchParams({ conversation: conversation.id }); } } },
    el("div", { class: "id" }, conversation.id),
    el("div", { class: "sub" }, conversation.preview || "(no items)"),
    el("div", { class: "meta" }, when(conversation.created_at), " · ", `${count} ${count === 1 ? "item" : "items"}`));
}

// --- one response ------------------------------------------------------------------------------------------

async function loadResponse(responseId) {
  stopStream();
  state.shown = responseId;
  const detail = await api("/ui/api/responses/" + encodeURIComponent(responseId));
  if (state.shown !== responseId) return; // another pick came meanwhile
  state.detail = detail;
  renderResponse(detail);
  markSelected();
  if (ACTIVE.has(detail.engine.status)) follow(responseSource(detail));
}

function renderResponse(detail) {
  const response = detail.response;
  const root = $("run");
  root.replaceChildren(
    el("div", { class: "runhead" }, el("span", { class: "id", id: "response-id" }, response.id), pill(response.status),
      ...flags({ background: response.background, store: response.store })),
    responseSummary(detail),
    el("div", { id: "live", hidden: "" }),
    el("h3", {}, "Timeline"),
    timeline(detail),
    el("h3", {}, "Input items"),
    itemList(detail.input, "input-items", "No input items."),
    el("h3", {}, "Output items"),
    itemList(detail.output, "output-items", "No output items yet."),
  );
  if (response.instructions) root.append(el("h3", {}, "Instructions"), el("pre", {}, response.instructions));
}

function responseSummary(detail) {
  const response = detail.response;
  const engine = detail.engine;
  const usage = response.usage;
  const item = (label, ...value) => el("div", {}, el("span", {}, label), ...value);
  const shownStatus = engine.status !== response.status ? item("engine status", engine.status) : null;
  return el("div", { class: "summary", id: "summary" },
    item("model", response.model),
    item("created", when(response.created_at)),
    item("started", when(engine.started_at)),
    item("ended", when(engine.ended_at)),
    item("duration", engine.ended_at && response.created_at ? engine.ended_at - response.created_at + " s" : "—"),
    item("usage", usage ? `${usage.input_tokens} input + ${usage.output_tokens} output = ${usage.total_tokens}` : "—"),
    item("tools", (response.tools || []).map((t) => t.name || t.type).join(", ") || "none"),
    item("previous response", response.previous_response_id ? link(new URLSearchParams({ response: response.previous_response_id }), response.previous_response_id) : "—"),
    item("conversation", response.conversation ? link(new URLSearchParams({ conversation: response.conversation.id }), response.conversation.id) : "—"),
    shownStatus,
    ...internals(detail.internals, item),
    response.error ? item("error", el("span", { class: "error" }, response.error.code + ": " + response.error.message)) : null,
    response.incomplete_details ? item("incomplete", json(response.incomplete_details)) : null,
  );
}

// A timeline row's details for a response's event.
function describeResponseEvent(name, data) {
  if (data.response) {
    const shown = data.response;
    const parts = [pill(shown.status)];
    if (shown.error) parts.push(el("div", { class: "error" }, `${shown.error.code}: ${shown.error.message}`));
    if (shown.usage && RESPONSE_ENDS.has(name)) parts.push(el("div", { class: "muted" }, `usage ${shown.usage.total_tokens} tokens`));
    return el("div", {}, parts);
  }
  if (data.item) return el("div", {}, data.item.type, " ", data.item.status ? pill(data.item.status) : null, el("div", { class: "mono" }, clip(itemLine(data.item))));
  if (data.part) return el("span", { class: "mono" }, data.part.type);
  if (typeof data.text === "string") return el("div", { class: "mono" }, clip(data.text));
  if (typeof data.arguments === "string") return el("div", { class: "mono" }, clip(data.arguments));
  if (data.annotation) return el("span", { class: "mono" }, clip(JSON.stringify(data.annotation)));
  return "";
}

const clip = (text) => (text.length > 300 ? text.slice(0, 300) + "…" : text);

// --- items: a response's input and output, a conversation's ---------------------------------------------

function itemList(items, id, none) {
  if (!items.length) return el("p", { class: "muted", id }, none);
  return el("div", { id }, items.map((item) => itemCard(item)));
}

function itemCard(item, note) {
  return el("div", { class: "card item " + (item.role || ""), "data-type": item.type, "data-id": item.id || "" },
    el("div", { class: "head" }, el("b", {}, item.type.replaceAll("_", " ")), item.role ? el("span", {}, item.role) : null,
      item.status ? pill(item.status) : null, el("span", { class: "mono muted" }, item.id || ""), note ? el("span", { class: "muted" }, note) : null),
    itemBody(item));
}

function itemBody(item) {
  if (item.type === "message") return [el("pre", {}, itemLine(item) || "(empty)"), annotations(item)];
  if (item.type === "function_call") return el("div", { class: "mono" }, `${item.name}(${item.arguments})`, el("span", { class: "muted" }, "  " + item.call_id));
  if (item.type === "function_call_output") return [el("div", { class: "muted" }, "output of ", item.call_id), el("pre", {}, json(item.output))];
  const rest = Object.fromEntries(Object.entries(item).filter(([key]) => !["id", "type", "status", "role"].includes(key)));
  return el("pre", {}, json(rest));
}

// An item in a line: a message's text, a function call, else its type.
function itemLine(item) {
  if (item.type === "message") return partsText(item.content);
  if (item.type === "function_call") return `${item.name}(${item.arguments || ""})`;
  return item.type;
}

function partsText(content) {
  if (typeof content === "string") return content;
  return (content || []).map((part) => {
    if (typeof part.text === "string") return part.text;
    if (typeof part.refusal === "string") return "refusal: " + part.refusal;
    return `[${part.type} ${part.file_id || part.image_url || part.filename || ""}]`;
  }).join("\n");
}

function annotations(item) {
  const found = (Array.isArray(item.content) ? item.content : []).flatMap((part) => part.annotations || []);
  if (!found.length) return null;
  return el("div", { class: "muted annotations" }, "annotations: ", found.map((a) => JSON.stringify(a)).join(", "));
}

// --- following a response live: its stream replayed from after the last stored event --------------------

function responseSource(detail) {
  const events = detail.events;
  const last = events.length ? events[events.length - 1] : null;
  const after = last ? (last.last_seq !== undefined ? last.last_seq : last.seq) : null;
  const query = new URLSearchParams({ stream: "true" });
  if (after !== null) query.set("starting_after", String(after));
  return {
    id: detail.response.id,
    url: `/v1/responses/${encodeURIComponent(detail.response.id)}?` + query,
    headers: {},
    onFrame: (frame, box) => { box.count(); return onResponseLive(frame, box); },
    ended: "ended",
    load: loadResponse,
  };
}

// One live event: deltas grow the reply and the timeline's open stretch, others are rows. True at the end.
function onResponseLive(frame, box) {
  let data = null;
  try { data = JSON.parse(frame.data); } catch { return false; }
  const seq = data.sequence_number;
  if (frame.event.endsWith(".delta")) {
    if (frame.event === "response.output_text.delta") box.text.textContent += data.delta;
    growStretch(frame.event, seq);
    return false;
  }
  if (data.response && data.response.status) box.status.textContent = data.response.status;
  $("timeline-body").append(eventRow({ seq, event: frame.event, data }, state.timeZero, true));
  return RESPONSE_ENDS.has(frame.event);
}

function growStretch(name, seq) {
  const body = $("timeline-body");
  const row = body.lastElementChild;
  const since = (at) => "+" + (at - state.timeZero).toFixed(3) + " s";
  if (row && row.classList.contains("stretch") && row.dataset.event === name && Number(row.dataset.last) === seq - 1) {
    // A stored stretch keeps its start; the live part has no stored time yet.
    const at = row.dataset.at ? Number(row.dataset.at) : undefined;
    fillStretch(row, { seq: Number(row.dataset.seq), last_seq: seq, event: name, count: Number(row.dataset.count) + 1, at }, since);
    return;
  }
  body.append(stretchRow({ seq, last_seq: seq, event: name, count: 1 }, since, true));
}

// --- one conversation --------------------------------------------------------------------------------------

async function loadConversation(conversationId) {
  stopStream();
  state.shown = conversationId;
  const detail = await api("/ui/api/conversations/" + encodeURIComponent(conversationId));
  if (state.shown !== conversationId) return;
  state.detail = detail;
  renderConversation(detail);
  markSelected();
}

function renderConversation(detail) {
  const conversation = detail.conversation;
  const metadata = Object.entries(conversation.metadata || {}).map(([k, v]) => `${k}: ${v}`).join(", ");
  const items = detail.items.map((entry) => itemCard(entry.item, `#${entry.position} · added ${when(entry.added_at)}`));
  const parts = [
    el("div", { class: "runhead" }, el("span", { class: "id", id: "conversation-id" }, conversation.id),
      el("span", { class: "muted" }, "created ", when(conversation.created_at))),
    metadata ? el("p", { class: "muted" }, "metadata ", metadata) : null,
    el("h3", {}, `Items (${detail.items.length}${detail.has_more ? "+" : ""})`),
    items.length ? el("div", { id: "conversation-items" }, items) : el("p", { class: "muted", id: "conversation-items" }, "No items."),
    detail.has_more ? el("p", { class: "muted" }, `Only the first ${detail.items.length} items are shown.`) : null,
    el("h3", {}, "Responses that used it"),
    detail.responses.length
      ? el("ul", { class: "list", id: "conversation-responses" }, detail.responses.map(responseEntry))
      : el("p", { class: "muted", id: "conversation-responses" }, "None."),
  ];
  $("run").replaceChildren(...parts.filter(Boolean));
}
