// Drawing hotspots and flows, and the details panel: `trendmap.draw`.
"use strict";
(() => {
  const TM = window.trendmap;
  const { $, el, f1 } = TM;
  const drawn = (TM.drawn = { hotspots: new Map(), flows: new Map() });
  let selected = null; // {kind, id} pinned by a click

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
      whole: `M${p(a)}Q${p(control)} ${p(tip)}`, // no arrowhead: up to the circle
      head: `M${p(tip)}L${p([bx + nx, by + ny])}L${p([bx - nx, by - ny])}Z`,
    };
  }

  function drawHotspots(hotspots) {
    const layer = $("hotspots"), labels = $("labels");
    const seen = new Set();
    // Biggest first, so small circles stay on top and reachable.
    for (const h of [...hotspots].sort((p, q) => q.intensity - p.intensity)) {
      const at = TM.place(h.country);
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
        entry = { g, circle, label, at };
        drawn.hotspots.set(h.country, entry);
      }
      entry.data = h;
      entry.r = TM.radius(h.intensity);
      entry.circle.setAttribute("r", f1(entry.r));
      entry.circle.setAttribute("fill", TM.hotspotColour(h.intensity));
      entry.circle.setAttribute("stroke", TM.hotspotColour(Math.min(h.intensity + 0.35, 1)));
      layer.appendChild(entry.g); // re-append: keeps the order by intensity
    }
    for (const [code, entry] of drawn.hotspots) {
      if (!seen.has(code)) {
        entry.g.remove();
        entry.label.remove();
        drawn.hotspots.delete(code);
      }
    }
    TM.zoom.layoutLabels();
  }

  function drawFlow(f, animate) {
    const id = `${f.fromCountry}-${f.toCountry}`;
    const a = TM.place(f.fromCountry), b = TM.place(f.toCountry);
    if (!a || !b) return null;
    let entry = drawn.flows.get(id);
    if (!entry) {
      const g = el("g", { class: animate ? "flow new" : "flow", "data-flow": id }, $("flows"));
      const line = el("path", { class: "line" }, g);
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
    const width = TM.flowWidth(f.heat), colour = TM.flowColour(f.heat);
    const target = drawn.hotspots.get(f.toCountry);
    const shape = flowShape(a, b, (target ? target.r : 0.8) + 0.3, width);
    // Simultaneous: dashed in map units (so no pathLength), without an arrowhead.
    entry.g.classList.toggle("simultaneous", Boolean(f.simultaneous));
    if (f.simultaneous) entry.line.removeAttribute("pathLength");
    else entry.line.setAttribute("pathLength", "1");
    entry.line.setAttribute("d", f.simultaneous ? shape.whole : shape.line);
    entry.line.setAttribute("stroke", colour);
    entry.line.setAttribute("stroke-width", f1(width));
    entry.head.setAttribute("d", f.simultaneous ? "" : shape.head);
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
  }

  function clear() {
    for (const entry of drawn.hotspots.values()) { entry.g.remove(); entry.label.remove(); }
    for (const entry of drawn.flows.values()) entry.g.remove();
    drawn.hotspots.clear();
    drawn.flows.clear();
    selected = null;
    show();
  }

  // ---- details ---------------------------------------------------------------------------
  function details(kind, id) {
    const { escape, name } = TM;
    if (kind === "hotspot" && drawn.hotspots.has(id)) {
      const h = drawn.hotspots.get(id).data;
      const topics = h.topTopics
        .map((t) => `<li>${escape(t.label)}<span>${t.count.toLocaleString("en")}</span></li>`)
        .join("");
      return `<h3>${escape(name(h.country))} <small>${h.country}</small></h3>
        <dl><dt>intensity</dt><dd>${h.intensity.toFixed(2)}</dd>
        <dt>score</dt><dd>${h.score.toFixed(2)}</dd>
        <dt>topics</dt><dd>${h.topicCount}</dd></dl>
        <h2>top topics</h2><ol>${topics}</ol>`;
    }
    if (kind === "flow" && drawn.flows.has(id)) {
      const f = drawn.flows.get(id).data;
      const topics = f.sharedTopics.map((t) => `<li>${escape(t)}</li>`).join("");
      const arrow = f.simultaneous ? "↔" : "→";
      return `<h3>${escape(name(f.fromCountry))} ${arrow} ${escape(name(f.toCountry))}</h3>
        <dl><dt>heat</dt><dd>${f.heat.toFixed(2)}</dd>
        <dt>similarity</dt><dd>${f.similarityScore.toFixed(2)}</dd>
        <dt>Δt</dt><dd>${TM.hours(f.timeDeltaHours)}${f.simultaneous ? " (simultaneous)" : ""}</dd></dl>
        <h2>shared topics</h2><ol>${topics}</ol>`;
    }
    return null;
  }

  function show(kind, id) {
    const html = kind ? details(kind, id) : selected && details(selected.kind, selected.id);
    $("details").innerHTML = "<h2>Details</h2>" +
      (html || '<p class="hint">Hover over or click a hotspot or an arrow.</p>');
  }

  function pin(kind, id) {
    document.querySelectorAll(".selected").forEach((n) => n.classList.remove("selected"));
    const same = selected && selected.kind === kind && selected.id === id;
    selected = same ? null : { kind, id };
    if (selected) (kind === "flow" ? drawn.flows : drawn.hotspots).get(id)?.g.classList.add("selected");
    show(kind, id);
    if (kind === "hotspot" && selected) TM.topics.history(id);
  }

  function stats(error) {
    const when = TM.view.asOf ? `as of ${TM.instant(TM.view.asOf)}` : "live";
    $("stats").textContent = error
      ? `no answer for this view (${when})`
      : `${drawn.hotspots.size} hotspots · ${drawn.flows.size} flows · window ` +
        `${TM.view.timeWindow} · ${when} · updated ${new Date().toLocaleTimeString("en-GB")}`;
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

  TM.draw = { hotspots: drawHotspots, flows: drawFlows, flow: drawFlow, clear, show, stats };
})();
