// simian control room: polls the daemon's API (this page uses nothing else) and renders it with textContent
// only. The API token, when an action (or, off loopback, any view) needs it, lives in sessionStorage: this
// tab only, sent as a bearer header, never a cookie.
"use strict";

const POLL_MS = 3000;
const $ = (id) => document.getElementById(id);
let faults = [];
let clockSkew = 0; // server time - local time, ms

function token() { return sessionStorage.getItem("simian-token"); }

function askToken(why) {
  return new Promise((resolve) => {
    const d = $("token");
    $("token-why").textContent = why + " It is kept for this tab only.";
    $("token-input").value = "";
    d.onclose = () => {
      if (d.returnValue === "ok" && $("token-input").value) {
        sessionStorage.setItem("simian-token", $("token-input").value.trim());
        resolve(true);
      } else resolve(false);
    };
    d.showModal();
  });
}

async function api(method, path, body) {
  for (let attempt = 0; attempt < 2; attempt++) {
    const headers = { "Accept": "application/json" };
    if (token()) headers["Authorization"] = "Bearer " + token();
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: "no-store" });
    const data = await r.json().catch(() => ({ error: "not JSON (" + r.status + ")" }));
    // 401: the token is missing or wrong (403 means none is configured: asking would not help).
    if (r.status === 401 && attempt === 0) {
      if (await askToken(data.error || "The daemon asks for its API token.")) continue;
    }
    if (!r.ok) throw new Error(data.error || ("HTTP " + r.status));
    return data;
  }
  throw new Error("no token given");
}

function cell(tr, text, label) {
  const td = document.createElement("td");
  td.textContent = text == null ? "—" : String(text);
  if (label) td.dataset.label = label;
  tr.appendChild(td);
  return td;
}

function say(text) { $("message").textContent = text || ""; }

function badge(id, text, cls) {
  const el = $(id);
  el.textContent = text;
  el.className = "badge " + (cls || "");
}

function renderStatus(s) {
  $("policy").textContent = s.policy;
  document.title = "simian: " + s.policy + (s.halt ? " (HALTED)" : "");
  badge("mode", s.mode === "live" ? "LIVE" : "dry-run (nothing is changed)", s.mode === "live" ? "live" : "");
  badge("halt", s.halt ? "HALTED by " + s.halt.by + (s.halt.reason ? ": " + s.halt.reason : "") : "not halted", s.halt ? "halted" : "");
  badge("kill", s.kill_switch ? (s.kill_switch.engaged ? "kill switch ENGAGED" : "kill switch off") : "no kill switch", s.kill_switch && s.kill_switch.engaged ? "halted" : "");
  badge("calendar", !s.calendar.configured ? "calendar: any time" : s.calendar.open ? "calendar open" : "calendar closed: " + (s.calendar.refusal || ""), s.calendar.open ? "open" : "");
  $("halt-button").hidden = !!s.halt;
  $("resume-button").hidden = !s.halt;
  clockSkew = Date.parse(s.now) - Date.now();
}

function countdown(ms) {
  if (ms <= 0) return "due now";
  const s = Math.round(ms / 1000), m = Math.floor(s / 60);
  return (m ? m + " min " : "") + (s % 60) + " s";
}

function renderFaults(list) {
  faults = list;
  const body = $("faults").tBodies[0];
  body.replaceChildren();
  $("faults-count").textContent = list.length ? "(" + list.length + ")" : "";
  $("faults-none").hidden = list.length > 0;
  $("faults").hidden = list.length === 0;
  for (const f of list) {
    const tr = document.createElement("tr");
    tr.dataset.fault = f.id;
    cell(tr, f.monkey, "monkey");
    cell(tr, f.kind + " (" + f.state + ")", "fault");
    cell(tr, f.target + "/" + f.instance, "instance");
    cell(tr, [f.zone, f.group].filter(Boolean).join(" / "), "zone / group");
    cell(tr, f.started_at, "started");
    const left = cell(tr, "", "restores in");
    left.className = "countdown";
    left.dataset.until = f.restore_at_unix_ms;
    const td = cell(tr, "", "");
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = "Revert";
    b.addEventListener("click", () => revert(f.id, b));
    td.replaceChildren(b);
    body.appendChild(tr);
  }
  tick();
}

function tick() {
  for (const el of document.querySelectorAll(".countdown")) {
    el.textContent = countdown(Number(el.dataset.until) - (Date.now() + clockSkew));
  }
}

function renderSchedule(rows) {
  const body = $("schedule").tBodies[0];
  body.replaceChildren();
  for (const r of rows) {
    const tr = document.createElement("tr");
    cell(tr, r.monkey, "monkey");
    cell(tr, r.at, "at");
    cell(tr, r.at_utc, "UTC");
    cell(tr, r.in_calendar ? "inside" : "outside (does not fire)", "calendar");
    cell(tr, r.touches, "touches");
    body.appendChild(tr);
  }
}

function renderFindings(page) {
  const ol = $("findings");
  ol.replaceChildren();
  for (const f of page.findings) {
    const li = document.createElement("li");
    li.dataset.id = f.id;
    const sev = document.createElement("span");
    sev.className = "sev sev-" + f.severity;
    sev.textContent = f.severity;
    const text = document.createElement("span");
    text.textContent = " " + f.at + " · " + f.monkey + " " + f.action + " " + f.outcome +
      (f.instance ? " · " + f.instance : "") + " — " + f.message;
    li.append(sev, text);
    ol.appendChild(li);
  }
  if (!page.findings.length) {
    const li = document.createElement("li");
    li.className = "none";
    li.textContent = "No findings match.";
    ol.appendChild(li);
  }
}

function renderOutbox(o) {
  const body = $("outbox").tBodies[0];
  body.replaceChildren();
  $("outbox-none").hidden = o.sinks.length > 0;
  $("outbox").hidden = o.sinks.length === 0;
  for (const s of o.sinks) {
    const tr = document.createElement("tr");
    cell(tr, s.sink, "sink");
    cell(tr, s.pending, "pending");
    cell(tr, s.oldest_at, "oldest");
    cell(tr, s.attempts, "attempts");
    cell(tr, s.next_attempt_at || "now", "next attempt");
    cell(tr, s.last_error, "last error");
    body.appendChild(tr);
  }
}

function filterQuery() {
  const q = new URLSearchParams({ limit: "100" });
  for (const el of $("filters").elements) if (el.value) q.set(el.name, el.value);
  return q.toString();
}

async function refresh() {
  try {
    const [status, list, schedule, page, outbox] = await Promise.all([
      api("GET", "/api/v1/status"), api("GET", "/api/v1/faults"), api("GET", "/api/v1/schedule"),
      api("GET", "/api/v1/findings?" + filterQuery()), api("GET", "/api/v1/outbox"),
    ]);
    renderStatus(status);
    renderFaults(list);
    renderSchedule(schedule);
    renderFindings(page);
    renderOutbox(outbox);
    if ($("message").dataset.sticky !== "1") say("");
  } catch (e) {
    say("Cannot read the daemon: " + e.message);
  }
}

async function act(label, method, path, body) {
  try {
    const r = await api(method, path, body);
    $("message").dataset.sticky = "";
    say(label);
    await refresh();
    return r;
  } catch (e) {
    $("message").dataset.sticky = "1";
    say(label + " failed: " + e.message);
  }
}

function revert(id, button) {
  button.disabled = true;
  act("Fault " + id + " reverted.", "POST", "/api/v1/faults/" + id + "/revert").finally(() => { button.disabled = false; });
}

function start() {
  $("halt-button").addEventListener("click", () => { $("reason").value = ""; $("confirm").showModal(); });
  $("confirm").addEventListener("close", () => {
    if ($("confirm").returnValue !== "halt") return;
    const reason = $("reason").value.trim();
    act("Halted: no new actions; every active fault is being reverted.", "POST", "/api/v1/halt", reason ? { reason } : {});
  });
  $("resume-button").addEventListener("click", () => act("Resumed: the next fire acts again.", "POST", "/api/v1/resume"));
  $("filters").addEventListener("change", refresh);
  refresh();
  setInterval(refresh, POLL_MS);
  setInterval(tick, 1000);
}

document.addEventListener("DOMContentLoaded", start);
