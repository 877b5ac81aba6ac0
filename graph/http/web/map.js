// trendmap's live map, started here: one GraphQL query for the state of the view, then the
// hotFlows subscription over graphql-transport-ws (spoken here by hand) while the view is live.
"use strict";
(() => {
  const TM = window.trendmap;
  const { $, view } = TM;
  const REFRESH_MS = 60000; // the window slides: re-query now and then
  const STRONGEST = 5; // "show the strongest N"

  const FLOW_FIELDS = "fromCountry toCountry heat sharedTopics timeDeltaHours similarityScore simultaneous";
  const MAP_QUERY = `query Map($timeWindow: String!, $countries: [String!], $threshold: Float,
                               $asOf: DateTime, $limit: Int) {
  hotspots(timeWindow: $timeWindow, countries: $countries, asOf: $asOf) {
    country intensity score topicCount topTopics { label count }
  }
  flows(timeWindow: $timeWindow, countries: $countries, threshold: $threshold, asOf: $asOf,
        limit: $limit) { ${FLOW_FIELDS} }
  flowStats(timeWindow: $timeWindow, asOf: $asOf, countries: $countries) {
    maxHeat fromCountry toCountry pairs
  }
}`;
  const LIVE_QUERY = `subscription Live($timeWindow: String!, $countries: [String!], $threshold: Float) {
  hotFlows(timeWindow: $timeWindow, countries: $countries, threshold: $threshold,
           includeCurrent: true) { ${FLOW_FIELDS} }
}`;

  let loading = 0; // the latest query's number: older answers are dropped
  let ready = false; // the current view's state is drawn: live flows after it are news
  let valid = true; // the server accepted the current view (else: no subscription)

  function variables() {
    const strongest = view.strongest !== null;
    return {
      timeWindow: view.timeWindow,
      countries: view.countries,
      threshold: strongest ? 0 : view.threshold,
      asOf: view.asOf,
      limit: strongest ? view.strongest : null,
    };
  }

  async function load(animate) {
    const mine = ++loading;
    let data;
    try {
      data = await TM.gql(MAP_QUERY, variables());
    } catch (err) {
      if (mine !== loading) return false;
      if (!err.refused) {
        TM.status("the server does not answer; retrying with the live connection", true);
        return false;
      }
      // Refused (a bad filter, a missing key): nothing of the previous view stays on show.
      valid = false;
      live.stop();
      TM.status(err.message, true);
      TM.draw.clear();
      explain(null);
      TM.draw.stats(true);
      return false;
    }
    if (mine !== loading) return false; // a newer query is on its way
    valid = true;
    TM.status("");
    TM.draw.hotspots(data.hotspots);
    TM.draw.flows(data.flows, animate && ready);
    explain(data.flows, data.flowStats);
    TM.draw.stats();
    ready = true;
    TM.draw.show();
    return true;
  }

  // ---- why nothing is drawn, and the strongest links on request --------------------------
  function explain(flows, stats) {
    const box = $("notice");
    box.hidden = true;
    box.replaceChildren();
    if (!flows) return;
    const say = (html, action, label) => {
      box.innerHTML = html;
      if (action) {
        const button = document.createElement("button");
        button.type = "button";
        button.id = "strongest";
        button.textContent = label;
        button.addEventListener("click", action);
        box.append(" ", button);
      }
      box.hidden = false;
    };
    if (view.strongest !== null) {
      say(`Showing the strongest ${view.strongest} links, whatever their heat.`, () => {
        view.strongest = null;
        changed();
      }, `back to heat ≥ ${view.threshold.toFixed(2)}`);
    } else if (!flows.length && stats.maxHeat !== null) {
      const n = Math.min(STRONGEST, stats.pairs);
      say(`No flow reaches heat ≥ ${view.threshold.toFixed(2)}. The strongest pair is ` +
        `<b>${stats.fromCountry} · ${stats.toCountry}</b> at heat ` +
        `<b>${stats.maxHeat.toFixed(2)}</b> (${stats.pairs} pairs share a topic).`, () => {
        view.strongest = n;
        changed();
      }, `show the strongest ${n}`);
    } else if (!flows.length) {
      say("No two countries share a topic in this window.");
    }
  }

  // ---- the subscription (graphql-transport-ws) -------------------------------------------
  const live = (TM.live = { socket: null, acked: false, id: null, serial: 0, attempt: 0, timer: null });

  function liveText() {
    TM.setLive("up", view.asOf ? "connected · paused" : "live");
  }

  live.stop = () => {
    if (live.socket && live.acked && live.id) {
      live.socket.send(JSON.stringify({ id: live.id, type: "complete" }));
    }
    live.id = null;
  };
  live.subscribe = () => {
    const socket = live.socket;
    if (!socket || !live.acked || view.asOf || !valid) return;
    live.stop();
    live.id = `live-${++live.serial}`;
    const { timeWindow, countries } = view;
    socket.send(JSON.stringify({
      id: live.id,
      type: "subscribe",
      payload: { query: LIVE_QUERY, variables: { timeWindow, countries, threshold: view.threshold } },
    }));
  };
  live.pause = () => { live.stop(); if (live.acked) liveText(); };
  live.resume = () => { if (live.acked) liveText(); };

  function received(message) {
    if (message.id !== live.id || view.asOf) return; // replaced, or paused since
    if (message.payload.data && message.payload.data.hotFlows) {
      // includeCurrent sends the flows that are hot already: before the query's answer is
      // drawn they are not news, after it only those not drawn are.
      const flow = message.payload.data.hotFlows;
      const fresh = ready && !TM.drawn.flows.has(`${flow.fromCountry}-${flow.toCountry}`);
      TM.draw.flow(flow, fresh);
      TM.draw.stats();
      if (fresh) refreshSoon(1500);
    } else if (message.payload.errors) {
      TM.status(message.payload.errors[0].message, true);
    }
  }

  function connect() {
    clearTimeout(live.timer);
    const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/graphql";
    const socket = new WebSocket(url, "graphql-transport-ws");
    Object.assign(live, { socket, acked: false, id: null });
    TM.setLive("connecting", "connecting");
    socket.onopen = () => {
      socket.send(JSON.stringify({ type: "connection_init", payload: TM.AUTH ? { Authorization: TM.AUTH } : {} }));
    };
    socket.onmessage = (event) => {
      let message;
      try { message = JSON.parse(event.data); } catch (err) { return; }
      if (message.type === "connection_ack") {
        Object.assign(live, { acked: true, attempt: 0 });
        liveText();
        live.subscribe();
      } else if (message.type === "ping") {
        socket.send(JSON.stringify({ type: "pong", payload: message.payload }));
      } else if (message.type === "next") {
        received(message);
      } else if (message.type === "error" && message.id === live.id) {
        TM.status(message.payload[0]?.message || "subscription refused", true);
      } else if (message.type === "complete" && message.id === live.id) {
        socket.close(1000, "subscription ended"); // start over
      }
    };
    socket.onclose = (event) => {
      if (live.socket !== socket) return;
      live.acked = false;
      if (event.code === 4403) TM.status(TM.KEY_HINT, true);
      // Back off: 1 s, 2 s, 4 s ... at most 30 s, with jitter so a restarted server is not
      // hit by every page at once.
      const delay = Math.min(30000, 1000 * 2 ** live.attempt) * (0.75 + Math.random() / 2);
      live.attempt = Math.min(live.attempt + 1, 5);
      TM.setLive("down", `offline · retry in ${Math.ceil(delay / 1000)} s`);
      live.timer = setTimeout(() => { connect(); refreshSoon(0); }, delay);
    };
  }

  let refreshing = null;
  function refreshSoon(ms) {
    // After live news the hotspots have changed too; bursts make one query.
    clearTimeout(refreshing);
    refreshing = setTimeout(() => {
      if (view.asOf) return; // a past instant does not change
      TM.timeline.refreshSpan();
      load(true);
    }, ms);
  }
  setInterval(() => refreshSoon(0), REFRESH_MS);

  // ---- controls --------------------------------------------------------------------------
  // The view changed: ask again (and subscribe again when live). `keep`: draw over the
  // current drawing instead of starting afresh (the frames of play).
  function changed(keep) {
    if (!keep) {
      ready = false;
      TM.draw.clear();
    }
    // Subscribe once the server has taken the view (a bad filter must not reach the socket);
    // over the open socket, as a reconnect subscribes anyway.
    return load(false).then((ok) => { if (ok && !view.asOf) live.subscribe(); });
  }
  TM.changed = changed;

  document.querySelectorAll("#window input").forEach((input) => {
    input.checked = input.value === view.timeWindow;
    input.addEventListener("change", () => { view.timeWindow = input.value; changed(); });
  });
  const slider = $("threshold");
  slider.value = String(view.threshold);
  $("threshold-value").textContent = view.threshold.toFixed(2);
  slider.addEventListener("input", () => { $("threshold-value").textContent = Number(slider.value).toFixed(2); });
  slider.addEventListener("change", () => {
    view.threshold = Number(slider.value);
    view.strongest = null;
    changed();
  });
  const filter = $("countries");
  filter.addEventListener("change", () => {
    const codes = filter.value.split(/[\s,;]+/).map((c) => c.trim().toUpperCase()).filter(Boolean);
    view.countries = codes.length ? codes : null;
    changed();
  });
  $("controls").addEventListener("submit", (event) => event.preventDefault());

  $("graticule").setAttribute("d", (() => {
    let d = "";
    for (let x = 0; x <= 360; x += 30) d += `M${x} ${TM.TOP}V${TM.BOTTOM}`;
    for (let lat = 60; lat >= -60; lat -= 30) d += `M0 ${90 - lat}H360`;
    return d;
  })());
  $("land").setAttribute("d", TM.CONFIG.land);
  $("feed").querySelector("ol").innerHTML = '<li class="empty">new hot flows appear here as they happen</li>';

  // An archive that ends in the past opens at its last instant, not on an empty "now".
  TM.timeline.refreshSpan().then(() => {
    if (TM.timeline.archiveInPast()) TM.timeline.goTo(TM.span.last);
    else load(false);
    connect();
  });
})();
