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

// The findings shown, newest first; a poll asks only for what is newer than the first of them.
let shown = [];
const SHOWN_MAX = 100;

function renderFindings(page, fresh) {
  shown = fresh ? page.findings : page.findings.concat(shown).slice(0, SHOWN_MAX);
  if (!fresh && !page.findings.length) return;
  const ol = $("findings");
  ol.replaceChildren();
  for (const f of shown) {
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
  if (!shown.length) {
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

function renderFleet(f) {
  const root = $("fleet");
  root.replaceChildren();
  $("fleet-count").textContent = "(" + f.instances + " instances)";
  for (const t of f.targets) {
    for (const g of t.groups) {
      const d = document.createElement("details");
      d.dataset.group = t.name + "/" + g.name;
      const s = document.createElement("summary");
      s.textContent = t.name + " / " + (g.name || "(no group)") + ": " + g.instances + " instances, " +
        g.eligible + " eligible" + (g.unhealthy ? ", " + g.unhealthy + " unhealthy" : "");
      d.appendChild(s);
      const ul = document.createElement("ul");
      for (const m of g.members) {
        const li = document.createElement("li");
        li.textContent = m.id + (m.zone ? " (zone " + m.zone + ")" : "") + " — " + m.eligibility +
          (m.why ? ": " + m.why : "") + "; health " + m.health;
        ul.appendChild(li);
      }
      if (g.members_shown < g.instances) {
        const li = document.createElement("li");
        li.className = "none";
        li.textContent = "… and " + (g.instances - g.members_shown) + " more";
        ul.appendChild(li);
      }
      d.appendChild(ul);
      root.appendChild(d);
    }
  }
}

// A small bar chart of one figure across the three phases, drawn as SVG (no library, no inline script).
function bars(title, values, unit) {
  const NS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("viewBox", "0 0 180 70");
  svg.setAttribute("role", "img");
  const max = Math.max(...values.map((v) => v[1] || 0), 1e-9);
  const label = document.createElementNS(NS, "title");
  label.textContent = title + ": " + values.map((v) => v[0] + " " + (v[1] == null ? "—" : v[1].toFixed(1) + unit)).join(", ");
  svg.appendChild(label);
  values.forEach(([name, v], i) => {
    const h = v == null ? 0 : Math.max(1, (v / max) * 40);
    const r = document.createElementNS(NS, "rect");
    r.setAttribute("x", 10 + i * 58); r.setAttribute("y", 48 - h); r.setAttribute("width", 40); r.setAttribute("height", h);
    r.setAttribute("class", "bar bar-" + name);
    svg.appendChild(r);
    const t = document.createElementNS(NS, "text");
    t.setAttribute("x", 30 + i * 58); t.setAttribute("y", 62); t.setAttribute("text-anchor", "middle");
    t.textContent = name + " " + (v == null ? "—" : v.toFixed(v < 10 ? 1 : 0));
    svg.appendChild(t);
  });
  const fig = document.createElement("figure");
  const cap = document.createElement("figcaption");
  cap.textContent = title;
  fig.append(svg, cap);
  return fig;
}

function renderExperiments(list) {
  const root = $("experiments");
  root.replaceChildren();
  $("experiments-none").hidden = list.length > 0;
  for (const e of list) {
    const box = document.createElement("article");
    box.dataset.experiment = e.id;
    const h = document.createElement("h3");
    h.textContent = e.monkey + " · " + e.probe + " · " + e.at + " · verdict " + e.verdict +
      (e.capacity == null ? "" : " · capacity " + Math.round(e.capacity * 100) + " %");
    box.appendChild(h);
    const phases = ["baseline", "during", "recovery"];
    if (e.kind === "http") {
      box.appendChild(bars("p50 latency (ms)", phases.map((p) => [p, e[p] && e[p].p50_ms]), " ms"));
      box.appendChild(bars("throughput (/s)", phases.map((p) => [p, e[p] && e[p].throughput_rps]), "/s"));
    } else {
      box.appendChild(bars("value", phases.map((p) => [p, e[p] && e[p].value]), ""));
    }
    root.appendChild(box);
  }
}

let fleetAt = 0;

let experimentsAt = 0;
let filtersChanged = true;

function filterQuery(fresh) {
  const q = new URLSearchParams({ limit: String(SHOWN_MAX) });
  if (!fresh) q.set("after", String(shown[0].id));
  for (const el of $("filters").elements) if (el.value) q.set(el.name, el.value);
  return q.toString();
}

async function refresh() {
  try {
    const fresh = filtersChanged || !shown.length;
    filtersChanged = false;
    const [status, list, schedule, page, outbox] = await Promise.all([
      api("GET", "/api/v1/status"), api("GET", "/api/v1/faults"), api("GET", "/api/v1/schedule"),
      api("GET", "/api/v1/findings?" + filterQuery(fresh)), api("GET", "/api/v1/outbox"),
    ]);
    renderStatus(status);
    renderFaults(list);
    renderSchedule(schedule);
    renderFindings(page, fresh);
    renderOutbox(outbox);
    // Experiments end with rounds: every 15 s is enough.
    if (Date.now() - experimentsAt > 15000) {
      experimentsAt = Date.now();
      api("GET", "/api/v1/experiments?limit=6").then(renderExperiments).catch(() => {});
    }
    // The fleet is listed from the targets (EC2 calls): every 15 s is enough.
    if (Date.now() - fleetAt > 15000) {
      fleetAt = Date.now();
      api("GET", "/api/v1/fleet").then(renderFleet).catch((e) => { $("fleet").textContent = "Cannot list the fleet: " + e.message; });
    }
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
  $("filters").addEventListener("change", () => { filtersChanged = true; refresh(); });
  refresh();
  setInterval(refresh, POLL_MS);
  setInterval(tick, 1000);
}

document.addEventListener("DOMContentLoaded", start);
