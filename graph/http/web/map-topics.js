// Following a topic and a country through time: the topic search (topics with search), a
// chosen topic's spread drawn country by country in first-seen order (topicSpread), and a
// clicked country's hotspotHistory as a small chart: `trendmap.topics`.
"use strict";
(() => {
  const TM = window.trendmap;
  const { $, el, escape, f1 } = TM;
  const input = $("topic-search"), results = $("topic-results");
  const TOPICS = `query Topics($search: String, $asOf: DateTime) {
  topics(timeWindow: "24h", asOf: $asOf, search: $search, limit: 8) { key label countryCount }
}`;
  const SPREAD = `query Spread($topic: String!, $until: DateTime) {
  topicSpread(topic: $topic, until: $until) { key label countries { country firstSeen count } }
}`;
  const HISTORY = `query History($country: String!, $timeWindow: String!, $since: DateTime,
                                    $until: DateTime, $step: String) {
  hotspotHistory(country: $country, timeWindow: $timeWindow, since: $since, until: $until,
                 step: $step) { asOf score volume }
}`;
  const DAY = 86400000;
  let searching = null, asked = 0;

  // ---- search ----------------------------------------------------------------------------
  async function search() {
    const text = input.value.trim();
    const mine = ++asked;
    if (!text) { results.hidden = true; return; }
    let items;
    try {
      items = (await TM.gql(TOPICS, { search: text, asOf: TM.view.asOf })).topics;
    } catch (err) {
      if (mine !== asked) return;
      results.innerHTML = `<li class="error">${escape(err.message)}</li>`;
      results.hidden = false;
      return;
    }
    if (mine !== asked) return;
    results.innerHTML = items.length
      ? items.map((t) => `<li><button type="button" data-topic="${escape(t.key)}">` +
          `${escape(t.label)} <small>${t.countryCount} countries</small></button></li>`).join("")
      : '<li class="empty">no topic in the last 24 h holds this text</li>';
    results.hidden = false;
  }

  input.addEventListener("input", () => { clearTimeout(searching); searching = setTimeout(search, 250); });
  input.addEventListener("keydown", (event) => { if (event.key === "Escape") results.hidden = true; });
  results.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-topic]");
    if (!button) return;
    results.hidden = true;
    follow(button.dataset.topic);
  });

  // ---- a topic's path --------------------------------------------------------------------
  async function follow(key) {
    const box = $("topic");
    box.hidden = false;
    let spread;
    try {
      spread = (await TM.gql(SPREAD, { topic: key, until: TM.view.asOf })).topicSpread;
    } catch (err) {
      box.innerHTML = `<h2>Topic</h2><p class="error">${escape(err.message)}</p>`;
      return;
    }
    if (!spread) {
      box.innerHTML = `<h2>Topic</h2><p class="hint">No country saw “${escape(key)}” in the 7 days shown.</p>`;
      drawPath([]);
      return;
    }
    drawPath(spread.countries);
    const stops = spread.countries.map((c, i) => `<li data-country="${c.country}">` +
      `${i + 1}. ${escape(TM.name(c.country))}<span>${TM.instant(c.firstSeen)}</span></li>`).join("");
    box.innerHTML = `<h2>Topic</h2><h3>${escape(spread.label)}</h3>
      <p class="hint">${spread.countries.length} countries, by first sighting</p>
      <ol class="stops">${stops}</ol><button type="button" id="topic-clear">clear</button>`;
    $("topic-clear").addEventListener("click", () => { box.hidden = true; drawPath([]); });
  }

  function drawPath(countries) {
    const layer = $("topic-path");
    layer.replaceChildren();
    const points = countries.map((c) => [c, TM.place(c.country)]).filter(([, p]) => p);
    if (points.length > 1) {
      const d = points.map(([, p], i) => `${i ? "L" : "M"}${f1(p[0])} ${f1(p[1])}`).join("");
      el("path", { class: "route", d }, layer);
    }
    points.forEach(([c, p], i) => {
      const g = el("g", {
        class: "stop", "data-topic-stop": c.country, "data-order": String(i), "data-at": `${p[0]} ${p[1]}`,
      }, layer);
      el("circle", { cx: f1(p[0]), cy: f1(p[1]), r: "0.9" }, g);
      const text = el("text", {}, g); // placed with the labels (trendmap.zoom)
      text.textContent = `${i + 1} · ${TM.shortInstant(c.firstSeen)}`;
    });
    TM.zoom.layoutLabels();
  }

  // ---- a country's history ---------------------------------------------------------------
  function span() {
    const last = TM.view.asOf ? new Date(TM.view.asOf)
      : TM.timeline.archiveInPast() ? TM.span.last : new Date();
    const first = TM.span.first && TM.span.first > last - 7 * DAY ? TM.span.first : new Date(last - 7 * DAY);
    // The finest step that keeps the chart under ~150 points (the server allows 500).
    const step = ["1h", "6h", "12h", "24h"].find((s) => (last - first) / (TM.WINDOW_HOURS[s] * 3600000) <= 150);
    const iso = (d) => new Date(d).toISOString().replace(/\.\d+Z$/, "Z");
    return { since: iso(first), until: iso(last), step: step || "24h" };
  }

  async function history(country) {
    const box = $("history");
    box.hidden = false;
    box.dataset.state = "loading";
    const asked = { country, timeWindow: TM.view.timeWindow, ...span() };
    box.innerHTML = `<h2>History · ${escape(country)}</h2><p class="hint">loading…</p>`;
    let points;
    try {
      points = (await TM.gql(HISTORY, asked)).hotspotHistory;
    } catch (err) {
      const missing = /Cannot query field .hotspotHistory/.test(err.message);
      box.dataset.state = missing ? "missing" : "error";
      box.innerHTML = `<h2>History · ${escape(country)}</h2><p class="hint">` + (missing
        ? "this server has no hotspot history yet" : escape(err.message)) + "</p>";
      return;
    }
    box.dataset.state = "ok";
    box.innerHTML = `<h2>History · ${escape(country)}</h2>` + chart(points, asked);
  }

  function chart(points, asked) {
    const W = 260, H = 80, top = Math.max(...points.map((p) => p.score), 0) || 1;
    const x = (i) => f1(4 + (i * (W - 8)) / Math.max(points.length - 1, 1));
    const y = (v) => f1(H - 4 - (v / top) * (H - 12));
    const line = points.map((p, i) => `${i ? "L" : "M"}${x(i)} ${y(p.score)}`).join("");
    const dots = points.map((p, i) => `<circle cx="${x(i)}" cy="${y(p.score)}" r="1.4" ` +
      `data-as-of="${escape(p.asOf)}" data-score="${p.score}"><title>${TM.instant(p.asOf)}: ` +
      `score ${p.score.toFixed(2)}, volume ${p.volume}</title></circle>`).join("");
    return `<svg class="chart" viewBox="0 0 ${W} ${H}" role="img" aria-label="score over time"
      data-since="${asked.since}" data-until="${asked.until}" data-step="${asked.step}"
      data-time-window="${asked.timeWindow}"><path d="${line}"></path>${dots}</svg>
      <p class="hint">score (max ${top.toFixed(2)}), ${asked.timeWindow} window, every
      ${asked.step}: ${TM.shortInstant(asked.since)} → ${TM.shortInstant(asked.until)}</p>`;
  }

  TM.topics = { follow, history, drawPath };
})();
