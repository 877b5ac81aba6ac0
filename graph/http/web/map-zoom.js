// Zoom and pan (wheel, drag, pinch; double-click resets) and label layout: `trendmap.zoom`.
// The world group is transformed; labels keep a readable size on screen whatever the zoom,
// and a label that would overlap a bigger country's is hidden (dense regions at low zoom).
"use strict";
(() => {
  const TM = window.trendmap;
  const { $ } = TM;
  const LABEL_PX = 11; // label size on screen
  const MAX_ZOOM = 24;
  const svg = $("map"), world = $("world");
  const at = { k: 1, x: 0, y: 0 }; // screen-free: map units, x' = k * x + at.x

  function apply() {
    world.setAttribute("transform", `translate(${TM.f1(at.x)} ${TM.f1(at.y)}) scale(${at.k})`);
    layoutLabels();
  }

  function toMap(clientX, clientY) {
    // The point under the pointer, in the svg's own units (before the world's transform).
    const m = svg.getScreenCTM();
    if (!m) return [0, 0];
    const p = new DOMPoint(clientX, clientY).matrixTransform(m.inverse());
    return [p.x, p.y];
  }

  function zoomAround(point, factor) {
    const k = Math.min(Math.max(at.k * factor, 1), MAX_ZOOM);
    at.x = point[0] - ((point[0] - at.x) * k) / at.k;
    at.y = point[1] - ((point[1] - at.y) * k) / at.k;
    at.k = k;
    if (k === 1) { at.x = 0; at.y = 0; }
    apply();
  }

  function reset() {
    Object.assign(at, { k: 1, x: 0, y: 0 });
    apply();
  }

  // How many screen pixels one map unit of the world group is.
  function pixels() {
    const m = world.getScreenCTM();
    return m && m.a > 0 ? m.a : 1;
  }

  function layoutLabels() {
    const unit = 1 / pixels(); // one screen pixel in map units
    const size = LABEL_PX * unit;
    const placed = [];
    const overlaps = (b) => placed.some((o) => b[0] < o[2] && o[0] < b[2] && b[1] < o[3] && o[1] < b[3]);
    // A followed topic's times first: country labels give way to them.
    for (const stop of $("topic-path").querySelectorAll("g.stop")) {
      const [x, y] = stop.dataset.at.split(" ").map(Number);
      const text = stop.querySelector("text");
      const left = x + 5 * unit, bottom = y - 3 * unit;
      text.setAttribute("font-size", size.toFixed(3));
      text.setAttribute("x", left.toFixed(3));
      text.setAttribute("y", bottom.toFixed(3));
      placed.push([left, bottom - size, left + text.textContent.length * 0.62 * size, bottom + unit]);
    }
    const entries = [...TM.drawn.hotspots.values()].sort((p, q) => q.r - p.r);
    for (const entry of entries) {
      const [x, y] = entry.at;
      const top = y + entry.r + 2 * unit;
      const half = (entry.label.textContent.length * 0.66 * size) / 2 + 2 * unit;
      const box = [x - half, top, x + half, top + size];
      const hidden = overlaps(box);
      entry.label.setAttribute("font-size", size.toFixed(3));
      entry.label.setAttribute("y", String(top + size * 0.85));
      entry.label.classList.toggle("hidden", hidden);
      if (!hidden) placed.push(box);
    }
  }

  // ---- wheel, drag, pinch ----------------------------------------------------------------
  svg.addEventListener("wheel", (event) => {
    event.preventDefault();
    zoomAround(toMap(event.clientX, event.clientY), Math.exp(-event.deltaY * 0.0015));
  }, { passive: false });
  svg.addEventListener("dblclick", (event) => { event.preventDefault(); reset(); });

  const pointers = new Map(); // id -> [clientX, clientY]
  let pinch = null; // the two fingers' distance at the last move
  let dragged = false;

  svg.addEventListener("pointerdown", (event) => {
    pointers.set(event.pointerId, [event.clientX, event.clientY]);
    dragged = false;
    pinch = null;
  });
  window.addEventListener("pointermove", (event) => {
    const last = pointers.get(event.pointerId);
    if (!last) return;
    const now = [event.clientX, event.clientY];
    if (pointers.size === 1) {
      if (!dragged && Math.hypot(now[0] - last[0], now[1] - last[1]) < 3) return;
      dragged = true;
      const a = toMap(...last), b = toMap(...now);
      at.x += b[0] - a[0];
      at.y += b[1] - a[1];
      pointers.set(event.pointerId, now);
      apply();
      return;
    }
    pointers.set(event.pointerId, now);
    const [p, q] = [...pointers.values()];
    const distance = Math.hypot(p[0] - q[0], p[1] - q[1]);
    if (pinch) zoomAround(toMap((p[0] + q[0]) / 2, (p[1] + q[1]) / 2), distance / pinch);
    pinch = distance;
    dragged = true;
  });
  const up = (event) => { pointers.delete(event.pointerId); pinch = null; };
  window.addEventListener("pointerup", up);
  window.addEventListener("pointercancel", up);
  // A drag is not a click on what it started over.
  svg.addEventListener("click", (event) => { if (dragged) event.stopPropagation(); }, true);
  window.addEventListener("resize", layoutLabels);

  TM.zoom = { layoutLabels, reset, state: at };
})();
