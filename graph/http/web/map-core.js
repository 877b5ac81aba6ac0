// trendmap's live map, shared by its scripts: the namespace `window.trendmap` with the page's
// data, the view (what is asked), small helpers, colours, geometry and the GraphQL call.
// The map is drawn as SVG in an equirectangular plane in degrees: x = longitude + 180,
// y = 90 - latitude.
"use strict";
(() => {
  const TM = (window.trendmap = {});
  TM.CONFIG = JSON.parse(document.getElementById("map-data").textContent);
  TM.SVG = "http://www.w3.org/2000/svg";
  TM.TOP = 6;
  TM.BOTTOM = 148; // the visible band: latitude 84 to -58
  TM.$ = (id) => document.getElementById(id);
  TM.WINDOW_HOURS = { "1h": 1, "6h": 6, "12h": 12, "24h": 24 };

  // A read key, if the server needs one: http://host/#key=... (a fragment never leaves the
  // browser, so the key is not in any server log).
  const KEY = new URLSearchParams(location.hash.slice(1)).get("key");
  TM.AUTH = KEY ? "Bearer " + KEY : null;
  TM.KEY_HINT = "this server needs a read key: open the page as /#key=YOUR_READ_KEY";

  TM.view = {
    timeWindow: "24h",
    threshold: TM.CONFIG.threshold,
    countries: null, // null: every country
    asOf: null, // null: live (now); else an ISO instant, and live updates pause
    strongest: null, // a number: the strongest N links whatever their heat
  };
  TM.span = { first: null, last: null }; // the archive's first and last record (Dates)

  TM.el = (name, attributes, parent) => {
    const node = document.createElementNS(TM.SVG, name);
    for (const [k, v] of Object.entries(attributes)) node.setAttribute(k, v);
    if (parent) parent.appendChild(node);
    return node;
  };
  TM.f1 = (n) => (Math.round(n * 100) / 100).toString();
  TM.name = (code) => TM.CONFIG.names[code] || code;
  TM.escape = (text) => String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
  TM.hours = (h) => (h < 1 ? `${Math.round(h * 60)} min` : `${h.toFixed(1)} h`);
  // Instants are shown in UTC, as the API gives them: "2026-11-20 12:00 UTC".
  TM.instant = (date) => new Date(date).toISOString().slice(0, 16).replace("T", " ") + " UTC";
  TM.shortInstant = (date) => new Date(date).toISOString().slice(5, 16).replace("T", " ");

  // ---- colours and sizes -----------------------------------------------------------------
  function ramp(stops) {
    const rgb = stops.map((hex) => [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16)));
    return (value) => {
      const v = Math.min(Math.max(value, 0), 1) * (rgb.length - 1);
      const i = Math.min(Math.floor(v), rgb.length - 2), f = v - i;
      const c = rgb[i].map((a, k) => Math.round(a + (rgb[i + 1][k] - a) * f));
      return `rgb(${c[0]},${c[1]},${c[2]})`;
    };
  }
  TM.hotspotColour = ramp(["#3b5bdb", "#22b8cf", "#e3fafc"]);
  TM.flowColour = ramp(["#fde047", "#fb923c", "#ef4444"]);
  TM.radius = (intensity) => 0.9 + 3 * Math.sqrt(Math.max(intensity, 0));
  TM.flowWidth = (heat) => 0.25 + 1.05 * Math.max(heat, 0);

  TM.place = (code) => {
    const p = TM.CONFIG.positions[code];
    if (!p) return null;
    return [p[0] + 180, Math.min(Math.max(90 - p[1], TM.TOP + 2), TM.BOTTOM - 2)];
  };

  // ---- status line and live indicator ----------------------------------------------------
  TM.status = (text, error) => {
    const line = TM.$("status");
    line.textContent = text || "";
    line.classList.toggle("error", Boolean(error));
  };
  TM.setLive = (state, text) => {
    const box = TM.$("live");
    box.dataset.live = state;
    box.querySelector("span").textContent = text;
  };

  // ---- GraphQL over HTTP -----------------------------------------------------------------
  // Resolves to the answer's data; rejects with an Error whose `refused` is true when the
  // server answered with an error (bad input, missing key) rather than not answering at all.
  TM.gql = async (query, variables) => {
    const headers = { "Content-Type": "application/json" };
    if (TM.AUTH) headers.Authorization = TM.AUTH;
    const response = await fetch("/graphql", {
      method: "POST",
      headers,
      body: JSON.stringify({ query, variables }),
    });
    const body = await response.json();
    const refuse = (message) => Object.assign(new Error(message), { refused: true });
    if (body.errors && body.errors.length) {
      const code = body.errors[0].extensions && body.errors[0].extensions.code;
      if (code === "unauthenticated" || code === "forbidden") throw refuse(TM.KEY_HINT);
      throw refuse(body.errors[0].message);
    }
    if (!body.data) throw refuse(body.detail || "the server refused the query");
    return body.data;
  };
})();
