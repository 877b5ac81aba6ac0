// trendmap's live map: one GraphQL query for the state, then the hotFlows subscription over
// graphql-transport-ws (spoken here by hand), drawn as SVG in an equirectangular plane in
// degrees: x = longitude + 180, y = 90 - latitude.
"use strict";
(() => {
  const CONFIG = JSON.parse(document.getElementById("map-data").textContent);
  const SVG = "http://www.w3.org/2000/svg";
  const TOP = 6, BOTTOM = 148; // the visible band: latitude 84 to -58
  const REFRESH_MS = 60000; // the window slides: re-query now and then
  const $ = (id) => document.getElementById(id);

  // A read key, if the server needs one: http://host/#key=... (a fragment never leaves the
  // browser, so the key is not in any server log).
  const KEY = new URLSearchParams(location.hash.slice(1)).get("key");
  const AUTH = KEY ? "Bearer " + KEY : null;

  const FLOW_FIELDS = "fromCountry toCountry heat sharedTopics timeDeltaHours similarityScore";
  const MAP_QUERY = `query Map($timeWindow: String!, $countries: [String!], $threshold: Float) {
  hotspots(timeWindow: $timeWindow, countries: $countries) {
    country intensity topicCount topTopics { label count }
  }
  flows(timeWindow: $timeWindow, countries: $countries, threshold: $threshold) { ${FLOW_FIELDS} }
}`;
  const LIVE_QUERY = `subscription Live($timeWindow: String!, $countries: [String!], $threshold: Float) {
  hotFlows(timeWindow: $timeWindow, countries: $countries, threshold: $threshold,
           includeCurrent: true) { ${FLOW_FIELDS} }
}`;

  const view = {
    timeWindow: "24h",
    threshold: CONFIG.threshold,
    countries: null, // null: every country
  };
  const drawn = { hotspots: new Map(), flows: new Map() };
  let selected = null; // {kind, id} pinned by a click
  let loading = 0; // the latest query's number: older answers are dropped
  let ready = false; // the current view's state is drawn: live flows after it are news

  // ---- colours ---------------------------------------------------------------------------
  function ramp(stops) {
    const rgb = stops.map((hex) => [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16)));
    return (value) => {
      const v = Math.min(Math.max(value, 0), 1) * (rgb.length - 1);
      const i = Math.min(Math.floor(v), rgb.length - 2), f = v - i;
      const c = rgb[i].map((a, k) => Math.round(a + (rgb[i + 1][k] - a) * f));
      return `rgb(${c[0]},${c[1]},${c[2]})`;
    };
  }
  const hotspotColour = ramp(["#3b5bdb", "#22b8cf", "#e3fafc"]);
  const flowColour = ramp(["#fde047", "#fb923c", "#ef4444"]);

  // ---- geometry --------------------------------------------------------------------------
  function place(code) {
    const p = CONFIG.positions[code];
    if (!p) return null;
    return [p[0] + 180, Math.min(Math.max(90 - p[1], TOP + 2), BOTTOM - 2)];
  }
  const radius = (intensity) => 0.9 + 3 * Math.sqrt(Math.max(intensity, 0));
  const flowWidth = (heat) => 0.25 + 1.05 * Math.max(heat, 0);
  const f1 = (n) => (Math.round(n * 100) / 100).toString();

  function flowShape(a, b, stopAt, width) {
    // A quadratic curve bending left of the direction of travel, cut where it meets the
    // target's circle, with an arrowhead there.
    const [x1, y1] = a, [x2, y2] = b;
    const dx = x2 - x1, dy = y2 - y1, d = Math.hypot(dx, dy) || 1;
    // Short hops bend more, so their arrows stay visible between nearby circles.
    const bend = Math.min(Math.max(0.22 * d, Math.min(3, 0.8 * d)), 14);
    const cx = (x1 + x2) / 2 + (dy / d) * bend, cy = (y1 + y2) / 2 - (dx / d) * bend;
    const at = (t) => [
      (1 - t) ** 2 * x1 + 2 * (1 - t) * t * cx + t * t * x2,
      (1 - t) ** 2 * y1 + 2 * (1 - t) * t * cy + t * t * y2,
    ];
    let t = 1;
    while (t > 0.55 && Math.hypot(at(t)[0] - x2, at(t)[1] - y2) < stopAt) t -= 0.005;
    const tip = at(t);
    const control = [x1 + (cx - x1) * t, y1 + (cy - y1) * t]; // the curve's [0, t] part
    const ux = tip[0] - control[0], uy = tip[1] - control[1], u = Math.hypot(ux, uy) || 1;
    const size = 1.1 + width * 1.3;
    const bx = tip[0] - (ux / u) * size, by = tip[1] - (uy / u) * size;
    const nx = (-uy / u) * size * 0.5, ny = (ux / u) * size * 0.5;
    const end = [tip[0] - (ux / u) * size * 0.6, tip[1] - (uy / u) * size * 0.6];
    const p = (pt) => f1(pt[0]) + " " + f1(pt[1]);
    return {
      line: `M${p(a)}Q${p(control)} ${p(end)}`,
      head: `M${p(tip)}L${p([bx + nx, by + ny])}L${p([bx - nx, by - ny])}Z`,
    };
  }

  function graticule() {
    let d = "";
    for (let x = 0; x <= 360; x += 30) d += `M${x} ${TOP}V${BOTTOM}`;
    for (let lat = 60; lat >= -60; lat -= 30) d += `M0 ${90 - lat}H360`;
    return d;
  }

  function el(name, attributes, parent) {
    const node = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attributes)) node.setAttribute(k, v);
    if (parent) parent.appendChild(node);
    return node;
  }

  // ---- drawing ---------------------------------------------------------------------------
  function drawHotspots(hotspots) {
    const layer = $("hotspots"), labels = $("labels");
    const seen = new Set();
    // Biggest first, so small circles stay on top and reachable.
    for (const h of [...hotspots].sort((p, q) => q.intensity - p.intensity)) {
      const at = place(h.country);
      if (!at) continue;
      seen.add(h.country);
      let entry = drawn.hotspots.get(h.country);
      if (!entry) {
        const g = el("g", { class: "hotspot", "data-hotspot": h.country }, layer);
        const circle = el("circle", { cx: f1(at[0]), cy: f1(at[1]) }, g);
        const label = el("text", { x: f1(at[0]), "text-anchor": "middle" }, labels);
        label.textContent = h.country;
        g.addEventListener("mouseenter", () => show("hotspot", h.country));
        g.addEventListener("mouseleave", () => show());
        g.addEventListener("click", () => pin("hotspot", h.country));
        entry = { g, circle, label };
        drawn.hotspots.set(h.country, entry);
      }
      const r = radius(h.intensity);
      entry.data = h;
      entry.circle.setAttribute("r", f1(r));
      entry.circle.setAttribute("fill", hotspotColour(h.intensity));
      entry.circle.setAttribute("stroke", hotspotColour(Math.min(h.intensity + 0.35, 1)));
      entry.label.setAttribute("y", f1(at[1] + r + 2.2));
      layer.appendChild(entry.g); // re-append: keeps the order by intensity
    }
    for (const [code, entry] of drawn.hotspots) {
      if (!seen.has(code)) {
        entry.g.remove();
        entry.label.remove();
        drawn.hotspots.delete(code);
      }
    }
  }

  function hotspotRadius(code) {
    const entry = drawn.hotspots.get(code);
    return entry ? radius(entry.data.intensity) : 0.8;
  }

  function drawFlow(f, animate) {
    const id = `${f.fromCountry}-${f.toCountry}`;
    const a = place(f.fromCountry), b = place(f.toCountry);
    if (!a || !b) return null;
    let entry = drawn.flows.get(id);
    if (!entry) {
      const g = el("g", { class: animate ? "flow new" : "flow", "data-flow": id }, $("flows"));
      const line = el("path", { class: "line", pathLength: "1" }, g);
      const head = el("path", { class: "head" }, g);
      const hit = el("path", { class: "hit" }, g);
      g.addEventListener("mouseenter", () => show("flow", id));
      g.addEventListener("mouseleave", () => show());
      g.addEventListener("click", () => pin("flow", id));
      entry = { g, line, head, hit };
      drawn.flows.set(id, entry);
      if (animate) {
        setTimeout(() => g.classList.remove("new"), 6000);
        announce(f);
      }
    }
    entry.data = f;
    const width = flowWidth(f.heat), colour = flowColour(f.heat);
    const shape = flowShape(a, b, hotspotRadius(f.toCountry) + 0.3, width);
    entry.line.setAttribute("d", shape.line);
    entry.line.setAttribute("stroke", colour);
    entry.line.setAttribute("stroke-width", f1(width));
    entry.head.setAttribute("d", shape.head);
    entry.head.setAttribute("fill", colour);
    entry.hit.setAttribute("d", shape.line);
    return entry;
  }

  function drawFlows(flows, animate) {
    const seen = new Set();
    // Coolest first: the hottest arrows end up on top.
    for (const f of [...flows].sort((p, q) => p.heat - q.heat)) {
      seen.add(`${f.fromCountry}-${f.toCountry}`);
      const entry = drawFlow(f, animate);
      if (entry) $("flows").appendChild(entry.g); // re-append: keeps the order by heat
    }
    for (const [id, entry] of drawn.flows) {
      if (!seen.has(id)) {
        entry.g.remove();
        drawn.flows.delete(id);
      }
    }
    stats();
  }

  function clearMap() {
    for (const entry of drawn.hotspots.values()) { entry.g.remove(); entry.label.remove(); }
    for (const entry of drawn.flows.values()) entry.g.remove();
    drawn.hotspots.clear();
    drawn.flows.clear();
  }

  // ---- details, legend, status -----------------------------------------------------------
  const name = (code) => CONFIG.names[code] || code;
  const escape = (text) => String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

  function hours(h) {
    if (h < 1) return `${Math.round(h * 60)} min`;
    return `${h.toFixed(1)} h`;
  }

  function details(kind, id) {
    if (kind === "hotspot" && drawn.hotspots.has(id)) {
      const h = drawn.hotspots.get(id).data;
      const topics = h.topTopics
        .map((t) => `<li>${escape(t.label)}<span>${t.count.toLocaleString("en")}</span></li>`)
        .join("");
      return `<h3>${escape(name(h.country))} <small>${h.country}</small></h3>
        <dl><dt>intensity</dt><dd>${h.intensity.toFixed(2)}</dd>
        <dt>topics</dt><dd>${h.topicCount}</dd></dl>
        <h2>top topics</h2><ol>${topics}</ol>`;
    }
    if (kind === "flow" && drawn.flows.has(id)) {
      const f = drawn.flows.get(id).data;
      const topics = f.sharedTopics.map((t) => `<li>${escape(t)}</li>`).join("");
      return `<h3>${escape(name(f.fromCountry))} → ${escape(name(f.toCountry))}</h3>
        <dl><dt>heat</dt><dd>${f.heat.toFixed(2)}</dd>
        <dt>similarity</dt><dd>${f.similarityScore.toFixed(2)}</dd>
        <dt>Δt</dt><dd>${hours(f.timeDeltaHours)}</dd></dl>
        <h2>shared topics</h2><ol>${topics}</ol>`;
    }
    return null;
  }

  function show(kind, id) {
    const box = $("details");
    const html = kind ? details(kind, id) : selected && details(selected.kind, selected.id);
    box.innerHTML = "<h2>Details</h2>" + (html || '<p class="hint">Hover over or click a hotspot or an arrow.</p>');
  }

  function pin(kind, id) {
    document.querySelectorAll(".selected").forEach((n) => n.classList.remove("selected"));
    const same = selected && selected.kind === kind && selected.id === id;
    selected = same ? null : { kind, id };
    if (selected) {
      const map = kind === "flow" ? drawn.flows : drawn.hotspots;
      map.get(id)?.g.classList.add("selected");
    }
    show(kind, id);
  }

  function stats() {
    $("stats").textContent = `${drawn.hotspots.size} hotspots · ${drawn.flows.size} flows · ` +
      `window ${view.timeWindow} · updated ${new Date().toLocaleTimeString("en-GB")}`;
  }

  function announce(f) {
    const list = $("feed").querySelector("ol");
    list.querySelector(".empty")?.remove();
    const item = document.createElement("li");
    item.innerHTML = `<time>${new Date().toLocaleTimeString("en-GB")}</time>` +
      `${f.fromCountry} → ${f.toCountry} <small>heat ${f.heat.toFixed(2)}</small>`;
    list.prepend(item);
    while (list.children.length > 8) list.lastChild.remove();
  }

  function status(text, error) {
    const line = $("status");
    line.textContent = text || "";
    line.classList.toggle("error", Boolean(error));
  }

  function setLive(stateName, text) {
    const box = $("live");
    box.dataset.live = stateName;
    box.querySelector("span").textContent = text;
  }

  const KEY_HINT = "this server needs a read key: open the page as /#key=YOUR_READ_KEY";

  // ---- the query -------------------------------------------------------------------------
  function variables() {
    return { timeWindow: view.timeWindow, countries: view.countries, threshold: view.threshold };
  }

  async function load(animate) {
    const mine = ++loading;
    const headers = { "Content-Type": "application/json" };
    if (AUTH) headers.Authorization = AUTH;
    let body;
    try {
      const response = await fetch("/graphql", {
        method: "POST",
        headers,
        body: JSON.stringify({ query: MAP_QUERY, variables: variables() }),
      });
      body = await response.json();
    } catch (err) {
      if (mine === loading) status("the server does not answer; retrying with the live connection", true);
      return;
    }
    if (mine !== loading) return; // a newer query is on its way
    if (body.errors && body.errors.length) {
      const error = body.errors[0];
      const code = error.extensions && error.extensions.code;
      status(code === "unauthenticated" || code === "forbidden" ? KEY_HINT : error.message, true);
      return;
    }
    if (!body.data) {
      status(body.detail || "the server refused the query", true);
      return;
    }
    status("");
    drawHotspots(body.data.hotspots);
    drawFlows(body.data.flows, animate && ready);
    ready = true;
    show();
  }

  let refreshing = null;
  function refreshSoon(ms) {
    // After live news the hotspots have changed too; bursts make one query.
    clearTimeout(refreshing);
    refreshing = setTimeout(() => load(true), ms);
  }
  setInterval(() => refreshSoon(0), REFRESH_MS);

  // ---- the subscription (graphql-transport-ws) -------------------------------------------
  const live = { socket: null, acked: false, id: null, serial: 0, attempt: 0, timer: null };

  function subscribe() {
    const socket = live.socket;
    if (!socket || !live.acked) return;
    if (live.id) socket.send(JSON.stringify({ id: live.id, type: "complete" }));
    live.id = `live-${++live.serial}`;
    socket.send(JSON.stringify({
      id: live.id,
      type: "subscribe",
      payload: { query: LIVE_QUERY, variables: variables() },
    }));
  }

  function connect() {
    clearTimeout(live.timer);
    const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/graphql";
    const socket = new WebSocket(url, "graphql-transport-ws");
    live.socket = socket;
    live.acked = false;
    live.id = null;
    setLive("connecting", "connecting");
    socket.onopen = () => {
      socket.send(JSON.stringify({ type: "connection_init", payload: AUTH ? { Authorization: AUTH } : {} }));
    };
    socket.onmessage = (event) => {
      let message;
      try { message = JSON.parse(event.data); } catch (err) { return; }
      switch (message.type) {
        case "connection_ack":
          live.acked = true;
          live.attempt = 0;
          setLive("up", "live");
          subscribe();
          break;
        case "ping":
          socket.send(JSON.stringify({ type: "pong", payload: message.payload }));
          break;
        case "next":
          if (message.id !== live.id) break; // an answer to a subscription since replaced
          if (message.payload.data && message.payload.data.hotFlows) {
            // includeCurrent sends the flows that are hot already: before the query's
            // answer is drawn they are not news, after it only those not drawn are.
            const flow = message.payload.data.hotFlows;
            const fresh = ready && !drawn.flows.has(`${flow.fromCountry}-${flow.toCountry}`);
            drawFlow(flow, fresh);
            stats();
            if (fresh) refreshSoon(1500);
          } else if (message.payload.errors) {
            status(message.payload.errors[0].message, true);
          }
          break;
        case "error":
          if (message.id === live.id) status(message.payload[0]?.message || "subscription refused", true);
          break;
        case "complete":
          if (message.id === live.id) socket.close(1000, "subscription ended"); // start over
          break;
      }
    };
    socket.onclose = (event) => {
      if (live.socket !== socket) return;
      live.acked = false;
      if (event.code === 4403) status(KEY_HINT, true);
      // Back off: 1 s, 2 s, 4 s ... at most 30 s, with jitter so a restarted server is not
      // hit by every page at once.
      const delay = Math.min(30000, 1000 * 2 ** live.attempt) * (0.75 + Math.random() / 2);
      live.attempt = Math.min(live.attempt + 1, 5);
      setLive("down", `offline · retry in ${Math.ceil(delay / 1000)} s`);
      live.timer = setTimeout(() => { connect(); refreshSoon(0); }, delay);
    };
  }

  // ---- controls --------------------------------------------------------------------------
  function changed() {
    ready = false;
    clearMap();
    selected = null;
    show();
    load(false);
    subscribe(); // over the open socket; a reconnect subscribes with the new view anyway
  }

  document.querySelectorAll("#window input").forEach((input) => {
    input.checked = input.value === view.timeWindow;
    input.addEventListener("change", () => { view.timeWindow = input.value; changed(); });
  });
  const slider = $("threshold");
  slider.value = String(view.threshold);
  $("threshold-value").textContent = view.threshold.toFixed(2);
  slider.addEventListener("input", () => { $("threshold-value").textContent = Number(slider.value).toFixed(2); });
  slider.addEventListener("change", () => { view.threshold = Number(slider.value); changed(); });
  const filter = $("countries");
  filter.addEventListener("change", () => {
    const codes = filter.value.split(/[\s,;]+/).map((c) => c.trim().toUpperCase()).filter(Boolean);
    view.countries = codes.length ? codes : null;
    changed();
  });
  $("controls").addEventListener("submit", (event) => event.preventDefault());

  $("graticule").setAttribute("d", graticule());
  $("land").setAttribute("d", CONFIG.land);
  $("feed").querySelector("ol").innerHTML = '<li class="empty">new hot flows appear here as they happen</li>';
  load(false);
  connect();
})();
